"""Job folders for the page tests (test-only: not in the package).

:func:`copy_real_job` copies a folder the real pipeline wrote (the session's ``tiny_job``), so the
pages are tested on the layout real jobs have. :func:`synthetic_splat` is a small antimatter15
``.splat`` (32 bytes a splat: position 3xf32, scale 3xf32, RGBA u8, quaternion u8 w,x,y,z
mapped by q*128+128) of a ground plane with a few blocks, in local ENU metres (z up).
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from skyfall_core.atomic import write_json

REPO = Path(__file__).resolve().parents[1]
SPLAT_DTYPE = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])


def synthetic_splat(n: int = 6000, half_size_m: float = 100.0, seed: int = 0) -> bytes:
    """An antimatter15 .splat of a ground plane with blocks, coloured by height (bytes, 32 a splat)."""
    rng = np.random.default_rng(seed)
    pos = np.zeros((n, 3), np.float32)
    pos[:, :2] = rng.uniform(-half_size_m, half_size_m, (n, 2))
    blocks = [(-40, -30, 25, 18), (30, 20, 30, 35), (0, 50, 20, 12), (-50, 45, 18, 24)]  # cx, cy, half, height
    for cx, cy, half, height in blocks:
        inside = (np.abs(pos[:, 0] - cx) < half) & (np.abs(pos[:, 1] - cy) < half)
        pos[inside, 2] = height
    rec = np.zeros(n, SPLAT_DTYPE)
    rec["position"] = pos
    rec["scale"] = half_size_m / math.sqrt(n) * 0.9
    z = pos[:, 2] / 35.0
    rec["rgba"][:, 0] = (90 + 150 * z).clip(0, 255)
    rec["rgba"][:, 1] = (140 + 60 * (1 - z)).clip(0, 255)
    rec["rgba"][:, 2] = (80 + 100 * z).clip(0, 255)
    rec["rgba"][:, 3] = 240
    rec["rot"] = (255, 128, 128, 128)  # identity quaternion
    return rec.tobytes()


def copy_real_job(real: Path, workspace: Path, job_id: str, *, name: str | None = None, parent: str | None = None,
                  rounds_done: int | None = None, status: str = "done") -> Path:
    """``<workspace>/jobs/<job_id>/``: a copy of a job folder the real pipeline wrote (the session's
    ``tiny_job``), renamed; with ``rounds_done`` it is cut back to a job stopped after that many rounds
    (later rounds, final/ and their events removed, then a ``status`` event), as a cancel leaves it."""
    import shutil

    from skyfall_core.jobfolder import JobDir, iter_all_events, update_job_json

    folder = Path(workspace) / "jobs" / job_id
    shutil.copytree(real, folder)
    # the copy's status comes from its events, as a store rebuild does: drop the source's runner files
    # (another test's job manager may have mirrored its own status into the shared job)
    for runner_file in ("status.json", "runner.json", "cancel.request"):
        (folder / runner_file).unlink(missing_ok=True)
    update_job_json(folder, id=job_id, name=name or job_id, parent=parent)
    job = JobDir(folder)
    if rounds_done is None:
        return folder
    kept = []
    for ev in iter_all_events(job.events):
        stop_here = (ev.get("kind") == "stage" and ev.get("state") == "start"
                     and ((ev.get("stage") == "round" and int(ev.get("round", 0)) >= rounds_done)
                          or ev.get("stage") == "final"))
        if stop_here:
            break
        kept.append(ev)
    kept.append({"t": kept[-1]["t"] + 1.0, "kind": "status", "status": status, "text": "stopped by test"})
    job.events.write_text("".join(json.dumps(e) + "\n" for e in kept))
    for d in job.round_dirs():
        if int(d.name.split("_")[0]) >= rounds_done:
            shutil.rmtree(d)
    shutil.rmtree(job.final, ignore_errors=True)
    for k in range(rounds_done, 100):
        (job.checkpoints / f"round_{k}.safetensors").unlink(missing_ok=True)
    state = job.read_state()
    state["finished"] = [f for f in state["finished"]
                         if f in ("scene", "stage1") or (f.startswith("round_") and int(f[6:]) < rounds_done)]
    write_json(job.state_json, state)
    return folder


@contextmanager
def app_session(workspace: Path, tmp_path: Path, monkeypatch) -> Iterator[Any]:
    """The app pointed at ``workspace`` through a copy of config.toml (scenes: the bundled sample),
    with Streamlit's caches cleared before and after and the job manager's scheduler stopped.
    Yields the loaded config."""
    import streamlit as st

    from skyfall_core.config import load_config

    text = (REPO / "config.toml").read_text()
    text = text.replace('root = "workspace"', f'root = "{workspace}"', 1)
    text = text.replace('folders = ["sample_aoi/scenes"]', f'folders = ["{REPO / "sample_aoi" / "scenes"}"]', 1)
    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text(text)
    monkeypatch.setenv("SKYFALL_CONFIG", str(cfg_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    st.cache_data.clear()
    st.cache_resource.clear()
    try:
        yield load_config(cfg_path)
    finally:
        from skyfall_core.ui import state

        if state.get_jobs.__wrapped__ is not None:  # stop the cached manager's scheduler thread
            state.get_jobs().manager.stop_scheduler()
        st.cache_resource.clear()
        st.cache_data.clear()


def run_page(page: str, timeout: float = 120) -> Any:
    """AppTest of ``pages/<page>.py`` (the home page for "home"), run once, without exceptions."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=timeout)
    if page != "home":  # the default page is what a bare run shows (switching to it skips the frame)
        at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at
