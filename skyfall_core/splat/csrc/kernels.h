// Pure C++ (no torch) pieces of the CPU rasterizer: constants, sorting, pixel boxes and the
// per-tile forward/backward kernels. Included by rasterize.cpp; kept free of torch headers so
// that it compiles in a second for vectorisation reports (-fopt-info-vec).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace skyfall {

constexpr int kTile = 16;                   // tile side in pixels
constexpr int kTilePixels = kTile * kTile;  // pixels per tile
constexpr double kAlphaThreshold = 1.0 / 255.0;
constexpr double kTransmittanceMin = 1e-4;
constexpr double kAlphaMax = 0.999;

// ------------------------------------------------------------------ vectors
// The tile kernels work on rows of kTile = 16 pixels cut into chunks of one native vector
// register: 8 floats (4 doubles) with AVX2 and AVX-512, 4 floats with SSE2/NEON. The vectors
// are GCC/Clang vector extensions no wider than a register. Issue 18: the rows used to be one
// 64-byte vector; with AVX-512 that is one zmm register, but on an AVX2-only CPU GCC lowers
// such a vector piece by piece and scalarises every lane-wise comparison (one vcomiss + setcc
// + cmov per lane, plus spills), so the AVX2 build ran 3.5-4.5x slower than the AVX-512 one.
// With register-wide types every comparison is one vcmpps and the kernels stay in vector
// registers on any ISA (no gathers, no libm calls in the float path).
// AVX-512 builds use 256-bit vectors too (AVX-512VL gives them the masked compares): 8-pixel
// chunks let a Gaussian skip the half-row its box misses, which measured ~8 % faster on the
// AVX-512 machine than 16-pixel zmm chunks, and both x86 builds then run the same code shape.
// Masks are integer vectors of the same lane width (-1 true, 0 false).
#if defined(SKYFALL_VEC_BYTES)
constexpr int kVecBytes = SKYFALL_VEC_BYTES;  // forced, for experiments: -DSKYFALL_VEC_BYTES=64
#elif defined(__AVX2__)
constexpr int kVecBytes = 32;  // one ymm register (AVX2: 256-bit integer lanes for the masks)
#else
constexpr int kVecBytes = 16;  // one xmm (SSE2) or NEON q register; scalar code elsewhere
#endif

template <typename S>
struct Vec;
template <>
struct Vec<float> {
    typedef int32_t I;  // integer of the lane width
    typedef float V __attribute__((vector_size(kVecBytes)));
    typedef int32_t M __attribute__((vector_size(kVecBytes)));
};
template <>
struct Vec<double> {
    typedef int64_t I;
    typedef double V __attribute__((vector_size(kVecBytes)));
    typedef int64_t M __attribute__((vector_size(kVecBytes)));
};
template <typename S>
using VecV = typename Vec<S>::V;
template <typename S>
using VecM = typename Vec<S>::M;
template <typename S>
constexpr int kLanes = kVecBytes / static_cast<int>(sizeof(S));  // lanes per chunk
template <typename S>
constexpr int kChunks = kTile / kLanes<S>;  // chunks per tile row
static_assert(kChunks<double> >= 1 && kTile % kLanes<double> == 0, "a row must be whole chunks");

template <typename T>
inline T load_vec(const void *ptr) {
    T v;
    std::memcpy(&v, ptr, sizeof(T));
    return v;
}

template <typename T>
inline void store_vec(void *ptr, const T &v) {
    std::memcpy(ptr, &v, sizeof(T));
}

template <typename S>
inline VecV<S> splat_vec(S s) {
    return VecV<S>{} + s;
}

template <typename S>
inline VecM<S> lane_index() {
    VecM<S> m;
    for (int i = 0; i < kLanes<S>; ++i) m[i] = i;
    return m;
}

// select(m, a, b) = m ? a : b lane by lane (bitwise, so it compiles with GCC and Clang).
template <typename S>
inline VecV<S> select(const VecM<S> &m, const VecV<S> &a, const VecV<S> &b) {
    VecM<S> ai, bi;
    std::memcpy(&ai, &a, sizeof(ai));
    std::memcpy(&bi, &b, sizeof(bi));
    const VecM<S> r = (m & ai) | (~m & bi);
    VecV<S> out;
    std::memcpy(&out, &r, sizeof(out));
    return out;
}

template <typename S>
inline VecM<S> select_int(const VecM<S> &m, const VecM<S> &a, const VecM<S> &b) {
    return (m & a) | (~m & b);
}

// True when a lane of the mask is set: OR-fold the halves down to one 64-bit word.
template <typename S>
inline bool any_lane(const VecM<S> &m) {
    uint64_t w[kVecBytes / 8];
    std::memcpy(w, &m, sizeof(w));
    uint64_t bits = 0;
    for (int i = 0; i < kVecBytes / 8; ++i) bits |= w[i];
    return bits != 0;
}

template <typename S>
inline int count_lanes(const VecM<S> &m) {
    int n = 0;
    for (int i = 0; i < kLanes<S>; ++i) n -= static_cast<int>(m[i]);
    return n;
}

template <typename S>
inline S sum_lanes(const VecV<S> &v) {
    S s = 0;
    for (int i = 0; i < kLanes<S>; ++i) s += v[i];
    return s;
}

