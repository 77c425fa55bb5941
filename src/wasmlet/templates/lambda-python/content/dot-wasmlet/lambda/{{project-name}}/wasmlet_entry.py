"""The entry of component {{project-name}}: its Lambda function and the route it serves,
for wasmlet's Lambda adapter (wasmlet_lambda; see wasmlet's docs/serverless.md). `handler`
names the function as Lambda's Handler setting does; `kind` is the trigger whose event the
function gets: "http-api" (API Gateway HTTP API, payload 2.0), "http-api-1.0", "rest" (REST
API, 1.0), "function-url", "alb" or "alb-multi-value". `environment` is set while the
handler's module is imported, which happens once, at build time."""

from wasmlet_lambda import App, Function, Route
from wasmlet_lambda.runtime import serve

APP = App(
    functions={
        "{{project-name}}": Function(
            name="{{project-name}}",
            handler="app.lambda_handler",
            memory_mb=128,
            timeout=30,
            environment={
                "AWS_LAMBDA_FUNCTION_NAME": "{{project-name}}",
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
                "AWS_LAMBDA_FUNCTION_TIMEOUT": "30",
                "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/{{project-name}}",
                "AWS_REGION": "us-east-1",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
                "_HANDLER": "app.lambda_handler",
            },
        ),
    },
    routes=[
        Route("{{http-path}}", "{{project-name}}", kind="http-api"),
    ],
)
IncomingHandler = serve(APP)
