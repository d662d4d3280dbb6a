// Tile-based CPU rasterizer for 3D Gaussian splats, with the maths of gsplat 1.5
// (rasterize_to_pixels_3dgs fwd/bwd): 16x16 tiles, per-tile lists sorted front to back,
// alpha = min(0.999, opacity * exp(-sigma)), skip alpha < 1/255, stop before the Gaussian that
// would bring the transmittance to <= 1e-4, pixel centres at (x + 0.5, y + 0.5).
//
// CPU specifics (the results are those of the GPU kernel):
//  * each Gaussian carries a pixel box outside which its alpha is < 1/255 (computed from its
//    conic and opacity, with a small safety margin), so a tile only visits the pixels it can
//    touch; rows are cut into chunks of one native vector register (8 floats with AVX2 and
//    AVX-512, 4 with SSE2/NEON) written with GCC/Clang vector extensions (kernels.h), and
//    chunks outside the box are skipped.
//  * subnormals are flushed to zero on the worker threads while they composite (x86).
//  * threads (ATen's intra-op pool) take (camera, tile) jobs from an atomic counter.
//  * the backward pass writes one gradient record per intersection (no atomics), then sums
//    them per Gaussian in a fixed order, so gradients are deterministic.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <atomic>
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif
#include <string>
#include <limits>
#include <vector>

#include "kernels.h"

namespace skyfall {
namespace {

// Flush-to-zero and denormals-are-zero on this thread while in scope (x86 MXCSR bits 15 and
// 6), restored on exit. The tile kernels evaluate exp(-sigma) on every lane of a chunk, also
// where the Gaussian is negligible (masked out afterwards); products of such tiny values can
// be subnormal, and x86 cores take a microcode assist (~100+ cycles) per subnormal result.
// Only values below 1.2e-38 change, far below anything the renderer keeps. On ARM the cores
// handle subnormals in hardware, so nothing is changed there.
class FlushDenormals {
  public:
    FlushDenormals() {
#if defined(__SSE__) || defined(__x86_64__)
        saved_ = _mm_getcsr();
        _mm_setcsr(saved_ | 0x8040u);
#endif
    }
    ~FlushDenormals() {
#if defined(__SSE__) || defined(__x86_64__)
        _mm_setcsr(saved_);
#endif
    }
    FlushDenormals(const FlushDenormals &) = delete;
    FlushDenormals &operator=(const FlushDenormals &) = delete;

  private:
    unsigned int saved_ = 0;
};

// Runs job(j) for j in [0, n_jobs) on ATen's thread pool, handing jobs out dynamically
// (with subnormals flushed on the worker threads while they run jobs).
template <typename F>
void parallel_jobs(int64_t n_jobs, const F &job) {
    std::atomic<int64_t> next{0};
    const int64_t n_workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n_jobs));
    at::parallel_for(0, n_workers, 1, [&](int64_t begin, int64_t end) {
        const FlushDenormals flush;
        for (int64_t w = begin; w < end; ++w) {
            for (int64_t j = next.fetch_add(1); j < n_jobs; j = next.fetch_add(1)) {
                job(j);
            }
        }
    });
}

void check_projection_inputs(const at::Tensor &means, const at::Tensor &quats,
                             const at::Tensor &scales, const at::Tensor &opacities,
                             const at::Tensor &viewmats, const at::Tensor &Ks) {
    TORCH_CHECK(means.dim() == 2 && means.size(1) == 3, "means must be [N, 3], got ", means.sizes());
    const int64_t N = means.size(0);
    TORCH_CHECK(quats.sizes() == at::IntArrayRef({N, 4}), "quats must be [N, 4], got ", quats.sizes());
    TORCH_CHECK(scales.sizes() == at::IntArrayRef({N, 3}), "scales must be [N, 3], got ", scales.sizes());
    TORCH_CHECK(opacities.sizes() == at::IntArrayRef({N}), "opacities must be [N], got ", opacities.sizes());
    TORCH_CHECK(viewmats.dim() == 3 && viewmats.size(1) == 4 && viewmats.size(2) == 4,
                "viewmats must be [C, 4, 4], got ", viewmats.sizes());
    TORCH_CHECK(Ks.sizes() == at::IntArrayRef({viewmats.size(0), 3, 3}), "Ks must be [C, 3, 3], got ", Ks.sizes());
    for (const at::Tensor *t : {&means, &quats, &scales, &opacities, &viewmats, &Ks}) {
        TORCH_CHECK(t->is_contiguous() && t->device().is_cpu() && t->scalar_type() == means.scalar_type(),
                    "projection inputs must be contiguous CPU tensors of one dtype");
    }
}

