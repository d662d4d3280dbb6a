"""Clone (an editable copy) and the progress panel under AppTest, on copies of the session's real
tiny job (issue 17)."""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

st = pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from skyfall_core.jobfolder import JobDir, iter_all_events  # noqa: E402
from skyfall_core.jobs.progress import ProgressTracker  # noqa: E402
from skyfall_core.ui.draft import load_draft, update_draft  # noqa: E402

from fixtures_app import app_session, copy_real_job, run_page  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_aoi"
pytestmark = pytest.mark.skipif(not (SAMPLE / "aoi.geojson").is_file(), reason="bundled sample_aoi/ missing")
A = "20260101-000000-a"


@pytest.fixture()
def app_env(tmp_path, monkeypatch):
    from skyfall_core.jobs.manager import JobManager

    monkeypatch.setattr(JobManager, "pump", lambda self: [])  # submitted jobs stay queued: no process starts
    with app_session(tmp_path / "ws", tmp_path, monkeypatch) as cfg:
        yield cfg


def _run(page: str, timeout: float = 120) -> AppTest:
    return run_page(page, timeout)


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _stage_texts(at: AppTest) -> list[str]:
    return [p.proto.text for p in at.get("progress")]


def _cut_in_stage1(folder: Path, status_event: str | None) -> None:
    """The job's events up to its first stage-1 progress event (step 25 of 30), then ``status_event``."""
    job = JobDir(folder)
    kept = []
    for ev in iter_all_events(job.events):
        if ev.get("kind") == "progress" and ev.get("stage") == "stage1":
            # a fixed pace (25 of 30 steps in 25.5 s), so the ETAs do not depend on the machine that ran the job
            kept.append({**ev, "step": 25, "total": 30, "seconds": 25.5})
            break
        kept.append(ev)
    if status_event:
        kept.append({"t": kept[-1]["t"] + 1.0, "kind": "status", "status": status_event})
    job.events.write_text("".join(json.dumps(e) + "\n" for e in kept))
    job.state_json.write_text(json.dumps({"finished": ["scene"], "rounds_total": 3}))


def test_clone_prefills_reconstruct_and_starts_only_on_start(app_env, tiny_job):
    ws = app_env.workspace_root
    folder = copy_real_job(tiny_job, ws, A, name="high")
    job = json.loads((folder / "job.json").read_text())
    at = _run("jobs")
    next(b for b in at.button if b.label == "Clone").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert "Reconstruct" in at.title[0].value
    assert sorted(p.name for p in (ws / "jobs").iterdir()) == [A]  # nothing started
    draft = load_draft(ws)
    assert draft.aoi["geometry"] == job["aoi"]["geometry"] and list(draft.scenes) == job["scenes"]
    assert at.selectbox(key="preset").value == job["preset"]
    assert at.text_input(key="job_name").value == "high (copy)"
    s1 = job["config"]["presets"][job["preset"]]["stage1"]["iterations"]
    assert at.number_input(key=f"{job['preset']}:stage1.iterations").value == s1
    assert any("A copy of job **high**" in i.value for i in at.info)
    code = "\n".join(c.value for c in at.code)
    assert f'"stage1.iterations": {s1}' in code

    start = next(b for b in at.button if "Start" in b.label)
    assert not start.disabled
    at.switch_page("pages/reconstruct.py")  # the browser is on Reconstruct now (AppTest keeps its first page)
    start.click().run()
    assert not at.exception, [e.message for e in at.exception]
    new = [p.name for p in (ws / "jobs").iterdir() if p.name != A]
    assert len(new) == 1
    started = json.loads((ws / "jobs" / new[0] / "job.json").read_text())
    assert started["name"] == "high (copy)" and started["parent"] == A  # the clone keeps its parent
    assert any("**high (copy)**" in m.value for m in at.markdown)  # the panel shows the new job
    assert next(b for b in at.button if "Start" in b.label).disabled  # its job of this draft is queued
    assert any("high (copy)" in c.value and "still running" in c.value for c in at.caption)


def test_done_job_shows_all_rounds_and_links_to_viewer_and_rounds(app_env, tiny_job):
    copy_real_job(tiny_job, app_env.workspace_root, A, name="high")
    at = _run("jobs")
    m = _metrics(at)
    assert m["Round"] == "3 / 3" and m["ETA (whole job)"] == "–"
    links = [(p.proto.label, p.proto.page) for p in at.get("page_link")]
    assert any(lab == "Open in Viewer" and "viewer" in page for lab, page in links)
    assert any(lab == "Open in Rounds" and "rounds" in page for lab, page in links)
    texts = _stage_texts(at)
    assert not any("🔄" in t for t in texts)
    rounds = [t for t in texts if t.startswith("✅ Round")]
    assert len(rounds) == 3 and all("training: step 6 / 6" in t for t in rounds)


