// `@azure/functions-core`: the API that Azure's Node.js worker gives the @azure/functions
// library, implemented in the component. The real library (bundled unchanged) registers
// each `app.http(...)` here and turns requests into its HttpRequest, InvocationContext and
// HttpResponse through its own ProgrammingModel and InvocationModel, exactly as it does
// under the worker; this module plays the worker's and the host's parts: it routes each
// request by the functions' route templates and methods, builds the RPC request data the
// host would send (headers and repeated query values joined with ',', empty query values
// dropped, route values as params), runs the hooks and the handler, and turns the RPC
// response back into HTTP.
//
// Registration runs at build time (componentize-js pre-initializes the component by running
// the module's top level), so functions are indexed once, as a warm worker has them.

import { getEnvironment } from 'wasi:cli/environment@0.2.3';
import { parse, match, compare } from './routes.js';

export class Disposable {
    #onDispose;

    constructor(onDispose) {
        this.#onDispose = onDispose;
    }

    dispose() {
        const f = this.#onDispose;
        this.#onDispose = undefined;
        if (f) f();
    }
}

let programmingModel;
const functions = [];
const hooks = { appStart: [], preInvocation: [], postInvocation: [], appTerminate: [] };
const KEYED = ['function', 'admin', 'system'];
const LEVELS = { trace: 'TRACE', debug: 'DEBUG', information: 'INFO', warning: 'WARN', error: 'ERROR', critical: 'CRITICAL' };
let withoutAuth = false;

export const version = '3.10.1'; // the worker version this stands in for

export function setProgrammingModel(model) {
    programmingModel = model;
}

export function getProgrammingModel() {
    return programmingModel;
}

export function registerFunction(metadata, callback) {
    const bindings = metadata.bindings;
    const trigger = Object.entries(bindings).find(([, b]) => b.direction === 'in' && /trigger$/i.test(b.type));
    const entry = { metadata, callback, bindings, trigger, served: false };
    if (!trigger || trigger[1].type !== 'httpTrigger') {
        console.warn(`wasmlet: function ${metadata.name} (${trigger ? trigger[1].type : 'no trigger'}) is not served: wasmlet serves HTTP triggers`);
    } else {
        const others = Object.entries(bindings).filter(([name, b]) => name !== trigger[0] && b.type !== 'http');
        if (others.length) {
            const kinds = others.map(([name, b]) => `${b.type} '${name}'`).join(', ');
            console.warn(`wasmlet: function ${metadata.name} is not served: its bindings ${kinds} are not supported (wasmlet serves HTTP in and HTTP out)`);
        } else {
            const t = trigger[1];
            const template = t.route || metadata.name;
            entry.template = template;
            entry.segments = parse(template); // a bad route fails the build, named
            entry.methods = (t.methods || []).map((m) => m.toUpperCase());
            entry.auth = (t.authLevel || 'function').toLowerCase();
            entry.served = true;
        }
    }
    functions.push(entry);
    functions.sort((a, b) => (a.served && b.served ? compare(a.segments, b.segments) : 0));
    return new Disposable(() => functions.splice(functions.indexOf(entry), 1));
}

export function registerHook(name, callback) {
    if (!hooks[name]) {
        throw new Error(`the ${name} hook is not supported by wasmlet (hooks: ${Object.keys(hooks).join(', ')})`);
    }
    hooks[name].push(callback);
    return new Disposable(() => hooks[name].splice(hooks[name].indexOf(callback), 1));
}

export function log(level, category, message) {
    const line = `[${LEVELS[level] ?? level}] ${message}`;
    if (level === 'error' || level === 'critical' || level === 'warning') console.error(line);
    else console.log(line);
}

// --- the host's and the worker's part -------------------------------------------------

function env() {
    const out = {};
    for (const [k, v] of getEnvironment()) out[k] = v;
    return out;
}

function route(prefix, method, pathname) {
    let path = pathname;
    if (prefix) {
        const head = path.slice(0, prefix.length);
        const after = path.slice(prefix.length, prefix.length + 1);
        if (head.toLowerCase() !== prefix.toLowerCase() || (after !== '' && after !== '/')) return null;
        path = path.slice(prefix.length);
    }
    for (const f of functions) {
        if (!f.served) continue;
        const values = match(f.segments, path);
        if (values && (!f.methods.length || f.methods.includes(method))) return [f, values];
    }
    return null;
}

function joined(pairs, keep) {
    const out = {};
    for (const [k, v] of pairs) {
        if (!keep(v)) continue;
        out[k] = k in out ? `${out[k]},${v}` : v;
    }
    return out;
}

