// Builds one component of Lambda JavaScript/TypeScript functions (run in .wasmlet/lambda-js/):
//
//     node lib/build.mjs ID [CODE_DIR ...]
//
// 1. `npm install` in each function's code directory whose package.json has dependencies
//    (when node_modules is missing or older than package.json / package-lock.json);
// 2. esbuild bundles ID/entry.mjs (the adapter, the handlers' modules, their npm packages;
//    TypeScript compiled) into ID/build/bundle.js, leaving the WIT imports to the component;
// 3. `j2w` (the Spin JS SDK's build tool: componentize-js, StarlingMonkey) makes ID/app.wasm,
//    evaluating the entry once: the handlers' modules load then (Lambda's init phase).
//
// j2w reports a failure to componentize but exits 0: this script fails the build instead,
// with the JavaScript error of the handler that could not load.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';
import { SpinEsbuildPlugin } from '@spinframework/build-tools/plugins/esbuild/index.js';

const LIB = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
// Node's built-in modules the component has: the rest fail the bundle, named.
const PROVIDED = {
    buffer: require.resolve('buffer/'),
    process: join(LIB, 'wasmlet-lambda', 'process.mjs'),
};
const BUILTIN = new Set(builtinModules.filter((m) => !m.startsWith('_')));

function fail(message) {
    console.error(`error: ${message}`);
    process.exit(1);
}

function mtime(path) {
    return existsSync(path) ? statSync(path).mtimeMs : null;
}

function installDependencies(dir) {
    const manifest = join(dir, 'package.json');
    if (!existsSync(manifest)) return;
    const data = JSON.parse(readFileSync(manifest, 'utf8'));
    const wanted = { ...data.dependencies }; // dev ones are not installed (--omit=dev)
    if (!Object.keys(wanted).length) return;
    const installed = mtime(join(dir, 'node_modules', '.package-lock.json'));
    const lock = mtime(join(dir, 'package-lock.json'));
    if (installed !== null && installed >= mtime(manifest) && (lock === null || installed >= lock)) return;
    // Without a lock file, do not write one into the function's code.
    const args = ['install', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline', ...(lock === null ? ['--no-package-lock'] : [])];
    console.log(`${dir}: npm ${args.join(' ')}`);
    const run = spawnSync('npm', args, { cwd: dir, stdio: 'inherit' });
    if (run.status !== 0) fail(`${dir}: npm install failed (exit status ${run.status})`);
}

/** Node's built-in modules: `buffer` and `process` from the adapter, the others refused. */
const nodeBuiltins = {
    name: 'wasmlet-node-builtins',
    setup(b) {
        b.onResolve({ filter: /^(node:)?[a-z0-9_/]+$/ }, (args) => {
            const name = args.path.replace(/^node:/, '');
            if (!BUILTIN.has(name.split('/')[0]) && !args.path.startsWith('node:')) return null;
            if (name in PROVIDED) return { path: PROVIDED[name] };
            return {
                errors: [
                    {
                        text:
                            `Node.js built-in module "${args.path}" is not supported: a WebAssembly component ` +
                            'has no Node.js; its JS engine (StarlingMonkey) offers web APIs (fetch, crypto, ' +
                            'TextEncoder, URL, setTimeout) and wasmlet adds Buffer and process.env',
                    },
                ],
            };
        });
        // Lambda's Node.js runtime bundles the AWS SDK v3; a component has what is installed.
        b.onResolve({ filter: /^@aws-sdk\// }, async (args) => {
            if (args.pluginData === 'retry') return null;
            const found = await b.resolve(args.path, {
                resolveDir: args.resolveDir,
                kind: args.kind,
                importer: args.importer,
                pluginData: 'retry',
            });
            if (!found.errors.length) return found;
            return {
                errors: [
                    {
                        text:
                            `"${args.path}" is not installed: Lambda's Node.js runtime includes the AWS SDK, ` +
                            "wasmlet does not; add it to the function's package.json (calls to AWS need " +
                            'network access and credentials)',
                    },
                ],
            };
        });
    },
};

const [id, ...codeDirs] = process.argv.slice(2);
if (!id || !existsSync(join(id, 'entry.mjs'))) fail(`usage: node lib/build.mjs ID [CODE_DIR ...] (no ${id}/entry.mjs)`);
codeDirs.forEach(installDependencies);

try {
    await build({
        entryPoints: [join(id, 'entry.mjs')],
        outfile: join(id, 'build', 'bundle.js'),
        bundle: true,
        format: 'esm',
        // Packages' browser builds use web APIs, which the component's engine has.
        platform: 'browser',
        target: 'es2022',
        minify: false,
        keepNames: true, // function names in stack traces
        define: { global: 'globalThis' },
        inject: [join(LIB, 'wasmlet-lambda', 'globals.mjs')],
        logLevel: 'error',
        plugins: [nodeBuiltins, await SpinEsbuildPlugin()],
    });
} catch {
    fail(`component ${id}: bundling the handlers failed (esbuild's errors above)`);
}

const j2w = spawnSync(
    process.execPath,
    [require.resolve('@spinframework/build-tools/dist/index.js'), '-i', join(id, 'build', 'bundle.js'), '-o', join(id, 'app.wasm')],
    { encoding: 'utf8' },
);
process.stdout.write(j2w.stdout);
process.stderr.write(j2w.stderr);
const output = `${j2w.stdout}\n${j2w.stderr}`;
if (j2w.status !== 0 || output.includes('An error occurred during the componentization process')) {
    const lines = output.split('\n');
    const at = lines.findIndex((l) => l.includes('Exception while evaluating top-level script'));
    const error = at >= 0 ? lines[at + 1]?.trim() : lines.find((l) => l.startsWith('Error:'));
    fail(
        `component ${id}: the handlers could not be loaded (Lambda's init phase, at build time): ` +
            `${error ?? 'see the output above'} (the bundle: ${resolve(id, 'build', 'precompiled-source.js')})`,
    );
}
