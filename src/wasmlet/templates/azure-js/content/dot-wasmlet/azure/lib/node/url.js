// Node's `url`: the WHATWG classes the JS engine already has.
const { URL, URLSearchParams } = globalThis;
export { URL, URLSearchParams };
export default { URL, URLSearchParams };
