"""`wasmlet port`: serverless projects as Spin apps, their handlers unchanged.

`run.port_aws_sam` reads an AWS SAM template (`sam.py`, with CloudFormation's YAML tags and
intrinsics in `cfn.py`) and `run.port_serverless` a Serverless Framework service
(`serverless.py`, its variables in `slsvars.py`) into a `Project` (`model.py`: functions,
HTTP events, notes on what was not ported); `lambda_plan.py` plans the components,
`lambda_python.py` and `lambda_js.py` write their build directories (`.wasmlet/lambda/`,
`.wasmlet/lambda-js/`, where wasmlet's Lambda adapters, vendored from the lambda-python and
lambda-js templates, run each handler with the event of its trigger) and `lambda_app.py`
spin.toml. Azure Functions apps have their own reader and writer (`azure*.py`). This package
module imports nothing: `cli.py` is part of the light command line (`wasmlet build` must not
pay for YAML).
"""