// Sorts the visible Gaussians of each camera by depth and fills the per-tile lists.
template <typename S>
void bin_impl(const S *means2d, const S *conics, const S *opacities, const int32_t *radii,
              const S *depths, const TileGrid &grid, at::Tensor &offsets_t,
              at::Tensor &flatten_ids_t, at::Tensor &boxes_t) {
    using Key = decltype(sort_key(S(0)));
    const int64_t C = grid.C, N = grid.N, T = grid.n_tiles;
    int32_t *boxes = boxes_t.data_ptr<int32_t>();
    int64_t *offsets = offsets_t.data_ptr<int64_t>();
    at::parallel_for(0, C * N, 4096, [&](int64_t begin, int64_t end) {
        for (int64_t cg = begin; cg < end; ++cg) {
            int32_t *box = boxes + cg * 4;
            if (radii[cg * 2] > 0 && radii[cg * 2 + 1] > 0) {
                alpha_box(means2d + cg * 2, conics + cg * 3, opacities[cg], grid.width,
                          grid.height, box);
            } else {
                box[0] = 1; box[1] = 0; box[2] = 1; box[3] = 0;  // empty: culled
            }
        }
    });
    std::vector<int64_t> counts(C * T + 1, 0);
    std::vector<std::vector<int32_t>> orders(C);  // visible Gaussians per camera, front to back
    std::vector<std::vector<int32_t>> rects(C);   // their tile rectangles, in that order
    for (int64_t cam = 0; cam < C; ++cam) {
        std::vector<Key> keys;
        std::vector<int32_t> &order = orders[cam];
        keys.reserve(N);
        order.reserve(N);
        for (int64_t g = 0; g < N; ++g) {
            const int64_t cg = cam * N + g;
            if (radii[cg * 2] > 0 && radii[cg * 2 + 1] > 0) {
                keys.push_back(sort_key(depths[cg]));
                order.push_back(static_cast<int32_t>(g));
            }
        }
        if (!order.empty()) radix_argsort(keys, order);
        const int64_t n_visible = static_cast<int64_t>(order.size());
        std::vector<int32_t> &rect = rects[cam];
        rect.resize(n_visible * 4);
        at::parallel_for(0, n_visible, 4096, [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) {
                const int64_t cg = cam * N + order[i];
                tile_rect(means2d + cg * 2, radii + cg * 2, grid, rect.data() + i * 4);
            }
        });
        int64_t *cam_counts = counts.data() + cam * T + 1;
        for (int64_t i = 0; i < n_visible; ++i) {
            const int32_t *r = rect.data() + i * 4;
            for (int32_t ty = r[2]; ty < r[3]; ++ty) {
                for (int32_t tx = r[0]; tx < r[1]; ++tx) ++cam_counts[ty * grid.tiles_x + tx];
            }
        }
    }
    for (int64_t i = 0; i < C * T; ++i) counts[i + 1] += counts[i];
    TORCH_CHECK(counts[C * T] < std::numeric_limits<int32_t>::max(),
                "too many tile entries (", counts[C * T], "): render fewer cameras at once");
    std::memcpy(offsets, counts.data(), sizeof(int64_t) * (C * T + 1));
    flatten_ids_t = at::empty({counts[C * T]}, offsets_t.options().dtype(at::kInt));
    int32_t *flatten_ids = flatten_ids_t.data_ptr<int32_t>();
    for (int64_t cam = 0; cam < C; ++cam) {  // filled in depth order: each tile list is sorted
        int64_t *cursor = counts.data() + cam * T;
        const std::vector<int32_t> &rect = rects[cam];
        for (size_t i = 0; i < orders[cam].size(); ++i) {
            const int32_t *r = rect.data() + i * 4;
            const int32_t id = static_cast<int32_t>(cam * N + orders[cam][i]);
            for (int32_t ty = r[2]; ty < r[3]; ++ty) {
                for (int32_t tx = r[0]; tx < r[1]; ++tx) flatten_ids[cursor[ty * grid.tiles_x + tx]++] = id;
            }
        }
    }
}

