// The entry of component {{project-name}}: its Lambda functions and the routes they serve, for
// wasmlet's Lambda adapter (lib/wasmlet-lambda; see wasmlet's docs/serverless.md). `handler`
// names the function as Lambda's Handler setting does; `kind` is the trigger whose event the
// function gets: "http-api" (API Gateway HTTP API, payload 2.0), "http-api-1.0", "rest" (REST
// API, 1.0), "function-url", "alb" or "alb-multi-value". `environment` is process.env while
// the handler's module loads, which happens once, at build time.
// Written by `wasmlet port` (or `wasmlet new lambda-js`): after changing the project file,
// port again rather than edit this file.

import { App } from "../lib/wasmlet-lambda/app.mjs";
import { serve } from "../lib/wasmlet-lambda/runtime.mjs";

export const incomingHandler = serve(
    new App({
        functions: {
            "{{project-name}}": {
                name: "{{project-name}}",
                handler: "app.handler",
                memoryMb: 128,
                timeout: 30,
                environment: {
                    "AWS_LAMBDA_FUNCTION_NAME": "{{project-name}}",
                    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
                    "AWS_LAMBDA_FUNCTION_TIMEOUT": "30",
                    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/{{project-name}}",
                    "AWS_REGION": "us-east-1",
                    "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_EXECUTION_ENV": "AWS_Lambda_nodejs22.x",
                    "_HANDLER": "app.handler",
                },
                load: () => require("../../../app.mjs"),
            },
        },
        routes: [
            { route: "{{http-path}}", function: "{{project-name}}", kind: "http-api" },
        ],
    }),
);
