"""The Share file's fly-down, opened from disk (file://) in Debian's chromium, network off: the
embedded MP4 of the real tiny job must decode and play from its Blob URL, with one button a round
that seeks to that round's segment, and the "save" link must hand out the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures_browser import NEEDS_CHROMIUM, VIEWER_ARGS, chromium

pytestmark = NEEDS_CHROMIUM


def test_the_shared_flydown_plays_from_disk(tiny_job, tmp_path):
    from skyfall_core.jobfolder import JobDir
    from skyfall_core.pipeline.outputs import FLYDOWN_MANIFEST
    from skyfall_core.ui.share import ShareCamera, export_share, job_flydown, job_splat

    manifest = json.loads((JobDir(tiny_job).final / FLYDOWN_MANIFEST).read_text())
    video = job_flydown(tiny_job)
    out = export_share(job_splat(tiny_job)[0], tmp_path / "share.html", title="fly-down",
                       camera=ShareCamera((0.0, -150.0, 110.0)), video=video)
    with chromium([*VIEWER_ARGS, "--autoplay-policy=no-user-gesture-required"]) as browser:
        page = browser.new_context(viewport={"width": 900, "height": 700}, offline=True,
                                   accept_downloads=True).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(out.as_uri())
        page.wait_for_function("window.skyfallFlydown !== undefined", timeout=30_000)
        assert page.evaluate("window.skyfallFlydown.bytes") == len(video.data)
        page.click("#flydown-toggle")
        page.wait_for_function("document.getElementById('flydown-player').readyState >= 1", timeout=30_000)
        duration = page.evaluate("document.getElementById('flydown-player').duration")
        assert duration == pytest.approx(manifest["frames"] / manifest["fps"], abs=0.2)
        size = page.evaluate("[document.getElementById('flydown-player').videoWidth, "
                             "document.getElementById('flydown-player').videoHeight]")
        assert size == [manifest["width"] - manifest["width"] % 2, manifest["height"] - manifest["height"] % 2]
        buttons = page.locator("#flydown-segments button")
        assert buttons.count() == len(manifest["segments"])
        buttons.nth(2).click()
        t = page.evaluate("document.getElementById('flydown-player').currentTime")
        assert t >= manifest["segments"][2]["start_s"] - 0.05
        assert page.evaluate("document.getElementById('flydown-error').style.display") == "none"
        with page.expect_download() as dl:
            page.click("#flydown-save")
        assert Path(dl.value.path()).read_bytes() == video.data and dl.value.suggested_filename == "flydown.mp4"
        assert not errors, errors
