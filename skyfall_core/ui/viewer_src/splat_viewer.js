// Skyfall Studio splat viewer: the entry point that scripts/vendor_js.sh bundles (with three.js and
// Spark, @sparkjsdev/spark) into static/vendor/splat-viewer/splat-viewer.js, one IIFE with no
// imports and no other file to fetch (Spark's WASM is base64-inlined and its worker starts from a
// Blob URL), so that it runs from the app's static files and inlined in a Share HTML from file://.
//
//   window.SkyfallViewer.mount(element, {
//     url: "…/scene.spz",               // or data: ArrayBuffer (the Share export)
//     format: "spz" | "ply" | "splat",  // .spz (RUB axes, as the pipeline writes it), 3DGS (compressed)
//                                       // PLY in local ENU, or antimatter15 .splat in local ENU
//     position: [x, y, z],              // initial camera position, scene metres (local ENU, z up)
//     lookAt: [x, y, z],                // initial orbit centre
//     georef: {lat, lon, h} | null,     // ENU origin (georef.json): the cursor readout in lon/lat/h
//     cameras: [{name, position, lookAt, fov}],  // extra camera presets (the rounds' cameras)
//     expose: true,                     // false: no window.skyfallViewer / skyfallViewerState (linked viewers)
//   })
//   window.SkyfallViewer.mountLinked([elementA, elementB], [optionsA, optionsB], {offsets})
//     one viewer per element, their cameras moved together (see linkCameras), as window.skyfallPair
//
// The scene is shown in local ENU (x east, y north, z up). An .spz stores RUB (x right, y up,
// z back = east, up, south), so its mesh is turned +90 deg about x back to ENU.
// Controls: drag = orbit, right-drag = pan, wheel = zoom; W/A/S/D fly forward/left/back/right in
// the horizontal plane, Q/E down/up, Shift = 4x faster; R resets the view; the buttons are the
// camera presets (top-down, oblique from N/E/S/W, the rounds' cameras).
// Cursor: the splat under the cursor (Spark's raycast) in ENU metres and, with a georef, WGS84
// lon/lat and ellipsoidal height. ENU -> geodetic is exact (ENU -> ECEF by the tangent-plane
// rotation at the origin, ECEF -> geodetic by Bowring's method, 3 iterations: < 1 mm for any
// point within 100 km of the origin), so the readout's error is the splat's own position error.
// The viewer's state `ctx.state` = {status: "loading"|"ready"|"error", splats, error, cursor:
// {enu, lon, lat, h} | null, view: preset name}, also the page-level `window.skyfallViewerState` of a
// single (exposed) viewer, lets tests (and the app) follow it.
import { SparkRenderer, SplatFileType, SplatMesh } from "@sparkjsdev/spark";
import * as THREE from "three";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";

const FILE_TYPES = { spz: SplatFileType.SPZ, ply: SplatFileType.PLY, splat: SplatFileType.SPLAT };
const WGS84_A = 6378137.0;
const WGS84_F = 1 / 298.257223563;
const WGS84_E2 = WGS84_F * (2 - WGS84_F);

function setState(ctx, patch) {
  Object.assign(ctx.state, patch);
  if (ctx.expose) window.skyfallViewerState = Object.assign(window.skyfallViewerState || {}, patch);
}

// ----------------------------------------------------------------------------- geodesy
function geodeticToEcef(lat, lon, h) {
  const p = (lat * Math.PI) / 180, l = (lon * Math.PI) / 180;
  const sp = Math.sin(p), cp = Math.cos(p);
  const n = WGS84_A / Math.sqrt(1 - WGS84_E2 * sp * sp);
  return [(n + h) * cp * Math.cos(l), (n + h) * cp * Math.sin(l), (n * (1 - WGS84_E2) + h) * sp];
}

