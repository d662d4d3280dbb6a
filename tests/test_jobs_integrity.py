import json

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from skyfall_core.jobs.integrity import check_job_files


def test_truncated_files_are_found_and_temporary_names_skipped(tmp_path):
    (tmp_path / "rounds" / "0_e85" / "after").mkdir(parents=True)
    png = tmp_path / "rounds" / "0_e85" / "after" / "v0.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(png)
    save_file({"means": torch.rand(100, 3)}, str(tmp_path / "round_0.safetensors"))
    (tmp_path / "job.json").write_text(json.dumps({"id": "x"}))
    (tmp_path / "events.jsonl").write_text('{"kind": "status"}\n{"kind": "prog')  # last line cut by a kill: fine
    (tmp_path / ".job.json.tmp").write_text("{half")  # an atomic write cut short: never read
    assert check_job_files(tmp_path) == (4, [])

    png.write_bytes(png.read_bytes()[:200])
    ckpt = tmp_path / "round_0.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:-64])
    (tmp_path / "job.json").write_text('{"id": ')
    checked, bad = check_job_files(tmp_path)
    assert checked == 4
    assert sorted(b.split(":")[0].rsplit("/", 1)[-1] for b in bad) == ["job.json", "round_0.safetensors", "v0.png"]
