"""Issue 17 in a real browser: Compare, Clone and a reload during a run, in Debian's chromium
(playwright) against the running app (``python -m skyfall_core serve``, the ``app`` and ``page``
fixtures of fixtures_browser.py, as in test_browser_e2e) on real jobs.

1. Compare: two finished copies of the session's real tiny job with different elevation schedules
   (and a cancelled one): both names, both selected by default, the schedules in the table, and
   for every camera of ``final/compare/`` one loaded image per job, captioned with the job's name,
   showing that camera's render.
2. Clone: the Jobs page's Clone opens Reconstruct filled in from the job, with no new job until
   Start; the schedule is edited in the grid, Start runs the copy (a real tiny job) with the new
   schedule and its parent recorded.
3. Reload: a real job started from Reconstruct (a long stage 1, cancelled at the end); a reload of
   the tab and a new tab (fresh Streamlit sessions) show it running, with its progress moving, a
   whole-job ETA, and Start disabled for the same draft.

The AppTest versions of these checks are test_app_compare.py and test_app_clone_progress.py. No
check depends on timing: every wait is a generous poll. ``SKYFALL_SCREENSHOTS=1`` saves one
screenshot a test to ``artifacts/screenshots/jobs_flow_*.png``.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

import fixtures_browser
from fixtures_app import copy_real_job
from fixtures_browser import JOB_TIMEOUT_S, NEEDS_CHROMIUM, SAMPLE, TINY, PlaywrightError, idle, metric, sync_api

# the shared fixtures: the app served on a temporary workspace with the sample as catalog (killed with its
# jobs after), and a chromium page that may reach only the app
app, page = fixtures_browser.app, fixtures_browser.page

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "artifacts" / "screenshots"
HIGH, LOW, STOPPED = "20260101-000000-a", "20260101-000100-b", "20260101-000200-c"
LOW_SCHEDULE = [80.0, 60.0, 40.0]
START = re.compile("Start reconstruction")
ETA_TEXT = re.compile(r"^(\d+m \d\ds|\d+h \d\dm)$")  # fmt_seconds: a time, not "estimating…" nor "–"

pytestmark = [
    pytest.mark.slow,
    NEEDS_CHROMIUM,
    pytest.mark.skipif(not (SAMPLE / "aoi.geojson").is_file(), reason="bundled sample_aoi/ missing"),
]


# ------------------------------------------------------------------------------------ helpers
def _add_job(ws: Path, real: Path, job_id: str, *, elevations: list[float] | None = None, **kw) -> Path:
    """A copy of the real job (``copy_real_job``) moved into the running app's workspace in one rename:
    the app's scheduler imports folders it finds, so it must never see a half-copied one."""
    from skyfall_core.jobfolder import load_job, update_job_json

    staged = copy_real_job(real, ws.parent / "staging", job_id, **kw)
    if elevations is not None:  # another schedule, as a clone with edited rows has
        meta = load_job(staged)
        config = meta.raw["config"]
        config["presets"][meta.preset]["stage2"]["elevations_deg"] = elevations
        update_job_json(staged, config=config, overrides={**meta.overrides, "stage2.elevations_deg": elevations})
    final = ws / "jobs" / job_id
    final.parent.mkdir(parents=True, exist_ok=True)
    staged.rename(final)
    return final


def _records(ws: Path) -> dict:
    from skyfall_core.jobs.store import JobStore

    return {r.id: r for r in JobStore(ws).all()}


def _job_dirs(ws: Path) -> list[str]:
    return sorted(p.name for p in (ws / "jobs").iterdir() if p.is_dir() and not p.name.startswith("."))


def _grid(pg, has_cell: str, timeout_s: float = 60.0):
    """(locator, header, rows) of the Streamlit dataframe / data editor that has a cell ``has_cell``,
    read in one go from the grid's accessibility table (the grid itself is drawn on a canvas)."""
    def read():
        for grid in pg.locator('[data-testid="stDataFrame"]').all():
            table = grid.evaluate("""g => ({
                header: [...g.querySelectorAll('thead [role="columnheader"]')].map(c => c.textContent.trim()),
                rows: [...g.querySelectorAll('tbody [role="row"]')].map(
                    r => [...r.querySelectorAll('[role="gridcell"]')].map(c => c.textContent.trim()))})""")
            if table["header"] and any(has_cell in r for r in [table["header"], *table["rows"]]):
                return grid, table["header"], table["rows"]
        return None

    return _poll(pg, f"a table with {has_cell!r}", read, bool, timeout_s)