// exp(x) on a float vector for x <= 0 (the renderer's exp(-sigma), sigma >= 0): Cephes expf
// (Cody-Waite range reduction + degree-6 polynomial), about 1 ulp on [-87, 0]; x < -87 gives
// exp(-87). Lanes with x > 0 return finite but meaningless values (they are masked out).
// Branch-free and gather-free (2^n is built in the exponent bits), so it vectorises the same
// way with AVX-512, AVX2, SSE2 and NEON.
inline VecV<float> exp_vec(VecV<float> x) {
    typedef VecV<float> V;
    typedef VecM<float> M;
    x = select<float>(x < -87.0f, splat_vec(-87.0f), x);
    x = select<float>(x > 0.0f, splat_vec(0.0f), x);
    // Round x / ln 2 to the nearest integer n with the 1.5 * 2^23 trick: the low mantissa
    // bits of t + magic hold n.
    const V magic = splat_vec(12582912.0f);
    const V shifted = x * 1.44269504088896341f + magic;
    const V fx = shifted - magic;
    M n;
    std::memcpy(&n, &shifted, sizeof(M));
    n -= 0x4B400000;  // the bits of the magic number
    V r = x - fx * 0.693359375f;
    r = r - fx * -2.12194440e-4f;
    const V z = r * r;
    V y = splat_vec(1.9875691500e-4f);
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * z + r + 1.0f;
    const M bits = (n + 127) << 23;
    V pow2n;
    std::memcpy(&pow2n, &bits, sizeof(V));
    return y * pow2n;
}

// exp(x) on a double vector: libm, lane by lane (the double path serves tests, not speed).
inline VecV<double> exp_vec(VecV<double> x) {
    for (int i = 0; i < kLanes<double>; ++i) x[i] = std::exp(x[i]);
    return x;
}

