"""The web splat viewer pages: the Viewer page's iframe, the Compare page's two linked viewers and
the self-contained Share HTML file.

Both run the vendored bundle ``static/vendor/splat-viewer/splat-viewer.js`` (three.js + Spark,
``@sparkjsdev/spark``, + ``viewer_src/splat_viewer.js``; Spark's WASM and worker are inlined in
it). They show what the pipeline writes in ``final/``: ``scene.spz`` (SPZ v3, RUB axes), else
``scene.compressed.ply`` / ``scene.ply`` (older jobs), else a legacy ``scene.splat``
(:func:`job_splat`, after the job folder contract), with the ENU origin of ``georef.json`` for
the cursor's lon/lat/height (:func:`job_georef`) and the rounds' cameras as presets (:func:`round_cameras`).
:func:`pair_viewer_html` mounts the same viewer twice in one page with their cameras linked
(``SkyfallViewer.mountLinked``): move one, the other follows.

The Share file inlines the bundle and the splat itself, base64-encoded in a
``<script type="application/octet-stream" id="skyfall-splat">`` block; a few lines decode it and
mount the viewer. Nothing is fetched from the network: it opens from disk (file://), offline.
When the job has a fly-down (``final/flydown.mp4``, else ``.gif``; :func:`job_flydown`) the file
also carries it, base64 in a ``<script id="skyfall-flydown">`` block, played from a Blob URL in a
panel over the viewer with a "save" link and one button per segment (round) of
``final/flydown.json``.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyfall_core.errors import SkyfallError
from skyfall_core.ui.static import vendor_file, vendor_url

VIEWER_BUNDLE = "splat-viewer/splat-viewer.js"
MAX_SHARE_BYTES = 300 * 2**20  # browsers struggle to parse larger inline base64
DATA_ID = "skyfall-splat"
VIDEO_ID = "skyfall-flydown"
FORMATS = ("spz", "ply", "splat")


class ShareError(SkyfallError):
    """The splat cannot be exported as a single HTML file."""


@dataclass(frozen=True)
class ShareCamera:
    position: tuple[float, float, float]  # scene metres, local ENU (z up)
    look_at: tuple[float, float, float] = (0.0, 0.0, 0.0)


def inline_script(js: str) -> str:
    """JavaScript made safe to place inside an HTML ``<script>`` element (no ``</script``, ``<!--``)."""
    return re.sub(r"</(script)", r"<\\/\1", js, flags=re.IGNORECASE).replace("<!--", "<\\!--")


def splat_format(path: Path) -> str:
    """Viewer format of a splat file from its name: 'spz' (Niantic SPZ, RUB axes), 'ply' (3DGS,
    compressed or not, local ENU) or 'splat' (antimatter15, local ENU)."""
    name = path.name.lower()
    for ext in FORMATS:
        if name.endswith(f".{ext}"):
            return ext
    raise ShareError(f"{path.name} is not a .spz, .ply or .splat splat file", path=path,
                     fix="share the job's final/scene.spz (or scene.compressed.ply / scene.ply)")


def job_splat(job_dir: Path) -> tuple[Path, str] | None:
    """(file, viewer format) of the splat the browser shows for a job: the job folder contract's
    web splat (:meth:`skyfall_core.jobfolder.JobDir.web_splat`: .spz, compressed PLY, PLY), else a
    legacy ``final/scene.splat``; None when there is none."""
    from skyfall_core.jobfolder import JobDir

    found = JobDir(Path(job_dir)).web_splat()
    if found is not None:
        return found
    legacy = JobDir(Path(job_dir)).final / "scene.splat"  # written by releases before the .spz
    return (legacy, "splat") if legacy.is_file() else None


def job_georef(job_dir: Path) -> dict[str, float] | None:
    """The ENU origin {lat, lon, h} of ``final/georef.json`` (the pipeline's ``{"origin": ...}``
    layout or a flat one); None when missing or unreadable (the viewer then shows ENU only)."""
    from skyfall_core.jobfolder import JobDir

    path = JobDir(Path(job_dir)).final_file("georef")
    try:
        doc = json.loads(path.read_text())
        origin = doc.get("origin", doc)
        out = {k: float(origin[k]) for k in ("lat", "lon")}
        out["h"] = float(origin.get("h", 0.0))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return out if -90 <= out["lat"] <= 90 and -180 <= out["lon"] <= 180 else None


def round_cameras(job_dir: Path, limit: int = 48) -> list[dict[str, Any]]:
    """The refinement rounds' cameras (``rounds/*/cameras.json``, OpenCV w2c in local ENU) as viewer
    presets {name, position, lookAt, fov}; unreadable files are skipped."""
    import numpy as np

    out: list[dict[str, Any]] = []
    for f in sorted(Path(job_dir).glob("rounds/*/cameras.json")):
        try:
            doc = json.loads(f.read_text())
            for v in doc["views"]:
                cam = v["camera"]
                w2c = np.asarray(cam["w2c"], float)
                R, t = w2c[:3, :3], w2c[:3, 3]
                centre = -R.T @ t
                look = v.get("lookat") or (centre + R.T @ np.array([0.0, 0.0, 1.0]) * np.linalg.norm(centre)).tolist()
                fov = 2 * np.degrees(np.arctan(0.5 * float(cam["height"]) / float(cam["K"][1][1])))
                name = f"round {doc.get('round', f.parent.name)} · {v.get('elevation_deg', 0):g}° el · " \
                       f"{v.get('azimuth_deg', 0):g}° az"
                out.append({"name": name, "position": [round(float(x), 3) for x in centre],
                            "lookAt": [round(float(x), 3) for x in look], "fov": round(float(fov), 2)})
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue
    return out[:limit]


def viewer_options(fmt: str, camera: ShareCamera, georef: dict[str, float] | None = None,
                   cameras: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The options of ``SkyfallViewer.mount`` (see viewer_src/splat_viewer.js)."""
    if fmt not in FORMATS:
        raise ShareError(f"unknown splat format {fmt!r}", fix=f"use one of {', '.join(FORMATS)}")
    return {"format": fmt, "position": list(camera.position), "lookAt": list(camera.look_at),
            "georef": georef, "cameras": cameras or []}


