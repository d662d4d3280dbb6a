"""Path safety of names from the browser, static publishing, and scene uploads."""

import io
import zipfile
from pathlib import Path

import pytest

from skyfall_core.ui.paths import UnsafePathError, inside, job_folder, safe_filename
from skyfall_core.ui.static import publish_bytes, publish_job_file, unpublish_job
from skyfall_core.ui.uploads import UploadError, store_uploads

REPO = Path(__file__).resolve().parents[1]
SAMPLE_SCENE = sorted((REPO / "sample_aoi" / "scenes").glob("*.tif"))


@pytest.mark.parametrize("name", ["../x.tif", "..", ".", "a/b.tif", "a\\b.tif", "/etc/passwd", "C:x.tif",
                                  ".hidden.tif", "x\x00.tif", "", "a..b.tif"])
def test_safe_filename_refuses_paths_and_odd_names(name):
    with pytest.raises(UnsafePathError):
        safe_filename(name)


def test_safe_filename_accepts_plain_names_and_checks_suffix():
    assert safe_filename("WV3 2016-01-01_P1BS.NTF") == "WV3 2016-01-01_P1BS.NTF"
    assert safe_filename("scene.TIF", (".tif",)) == "scene.TIF"
    with pytest.raises(UnsafePathError, match="not one of"):
        safe_filename("scene.exe", (".tif",))


def test_inside_refuses_parent_and_absolute_paths(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    assert inside(root, "jobs", "a") == (root / "jobs" / "a").resolve()
    for bad in (("..", "x"), ("jobs", "..", "..", "etc"), ("/etc/passwd",), ("jobs/../../x",)):
        with pytest.raises(UnsafePathError):
            inside(root, *bad)


def test_inside_refuses_symlink_escaping_the_root(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    (tmp_path / "secret").write_text("x")
    (root / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(UnsafePathError, match="leaves its folder"):
        inside(root, "link")


@pytest.mark.parametrize("job_id", ["../x", "a/b", "/abs", "..", "", "a b", "x" * 65, ".git"])
def test_job_folder_rejects_bad_ids(tmp_path, job_id):
    with pytest.raises(UnsafePathError):
        job_folder(tmp_path, job_id)


def test_job_folder_accepts_contract_ids(tmp_path):
    job_id = "20260101-000000-run-abc123"
    assert job_folder(tmp_path, job_id) == (tmp_path / "jobs" / job_id).resolve()


def test_publish_job_file_links_inside_static_and_validates(tmp_path):
    static = tmp_path / "static"
    src = tmp_path / "ws" / "final" / "scene.splat"
    src.parent.mkdir(parents=True)
    src.write_bytes(b"\x00" * 64)
    url = publish_job_file("job-1", src, root=static)
    assert url.startswith("/app/static/_jobs/job-1/scene.splat?v=")
    served = static / "_jobs" / "job-1" / "scene.splat"
    assert served.read_bytes() == src.read_bytes() and not served.is_symlink()
    with pytest.raises(UnsafePathError):
        publish_job_file("../job", src, root=static)
    unpublish_job("job-1", root=static)
    assert not served.exists()
    url2 = publish_bytes(b"png bytes", "png", root=static)
    assert (static / "_cache" / url2.rsplit("/", 1)[1]).read_bytes() == b"png bytes"


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.skipif(not SAMPLE_SCENE, reason="the bundled sample (sample_aoi/scenes) is missing")
def test_store_uploads_keeps_a_real_raster_in_the_workspace(tmp_path):
    data = SAMPLE_SCENE[0].read_bytes()
    stored = store_uploads([(SAMPLE_SCENE[0].name, data), ("notes.txt", b"x")], tmp_path, max_upload_mb=50, batch="b1")
    assert stored.folder == (tmp_path / "uploads" / "b1").resolve()
    assert [p.name for p in stored.rasters] == [SAMPLE_SCENE[0].name]
    assert stored.rasters[0].read_bytes() == data
    zipped = store_uploads([("scenes.zip", _zip({"a.tif": data}, zipfile.ZIP_STORED))], tmp_path, 50, batch="b2")
    assert [p.name for p in zipped.rasters] == ["a.tif"]


def test_store_uploads_refuses_fake_raster_and_leaves_nothing(tmp_path):
    with pytest.raises(UploadError, match="not a readable raster"):
        store_uploads([("fake.tif", b"this is not a tiff")], tmp_path, max_upload_mb=5, batch="b")
    assert not (tmp_path / "uploads" / "b").exists()


def test_store_uploads_refuses_bad_names_sizes_and_zip_bombs(tmp_path):
    with pytest.raises(UnsafePathError):
        store_uploads([("../../evil.tif", b"x")], tmp_path, 5)
    with pytest.raises(UploadError, match="over the upload limit"):
        store_uploads([("big.tif", b"\0" * (2 * 2**20 + 1))], tmp_path, max_upload_mb=2)
    with pytest.raises(UploadError, match="folder part"):
        store_uploads([("s.zip", _zip({"dir/a.tif": b"x"}))], tmp_path, 5)
    with pytest.raises(UploadError, match="zip bomb"):
        store_uploads([("s.zip", _zip({"a.tif": b"\0" * (3 * 2**20)}))], tmp_path, 5)
    with pytest.raises(UploadError, match="unpacks to"):
        store_uploads([("s.zip", _zip({"a.tif": b"\0" * (3 * 2**20)}))], tmp_path, max_upload_mb=0.5)
    with pytest.raises(UploadError, match="no raster"):
        store_uploads([("a.RPB", b"x")], tmp_path, 5)
    assert not (tmp_path / "uploads").exists() or not any((tmp_path / "uploads").rglob("*.*"))