function ecefToGeodetic(x, y, z) {
  const lon = Math.atan2(y, x);
  const p = Math.hypot(x, y);
  let lat = Math.atan2(z, p * (1 - WGS84_E2));
  let h = 0;
  for (let i = 0; i < 3; i++) {
    const s = Math.sin(lat);
    const n = WGS84_A / Math.sqrt(1 - WGS84_E2 * s * s);
    h = p / Math.cos(lat) - n;
    lat = Math.atan2(z, p * (1 - (WGS84_E2 * n) / (n + h)));
  }
  const s = Math.sin(lat);
  const n = WGS84_A / Math.sqrt(1 - WGS84_E2 * s * s);
  h = Math.abs(lat) < 1.5 ? p / Math.cos(lat) - n : z / s - n * (1 - WGS84_E2);
  return { lat: (lat * 180) / Math.PI, lon: (lon * 180) / Math.PI, h };
}

/** ENU metres (e, n, u) at the origin {lat, lon, h} -> {lon, lat, h} (WGS84, ellipsoidal h). */
function enuToGeodetic(origin, e, n, u) {
  const p = (origin.lat * Math.PI) / 180, l = (origin.lon * Math.PI) / 180;
  const sp = Math.sin(p), cp = Math.cos(p), sl = Math.sin(l), cl = Math.cos(l);
  const o = geodeticToEcef(origin.lat, origin.lon, origin.h || 0);
  const x = o[0] - sl * e - sp * cl * n + cp * cl * u;
  const y = o[1] + cl * e - sp * sl * n + cp * sl * u;
  const z = o[2] + cp * n + sp * u;
  return ecefToGeodetic(x, y, z);
}

// ----------------------------------------------------------------------------- UI pieces
function box(element, css) {
  const el = document.createElement("div");
  el.style.cssText = "position:absolute;z-index:10;padding:4px 8px;border-radius:4px;" +
    "background:rgba(15,23,42,.78);color:#e2e8f0;font:12px/1.4 system-ui,sans-serif;" + css;
  element.appendChild(el);
  return el;
}

function northArrow(element) {
  const el = box(element, "right:8px;bottom:8px;width:44px;height:44px;padding:2px;pointer-events:none");
  el.title = "north";
  el.innerHTML = '<svg viewBox="-22 -22 44 44" width="44" height="44"><g class="rot">' +
    '<polygon points="0,-17 6,4 0,0 -6,4" fill="#f97316"/><polygon points="0,17 6,4 0,0 -6,4" fill="#64748b"/>' +
    '<text x="0" y="-6" fill="#fff" font-size="9" text-anchor="middle" dy="-12">N</text></g></svg>';
  return el.querySelector(".rot");
}

// ----------------------------------------------------------------------------- camera presets
function presetsFor(bounds, cameras) {
  const c = bounds.getCenter(new THREE.Vector3());
  const size = bounds.getSize(new THREE.Vector3());
  const half = Math.max(10, 0.5 * Math.hypot(size.x, size.y));
  const look = [c.x, c.y, bounds.min.z + 0.3 * size.z];
  const d = 2.4 * half, el = (40 * Math.PI) / 180;
  const h = d * Math.sin(el), r = d * Math.cos(el);
  const out = [
    // straight down, north up (a hair south so that "up" stays defined for the orbit controls)
    { name: "Top", title: "top-down, north up", position: [look[0], look[1] - 1e-3 * d, look[2] + 1.1 * d], lookAt: look },
    { name: "N", title: "oblique from the north", position: [look[0], look[1] + r, look[2] + h], lookAt: look },
    { name: "E", title: "oblique from the east", position: [look[0] + r, look[1], look[2] + h], lookAt: look },
    { name: "S", title: "oblique from the south", position: [look[0], look[1] - r, look[2] + h], lookAt: look },
    { name: "W", title: "oblique from the west", position: [look[0] - r, look[1], look[2] + h], lookAt: look },
  ];
  for (const cam of cameras || []) out.push(Object.assign({ title: cam.name }, cam));
  return out;
}

function applyView(ctx, view) {
  const { camera, controls } = ctx;
  camera.position.fromArray(view.position);
  controls.target.fromArray(view.lookAt);
  camera.up.set(0, 0, 1);
  if (view.fov) camera.fov = view.fov;
  else camera.fov = ctx.defaultFov;
  camera.updateProjectionMatrix();
  controls.update();
  setState(ctx, { view: view.name });
}

