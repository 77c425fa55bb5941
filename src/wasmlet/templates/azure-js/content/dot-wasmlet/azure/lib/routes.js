// Azure Functions route templates (ASP.NET Core's syntax), matched as the Functions host
// matches them: literals case-insensitively, `{name}`, `{name:int}` (constraints),
// `{name?}`, `{name=default}`, a final `{*rest}`; the most specific template wins, segment
// by segment (literal, constrained, plain, optional, catch-all). The same rules as the
// Python adapter's wasmlet_azure/routes.py.

const PARAM = /^\{(\*{0,2})([A-Za-z_]\w*)((?::[^{}=?]+(?:\([^)]*\))?)*)(\?|=[^{}]*)?\}$/;
const CONSTRAINT = /:(\w+)(?:\(([^)]*)\))?/g;
const INTEGER = /^-?\d+$/;

const inRange = (value, bits) => {
    if (!INTEGER.test(value)) return false;
    const n = BigInt(value);
    const limit = 2n ** BigInt(bits - 1);
    return n >= -limit && n < limit;
};
const isNumber = (value) => value.trim() !== '' && !Number.isNaN(Number(value));

const SIMPLE = {
    int: (v) => inRange(v, 32),
    long: (v) => inRange(v, 64),
    bool: (v) => ['true', 'false'].includes(v.toLowerCase()),
    guid: (v) => /^\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?$/i.test(v),
    alpha: (v) => /^[A-Za-z]+$/.test(v),
    double: isNumber,
    float: isNumber,
    decimal: isNumber,
    datetime: (v) => !Number.isNaN(Date.parse(v)),
    required: (v) => v !== '',
};

function constraint(name, arg, template) {
    if (arg === undefined && SIMPLE[name]) return SIMPLE[name];
    const n = (arg ?? '').split(',').map((a) => Number(a.trim()));
    const long = SIMPLE.long;
    switch (name) {
        case 'regex':
            return (v) => new RegExp(arg, 'i').test(v);
        case 'minlength':
            return (v) => v.length >= n[0];
        case 'maxlength':
            return (v) => v.length <= n[0];
        case 'length':
            return n.length === 1 ? (v) => v.length === n[0] : (v) => v.length >= n[0] && v.length <= n[1];
        case 'min':
            return (v) => long(v) && Number(v) >= n[0];
        case 'max':
            return (v) => long(v) && Number(v) <= n[0];
        case 'range':
            return (v) => long(v) && Number(v) >= n[0] && Number(v) <= n[n.length - 1];
        default:
            throw new Error(`route '${template}': constraint '${name}' is not supported`);
    }
}

export function parse(template) {
    const parts = template.replace(/^\/+|\/+$/g, '').split('/').filter((p) => p !== '');
    return parts.map((part, index) => {
        if (!part.includes('{') && !part.includes('}')) return { literal: part.toLowerCase(), rank: 0 };
        const m = PARAM.exec(part);
        if (!m) throw new Error(`route '${template}': segment '${part}' is not supported (a segment is a literal or one {parameter})`);
        const [, stars, name, constraints, tail] = m;
        const checks = [...(constraints ?? '').matchAll(CONSTRAINT)].map((c) => constraint(c[1], c[2], template));
        if (stars && index !== parts.length - 1) throw new Error(`route '${template}': the catch-all '${part}' must be last`);
        const optional = tail === '?';
        const fallback = tail && tail.startsWith('=') ? tail.slice(1) : undefined;
        const rank = stars ? 4 : checks.length ? 1 : optional ? 3 : 2;
        return { literal: null, name, checks, optional, fallback, catchAll: Boolean(stars), rank };
    });
}

export function match(segments, path) {
    const trimmed = path.replace(/^\/+|\/+$/g, '');
    const parts = trimmed ? trimmed.split('/') : [];
    const values = {};
    for (let i = 0; i < segments.length; i++) {
        const s = segments[i];
        if (s.catchAll) {
            const rest = decodeURIComponent(parts.slice(i).join('/'));
            if (rest) values[s.name] = rest;
            else if (s.fallback !== undefined) values[s.name] = s.fallback;
            return !rest || s.checks.every((check) => check(rest)) ? values : null;
        }
        if (i >= parts.length) {
            if (s.literal === null && (s.optional || s.fallback !== undefined)) {
                if (s.fallback !== undefined) values[s.name] = s.fallback;
                continue;
            }
            return null;
        }
        const part = decodeURIComponent(parts[i]);
        if (s.literal !== null) {
            if (part.toLowerCase() !== s.literal) return null;
        } else if (part === '' || !s.checks.every((check) => check(part))) {
            return null;
        } else {
            values[s.name] = part;
        }
    }
    return parts.length <= segments.length ? values : null;
}

// Sort key: the more specific template first.
export function compare(a, b) {
    const ka = [...a.map((s) => s.rank), -1];
    const kb = [...b.map((s) => s.rank), -1];
    for (let i = 0; i < Math.min(ka.length, kb.length); i++) {
        if (ka[i] !== kb[i]) return ka[i] - kb[i];
    }
    return ka.length - kb.length;
}