def _shot(pg, name: str) -> None:
    if os.environ.get("SKYFALL_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(SHOTS / f"jobs_flow_{name}.png"))


def _poll(pg, what: str, read, ok, timeout_s: float = 120.0):
    """``read()`` until ``ok(value)``; the page may be between reruns (elements detach): retried."""
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        try:
            value = read()
        except PlaywrightError:
            value = None
        if value is not None and ok(value):
            return value
        pg.wait_for_timeout(500)
    raise AssertionError(f"{what}: still {value!r} after {timeout_s:g} s")


def _overrides(pg) -> dict:
    """The Reconstruct page's "Overrides of the preset" (JSON; both tests' jobs override the render size)."""
    code = pg.locator('[data-testid="stCode"]').filter(has_text="stage2.image_size")
    return json.loads(code.inner_text())


def _stage_bars(pg) -> list[str]:
    return pg.locator('[data-testid="stProgress"]').all_inner_texts()


def _side_by_side(pg, group: str) -> list[dict]:
    """The cameras of one tab of "Side by side, per camera" once its images have loaded:
    [{"file", "label", "images": [{"caption", "w", "h", "src"}]}] in page order."""
    tabs = pg.locator('[data-testid="stTabs"]').filter(has=pg.get_by_role("tab", name="Top-down", exact=True))
    tabs.get_by_role("tab", name=group, exact=True).click()
    panel = tabs.locator('[role="tabpanel"]:visible')
    panel.locator('[data-testid="stImage"] img').first.wait_for()
    handle = panel.element_handle()
    pg.wait_for_function("p => [...p.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)",
                         arg=handle, timeout=60_000)
    return handle.evaluate("""p => {
        const out = [];
        for (const el of p.querySelectorAll('[data-testid="stMarkdownContainer"] code, [data-testid="stImage"]')) {
            if (el.tagName === 'CODE') {
                if (el.textContent.endsWith('.png'))
                    out.push({file: el.textContent, label: el.closest('p').textContent, images: []});
                continue;
            }
            const img = el.querySelector('img'), cap = el.querySelector('[data-testid="stImageCaption"]');
            out[out.length - 1].images.push({caption: cap && cap.textContent.trim(), w: img.naturalWidth,
                                             h: img.naturalHeight, src: img.src});
        }
        return out;
    }""")


def _decode(data: bytes) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "the page's image is not a picture"
    return img.astype(np.float32)


# ------------------------------------------------------------------------------------ 1. compare
def test_compare_shows_both_schedules_and_every_same_camera_render_loaded(app, page, tiny_job):
    import cv2

    ws, pg = app["ws"], page
    _add_job(ws, tiny_job, HIGH, name="high schedule")
    _add_job(ws, tiny_job, LOW, name="low schedule", parent=HIGH, elevations=LOW_SCHEDULE)
    _add_job(ws, tiny_job, STOPPED, name="stopped early", rounds_done=1, status="cancelled")

    pg.goto(app["url"] + "/compare")
    pg.get_by_role("heading", name="Same cameras").wait_for(timeout=120_000)
    idle(pg)
    # both finished jobs are selected at first (newest first), the cancelled one is not
    tags = pg.locator('[data-testid="stMultiSelect"] [data-tag]')
    tags.nth(1).wait_for(timeout=60_000)  # the selection's tags may come a rerun after the heading
    assert [t.get_attribute("aria-label") for t in tags.all()] == ["low schedule · preview · ✅ done",
                                                                  "high schedule · preview · ✅ done"]
    # the table: one column per job, named, with its own schedule
    _, header, rows = _grid(pg, "elevations (°)")
    assert header[1:] == ["low schedule", "high schedule"]
    table = {r[0]: r[1:] for r in rows}
    assert table["elevations (°)"] == ["80, 60, 40", "85, 65, 45"] and table["status"] == ["done", "done"]

    views = json.loads((tiny_job / "final" / "compare" / "cameras.json").read_text())["views"]
    renders = {v["file"]: cv2.imread(str(tiny_job / "final" / "compare" / v["file"])).astype(np.float32)
               for v in views}
    groups = ["Top-down"] + [f"{e:g}° elevation" for e in sorted({v["elevation_deg"] for v in views
                                                                   if v["name"] != "top"}, reverse=True)]
    tab_names = pg.locator('[data-testid="stTabs"]').filter(has=pg.get_by_role("tab", name="Top-down", exact=True)) \
        .get_by_role("tab").all_inner_texts()
    assert [t.strip() for t in tab_names] == groups
    seen = []
    for group in groups:
        for cam in _side_by_side(pg, group):
            seen.append(cam["file"])
            assert cam["label"].startswith("top-down" if group == "Top-down" else f"{group}, from the "), cam["label"]
            assert [i["caption"] for i in cam["images"]] == ["low schedule", "high schedule"], cam
            for img in cam["images"]:
                got = _decode(pg.request.get(img["src"]).body())
                assert (img["w"], img["h"]) == (got.shape[1], got.shape[0])
                # the render of this camera (a JPEG of it): nearer to it than to any other camera's render
                errors = {f: float(np.abs(cv2.resize(r, (got.shape[1], got.shape[0]), interpolation=cv2.INTER_AREA)
                                          - got).mean()) for f, r in renders.items()}
                assert errors[cam["file"]] < 2.5 and min(errors, key=errors.get) == cam["file"], (cam["file"], errors)
        if group == "Top-down":
            _shot(pg, "compare")
    assert sorted(seen) == sorted(renders) and len(seen) == len(set(seen))  # every camera once
    assert not pg.errors, pg.errors


# ------------------------------------------------------------------------------------ 2. clone
def test_clone_prefills_reconstruct_and_runs_the_edited_copy_only_on_start(app, page, tiny_job):
    from skyfall_core.jobfolder import load_job

    ws, pg = app["ws"], page
    src = load_job(_add_job(ws, tiny_job, LOW, name="low schedule", elevations=LOW_SCHEDULE))

    pg.goto(app["url"] + "/jobs")
    clone = pg.get_by_role("button", name=re.compile("Clone"))
    clone.wait_for(timeout=120_000)
    idle(pg)
    clone.click()
    pg.wait_for_url(re.compile(r"/reconstruct$"))
    pg.get_by_text("A copy of job").wait_for()
    idle(pg)
    assert "A copy of job low schedule" in pg.locator('[data-testid="stAlert"]').filter(
        has_text="A copy of job").inner_text()
    assert _job_dirs(ws) == [LOW] and list(_records(ws)) == [LOW]  # nothing started
    # the draft took the job's AOI and scenes; the form its preset, name, settings and schedule
    pg.get_by_text(f"{len(src.scenes)} scenes chosen; {len(src.scenes)} cover the AOI").wait_for()
    assert pg.get_by_label("Job name").input_value() == "low schedule (copy)"
    assert pg.get_by_role("combobox", name="Preset").input_value() == src.preset
    assert pg.get_by_role("spinbutton", name="Stage 1 iterations").input_value() == str(TINY["stage1.iterations"])
    assert pg.get_by_role("spinbutton", name="Iterations per round").input_value() == \
        str(TINY["stage2.iterations_per_round"])
    rest = {k: v for k, v in src.overrides.items() if k in ("stage1.init_points", "stage1.densify_until",
                                                              "cameras.max_features")}
    assert json.loads(pg.get_by_label("Advanced overrides (JSON of dotted keys)").input_value()) == rest
    editor, header, rows = _grid(pg, "Elevation (°)")
    radii = src.stage2["radii_m"]
    assert header[-2:] == ["Elevation (°)", "Orbit radius (m)"]
    assert [r[-2:] for r in rows if any(r)] == [[f"{e:g}", f"{r:g}"] for e, r in zip(LOW_SCHEDULE, radii)]
    assert _overrides(pg)["stage2.elevations_deg"] == LOW_SCHEDULE

    # the schedule is editable: the first round 80° -> 70° in the grid
    box = editor.bounding_box()
    pg.mouse.dblclick(box["x"] + 0.3 * box["width"], box["y"] + 35 + 17)  # header row, then row 1 (35 px rows)
    cell = pg.locator("#portal input, #portal textarea").first
    cell.fill("70")
    cell.press("Enter")
    edited = [70.0, *LOW_SCHEDULE[1:]]
    _poll(pg, "the overrides after the edit", lambda: _overrides(pg).get("stage2.elevations_deg"),
          lambda v: v == edited)
    idle(pg)
    _shot(pg, "clone_prefilled")
    assert _job_dirs(ws) == [LOW] and list(_records(ws)) == [LOW]  # still nothing started

    start = pg.get_by_role("button", name=START)
    sync_api.expect(start).to_be_enabled()
    start.click()
    new = _poll(pg, "a second job in the store", lambda: [i for i in _records(ws) if i != LOW],
                lambda ids: len(ids) == 1)[0]
    rec = _records(ws)[new]
    job = load_job(ws / "jobs" / new)
    assert rec.parent == LOW and job.parent == LOW and rec.name == job.name == "low schedule (copy)"
    assert job.elevations == edited and job.overrides["stage2.elevations_deg"] == edited
    assert job.overrides["stage1.init_points"] == TINY["stage1.init_points"]  # the source's other settings
    # the panel follows the new job; Start waits for it
    pg.locator('[data-testid="stMarkdownContainer"] strong', has_text=re.compile(r"^low schedule \(copy\)$")) \
        .first.wait_for()
    sync_api.expect(start).to_be_disabled()
    status = _poll(pg, "the copy's status", lambda: metric(pg, "Status"),
                   lambda s: any(w in s for w in ("done", "failed", "cancelled", "interrupted")),
                   timeout_s=JOB_TIMEOUT_S)
    assert "done" in status, (status, (ws / "jobs" / new / "log.txt").read_text()[-3000:])
    assert [d.name for d in sorted((ws / "jobs" / new / "rounds").iterdir())] == ["0_e70", "1_e60", "2_e40"]
    assert _records(ws)[new].status == "done"
    sync_api.expect(start).to_be_enabled()

    # the Jobs table names the copy's parent
    pg.goto(app["url"] + "/jobs")
    _, header, rows = _grid(pg, "low schedule (copy)", timeout_s=120)
    row = next(r for r in rows if "low schedule (copy)" in r)
    assert row[header.index("parent")] == "low schedule" and row[header.index("job")] == new
    assert not pg.errors, pg.errors


# ------------------------------------------------------------------------------------ 3. reload
def test_a_reload_and_a_new_tab_show_the_running_job_with_eta_and_start_disabled(app, page):
    from skyfall_core.ui.draft import update_draft

    ws, pg = app["ws"], page
    feature = json.loads((SAMPLE / "aoi.geojson").read_text())["features"][0]
    scenes = sorted(str(p) for p in (SAMPLE / "scenes").glob("*.tif"))
    update_draft(ws, aoi=feature, aoi_source="sample", scenes=scenes)  # as the Area and Scenes pages leave it
    # the tiny settings with a stage 1 that runs long after the checks (it is cancelled at the end), on one thread
    long_run = {**TINY, "stage1.iterations": 100_000, "device.threads": 1}

    pg.goto(app["url"] + "/reconstruct")
    pg.get_by_text(f"{len(scenes)} scenes chosen").wait_for(timeout=120_000)
    name = pg.get_by_label("Job name")
    name.fill("long run")
    name.press("Enter")
    advanced = pg.get_by_label("Advanced overrides (JSON of dotted keys)")
    advanced.fill(json.dumps(long_run))
    advanced.press("Control+Enter")
    _poll(pg, "the overrides", lambda: _overrides(pg), lambda o: o.get("stage1.iterations") == 100_000)
    idle(pg)
    pg.get_by_role("button", name=START).click()
    pg.get_by_role("heading", name="Progress").wait_for()
    _poll(pg, "the whole-job ETA", lambda: metric(pg, "ETA (whole job)"), ETA_TEXT.match, timeout_s=JOB_TIMEOUT_S)
    (job_id,) = _records(ws)
    assert _records(ws)[job_id].status == "running"

    def stage1_step(p) -> int | None:
        bar = next((t for t in _stage_bars(p) if "Stage 1" in t), "")
        m = re.search(r"step ([\d,]+) / 100,000", bar)
        return int(m[1].replace(",", "")) if m else None

    pg.reload()
    tab = pg.context.new_page()
    tab.errors = []
    tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    tab.goto(app["url"] + "/reconstruct")
    for fresh in (pg, tab):  # each a new Streamlit session: no job id in its session state
        fresh.get_by_role("heading", name="Progress").wait_for(timeout=120_000)
        fresh.locator('[data-testid="stMarkdownContainer"] strong', has_text=re.compile("^long run$")).first.wait_for()
        assert job_id in fresh.locator('[data-testid="stMarkdownContainer"] code', has_text=job_id).inner_text()
        assert "running" in metric(fresh, "Status")
        assert metric(fresh, "Round") == "0 / 3"
        eta = _poll(fresh, "the whole-job ETA", lambda f=fresh: metric(f, "ETA (whole job)"), ETA_TEXT.match)
        assert re.search(r"Overall \d+%", " ".join(_stage_bars(fresh)))
        first = _poll(fresh, "stage 1's step", lambda f=fresh: stage1_step(f), lambda s: s >= 25)
        assert any(t.startswith("🔄 Stage 1") for t in _stage_bars(fresh))
        _poll(fresh, "stage 1's step moving on", lambda f=fresh: stage1_step(f), lambda s, first=first: s > first,
              timeout_s=JOB_TIMEOUT_S)  # the panel keeps polling the job
        sync_api.expect(fresh.get_by_role("button", name=START)).to_be_disabled()
        assert "long run" in fresh.locator('[data-testid="stCaptionContainer"]').filter(
            has_text="still running").inner_text()
        print(f"fresh page: ETA {eta}, stage 1 step {first}")
    _shot(tab, "reload_running")

    # cancel from the new tab: the job stops, Start comes back
    tab.get_by_role("button", name=re.compile("Cancel")).click()
    status = _poll(tab, "the cancelled status", lambda: metric(tab, "Status"),
                   lambda s: not any(w in s for w in ("running", "cancelling", "queued")), timeout_s=JOB_TIMEOUT_S)
    assert "cancelled" in status and _records(ws)[job_id].status == "cancelled"
    sync_api.expect(tab.get_by_role("button", name=START)).to_be_enabled(timeout=60_000)
    assert not pg.errors and not tab.errors, (pg.errors, tab.errors)
