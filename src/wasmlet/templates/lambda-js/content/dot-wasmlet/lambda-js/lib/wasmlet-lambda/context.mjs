// The `context` a handler gets: the fields and methods of Lambda's Node.js runtime.
//
// The function's name, version, memory size and log group are read from the environment at
// each request, as Lambda's runtime reads them (`AWS_LAMBDA_FUNCTION_NAME`, ...), so
// `wasmlet up -e` can change them; the deadline is the request's start plus the function's
// timeout (`AWS_LAMBDA_FUNCTION_TIMEOUT`, seconds, which wasmlet port sets from the project).
// Each is read when first used: a handler that uses none costs no read of the environment.

import { ACCOUNT_ID } from './events.mjs';
import { process } from './process.mjs';

/** Define `name` on `object` as computed on first use (then a plain, writable value). */
function lazy(object, name, compute) {
    Object.defineProperty(object, name, {
        enumerable: true,
        configurable: true,
        get() {
            const value = compute();
            Object.defineProperty(object, name, { value, enumerable: true, writable: true, configurable: true });
            return value;
        },
        set(value) {
            Object.defineProperty(object, name, { value, enumerable: true, writable: true, configurable: true });
        },
    });
}

/**
 * `settle(error, result)` ends the invocation (the callback's and done/succeed/fail's
 * target); `defaults` are {name, memory, timeout} from the entry; `start` is the request's
 * start in ms. The fields that come from the environment are read when first used (see
 * process.mjs), as is the deadline (start + the function's timeout).
 */
export function makeContext(requestId, start, defaults, settle) {
    const env = () => process.env;
    const name = () => env().AWS_LAMBDA_FUNCTION_NAME || defaults.name;
    let deadline = null;
    const context = { callbackWaitsForEmptyEventLoop: true };
    lazy(context, 'functionName', name);
    lazy(context, 'functionVersion', () => env().AWS_LAMBDA_FUNCTION_VERSION ?? '$LATEST');
    lazy(context, 'invokedFunctionArn', () => {
        const region = env().AWS_REGION || env().AWS_DEFAULT_REGION || 'us-east-1';
        return `arn:aws:lambda:${region}:${ACCOUNT_ID}:function:${name()}`;
    });
    lazy(context, 'memoryLimitInMB', () => env().AWS_LAMBDA_FUNCTION_MEMORY_SIZE ?? defaults.memory);
    context.awsRequestId = requestId;
    lazy(context, 'logGroupName', () => env().AWS_LAMBDA_LOG_GROUP_NAME ?? `/aws/lambda/${name()}`);
    lazy(context, 'logStreamName', () => {
        const day = new Date(start).toISOString().slice(0, 10).replaceAll('-', '/');
        return env().AWS_LAMBDA_LOG_STREAM_NAME ?? `${day}/[$LATEST]${requestId.replaceAll('-', '')}`;
    });
    Object.assign(context, {
        identity: undefined,
        clientContext: undefined,
        getRemainingTimeInMillis() {
            deadline ??= start + Math.floor(timeoutSeconds(defaults.timeout) * 1000);
            return Math.max(deadline - Date.now(), 0);
        },
        // The runtime's legacy ways to end an invocation, before callbacks and promises.
        done(error, result) {
            settle(error, result);
        },
        succeed(result) {
            settle(null, result);
        },
        fail(error) {
            settle(error ?? new Error('handled'), undefined);
        },
    });
    return context;
}

/** The function's timeout in seconds: `AWS_LAMBDA_FUNCTION_TIMEOUT`, else `fallback`. */
export function timeoutSeconds(fallback) {
    const value = Number(process.env.AWS_LAMBDA_FUNCTION_TIMEOUT);
    return Number.isFinite(value) && value > 0 ? value : fallback;
}
