// The adapter's configuration (the functions and routes of a component) and one invocation:
// a request in, the handler called with its event and context, the response out. The
// JavaScript twin of the Python adapter's app.py.
//
// `App.load` runs when the component is built: componentize-js evaluates the entry module
// then (Wizer) and each request starts from that snapshot. So handlers' modules load then,
// as Lambda loads them in its init phase, with the function's environment in `process.env`;
// a module that throws, or a handler that is not a function, fails the build.

import { makeContext } from './context.mjs';
import { DEFAULT_STAGE, KINDS, Request, buildEvent, pathParameters } from './events.mjs';
import { process, setVariables } from './process.mjs';
import { MalformedResult, MarshalError, Response, errorDocument, failed, noRoute, toResponse } from './responses.mjs';

/** A handler that cannot be loaded or found (fails the build, as Lambda's init does). */
export class LambdaInitError extends Error {}

/**
 * A route of the component: `route` (the Spin route, "/items/:id"), `function` (a key of
 * the functions), `kind`, `methods` (upper-case; empty: any), `path` (the API's route path,
 * "/items/{id}"; "" for "$default"), `params` (its parameter names in order), `stage`,
 * `strip` (the function sees only the path under the route's prefix).
 */
function normalRoute(route) {
    return {
        kind: 'http-api',
        methods: [],
        path: '',
        params: [],
        stage: DEFAULT_STAGE,
        strip: false,
        ...route,
    };
}

function target(route, method, params, rest) {
    const key = route.path && route.kind !== 'function-url' ? `${route.methods.length ? method : 'ANY'} ${route.path}` : '$default';
    return {
        kind: route.kind,
        routeKey: key,
        resource: route.path || '/{proxy+}',
        pathParameters: params,
        stage: route.stage,
        path: route.strip ? rest || '/' : null,
    };
}

/** `handler` ("app.handler", "src/api.routes.list") as Lambda's Node.js runtime reads it: the
 * module's file, then the property path of the function in it. */
export function handlerPath(handler) {
    const base = handler.slice(handler.lastIndexOf('/') + 1);
    const match = /^([^.]*)\.(.*)$/.exec(base);
    return match && match[1] && match[2] ? match[2].split('.') : null;
}

