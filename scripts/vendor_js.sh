#!/usr/bin/env bash
# Vendor the browser-side JavaScript/CSS of the app from npm into static/vendor/ (committed).
#
# The app serves everything it runs in the browser itself (Streamlit static serving, /app/static/),
# so it works offline: Leaflet + Leaflet.draw for the folium maps, and one bundled splat viewer
# (three.js + Spark (@sparkjsdev/spark, MIT) + skyfall_core/ui/viewer_src/splat_viewer.js, built
# with esbuild into one IIFE). Spark ships its WASM (the splat decoders) base64-inlined in its ES
# module and starts its worker from a Blob URL of inlined source, so the bundle needs no other file:
# it runs from the app's static files and inlined in a Share HTML opened from file://.
# Only map tiles may come from the internet; the maps have a tile-less fallback.
# The pydeck map page draws with the deck.gl in Streamlit's own frontend; its 3D terrain builds the
# mesh in a loaders.gl web worker that deck.gl would fetch from unpkg.com, so that worker is vendored
# here too (loaders-terrain/), at the version of the loader in Streamlit's bundle:
# tests/test_app_map.py reads that version from the installed Streamlit and compares it with
# VERSIONS.json. After a Streamlit upgrade that changes it, set LOADERS_TERRAIN and re-run.
#
# Usage: scripts/vendor_js.sh            (needs node >= 18 and npm with access to the npm registry)
# Re-run it after changing a version below or the viewer source, then commit static/vendor/.
# npm resolves from skyfall_core/ui/viewer_src/package-lock.json (npm ci), so a re-run gives the
# same packages; VENDOR_JS_UPDATE=1 re-resolves the pins below and rewrites the lock file.
set -euo pipefail

LEAFLET=1.9.4
LEAFLET_DRAW=1.0.4
THREE=0.180.0       # Spark 2.2 needs three >= 0.180 and is built and tested against 0.180
SPARK=2.2.0         # @sparkjsdev/spark
ESBUILD=0.28.2      # build tool only, not shipped
LOADERS_TERRAIN=4.4.3  # @loaders.gl/terrain (MIT): the worker of Streamlit 1.67's deck.gl 9.4 TerrainLayer

REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$REPO/static/vendor"
SRC="$REPO/skyfall_core/ui/viewer_src/splat_viewer.js"
LOCK="$REPO/skyfall_core/ui/viewer_src/package-lock.json"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

cd "$WORK"
cat > package.json <<JSON
{ "name": "skyfall-vendor", "private": true, "version": "0.0.0",
  "dependencies": { "leaflet": "$LEAFLET", "leaflet-draw": "$LEAFLET_DRAW", "three": "$THREE",
                    "@sparkjsdev/spark": "$SPARK", "esbuild": "$ESBUILD" } }
JSON
if [[ -f "$LOCK" && "${VENDOR_JS_UPDATE:-0}" != 1 ]]; then
  cp "$LOCK" package-lock.json
  npm ci --no-audit --no-fund --silent
else
  npm install --no-audit --no-fund --silent
  cp package-lock.json "$LOCK"
fi

rm -rf "$OUT/leaflet" "$OUT/leaflet-draw" "$OUT/splat-viewer" "$OUT/loaders-terrain"
mkdir -p "$OUT/leaflet/images" "$OUT/leaflet-draw/images" "$OUT/splat-viewer" "$OUT/loaders-terrain"
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
# the bundle must not reach for any other file (a .wasm, a worker script) when opened from disk
if grep -q -E '\.wasm["'"'"']|new URL\([^)]*import\.meta' "$OUT/splat-viewer/splat-viewer.js"; then
  echo "the viewer bundle references an external .wasm/worker file: it would not work offline" >&2; exit 1
fi
{ echo "---- three ----"; cat node_modules/three/LICENSE; echo; echo "---- @sparkjsdev/spark ----";
  cat node_modules/@sparkjsdev/spark/LICENSE; echo; echo "---- fflate (a dependency of Spark) ----";
  cat node_modules/fflate/LICENSE; } > "$OUT/splat-viewer/LICENSE"

# the terrain worker: a prebuilt file of the package (not part of the bundle, so not in the lock file)
mkdir -p terrain && (cd terrain && npm pack --silent "@loaders.gl/terrain@$LOADERS_TERRAIN" >/dev/null \
  && tar xzf loaders.gl-terrain-"$LOADERS_TERRAIN".tgz)
cp terrain/package/dist/terrain-worker.js terrain/package/LICENSE "$OUT/loaders-terrain/"

node -e '
const fs = require("fs"), crypto = require("crypto"), path = require("path");
const out = process.argv[1];
const pkgs = ["leaflet", "leaflet-draw", "three", "@sparkjsdev/spark", "fflate"];
const versions = Object.fromEntries(pkgs.map(p => [p, require(`./node_modules/${p}/package.json`).version]));
versions["@loaders.gl/terrain"] = require("./terrain/package/package.json").version;
const files = {};
(function walk(d) { for (const f of fs.readdirSync(d).sort()) { const p = path.join(d, f);
  if (fs.statSync(p).isDirectory()) walk(p);
  else if (!f.endsWith("VERSIONS.json")) files[path.relative(out, p)] = { bytes: fs.statSync(p).size,
    sha256: crypto.createHash("sha256").update(fs.readFileSync(p)).digest("hex") }; } })(out);
fs.writeFileSync(path.join(out, "VERSIONS.json"), JSON.stringify({ versions, files }, null, 1) + "\n");
' "$OUT"
echo "vendored into $OUT:"; du -ah "$OUT" | sort -k2
