// Builds one Azure Functions JavaScript component: `node build.mjs ID`.
//
// 1. Installs the app's own dependencies (its package.json, @azure/functions among them;
//    not its devDependencies) with `npm install` in the app's directory when node_modules is missing or older than
//    package.json, as `wasmlet build` does for this directory's build tools.
// 2. Bundles ID/entry.js (the app's function modules, then lib/core.js's serve()) with
//    esbuild: `@azure/functions-core`, which Azure's Node.js worker provides, is lib/core.js;
//    the Node.js modules the library imports are lib/node/*.js; `Buffer` is lib/buffer.js;
//    the Spin SDK's plugin leaves the WASI interfaces as imports of the component.
// 3. Makes ID/app.wasm with j2w (componentize-js), which runs the bundle's top level once:
//    the app's functions register then, and an error there fails the build.
import { build } from 'esbuild';
import { SpinEsbuildPlugin } from '@spinframework/build-tools/plugins/esbuild/index.js';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const id = process.argv[2];
if (!id) {
    console.error('usage: node build.mjs COMPONENT_ID');
    process.exit(2);
}
const config = JSON.parse(readFileSync(join(here, id, 'build.json'), 'utf-8'));
const app = resolve(here, config.app);

function run(command, args, cwd) {
    const result = spawnSync(command, args, { cwd, stdio: 'inherit' });
    if (result.status !== 0) {
        console.error(`error: ${command} ${args.join(' ')} (in ${cwd}) failed with exit status ${result.status}`);
        process.exit(1);
    }
}

const installed = join(app, 'node_modules', '.package-lock.json');
const manifest = join(app, 'package.json');
if (!existsSync(installed) || statSync(installed).mtimeMs < statSync(manifest).mtimeMs) {
    console.log(`installing the app's npm dependencies in ${app}`);
    // --omit=dev: the component bundles what the functions import at run time; development
    // tools such as azure-functions-core-tools (which downloads the func CLI) are not needed
    run('npm', ['install', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline'], app);
}

const NODE = /^(node:)?(util|url|events|crypto|http|https|net)$/;
const nodeShims = {
    name: 'wasmlet-azure-node',
    setup(b) {
        b.onResolve({ filter: /^@azure\/functions-core$/ }, () => ({ path: join(here, 'lib', 'core.js') }));
        b.onResolve({ filter: NODE }, (args) => {
            const name = args.path.replace(/^node:/, '');
            const file = ['http', 'https', 'net'].includes(name) ? 'unsupported' : name;
            return { path: join(here, 'lib', 'node', `${file}.js`) };
        });
    },
};

await build({
    entryPoints: [join(here, id, 'entry.js')],
    outfile: join(here, id, 'bundle.js'),
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    mainFields: ['module', 'main'],
    conditions: ['import', 'require', 'default'],
    inject: [join(here, 'lib', 'buffer.js')],
    minify: false,
    logLevel: 'error',
    plugins: [nodeShims, await SpinEsbuildPlugin()],
});
const wasm = join(here, id, 'app.wasm');
const started = Date.now();
run(join(here, 'node_modules', '.bin', 'j2w'), ['-i', join(id, 'bundle.js'), '-o', join(id, 'app.wasm')], here);
// j2w exits 0 when the app's top level throws (it prints the error): no new app.wasm then
if (!existsSync(wasm) || statSync(wasm).mtimeMs < started) {
    console.error(`error: j2w did not write ${id}/app.wasm: the app's modules failed to load (above)`);
    process.exit(1);
}
