// The component side: wasi:http's incoming handler, exported by the entry as
// `incomingHandler`, that hands each request to `App.invoke`. It reads and writes wasi:http's
// header lists itself rather than using the JS engine's `fetch` event, whose `Headers` join
// repeated request headers with ", " (API Gateway's 2.0 events join them with ",", and 1.0
// events keep them apart). `process.env` is the component's environment at each request
// (wasi:cli/environment, which lib/wit adds to the component's world).

import { getEnvironment } from 'wasi:cli/environment@0.2.3';
import { Fields, IncomingBody, OutgoingBody, OutgoingResponse, ResponseOutparam } from 'wasi:http/types@0.2.3';

import { Request, Response } from './app.mjs';
import { environmentFrom } from './process.mjs';

const WRITE = 4096; // wasi:io's blocking-write-and-flush takes at most 4096 bytes
const READ = 65536n;
const DECODER = new TextDecoder();
const ENCODER = new TextEncoder();

function methodName(method) {
    return method.tag === 'other' ? method.val : method.tag.toUpperCase();
}

const EMPTY = new Uint8Array(0);

function readBody(incoming) {
    const body = incoming.consume();
    const stream = body.stream();
    const chunks = [];
    let size = 0;
    for (;;) {
        let chunk;
        try {
            chunk = stream.blockingRead(READ);
        } catch (error) {
            if (error?.payload?.tag === 'closed') break;
            throw error;
        }
        chunks.push(chunk);
        size += chunk.length;
    }
    stream[Symbol.dispose]?.();
    IncomingBody.finish(body);
    if (chunks.length === 1) return chunks[0];
    const all = new Uint8Array(size);
    let offset = 0;
    for (const chunk of chunks) {
        all.set(chunk, offset);
        offset += chunk.length;
    }
    return all;
}

/** The request from what wasi:http gave, the Spin route it matched (from wasmlet's `spin-*`
 * headers, which the function does not see), and whether it has a body to read: an HTTP/1.1
 * request without Content-Length (or with 0) and Transfer-Encoding has none, and reading
 * nothing would cost host calls. */
export function parse(method, targetPath, entries) {
    const at = targetPath.indexOf('?');
    const path = at < 0 ? targetPath : targetPath.slice(0, at);
    const query = at < 0 ? '' : targetPath.slice(at + 1);
    const headers = [];
    let route = '/';
    let client = '';
    let fullUrl = '';
    let body = false;
    for (const [key, raw] of entries) {
        const value = typeof raw === 'string' ? raw : DECODER.decode(raw);
        const name = key.toLowerCase();
        if (name === 'spin-raw-component-route') route = value;
        else if (name === 'spin-client-addr') client = value;
        else if (name === 'spin-full-url') fullUrl = value;
        else if (!name.startsWith('spin-')) {
            headers.push([name, value]);
            if (name === 'transfer-encoding' || (name === 'content-length' && value.trim() !== '0')) body = true;
        }
    }
    const scheme = fullUrl.startsWith('https:') ? 'https' : 'http';
    const sourceIp = client ? client.slice(0, client.lastIndexOf(':')).replace(/^\[|\]$/g, '') : '127.0.0.1';
    return [new Request(method, path, query, headers, EMPTY, sourceIp, scheme), route, body];
}

function send(response, out) {
    const pairs = response.headers.map(([k, v]) => [k, ENCODER.encode(v)]);
    pairs.push(['content-length', ENCODER.encode(String(response.body.length))]);
    const outgoing = new OutgoingResponse(Fields.fromList(pairs));
    outgoing.setStatusCode(response.status);
    const body = outgoing.body();
    ResponseOutparam.set(out, { tag: 'ok', val: outgoing });
    const stream = body.write();
    for (let offset = 0; offset < response.body.length; offset += WRITE) {
        stream.blockingWriteAndFlush(response.body.subarray(offset, offset + WRITE));
    }
    stream[Symbol.dispose]?.();
    OutgoingBody.finish(body, undefined);
}

/** Load `app` (its handlers' modules load now: at build time) and return the component's
 * wasi:http incoming handler. */
export function serve(app) {
    app.load();
    parse('GET', '/warm?a=1', [['host', 'localhost'], ['spin-raw-component-route', '/...'], ['x', '1']]);
    app.warmUp();
    return {
        async handle(incoming, out) {
            let response;
            try {
                environmentFrom(() => Object.fromEntries(getEnvironment()));
                const method = methodName(incoming.method());
                const [request, route, body] = parse(method, incoming.pathWithQuery() ?? '/', incoming.headers().entries());
                if (body) request.body = readBody(incoming);
                response = await app.invoke(request, route);
            } catch (error) {
                console.error(`wasmlet_lambda: ${error?.stack ?? error}`);
                response = new Response(500, [], new Uint8Array(0));
            }
            try {
                send(response, out);
            } catch (error) {
                // e.g. a header value wasi:http refuses; the response is not set yet
                console.error(`wasmlet_lambda: cannot send the response: ${error?.stack ?? error}`);
                send(new Response(500, [], new Uint8Array(0)), out);
            }
        },
    };
}
