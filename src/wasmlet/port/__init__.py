"""`wasmlet port`: serverless projects as Spin apps, their handlers unchanged.

`run.port_aws_sam` reads an AWS SAM template (`sam.py`, with CloudFormation's YAML tags and
intrinsics in `cfn.py`) into a `Project` (`model.py`: functions, HTTP events, notes on what
was not ported), then `lambda_python.py` plans the components and writes spin.toml and the
build directory `.wasmlet/lambda/`, where wasmlet's Lambda adapter (vendored from the
lambda-python template) runs each handler with the event of its trigger. Other formats (the
Serverless Framework, Azure Functions) and languages fit the same two steps: a reader that
makes a `Project`, a writer per adapter. This package module imports nothing: `cli.py` is
part of the light command line (`wasmlet build` must not pay for YAML).
"""
