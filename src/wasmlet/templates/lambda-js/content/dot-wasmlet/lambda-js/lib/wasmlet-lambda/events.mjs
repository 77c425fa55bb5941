// An HTTP request as the Lambda event of its trigger: the JavaScript twin of the Python
// adapter's events.py (wasmlet_lambda), with the same kinds, fields and choices; the tests
// build events with both from the same requests and compare them
// (tests/test_lambda_js_adapter.py).
//
// Kinds (a route's `kind`): "http-api" (API Gateway HTTP API, payload 2.0, the default),
// "http-api-1.0", "rest" (REST API proxy, 1.0), "function-url" (the 2.0 shape), "alb" and
// "alb-multi-value". Plain JavaScript: runs in the component (StarlingMonkey) and on Node in
// the tests. Choices where AWS's services differ or wasmlet knows less:
// - paths are passed as the client sent them (percent-encoded), in every kind; path
//   parameters and (except for ALB, which does not decode) query parameters are decoded;
// - a body is text when its content type is text-like and it is valid UTF-8, else base64
//   with `isBase64Encoded: true`;
// - header names are lower-case, except in REST events (`Title-Case`).

export const KINDS = ['http-api', 'http-api-1.0', 'rest', 'function-url', 'alb', 'alb-multi-value'];
export const DEFAULT_STAGE = '$default';
export const ACCOUNT_ID = '000000000000'; // no AWS account behind wasmlet: an obviously fake one

// Content types whose bodies are passed as text (mangum's list, plus +json/+xml suffixes).
const TEXT_TYPES = [
    'text/',
    'application/json',
    'application/javascript',
    'application/xml',
    'application/vnd.api+json',
    'application/vnd.oai.openapi',
];
const FORWARDED = new Set(['x-forwarded-for', 'x-forwarded-port', 'x-forwarded-proto']);
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const LENIENT_UTF8 = new TextDecoder('utf-8', { ignoreBOM: true });

/** A key set as data: `__proto__` from a client must be a field, not the prototype. */
export function put(object, key, value) {
    if (key === '__proto__') {
        Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
    } else {
        object[key] = value;
    }
}

/** What the adapter knows of a request: `headers` are [name, value] pairs, lower-case names,
 * repeats kept in arrival order; `path` as sent (percent-encoded), `query` without "?". */
export class Request {
    constructor(method, path, query, headers, body, sourceIp, scheme = 'http') {
        this.method = method;
        this.path = path;
        this.query = query;
        this.headers = headers;
        this.body = body; // Uint8Array
        this.sourceIp = sourceIp;
        this.scheme = scheme;
        this.last = new Map(headers); // each header's last value
    }

    header(name) {
        return this.last.get(name);
    }
}

export function isText(contentType) {
    if (!contentType) return false;
    const media = contentType.split(';', 1)[0].trim().toLowerCase();
    return TEXT_TYPES.some((t) => media.startsWith(t)) || media.endsWith('+json') || media.endsWith('+xml');
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const CODES = new Map([...ALPHABET].map((c, i) => [c, i]));

export function toBase64(bytes) {
    let out = '';
    let i = 0;
    for (; i + 2 < bytes.length; i += 3) {
        const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
        out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + ALPHABET[n & 63];
    }
    if (i < bytes.length) {
        const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8);
        out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63];
        out += i + 1 < bytes.length ? ALPHABET[(n >> 6) & 63] + '=' : '==';
    }
    return out;
}

/** Strict base64 (as Python's b64decode(validate=True)): null when `text` is not base64. */
export function fromBase64(text) {
    if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return null;
    const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
    const out = new Uint8Array((text.length / 4) * 3 - pad);
    let o = 0;
    for (let i = 0; i < text.length; i += 4) {
        const n =
            (CODES.get(text[i]) << 18) |
            (CODES.get(text[i + 1]) << 12) |
            ((CODES.get(text[i + 2]) ?? 0) << 6) |
            (CODES.get(text[i + 3]) ?? 0);
        if (o < out.length) out[o++] = n >> 16;
        if (o < out.length) out[o++] = (n >> 8) & 255;
        if (o < out.length) out[o++] = n & 255;
    }
    return out;
}

