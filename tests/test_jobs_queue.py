"""Queue and runner mechanics with TRIVIAL worker commands (``python -c ...``), not the pipeline.

These test the scheduler (order, concurrency, detached processes, exit codes, cancel escalation,
reconcile, broken folders, CLI plumbing). The pipeline itself is exercised in
``test_jobs_pipeline.py`` and ``test_jobs_ray.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path

import pytest

from skyfall_core.config import JobsSettings, WorkspaceConfig, load_config
from skyfall_core.jobs.cli import add_jobs_parser
from skyfall_core.jobs.local import hostname, process_alive
from skyfall_core.jobs.manager import JobManager
from skyfall_core.jobs.store import JobError, JobStateError

REPO = Path(__file__).resolve().parents[1]
# argv templates: {python} = this interpreter, {job_dir} = the job folder
RECORD = ["{python}", "-c", "import json, pathlib, sys, time; d = pathlib.Path(sys.argv[1]); t0 = time.time(); "
          "time.sleep(float(sys.argv[2])); (d / 'ran.json').write_text(json.dumps([t0, time.time()]))",
          "{job_dir}", "0.4"]
SLEEP_IGNORING_SIGTERM = ["{python}", "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                          "time.sleep(120)"]
HONOURS_CANCEL = ["{python}", "-c", "import pathlib, sys, time\nd = pathlib.Path(sys.argv[1])\n"
                  "for _ in range(1200):\n    time.sleep(0.05)\n    if (d / 'cancel.request').exists(): sys.exit(3)",
                  "{job_dir}"]


def _exit_with(code: int, error: str | None = None) -> list[str]:
    """Writes a status event (and an error event), then exits with ``code``."""
    events = [{"kind": "status", "status": "running"}] + ([{"kind": "error", "text": error}] if error else [])
    write = "".join(f"f.write(json.dumps({{'t': time.time(), **{ev!r}}}) + '\\n'); " for ev in events)
    return ["{python}", "-c", f"import json, sys, time; f = open(sys.argv[1] + '/events.jsonl', 'a'); {write}"
            f"f.close(); sys.exit({code})", "{job_dir}"]


@pytest.fixture
def config(tmp_path):
    return load_config(REPO / "config.toml").model_copy(update={"workspace": WorkspaceConfig(root=tmp_path / "ws")})


@pytest.fixture
def make(config, sample_dir):
    scenes = sorted((sample_dir / "scenes").glob("*.tif"))[:3]
    managers = []

    def factory(command, **settings):
        m = JobManager(config, settings=JobsSettings(**settings), command=command)
        managers.append(m)
        m.submit_n = lambda name, **kw: m.submit(name, sample_dir / "aoi.geojson", scenes, "preview", **kw)
        return m

    yield factory
    for m in managers:  # leave no job process behind
        for rec in m.store.with_status("running", "cancelling"):
            for pid in (rec.child_pid, rec.pid):
                if pid and process_alive(pid, None):
                    os.killpg(pid, signal.SIGKILL)


def _ran(m, job_id) -> tuple[float, float]:
    return tuple(json.loads((m.store.folder(job_id) / "ran.json").read_text()))


def test_three_queued_jobs_run_one_at_a_time_in_submit_order(make):
    m = make(RECORD)
    ids = [m.submit_n(f"job {i}") for i in range(3)]
    assert [m.get(i).status for i in ids] == ["running", "queued", "queued"]
    for i in ids:
        assert m.wait(i, 30).status == "done"
    spans = [_ran(m, i) for i in ids]
    assert spans[0][1] <= spans[1][0] and spans[1][1] <= spans[2][0]  # no overlap, in order
    starts = [m.record(i).started for i in ids]
    assert starts == sorted(starts)


def test_max_concurrent_two(make):
    m = make(RECORD, max_concurrent=2)
    ids = [m.submit_n(f"job {i}") for i in range(3)]
    assert [m.get(i).status for i in ids] == ["running", "running", "queued"]
    for i in ids:
        m.wait(i, 30)
    (a0, a1), (b0, b1), (c0, _) = (_ran(m, i) for i in ids)
    assert b0 < a1 and c0 >= min(a1, b1) - 0.05  # two at once; the third waits for a slot


def test_exit_codes_become_statuses_with_the_last_error(make):
    cases = {"done": _exit_with(0), "cancelled": _exit_with(3), "failed": _exit_with(2, "AOI outside the scenes"),
             "crash": _exit_with(1), "killed": ["{python}", "-c", "import os; os.kill(os.getpid(), 9)"]}
    jobs = {}
    for name, cmd in cases.items():
        jobs[name] = make(cmd, max_concurrent=5).submit_n(name)
    m = make(None)
    got = {name: m.wait(i, 30) for name, i in jobs.items()}
    assert got["done"].status == "done" and got["done"].error is None
    assert got["cancelled"].status == "cancelled"
    assert got["failed"].status == "failed" and "AOI outside the scenes" in got["failed"].error
    assert got["crash"].status == "failed" and "exit code 1" in got["crash"].error
    assert got["killed"].status == "interrupted" and "SIGKILL" in got["killed"].error
    assert m.record(jobs["failed"]).exit_code == 2


def test_jobs_are_detached_and_the_queue_goes_on_without_the_app(make, config):
    m = make(RECORD)
    first, second = m.submit_n("one"), m.submit_n("two")
    rec = m.record(first)
    assert os.getsid(rec.pid) != os.getsid(0)  # own session: the app's Ctrl-C or exit does not reach it
    del m  # the "app" goes away; nothing pumps the queue any more
    store = JobManager(config, reconcile=False).store
    deadline = time.time() + 30
    while store.require(second).status != "done" and time.time() < deadline:
        time.sleep(0.1)
    assert store.require(first).status == "done" and store.require(second).status == "done"


def test_graceful_cancel_and_resume(make):
    m = make(HONOURS_CANCEL)
    job = m.submit_n("cancel me")
    time.sleep(0.5)
    info = m.cancel(job, timeout_s=30, wait=True)
    assert info.status == "cancelled" and info.error is None  # it stopped by itself (exit 3)
    assert not (m.store.folder(job) / "cancel.request").exists()
    with pytest.raises(JobStateError):
        m.cancel(job)
    m.resume(job)
    assert m.get(job).status == "running" and m.record(job).attempt == 2
    m.cancel(job, timeout_s=30, wait=True)


def test_cancel_escalates_to_sigterm_then_sigkill(make):
    m = make(SLEEP_IGNORING_SIGTERM, kill_grace_s=0.5)
    job = m.submit_n("stubborn")
    time.sleep(0.5)
    rec = m.record(job)
    t0 = time.time()
    info = m.cancel(job, timeout_s=0.5, wait=True)
    assert info.status == "cancelled" and "SIGKILL" in info.error and time.time() - t0 < 8
    assert not process_alive(rec.child_pid, rec.child_start)  # the pipeline is gone when cancel returns
    deadline = time.time() + 10  # its job host notices and exits right after (on a loaded machine, not at once)
    while process_alive(rec.pid, rec.pid_start) and time.time() < deadline:
        time.sleep(0.05)
    assert not process_alive(rec.pid, rec.pid_start)
    assert "SIGTERM to the pipeline" in m.logs(job).text


def test_cancel_of_a_queued_job_and_delete(make):
    m = make(SLEEP_IGNORING_SIGTERM, kill_grace_s=0.5)
    running, queued = m.submit_n("a"), m.submit_n("b")
    assert m.cancel(queued).status == "cancelled"
    with pytest.raises(JobStateError) as exc:
        m.delete(running)
    assert "cancel it first" in exc.value.message and m.store.folder(running).is_dir()
    m.cancel(running, timeout_s=0.2, wait=True)
    m.delete(running)
    assert not m.store.folder(running).exists() and m.store.get(running) is None
    with pytest.raises(JobError):
        m.get(running)
    assert m.record(queued).started is None  # it never ran


def test_reconcile_marks_killed_jobs_interrupted_and_they_resume(make, config):
    m = make(SLEEP_IGNORING_SIGTERM)
    job = m.submit_n("victim")
    time.sleep(0.5)
    rec = m.record(job)
    os.killpg(rec.pid, signal.SIGKILL)  # the host and the pipeline die at once (a crash of the machine)
    os.killpg(rec.child_pid, signal.SIGKILL)
    time.sleep(0.3)
    m2 = JobManager(config, command=SLEEP_IGNORING_SIGTERM)  # the app starts again
    info = m2.get(job)
    assert info.status == "interrupted" and "resume" in info.error
    m2.resume(job)
    assert m2.get(job).status == "running" and m2.record(job).attempt == 2
    m2.cancel(job, timeout_s=0.2, wait=True)


def test_a_reused_pid_is_not_mistaken_for_the_job(make):
    m = make(None)
    job = m.submit_n("ghost", start=False)
    m.store.claim_next(1, "local", hostname())
    m.store.update(job, pid=os.getpid(), pid_start="0")  # this test process holds the pid now
    assert m.reconcile() == [job]
    info = m.get(job)
    assert info.status == "interrupted" and "reused" in info.error


def test_list_reports_broken_folders_instead_of_crashing(make):
    m = make(_exit_with(0))
    ok, torn, lost, noisy, quiet = (m.submit_n(n) for n in ("ok", "torn", "lost", "noisy", "quiet"))
    for j in (ok, torn, lost, noisy, quiet):
        m.wait(j, 30)
    (m.store.folder(quiet) / "events.jsonl").unlink()
    (m.store.folder(torn) / "job.json").write_text('{"id": "torn", ')
    (m.store.folder(lost) / "job.json").unlink()
    with open(m.store.folder(noisy) / "events.jsonl", "a") as f:
        f.write('{"t": 1, "kind": "status", "status": "running"}\nnot json at all\n')
    orphan = m.store.jobs_dir / "20260101-000000-orphan"
    orphan.mkdir()
    (orphan / "job.json").write_bytes(b"\xff\xfe garbage")
    gone = m.submit_n("gone", start=False)
    os.rename(m.store.folder(gone), m.store.jobs_dir.parent / "moved-away")

    infos = {i.id: i for i in m.list()}
    assert infos[ok].status == "done" and infos[ok].error is None and infos[ok].problem is None
    for j in (torn, lost):
        assert infos[j].status == "broken"
        assert "job.json" in infos[j].error and f"jobs repair {j}" in infos[j].error
    assert "unreadable" in infos[torn].error and "missing" in infos[lost].error
    assert infos[noisy].status == "done" and "events.jsonl" in infos[noisy].problem
    assert "line 3" in infos[noisy].problem
    assert infos[quiet].status == "done" and "events.jsonl is missing" in infos[quiet].problem
    assert infos[orphan.name].status == "broken" and f"jobs delete {orphan.name}" in infos[orphan.name].error
    assert infos[gone].status == "broken" and "folder is missing" in infos[gone].error
    with pytest.raises(JobError) as exc:
        m.resume(torn)
    assert "job.json" in exc.value.message
    m.repair(torn)
    assert m.get(torn).status == "done"
    m.delete(orphan.name)
    assert not orphan.exists()


def test_the_cli_actions(make, config, tmp_path, capsys, sample_dir):
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text((REPO / "config.toml").read_text().replace('root = "workspace"',
                                                                   f'root = "{config.workspace_root}"'))
    m = make(_exit_with(0))
    job = m.submit_n("via the app")
    m.wait(job, 30)
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_jobs_parser(parser.add_subparsers(dest="command"))

    def cli(*argv):
        args = parser.parse_args(["--config", str(cfg_file), "jobs", *argv])
        code = args.func(args)
        return code, capsys.readouterr().out

    code, out = cli("list", "--json")
    assert code == 0 and [j["status"] for j in json.loads(out)] == ["done"]
    code, out = cli("list")
    assert job in out and "done" in out
    code, out = cli("show", job, "--json")
    assert json.loads(out)["job"]["id"] == job
    code, out = cli("logs", job)
    assert "exit code 0 -> done" in out
    with pytest.raises(JobStateError):
        cli("resume", job)
    with pytest.raises(Exception) as exc:
        cli("submit", "--name", "x", "--aoi", str(sample_dir / "aoi.geojson"), "--scenes",
            str(sample_dir / "scenes"), "--set", "stage2.nope=1")
    assert "stage2.nope" in str(exc.value)
    code, out = cli("delete", job, "--json")
    assert json.loads(out)["deleted"] and m.store.get(job) is None
