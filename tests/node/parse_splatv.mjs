// gsplat.js (huggingface) parses one .splatv the way its web player does; prints what it read.
// usage: node parse_splatv.mjs FILE.splatv N   ->  {"vertexCount": ..., "yz": [[y, z] of the first N]}
// (gsplat 1.2.9's SplatvData.Deserialize overwrites x with the packed rotation word, so x is not printed.)
import { readFileSync } from "node:fs";
import { Scene, SplatvLoader } from "gsplat";

const bytes = readFileSync(process.argv[2]);
const n = Number(process.argv[3] || 8);
const scene = new Scene();
const splatv = SplatvLoader._ParseSplatvBuffer(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length), scene, null);
const data = splatv.data;
const yz = [];
for (let i = 0; i < Math.min(n, data.vertexCount); i++) yz.push([data.positions[3 * i + 1], data.positions[3 * i + 2]]);
process.stdout.write(JSON.stringify({ vertexCount: data.vertexCount, yz }));
