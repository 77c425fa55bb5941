"""{{project-name}}: an AWS Lambda handler, which wasmlet runs as Lambda would.

`lambda_handler` gets the event of an API Gateway HTTP API (payload 2.0) and a Lambda context,
and returns an API Gateway proxy response: this file deploys to AWS Lambda unchanged
(Handler: app.lambda_handler). Other triggers' events (REST API, function URL, ALB): see
`kind` in .wasmlet/lambda/{{project-name}}/wasmlet_entry.py.
"""

import json


def lambda_handler(event, context):
    http = event["requestContext"]["http"]
    body = {
        "message": "Hello from {{project-name}}!",
        "method": http["method"],
        "path": event["rawPath"],
        "query": event.get("queryStringParameters") or {},
        "requestId": context.aws_request_id,
        "function": context.function_name,
    }
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }
