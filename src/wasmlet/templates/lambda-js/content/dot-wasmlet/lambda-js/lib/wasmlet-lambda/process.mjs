// The `process` global Node.js code reads (`process.env.TABLE_NAME`), which the component's
// JS engine (StarlingMonkey) does not have: `env`, `argv`, `nextTick` and `platform`. The
// build injects it where code names `process` and resolves `import process from
// 'node:process'` to it (lib/build.mjs).
//
// `env` is the function's environment while its module loads at build time, and the
// component's at each request, read from the host only when first used: that host call
// costs more than the rest of the adapter's work on a request's environment, and many
// handlers never read `process.env` in a request.

let loadEnvironment = null; // the request's environment, not yet read
let pending = {}; // variables set before it was read
let environment = {};

export const process = {
    get env() {
        if (loadEnvironment !== null) {
            const load = loadEnvironment;
            loadEnvironment = null;
            environment = Object.assign(load(), pending);
            pending = {};
        }
        return environment;
    },
    set env(value) {
        loadEnvironment = null;
        pending = {};
        environment = value;
    },
    argv: ['node'],
    platform: 'linux',
    nextTick(callback, ...args) {
        queueMicrotask(() => callback(...args));
    },
};
// (Where there is one already, Node.js in wasmlet's tests of the adapter, it stays.)
globalThis.process ??= process;
export default process;

/** The environment is `load()`'s, read when first used. */
export function environmentFrom(load) {
    loadEnvironment = load;
    pending = {};
}

/** Set variables without reading the environment (they win over its values). */
export function setVariables(variables) {
    if (loadEnvironment === null) Object.assign(environment, variables);
    else Object.assign(pending, variables);
}