// Monotone unsigned keys for floating point numbers (negative values sort first).
inline uint32_t sort_key(float v) {
    uint32_t b;
    std::memcpy(&b, &v, sizeof(b));
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

inline uint64_t sort_key(double v) {
    uint64_t b;
    std::memcpy(&b, &v, sizeof(b));
    return (b & 0x8000000000000000ull) ? ~b : (b | 0x8000000000000000ull);
}

// Stable LSD radix argsort with 8-bit digits; ties keep their input order.
template <typename K>
void radix_argsort(std::vector<K> &keys, std::vector<int32_t> &ids) {
    const size_t n = keys.size();
    std::vector<K> keys_tmp(n);
    std::vector<int32_t> ids_tmp(n);
    for (size_t shift = 0; shift < sizeof(K) * 8; shift += 8) {
        size_t count[257] = {0};
        for (size_t i = 0; i < n; ++i) {
            ++count[((keys[i] >> shift) & 0xFF) + 1];
        }
        if (count[((keys[0] >> shift) & 0xFF) + 1] == n) {
            continue;  // every key has the same digit: nothing to do
        }
        for (int b = 0; b < 256; ++b) {
            count[b + 1] += count[b];
        }
        for (size_t i = 0; i < n; ++i) {
            const size_t dst = count[(keys[i] >> shift) & 0xFF]++;
            keys_tmp[dst] = keys[i];
            ids_tmp[dst] = ids[i];
        }
        keys.swap(keys_tmp);
        ids.swap(ids_tmp);
    }
}

struct TileGrid {
    int64_t C, N, width, height, tiles_x, tiles_y, n_tiles;
    TileGrid(int64_t C_, int64_t N_, int64_t width_, int64_t height_)
        : C(C_), N(N_), width(width_), height(height_),
          tiles_x((width_ + kTile - 1) / kTile), tiles_y((height_ + kTile - 1) / kTile),
          n_tiles(tiles_x * tiles_y) {}
};

// Inclusive pixel box [x0, x1] x [y0, y1] outside which the alpha of a Gaussian is < 1/255:
// the bounding box of the ellipse 0.5 d^T conic d <= log(255 opacity), widened by a margin
// that covers float rounding of sigma. Empty box (x0 > x1) when nothing can be drawn.
template <typename S>
void alpha_box(const S *mean2d, const S *conic, S opacity, int64_t width, int64_t height,
               int32_t *box) {
    box[0] = 1; box[1] = 0; box[2] = 1; box[3] = 0;
    const double q = std::log(255.0 * static_cast<double>(opacity));
    if (!(q > -1e-4)) {
        return;
    }
    const double a = conic[0], b = conic[1], c = conic[2];
    const double det = a * c - b * b;
    double hx, hy;
    if (det > 0.0 && a > 0.0 && std::isfinite(det)) {
        const double two_q = 2.0 * (std::max(q, 0.0) + 1e-4);
        hx = std::sqrt(two_q * c / det) + 1e-3;
        hy = std::sqrt(two_q * a / det) + 1e-3;
    } else {
        hx = hy = std::numeric_limits<double>::infinity();  // not positive definite: no bound
    }
    const double mx = mean2d[0], my = mean2d[1];
    const double x0 = std::max(0.0, std::ceil(mx - hx - 0.5));
    const double x1 = std::min(static_cast<double>(width - 1), std::floor(mx + hx - 0.5));
    const double y0 = std::max(0.0, std::ceil(my - hy - 0.5));
    const double y1 = std::min(static_cast<double>(height - 1), std::floor(my + hy - 0.5));
    if (!(x0 <= x1 && y0 <= y1)) {
        return;
    }
    box[0] = static_cast<int32_t>(x0); box[1] = static_cast<int32_t>(x1);
    box[2] = static_cast<int32_t>(y0); box[3] = static_cast<int32_t>(y1);
}

// Tile rectangle [tx0, tx1) x [ty0, ty1) of a Gaussian, as gsplat's isect_tiles.
template <typename S>
void tile_rect(const S *mean2d, const int32_t *radius, const TileGrid &grid, int32_t *rect) {
    const S tile_x = mean2d[0] / kTile, tile_y = mean2d[1] / kTile;
    const S tile_rx = static_cast<S>(radius[0]) / kTile, tile_ry = static_cast<S>(radius[1]) / kTile;
    auto clamp_to = [](S v, int64_t hi) {
        return static_cast<int32_t>(std::min<S>(std::max<S>(v, 0), static_cast<S>(hi)));
    };
    rect[0] = clamp_to(std::floor(tile_x - tile_rx), grid.tiles_x);
    rect[1] = clamp_to(std::ceil(tile_x + tile_rx), grid.tiles_x);
    rect[2] = clamp_to(std::floor(tile_y - tile_ry), grid.tiles_y);
    rect[3] = clamp_to(std::ceil(tile_y + tile_ry), grid.tiles_y);
}

// One tile entry with everything the tile kernels read about its Gaussian, stored in tile
// order so that the kernels stream through memory (one cache line for float).
template <typename S>
struct alignas(64) PackedSplat {
    S mean2d[2];
    S conic[3];
    S opacity;
    S color[4];  // the first D are used
    int32_t box[4];  // pixel box x0, x1, y0, y1 (inclusive) where alpha >= 1/255 is possible
};

template <typename S, int D>
void pack_splat(const S *means2d, const S *conics, const S *colors, const S *opacities,
                const int32_t *boxes, int64_t g, PackedSplat<S> &out) {
    out.mean2d[0] = means2d[g * 2];
    out.mean2d[1] = means2d[g * 2 + 1];
    for (int i = 0; i < 3; ++i) out.conic[i] = conics[g * 3 + i];
    out.opacity = opacities[g];
    for (int ch = 0; ch < 4; ++ch) out.color[ch] = ch < D ? colors[g * D + ch] : S(0);
    for (int i = 0; i < 4; ++i) out.box[i] = boxes[g * 4 + i];
}

// Inputs of the tile kernels.
template <typename S>
struct TileInputs {
    const PackedSplat<S> *splats;  // [n_isects] in tile order
    const S *backgrounds;          // [C, D] or nullptr
    const int64_t *offsets;        // [C * n_tiles + 1]: entries of tile t are [offsets[t], offsets[t + 1])
};

// Part of a tile covered by a Gaussian's box, in tile-local pixel coordinates (inclusive).
struct LocalBox {
    int lx0, lx1, ly0, ly1;
    bool empty() const { return lx0 > lx1 || ly0 > ly1; }
};

inline LocalBox local_box(const int32_t *box, int64_t ox, int64_t oy, int64_t tw, int64_t th) {
    return LocalBox{static_cast<int>(std::max<int64_t>(box[0] - ox, 0)),
                    static_cast<int>(std::min<int64_t>(box[1] - ox, tw - 1)),
                    static_cast<int>(std::max<int64_t>(box[2] - oy, 0)),
                    static_cast<int>(std::min<int64_t>(box[3] - oy, th - 1))};
}

template <typename S, int D>
void forward_tile(const TileInputs<S> &in, const TileGrid &grid, int64_t job, S *out_colors,
                  S *out_alphas, int32_t *last_ids) {
    typedef VecV<S> V;
    typedef VecM<S> M;
    typedef typename Vec<S>::I I;  // int32 for float, int64 for double
    constexpr int L = kLanes<S>, NC = kChunks<S>;
    const int64_t cam = job / grid.n_tiles, tile = job % grid.n_tiles;
    const int64_t ox = (tile % grid.tiles_x) * kTile, oy = (tile / grid.tiles_x) * kTile;
    const int64_t tw = std::min<int64_t>(kTile, grid.width - ox);
    const int64_t th = std::min<int64_t>(kTile, grid.height - oy);
    alignas(64) S trans[kTilePixels];    // transmittance
    alignas(64) S acc[D][kTilePixels];   // composited colour
    alignas(64) I last[kTilePixels];     // index of the last Gaussian drawn (-1: none)
    alignas(64) I done[kTilePixels];     // -1 once the pixel stopped
    int row_todo[kTile];                 // pixels of each row still compositing
    for (int p = 0; p < kTilePixels; ++p) {
        trans[p] = S(1);
        last[p] = -1;
        done[p] = 0;
        for (int ch = 0; ch < D; ++ch) acc[ch][p] = S(0);
    }
    for (int ly = 0; ly < kTile; ++ly) row_todo[ly] = ly < th ? static_cast<int>(tw) : 0;
    const M lane = lane_index<S>();
    V px[NC];  // pixel centres of each chunk of a row
    for (int c = 0; c < NC; ++c) {
        px[c] = __builtin_convertvector(lane, V) + static_cast<S>(ox + c * L) + S(0.5);
    }
    const int n_inside = static_cast<int>(tw * th);
    int n_done = 0;
    const S alpha_thr = static_cast<S>(kAlphaThreshold);
    const S alpha_max = static_cast<S>(kAlphaMax);
    const S trans_min = static_cast<S>(kTransmittanceMin);
    for (int64_t k = in.offsets[job]; k < in.offsets[job + 1] && n_done < n_inside; ++k) {
        const PackedSplat<S> &splat = in.splats[k];
        const LocalBox lb = local_box(splat.box, ox, oy, tw, th);
        if (lb.empty()) continue;
        const int c0 = lb.lx0 / L, c1 = lb.lx1 / L;  // chunks the box covers
        const S mx = splat.mean2d[0], my = splat.mean2d[1];
        const S ca = splat.conic[0], cb = splat.conic[1], cc = splat.conic[2];
        const S opac = splat.opacity;
        S col[D];
        for (int ch = 0; ch < D; ++ch) col[ch] = splat.color[ch];
        V dx[NC], dx2[NC];
        M in_box[NC];
#pragma GCC unroll 16
        for (int c = 0; c < NC; ++c) {
            const M lx = lane + c * L;
            in_box[c] = (lx >= lb.lx0) & (lx <= lb.lx1);
            dx[c] = mx - px[c];
            dx2[c] = ca * dx[c] * dx[c];
        }
        for (int ly = lb.ly0; ly <= lb.ly1; ++ly) {
            if (row_todo[ly] == 0) continue;
            const S dy = my - (static_cast<S>(oy + ly) + S(0.5));
            const S dy2 = cc * dy * dy;
#pragma GCC unroll 16
            for (int c = 0; c < NC; ++c) {
                if (c < c0 || c > c1) continue;
                const int p = ly * kTile + c * L;
                const V sigma = S(0.5) * (dx2[c] + dy2) + cb * dx[c] * dy;
                const V raw = opac * exp_vec(-sigma);
                const V alpha = select<S>(raw < alpha_max, raw, splat_vec(alpha_max));
                const M valid = in_box[c] & ~load_vec<M>(done + p) & (sigma >= S(0)) &
                                (alpha >= alpha_thr);
                if (!any_lane<S>(valid)) continue;
                const V t = load_vec<V>(trans + p);
                const V next_t = t * (S(1) - alpha);
                const M stop = valid & (next_t <= trans_min);
                const M draw = valid & ~stop;
                const V vis = select<S>(draw, alpha * t, splat_vec(S(0)));
                for (int ch = 0; ch < D; ++ch) {
                    store_vec(acc[ch] + p, load_vec<V>(acc[ch] + p) + col[ch] * vis);
                }
                store_vec(trans + p, select<S>(draw, next_t, t));
                store_vec(last + p, select_int<S>(draw, M{} + static_cast<I>(k), load_vec<M>(last + p)));
                if (any_lane<S>(stop)) {  // rare: pixels reaching the transmittance floor
                    store_vec(done + p, load_vec<M>(done + p) | stop);
                    const int n_stop = count_lanes<S>(stop);
                    n_done += n_stop;
                    row_todo[ly] -= n_stop;
                }
            }
        }
    }
    const S *bg = in.backgrounds ? in.backgrounds + cam * D : nullptr;
    for (int64_t ly = 0; ly < th; ++ly) {  // row by row: contiguous loads, no gathers
        const S *trans_row = trans + ly * kTile;
        const I *last_row = last + ly * kTile;
        const int64_t pix0 = (cam * grid.height + oy + ly) * grid.width + ox;
        S *alpha_out = out_alphas + pix0;
        int32_t *last_out = last_ids + pix0;
        S *color_out = out_colors + pix0 * D;
        for (int64_t lx = 0; lx < tw; ++lx) {
            alpha_out[lx] = S(1) - trans_row[lx];
            last_out[lx] = static_cast<int32_t>(last_row[lx]);
        }
        for (int ch = 0; ch < D; ++ch) {
            const S *acc_row = acc[ch] + ly * kTile;
            const S b = bg ? bg[ch] : S(0);
            for (int64_t lx = 0; lx < tw; ++lx) color_out[lx * D + ch] = acc_row[lx] + trans_row[lx] * b;
        }
    }
}

// Gradient record per intersection: d/d mean2d (2), conic (3), opacity (1), colour (D).
template <int D>
constexpr int kRecord = 6 + D;

template <typename S, int D>
void backward_tile(const TileInputs<S> &in, const TileGrid &grid, int64_t job,
                   const S *out_alphas, const int32_t *last_ids, const S *v_out_colors,
                   const S *v_out_alphas, S *v_isect) {
    typedef VecV<S> V;
    typedef VecM<S> M;
    typedef typename Vec<S>::I I;
    constexpr int L = kLanes<S>, NC = kChunks<S>;
    const int64_t cam = job / grid.n_tiles, tile = job % grid.n_tiles;
    const int64_t ox = (tile % grid.tiles_x) * kTile, oy = (tile / grid.tiles_x) * kTile;
    const int64_t tw = std::min<int64_t>(kTile, grid.width - ox);
    const int64_t th = std::min<int64_t>(kTile, grid.height - oy);
    const int64_t range_start = in.offsets[job];
    alignas(64) S trans[kTilePixels];        // transmittance in front of the current Gaussian
    alignas(64) S trans_final[kTilePixels];  // transmittance after the last Gaussian drawn
    alignas(64) S buffer[D][kTilePixels];    // colour composited behind the current Gaussian
    alignas(64) S v_col[D][kTilePixels];     // dL/d rendered colour
    alignas(64) S v_alpha_bg[kTilePixels];   // dL/d rendered alpha - <background, dL/d colour>
    alignas(64) I last[kTilePixels];
    const S *bg = in.backgrounds ? in.backgrounds + cam * D : nullptr;
    int64_t k_max = -1;
    for (int p = 0; p < kTilePixels; ++p) {  // pixels outside the image: nothing drawn
        trans_final[p] = S(1);
        last[p] = -1;
        v_alpha_bg[p] = S(0);
        for (int ch = 0; ch < D; ++ch) {
            buffer[ch][p] = S(0);
            v_col[ch][p] = S(0);
        }
    }
    for (int64_t ly = 0; ly < th; ++ly) {  // row by row: contiguous loads, no gathers
        const int64_t pix0 = (cam * grid.height + oy + ly) * grid.width + ox;
        const int64_t row = ly * kTile;
        for (int64_t lx = 0; lx < tw; ++lx) {
            trans_final[row + lx] = S(1) - out_alphas[pix0 + lx];
            last[row + lx] = last_ids[pix0 + lx];
            v_alpha_bg[row + lx] = v_out_alphas[pix0 + lx];
        }
        for (int ch = 0; ch < D; ++ch) {
            for (int64_t lx = 0; lx < tw; ++lx) v_col[ch][row + lx] = v_out_colors[(pix0 + lx) * D + ch];
            if (bg) {
                for (int64_t lx = 0; lx < tw; ++lx) v_alpha_bg[row + lx] -= bg[ch] * v_col[ch][row + lx];
            }
        }
    }
    for (int p = 0; p < kTilePixels; ++p) {
        trans[p] = trans_final[p];
        k_max = std::max<int64_t>(k_max, last[p]);
    }
    int64_t chunk_last[kTile][NC];  // largest last index in each chunk of each row
    for (int ly = 0; ly < kTile; ++ly) {
        for (int c = 0; c < NC; ++c) {
            chunk_last[ly][c] = -1;
            for (int i = 0; i < L; ++i) {
                chunk_last[ly][c] = std::max<int64_t>(chunk_last[ly][c], last[ly * kTile + c * L + i]);
            }
        }
    }
    const M lane = lane_index<S>();
    V px[NC];
    for (int c = 0; c < NC; ++c) {
        px[c] = __builtin_convertvector(lane, V) + static_cast<S>(ox + c * L) + S(0.5);
    }
    const S alpha_thr = static_cast<S>(kAlphaThreshold);
    const S alpha_max = static_cast<S>(kAlphaMax);
    const V zero = splat_vec(S(0));
    // Entries behind every pixel's last drawn Gaussian get zero gradients.
    for (int64_t k = std::max(k_max + 1, range_start); k < in.offsets[job + 1]; ++k) {
        for (int i = 0; i < kRecord<D>; ++i) v_isect[k * kRecord<D> + i] = S(0);
    }
    for (int64_t k = k_max; k >= range_start; --k) {
        const PackedSplat<S> &splat = in.splats[k];
        const LocalBox lb = local_box(splat.box, ox, oy, tw, th);
        S *rec = v_isect + k * kRecord<D>;
        if (lb.empty()) {
            for (int i = 0; i < kRecord<D>; ++i) rec[i] = S(0);
            continue;
        }
        const int c0 = lb.lx0 / L, c1 = lb.lx1 / L;
        const S mx = splat.mean2d[0], my = splat.mean2d[1];
        const S ca = splat.conic[0], cb = splat.conic[1], cc = splat.conic[2];
        const S opac = splat.opacity;
        S col[D];
        for (int ch = 0; ch < D; ++ch) col[ch] = splat.color[ch];
        V dx[NC], dx2[NC];
        M in_box[NC];
#pragma GCC unroll 16
        for (int c = 0; c < NC; ++c) {
            const M lx = lane + c * L;
            in_box[c] = (lx >= lb.lx0) & (lx <= lb.lx1);
            dx[c] = mx - px[c];
            dx2[c] = ca * dx[c] * dx[c];
        }
        // Per-lane sums over the rows and chunks; reduced to the record at the end.
        V g_mx = zero, g_my = zero, g_ca = zero, g_cb = zero, g_cc = zero, g_op = zero;
        V g_col[D];
        for (int ch = 0; ch < D; ++ch) g_col[ch] = zero;
        bool touched = false;
        for (int ly = lb.ly0; ly <= lb.ly1; ++ly) {
            const S dy = my - (static_cast<S>(oy + ly) + S(0.5));
            const S dy2 = cc * dy * dy;
#pragma GCC unroll 16
            for (int c = 0; c < NC; ++c) {
                if (c < c0 || c > c1 || chunk_last[ly][c] < k) continue;
                const int p = ly * kTile + c * L;
                const M alive = in_box[c] & (load_vec<M>(last + p) >= static_cast<I>(k));
                const V sigma = S(0.5) * (dx2[c] + dy2) + cb * dx[c] * dy;
                const V vis = exp_vec(-sigma);
                const V raw = opac * vis;
                const V alpha = select<S>(raw < alpha_max, raw, splat_vec(alpha_max));
                const M valid = alive & (sigma >= S(0)) & (alpha >= alpha_thr);
                if (!any_lane<S>(valid)) continue;
                touched = true;
                const V ra = S(1) / (S(1) - alpha);
                const V t_after = load_vec<V>(trans + p);
                const V t = t_after * ra;  // transmittance in front of this Gaussian
                const V fac = alpha * t;
                V v_alpha = load_vec<V>(trans_final + p) * ra * load_vec<V>(v_alpha_bg + p);
                for (int ch = 0; ch < D; ++ch) {
                    const V vc = load_vec<V>(v_col[ch] + p);
                    const V buf = load_vec<V>(buffer[ch] + p);
                    v_alpha += (col[ch] * t - buf * ra) * vc;
                    g_col[ch] += select<S>(valid, fac * vc, zero);
                    store_vec(buffer[ch] + p, buf + select<S>(valid, col[ch] * fac, zero));
                }
                const M unclamped = valid & (raw <= alpha_max);
                const V v_sigma = select<S>(unclamped, -raw * v_alpha, zero);
                const V dxc = dx[c];
                g_ca += S(0.5) * v_sigma * dxc * dxc;
                g_cb += v_sigma * dxc * dy;
                g_cc += S(0.5) * v_sigma * dy * dy;
                g_mx += v_sigma * (ca * dxc + cb * dy);
                g_my += v_sigma * (cb * dxc + cc * dy);
                g_op += select<S>(unclamped, vis * v_alpha, zero);
                store_vec(trans + p, select<S>(valid, t, t_after));
            }
        }
        if (!touched) {
            for (int i = 0; i < kRecord<D>; ++i) rec[i] = S(0);
            continue;
        }
        rec[0] = sum_lanes<S>(g_mx);
        rec[1] = sum_lanes<S>(g_my);
        rec[2] = sum_lanes<S>(g_ca);
        rec[3] = sum_lanes<S>(g_cb);
        rec[4] = sum_lanes<S>(g_cc);
        rec[5] = sum_lanes<S>(g_op);
        for (int ch = 0; ch < D; ++ch) rec[6 + ch] = sum_lanes<S>(g_col[ch]);
    }
}

// ------------------------------------------------------------------ EWA projection
// gsplat's fully_fused_projection (pinhole) and its vector-Jacobian product, per Gaussian.
// Matrices are row-major 3x3 arrays. The PyTorch version (projection.py) is the reference.

template <typename S>
struct Mat3 {
    S m[3][3];
};

template <typename S>
inline Mat3<S> matmul(const Mat3<S> &a, const Mat3<S> &b) {
    Mat3<S> r;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) r.m[i][j] = a.m[i][0] * b.m[0][j] + a.m[i][1] * b.m[1][j] + a.m[i][2] * b.m[2][j];
    return r;
}

