// Runs wasmlet's JavaScript Lambda adapter (the lambda-js template's lib/wasmlet-lambda) on
// Node for tests/test_lambda_js_adapter.py: reads a JSON request on stdin, prints a JSON
// answer. {"events": [...]} builds events, {"params": [...]} matches routes, {"responses":
// [...]} maps results; {"invocations": true} runs whole invocations of handlers written here
// (every style Lambda's Node.js runtime calls) through App.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const LIB = process.env.WASMLET_LAMBDA_JS;
const load = (name) => import(pathToFileURL(join(LIB, name)).href);
const { App, LambdaInitError, handlerPath } = await load('app.mjs');
const { Request, buildEvent, pathParameters, fromBase64, toBase64 } = await load('events.mjs');
const { toResponse, MalformedResult, MarshalError } = await load('responses.mjs');
const { process: adapterProcess, environmentFrom } = await load('process.mjs');

function request(r) {
    const body = fromBase64(r.body_b64 ?? '');
    return new Request(r.method, r.path, r.query, r.headers, body, r.source_ip, r.scheme ?? 'http');
}

function response(kind, data) {
    try {
        const out = toResponse(kind, data);
        return { status: out.status, headers: out.headers, body_b64: toBase64(out.body) };
    } catch (error) {
        const known = error instanceof MalformedResult || error instanceof MarshalError;
        return { error: known ? error.constructor.name : `unexpected ${error}`, message: error.message };
    }
}

const logged = [];
console.error = (...args) => logged.push(args.join(' '));