void check_inputs(const at::Tensor &means2d, const at::Tensor &conics, const at::Tensor &colors,
                  const at::Tensor &opacities, const c10::optional<at::Tensor> &backgrounds) {
    TORCH_CHECK(means2d.dim() == 3 && means2d.size(2) == 2, "means2d must be [C, N, 2], got ",
                means2d.sizes());
    const int64_t C = means2d.size(0), N = means2d.size(1);
    TORCH_CHECK(conics.sizes() == at::IntArrayRef({C, N, 3}), "conics must be [C, N, 3], got ",
                conics.sizes());
    TORCH_CHECK(colors.dim() == 3 && colors.size(0) == C && colors.size(1) == N &&
                    colors.size(2) >= 1 && colors.size(2) <= 4,
                "colors must be [C, N, D] with 1 <= D <= 4, got ", colors.sizes());
    TORCH_CHECK(opacities.sizes() == at::IntArrayRef({C, N}), "opacities must be [C, N], got ",
                opacities.sizes());
    for (const at::Tensor *t : {&means2d, &conics, &colors, &opacities}) {
        TORCH_CHECK(t->is_contiguous() && t->device().is_cpu(), "inputs must be contiguous CPU tensors");
        TORCH_CHECK(t->scalar_type() == means2d.scalar_type(), "inputs must share one dtype");
    }
    if (backgrounds.has_value()) {
        TORCH_CHECK(backgrounds->sizes() == at::IntArrayRef({C, colors.size(2)}),
                    "backgrounds must be [C, D], got ", backgrounds->sizes());
        TORCH_CHECK(backgrounds->is_contiguous() &&
                        backgrounds->scalar_type() == means2d.scalar_type(),
                    "backgrounds must be contiguous with the dtype of the other inputs");
    }
}

#define SKYFALL_DISPATCH_CHANNELS(D, ...)                    \
    switch (D) {                                              \
    case 1: { constexpr int kD = 1; __VA_ARGS__(); break; }   \
    case 2: { constexpr int kD = 2; __VA_ARGS__(); break; }   \
    case 3: { constexpr int kD = 3; __VA_ARGS__(); break; }   \
    case 4: { constexpr int kD = 4; __VA_ARGS__(); break; }   \
    default: TORCH_CHECK(false, "unsupported channel count ", D); \
    }

}  // namespace

// Tile lists: returns (offsets [C * n_tiles + 1] int64, flatten_ids [n_isects] int32 holding
// camera * N + gaussian, boxes [C, N, 4] int32 pixel boxes x0, x1, y0, y1 inclusive).
std::vector<at::Tensor> bin_gaussians(const at::Tensor &means2d, const at::Tensor &conics,
                                      const at::Tensor &opacities, const at::Tensor &radii,
                                      const at::Tensor &depths, int64_t width, int64_t height) {
    TORCH_CHECK(means2d.dim() == 3 && means2d.size(2) == 2, "means2d must be [C, N, 2], got ",
                means2d.sizes());
    const int64_t C = means2d.size(0), N = means2d.size(1);
    TORCH_CHECK(radii.sizes() == at::IntArrayRef({C, N, 2}) && radii.scalar_type() == at::kInt &&
                    radii.is_contiguous(),
                "radii must be contiguous int32 [C, N, 2], got ", radii.sizes());
    TORCH_CHECK(depths.sizes() == at::IntArrayRef({C, N}) && depths.is_contiguous(),
                "depths must be contiguous [C, N], got ", depths.sizes());
    TORCH_CHECK(depths.scalar_type() == means2d.scalar_type(), "depths must share the dtype");
    TORCH_CHECK(conics.sizes() == at::IntArrayRef({C, N, 3}) && conics.is_contiguous() &&
                    conics.scalar_type() == means2d.scalar_type(),
                "conics must be contiguous [C, N, 3], got ", conics.sizes());
    TORCH_CHECK(opacities.sizes() == at::IntArrayRef({C, N}) && opacities.is_contiguous() &&
                    opacities.scalar_type() == means2d.scalar_type(),
                "opacities must be contiguous [C, N], got ", opacities.sizes());
    TORCH_CHECK(means2d.is_contiguous(), "means2d must be contiguous");
    TORCH_CHECK(C * N < std::numeric_limits<int32_t>::max(), "C * N must fit in int32, got ", C * N);
    TileGrid grid(C, N, width, height);
    auto int_opts = means2d.options().dtype(at::kLong);
    at::Tensor offsets = at::zeros({C * grid.n_tiles + 1}, int_opts);
    at::Tensor flatten_ids = at::empty({0}, means2d.options().dtype(at::kInt));
    at::Tensor boxes = at::empty({C, N, 4}, means2d.options().dtype(at::kInt));
    AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "bin_gaussians", [&] {
        bin_impl<scalar_t>(means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(),
                           opacities.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(),
                           depths.data_ptr<scalar_t>(), grid, offsets, flatten_ids, boxes);
    });
    return {offsets, flatten_ids, boxes};
}

