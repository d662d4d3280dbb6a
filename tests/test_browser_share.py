"""The Share export opened from disk (file://) in Debian's chromium, network off: the splat must
load and draw with the vendored Spark bundle (its WASM inlined).

A compressed PLY and an .spz of a real model (random Gaussians through the exporters) are inlined
in the HTML; the viewer reports how many splats it loaded and the canvas must not be blank.
(test_browser_viewer.py does the same on a real pipeline job's final/scene.spz.)
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(),
                                reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright pip package is not installed")


@pytest.mark.parametrize("name", ["scene.compressed.ply", "scene.spz"])
def test_shared_html_loads_every_splat_from_disk(tmp_path, name):
    from skyfall_core.export.spz import write_spz
    from skyfall_core.splat.io import compressed_ply_bytes
    from skyfall_core.splat.model import GaussianModel
    from skyfall_core.ui.share import ShareCamera, export_share

    g = torch.Generator().manual_seed(0)
    n = 3000
    xyz = torch.cat([torch.rand(n, 2, generator=g) * 160 - 80, torch.rand(n, 1, generator=g) * 30], 1)
    model = GaussianModel.from_points(xyz, torch.rand(n, 3, generator=g), sh_degree=1, init_opacity=0.8)
    src = tmp_path / name
    if name.endswith(".spz"):
        write_spz(src, model)
    else:
        src.write_bytes(compressed_ply_bytes(model))
    out = export_share(src, tmp_path / "share.html", title="share test",
                       camera=ShareCamera((0.0, -180.0, 130.0), (0.0, 0.0, 0.0)))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                                          "--ignore-gpu-blocklist", "--no-sandbox"])
        try:
            page = browser.new_context(viewport={"width": 640, "height": 480}, offline=True).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(out.as_uri())
            page.wait_for_function("window.skyfallViewerState && window.skyfallViewerState.status !== 'loading'",
                                   timeout=90_000)
            state = page.evaluate("window.skyfallViewerState")
            assert state["status"] == "ready" and not errors, (state, errors)
            assert state["splats"] == n
            time.sleep(3)  # a few frames
            shot = page.locator("canvas").first.screenshot(path=str(tmp_path / "share.png"))
        finally:
            browser.close()
    import cv2

    img = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR).astype(np.float32)
    background = np.array([0x20, 0x12, 0x0B], np.float32)  # #0b1220 in BGR
    assert (np.abs(img - background).sum(-1) > 30).mean() > 0.05  # the splats cover part of the view