function toolbar(element, ctx) {
  const bar = box(element, "left:8px;top:8px;display:flex;gap:4px;flex-wrap:wrap;max-width:70%;padding:4px");
  bar.className = "skyfall-viewer-presets";
  ctx.presetBar = bar;
  return bar;
}

function fillToolbar(ctx, presets) {
  const bar = ctx.presetBar;
  bar.textContent = "";
  const rounds = [];
  for (const v of presets) {
    if (!["Top", "N", "E", "S", "W", "Home"].includes(v.name)) { rounds.push(v); continue; }
    const b = document.createElement("button");
    b.textContent = v.name;
    b.title = v.title;
    b.dataset.view = v.name;
    b.style.cssText = "font:12px system-ui;padding:2px 7px;border:1px solid #475569;border-radius:3px;" +
      "background:#1e293b;color:#e2e8f0;cursor:pointer";
    b.onclick = () => applyView(ctx, v);
    bar.appendChild(b);
  }
  if (rounds.length) {
    const s = document.createElement("select");
    s.title = "the cameras of the refinement rounds";
    s.style.cssText = "font:12px system-ui;background:#1e293b;color:#e2e8f0;border:1px solid #475569;border-radius:3px";
    s.innerHTML = '<option value="">round cameras…</option>' +
      rounds.map((v, i) => `<option value="${i}">${String(v.name).replace(/[<&>"]/g, "")}</option>`).join("");
    s.onchange = () => { if (s.value !== "") applyView(ctx, rounds[Number(s.value)]); };
    bar.appendChild(s);
  }
}

// ----------------------------------------------------------------------------- keys
function installFlyKeys(ctx, element, home) {
  const held = new Set();
  let fast = false;
  const keys = new Set(["w", "a", "s", "d", "q", "e"]);
  element.tabIndex = 0;
  element.addEventListener("keydown", (ev) => {
    const k = ev.key.toLowerCase();
    fast = ev.shiftKey;
    if (k === "r") { applyView(ctx, home); return; }
    if (keys.has(k)) { held.add(k); ev.preventDefault(); }
  });
  element.addEventListener("keyup", (ev) => { held.delete(ev.key.toLowerCase()); fast = ev.shiftKey; });
  element.addEventListener("pointerdown", () => element.focus());
  const forward = new THREE.Vector3(), right = new THREE.Vector3(), step = new THREE.Vector3();
  const up = new THREE.Vector3(0, 0, 1);
  return (dt) => {  // true when it moved the camera
    if (!held.size) return false;
    const cam = ctx.camera, target = ctx.controls.target;
    const dist = Math.max(1, cam.position.distanceTo(target));
    cam.getWorldDirection(forward);
    forward.z = 0;
    if (forward.lengthSq() < 1e-8) forward.set(0, 1, 0);
    forward.normalize();
    right.crossVectors(forward, up).normalize();
    step.set(0, 0, 0);
    if (held.has("w")) step.add(forward);
    if (held.has("s")) step.sub(forward);
    if (held.has("d")) step.add(right);
    if (held.has("a")) step.sub(right);
    if (held.has("e")) step.add(up);
    if (held.has("q")) step.sub(up);
    if (step.lengthSq() > 0) {
      step.normalize().multiplyScalar(dist * 0.6 * dt * (fast ? 4 : 1));
      cam.position.add(step);
      target.add(step);
      return true;
    }
    return false;
  };
}