def test_cancelled_job_has_no_spinner_and_counts_rounds_done(app_env, tiny_job):
    ws = app_env.workspace_root
    copy_real_job(tiny_job, ws, A, name="stopped", rounds_done=1, status="cancelled")
    at = _run("jobs")
    assert _metrics(at)["Round"] == "1 / 3"
    copy_real_job(tiny_job, ws, "20260101-000100-b", name="stopped in stage 1", rounds_done=0, status="cancelled")
    _cut_in_stage1(ws / "jobs" / "20260101-000100-b", "cancelled")
    at = _run("jobs")  # the newest job is picked
    texts = _stage_texts(at)
    assert not any("🔄" in t for t in texts)
    assert any(t.startswith("⏹️ Stage 1") and "stopped (cancelled)" in t for t in texts)
    assert not at.get("page_link") or all("Open in" not in p.proto.label for p in at.get("page_link"))


def test_a_new_tab_shows_the_running_job_with_a_whole_job_eta_and_start_disabled(app_env, tiny_job):
    ws = app_env.workspace_root
    folder = copy_real_job(tiny_job, ws, A, name="running one", rounds_done=0, status="running")
    _cut_in_stage1(folder, None)
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()  # not yet "unstarted" for reconcile
    (folder / "status.json").write_text(json.dumps({"status": "running", "started": later}))
    job = json.loads((folder / "job.json").read_text())
    update_draft(ws, aoi=job["aoi"], aoi_source="sample", scenes=job["scenes"])

    at = _run("reconstruct")  # a fresh session: no job in session state
    assert any("**running one**" in m.value for m in at.markdown)
    m = _metrics(at)
    assert "running" in m["Status"] and m["Round"] == "0 / 3"
    # the page shows the one progress fold's whole-job ETA (the job's plan at the measured costs);
    # it is more than stage 1's ETA (5.1 s: 25 of 30 steps in 25.5 s) + 3 rounds x 6 steps at 1.02 s
    eta = m["ETA (whole job)"]
    minutes, seconds = eta.rstrip("s").split("m")
    shown = 60 * int(minutes) + int(seconds)
    expected = ProgressTracker(folder / "events.jsonl").update().job_eta_s
    assert expected is not None and abs(shown - expected) <= 1.0, (eta, expected)
    assert shown > 23, eta
    assert next(b for b in at.button if "Start" in b.label).disabled
    assert any("running one" in c.value and "still running" in c.value for c in at.caption)


def _sample_feature():
    return json.loads((SAMPLE / "aoi.geojson").read_text())["features"][0]


def test_small_items_scenes_rounds_reconstruct(app_env, tiny_job):
    ws = app_env.workspace_root
    update_draft(ws, aoi=_sample_feature(), aoi_source="sample")
    at = _run("scenes")
    assert not at.error  # no red "0 scene(s) chosen" before any action
    assert any("No views chosen yet" in i.value for i in at.info)
    auto = next(b for b in at.button if "Auto-select" in b.label)
    assert auto.label == "Auto-select a diverse set" and auto.proto.icon.startswith(":material/")

    copy_real_job(tiny_job, ws, A, name="high")
    at = _run("rounds")
    info = " ".join(i.value for i in at.info)
    assert info.count("classical") == 2 and "classical — classical" not in info  # name, then "not diffusion"
    cam = json.loads(at.json[0].value)
    floats = [v for v in cam.values() if isinstance(v, float)]
    assert floats and all(len(repr(v).split(".")[1]) <= 2 for v in floats), cam
    at = _run("jobs")
    clone = next(b for b in at.button if b.label == "Clone")
    assert clone.proto.icon == ":material/content_copy:"

    # an AOI that none of the chosen scenes covers: no green boxes, Start disabled
    far = _sample_feature()
    far["geometry"]["coordinates"] = [[[x + 0.5, y] for x, y in ring] for ring in far["geometry"]["coordinates"]]
    scenes = sorted(str(p) for p in (SAMPLE / "scenes").glob("*.tif"))
    update_draft(ws, aoi=far, aoi_source="drawn", scenes=scenes)
    at = _run("reconstruct")
    assert not at.success
    assert any("do not cover this AOI" in e.value for e in at.error)
    assert next(b for b in at.button if "Start" in b.label).disabled


def test_sky_plot_labels_are_short_and_do_not_overlap():
    from skyfall_core.ui.scenes import label_positions, short_labels

    assert short_labels(["01_SFS2_20230118T172621", "02_SFS1_20230327T170954"]) == ["01", "02"]
    assert short_labels(["JAX_068_001_RGB", "JAX_068_002_RGB"]) == ["001", "002"]
    pts = [(10.0, 10.0), (10.5, 10.2), (11.0, 9.8), (0.0, 0.0), (-20.0, 5.0), (-20.3, 5.5), (30.0, -30.0)]
    pos = label_positions(pts)
    for i in range(len(pos)):
        for j in range(i):
            assert abs(pos[i][0] - pos[j][0]) >= 5.0 or abs(pos[i][1] - pos[j][1]) >= 3.2, (i, j, pos)
