"""final/ outputs: the AOI's same-camera set, its renders, and the fly-down (one segment per round),
on synthetic renders and on the real tiny job; the fly-down in the Share file."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from skyfall_core.jobfolder import JobDir, load_job
from skyfall_core.pipeline.outputs import (
    COMPARE_AZIMUTHS,
    COMPARE_ELEVATIONS,
    FLYDOWN_FRAMES,
    FLYDOWN_MANIFEST,
    compare_cameras,
    flydown_cameras,
    flydown_segments,
    strip_segment,
    write_compare_renders,
    write_flydown,
)

BOUNDS = (-60.0, 40.0, -30.0, 50.0, -5.0, 40.0)  # ENU box, not centred on the origin


def _corners(bounds, z=0.0):
    x0, x1, y0, y1 = bounds[:4]
    return np.array([[x0, y0, z], [x0, y1, z], [x1, y0, z], [x1, y1, z]])


def test_compare_cameras_frame_the_aoi_from_every_side_and_depend_only_on_it():
    cams = compare_cameras(BOUNDS)
    names = [n for n, _, _ in cams]
    assert len(names) == len(set(names)) == 1 + len(COMPARE_ELEVATIONS) * len(COMPARE_AZIMUTHS)
    centre = np.array([[(BOUNDS[0] + BOUNDS[1]) / 2, (BOUNDS[2] + BOUNDS[3]) / 2, 0.0]])
    for name, cam, desc in cams:
        uv, depth = cam.project(centre)
        np.testing.assert_allclose(uv[0], [(cam.width - 1) / 2, (cam.height - 1) / 2], atol=1e-6)
        uv, depth = cam.project(_corners(BOUNDS))
        assert (depth > 0).all()
        assert (uv >= 0).all() and (uv[:, 0] <= cam.width - 1).all() and (uv[:, 1] <= cam.height - 1).all(), name
        up = cam.camera_center - centre[0]
        elev = np.degrees(np.arcsin(up[2] / np.linalg.norm(up)))
        assert abs(elev - desc["elevation_deg"]) < 1e-6
    again = compare_cameras(BOUNDS)
    for (_, a, _), (_, b, _) in zip(cams, again):
        np.testing.assert_array_equal(a.w2c, b.w2c)


def test_compare_renders_are_written_with_their_cameras(tmp_path):
    seen = []

    def render(cam):
        seen.append(cam)
        return np.full((cam.height, cam.width, 3), 10 * len(seen) % 255, np.uint8)

    names = write_compare_renders(tmp_path / "compare", render, BOUNDS)
    meta = json.loads((tmp_path / "compare" / "cameras.json").read_text())
    assert [v["name"] for v in meta["views"]] == names and len(seen) == len(names)
    for v in meta["views"]:
        img = np.asarray(Image.open(tmp_path / "compare" / v["file"]))
        assert img.shape == (v["camera"]["height"], v["camera"]["width"], 3)


def _elevation(cam, bounds=BOUNDS) -> float:
    d = cam.camera_center - np.array([(bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, 0.0])
    return float(np.degrees(np.arcsin(d[2] / np.linalg.norm(d))))


def test_flydown_cameras_descend():
    elevs = [_elevation(c) for c in flydown_cameras(BOUNDS, n_frames=6, size=40)]
    assert abs(elevs[0] - 85.0) < 1e-6 and abs(elevs[-1] - 45.0) < 1e-6 and np.all(np.diff(elevs) < 0)


def test_flydown_has_one_segment_per_round_through_its_elevation():
    elevations = [85.0, 75.0, 65.0, 55.0, 45.0]
    segs = flydown_segments(elevations)
    assert [s.round for s in segs] == list(range(5)) and [s.elevation_deg for s in segs] == elevations
    assert sum(s.frames for s in segs) == FLYDOWN_FRAMES and all(s.frames >= 4 for s in segs)
    assert [s.first_frame for s in segs] == [sum(x.frames for x in segs[:k]) for k in range(5)]
    for a, b in zip(segs, segs[1:]):
        assert a.elevation_to == b.elevation_from  # one continuous descent
        assert b.before == a.after  # a round starts from the splats the last one ended with
    for s in segs:
        assert s.elevation_from >= s.elevation_deg >= s.elevation_to  # each passes its round's elevation
        assert s.after == f"round_{s.round}" and s.before == ("stage1" if s.round == 0 else f"round_{s.round - 1}")
    assert (segs[0].elevation_from, segs[-1].elevation_to) == (85.0, 45.0)
    many = flydown_segments([80.0 - 5 * k for k in range(15)])  # more rounds than 48 / 4 frames
    assert len(many) == 15 and all(s.frames >= 4 for s in many)
    none = flydown_segments([])  # a job without rounds: stage 1 beside itself
    assert len(none) == 1 and none[0].before == none[0].after == "stage1"


def test_flydown_puts_each_rounds_before_beside_its_after(tmp_path):
    shades = {"stage1": 0, "round_0": 60, "round_1": 120, "round_2": 180}  # a grey per checkpoint
    asked = []

    def render_of(key):  # + a little per camera (identical GIF frames would be merged)
        asked.append(key)
        return lambda cam: np.full((cam.height, cam.width, 3), shades[key] + int(cam.camera_center.sum()) % 20,
                                   np.uint8)

    segs = flydown_segments([85.0, 65.0, 45.0], n_frames=14)
    files = write_flydown(tmp_path, segs, render_of, BOUNDS, size=40)
    assert [f.name for f in files] == ["flydown.gif", "flydown.mp4", FLYDOWN_MANIFEST]
    assert asked == ["stage1", "round_0", "round_0", "round_1", "round_1", "round_2"]  # in segment order
    manifest = json.loads((tmp_path / FLYDOWN_MANIFEST).read_text())
    assert manifest["frames"] == 14 and [s["round"] for s in manifest["segments"]] == [0, 1, 2]
    gif = Image.open(files[0])
    assert gif.n_frames == 14
    for seg in segs:
        for i in range(seg.first_frame, seg.first_frame + seg.frames):
            gif.seek(i)
            frame = np.asarray(gif.convert("RGB"))
            h = frame.shape[0] - manifest["strip_px"]
            left, right = frame[h // 2, 20].astype(int), frame[h // 2, 40 + 4 + 20].astype(int)
            assert abs(left.mean() - shades[seg.before]) < 25 and abs(right.mean() - shades[seg.after]) < 25, i
            assert strip_segment(frame, len(segs)) == seg.round, i


def _segments_of(frames, n):
    """[(segment read from the strip, frames in a row)] of a frame sequence."""
    runs = []
    for f in frames:
        k = strip_segment(f, n)
        if runs and runs[-1][0] == k:
            runs[-1][1] += 1
        else:
            runs.append([k, 1])
    return [tuple(r) for r in runs]


def test_a_finished_job_has_compare_and_a_flydown_segment_per_round(tiny_job):
    """The real tiny job: final/compare/ and the fly-down; the video read back has one segment a
    round, in order, with the manifest's frame counts, and the rounds' elevations."""
    import imageio_ffmpeg

    job = JobDir(tiny_job)
    meta = load_job(tiny_job)
    rounds = job.round_dirs()
    assert len(rounds) == meta.rounds_total == 3
    cams = json.loads((job.compare / "cameras.json").read_text())
    assert len(cams["views"]) == 1 + len(COMPARE_ELEVATIONS) * len(COMPARE_AZIMUTHS)
    assert all((job.compare / v["file"]).is_file() for v in cams["views"])
    outs = job.final_outputs()
    assert {"flydown_mp4", "flydown_gif"} <= set(outs)

    manifest = json.loads((job.final / FLYDOWN_MANIFEST).read_text())
    segs = manifest["segments"]
    assert len(segs) == meta.rounds_total
    assert [s["elevation_deg"] for s in segs] == meta.elevations
    for s, d in zip(segs, rounds):
        assert d.name == f"{s['round']}_e{s['elevation_deg']:.0f}"
    assert sum(s["frames"] for s in segs) == manifest["frames"]

    reader = imageio_ffmpeg.read_frames(str(outs["flydown_mp4"]))
    info = next(reader)
    w, h = info["size"]
    frames = [np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in reader]
    assert len(frames) == manifest["frames"] and info["fps"] == manifest["fps"]
    assert _segments_of(frames, len(segs)) == [(s["round"], s["frames"]) for s in segs]

    gif = Image.open(outs["flydown_gif"])
    assert gif.n_frames == manifest["frames"]
    gif_frames = []
    for i in range(gif.n_frames):
        gif.seek(i)
        gif_frames.append(np.asarray(gif.convert("RGB")))
    assert _segments_of(gif_frames, len(segs)) == [(s["round"], s["frames"]) for s in segs]


def test_the_share_file_carries_the_flydown(tiny_job, tmp_path):
    from skyfall_core.ui.share import ShareCamera, export_share, job_flydown, job_splat, read_share, read_share_video

    video = job_flydown(tiny_job, name_prefix="tiny_")
    assert video is not None and video.mime == "video/mp4" and video.name == "tiny_flydown.mp4"
    assert [s["label"] for s in video.segments] == ["round 1 · 85°", "round 2 · 65°", "round 3 · 45°"]
    splat, fmt = job_splat(tiny_job)
    out = export_share(splat, tmp_path / "share.html", title="t", camera=ShareCamera((0.0, -100.0, 80.0)),
                       video=video)
    text = out.read_text()
    assert read_share(text) == (splat.read_bytes(), fmt)
    assert read_share_video(text) == ((JobDir(tiny_job).final / "flydown.mp4").read_bytes(), "video/mp4")
    assert text.count('<button type="button" data-t=') == 3 and 'download="tiny_flydown.mp4"' in text
    without = export_share(splat, tmp_path / "plain.html", title="t", camera=ShareCamera((0.0, -100.0, 80.0)))
    assert read_share_video(without.read_text()) is None and "flydown" not in without.read_text()