template <typename S>
inline Mat3<S> transpose(const Mat3<S> &a) {
    Mat3<S> r;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) r.m[i][j] = a.m[j][i];
    return r;
}

// Rotation of the normalised quaternion (w, x, y, z); also returns the normalised quaternion.
template <typename S>
inline Mat3<S> quat_to_rotmat(const S *quat, S *qn, S &inv_norm) {
    inv_norm = S(1) / std::sqrt(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3]);
    const S w = quat[0] * inv_norm, x = quat[1] * inv_norm, y = quat[2] * inv_norm, z = quat[3] * inv_norm;
    qn[0] = w; qn[1] = x; qn[2] = y; qn[3] = z;
    Mat3<S> r;
    r.m[0][0] = 1 - 2 * (y * y + z * z); r.m[0][1] = 2 * (x * y - w * z); r.m[0][2] = 2 * (x * z + w * y);
    r.m[1][0] = 2 * (x * y + w * z); r.m[1][1] = 1 - 2 * (x * x + z * z); r.m[1][2] = 2 * (y * z - w * x);
    r.m[2][0] = 2 * (x * z - w * y); r.m[2][1] = 2 * (y * z + w * x); r.m[2][2] = 1 - 2 * (x * x + y * y);
    return r;
}

// Camera constants of one view.
template <typename S>
struct PinholeView {
    Mat3<S> R;  // world-to-camera rotation part
    S t[3];
    S fx, fy, cx, cy;
    S lim_x_pos, lim_x_neg, lim_y_pos, lim_y_neg;  // clamp of x/z, y/z for the Jacobian
};

