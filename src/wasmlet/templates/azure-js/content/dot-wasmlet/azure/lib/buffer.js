// Node's Buffer, as much of it as @azure/functions uses (the component's JS engine,
// StarlingMonkey, has Uint8Array, TextEncoder and TextDecoder but no Buffer): from() of
// strings (utf-8, base64, hex), arrays and buffers; toString() in those encodings;
// isBuffer, alloc, concat, byteLength. esbuild injects it where code names `Buffer`.

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

function fromBase64(text) {
    const clean = text.replace(/[^A-Za-z0-9+/\-_]/g, '').replace(/-/g, '+').replace(/_/g, '/');
    const out = new Uint8Array(Math.floor((clean.length * 3) / 4));
    let bits = 0;
    let value = 0;
    let n = 0;
    for (const c of clean) {
        value = (value << 6) | B64.indexOf(c);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (value >> bits) & 0xff;
        }
    }
    return out.subarray(0, n);
}

function toBase64(bytes) {
    let out = '';
    for (let i = 0; i < bytes.length; i += 3) {
        const [a, b = 0, c = 0] = [bytes[i], bytes[i + 1], bytes[i + 2]];
        const n = (a << 16) | (b << 8) | c;
        out += B64[(n >> 18) & 63] + B64[(n >> 12) & 63];
        out += i + 1 < bytes.length ? B64[(n >> 6) & 63] : '=';
        out += i + 2 < bytes.length ? B64[n & 63] : '=';
    }
    return out;
}

export class Buffer extends Uint8Array {
    static from(data, encoding) {
        if (typeof data === 'string') {
            const enc = (encoding ?? 'utf-8').toLowerCase();
            if (enc === 'base64' || enc === 'base64url') return Buffer.of(fromBase64(data));
            if (enc === 'hex') return Buffer.of(new Uint8Array((data.match(/../g) ?? []).map((h) => parseInt(h, 16))));
            return Buffer.of(encoder.encode(data));
        }
        if (data instanceof ArrayBuffer) return new Buffer(data.slice(0));
        if (ArrayBuffer.isView(data)) return Buffer.of(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        return Buffer.of(Uint8Array.from(data));
    }

    static of(bytes) {
        const out = new Buffer(bytes.length);
        out.set(bytes);
        return out;
    }

    static isBuffer(value) {
        return value instanceof Buffer;
    }

    static alloc(size) {
        return new Buffer(size);
    }

    static byteLength(text) {
        return encoder.encode(String(text)).length;
    }

    static concat(list) {
        const out = new Buffer(list.reduce((n, b) => n + b.length, 0));
        let offset = 0;
        for (const b of list) {
            out.set(b, offset);
            offset += b.length;
        }
        return out;
    }

    toString(encoding) {
        const enc = (encoding ?? 'utf-8').toLowerCase();
        if (enc === 'base64') return toBase64(this);
        if (enc === 'hex') return Array.from(this, (b) => b.toString(16).padStart(2, '0')).join('');
        return decoder.decode(this);
    }
}
