"""The Share export opened from disk (file://) in Debian's chromium, network off: the splat must
load and draw with the vendored Spark bundle (its WASM inlined).

A compressed PLY and an .spz of a real model (random Gaussians through the exporters) are inlined
in the HTML; the viewer reports how many splats it loaded and the canvas must not be blank.
(test_browser_viewer.py does the same on a real pipeline job's final/scene.spz.)
"""

from __future__ import annotations

import time

import pytest
import torch

from fixtures_browser import NEEDS_CHROMIUM, VIEWER_ARGS, VIEWER_READY, chromium, covered, open_viewer, rgb

pytestmark = NEEDS_CHROMIUM


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
    with chromium(VIEWER_ARGS) as browser:
        _, page, errors = open_viewer(browser, out.as_uri(), VIEWER_READY, viewport={"width": 640, "height": 480},
                                      offline=True)
        state = page.evaluate("window.skyfallViewerState")
        assert state["status"] == "ready" and not errors, (state, errors)
        assert state["splats"] == n
        time.sleep(3)  # a few frames
        shot = page.locator("canvas").first.screenshot(path=str(tmp_path / "share.png"))
    assert covered(rgb(shot)) > 0.05  # the splats cover part of the view