// The library sends cookies as RpcHttpCookie, optional fields wrapped as { value }; the
// host writes them as Set-Cookie headers.
function cookieHeader(c) {
    const v = (field) => (field !== null && typeof field === 'object' && 'value' in field ? field.value : field);
    let text = `${c.name}=${encodeURIComponent(c.value ?? '')}`;
    if (v(c.domain)) text += `; Domain=${v(c.domain)}`;
    if (v(c.path)) text += `; Path=${v(c.path)}`;
    if (v(c.expires)) text += `; Expires=${new Date(Number(v(c.expires).seconds) * 1000).toUTCString()}`;
    if (v(c.maxAge) !== undefined && v(c.maxAge) !== null) text += `; Max-Age=${v(c.maxAge)}`;
    if (v(c.secure)) text += '; Secure';
    if (v(c.httpOnly)) text += '; HttpOnly';
    const sameSite = v(c.sameSite);
    if (sameSite && sameSite !== 'none') text += `; SameSite=${sameSite[0].toUpperCase()}${sameSite.slice(1)}`;
    return text;
}

function toResponse(rpc) {
    if (rpc === null || rpc === undefined) return new Response(null, { status: 204 });
    const http = rpc.http;
    if (!http) {
        const text = rpc.string ?? (rpc.json !== undefined ? rpc.json : '');
        return new Response(String(text), { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8' } });
    }
    const headers = new Headers();
    for (const [k, v] of Object.entries(http.headers || {})) headers.append(k, v);
    for (const c of http.cookies || []) headers.append('set-cookie', cookieHeader(c));
    const body = http.body ? (http.body.bytes ?? http.body.string ?? null) : null;
    const status = Number(http.statusCode || 200);
    return new Response([204, 205, 304].includes(status) ? null : body, { status, headers });
}

async function invoke(f, request, values, url) {
    const started = Date.now();
    const invocationId = crypto.randomUUID();
    const method = request.method;
    const body = ['GET', 'HEAD'].includes(method) ? new Uint8Array() : new Uint8Array(await request.arrayBuffer());
    const [triggerName] = f.trigger;
    const http = {
        method,
        url: request.url,
        headers: joined(request.headers.entries(), () => true),
        query: joined(url.searchParams.entries(), (v) => v !== ''),
        params: values,
        body: { bytes: body },
    };
    const coreCtx = {
        invocationId,
        request: { inputData: [{ name: triggerName, data: { http } }], triggerMetadata: {} },
        metadata: f.metadata,
        state: undefined,
        log,
    };
    try {
        const model = programmingModel.getInvocationModel(coreCtx);
        const { context, inputs } = await model.getArguments();
        const hookData = {};
        const pre = { invocationContext: context, inputs, functionCallback: f.callback, hookData };
        coreCtx.state = 'preInvocationHooks';
        for (const hook of hooks.preInvocation) await hook(pre);
        coreCtx.state = 'invocation';
        const post = { invocationContext: context, inputs: pre.inputs, hookData };
        try {
            post.result = await model.invokeFunction(context, pre.inputs, pre.functionCallback);
        } catch (error) {
            post.error = error;
        }
        coreCtx.state = 'postInvocationHooks';
        for (const hook of hooks.postInvocation) await hook(post);
        if (post.error) throw post.error;
        const rpc = await model.getResponse(context, post.result);
        const out = rpc.returnValue ?? rpc.outputData?.find((o) => f.bindings[o.name]?.type === 'http')?.data;
        return toResponse(out);
    } catch (error) {
        console.error(
            `Executed 'Functions.${f.metadata.name}' (Failed, Id=${invocationId}, Duration=${Date.now() - started}ms)\n` +
                `Result: Failure\nException: ${error}\nStack: ${error && error.stack}`
        );
        return new Response(null, { status: 500 });
    }
}

// Called (and awaited) by the component's entry after the app's modules are loaded, at
// build time: what fails here fails the build.
export async function serve({ routePrefix = 'api', withoutAuth: noAuth = false } = {}) {
    withoutAuth = noAuth;
    const prefix = routePrefix.replace(/^\/+|\/+$/g, '') ? `/${routePrefix.replace(/^\/+|\/+$/g, '')}` : '';
    if (!programmingModel) {
        throw new Error('no function was registered: the app\'s modules do not call app.http(...) from @azure/functions');
    }
    // The worker asks the library for its capabilities at start: this is where
    // app.setup({ enableHttpStream: true }) fails (see node/unsupported.js).
    await programmingModel.getCapabilities({});
    for (const hook of hooks.appStart) await hook({ hookData: {}, functionAppDirectory: '/' });
    globalThis.process = { env: {}, version: 'v20.0.0', versions: {}, platform: 'wasi' };
    addEventListener('fetch', (event) => {
        event.respondWith(
            (async () => {
                globalThis.process.env = env(); // Azure app settings are environment variables
                const url = new URL(event.request.url);
                const found = route(prefix, event.request.method, url.pathname);
                if (!found) return new Response(null, { status: 404 });
                const [f, values] = found;
                if (KEYED.includes(f.auth) && !withoutAuth) return new Response(null, { status: 401 });
                return invoke(f, event.request, values, url);
            })()
        );
    });
}
