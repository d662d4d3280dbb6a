"""Share a splat as ONE self-contained HTML file that opens from disk, with no server.

The file inlines the vendored viewer bundle (three.js + GaussianSplats3D + our mount code,
``static/vendor/splat-viewer/splat-viewer.js``) and the splat itself, base64-encoded in a
``<script type="application/octet-stream" id="skyfall-splat">`` block; a few lines decode it to a
Blob URL and mount the viewer. Nothing is fetched from the network.
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
from skyfall_core.ui.static import vendor_file

VIEWER_BUNDLE = "splat-viewer/splat-viewer.js"
MAX_SHARE_BYTES = 300 * 2**20  # browsers struggle to parse larger inline base64
DATA_ID = "skyfall-splat"


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
    """Viewer format of a splat file from its name: 'splat' (antimatter15) or 'ply' (3DGS, compressed)."""
    name = path.name.lower()
    if name.endswith(".splat"):
        return "splat"
    if name.endswith(".ply"):
        return "ply"
    raise ShareError(f"{path.name} is not a .splat or .ply splat file", path=path,
                     fix="export the job's web splat (final/scene.splat) or PLY")


def share_html(splat: bytes, fmt: str, *, title: str, camera: ShareCamera,
               meta: dict[str, Any] | None = None, viewer_js: str | None = None) -> str:
    """The HTML text of a self-contained viewer page for ``splat`` bytes in format ``fmt``."""
    if fmt not in ("splat", "ply"):
        raise ShareError(f"unknown splat format {fmt!r}", fix="use 'splat' or 'ply'")
    if len(splat) > MAX_SHARE_BYTES:
        raise ShareError(f"the splat is {len(splat) / 2**20:,.0f} MiB; a single HTML file holds at most "
                         f"{MAX_SHARE_BYTES / 2**20:,.0f} MiB", fix="share the .splat/.ply file itself instead")
    js = viewer_js if viewer_js is not None else vendor_file(VIEWER_BUNDLE).read_text(encoding="utf-8")
    options = {"format": fmt, "position": list(camera.position), "lookAt": list(camera.look_at)}
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
#title{{position:absolute;left:12px;top:10px;z-index:20;font-weight:600;font-size:15px;text-shadow:0 1px 2px #000}}
#meta{{position:absolute;right:12px;top:10px;z-index:20;background:rgba(15,23,42,.78);padding:6px 10px;border-radius:4px}}
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
  var opts = {json.dumps(options)};
  opts.data = window.SkyfallViewer.base64ToArrayBuffer(data.textContent.trim());
  window.SkyfallViewer.mount(document.getElementById("viewer"), opts);
}})();
</script>
</body></html>
"""


def export_share(splat_path: Path, out_path: Path, *, title: str, camera: ShareCamera,
                 meta: dict[str, Any] | None = None) -> Path:
    """Write the self-contained HTML of ``splat_path`` to ``out_path`` (atomically)."""
    from skyfall_core.atomic import write_text

    splat_path = Path(splat_path)
    text = share_html(splat_path.read_bytes(), splat_format(splat_path), title=title, camera=camera, meta=meta)
    write_text(out_path, text)
    return Path(out_path)


def read_share(text: str) -> tuple[bytes, str]:
    """(splat bytes, format) embedded in a share HTML file (the inverse of :func:`share_html`)."""
    from html.parser import HTMLParser

    class _Find(HTMLParser):
        def __init__(self):
            super().__init__()
            self.inside, self.fmt, self.chunks = False, None, []

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "script" and a.get("id") == DATA_ID:
                self.inside, self.fmt = True, a.get("data-format")

        def handle_endtag(self, tag):
            if tag == "script":
                self.inside = False

        def handle_data(self, data):
            if self.inside:
                self.chunks.append(data)

    p = _Find()
    p.feed(text)
    if p.fmt is None:
        raise ShareError("no embedded splat in this HTML", fix="export the file again from the Share page")
    return base64.b64decode("".join(p.chunks).strip(), validate=True), p.fmt