template <typename S>
PinholeView<S> make_view(const S *viewmat, const S *K, int64_t width, int64_t height) {
    PinholeView<S> v;
    for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) v.R.m[i][j] = viewmat[i * 4 + j];
        v.t[i] = viewmat[i * 4 + 3];
    }
    v.fx = K[0]; v.fy = K[4]; v.cx = K[2]; v.cy = K[5];
    const S tan_fovx = S(0.5) * width / v.fx, tan_fovy = S(0.5) * height / v.fy;
    v.lim_x_pos = (width - v.cx) / v.fx + S(0.3) * tan_fovx;
    v.lim_x_neg = v.cx / v.fx + S(0.3) * tan_fovx;
    v.lim_y_pos = (height - v.cy) / v.fy + S(0.3) * tan_fovy;
    v.lim_y_neg = v.cy / v.fy + S(0.3) * tan_fovy;
    return v;
}

// Everything the projection of one Gaussian in one view computes (shared by fwd and bwd).
template <typename S>
struct ProjectionTerms {
    S p[3];           // camera-space mean
    Mat3<S> rot;      // rotation of the normalised quaternion
    S qn[4];          // normalised quaternion
    S inv_norm;       // 1 / |quat|
    Mat3<S> M;        // rot * diag(scale)
    Mat3<S> cov_c;    // camera-space 3D covariance W M M^T W^T
    S J[2][3];        // Jacobian of the projection (at the clamped point)
    bool clamped_x, clamped_y;
    S cov2d[3];       // blurred 2D covariance (a, b, c)
    S det;
};

