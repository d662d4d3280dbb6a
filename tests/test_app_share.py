"""The self-contained share HTML, the vendored browser files, and maps that load nothing from CDNs."""

import hashlib
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from skyfall_core.ui.share import (
    ShareCamera,
    ShareError,
    export_share,
    inline_script,
    job_georef,
    job_splat,
    read_share,
    round_cameras,
    share_html,
)
from skyfall_core.ui.static import STATIC_ROOT

from fixtures_app import SPLAT_DTYPE, synthetic_splat

VENDOR = STATIC_ROOT / "vendor"


class _Scripts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts, self._cur, self.external = [], None, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            if a.get("src"):
                self.external.append(a["src"])
            self._cur = [a, ""]
        if tag == "link" and a.get("href"):
            self.external.append(a["href"])

    def handle_data(self, data):
        if self._cur is not None:
            self._cur[1] += data

    def handle_endtag(self, tag):
        if tag == "script" and self._cur is not None:
            self.scripts.append(tuple(self._cur))
            self._cur = None


def test_share_html_round_trips_the_splat_and_needs_no_network(tmp_path):
    splat = synthetic_splat(n=500, seed=3)
    src = tmp_path / "scene.splat"
    src.write_bytes(splat)
    out = export_share(src, tmp_path / "share.html", title="Test <city>", camera=ShareCamera((0, -200, 150)),
                       meta={"job": "j1"})
    text = out.read_text(encoding="utf-8")
    data, fmt = read_share(text)
    assert data == splat and fmt == "splat"
    rec = np.frombuffer(data, SPLAT_DTYPE)
    assert len(rec) == 500 and np.isfinite(rec["position"]).all()
    p = _Scripts()
    p.feed(text)
    assert p.external == []  # nothing to fetch: the file opens from disk
    kinds = [a.get("type") for a, _ in p.scripts]
    assert kinds == ["application/octet-stream", None, None]
    bundle = p.scripts[1][1]
    assert "SkyfallViewer" in bundle and len(bundle) > 1_000_000  # the vendored viewer (Spark + WASM), inlined
    boot = p.scripts[2][1]
    assert '"format": "splat"' in boot and "[0, -200, 150]" in boot.replace(".0", "")
    assert '"georef": null' in boot
    assert "Test &lt;city&gt;" in text


def test_inline_script_cannot_close_the_script_element():
    js = 'var s = "</script><script>alert(1)</script>"; // <!-- x'
    safe = inline_script(js)
    assert "</script" not in safe.lower() and "<!--" not in safe
    assert safe.replace("<\\/", "</").replace("<\\!--", "<!--") == js


def test_share_rejects_unknown_formats_and_oversize(tmp_path):
    with pytest.raises(ShareError):
        share_html(b"x", "obj", title="t", camera=ShareCamera((0, 0, 1)), viewer_js="")
    bad = tmp_path / "scene.obj"
    bad.write_bytes(b"x")
    with pytest.raises(ShareError, match="not a .spz"):
        export_share(bad, tmp_path / "o.html", title="t", camera=ShareCamera((0, 0, 1)))
    with pytest.raises(ShareError, match="tampered|no embedded"):
        read_share("<html><body>nothing</body></html>")


def test_vendored_files_match_their_manifest():
    manifest = json.loads((VENDOR / "VERSIONS.json").read_text())
    assert manifest["versions"]["leaflet"] == "1.9.4" and manifest["versions"]["leaflet-draw"] == "1.0.4"
    assert manifest["versions"]["@sparkjsdev/spark"] == "2.2.0" and manifest["versions"]["three"] == "0.180.0"
    assert "@mkkellogg/gaussian-splats-3d" not in manifest["versions"]
    for rel, meta in manifest["files"].items():
        blob = (VENDOR / rel).read_bytes()
        assert len(blob) == meta["bytes"], rel
        assert hashlib.sha256(blob).hexdigest() == meta["sha256"], rel


def test_maps_load_scripts_only_from_the_app():
    from skyfall_core.ui.maps import Footprint, Overlay, all_script_urls, build_map

    ring = [[-95.939, 41.257], [-95.936, 41.257], [-95.936, 41.259], [-95.939, 41.259], [-95.939, 41.257]]
    geom = {"type": "Polygon", "coordinates": [ring]}
    m = build_map(center=(41.258, -95.9375), zoom=16, basemap="None (offline)",
                  aoi={"type": "Feature", "geometry": geom},
                  footprints=[Footprint("s1", geom, "s1")], overlays=[Overlay("/app/static/_cache/x.png",
                                                                              (-95.94, 41.25, -95.93, 41.26), "img")],
                  draw=True, fit=(-95.94, 41.25, -95.93, 41.26))
    urls = all_script_urls(m)
    assert urls and all(u.startswith("/app/static/vendor/") for u in urls)
    for u in urls:
        assert (VENDOR / u.split("/app/static/vendor/", 1)[1]).is_file(), u
    html = m.get_root().render()
    assert "https://" not in html.replace("https://leafletjs.com", "")  # offline basemap: no tile URL either
    assert "/app/static/_cache/x.png" in html


