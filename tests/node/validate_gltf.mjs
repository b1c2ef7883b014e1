// Khronos glTF-Validator on one .glb; prints its JSON report (issues, messages) to stdout.
// usage: node validate_gltf.mjs FILE.glb
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const validator = require("gltf-validator");
const file = process.argv[2];
const report = await validator.validateBytes(new Uint8Array(readFileSync(file)), {
  maxIssues: 0,
  writeTimestamp: false,
});
process.stdout.write(JSON.stringify(report));
