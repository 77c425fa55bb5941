// Node.js globals for handler code, injected by the build (esbuild's `inject`) only where a
// module names them: `process` (process.mjs) and `Buffer` (the npm package `buffer`, the
// browser implementation of Node's Buffer).

export { process } from './process.mjs';
export { Buffer } from 'buffer';