// Forward: (colors [C, H, W, D], alphas [C, H, W], last_ids [C, H, W] int32, packed splats
// [n_isects * sizeof(PackedSplat)] uint8, to be handed to the backward pass).
std::vector<at::Tensor> rasterize_forward(const at::Tensor &means2d, const at::Tensor &conics,
                                          const at::Tensor &colors, const at::Tensor &opacities,
                                          const c10::optional<at::Tensor> &backgrounds,
                                          const at::Tensor &boxes, const at::Tensor &offsets,
                                          const at::Tensor &flatten_ids, int64_t width,
                                          int64_t height) {
    check_inputs(means2d, conics, colors, opacities, backgrounds);
    const int64_t C = means2d.size(0), N = means2d.size(1), D = colors.size(2);
    TileGrid grid(C, N, width, height);
    TORCH_CHECK(offsets.numel() == C * grid.n_tiles + 1, "offsets do not match the image size");
    TORCH_CHECK(boxes.sizes() == at::IntArrayRef({C, N, 4}), "boxes must be [C, N, 4]");
    const int64_t n_isects = flatten_ids.numel();
    at::Tensor out_colors = at::empty({C, height, width, D}, colors.options());
    at::Tensor out_alphas = at::empty({C, height, width}, colors.options());
    at::Tensor last_ids = at::empty({C, height, width}, colors.options().dtype(at::kInt));
    at::Tensor packed;
    AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "rasterize_forward", [&] {
        using S = scalar_t;
        packed = at::empty({n_isects * static_cast<int64_t>(sizeof(PackedSplat<S>))},
                           colors.options().dtype(at::kByte));
        auto *splats = reinterpret_cast<PackedSplat<S> *>(packed.data_ptr<uint8_t>());
        const int32_t *ids = flatten_ids.data_ptr<int32_t>();
        // data_ptr() checks the dtype on every call: fetch the pointers once, not per entry.
        const S *means2d_p = means2d.data_ptr<S>(), *conics_p = conics.data_ptr<S>();
        const S *colors_p = colors.data_ptr<S>(), *opacities_p = opacities.data_ptr<S>();
        const int32_t *boxes_p = boxes.data_ptr<int32_t>();
        SKYFALL_DISPATCH_CHANNELS(D, [&] {
            at::parallel_for(0, n_isects, 16384, [&](int64_t begin, int64_t end) {
                for (int64_t k = begin; k < end; ++k) {
                    pack_splat<S, kD>(means2d_p, conics_p, colors_p, opacities_p, boxes_p, ids[k],
                                      splats[k]);
                }
            });
            const TileInputs<S> in{splats,
                                   backgrounds.has_value() ? backgrounds->data_ptr<S>() : nullptr,
                                   offsets.data_ptr<int64_t>()};
            S *colors_out = out_colors.data_ptr<S>(), *alphas_out = out_alphas.data_ptr<S>();
            int32_t *last_out = last_ids.data_ptr<int32_t>();
            parallel_jobs(C * grid.n_tiles, [&](int64_t job) {
                forward_tile<S, kD>(in, grid, job, colors_out, alphas_out, last_out);
            });
        });
    });
    return {out_colors, out_alphas, last_ids, packed};
}