template <typename S>
void projection_terms(const PinholeView<S> &view, const S *mean, const S *quat, const S *scale,
                      S eps2d, ProjectionTerms<S> &pt) {
    for (int i = 0; i < 3; ++i) {
        pt.p[i] = view.R.m[i][0] * mean[0] + view.R.m[i][1] * mean[1] + view.R.m[i][2] * mean[2] + view.t[i];
    }
    pt.rot = quat_to_rotmat(quat, pt.qn, pt.inv_norm);
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) pt.M.m[i][j] = pt.rot.m[i][j] * scale[j];
    const Mat3<S> WM = matmul(view.R, pt.M);
    pt.cov_c = matmul(WM, transpose(WM));
    const S z = pt.p[2], rz = S(1) / z;
    const S u = pt.p[0] * rz, v = pt.p[1] * rz;
    pt.clamped_x = !(u <= view.lim_x_pos && u >= -view.lim_x_neg);
    pt.clamped_y = !(v <= view.lim_y_pos && v >= -view.lim_y_neg);
    const S jx = z * std::min(view.lim_x_pos, std::max(-view.lim_x_neg, u));
    const S jy = z * std::min(view.lim_y_pos, std::max(-view.lim_y_neg, v));
    pt.J[0][0] = view.fx * rz; pt.J[0][1] = 0; pt.J[0][2] = -view.fx * jx * rz * rz;
    pt.J[1][0] = 0; pt.J[1][1] = view.fy * rz; pt.J[1][2] = -view.fy * jy * rz * rz;
    S JS[2][3];  // J * cov_c
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
            JS[i][j] = pt.J[i][0] * pt.cov_c.m[0][j] + pt.J[i][1] * pt.cov_c.m[1][j] + pt.J[i][2] * pt.cov_c.m[2][j];
    auto jsj = [&](int i, int k) { return JS[i][0] * pt.J[k][0] + JS[i][1] * pt.J[k][1] + JS[i][2] * pt.J[k][2]; };
    pt.cov2d[0] = jsj(0, 0) + eps2d;
    pt.cov2d[1] = jsj(0, 1);
    pt.cov2d[2] = jsj(1, 1) + eps2d;
    pt.det = pt.cov2d[0] * pt.cov2d[2] - pt.cov2d[1] * pt.cov2d[1];
}

