#!/usr/bin/env bash
# Vendor the browser-side JavaScript/CSS of the app from npm into static/vendor/ (committed).
#
# The app serves everything it runs in the browser itself (Streamlit static serving, /app/static/),
# so it works offline: Leaflet + Leaflet.draw for the folium maps, and one bundled splat viewer
# (three.js + GaussianSplats3D + skyfall_core/ui/viewer_src/splat_viewer.js, built with esbuild).
# Only map tiles may come from the internet; the maps have a tile-less fallback.
#
# Usage: scripts/vendor_js.sh            (needs node >= 18 and npm with access to the npm registry)
# Re-run it after changing a version below or the viewer source, then commit static/vendor/.
set -euo pipefail

LEAFLET=1.9.4
LEAFLET_DRAW=1.0.4
THREE=0.172.0
GS3D=0.4.7          # @mkkellogg/gaussian-splats-3d
ESBUILD=0.28.2      # build tool only, not shipped

REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$REPO/static/vendor"
SRC="$REPO/skyfall_core/ui/viewer_src/splat_viewer.js"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

cd "$WORK"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent \
  "leaflet@$LEAFLET" "leaflet-draw@$LEAFLET_DRAW" "three@$THREE" \
  "@mkkellogg/gaussian-splats-3d@$GS3D" "esbuild@$ESBUILD"

rm -rf "$OUT/leaflet" "$OUT/leaflet-draw" "$OUT/splat-viewer"
mkdir -p "$OUT/leaflet/images" "$OUT/leaflet-draw/images" "$OUT/splat-viewer"
cp node_modules/leaflet/dist/leaflet.js node_modules/leaflet/dist/leaflet.css "$OUT/leaflet/"
cp node_modules/leaflet/dist/images/*.png "$OUT/leaflet/images/"
cp node_modules/leaflet/LICENSE "$OUT/leaflet/LICENSE"
cp node_modules/leaflet-draw/dist/leaflet.draw.js node_modules/leaflet-draw/dist/leaflet.draw.css "$OUT/leaflet-draw/"
cp node_modules/leaflet-draw/dist/images/spritesheet*.png node_modules/leaflet-draw/dist/images/spritesheet.svg "$OUT/leaflet-draw/images/"
node -e 'const p = require("./node_modules/leaflet-draw/package.json");
  console.log(`${p.name} ${p.version}: ${p.license} licence, (c) ${p.author || "Jon West, Jacob Toye and the Leaflet.draw contributors"} - ${p.homepage || ""}`)' \
  > "$OUT/leaflet-draw/LICENSE"

# one IIFE bundle: window.SkyfallViewer.mount(element, options); inlined as is by the Share export
cp "$SRC" ./entry.js
node_modules/.bin/esbuild entry.js --bundle --minify --format=iife --target=es2020 \
  --legal-comments=none --log-level=warning --outfile="$OUT/splat-viewer/splat-viewer.js"
{ cat node_modules/three/LICENSE; echo; echo "---- @mkkellogg/gaussian-splats-3d ----";
  cat node_modules/@mkkellogg/gaussian-splats-3d/LICENSE; } > "$OUT/splat-viewer/LICENSE"

node -e '
const fs = require("fs"), crypto = require("crypto"), path = require("path");
const out = process.argv[1];
const pkgs = ["leaflet", "leaflet-draw", "three", "@mkkellogg/gaussian-splats-3d"];
const versions = Object.fromEntries(pkgs.map(p => [p, require(`./node_modules/${p}/package.json`).version]));
const files = {};
(function walk(d) { for (const f of fs.readdirSync(d).sort()) { const p = path.join(d, f);
  if (fs.statSync(p).isDirectory()) walk(p);
  else if (!f.endsWith("VERSIONS.json")) files[path.relative(out, p)] = { bytes: fs.statSync(p).size,
    sha256: crypto.createHash("sha256").update(fs.readFileSync(p)).digest("hex") }; } })(out);
fs.writeFileSync(path.join(out, "VERSIONS.json"), JSON.stringify({ versions, files }, null, 1) + "\n");
' "$OUT"
echo "vendored into $OUT:"; du -ah "$OUT" | sort -k2
