"""The whole job on the bundled sample with tiny settings: rounds, outputs, cancel and resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from skyfall_core.config import load_config
from skyfall_core.geo.aoi import load_aoi
from skyfall_core.jobfolder import JobDir, iter_all_events
from skyfall_core.pipeline.run import CANCEL_FILE, EXIT_CANCELLED, EXIT_DONE, create_job, run_job

REPO = Path(__file__).resolve().parents[1]
TINY = {"stage1.iterations": 30, "stage1.init_points": 2000, "stage1.densify_until": 20,
        "stage2.iterations_per_round": 6, "stage2.image_size": 48, "cameras.max_image_size": 112,
        "cameras.max_features": 1500}


def _job(root: Path, sample_dir: Path, **extra) -> JobDir:
    cfg = load_config(REPO / "config.toml")
    aoi = load_aoi(sample_dir / "aoi.geojson", cfg.aoi)
    scenes = sorted(str(p) for p in (sample_dir / "scenes").glob("*.tif"))
    return create_job(root, cfg=cfg, preset="preview", aoi=aoi.to_geojson(), scenes=scenes,
                      overrides={**TINY, **extra}, job_id="tiny")


def _check_rounds(job: JobDir, n: int) -> None:
    rounds = job.round_dirs()
    assert [d.name for d in rounds] == ["0_e85", "1_e65", "2_e45"][:n]
    for d in rounds:
        cams = json.loads((d / "cameras.json").read_text())
        assert len(cams["views"]) == 4 and cams["refiner"] in ("classical", "flowedit")
        for v in cams["views"]:
            name = f"{v['index']:03d}.png"
            before, after = cv2.imread(str(d / "before" / name)), cv2.imread(str(d / "after" / name))
            assert before is not None and after is not None and before.shape == after.shape == (48, 48, 3)


def test_preview_job_runs_end_to_end_and_resumes_after_cancel(tmp_path, sample_dir):
    job = _job(tmp_path / "jobs", sample_dir)
    rounds_seen = []

    def stop_after_first_round() -> bool:  # cancel as soon as round 0 is checkpointed
        done = (job.checkpoints / "round_0.safetensors").exists()
        rounds_seen.append(done)
        return done

    assert run_job(job.root, stop_after_first_round) == EXIT_CANCELLED
    state = json.loads((job.root / "state.json").read_text())
    assert "round_0" in state["finished"] and "round_1" not in state["finished"]
    _check_rounds(job, 1)

    assert run_job(job.root) == EXIT_DONE  # resume: rounds 1 and 2, then the exports
    _check_rounds(job, 3)
    for f in ("scene.ply", "scene.compressed.ply", "georef.json", "dsm.tif", "preview.png", "flydown.gif",
              "flydown.mp4", "scene.spz", "dsm.cog.tif", "splat_points.laz", "3dtiles/tileset.json",
              "3dtiles/splats.glb",
              "compare/cameras.json", "compare/top.png", "compare/e45_a090.png"):
        assert (job.final / f).stat().st_size > 0
    meta = json.loads(job.job_json.read_text())
    assert meta["refiner"]["name"] == "classical" and meta["refiner"]["is_diffusion"] is False
    kinds = [e["kind"] for e in iter_all_events(job.events)]
    assert kinds.count("timing") >= 5 and kinds[-1] == "status"
    timings = [e for e in iter_all_events(job.events) if e["kind"] == "timing" and e["stage"] == "round"]
    assert {"render_s", "refine_s", "train_s"} <= set(timings[0])
    assert [e["round"] for e in timings] == [0, 1, 2]

    r = subprocess.run([sys.executable, "-m", "skyfall_core", "eval", "dsm", "--job", str(job.root),
                        "--truth", str(sample_dir / "truth" / "dsm.tif"), "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout)
    # The tiny CPU job measured 6.8 m MAE on 45 % of the sample's truth. The bound catches gross failures
    # (exploding or noisy heights, a DSM in the wrong frame); it does not prove accuracy at this size
    # (a flat plane at the median height scores ~3 m on this sample).
    assert 0.2 < metrics["coverage"] <= 1 and 0 < metrics["mae_m"] < 12.0, metrics
    assert metrics["dsm"].endswith("final/dsm.tif")
    r = subprocess.run([sys.executable, "-m", "skyfall_core", "eval", "dsm", "--job", str(job.root),
                        "--stage", "stage1", "--truth", str(sample_dir / "truth" / "dsm.tif"), "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout)["dsm"].endswith("stage1/dsm.tif"), r.stderr

    r = subprocess.run([sys.executable, "-m", "skyfall_core", "eval", "renders", "--job", str(job.root),
                        "--truth", str(sample_dir / "truth" / "renders"), "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert list(report["checkpoints"]) == ["stage1", "round_0", "round_1", "round_2"]
    n_cams = len(json.loads((sample_dir / "truth" / "renders" / "cameras.json").read_text()))
    for c in report["checkpoints"].values():
        assert len(c["per_camera"]) == n_cams and 3 < c["psnr_mean"] < 60 and -1 < c["ssim_mean"] <= 1
    assert len(list((job.root / "eval" / "renders").glob("round_2_*.png"))) == n_cams


def test_cancel_file_stops_the_job_and_keeps_finished_stages(tmp_path, sample_dir):
    job = _job(tmp_path / "jobs", sample_dir)
    (job.root / CANCEL_FILE).write_text("user")
    assert run_job(job.root) == EXIT_CANCELLED
    state = json.loads((job.root / "state.json").read_text())
    assert state["finished"] == ["scene"]  # the scene was prepared before the first check
    events = list(iter_all_events(job.events))
    assert events[-1] == {**events[-1], "kind": "status", "status": "cancelled"}


def test_bad_job_json_is_a_clear_failure(tmp_path):
    root = tmp_path / "broken"
    root.mkdir()
    (root / "job.json").write_text("{not json")
    assert run_job(root) == 2
    err = [e for e in iter_all_events(root / "events.jsonl") if e["kind"] == "error"][0]
    assert "job.json" in err["text"] and "Fix:" in err["text"]


def test_round_loop_with_a_tiny_flowedit_model(tmp_path, sample_dir):
    pytest.importorskip("diffusers")
    from tiny_models import build_tiny_flux

    model = build_tiny_flux(tmp_path / "tiny-flux")
    job = _job(tmp_path / "jobs", sample_dir, **{"stage2.refiner": "flowedit", "stage2.refiner_model": str(model),
                                                 "stage2.steps": 4, "stage2.n_min": 0, "stage2.n_max": 2,
                                                 "stage2.elevations_deg": [85.0], "stage2.radii_m": [300.0],
                                                 "stage2.image_size": 48, "stage2.fallback_to_classical": False})
    assert run_job(job.root) == EXIT_DONE
    cams = json.loads((job.round_dirs()[0] / "cameras.json").read_text())
    assert cams["refiner"] == "flowedit" and cams["is_diffusion"] is True
    assert json.loads(job.job_json.read_text())["refiner"]["model"] == str(model)
