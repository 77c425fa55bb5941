// Node's `http` and `net`: @azure/functions uses them only for HTTP streaming
// (app.setup({ enableHttpStream: true })), where the worker runs a local HTTP proxy.
// A component cannot listen on a port: using them fails with this error, at build time.
function unsupported() {
    throw new Error(
        'HTTP streaming (app.setup({ enableHttpStream: true })) is not supported by wasmlet: ' +
            'remove it; requests and responses are buffered'
    );
}
export const createServer = unsupported;
export const Server = unsupported;
export const Socket = unsupported;
export default { createServer, Server, Socket };