// ----------------------------------------------------------------------------- cursor
function installCursor(ctx, element, readout, georef) {
  const raycaster = new THREE.Raycaster();
  const ndc = new THREE.Vector2();
  let pending = null, busy = false;
  const fmt = (v, d) => v.toFixed(d);
  function pick(clientX, clientY) {
    const r = ctx.renderer.domElement.getBoundingClientRect();
    ndc.set(((clientX - r.left) / r.width) * 2 - 1, -((clientY - r.top) / r.height) * 2 + 1);
    raycaster.setFromCamera(ndc, ctx.camera);
    const hits = ctx.mesh ? raycaster.intersectObject(ctx.mesh, false) : [];
    if (!hits.length) return null;
    const p = hits[0].point;
    const out = { enu: [p.x, p.y, p.z] };
    if (georef) Object.assign(out, enuToGeodetic(georef, p.x, p.y, p.z));
    return out;
  }
  function show(hit) {
    setState(ctx, { cursor: hit });
    if (!hit) { readout.textContent = georef ? "cursor: —" : "cursor: — (no georef.json: ENU only)"; return; }
    const [e, n, u] = hit.enu;
    readout.textContent = (georef
      ? `lon ${fmt(hit.lon, 6)}° lat ${fmt(hit.lat, 6)}° h ${fmt(hit.h, 1)} m (WGS84 ellipsoid) · `
      : "") + `E ${fmt(e, 1)} N ${fmt(n, 1)} U ${fmt(u, 1)} m (local ENU)`;
  }
  function flush() {
    if (!pending || busy) return;
    const [x, y] = pending;
    pending = null;
    busy = true;
    try { show(pick(x, y)); } finally { busy = false; }
  }
  element.addEventListener("pointermove", (ev) => { pending = [ev.clientX, ev.clientY]; });
  element.addEventListener("pointerleave", () => { pending = null; show(null); });
  show(null);
  ctx.pickAt = (x, y) => { const h = pick(x, y); show(h); return h; };  // tests: client pixel coordinates
  let last = 0;
  return (now) => { if (now - last > 120) { last = now; flush(); } };
}

// ----------------------------------------------------------------------------- mount
const SETTLE_MS = 1500;  // frames keep coming this long after the view last changed

/** What a frame of `camera` depends on, as a string (position, orientation, lens). */
function cameraKey(camera) {
  return [...camera.position.toArray(), ...camera.quaternion.toArray(), camera.fov, camera.aspect, camera.zoom]
    .map((v) => v.toFixed(6)).join(",");
}