// Backward: (v_means2d [C, N, 2], v_conics [C, N, 3], v_colors [C, N, D], v_opacities [C, N]).
std::vector<at::Tensor> rasterize_backward(
    const at::Tensor &packed, const c10::optional<at::Tensor> &backgrounds,
    const at::Tensor &offsets, const at::Tensor &flatten_ids, int64_t C, int64_t N, int64_t D,
    int64_t width, int64_t height, const at::Tensor &out_alphas, const at::Tensor &last_ids,
    const at::Tensor &v_out_colors, const at::Tensor &v_out_alphas) {
    TileGrid grid(C, N, width, height);
    TORCH_CHECK(D >= 1 && D <= 4, "D must be in 1..4, got ", D);
    TORCH_CHECK(out_alphas.numel() == C * height * width && out_alphas.is_contiguous(),
                "alphas must be contiguous [C, H, W], got ", out_alphas.sizes());
    TORCH_CHECK(last_ids.numel() == C * height * width && last_ids.scalar_type() == at::kInt,
                "last_ids must be int32 [C, H, W], got ", last_ids.sizes());
    TORCH_CHECK(v_out_colors.sizes() == at::IntArrayRef({C, height, width, D}) &&
                    v_out_colors.is_contiguous() &&
                    v_out_colors.scalar_type() == out_alphas.scalar_type(),
                "v_colors must be contiguous [C, H, W, D], got ", v_out_colors.sizes());
    TORCH_CHECK(v_out_alphas.numel() == C * height * width && v_out_alphas.is_contiguous() &&
                    v_out_alphas.scalar_type() == out_alphas.scalar_type(),
                "v_alphas must be contiguous [C, H, W(, 1)], got ", v_out_alphas.sizes());
    TORCH_CHECK(offsets.numel() == C * grid.n_tiles + 1, "offsets do not match the image size");
    const int64_t n_isects = flatten_ids.numel();
    const auto options = out_alphas.options();
    at::Tensor v_means2d = at::zeros({C, N, 2}, options);
    at::Tensor v_conics = at::zeros({C, N, 3}, options);
    at::Tensor v_colors = at::zeros({C, N, D}, options);
    at::Tensor v_opacities = at::zeros({C, N}, options);
    AT_DISPATCH_FLOATING_TYPES(out_alphas.scalar_type(), "rasterize_backward", [&] {
        using S = scalar_t;
        TORCH_CHECK(packed.numel() == n_isects * static_cast<int64_t>(sizeof(PackedSplat<S>)),
                    "packed splats do not match flatten_ids (use the forward's output)");
        const TileInputs<S> in{reinterpret_cast<const PackedSplat<S> *>(packed.data_ptr<uint8_t>()),
                               backgrounds.has_value() ? backgrounds->data_ptr<S>() : nullptr,
                               offsets.data_ptr<int64_t>()};
        const int32_t *ids = flatten_ids.data_ptr<int32_t>();
        SKYFALL_DISPATCH_CHANNELS(D, [&] {
            constexpr int R = kRecord<kD>;
            at::Tensor v_isect = at::empty({n_isects, R}, options);  // every record is written
            S *vi = v_isect.data_ptr<S>();
            const S *alphas_p = out_alphas.data_ptr<S>(), *v_colors_p = v_out_colors.data_ptr<S>();
            const S *v_alphas_p = v_out_alphas.data_ptr<S>();
            const int32_t *last_p = last_ids.data_ptr<int32_t>();
            parallel_jobs(C * grid.n_tiles, [&](int64_t job) {
                backward_tile<S, kD>(in, grid, job, alphas_p, last_p, v_colors_p, v_alphas_p, vi);
            });
            S *vm = v_means2d.data_ptr<S>();
            S *vc = v_conics.data_ptr<S>();
            S *vr = v_colors.data_ptr<S>();
            S *vo = v_opacities.data_ptr<S>();
            // Sum the records per Gaussian in a fixed order; cameras own disjoint ranges.
            at::parallel_for(0, C, 1, [&](int64_t c0, int64_t c1) {
                for (int64_t cam = c0; cam < c1; ++cam) {
                    const int64_t k0 = in.offsets[cam * grid.n_tiles];
                    const int64_t k1 = in.offsets[(cam + 1) * grid.n_tiles];
                    for (int64_t k = k0; k < k1; ++k) {
                        const int64_t g = ids[k];
                        const S *rec = vi + k * R;
                        vm[g * 2] += rec[0]; vm[g * 2 + 1] += rec[1];
                        vc[g * 3] += rec[2]; vc[g * 3 + 1] += rec[3]; vc[g * 3 + 2] += rec[4];
                        vo[g] += rec[5];
                        for (int ch = 0; ch < kD; ++ch) vr[g * kD + ch] += rec[6 + ch];
                    }
                }
            });
        });
    });
    return {v_means2d, v_conics, v_colors, v_opacities};
}

