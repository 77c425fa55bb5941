// Node's `util`, as much as @azure/functions uses: format() (for context.log) and inspect().

export function inspect(value) {
    if (typeof value === 'string') return value;
    if (value instanceof Error) return value.stack || String(value);
    try {
        return JSON.stringify(value);
    } catch {
        return String(value);
    }
}

export function format(first, ...args) {
    if (typeof first !== 'string') return [first, ...args].map(inspect).join(' ');
    let rest = args;
    const text = first.replace(/%[sdifjoO%]/g, (token) => {
        if (token === '%%') return '%';
        if (!rest.length) return token;
        const [value, ...others] = rest;
        rest = others;
        if (token === '%d' || token === '%i') return String(parseInt(value, 10));
        if (token === '%f') return String(parseFloat(value));
        if (token === '%s') return typeof value === 'string' ? value : inspect(value);
        return inspect(value);
    });
    return [text, ...rest.map(inspect)].join(' ');
}

export const types = { isPromise: (v) => v instanceof Promise };
export default { format, inspect, types };