async function invocations() {
    const results = {};
    let loadedWith = null;
    const functions = {
        Async: {
            name: 'async-fn',
            handler: 'app.handler',
            memoryMb: 256,
            timeout: 5,
            environment: { MODE: 'built', ONLY_ASYNC: 'yes' },
            overlay: ['ONLY_ASYNC'],
            load: () => {
                loadedWith = { ...adapterProcess.env };
                return {
                    handler: async (event, context) => {
                        await new Promise((r) => setTimeout(r, 1));
                        if (event.rawPath.endsWith('/fail')) throw new TypeError('async failure');
                        if (event.rawPath.endsWith('/reject')) return Promise.reject('just a string');
                        if (event.rawPath.endsWith('/bigint')) return { n: 1n };
                        return {
                            statusCode: 200,
                            body: JSON.stringify({
                                mode: adapterProcess.env.MODE,
                                only: adapterProcess.env.ONLY_ASYNC ?? null,
                                name: context.functionName,
                                memory: context.memoryLimitInMB,
                                remaining: context.getRemainingTimeInMillis(),
                                arn: context.invokedFunctionArn,
                                id: context.awsRequestId,
                                trace: adapterProcess.env._X_AMZN_TRACE_ID,
                            }),
                        };
                    },
                };
            },
        },
        Callback: {
            name: 'callback-fn',
            handler: 'index.routes.handle',
            memoryMb: 128,
            timeout: 3,
            environment: { MODE: 'built' },
            load: () => ({
                routes: {
                    handle(event, context, callback) {
                        const last = event.path.split('/').pop();
                        if (last === 'later') setTimeout(() => callback(null, { statusCode: 200, body: 'later' }), 2);
                        else if (last === 'error') callback(new Error('callback failure'));
                        else if (last === 'succeed') context.succeed({ statusCode: 202, body: 'succeeded' });
                        else if (last === 'throw') throw new RangeError('thrown synchronously');
                        else callback(null, { statusCode: 201, body: 'now' });
                    },
                },
            }),
        },
        Sync: {
            name: 'sync-fn',
            handler: 'app.plain',
            memoryMb: 128,
            timeout: 3,
            environment: {},
            load: () => ({ plain: (event) => ({ statusCode: 200, body: `sync ${event.httpMethod}` }) }),
        },
    };
    const app = new App({
        functions,
        routes: [
            { route: '/a/...', function: 'Async', path: '/a/{proxy+}', params: ['proxy'] },
            { route: '/c/...', function: 'Callback', kind: 'rest', methods: ['GET'], path: '/c/{proxy+}', params: ['proxy'], stage: 'Prod' },
            { route: '/s', function: 'Sync', kind: 'alb' },
        ],
    });
    const before = { ...adapterProcess.env };
    app.load();
    results.loadedWith = loadedWith;
    app.warmUp();
    results.envAfterWarmUp = JSON.stringify(adapterProcess.env) === JSON.stringify(before) ? 'same' : adapterProcess.env;
    // the component's environment, as runtime.mjs gives it at each request (read when used)
    const environment = { MODE: 'running', AWS_LAMBDA_FUNCTION_NAME: 'from-env', AWS_LAMBDA_FUNCTION_TIMEOUT: '9' };
    let reads = 0;
    const get = (method, path) => new Request(method, path, '', [['host', 'localhost']], new Uint8Array(0), '127.0.0.1');
    const run = async (method, path, route) => {
        environmentFrom(() => {
            reads += 1;
            return { ...environment };
        });
        const out = await app.invoke(get(method, path), route);
        return { status: out.status, body: new TextDecoder().decode(out.body) };
    };
    for (const [label, method, path, route] of [
        ['async', 'GET', '/a/x', '/a/...'],
        ['asyncFail', 'GET', '/a/fail', '/a/...'],
        ['asyncReject', 'GET', '/a/reject', '/a/...'],
        ['bigint', 'GET', '/a/bigint', '/a/...'],
        ['callbackNow', 'GET', '/c/now', '/c/...'],
        ['callbackLater', 'GET', '/c/later', '/c/...'],
        ['callbackError', 'GET', '/c/error', '/c/...'],
        ['succeed', 'GET', '/c/succeed', '/c/...'],
        ['throw', 'GET', '/c/throw', '/c/...'],
        ['restNoMethod', 'POST', '/c/now', '/c/...'],
        ['sync', 'PUT', '/s', '/s'],
        ['noRoute', 'GET', '/nowhere', '/nowhere'],
    ]) {
        results[label] = await run(method, path, route);
    }
    results.environmentReads = reads; // the requests that used process.env or the context
    results.logged = logged.splice(0);
    results.initErrors = [];
    for (const [label, fn] of [
        ['notFound', { name: 'f', handler: 'app.nope', load: () => ({ handler: () => 1 }) }],
        ['throws', { name: 'f', handler: 'app.handler', load: () => { throw new SyntaxError('bad token'); } }],
        ['malformed', { name: 'f', handler: 'handler', load: () => ({}) }],
    ]) {
        try {
            new App({ functions: { F: { environment: {}, ...fn } }, routes: [] }).load();
            results.initErrors.push([label, null]);
        } catch (error) {
            results.initErrors.push([label, error instanceof LambdaInitError ? error.message : `unexpected ${error}`]);
        }
    }
    try {
        new App({ functions: {}, routes: [{ route: '/', function: 'F', kind: 'graphql' }] });
    } catch (error) {
        results.initErrors.push(['kind', error.message]);
    }
    results.handlerPaths = ['app.handler', 'src/api.routes.list', 'handler', 'a/b.'].map(handlerPath);
    return results;
}

const input = JSON.parse(readFileSync(0, 'utf8'));
const output = {};
if (input.events) {
    output.events = input.events.map((c) =>
        buildEvent(request(c.request), c.target, { requestId: c.requestId, now: c.now, apiId: c.apiId, region: c.region }),
    );
}
if (input.params) output.params = input.params.map(([pattern, names, path]) => pathParameters(pattern, names, path));
if (input.responses) output.responses = input.responses.map(([kind, data]) => response(kind, data));
if (input.invocations) output.invocations = await invocations();
process.stdout.write(JSON.stringify(output));