// Projection: (means2d [C, N, 2], conics [C, N, 3], depths [C, N], radii [C, N, 2] int32).
std::vector<at::Tensor> project_forward(const at::Tensor &means, const at::Tensor &quats,
                                        const at::Tensor &scales, const at::Tensor &opacities,
                                        const at::Tensor &viewmats, const at::Tensor &Ks,
                                        int64_t width, int64_t height, double eps2d,
                                        double near_plane, double far_plane) {
    const int64_t N = means.size(0), C = viewmats.size(0);
    check_projection_inputs(means, quats, scales, opacities, viewmats, Ks);
    const auto options = means.options();
    at::Tensor means2d = at::empty({C, N, 2}, options);
    at::Tensor conics = at::empty({C, N, 3}, options);
    at::Tensor depths = at::empty({C, N}, options);
    at::Tensor radii = at::empty({C, N, 2}, options.dtype(at::kInt));
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_forward", [&] {
        using S = scalar_t;
        std::vector<PinholeView<S>> views;
        for (int64_t cam = 0; cam < C; ++cam) {
            views.push_back(make_view(viewmats.data_ptr<S>() + cam * 16, Ks.data_ptr<S>() + cam * 9, width, height));
        }
        const S *mu = means.data_ptr<S>(), *q = quats.data_ptr<S>(), *s = scales.data_ptr<S>();
        const S *op = opacities.data_ptr<S>();
        S *m2 = means2d.data_ptr<S>(), *co = conics.data_ptr<S>(), *de = depths.data_ptr<S>();
        int32_t *ra = radii.data_ptr<int32_t>();
        at::parallel_for(0, C * N, 2048, [&](int64_t begin, int64_t end) {
            for (int64_t cg = begin; cg < end; ++cg) {
                const int64_t cam = cg / N, g = cg % N;
                project_one(views[cam], mu + g * 3, q + g * 4, s + g * 3, op[g], width, height,
                            static_cast<S>(eps2d), static_cast<S>(near_plane),
                            static_cast<S>(far_plane), m2 + cg * 2, co + cg * 3, de + cg, ra + cg * 2);
            }
        });
    });
    return {means2d, conics, depths, radii};
}

