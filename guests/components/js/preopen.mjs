// Loaded with `node --import` before jco: jco 1.35.0 runs wasm-tools as a component on
// @bytecodealliance/preview2-shim, which grants no file access by default, so `jco componentize`
// fails with "failed to get path metadata ... (os error 44)". This maps the host's `/` into every
// copy of the shim in the node_modules directory named by $WASMLET_NODE_MODULES.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const root = process.env.WASMLET_NODE_MODULES;
if (!root) {
  throw new Error("preopen.mjs: set WASMLET_NODE_MODULES to the node_modules directory");
}
const shim = join("@bytecodealliance", "preview2-shim", "dist", "nodejs", "filesystem.js");
const candidates = [
  join(root, shim),
  join(root, "@bytecodealliance", "jco-transpile", "node_modules", shim),
  join(root, "@bytecodealliance", "jco", "node_modules", shim),
];
let found = 0;
for (const path of candidates.filter((p) => existsSync(p))) {
  const filesystem = await import(pathToFileURL(path).href);
  filesystem._addPreopen("/", "/");
  found += 1;
}
if (found === 0) {
  throw new Error(`preopen.mjs: no @bytecodealliance/preview2-shim under ${root}`);
}
