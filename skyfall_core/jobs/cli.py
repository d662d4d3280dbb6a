"""``python -m skyfall_core jobs list|submit|cancel|resume|clone|logs|delete|show|repair``.

Wired into the main CLI with :func:`add_jobs_parser`. Every action takes ``--json``. Errors are
:class:`~skyfall_core.errors.SkyfallError` (printed by the main CLI as one line, exit status 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def add_jobs_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``jobs`` command (with its actions) on the main CLI's sub-parsers."""
    p = subparsers.add_parser("jobs", help="reconstruction jobs: list, submit, cancel, resume, clone, logs, delete")
    sub = p.add_subparsers(dest="jobs_action", required=True, metavar="ACTION")

    s = sub.add_parser("list", help="every job with its status, stage and round")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("submit", help="queue a reconstruction of an AOI from scenes")
    s.add_argument("--name", required=True)
    s.add_argument("--aoi", required=True, help="AOI GeoJSON file (WGS84 polygon)")
    s.add_argument("--scenes", required=True, nargs="+", help="scene files, or folders of scenes")
    s.add_argument("--preset", default="preview")
    _add_overrides(s)
    s.add_argument("--wait", action="store_true", help="block until the job ends (exit 0 when done)")
    s.set_defaults(func=cmd_submit)

    s = sub.add_parser("cancel", help="stop a job between steps (finished rounds are kept)")
    s.add_argument("id")
    s.add_argument("--timeout", type=float, help="seconds before it is killed (default [jobs] cancel_timeout_s)")
    s.add_argument("--wait", action="store_true", help="block until it has stopped")
    s.set_defaults(func=cmd_cancel)

    s = sub.add_parser("resume", help="continue an interrupted, cancelled or failed job from its last round")
    s.add_argument("id")
    s.set_defaults(func=cmd_resume)

    s = sub.add_parser("clone", help="a new job like ID with some settings changed")
    s.add_argument("id")
    s.add_argument("--name")
    _add_overrides(s)
    s.set_defaults(func=cmd_clone)

    s = sub.add_parser("logs", help="print a job's log.txt")
    s.add_argument("id")
    s.add_argument("--offset", type=int, default=0, help="start at this byte")
    s.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    s.set_defaults(func=cmd_logs)

    s = sub.add_parser("delete", help="delete a job that is not running, with its folder")
    s.add_argument("id")
    s.set_defaults(func=cmd_delete)

    s = sub.add_parser("show", help="one job: status and progress (stage, step, losses, ETA)")
    s.add_argument("id")
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("repair", help="rewrite a job's job.json from the job store")
    s.add_argument("id")
    s.set_defaults(func=cmd_repair)

    for action in sub.choices.values():
        action.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def _add_overrides(s: argparse.ArgumentParser) -> None:
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set stage2.elevations_deg=[80,60,40] (JSON values)")


def _manager(args: argparse.Namespace):
    from skyfall_core.config import load_config
    from skyfall_core.jobs.manager import JobManager

    return JobManager(load_config(getattr(args, "config", None)))


def _overrides(items: list[str]) -> dict[str, Any]:
    from skyfall_core.config import parse_override

    return dict(parse_override(t) for t in items)


def _out(args: argparse.Namespace, obj: Any, text: str) -> None:
    print(json.dumps(obj, indent=2, default=str) if args.json else text)


# ------------------------------------------------------------------------------ actions
def cmd_list(args: argparse.Namespace) -> int:
    jobs = _manager(args).list()
    rows = []
    for j in jobs:
        rnd = "" if j.round is None else f"{j.round + 1}/{j.rounds_total or '?'}"
        note = j.error or j.problem or ""
        rows.append([j.id, j.name[:30], j.status, j.stage or "", rnd, j.preset or "", (j.created or "")[:19],
                     note[:80] + ("..." if len(note) > 80 else "")])
    _out(args, [j.to_dict() for j in jobs], _table(["id", "name", "status", "stage", "round", "preset", "created",
                                                     "note"], rows))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    mgr = _manager(args)
    scenes = _expand_scenes(args.scenes, mgr.config.catalog.extensions)
    job_id = mgr.submit(args.name, Path(args.aoi), scenes, args.preset, _overrides(args.overrides))
    if not args.wait:
        info = mgr.get(job_id)
        _out(args, info.to_dict(), f"queued job {job_id} ({info.status}); follow it with "
                                   f"`python -m skyfall_core jobs logs {job_id} -f`")
        return 0
    info = mgr.wait(job_id, timeout_s=float("inf"))
    _out(args, info.to_dict(), f"job {job_id}: {info.status}" + (f" ({info.error})" if info.error else ""))
    return 0 if info.status == "done" else 1


def cmd_cancel(args: argparse.Namespace) -> int:
    info = _manager(args).cancel(args.id, args.timeout, wait=args.wait)
    _out(args, info.to_dict(), f"job {info.id}: {info.status}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    info = _manager(args).resume(args.id)
    _out(args, info.to_dict(), f"job {info.id}: {info.status} (continues from its last finished round)")
    return 0


def cmd_clone(args: argparse.Namespace) -> int:
    mgr = _manager(args)
    job_id = mgr.clone(args.id, _overrides(args.overrides), name=args.name)
    info = mgr.get(job_id)
    _out(args, info.to_dict(), f"queued job {job_id}, a clone of {args.id} ({info.status})")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    mgr = _manager(args)
    chunk = mgr.logs(args.id, args.offset)
    if args.json:
        print(json.dumps({"text": chunk.text, "offset": chunk.offset, "size": chunk.size}))
        return 0
    sys.stdout.write(chunk.text)
    offset = chunk.offset
    while args.follow:
        if mgr.get(args.id).status not in ("queued", "running", "cancelling"):
            args.follow = False  # print the tail once more, then stop
        time.sleep(0.5)
        chunk = mgr.logs(args.id, offset)
        sys.stdout.write(chunk.text)
        sys.stdout.flush()
        offset = chunk.offset
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    _manager(args).delete(args.id)
    _out(args, {"id": args.id, "deleted": True}, f"deleted job {args.id}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    mgr = _manager(args)
    info = mgr.get(args.id)
    prog = mgr.progress(args.id).to_dict() if info.status != "broken" else None
    text = [f"{k}: {v}" for k, v in info.to_dict().items() if v not in (None, {}, "")]
    if prog:
        keys = ("stage", "step", "total", "round", "rounds_total", "elevation", "losses", "stage_eta_s",
                "job_eta_s", "warning_count", "last_error")
        text += [f"progress.{k}: {prog[k]}" for k in keys if prog.get(k) not in (None, {}, [])]
    _out(args, {"job": info.to_dict(), "progress": prog}, "\n".join(text))
    return 0


def cmd_repair(args: argparse.Namespace) -> int:
    path = _manager(args).repair(args.id)
    _out(args, {"id": args.id, "job_json": str(path)}, f"rewrote {path} from the job store")
    return 0


# ------------------------------------------------------------------------------ helpers
def _expand_scenes(items: list[str], extensions: list[str]) -> list[Path]:
    """Files as given; a folder becomes its files with a scene extension (sorted)."""
    from skyfall_core.jobs.store import JobError

    out: list[Path] = []
    exts = {e.lower() for e in extensions}
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in exts)
            if not found:
                raise JobError(f"no scene files ({', '.join(sorted(exts))}) in the folder", path=p,
                               fix="point --scenes at the scene files or the folder holding them")
            out += found
        else:
            out.append(p)
    return out


def _table(columns: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "(no jobs)"
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)