/** The event's `body` (null when empty) and `isBase64Encoded`. */
export function bodyField(request) {
    if (!request.body.length) return [null, false];
    if (isText(request.header('content-type'))) {
        try {
            return [STRICT_UTF8.decode(request.body), false];
        } catch {
            // not UTF-8 after all: base64, as a binary body
        }
    }
    return [toBase64(request.body), true];
}

/** Percent-decoding as Python's urllib.parse.unquote: invalid escapes stay as they are,
 * bytes that are not UTF-8 become U+FFFD. */
export function unquote(text) {
    if (!text.includes('%')) return text;
    let out = '';
    let bytes = [];
    for (let i = 0; i < text.length; ) {
        if (text[i] === '%' && /^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3))) {
            bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
            i += 3;
            continue;
        }
        if (bytes.length) {
            out += LENIENT_UTF8.decode(new Uint8Array(bytes));
            bytes = [];
        }
        out += text[i];
        i += 1;
    }
    if (bytes.length) out += LENIENT_UTF8.decode(new Uint8Array(bytes));
    return out;
}

/** Python's parse_qsl(query, keep_blank_values=True): `+` is a space, then percent-decoded. */
function parseQuery(query) {
    const pairs = [];
    for (const part of query.split('&')) {
        if (!part) continue;
        const at = part.indexOf('=');
        const [key, value] = at < 0 ? [part, ''] : [part.slice(0, at), part.slice(at + 1)];
        pairs.push([unquote(key.replaceAll('+', ' ')), unquote(value.replaceAll('+', ' '))]);
    }
    return pairs;
}

function titled(name) {
    return name
        .split('-')
        .map((part) => part.slice(0, 1).toUpperCase() + part.slice(1))
        .join('-');
}

function grouped(pairs) {
    const out = {};
    for (const [key, value] of pairs) {
        if (Object.prototype.hasOwnProperty.call(out, key)) out[key].push(value);
        else put(out, key, [value]);
    }
    return out;
}

function mapValues(object, f) {
    const out = {};
    for (const key of Object.keys(object)) put(out, key, f(object[key]));
    return out;
}

/** The client's headers plus those API Gateway and ALB add (X-Forwarded-*, a trace id). */
function forwarded(request, traceHeader) {
    const last = request.last;
    const headers = ['x-forwarded-for', 'x-forwarded-port', 'x-forwarded-proto'].some((k) => last.has(k))
        ? request.headers.filter(([k]) => !FORWARDED.has(k)) // the gateway's own replace the client's
        : [...request.headers];
    const prior = last.get('x-forwarded-for');
    const host = last.get('host') ?? '';
    const port = host.includes(':') && !host.endsWith(']') ? host.slice(host.lastIndexOf(':') + 1) : null;
    headers.push(
        ['x-forwarded-for', prior ? `${prior}, ${request.sourceIp}` : request.sourceIp],
        ['x-forwarded-port', port || (request.scheme === 'https' ? '443' : '80')],
        ['x-forwarded-proto', request.scheme],
    );
    if (!last.has('x-amzn-trace-id')) headers.push(['x-amzn-trace-id', traceHeader]);
    return headers;
}

/** An X-Ray trace header (`Root=1-<epoch hex>-<24 hex>`) for a request. */
export function traceId(requestId, now) {
    const epoch = Math.floor(now).toString(16).padStart(8, '0');
    return `Root=1-${epoch}-${requestId.replaceAll('-', '').slice(0, 24)}`;
}

/** API Gateway's request time: `12/Mar/2024:19:03:58 +0000`. */
export function gatewayTime(now) {
    const t = new Date(Math.floor(now) * 1000);
    const two = (n) => String(n).padStart(2, '0');
    return (
        `${two(t.getUTCDate())}/${MONTHS[t.getUTCMonth()]}/${t.getUTCFullYear()}:` +
        `${two(t.getUTCHours())}:${two(t.getUTCMinutes())}:${two(t.getUTCSeconds())} +0000`
    );
}

