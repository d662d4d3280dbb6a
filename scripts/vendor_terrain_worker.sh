#!/usr/bin/env bash
# Vendor the loaders.gl terrain worker into static/vendor/loaders-terrain/ (committed).
#
# The Map page's 3D terrain is deck.gl's TerrainLayer, from the deck.gl that Streamlit ships in its
# own frontend. Its terrain loader only runs in a web worker, which loaders.gl fetches from
# unpkg.com unless the layer names another URL: skyfall_core/ui/mapview.py points it at this copy
# (served at /app/static/vendor/loaders-terrain/terrain-worker.js), so the terrain works offline.
# The worker must be the version of the loader in Streamlit's bundle: tests/test_app_map.py reads
# that version from the installed Streamlit and compares it with VERSION.json here. After a
# Streamlit upgrade that changes it, set LOADERS_TERRAIN below and re-run this script.
#
# Usage: scripts/vendor_terrain_worker.sh   (needs node >= 18 and npm with access to the npm registry)
set -euo pipefail

LOADERS_TERRAIN=4.4.3   # @loaders.gl/terrain (MIT); Streamlit 1.67's deck.gl 9.4 bundles this version

REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$REPO/static/vendor/loaders-terrain"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

cd "$WORK"
npm pack --silent "@loaders.gl/terrain@$LOADERS_TERRAIN" >/dev/null
tar xzf loaders.gl-terrain-"$LOADERS_TERRAIN".tgz
mkdir -p "$OUT"
cp package/dist/terrain-worker.js "$OUT/terrain-worker.js"
cp package/LICENSE "$OUT/LICENSE"
node -e '
const fs = require("fs"), crypto = require("crypto");
const [out, version] = process.argv.slice(1);
const blob = fs.readFileSync(`${out}/terrain-worker.js`);
fs.writeFileSync(`${out}/VERSION.json`, JSON.stringify({ package: "@loaders.gl/terrain", version,
  file: "terrain-worker.js", bytes: blob.length, sha256: crypto.createHash("sha256").update(blob).digest("hex") },
  null, 1) + "\n");
' "$OUT" "$LOADERS_TERRAIN"
echo "vendored @loaders.gl/terrain@$LOADERS_TERRAIN into $OUT"
