import json
import subprocess
import sys
from pathlib import Path

import pytest

from skyfall_core.config import config_from_dict, load_config
from skyfall_core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_shipped_config_has_the_three_presets():
    cfg = load_config(REPO / "config.toml")
    assert set(cfg.presets) >= {"preview", "standard", "paper"}
    paper = cfg.preset("paper").stage2
    assert paper.elevations_deg == [85.0, 75.0, 65.0, 55.0, 45.0]
    assert paper.radii_m == [300.0, 275.0, 275.0, 250.0, 250.0]
    assert (paper.fov_deg, paper.lookat_grid, paper.azimuths, paper.edits_per_view) == (60.0, 3, 6, 2)
    assert paper.iterations_per_round == 10_000
    assert cfg.preset("preview").stage2.refiner == "classical"
    assert cfg.server.address == "127.0.0.1"
    assert (cfg.jobs.runner, cfg.jobs.max_concurrent) == ("local", 1)


def test_jobs_section_is_validated():
    assert config_from_dict({"jobs": {"runner": "ray", "ray_address": "10.0.0.5:6379"}}).jobs.runner == "ray"
    with pytest.raises(ConfigError, match=r"'jobs.runner'.*got 'slurm'"):
        config_from_dict({"jobs": {"runner": "slurm"}})
    with pytest.raises(ConfigError, match=r"jobs.max_concurrent"):
        config_from_dict({"jobs": {"max_concurrent": 0}})


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown key 'presets.preview.stage1.iteratons'"):
        config_from_dict({"presets": {"preview": {"stage1": {"iteratons": 5}}}})


def test_bad_value_is_named():
    with pytest.raises(ConfigError, match=r"'device.compute'.*got 'gpu0'"):
        config_from_dict({"device": {"compute": "gpu0"}})
    with pytest.raises(ConfigError, match=r"aoi.max_area_m2"):
        config_from_dict({"aoi": {"max_area_m2": -1}})


def test_schedule_lengths_must_match():
    with pytest.raises(ConfigError, match="one radius per elevation"):
        config_from_dict({"presets": {"x": {"stage2": {"elevations_deg": [80, 60], "radii_m": [300]}}}})


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text("[workspace\nroot=1")
    with pytest.raises(ConfigError, match="not valid TOML") as e:
        load_config(bad)
    assert str(bad) in str(e.value)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_paths_resolve_relative_to_the_config_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[workspace]\nroot = "ws"\n[catalog]\nfolders = ["imgs", "/abs/x"]\n')
    cfg = load_config(f)
    assert cfg.workspace_root == tmp_path / "ws"
    assert cfg.catalog_folders == [tmp_path / "imgs", Path("/abs/x")]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skyfall_core", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli_prints_resolved_config_and_errors_without_traceback(tmp_path):
    r = _cli("config", "--preset", "paper")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert list(data["presets"]) == ["paper"]
    bad = tmp_path / "c.toml"
    bad.write_text("[device]\ncompute = 'tpu'\n")
    r = _cli("--config", str(bad), "config")
    assert r.returncode == 2
    assert "device.compute" in r.stderr and "Traceback" not in r.stderr
