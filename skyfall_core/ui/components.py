"""Small HTML/JS components rendered in iframes: the before/after slider and the splat viewer.

Both are plain HTML strings for ``st.iframe``: the slider carries its two (small, JPEG)
thumbnails as data URLs; the viewer loads the vendored bundle and the job's splat by URL from the
app's static files, so no splat bytes travel with a rerun.
"""

from __future__ import annotations

import html
import json
import math

from skyfall_core.ui.static import vendor_url

SLIDER_CSS = """
body{margin:0;background:transparent;font:12px/1.3 system-ui,sans-serif;color:#cbd5e1}
.ba{position:relative;height:calc(100vh - 12px);max-width:100%;aspect-ratio:__AR__;margin:0 auto;overflow:hidden;
    border-radius:6px;
    background:#0f172a;user-select:none;box-shadow:0 1px 4px rgba(0,0,0,.4)}
.ba img{position:absolute;inset:0;width:100%;height:100%;object-fit:contain;pointer-events:none}
.ba .before{clip-path:inset(0 calc(100% - var(--pos)) 0 0)}
.ba .bar{position:absolute;top:0;bottom:0;left:var(--pos);width:2px;margin-left:-1px;background:#f97316;
    box-shadow:0 0 4px rgba(0,0,0,.6)}
.ba .knob{position:absolute;top:50%;left:var(--pos);width:26px;height:26px;margin:-13px 0 0 -13px;border-radius:50%;
    background:#f97316;border:2px solid #fff;box-sizing:border-box}
.ba input{position:absolute;inset:0;width:100%;height:100%;margin:0;opacity:0;cursor:ew-resize}
.ba .tag{position:absolute;top:6px;padding:2px 6px;border-radius:3px;background:rgba(15,23,42,.75);color:#f8fafc}
.ba .l{left:6px}.ba .r{right:6px}
"""


def before_after_html(before_url: str, after_url: str, *, width: int, height: int,
                      before_label: str = "before", after_label: str = "after", start: float = 50.0) -> str:
    """A before/after comparison slider (drag or arrow keys); images are URLs (data: or static)."""
    ar = f"{max(width, 1)} / {max(height, 1)}"
    css = SLIDER_CSS.replace("__AR__", ar)
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>{css}</style></head><body>
<div class="ba" id="ba" style="--pos:{start:.1f}%">
  <img class="after" alt="{html.escape(after_label)}" src="{html.escape(after_url)}">
  <img class="before" alt="{html.escape(before_label)}" src="{html.escape(before_url)}">
  <div class="bar"></div><div class="knob"></div>
  <span class="tag l">{html.escape(before_label)}</span><span class="tag r">{html.escape(after_label)}</span>
  <input type="range" min="0" max="100" step="0.5" value="{start:.1f}" aria-label="before/after position">
</div>
<script>
  var box = document.getElementById("ba"), input = box.querySelector("input");
  input.addEventListener("input", function () {{ box.style.setProperty("--pos", input.value + "%"); }});
</script></body></html>"""


def default_camera(aoi_area_m2: float | None) -> tuple[list[float], list[float]]:
    """An oblique view from the south at ~35° elevation framing an AOI of that area (scene metres)."""
    half = 0.5 * math.sqrt(aoi_area_m2) if aoi_area_m2 else 150.0
    d = 2.6 * half
    return [0.0, -d * math.cos(math.radians(35)), d * math.sin(math.radians(35))], [0.0, 0.0, 0.0]


def job_camera(aoi_geojson, aoi_settings) -> tuple[list[float], list[float]]:
    """:func:`default_camera` for a job's AOI (GeoJSON; the default framing when it is missing or invalid)."""
    from skyfall_core.errors import SkyfallError
    from skyfall_core.geo.aoi import load_aoi

    area = None
    if aoi_geojson:
        try:
            area = load_aoi(aoi_geojson, aoi_settings).area_m2
        except SkyfallError:
            area = None
    return default_camera(area)


def viewer_html(splat_url: str, fmt: str, *, position: list[float], look_at: list[float],
                height: int = 620) -> str:
    """The splat viewer page: the vendored bundle and the splat, both from the app's static files."""
    opts = json.dumps({"url": splat_url, "format": fmt, "position": position, "lookAt": look_at})
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
html,body{{margin:0;height:100%;background:#0b1220}}#viewer{{position:absolute;inset:0}}
</style></head><body><div id="viewer" style="height:{int(height)}px"></div>
<script src="{vendor_url('splat-viewer/splat-viewer.js')}"></script>
<script>window.SkyfallViewer.mount(document.getElementById("viewer"), {opts});</script>
</body></html>"""