// Projection backward: (v_means [N, 3], v_quats [N, 4], v_scales [N, 3]); culled entries
// (radii 0) get no gradient except through the depth, as in the PyTorch reference.
std::vector<at::Tensor> project_backward(const at::Tensor &means, const at::Tensor &quats,
                                         const at::Tensor &scales, const at::Tensor &viewmats,
                                         const at::Tensor &Ks, int64_t width, int64_t height,
                                         double eps2d, const at::Tensor &radii,
                                         const at::Tensor &conics, const at::Tensor &v_means2d,
                                         const at::Tensor &v_conics, const at::Tensor &v_depths) {
    const int64_t N = means.size(0), C = viewmats.size(0);
    check_projection_inputs(means, quats, scales, quats.new_empty({N}), viewmats, Ks);
    for (const at::Tensor *t : {&radii, &conics, &v_means2d, &v_conics, &v_depths}) {
        TORCH_CHECK(t->is_contiguous() && t->size(0) == C && t->size(1) == N,
                    "projection gradients must be contiguous [C, N, ...]");
    }
    at::Tensor v_means = at::zeros({N, 3}, means.options());
    at::Tensor v_quats = at::zeros({N, 4}, means.options());
    at::Tensor v_scales = at::zeros({N, 3}, means.options());
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_backward", [&] {
        using S = scalar_t;
        std::vector<PinholeView<S>> views;
        for (int64_t cam = 0; cam < C; ++cam) {
            views.push_back(make_view(viewmats.data_ptr<S>() + cam * 16, Ks.data_ptr<S>() + cam * 9, width, height));
        }
        const S *mu = means.data_ptr<S>(), *q = quats.data_ptr<S>(), *s = scales.data_ptr<S>();
        const int32_t *ra = radii.data_ptr<int32_t>();
        const S *co = conics.data_ptr<S>(), *vm2 = v_means2d.data_ptr<S>();
        const S *vco = v_conics.data_ptr<S>(), *vde = v_depths.data_ptr<S>();
        S *vmu = v_means.data_ptr<S>(), *vq = v_quats.data_ptr<S>(), *vs = v_scales.data_ptr<S>();
        at::parallel_for(0, N, 2048, [&](int64_t begin, int64_t end) {
            for (int64_t g = begin; g < end; ++g) {
                for (int64_t cam = 0; cam < C; ++cam) {
                    const int64_t cg = cam * N + g;
                    if (ra[cg * 2] > 0 && ra[cg * 2 + 1] > 0) {
                        project_one_vjp(views[cam], mu + g * 3, q + g * 4, s + g * 3,
                                        static_cast<S>(eps2d), co + cg * 3, vm2 + cg * 2,
                                        vco + cg * 3, vde[cg], vmu + g * 3, vq + g * 4, vs + g * 3);
                    } else {
                        // Culled: only the depth is still a function of the mean.
                        for (int j = 0; j < 3; ++j) vmu[g * 3 + j] += views[cam].R.m[2][j] * vde[cg];
                    }
                }
            }
        });
    });
    return {v_means, v_quats, v_scales};
}

// The instruction-set macros the compiler defined for this translation unit: what -march
// really gave the kernels (reported by `bench raster` and checked by the tests).
std::vector<std::string> isa_macros() {
    std::vector<std::string> out;
#ifdef __SSE2__
    out.push_back("__SSE2__");
#endif
#ifdef __AVX__
    out.push_back("__AVX__");
#endif
#ifdef __AVX2__
    out.push_back("__AVX2__");
#endif
#ifdef __FMA__
    out.push_back("__FMA__");
#endif
#ifdef __F16C__
    out.push_back("__F16C__");
#endif
#ifdef __AVX512F__
    out.push_back("__AVX512F__");
#endif
#ifdef __AVX512VL__
    out.push_back("__AVX512VL__");
#endif
#ifdef __AVX512BW__
    out.push_back("__AVX512BW__");
#endif
#ifdef __AVX512DQ__
    out.push_back("__AVX512DQ__");
#endif
#ifdef __ARM_NEON
    out.push_back("__ARM_NEON");
#endif
#ifdef __ARM_FEATURE_FMA
    out.push_back("__ARM_FEATURE_FMA");
#endif
#ifdef __ARM_FEATURE_SVE
    out.push_back("__ARM_FEATURE_SVE");
#endif
    return out;
}

}  // namespace skyfall

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "Skyfall Studio: tile-based CPU rasterizer for 3D Gaussian splats (gsplat maths)";
    m.def("bin_gaussians", &skyfall::bin_gaussians,
          "Per-tile depth-sorted Gaussian lists and pixel boxes");
    m.def("rasterize_forward", &skyfall::rasterize_forward, "Alpha-composite Gaussians to pixels");
    m.def("rasterize_backward", &skyfall::rasterize_backward,
          "Gradients of rasterize_forward w.r.t. means2d, conics, colors, opacities");
    m.def("project_forward", &skyfall::project_forward, "EWA projection of 3D Gaussians");
    m.def("project_backward", &skyfall::project_backward, "Gradients of project_forward");
    m.def("tile_size", [] { return skyfall::kTile; });
    m.def("isa_macros", &skyfall::isa_macros,
          "Instruction-set macros the compiler defined for this build (__AVX512F__, __AVX2__, ...)");
    m.def("vector_bytes", [] { return skyfall::kVecBytes; },
          "Width of the tile kernels' vectors in bytes (32: AVX2/AVX-512, 16: SSE2/NEON)");
}
