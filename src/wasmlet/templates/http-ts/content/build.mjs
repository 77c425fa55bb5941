// Bundles src/index.ts into build/bundle.js with esbuild. The Spin SDK's plugin leaves the
// host interfaces its packages declare (wasi:http, fermyon:spin/...) as imports of the
// component; `j2w` (package.json's build script) then makes the component.
import { build } from 'esbuild';
import { SpinEsbuildPlugin } from '@spinframework/build-tools/plugins/esbuild/index.js';

await build({
    entryPoints: ['./src/index.ts'],
    outfile: './build/bundle.js',
    bundle: true,
    format: 'esm',
    platform: 'node',
    minify: false,
    logLevel: 'error',
    plugins: [await SpinEsbuildPlugin()],
});
