"""What an open viewer costs the analyst's machine while nobody touches it.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_viewer_idle.py --splat JOB/final/scene.spz
        [--baseline-rev REV] [--seconds 10] [--width 1280 --height 800]

Opens the Share HTML of ``--splat`` (the same bundle and viewer as the Viewer, Compare and Share
pages) from disk in Debian's chromium (headless, software WebGL: the case of an analyst's laptop
without a usable GPU in the browser), waits until the splat is shown and the first frames are
drawn, then measures over ``--seconds`` while nothing happens: the CPU seconds of every chromium
process (psutil) and the frames the viewer drew. Then it orbits once (a mouse drag), measures the
2 s after it (the viewer must draw then), waits until it stops drawing, and measures idle again.
``--baseline-rev`` runs the same with the viewer bundle as it was at a git revision
(``static/vendor/splat-viewer/splat-viewer.js``), in the same run. Prints a table and, with
``--json``, writes the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skyfall_core.ui.share import VIEWER_BUNDLE, ShareCamera, share_html, splat_format  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist", "--no-sandbox"]
READY = "window.skyfallViewerState && window.skyfallViewerState.status === 'ready'"


def bundle_at(rev: str) -> str:
    return subprocess.run(["git", "show", f"{rev}:static/vendor/{VIEWER_BUNDLE}"], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout


def chromium_cpu_s() -> float:
    """CPU seconds (user + system) of every chromium process now running."""
    total = 0.0
    for p in psutil.process_iter(["name", "cpu_times"]):
        if (p.info["name"] or "").startswith("chrom") and p.info["cpu_times"] is not None:
            total += p.info["cpu_times"].user + p.info["cpu_times"].system
    return total


def frames(page) -> int | None:
    """Frames the viewer has drawn (None: a viewer without the counter, before on-demand frames)."""
    return page.evaluate("window.skyfallViewer && window.skyfallViewer.frames !== undefined ? "
                         "window.skyfallViewer.frames : null")


def measure(page, seconds: float) -> dict[str, float | None]:
    c0, f0, t0 = chromium_cpu_s(), frames(page), time.monotonic()
    time.sleep(seconds)
    c1, f1, t1 = chromium_cpu_s(), frames(page), time.monotonic()
    return {"cpu_cores": round((c1 - c0) / (t1 - t0), 3),
            "frames_per_s": None if f0 is None else round((f1 - f0) / (t1 - t0), 2)}


def settle(page, timeout_s: float = 120.0) -> float | None:
    """Seconds until the viewer stops drawing: it says it is idle and no new frame came for 2 s
    (None for a viewer without the frame counter: it never stops)."""
    t0, last = time.monotonic(), frames(page)
    if last is None:
        return None
    while time.monotonic() - t0 < timeout_s:
        time.sleep(2.0)
        now = frames(page)
        if now == last and page.evaluate("window.skyfallViewer.idle()"):
            return round(time.monotonic() - t0 - 2.0, 1)
        last = now
    return None


def run(html_path: Path, seconds: float, viewport: dict[str, int]) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_context(viewport=viewport).new_page()
            page.goto(html_path.as_uri())
            page.wait_for_function(READY, timeout=180_000)
            time.sleep(5.0)  # the first frames and sorts
            idle = measure(page, seconds)
            box = page.locator("canvas").first.bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(cx, cy)
            page.mouse.down()
            page.mouse.move(cx + 200, cy + 20, steps=10)
            page.mouse.up()
            after_orbit = measure(page, 2.0)
            settled_s = settle(page)
            idle_again = measure(page, seconds)
            return {"idle": idle, "orbit_then_2s": after_orbit, "settled_after_s": settled_s, "idle_again": idle_again}
        finally:
            browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splat", required=True, help="a job's final/scene.spz (or .ply)")
    ap.add_argument("--baseline-rev", help="also measure the viewer bundle of this git revision")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    splat = Path(a.splat)
    data, fmt = splat.read_bytes(), splat_format(splat)
    camera = ShareCamera((0.0, -300.0, 220.0))
    variants = {"working tree": None}
    if a.baseline_rev:
        variants[a.baseline_rev] = bundle_at(a.baseline_rev)
    out: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores",
        "splat": str(splat), "splat_mib": round(len(data) / 2**20, 2),
        "viewport": f"{a.width}x{a.height}", "seconds": a.seconds, "results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, js in variants.items():
            page = Path(tmp) / f"share_{len(out['results'])}.html"
            page.write_text(share_html(data, fmt, title="bench", camera=camera, viewer_js=js), encoding="utf-8")
            out["results"][name] = run(page, a.seconds, {"width": a.width, "height": a.height})
    print(f"machine: {out['machine']}; splat {splat} ({out['splat_mib']} MiB); viewport {out['viewport']}; "
          f"chromium, software WebGL")
    print(f"{'viewer bundle':<16} {'idle: CPU cores':>16} {'frames/s':>9} {'orbit+2 s: cores':>17} {'frames/s':>9} "
          f"{'settled after s':>16} {'idle again: cores':>18} {'frames/s':>9}")
    for name, r in out["results"].items():
        cells = [f"{r[k]['cpu_cores']:>{w}}" + f" {str(r[k]['frames_per_s']):>9}"
                 for k, w in (("idle", 16), ("orbit_then_2s", 17), ("idle_again", 18))]
        cells.insert(2, f"{str(r['settled_after_s']):>16}")
        print(f"{name:<16} " + " ".join(cells))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