function mount(element, options) {
  const opts = Object.assign({ format: "spz", position: [0, -300, 220], lookAt: [0, 0, 0] }, options || {});
  if (!opts.url && !opts.data) throw new Error("SkyfallViewer.mount: options.url or options.data is required");
  const fileType = FILE_TYPES[opts.format];
  if (fileType === undefined) throw new Error(`SkyfallViewer.mount: unknown format ${opts.format}`);
  if (getComputedStyle(element).position === "static") element.style.position = "relative";
  const ctx = { element, state: {}, expose: opts.expose !== false, mesh: null, defaultFov: 50 };
  // the cursor readout over the status line, stacked (either may wrap in a narrow viewer)
  const corner = box(element, "left:8px;bottom:8px;padding:0;background:none;pointer-events:none;" +
    "max-width:calc(100% - 80px);display:flex;flex-direction:column;align-items:flex-start;gap:4px");
  const readout = box(corner, "position:static");
  readout.className = "skyfall-viewer-cursor";
  const status = box(corner, "position:static");
  status.className = "skyfall-viewer-status";
  status.textContent = "Loading splat…";
  setState(ctx, { status: "loading", error: null, splats: 0, cursor: null, view: "Home" });

  const width = element.clientWidth || 640, height = element.clientHeight || 480;
  const renderer = new THREE.WebGLRenderer({ antialias: false, preserveDrawingBuffer: true });
  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
  renderer.setSize(width, height);
  renderer.setClearColor(0x0b1220, 1);
  element.appendChild(renderer.domElement);
  const scene = new THREE.Scene();
  const camera = new THREE.PerspectiveCamera(50, width / height, 0.5, 100000);
  camera.up.set(0, 0, 1);  // local ENU: z up
  // frames are drawn on demand (an idle viewer costs no CPU/GPU): when the camera or the size
  // changes, while the splat loads, for SETTLE_MS after any of these (Spark sorts and builds its
  // splats asynchronously over the next frames) and whenever Spark marks itself dirty (a finished sort)
  let renderUntil = performance.now() + SETTLE_MS;
  const wake = () => { renderUntil = Math.max(renderUntil, performance.now() + SETTLE_MS); };
  const spark = new SparkRenderer({ renderer, onDirty: wake });
  scene.add(spark);
  const controls = new OrbitControls(camera, renderer.domElement);
  controls.enableDamping = false;
  controls.screenSpacePanning = true;
  Object.assign(ctx, { renderer, scene, camera, controls, spark });
  const home = { name: "Home", title: "the initial view (R)", position: opts.position, lookAt: opts.lookAt };
  applyView(ctx, home);
  const fly = installFlyKeys(ctx, element, home);
  const cursor = installCursor(ctx, element, readout, opts.georef || null);
  const arrow = northArrow(element);
  toolbar(element, ctx);
  fillToolbar(ctx, [home]);

  new ResizeObserver(() => {
    const w = element.clientWidth, h = element.clientHeight;
    if (!w || !h) return;
    renderer.setSize(w, h);
    camera.aspect = w / h;
    camera.updateProjectionMatrix();
    wake();
  }).observe(element);

  let last = performance.now(), seen = "";
  const dir = new THREE.Vector3();
  ctx.frames = 0;  // frames drawn (tests: an idle viewer draws none)
  // a frame is drawn while settling after a change, when Spark is dirty and while the splat loads
  const busy = (now) => now < renderUntil || spark.dirty || ctx.state.status === "loading";
  // nothing left to draw, not even after a sort under way (tests, benchmarks)
  ctx.idle = () => !busy(performance.now()) && !spark.sorting && !spark.sortDirty;
  renderer.setAnimationLoop((now) => {
    const dt = Math.min(0.1, (now - last) / 1000);
    last = now;
    // the controls update themselves on input; an update every frame would move the camera by
    // round-off (1e-13 m a frame) and make Spark re-sort and redraw forever
    if (fly(dt)) controls.update();
    cursor(now);
    const key = cameraKey(camera);
    if (key !== seen) { seen = key; wake(); }
    if (!busy(now)) return;
    // north arrow: the screen direction of +y (north) seen from the camera's heading
    camera.getWorldDirection(dir);
    if (Math.abs(dir.z) > 0.9) dir.set(0, 1, 0).applyQuaternion(camera.quaternion);  // looking down: screen up
    const heading = Math.atan2(dir.x, dir.y);
    arrow.setAttribute("transform", `rotate(${(-heading * 180) / Math.PI})`);
    renderer.render(scene, camera);
    ctx.frames += 1;
  });

  const bytes = opts.data ? new Uint8Array(opts.data) : undefined;
  // absolute URL: inside Streamlit's srcdoc iframe location.href is "about:srcdoc", which Spark's
  // loader cannot resolve a path against; document.baseURI is the app's own URL there
  const url = bytes ? undefined : new URL(opts.url, document.baseURI).href;
  const mesh = new SplatMesh(bytes ? { fileBytes: bytes, fileType, fileName: `scene.${opts.format}` }
                                   : { url, fileType, fileName: `scene.${opts.format}` });
  mesh.minRaycastOpacity = 0.05;  // the cursor reads the first splat the ray meets (Spark's raycast)
  if (opts.format === "spz") mesh.quaternion.setFromAxisAngle(new THREE.Vector3(1, 0, 0), Math.PI / 2);  // RUB -> ENU
  scene.add(mesh);
  ctx.mesh = mesh;
  mesh.initialized
    .then(() => {
      wake();
      mesh.updateMatrixWorld(true);
      const n = (mesh.packedSplats && mesh.packedSplats.numSplats) || (mesh.extSplats && mesh.extSplats.numSplats) || 0;
      const bounds = mesh.getBoundingBox(true).applyMatrix4(mesh.matrixWorld);
      fillToolbar(ctx, [home, ...presetsFor(bounds, opts.cameras)]);
      status.textContent = `${n.toLocaleString()} splats · drag orbit · right-drag pan · wheel zoom · WASD/QE fly · R reset`;
      setState(ctx, { status: "ready", splats: n,
                 bounds: { min: bounds.min.toArray(), max: bounds.max.toArray() } });
    })
    .catch((err) => {
      status.textContent = `Cannot show the splat: ${err && err.message ? err.message : err}`;
      status.style.background = "rgba(127,29,29,.9)";
      setState(ctx, { status: "error", error: String(err && err.message ? err.message : err) });
    });
  ctx.setView = (name) => {
    const all = presetsFor(mesh.getBoundingBox(true).applyMatrix4(mesh.matrixWorld), opts.cameras);
    const v = name === "Home" ? home : all.find((p) => p.name === name);
    if (!v) throw new Error(`no camera preset ${name}`);
    applyView(ctx, v);
  };
  if (ctx.expose) window.skyfallViewer = ctx;  // tests and the console: setView(name), pickAt(x, y)
  return ctx;
}

