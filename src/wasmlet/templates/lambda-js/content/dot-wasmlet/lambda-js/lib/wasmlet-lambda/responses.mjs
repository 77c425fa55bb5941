// A handler's return value as the HTTP response its trigger would send, and the responses of
// failures: the JavaScript twin of the Python adapter's responses.py.
//
// The value is read as Lambda's Node.js runtime serializes it (JSON.stringify: `undefined`
// fields are dropped, `toJSON` applies) and the gateway reads it: an object with
// `statusCode` is a proxy response (`headers`, `multiValueHeaders` (merged; its values win
// for a name in both), `cookies` (payload 2.0: one `Set-Cookie` each), `body`,
// `isBase64Encoded`); for payload 2.0 and function URLs any other value is serialized as JSON
// and is the body of a 200 `application/json` response (API Gateway's inference).

import { fromBase64 } from './events.mjs';

const SERVER_ERROR = ['application/json', '{"message":"Internal Server Error"}'];
const BAD_GATEWAY = ['text/html', '<html><body><h1>502 Bad Gateway</h1></body></html>\n'];
// The statuses and bodies the services answer when the function fails.
const FAILED = {
    'http-api': [500, ...SERVER_ERROR],
    'http-api-1.0': [500, ...SERVER_ERROR],
    'function-url': [500, ...SERVER_ERROR],
    rest: [502, 'application/json', '{"message": "Internal server error"}'],
    alb: [502, ...BAD_GATEWAY],
    'alb-multi-value': [502, ...BAD_GATEWAY],
};
// What a method the route does not have gets (REST's famous 403).
const NOT_FOUND = [404, '{"message":"Not Found"}'];
const NO_ROUTE = {
    'http-api': NOT_FOUND,
    'http-api-1.0': NOT_FOUND,
    'function-url': NOT_FOUND,
    rest: [403, '{"message":"Missing Authentication Token"}'],
    alb: NOT_FOUND,
    'alb-multi-value': NOT_FOUND,
};
const REQUIRES_STATUS = new Set(['rest', 'http-api-1.0', 'alb', 'alb-multi-value']);
const HOP_BY_HOP = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive']);
const UTF8 = new TextEncoder();

/** A response: status, [name, value] header pairs, body bytes. */
export class Response {
    constructor(status, headers, body) {
        this.status = status;
        this.headers = headers;
        this.body = body;
    }
}

/** The handler returned something its trigger cannot turn into a response. */
export class MalformedResult extends Error {}

/** What the runtime could not serialize (Lambda's Runtime.MarshalError). */
export class MarshalError extends Error {}

function typeName(value) {
    if (value === null) return 'null';
    if (Array.isArray(value)) return 'array';
    return typeof value;
}

function scalar(value, where) {
    if (typeof value === 'boolean') return value ? 'true' : 'false';
    if (typeof value === 'string') return value;
    if (typeof value === 'number' && Number.isFinite(value)) return String(value);
    throw new MalformedResult(`${where}: expected a string, got ${typeName(value)}`);
}

function status(value) {
    if (typeof value === 'string' && /^[0-9]+$/.test(value)) value = Number(value);
    if (!Number.isInteger(value) || value < 100 || value > 599) {
        throw new MalformedResult(`statusCode: expected an HTTP status (100-599), got ${JSON.stringify(value)}`);
    }
    return value;
}

function isRecord(value) {
    return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function json(data) {
    let text;
    try {
        text = JSON.stringify(data === undefined ? null : data);
    } catch (error) {
        throw new MarshalError(`Unable to stringify response body: ${error?.message ?? error}`);
    }
    return text === undefined ? 'null' : text; // a function or a symbol: what JSON drops
}

/** The response for a handler's return value. */
export function toResponse(kind, data) {
    if (isRecord(data) && typeof data.toJSON === 'function') data = JSON.parse(json(data));
    if (!isRecord(data) || data.statusCode === undefined) {
        if (REQUIRES_STATUS.has(kind)) {
            throw new MalformedResult(
                `the result has no statusCode: a ${kind === 'rest' ? 'REST API' : kind} proxy response is an ` +
                    'object with statusCode, headers, multiValueHeaders, body and isBase64Encoded',
            );
        }
        return new Response(200, [['content-type', 'application/json']], UTF8.encode(json(data)));
    }
    const code = status(data.statusCode);
    const headers = new Map();
    const single = data.headers ?? {};
    const multi = data.multiValueHeaders ?? {};
    if (!isRecord(single) || !isRecord(multi)) {
        throw new MalformedResult('headers and multiValueHeaders must be objects');
    }
    for (const [name, value] of Object.entries(single)) {
        if (value !== undefined) headers.set(name.toLowerCase(), [scalar(value, `headers.${name}`)]);
    }
    for (const [name, values] of Object.entries(multi)) {
        if (values === undefined) continue;
        if (!Array.isArray(values)) throw new MalformedResult(`multiValueHeaders.${name}: expected a list of strings`);
        headers.set(
            name.toLowerCase(),
            values.map((v) => scalar(v, `multiValueHeaders.${name}`)),
        );
    }
    const pairs = [];
    for (const [name, values] of headers) {
        if (!HOP_BY_HOP.has(name)) for (const v of values) pairs.push([name, v]);
    }
    if (kind === 'http-api' || kind === 'function-url') {
        const cookies = data.cookies ?? [];
        if (!Array.isArray(cookies)) throw new MalformedResult('cookies: expected a list of strings');
        for (const c of cookies) pairs.push(['set-cookie', scalar(c, 'cookies[]')]);
    }
    const text = data.body;
    let raw;
    if (text === undefined || text === null) raw = new Uint8Array(0);
    else if (typeof text !== 'string') throw new MalformedResult(`body: expected a string, got ${typeName(text)}`);
    else if (data.isBase64Encoded === true) {
        raw = fromBase64(text);
        if (raw === null) throw new MalformedResult('body: isBase64Encoded is true but it is not base64');
    } else raw = UTF8.encode(text);
    return new Response(code, pairs, raw);
}

/** What the trigger answers when the function failed. */
export function failed(kind) {
    const [code, contentType, body] = FAILED[kind];
    return new Response(code, [['content-type', contentType]], UTF8.encode(body));
}

export function noRoute(kind) {
    const [code, body] = NO_ROUTE[kind];
    return new Response(code, [['content-type', 'application/json']], UTF8.encode(body));
}

/** Lambda's Node.js error JSON for what the handler threw (or passed to its callback):
 * `errorType`, `errorMessage` and the stack as a list of lines. */
export function errorDocument(error) {
    if (!(error instanceof Error)) {
        let message;
        try {
            message = typeof error === 'string' ? error : JSON.stringify(error);
        } catch {
            message = String(error);
        }
        return { errorType: typeof error, errorMessage: message ?? String(error), stack: [] };
    }
    const frames = String(error.stack ?? '')
        .split('\n')
        .filter((line) => line.trim())
        // V8 (Node) starts its stacks with "Type: message"; SpiderMonkey (the component's
        // engine) does not: add it, so that the log reads as Lambda's does.
        .filter((line, i) => i > 0 || !line.startsWith(`${error.name}:`))
        .map((line) => (line.startsWith('    at ') ? line : `    at ${line}`));
    return {
        errorType: error.name || error.constructor?.name || 'Error',
        errorMessage: error.message,
        stack: [`${error.name}: ${error.message}`, ...frames],
    };
}
