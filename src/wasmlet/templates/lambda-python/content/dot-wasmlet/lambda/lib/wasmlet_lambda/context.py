"""The `context` a handler gets: the attributes and methods of awslambdaric's LambdaContext.

The function's name, version, memory size and log group are read from the environment at each
request, as Lambda's runtime reads them (`AWS_LAMBDA_FUNCTION_NAME`, ...), so `wasmlet up -e`
can change them; the deadline is the request's start plus the function's timeout
(`AWS_LAMBDA_FUNCTION_TIMEOUT`, seconds, which wasmlet port sets from the template).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from .events import ACCOUNT_ID


class CognitoIdentity:
    cognito_identity_id: str | None = None
    cognito_identity_pool_id: str | None = None


class LambdaContext:
    """What a Lambda handler's second argument offers."""

    def __init__(
        self,
        request_id: str,
        deadline_ms: int,
        defaults: dict[str, str],
        log_stream: str,
    ) -> None:
        env = os.environ
        name = env.get("AWS_LAMBDA_FUNCTION_NAME") or defaults.get("name", "function")
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.aws_request_id = request_id
        self.function_name = name
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = env.get(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", defaults.get("memory", "128")
        )
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}"
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME", f"/aws/lambda/{name}")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME", log_stream)
        self.identity = CognitoIdentity()
        self.client_context: Any = None
        self.tenant_id: str | None = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, message: str) -> None:
        sys.stdout.write(message)
        sys.stdout.flush()

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"function_name={self.function_name},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn}])"
        )


def timeout_seconds(default: float) -> float:
    """The function's timeout: `AWS_LAMBDA_FUNCTION_TIMEOUT`, else `default`."""
    try:
        value = float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", ""))
    except ValueError:
        return default
    return value if value > 0 else default