// Forward of one (view, Gaussian): writes means2d, conic, depth, radii; radii (0, 0) = culled.
template <typename S>
void project_one(const PinholeView<S> &view, const S *mean, const S *quat, const S *scale,
                 S opacity, int64_t width, int64_t height, S eps2d, S near_plane, S far_plane,
                 S *mean2d, S *conic, S *depth, int32_t *radii) {
    radii[0] = radii[1] = 0;
    mean2d[0] = mean2d[1] = 0;
    conic[0] = conic[1] = conic[2] = 0;
    const S z = view.R.m[2][0] * mean[0] + view.R.m[2][1] * mean[1] + view.R.m[2][2] * mean[2] + view.t[2];
    *depth = z;
    if (!(z >= near_plane && z <= far_plane)) return;
    ProjectionTerms<S> pt;
    projection_terms(view, mean, quat, scale, eps2d, pt);
    mean2d[0] = view.fx * pt.p[0] / z + view.cx;
    mean2d[1] = view.fy * pt.p[1] / z + view.cy;
    if (!(pt.det > 0)) return;
    const S inv_det = S(1) / pt.det;
    conic[0] = pt.cov2d[2] * inv_det;
    conic[1] = -pt.cov2d[1] * inv_det;
    conic[2] = pt.cov2d[0] * inv_det;
    const S alpha_thr = static_cast<S>(kAlphaThreshold);
    if (!(opacity >= alpha_thr)) return;
    const S extend = std::min(S(3.33), std::sqrt(S(2) * std::log(opacity / alpha_thr)));
    const S radius_x = std::ceil(extend * std::sqrt(pt.cov2d[0]));
    const S radius_y = std::ceil(extend * std::sqrt(pt.cov2d[2]));
    if (!(radius_x > 0 || radius_y > 0)) return;
    if (!(std::isfinite(radius_x) && std::isfinite(radius_y))) return;
    if (mean2d[0] + radius_x <= 0 || mean2d[0] - radius_x >= width || mean2d[1] + radius_y <= 0 ||
        mean2d[1] - radius_y >= height) return;
    radii[0] = static_cast<int32_t>(radius_x);
    radii[1] = static_cast<int32_t>(radius_y);
}