function functionPath(request, target) {
    const path = target.path ?? request.path;
    return path || '/';
}

function domain(request, apiId, region, kind) {
    const host = request.header('host');
    let name;
    if (host) name = host.endsWith(']') || !host.includes(':') ? host : host.slice(0, host.lastIndexOf(':'));
    else if (kind === 'function-url') name = `${apiId}.lambda-url.${region()}.on.aws`;
    else name = `${apiId}.execute-api.${region()}.amazonaws.com`;
    return [name, name.split('.', 1)[0]];
}

function staged(path, stage) {
    return stage === DEFAULT_STAGE ? path : `/${stage}${path}`;
}

/**
 * The Lambda event for `request` as the trigger of `target.kind` would send it. `target`:
 * {kind, routeKey, resource, pathParameters, stage, path} (`path`: the path the function
 * sees when not the request's own); `now` in seconds since the epoch; `region` a string, or
 * a function that gives it (most events do not need it).
 */
export function buildEvent(request, target, { requestId, now, apiId, region: given }) {
    const region = typeof given === 'function' ? given : () => given;
    const headers = forwarded(request, traceId(requestId, now));
    switch (target.kind) {
        case 'http-api':
        case 'function-url':
            return v2(request, target, headers, requestId, now, apiId, region);
        case 'rest':
        case 'http-api-1.0':
            return v1(request, target, headers, requestId, now, apiId, region);
        case 'alb':
        case 'alb-multi-value':
            return alb(request, target, headers, region);
        default:
            throw new Error(`unknown event kind ${JSON.stringify(target.kind)} (kinds: ${KINDS.join(', ')})`);
    }
}

/** HTTP API payload 2.0 (and a function URL's event, the same shape). */
function v2(request, target, headers, requestId, now, apiId, region) {
    const cookies = [];
    const joined = {}; // repeats joined with ","
    for (const [key, value] of headers) {
        if (key === 'cookie') {
            // cookies move out of the headers, one entry per cookie
            for (const c of value.split(';')) if (c.trim()) cookies.push(c.trim());
        } else if (Object.prototype.hasOwnProperty.call(joined, key)) joined[key] += ',' + value;
        else put(joined, key, value);
    }
    let path = functionPath(request, target);
    if (target.kind === 'http-api') path = staged(path, target.stage);
    const [domainName, prefix] = domain(request, apiId, region, target.kind);
    const url = target.kind === 'function-url';
    const event = { version: '2.0', routeKey: target.routeKey, rawPath: path, rawQueryString: request.query };
    if (cookies.length) event.cookies = cookies;
    event.headers = joined;
    const query = grouped(parseQuery(request.query));
    if (Object.keys(query).length) event.queryStringParameters = mapValues(query, (v) => v.join(','));
    event.requestContext = {
        accountId: url ? 'anonymous' : ACCOUNT_ID,
        apiId: url ? prefix : apiId,
        domainName,
        domainPrefix: prefix,
        http: {
            method: request.method,
            path,
            protocol: 'HTTP/1.1',
            sourceIp: request.sourceIp,
            userAgent: request.header('user-agent') ?? '',
        },
        requestId,
        routeKey: target.routeKey,
        stage: target.stage,
        time: gatewayTime(now),
        timeEpoch: Math.floor(now * 1000),
    };
    if (target.pathParameters) event.pathParameters = { ...target.pathParameters };
    const [body, encoded] = bodyField(request);
    if (body !== null) event.body = body;
    event.isBase64Encoded = encoded;
    return event;
}

/** REST API proxy integration (payload 1.0); HTTP API's payload 1.0 is the same shape with
 * `version` "1.0". */