def _bundle_page(css: str, body: str, script: str) -> str:
    """An iframe page running the vendored bundle (from the app's static files), then ``script``."""
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
html,body{{margin:0;height:100%;background:#0b1220}}{css}
</style></head><body>{body}
<script src="{vendor_url(VIEWER_BUNDLE)}"></script>
<script>{script}</script>
</body></html>"""


def viewer_page_html(splat_url: str, fmt: str, *, camera: ShareCamera, georef: dict[str, float] | None = None,
                     cameras: list[dict[str, Any]] | None = None, height: int = 620) -> str:
    """The Viewer page's iframe: the vendored bundle and the splat, both from the app's static files."""
    opts = viewer_options(fmt, camera, georef, cameras)
    opts["url"] = splat_url
    return _bundle_page("#viewer{position:absolute;inset:0}", f'<div id="viewer" style="height:{int(height)}px"></div>',
                        f'window.SkyfallViewer.mount(document.getElementById("viewer"), '
                        f'{inline_script(json.dumps(opts))});')


@dataclass(frozen=True)
class PairSide:
    """One job of :func:`pair_viewer_html`: its published splat and what its viewer shows."""

    url: str  # the splat's URL (publish_job_file)
    fmt: str  # viewer format (job_splat)
    label: str  # shown over the viewer (the job's name)
    georef: dict[str, float] | None = None  # ENU origin, for the cursor readout
    cameras: list[dict[str, Any]] | None = None  # the job's round cameras as presets (its own ENU)


PAIR_CSS = """
.pair{display:flex;gap:6px}
.side{flex:1 1 0;min-width:0;display:flex;flex-direction:column}
.label{color:#e2e8f0;font:600 13px/1.6 system-ui,sans-serif;padding:2px 8px;white-space:nowrap;overflow:hidden;
  text-overflow:ellipsis}
.view{position:relative;flex:1 1 auto;min-height:0}
"""


def pair_viewer_html(left: PairSide, right: PairSide, *, camera: ShareCamera,
                     offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0), height: int = 520) -> str:
    """Two viewers side by side in one iframe page, their cameras linked: the one the user moves
    leads, the other copies its camera each time it changes (``SkyfallViewer.mountLinked``).

    ``camera`` is the initial view in the left job's local ENU; ``offset_m`` is the right job's ENU
    minus the left's for one point (:func:`skyfall_core.ui.compare.pair_frame`: zero for two jobs of
    one AOI, a height shift when their ground heights differ), so both show the same place.
    """
    right_camera = ShareCamera(tuple(c + o for c, o in zip(camera.position, offset_m, strict=True)),
                               tuple(c + o for c, o in zip(camera.look_at, offset_m, strict=True)))
    opts = []
    for side, cam in ((left, camera), (right, right_camera)):
        o = viewer_options(side.fmt, cam, side.georef, side.cameras)
        o["url"] = side.url
        opts.append(o)
    body = '<div class="pair" style="height:{h}px">{sides}</div>'.format(h=int(height), sides="".join(
        f'<div class="side"><div class="label" title="{html.escape(s.label)}">{html.escape(s.label)}</div>'
        f'<div class="view" id="viewer-{k}"></div></div>' for k, s in (("left", left), ("right", right))))
    link = {"offsets": [[0.0, 0.0, 0.0], [float(v) for v in offset_m]]}
    script = ('window.SkyfallViewer.mountLinked([document.getElementById("viewer-left"), '
              f'document.getElementById("viewer-right")], {inline_script(json.dumps(opts))}, '
              f'{inline_script(json.dumps(link))});')
    return _bundle_page(PAIR_CSS, body, script)


def share_html(splat: bytes, fmt: str, *, title: str, camera: ShareCamera,
               meta: dict[str, Any] | None = None, viewer_js: str | None = None,
               georef: dict[str, float] | None = None, cameras: list[dict[str, Any]] | None = None,
               video: "ShareVideo | None" = None) -> str:
    """The HTML text of a self-contained viewer page for ``splat`` bytes in format ``fmt`` (and the
    job's fly-down ``video``, when given)."""
    options = viewer_options(fmt, camera, georef, cameras)
    if len(splat) > MAX_SHARE_BYTES:
        raise ShareError(f"the splat is {len(splat) / 2**20:,.0f} MiB; a single HTML file holds at most "
                         f"{MAX_SHARE_BYTES / 2**20:,.0f} MiB", fix="share the .spz/.ply file itself instead")
    if video is not None and len(splat) + len(video.data) > MAX_SHARE_BYTES:
        raise ShareError(f"the splat and the fly-down are {(len(splat) + len(video.data)) / 2**20:,.0f} MiB; a "
                         f"single HTML file holds at most {MAX_SHARE_BYTES / 2**20:,.0f} MiB",
                         fix="export without the fly-down video and share final/flydown.mp4 beside it")
    js = viewer_js if viewer_js is not None else vendor_file(VIEWER_BUNDLE).read_text(encoding="utf-8")
    meta_html = ""
    if meta:
        rows = "".join(f"<div><b>{html.escape(str(k))}</b> {html.escape(str(v))}</div>" for k, v in meta.items())
        meta_html = f'<div id="meta">{rows}</div>'
    b64 = base64.b64encode(splat).decode("ascii")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="Skyfall Studio">
<title>{html.escape(title)}</title>
<style>
html,body{{margin:0;height:100%;background:#0b1220;color:#e2e8f0;font:13px/1.4 system-ui,sans-serif}}
#viewer{{position:absolute;inset:0}}
#title{{position:absolute;left:50%;transform:translateX(-50%);top:10px;z-index:20;font-weight:600;font-size:15px;
  text-shadow:0 1px 2px #000;pointer-events:none}}
#meta{{position:absolute;right:12px;top:10px;z-index:20;background:rgba(15,23,42,.78);padding:6px 10px;
  border-radius:4px}}{FLYDOWN_CSS if video is not None else ""}
</style></head>
<body>
<div id="viewer"></div>
<div id="title">{html.escape(title)}</div>
{meta_html}
<script type="application/octet-stream" id="{DATA_ID}" data-format="{fmt}">{b64}</script>
<script>{inline_script(js)}</script>
<script>
(function () {{
  var data = document.getElementById("{DATA_ID}");
  var opts = {inline_script(json.dumps(options))};
  opts.data = window.SkyfallViewer.base64ToArrayBuffer(data.textContent.trim());
  window.SkyfallViewer.mount(document.getElementById("viewer"), opts);
}})();
</script>{flydown_html(video) if video is not None else ""}
</body></html>
"""


def export_share(splat_path: Path, out_path: Path, *, title: str, camera: ShareCamera,
                 meta: dict[str, Any] | None = None, georef: dict[str, float] | None = None,
                 cameras: list[dict[str, Any]] | None = None, video: "ShareVideo | None" = None) -> Path:
    """Write the self-contained HTML of ``splat_path`` (and ``video``) to ``out_path`` (atomically)."""
    from skyfall_core.atomic import write_text

    splat_path = Path(splat_path)
    text = share_html(splat_path.read_bytes(), splat_format(splat_path), title=title, camera=camera, meta=meta,
                      georef=georef, cameras=cameras, video=video)
    write_text(out_path, text)
    return Path(out_path)


def read_share(text: str) -> tuple[bytes, str]:
    """(splat bytes, format) embedded in a share HTML file (the inverse of :func:`share_html`)."""
    found = _embedded(text, DATA_ID)
    if found is None or found[1].get("data-format") is None:
        raise ShareError("no embedded splat in this HTML", fix="export the file again from the Share page")
    return found[0], str(found[1]["data-format"])


def read_share_video(text: str) -> tuple[bytes, str] | None:
    """(fly-down bytes, mime type) embedded in a share HTML file; None when it has none."""
    found = _embedded(text, VIDEO_ID)
    return None if found is None else (found[0], str(found[1].get("data-mime")))


def _embedded(text: str, element_id: str) -> tuple[bytes, dict[str, str | None]] | None:
    """(decoded base64 content, attributes) of the ``<script id=element_id>`` block, or None."""
    from html.parser import HTMLParser

    class _Find(HTMLParser):
        def __init__(self):
            super().__init__()
            self.inside, self.attrs, self.chunks = False, None, []

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "script" and a.get("id") == element_id:
                self.inside, self.attrs = True, a

        def handle_endtag(self, tag):
            if tag == "script":
                self.inside = False

        def handle_data(self, data):
            if self.inside:
                self.chunks.append(data)

    p = _Find()
    p.feed(text)
    if p.attrs is None:
        return None
    return base64.b64decode("".join(p.chunks).strip(), validate=True), p.attrs


# ------------------------------------------------------------------------------ the fly-down
@dataclass(frozen=True)
class ShareVideo:
    """The job's fly-down as the Share file carries it."""

    data: bytes
    mime: str  # video/mp4 (played in a <video>) or image/gif (an <img>)
    name: str  # file name of the panel's "save" link
    segments: tuple[dict[str, Any], ...] = ()  # {label, start_s, end_s} per round (final/flydown.json)


def job_flydown(job_dir: Path, name_prefix: str = "") -> ShareVideo | None:
    """The job's fly-down (``final/flydown.mp4``, else ``flydown.gif``) with its segments from
    ``final/flydown.json`` (none when that is missing or unreadable); None when it has neither."""
    from skyfall_core.jobfolder import FINAL_FILES, JobDir
    from skyfall_core.pipeline.outputs import FLYDOWN_MANIFEST

    jd = JobDir(Path(job_dir))
    outs = jd.final_outputs()
    key = next((k for k in ("flydown_mp4", "flydown_gif") if k in outs), None)
    if key is None:
        return None
    segments: list[dict[str, Any]] = []
    try:
        doc = json.loads((jd.final / FLYDOWN_MANIFEST).read_text())
        segments = [{"label": str(s["label"]), "start_s": float(s["start_s"]), "end_s": float(s["end_s"])}
                    for s in doc["segments"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    name, _, mime = FINAL_FILES[key]
    return ShareVideo(outs[key].read_bytes(), mime, f"{name_prefix}{name}", tuple(segments))


FLYDOWN_CSS = """
#flydown{position:absolute;right:12px;bottom:62px;z-index:20;background:rgba(15,23,42,.86);padding:6px 8px;
  border-radius:4px;max-width:min(560px,60vw)}
#flydown button{font:12px system-ui,sans-serif;margin:2px 4px 2px 0;cursor:pointer}
#flydown a{color:#93c5fd;margin-left:6px}
#flydown .body{margin-top:4px}
#flydown.closed .body{display:none}
#flydown video,#flydown img{display:block;width:100%;max-height:50vh}
"""


def flydown_html(video: ShareVideo) -> str:
    """The fly-down panel and its embedded file (a Blob URL made from the base64 when the page opens:
    works from file://, offline)."""
    b64 = base64.b64encode(video.data).decode("ascii")
    is_video = video.mime.startswith("video/")
    player = ('<video id="flydown-player" controls loop muted playsinline></video>' if is_video
              else '<img id="flydown-player" alt="fly-down">')
    segs = "".join(f'<button type="button" data-t="{float(s["start_s"]):g}">{html.escape(str(s["label"]))}</button>'
                   for s in video.segments) if is_video else ""
    n = len(video.segments)
    rounds = f" · {n} round{'s' if n != 1 else ''}, a segment each" if n else ""
    return f"""
<div id="flydown" class="closed">
<div><button type="button" id="flydown-toggle">▶ Fly-down video (before | after){html.escape(rounds)}</button><a
 id="flydown-save" download="{html.escape(video.name)}">⬇ save</a></div>
<div class="body">{player}<div id="flydown-segments">{segs}</div>
<div id="flydown-error" style="display:none">This browser cannot play it here: save it (⬇) and open it.</div></div>
</div>
<script type="application/octet-stream" id="{VIDEO_ID}" data-mime="{html.escape(video.mime)}">{b64}</script>
<script>
(function () {{
  var data = document.getElementById("{VIDEO_ID}"), box = document.getElementById("flydown");
  var bin = atob(data.textContent.trim()), bytes = new Uint8Array(bin.length);
  for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  var url = URL.createObjectURL(new Blob([bytes], {{type: data.getAttribute("data-mime")}}));
  var player = document.getElementById("flydown-player");
  player.src = url;
  document.getElementById("flydown-save").href = url;
  player.addEventListener("error", function () {{ document.getElementById("flydown-error").style.display = ""; }});
  function play() {{ var r = player.play && player.play(); if (r && r.catch) r.catch(function () {{}}); }}
  var toggle = document.getElementById("flydown-toggle");
  toggle.addEventListener("click", function () {{
    var closed = box.classList.toggle("closed");
    toggle.textContent = (closed ? "▶" : "▼") + toggle.textContent.slice(1);
    if (closed) {{ if (player.pause) player.pause(); }} else play();
  }});
  box.querySelectorAll("#flydown-segments button").forEach(function (b) {{
    b.addEventListener("click", function () {{ player.currentTime = parseFloat(b.getAttribute("data-t")); play(); }});
  }});
  window.skyfallFlydown = {{url: url, mime: data.getAttribute("data-mime"), bytes: bytes.length}};
}})();
</script>"""
