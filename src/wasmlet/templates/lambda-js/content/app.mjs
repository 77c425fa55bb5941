// {{project-name}}: an AWS Lambda handler, which wasmlet runs as Lambda would.
//
// `handler` gets the event of an API Gateway HTTP API (payload 2.0) and a Lambda context, and
// returns an API Gateway proxy response: this file deploys to AWS Lambda unchanged (Runtime
// nodejs22.x, Handler: app.handler). Other triggers' events (REST API, function URL, ALB): see
// `kind` in .wasmlet/lambda-js/{{project-name}}/entry.mjs.

export const handler = async (event, context) => {
    const http = event.requestContext.http;
    const body = {
        message: 'Hello from {{project-name}}!',
        method: http.method,
        path: event.rawPath,
        query: event.queryStringParameters ?? {},
        requestId: context.awsRequestId,
        function: context.functionName,
    };
    return {
        statusCode: 200,
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
    };
};
