// Validate a .glb/.gltf with the Khronos glTF validator (npm gltf-validator) and print its JSON report.
// Usage: node tools/validate_gltf.mjs FILE   (exit 0 when the report has no errors, 1 otherwise)
import { readFile } from "node:fs/promises";
import validator from "gltf-validator";

const file = process.argv[2];
const bytes = new Uint8Array(await readFile(file));
const report = await validator.validateBytes(bytes, { uri: file, maxIssues: 100 });
console.log(JSON.stringify(report, null, 2));
process.exit(report.issues.numErrors > 0 ? 1 : 0);