// Vector-Jacobian product of project_one for a drawn Gaussian: accumulates into v_mean,
// v_quat, v_scale given dL/d mean2d, dL/d conic (a, b, c as used by the rasterizer), dL/d depth.
template <typename S>
void project_one_vjp(const PinholeView<S> &view, const S *mean, const S *quat, const S *scale,
                     S eps2d, const S *conic, const S *v_mean2d, const S *v_conic, S v_depth,
                     S *v_mean, S *v_quat, S *v_scale) {
    ProjectionTerms<S> pt;
    projection_terms(view, mean, quat, scale, eps2d, pt);
    // conic = cov2d^-1: dL/dcov2d = -Q G Q, G the symmetric gradient w.r.t. Q.
    const S Q[2][2] = {{conic[0], conic[1]}, {conic[1], conic[2]}};
    const S G[2][2] = {{v_conic[0], S(0.5) * v_conic[1]}, {S(0.5) * v_conic[1], v_conic[2]}};
    S QG[2][2], V[2][2];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) QG[i][j] = Q[i][0] * G[0][j] + Q[i][1] * G[1][j];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) V[i][j] = -(QG[i][0] * Q[0][j] + QG[i][1] * Q[1][j]);
    // cov2d = J cov_c J^T: dL/dcov_c = J^T V J, dL/dJ = 2 V J cov_c.
    Mat3<S> v_cov_c;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
            S acc = 0;
            for (int a = 0; a < 2; ++a)
                for (int b = 0; b < 2; ++b) acc += pt.J[a][i] * V[a][b] * pt.J[b][j];
            v_cov_c.m[i][j] = acc;
        }
    S v_J[2][3];
    for (int a = 0; a < 2; ++a)
        for (int j = 0; j < 3; ++j) {
            S acc = 0;
            for (int b = 0; b < 2; ++b)
                for (int k = 0; k < 3; ++k) acc += V[a][b] * pt.J[b][k] * pt.cov_c.m[k][j];
            v_J[a][j] = 2 * acc;
        }
    // Camera-space mean: through mean2d, the Jacobian entries and the depth.
    const S x = pt.p[0], y = pt.p[1], z = pt.p[2];
    const S rz = S(1) / z, rz2 = rz * rz, rz3 = rz2 * rz;
    S v_p[3] = {view.fx * rz * v_mean2d[0], view.fy * rz * v_mean2d[1],
                -(view.fx * x * v_mean2d[0] + view.fy * y * v_mean2d[1]) * rz2 + v_depth};
    const S jx = -pt.J[0][2] * z * z / view.fx, jy = -pt.J[1][2] * z * z / view.fy;  // clamped x, y
    v_p[2] += -view.fx * rz2 * v_J[0][0] - view.fy * rz2 * v_J[1][1];
    // J02 = -fx jx / z^2 with jx = x (free) or z * limit (clamped).
    if (pt.clamped_x) {
        v_p[2] += view.fx * jx * rz3 * v_J[0][2];
    } else {
        v_p[0] += -view.fx * rz2 * v_J[0][2];
        v_p[2] += 2 * view.fx * jx * rz3 * v_J[0][2];
    }
    if (pt.clamped_y) {
        v_p[2] += view.fy * jy * rz3 * v_J[1][2];
    } else {
        v_p[1] += -view.fy * rz2 * v_J[1][2];
        v_p[2] += 2 * view.fy * jy * rz3 * v_J[1][2];
    }
    // p = W mean + t;  cov_c = W Sigma W^T.
    for (int j = 0; j < 3; ++j) v_mean[j] += view.R.m[0][j] * v_p[0] + view.R.m[1][j] * v_p[1] + view.R.m[2][j] * v_p[2];
    const Mat3<S> v_sigma = matmul(matmul(transpose(view.R), v_cov_c), view.R);
    // Sigma = M M^T: dL/dM = (G + G^T) M.
    Mat3<S> v_sigma_sym;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) v_sigma_sym.m[i][j] = v_sigma.m[i][j] + v_sigma.m[j][i];
    const Mat3<S> v_M = matmul(v_sigma_sym, pt.M);
    // M = rot diag(scale).
    Mat3<S> v_rot;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) v_rot.m[i][j] = v_M.m[i][j] * scale[j];
    for (int j = 0; j < 3; ++j) v_scale[j] += v_M.m[0][j] * pt.rot.m[0][j] + v_M.m[1][j] * pt.rot.m[1][j] + v_M.m[2][j] * pt.rot.m[2][j];
    // rot(q_n), q_n = q / |q|.
    const S w = pt.qn[0], qx = pt.qn[1], qy = pt.qn[2], qz = pt.qn[3];
    const auto &g = v_rot.m;
    const S v_qn[4] = {
        2 * (-qz * g[0][1] + qy * g[0][2] + qz * g[1][0] - qx * g[1][2] - qy * g[2][0] + qx * g[2][1]),
        2 * (qy * g[0][1] + qz * g[0][2] + qy * g[1][0] - 2 * qx * g[1][1] - w * g[1][2] + qz * g[2][0] + w * g[2][1] - 2 * qx * g[2][2]),
        2 * (-2 * qy * g[0][0] + qx * g[0][1] + w * g[0][2] + qx * g[1][0] + qz * g[1][2] - w * g[2][0] + qz * g[2][1] - 2 * qy * g[2][2]),
        2 * (-2 * qz * g[0][0] - w * g[0][1] + qx * g[0][2] + w * g[1][0] - 2 * qz * g[1][1] + qy * g[1][2] + qx * g[2][0] + qy * g[2][1]),
    };
    const S dot = v_qn[0] * w + v_qn[1] * qx + v_qn[2] * qy + v_qn[3] * qz;
    for (int i = 0; i < 4; ++i) v_quat[i] += (v_qn[i] - dot * pt.qn[i]) * pt.inv_norm;
}

}  // namespace skyfall