function v1(request, target, headers, requestId, now, apiId, region) {
    const rest = target.kind === 'rest';
    const multi = grouped(headers.map(([k, v]) => [rest ? titled(k) : k, v]));
    const query = grouped(parseQuery(request.query));
    let path = functionPath(request, target);
    if (!rest) path = staged(path, target.stage);
    const [domainName, prefix] = domain(request, apiId, region, target.kind);
    const [body, encoded] = bodyField(request);
    const hasQuery = Object.keys(query).length > 0;
    const event = rest ? {} : { version: '1.0' };
    Object.assign(event, {
        resource: target.resource,
        path,
        httpMethod: request.method,
        headers: mapValues(multi, (v) => v[v.length - 1]),
        multiValueHeaders: multi,
        queryStringParameters: hasQuery ? mapValues(query, (v) => v[v.length - 1]) : null,
        multiValueQueryStringParameters: hasQuery ? query : null,
        pathParameters: target.pathParameters ? { ...target.pathParameters } : null,
        stageVariables: null,
        requestContext: {
            accountId: ACCOUNT_ID,
            apiId,
            domainName,
            domainPrefix: prefix,
            extendedRequestId: requestId,
            httpMethod: request.method,
            identity: {
                accessKey: null,
                accountId: null,
                caller: null,
                cognitoAuthenticationProvider: null,
                cognitoAuthenticationType: null,
                cognitoIdentityId: null,
                cognitoIdentityPoolId: null,
                principalOrgId: null,
                sourceIp: request.sourceIp,
                user: null,
                userAgent: request.header('user-agent') ?? '',
                userArn: null,
            },
            // REST: `path` has no stage, the context's path has it (the execute-api URL's)
            path: rest ? staged(path, target.stage) : path,
            protocol: 'HTTP/1.1',
            requestId,
            requestTime: gatewayTime(now),
            requestTimeEpoch: Math.floor(now * 1000),
            resourceId: null,
            resourcePath: target.resource,
            stage: target.stage,
        },
        body,
        isBase64Encoded: encoded,
    });
    return event;
}

/** An ALB target group's event: the query string is not decoded. */
function alb(request, target, headers, region) {
    const rawQuery = request.query
        .split('&')
        .filter((p) => p)
        .map((p) => {
            const at = p.indexOf('=');
            return at < 0 ? [p, ''] : [p.slice(0, at), p.slice(at + 1)];
        });
    const [body, encoded] = bodyField(request);
    const event = {
        requestContext: {
            elb: {
                targetGroupArn:
                    `arn:aws:elasticloadbalancing:${region()}:${ACCOUNT_ID}:` + 'targetgroup/wasmlet/0000000000000000',
            },
        },
        httpMethod: request.method,
        path: functionPath(request, target),
    };
    if (target.kind === 'alb-multi-value') {
        event.multiValueQueryStringParameters = grouped(rawQuery);
        event.multiValueHeaders = grouped(headers);
    } else {
        const single = {};
        for (const [k, v] of rawQuery) put(single, k, v);
        event.queryStringParameters = single;
        event.headers = mapValues(grouped(headers), (v) => v[v.length - 1]);
    }
    event.body = body ?? '';
    event.isBase64Encoded = encoded;
    return event;
}

/**
 * Match a Spin route (`/items/:id/...`) against a request path: the decoded values of its
 * parameters by the event's names (`names`, in order; the wildcard's is the last) or null,
 * and the path the wildcard matched ("" when none).
 */
export function pathParameters(pattern, names, path) {
    let segments = pattern.split('/').filter((s) => s);
    const wildcard = segments.length > 0 && ['...', '*'].includes(segments[segments.length - 1]);
    if (wildcard) segments = segments.slice(0, -1);
    const parts = path.startsWith('/') ? path.split('/').slice(1) : path.split('/');
    const values = [];
    segments.forEach((segment, i) => {
        if (segment.startsWith(':') && i < parts.length) values.push(unquote(parts[i]));
    });
    const rest = wildcard ? parts.slice(segments.length).join('/') : '';
    if (wildcard && rest) values.push(unquote(rest));
    const params = {};
    names.forEach((name, i) => {
        if (i < values.length) put(params, name, values[i]);
    });
    return [Object.keys(params).length ? params : null, wildcard ? '/' + rest : ''];
}
