"""The progress panel's fold of events.jsonl over the events a real stage-2 round writes.

A round emits ``progress`` events of two kinds (stage2.py): ``stage="refine"`` while the refiner
edits the renders (no losses) and ``stage="round"`` while it retrains. Both belong to that round's
bar; the browser end-to-end test found the Jobs page crashing on the "refine" ones.
"""

from skyfall_core.ui.jobs import summarise_events


def _round_events(k: int, elevation: float, t0: float) -> list[dict]:
    rnd = {"round": k, "elevation": elevation}
    ev = [{"t": t0, "kind": "stage", "stage": "round", "state": "start", "views": 2, **rnd}]
    ev += [{"t": t0 + 0.1 * i, "kind": "progress", "stage": "refine", "step": i, "total": 2, **rnd} for i in (1, 2)]
    ev += [{"t": t0 + 1, "kind": "progress", "stage": "round", "step": 6, "total": 6,
            "losses": {"photo": 0.1, "loss": 0.3}, **rnd},
           {"t": t0 + 1.1, "kind": "timing", "stage": "round", "render_s": 0.1, "refine_s": 0.1, "train_s": 1, **rnd},
           {"t": t0 + 1.2, "kind": "stage", "stage": "round", "state": "done", **rnd}]
    return ev


def test_refine_progress_belongs_to_its_round():
    ev = [{"t": 1, "kind": "status", "status": "running"},
          {"t": 2, "kind": "stage", "stage": "scene", "state": "start"},
          {"t": 3, "kind": "stage", "stage": "scene", "state": "done"},
          {"t": 4, "kind": "stage", "stage": "stage1", "state": "start"},
          {"t": 5, "kind": "progress", "stage": "stage1", "step": 30, "total": 30, "losses": {"loss": 0.5}},
          {"t": 6, "kind": "stage", "stage": "stage1", "state": "done"}]
    ev += _round_events(0, 85.0, 10)
    ev += [{"t": 20, "kind": "stage", "stage": "round", "state": "start", "round": 1, "elevation": 65.0, "views": 2},
           {"t": 20.1, "kind": "progress", "stage": "refine", "step": 1, "total": 2, "round": 1, "elevation": 65.0}]
    p = summarise_events(ev, rounds_total=2, elevations=[85, 65])
    assert [s.key for s in p.stages] == ["scene", "stage1", "round_0", "round_1", "final"]
    assert [s.state for s in p.stages] == ["done", "done", "done", "running", "pending"]
    assert p.stages[3].label == "Round 2 · 65° elevation" and (p.stages[3].step, p.stages[3].total) == (1, 2)
    assert p.current == "round_1" and p.round == 1 and p.elevation == 65.0
    # only events with losses are chart rows; x is cumulative over stage 1 and the rounds
    assert [(r["stage"], r["x"]) for r in p.losses] == [("stage1", 30), ("round", 36)]

    ev += [{"t": 21, "kind": "progress", "stage": "round", "step": 6, "total": 6, "losses": {"loss": 0.2},
            "round": 1, "elevation": 65.0},
           {"t": 22, "kind": "stage", "stage": "round", "state": "done", "round": 1, "elevation": 65.0},
           {"t": 23, "kind": "stage", "stage": "final", "state": "start"},
           {"t": 24, "kind": "stage", "stage": "final", "state": "done"}]
    done = summarise_events(ev, 2, [85, 65], status="done")
    assert done.status == "done" and done.fraction == 1.0
    assert all(s.state == "done" for s in done.stages) and done.losses[-1]["x"] == 42


def test_an_unknown_stage_is_shown_by_name():
    ev = [{"t": 1, "kind": "progress", "stage": "upload", "step": 1, "total": 3}]
    p = summarise_events(ev, rounds_total=1, elevations=[85])
    assert "upload" in [s.label for s in p.stages] and p.current == "upload"
