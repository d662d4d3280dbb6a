import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skyfall_core", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_help_lists_the_commands():
    r = _cli("--help")
    assert r.returncode == 0
    for cmd in ("scenes", "cameras", "config", "reconstruct", "run", "eval", "jobs", "sample", "bench", "serve"):
        assert cmd in r.stdout


def test_jobs_list_json_on_an_empty_workspace(tmp_path):
    text = (REPO / "config.toml").read_text().replace('root = "workspace"', f'root = "{tmp_path / "ws"}"', 1)
    (tmp_path / "config.toml").write_text(text)
    r = _cli("--config", str(tmp_path / "config.toml"), "jobs", "list", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []
    assert (tmp_path / "ws" / "jobs.sqlite").is_file()


def test_scenes_json_lists_the_17_jax_views(jax_dir):
    r = _cli("scenes", str(jax_dir / "images"), "--json", "--no-cache")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 17
    for row in rows:
        assert row["error"] is None
        assert row["acquired"].startswith(("2014", "2015"))
        assert 5.0 < row["off_nadir"] < 33.0 and 0.25 < row["gsd_m"] < 0.45
        assert 30 < row["sun_elevation"] < 80


def test_scenes_reports_a_bad_file_without_breaking(tmp_path):
    (tmp_path / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 100)
    r = _cli("scenes", str(tmp_path), "--json", "--no-cache")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 1 and "broken.tif" in rows[0]["error"]


def test_missing_folder_is_a_clear_error(tmp_path):
    r = _cli("scenes", str(tmp_path / "nope"))
    assert r.returncode == 2 and "nope" in r.stderr and "Traceback" not in r.stderr
