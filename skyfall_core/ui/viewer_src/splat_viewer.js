// Skyfall Studio splat viewer: the entry point that scripts/vendor_js.sh bundles (with three.js and
// GaussianSplats3D) into static/vendor/splat-viewer/splat-viewer.js, one IIFE with no imports, so
// that it runs from the app's static files and inlined in a self-contained Share HTML file.
//
//   window.SkyfallViewer.mount(element, {
//     url: "…/scene.splat",            // or a blob: URL (the Share export)
//     format: "splat" | "ply",          // .splat (antimatter15, 32 B a splat) or a (compressed) 3DGS PLY
//     position: [x, y, z],              // initial camera position, scene metres (local ENU, z up)
//     lookAt: [x, y, z],                // initial orbit centre
//   })
//
// Controls: drag = orbit, right-drag = pan, wheel = zoom; W/A/S/D fly forward/left/back/right in
// the horizontal plane, Q/E down/up, Shift = 4x faster; R resets the view.
// The page-level state `window.skyfallViewerState` = {status: "loading"|"ready"|"error", splats,
// error} lets tests (and the app) know when the scene is shown.
import * as GS from "@mkkellogg/gaussian-splats-3d";
import * as THREE from "three";

const FORMATS = { splat: GS.SceneFormat.Splat, ply: GS.SceneFormat.Ply, ksplat: GS.SceneFormat.KSplat };

function setState(patch) {
  window.skyfallViewerState = Object.assign(window.skyfallViewerState || {}, patch);
}

function overlay(element) {
  const box = document.createElement("div");
  box.className = "skyfall-viewer-status";
  box.style.cssText = "position:absolute;left:8px;bottom:8px;z-index:10;padding:4px 8px;border-radius:4px;" +
    "background:rgba(15,23,42,.78);color:#e2e8f0;font:12px/1.4 system-ui,sans-serif;pointer-events:none";
  element.appendChild(box);
  return box;
}

function installFlyKeys(viewer, element, home) {
  const held = new Set();
  const keys = new Set(["w", "a", "s", "d", "q", "e"]);
  const onDown = (ev) => {
    const k = ev.key.toLowerCase();
    if (k === "r") { resetView(viewer, home); return; }
    if (keys.has(k)) { held.add(k); ev.preventDefault(); }
  };
  const onUp = (ev) => held.delete(ev.key.toLowerCase());
  element.tabIndex = 0;
  element.addEventListener("keydown", onDown);
  element.addEventListener("keyup", onUp);
  element.addEventListener("pointerdown", () => element.focus());
  let last = performance.now();
  const forward = new THREE.Vector3(), right = new THREE.Vector3(), step = new THREE.Vector3();
  const up = new THREE.Vector3(0, 0, 1);
  function tick(now) {
    const dt = Math.min(0.1, (now - last) / 1000);
    last = now;
    if (held.size && viewer.camera && viewer.controls) {
      const cam = viewer.camera, target = viewer.controls.target;
      const dist = Math.max(1, cam.position.distanceTo(target));
      const speed = dist * 0.6 * dt * (window.event && window.event.shiftKey ? 4 : 1);
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
        step.normalize().multiplyScalar(speed);
        cam.position.add(step);
        target.add(step);
        viewer.controls.update();
      }
    }
    requestAnimationFrame(tick);
  }
  requestAnimationFrame(tick);
}

function resetView(viewer, home) {
  if (!viewer.camera || !viewer.controls) return;
  viewer.camera.position.fromArray(home.position);
  viewer.controls.target.fromArray(home.lookAt);
  viewer.camera.up.set(0, 0, 1);
  viewer.controls.update();
}

function mount(element, options) {
  const opts = Object.assign({ format: "splat", position: [0, -300, 220], lookAt: [0, 0, 0] }, options || {});
  if (!opts.url && !opts.data) throw new Error("SkyfallViewer.mount: options.url or options.data is required");
  const format = FORMATS[opts.format];
  if (format === undefined) throw new Error(`SkyfallViewer.mount: unknown format ${opts.format}`);
  if (getComputedStyle(element).position === "static") element.style.position = "relative";
  const status = overlay(element);
  status.textContent = "Loading splat…";
  setState({ status: "loading", error: null, splats: 0 });

  const viewer = new GS.Viewer({
    rootElement: element,
    cameraUp: [0, 0, 1],                // local ENU: z up
    initialCameraPosition: opts.position,
    initialCameraLookAt: opts.lookAt,
    sharedMemoryForWorkers: false,      // no cross-origin isolation inside Streamlit or from file://
    gpuAcceleratedSort: false,
    selfDrivenMode: true,
    useBuiltInControls: true,
    sceneRevealMode: GS.SceneRevealMode.Instant,
    logLevel: GS.LogLevel.None,
    sphericalHarmonicsDegree: 0,
  });
  installFlyKeys(viewer, element, { position: opts.position, lookAt: opts.lookAt });
  // bytes in the page (the Share export): parse them here; a blob: URL through addSplatScene
  // loads an empty scene for larger files
  const loaded = opts.data
    ? (opts.format === "ply" ? GS.PlyLoader.loadFromFileData(opts.data, 1, 0, true, 0)
                             : GS.SplatLoader.loadFromFileData(opts.data, 1, 0, true))
        .then((buffer) => viewer.addSplatBuffers([buffer], [{ splatAlphaRemovalThreshold: 1 }], true, false, false))
    : viewer.addSplatScene(opts.url, { format, showLoadingUI: false, progressiveLoad: false, splatAlphaRemovalThreshold: 1 });
  loaded
    .then(() => {
      viewer.start();
      // splats loaded into the scene (the mesh's own count is 0 until its first build, which may
      // still be running when this promise resolves)
      const mesh = viewer.getSplatMesh();
      const n = mesh ? Math.max(mesh.getSplatCount(), mesh.getSplatCount(true)) : 0;
      status.textContent = `${n.toLocaleString()} splats · drag orbit · right-drag pan · wheel zoom · WASD/QE fly · R reset`;
      setState({ status: "ready", splats: n });
    })
    .catch((err) => {
      status.textContent = `Cannot show the splat: ${err && err.message ? err.message : err}`;
      status.style.background = "rgba(127,29,29,.9)";
      setState({ status: "error", error: String(err && err.message ? err.message : err) });
    });
  return viewer;
}

function base64ToArrayBuffer(base64) {
  const bin = atob(base64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes.buffer;
}

function bytesToBlobUrl(base64) {
  const bin = atob(base64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
}

window.SkyfallViewer = { mount, resetView, bytesToBlobUrl, base64ToArrayBuffer, version: "1" };