// ----------------------------------------------------------------------------- linked cameras
/** The camera of a viewer as plain arrays (scene metres, the viewer's own local ENU). */
function cameraState(ctx) {
  return { position: ctx.camera.position.toArray(), quaternion: ctx.camera.quaternion.toArray(),
           target: ctx.controls.target.toArray(), up: ctx.camera.up.toArray(), fov: ctx.camera.fov };
}

/**
 * Move the cameras of several viewers together. One camera is the source of truth: the viewer the
 * user last touched (pointer, wheel or key, caught before its controls see it) leads, and on every
 * change of its camera (orbit, pan, zoom, fly keys, presets, reset) the others copy its position,
 * orientation, orbit target and field of view. `offsets[i]` is what viewer i's local ENU adds to
 * the first viewer's coordinates of one point (two jobs of one AOI whose ground heights differ:
 * [0, 0, h_first - h_i]); null: all zero.
 */
function linkCameras(viewers, offsets) {
  const shift = viewers.map((_, i) => new THREE.Vector3().fromArray((offsets && offsets[i]) || [0, 0, 0]));
  const delta = new THREE.Vector3();
  let leader = 0, copying = false;
  function copyFrom(i) {
    const src = viewers[i];
    copying = true;
    try {
      viewers.forEach((dst, j) => {
        if (j === i) return;
        delta.copy(shift[j]).sub(shift[i]);
        dst.camera.position.copy(src.camera.position).add(delta);
        dst.controls.target.copy(src.controls.target).add(delta);
        dst.camera.up.copy(src.camera.up);
        dst.camera.quaternion.copy(src.camera.quaternion);
        if (dst.camera.fov !== src.camera.fov) {
          dst.camera.fov = src.camera.fov;
          dst.camera.updateProjectionMatrix();
        }
        dst.controls.update();  // its "change" comes back here while copying: ignored
      });
    } finally {
      copying = false;
    }
  }
  viewers.forEach((v, i) => {
    for (const type of ["pointerdown", "wheel", "keydown"]) {
      v.element.addEventListener(type, () => { leader = i; }, { capture: true, passive: true });
    }
    v.controls.addEventListener("change", () => { if (!copying && i === leader) copyFrom(i); });
  });
  copyFrom(leader);
  return {
    viewers,
    leader: () => leader,
    cameras: () => viewers.map(cameraState),
    states: () => viewers.map((v) => Object.assign({}, v.state)),
  };
}

/** One viewer per element (options[i]), their cameras linked (linkCameras); also window.skyfallPair. */
function mountLinked(elements, options, link) {
  if (elements.length !== options.length) throw new Error("SkyfallViewer.mountLinked: one options object per element");
  const viewers = elements.map((el, i) => mount(el, Object.assign({}, options[i], { expose: false })));
  const pair = linkCameras(viewers, link && link.offsets);
  window.skyfallPair = pair;  // tests and the console: cameras(), states(), leader()
  return pair;
}

function base64ToArrayBuffer(base64) {
  const bin = atob(base64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes.buffer;
}

window.SkyfallViewer = { mount, mountLinked, linkCameras, base64ToArrayBuffer, enuToGeodetic, version: "2-spark" };