/** A random (version 4) UUID (the engine's own is faster than one made here). */
function requestId() {
    if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
    const raw = crypto.getRandomValues(new Uint8Array(16));
    raw[6] = (raw[6] & 0x0f) | 0x40;
    raw[8] = (raw[8] & 0x3f) | 0x80;
    const h = Array.from(raw, (b) => b.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function describe(error) {
    return error instanceof Error ? `${error.name}: ${error.message}` : `thrown: ${String(error)}`;
}

/**
 * Call a handler as Lambda's Node.js runtime does: an async handler (or one returning a
 * promise) ends with its promise; a callback-style one `(event, context, callback)` with
 * its callback (or context.done/succeed/fail); a synchronous one without a callback with
 * its return value.
 */
function callHandler(handler, event, contextFor) {
    return new Promise((resolve, reject) => {
        let settled = false;
        const settle = (error, result) => {
            if (settled) return;
            settled = true;
            if (error !== undefined && error !== null) reject(error);
            else resolve(result);
        };
        const context = contextFor(settle);
        const result = handler(event, context, settle); // a throw rejects the promise
        if (result !== null && typeof result?.then === 'function') {
            result.then(
                (value) => settle(null, value),
                (error) => settle(error ?? new Error('the handler rejected its promise without a reason')),
            );
        } else if (handler.length < 3) {
            settle(null, result);
        }
    });
}

export class App {
    /**
     * `functions`: {key: {name, handler, memoryMb, timeout, environment, overlay, load}},
     * where `load()` returns the handler's module (a `require` the build bundles) and
     * `overlay` names the variables set at each request (they differ per function).
     */
    constructor({ functions, routes, apiId = 'wasmlet' }) {
        this.functions = functions;
        this.routes = new Map();
        for (const raw of routes) {
            const route = normalRoute(raw);
            if (!KINDS.includes(route.kind)) {
                throw new LambdaInitError(
                    `route ${route.route}: unknown event kind ${JSON.stringify(route.kind)} (kinds: ${KINDS.join(', ')})`,
                );
            }
            if (!(route.function in functions)) {
                throw new LambdaInitError(`route ${route.route}: no function ${JSON.stringify(route.function)}`);
            }
            if (!this.routes.has(route.route)) this.routes.set(route.route, []);
            this.routes.get(route.route).push(route);
        }
        this.apiId = apiId;
        this.handlers = {};
    }

    // -- init (build time) ---------------------------------------------------------------

    /** Load every function's module (with its environment) and find its handler. */
    load() {
        const saved = process.env;
        for (const [key, fn] of Object.entries(this.functions)) {
            process.env = { ...fn.environment };
            const path = handlerPath(fn.handler);
            if (path === null) {
                throw new LambdaInitError(
                    `Runtime.MalformedHandlerName: Bad handler ${fn.handler} of function ${fn.name}: ` +
                        'expected module.function, e.g. app.handler',
                );
            }
            let module;
            try {
                module = fn.load();
            } catch (error) {
                throw new LambdaInitError(
                    `Runtime.ImportModuleError: loading the module of ${fn.handler} (function ${fn.name}) ` +
                        `threw ${describe(error)}`,
                );
            }
            let handler = module;
            for (const name of path) handler = handler?.[name];
            if (typeof handler !== 'function') {
                throw new LambdaInitError(
                    `Runtime.HandlerNotFound: ${fn.handler} is undefined or not exported (function ${fn.name})`,
                );
            }
            this.handlers[key] = handler;
        }
        process.env = saved;
    }

    // -- a request ------------------------------------------------------------------------

    /** Serve `request`, which the Spin route `route` matched: a promise of a Response. */
    async invoke(request, route) {
        const candidates = this.routes.get(route);
        if (!candidates) {
            console.error(`wasmlet_lambda: no function for route ${route}`);
            return noRoute('http-api');
        }
        const chosen =
            candidates.find((r) => r.methods.includes(request.method)) ?? candidates.find((r) => !r.methods.length);
        if (!chosen) return noRoute(candidates[0].kind);
        return this.run(request, chosen, this.handlers[chosen.function]);
    }

    async run(request, chosen, handler) {
        const call = this.prepare(request, chosen);
        let result;
        try {
            result = await callHandler(handler, call.event, call.context);
        } catch (error) {
            // the handler failed: Lambda's error JSON goes to the log, as its runtime writes it
            log(call.requestId, 'ERROR', `Invoke Error \t${JSON.stringify(errorDocument(error))}`);
            return failed(call.kind);
        }
        return this.finish(call, result);
    }

    /** The event and the context's maker for a request (synchronous: the warm-up runs it). */
    prepare(request, chosen, id = requestId()) {
        const fn = this.functions[chosen.function];
        const start = Date.now();
        const [params, rest] =
            chosen.params.length || chosen.strip ? pathParameters(chosen.route, chosen.params, request.path) : [null, ''];
        const tgt = target(chosen, request.method, params, rest);
        const event = buildEvent(request, tgt, {
            requestId: id,
            now: start / 1000,
            apiId: this.apiId,
            region: () => process.env.AWS_REGION || 'us-east-1',
        });
        const headers = event.headers ?? event.multiValueHeaders ?? {};
        const trace = headers['x-amzn-trace-id'] ?? headers['X-Amzn-Trace-Id'];
        const variables = { _X_AMZN_TRACE_ID: Array.isArray(trace) ? trace[trace.length - 1] : String(trace) };
        for (const name of fn.overlay ?? []) variables[name] = fn.environment[name];
        setVariables(variables); // without reading the environment (process.mjs)
        const defaults = { name: fn.name, memory: String(fn.memoryMb), timeout: fn.timeout };
        return {
            kind: tgt.kind,
            name: fn.name,
            requestId: id,
            event,
            context: (settle) => makeContext(id, start, defaults, settle),
        };
    }

    /** The response for what the handler returned. */
    finish(call, result) {
        try {
            return toResponse(call.kind, result);
        } catch (error) {
            if (error instanceof MarshalError) {
                const doc = { errorType: 'Runtime.MarshalError', errorMessage: error.message };
                log(call.requestId, 'ERROR', `Invoke Error \t${JSON.stringify(doc)}`);
            } else if (error instanceof MalformedResult) {
                console.error(`wasmlet_lambda: ${call.name}: malformed Lambda proxy response: ${error.message}`);
            } else {
                throw error;
            }
        }
        return failed(call.kind);
    }

    /**
     * Build an event and a response for each route's kind at build time, with a result that
     * is not the handler's (the handler is not called). Every request starts from the build's
     * snapshot, so the adapter's code that first runs during a request would run cold (the
     * JS engine compiles functions on first use); run once here, the snapshot has it warm.
     */
    warmUp() {
        const sample = new Request(
            'POST',
            '/warm/up%20x',
            'a=1&a=2&b=',
            [
                ['host', 'localhost:3000'],
                ['user-agent', 'warm-up'],
                ['content-type', 'application/json'],
                ['cookie', 'a=1; b=2'],
            ],
            new TextEncoder().encode('{"warm": true}'),
            '127.0.0.1',
        );
        const result = {
            statusCode: 200,
            headers: { 'content-type': 'text/plain' },
            multiValueHeaders: { 'x-warm': ['1', '2'] },
            cookies: ['a=1'],
            body: 'd2FybQ==',
            isBase64Encoded: true,
        };
        const saved = { ...process.env };
        const seen = new Set();
        for (const routes of this.routes.values()) {
            for (const route of routes) {
                if (seen.has(route.kind)) continue;
                seen.add(route.kind);
                // (no random request id: wasi:random cannot be called while the build snapshots)
                const call = this.prepare(sample, route, '00000000-0000-4000-8000-000000000000');
                const context = call.context(() => {});
                JSON.stringify(context); // its fields, computed on first use
                context.getRemainingTimeInMillis();
                this.finish(call, result);
            }
        }
        process.env = saved;
    }
}

/** A log line as Lambda's Node.js runtime writes it: time, request id, level, message. */
function log(id, level, message) {
    console.error(`${new Date().toISOString()}\t${id}\t${level}\t${message}`);
}

export { Request, Response };