def test_job_camera_frames_the_job_aoi_and_falls_back_on_a_bad_one():
    from skyfall_core.config import load_config
    from skyfall_core.ui.components import default_camera, job_camera

    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "config.toml")
    feat = json.loads((repo / "sample_aoi" / "aoi.geojson").read_text())["features"][0]
    pos, look = job_camera(feat, cfg.aoi)
    assert look == [0.0, 0.0, 0.0]
    dist = (pos[1] ** 2 + pos[2] ** 2) ** 0.5
    assert abs(dist - 2.6 * 0.5 * 210.0) < 5.0  # the sample AOI is ~210 m x 210 m
    assert job_camera({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": []}}, cfg.aoi) == \
        default_camera(None)
    assert job_camera(None, cfg.aoi) == default_camera(None)


def test_viewer_bundle_needs_no_other_file():
    """Spark's WASM is base64-inlined and its worker starts from a Blob URL: nothing else to fetch,
    so the bundle works from the app's static files and inlined in a Share file opened from disk."""
    js = (VENDOR / "splat-viewer" / "splat-viewer.js").read_text(encoding="utf-8")
    assert "SkyfallViewer" in js and "WebAssembly.compile" in js and "createObjectURL" in js
    assert ".wasm\"" not in js and ".wasm'" not in js and "import.meta" not in js
    lock = Path(__file__).resolve().parents[1] / "skyfall_core" / "ui" / "viewer_src" / "package-lock.json"
    locked = json.loads(lock.read_text())["packages"]
    assert locked["node_modules/@sparkjsdev/spark"]["version"] == "2.2.0"
    assert locked["node_modules/@sparkjsdev/spark"]["license"] == "MIT"


def test_job_splat_prefers_what_the_pipeline_writes(tmp_path):
    final = tmp_path / "final"
    final.mkdir()
    assert job_splat(tmp_path) is None
    for name in ("scene.splat", "scene.ply", "scene.compressed.ply", "scene.spz"):
        (final / name).write_bytes(b"x")
        assert job_splat(tmp_path) == (final / name, name.rsplit(".", 1)[1])


def test_job_georef_reads_both_layouts_and_refuses_junk(tmp_path):
    final = tmp_path / "final"
    final.mkdir()
    assert job_georef(tmp_path) is None
    (final / "georef.json").write_text(json.dumps({"origin": {"lat": 41.2, "lon": -95.9, "h": 290.0}}))
    assert job_georef(tmp_path) == {"lat": 41.2, "lon": -95.9, "h": 290.0}
    (final / "georef.json").write_text(json.dumps({"lat": 41.2, "lon": -95.9}))
    assert job_georef(tmp_path) == {"lat": 41.2, "lon": -95.9, "h": 0.0}
    for junk in ("{not json", json.dumps({"lat": 141.0, "lon": 0}), json.dumps([1, 2])):
        (final / "georef.json").write_text(junk)
        assert job_georef(tmp_path) is None


def test_round_cameras_are_the_w2c_centres(tmp_path):
    d = tmp_path / "rounds" / "0_e85"
    d.mkdir(parents=True)
    c, s = np.cos(np.radians(85)), np.sin(np.radians(85))
    # a camera 200 m from the origin at 85 deg elevation due south, looking at the origin (OpenCV axes)
    centre = np.array([0.0, -200 * c, 200 * s])
    fwd = -centre / np.linalg.norm(centre)
    right = np.array([1.0, 0.0, 0.0])
    down = np.cross(fwd, right)
    R = np.stack([right, down, fwd])
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = R, -R @ centre
    cam = {"K": [[50, 0, 24], [0, 50, 24], [0, 0, 1]], "w2c": w2c.tolist(), "width": 48, "height": 48}
    (d / "cameras.json").write_text(json.dumps({"round": 0, "views": [
        {"camera": cam, "elevation_deg": 85.0, "azimuth_deg": 180.0, "lookat": [0, 0, 0]}]}))
    (tmp_path / "rounds" / "1_e65").mkdir()
    (tmp_path / "rounds" / "1_e65" / "cameras.json").write_text("{broken")
    cams = round_cameras(tmp_path)
    assert len(cams) == 1 and cams[0]["lookAt"] == [0, 0, 0]
    assert np.allclose(cams[0]["position"], centre, atol=1e-3)
    assert abs(cams[0]["fov"] - 2 * np.degrees(np.arctan(24 / 50))) < 0.01
