"""Is every file of a job folder readable? (PNGs decode, safetensors load, json and the event log parse.)"""

from __future__ import annotations

import json
from pathlib import Path


def check_job_files(folder: Path) -> tuple[int, list[str]]:
    """(files checked, problems as ``"path: error"``); files starting with "." (an atomic write's
    temporary name, never read) are skipped."""
    from PIL import Image
    from safetensors import safe_open

    checked, bad = 0, []
    for p in sorted(Path(folder).rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        try:
            if p.suffix == ".png":
                with Image.open(p) as im:
                    im.load()
            elif p.suffix == ".safetensors":
                with safe_open(str(p), framework="pt") as f:
                    for key in f.keys():
                        f.get_tensor(key)
            elif p.suffix == ".json":
                json.loads(p.read_text())
            elif p.name == "events.jsonl":  # the last line may be cut short by a kill: it is skipped by readers
                for line in p.read_bytes().split(b"\n")[:-1]:
                    json.loads(line)
            else:
                continue
        except Exception as exc:  # noqa: BLE001 - any failure to read is a finding (SafetensorError is no OSError)
            bad.append(f"{p}: {exc}")
        checked += 1
    return checked, bad
