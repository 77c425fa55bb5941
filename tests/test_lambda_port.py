"""`wasmlet port aws-sam` without builds: every input it refuses, named with file, key and
value; its options; `wasmlet add lambda-python`; and the build step that refuses a dependency
with native code (pip, no component build). The ported apps built and served:
tests/test_lambda.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from support.env import ROOT, TOOLS_CACHE, path_without
from support.server import run_cli

from wasmlet.build import watched_files
from wasmlet.port.cfn import PortError
from wasmlet.port.run import port_aws_sam

DEPS = ROOT / "src/wasmlet/templates/lambda-python/content/dot-wasmlet/lambda/lib/wasmlet_lambda"


def test_a_native_dependency_fails_the_build_named(tmp_path: Path) -> None:
    """FastAPI needs pydantic-core: `wasmlet build` stops at the requirements, naming it."""
    _template(
        tmp_path,
        _function(_event()),
        {"src/app.py": "import fastapi\n", "src/requirements.txt": "fastapi\n"},
    )
    assert run_cli("port", "aws-sam", cwd=tmp_path).returncode == 0
    env = {"WASMLET_CACHE_DIR": str(TOOLS_CACHE), "PATH": path_without("componentize-py")}
    r = run_cli("build", cwd=tmp_path, env=env, timeout=900)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "error: ../../src/requirements.txt: package pydantic-core " in out
    assert "has native code (pydantic_core/_pydantic_core" in out
    assert "no WebAssembly (WASI) build" in out
    assert "It is required by: fastapi -> pydantic -> pydantic-core" in out
    assert "Error: build command for component 'fn' failed with exit status 1: python3" in out
    assert not (tmp_path / ".wasmlet/lambda/fn/deps").exists()


def test_watched_files_are_named_as_the_watcher_sees_them(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "app.py").write_text("")
    (tmp_path / "build" / "dir").mkdir(parents=True)
    found = watched_files(tmp_path / "build" / "dir", ["../../code/**/*.py"])
    assert found == [tmp_path / "code" / "app.py"]


def _template(tmp_path: Path, body: str, code: dict[str, str] | None = None) -> Path:
    for name, text in (code or {"src/app.py": "def handler(e, c):\n    return 1\n"}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    path = tmp_path / "template.yaml"
    path.write_text("Transform: AWS::Serverless-2016-10-31\nResources:\n" + body)
    return path


def _function(props: str, name: str = "Fn") -> str:
    base = "      Runtime: python3.12\n      CodeUri: src/\n      Handler: app.handler\n"
    return f"  {name}:\n    Type: AWS::Serverless::Function\n    Properties:\n{base}{props}"


EVENT = "      Events:\n        E:\n          Type: {type}\n          Properties:\n{props}"


def _event(type_: str = "HttpApi", path: str = "/x", method: str = "get") -> str:
    props = f"            Path: {path}\n            Method: {method}\n"
    return EVENT.format(type=type_, props=props)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: java21\n"
            "      Handler: a::b\n      CodeUri: src/\n",
            "template.yaml: nothing to port:\n  template.yaml: Resources.Fn.Properties.Runtime: "
            "'java21' is not supported: wasmlet ports python3.x and nodejs18.x or later functions",
        ),
        (
            _function(_event("Sqs")),
            "template.yaml: Resources.Fn.Properties.Events.E.Type: 'Sqs' is not an event type "
            "of AWS SAM",
        ),
        (
            _function(_event(method="fetch")),
            "template.yaml: Resources.Fn.Properties.Events.E.Properties.Method: 'fetch': "
            "expected an HTTP method",
        ),
        (
            _function(_event(path="/a/{rest+}/b")),
            "Events.E.Properties.Path: '/a/{rest+}/b': segment '{rest+}' is not a literal",
        ),
        (
            _function(_event(path="items")),
            "Events.E.Properties.Path: 'items': expected a path starting with /",
        ),
        (
            _function(_event()).replace("app.handler", "missing.handler"),
            "template.yaml: Resources.Fn.Properties.Handler: 'missing.handler': no missing.py "
            "in src/",
        ),
        (
            _function(_event()).replace("app.handler", "handler"),
            "Resources.Fn.Properties.Handler: 'handler' is not module.function",
        ),
        (
            _function(_event()).replace("CodeUri: src/", "CodeUri: nowhere/"),
            "Resources.Fn.Properties.CodeUri: 'nowhere/': no such directory",
        ),
        (
            _function(_event()) + _function(_event(), name="Other"),
            "template.yaml: Resources.Other.Properties.Events.E and "
            "Resources.Fn.Properties.Events.E: both serve GET /x",
        ),
        (
            _function(_event("Schedule").replace("Path: /x", "Schedule: rate(1 day)")),
            "nothing to port:\n  template.yaml: Resources.Fn.Properties.Events.E: Schedule "
            "event: not an HTTP event",
        ),
        (
            _function("      Environment:\n        Variables:\n          X: !Ref Nope\n"),
            "Resources.Fn.Properties.Environment.Variables.X: !Ref Nope: no parameter or "
            "resource of that name",
        ),
        (
            _function(_event() + "      MemorySize: 64\n"),
            "Resources.Fn.Properties.MemorySize: 64: expected a whole number from 128 to 10240",
        ),
        ("  Fn: [1\n", "template.yaml: not valid YAML (line 4, column 1): expected ',' or ']'"),
        # Node.js functions: the handler's file is looked for as Lambda's runtime does
        (
            _function(_event()).replace("python3.12", "nodejs22.x"),
            "template.yaml: Resources.Fn.Properties.Handler: 'app.handler': no app.js, .mjs, "
            ".cjs or .ts in src/",
        ),
        (
            _function(_event()).replace("python3.12", "nodejs22.x").replace("app.handler", "app"),
            "Resources.Fn.Properties.Handler: 'app' is not file.export (e.g. app.handler",
        ),
        (
            _function(_event()).replace("python3.12", "nodejs16.x"),
            "Resources.Fn.Properties.Runtime: 'nodejs16.x' is not supported: Lambda no longer "
            "runs it; wasmlet ports python3.x and nodejs18.x or later functions",
        ),
    ],
)
def test_port_errors_name_file_key_and_value(tmp_path: Path, body: str, message: str) -> None:
    template = _template(tmp_path, body)
    with pytest.raises(PortError) as error:
        port_aws_sam(template)
    assert message in str(error.value)
    assert not (tmp_path / "spin.toml").exists()


def test_python_and_node_functions_on_one_path(tmp_path: Path) -> None:
    """Spin routes by path: functions on one path share a component, of one language."""
    node = _function(_event(method="post"), name="Js").replace("python3.12", "nodejs22.x")
    code = {
        "src/app.py": "def handler(e, c):\n    return 1\n",
        "src/app.mjs": "export const handler = 1;\n",
    }
    template = _template(tmp_path, _function(_event()) + node, code)
    with pytest.raises(PortError) as error:
        port_aws_sam(template)
    assert str(error.value) == (
        "template.yaml: Resources.Fn (python3.12) and Resources.Js (nodejs22.x) serve the "
        "same path (/x): Spin routes by path, so they would share a component, which has "
        "one language; give them different paths"
    )
    template.write_text(
        template.read_text().replace(
            "Path: /x\n            Method: post", "Path: /y\n            Method: post"
        )
    )
    result = port_aws_sam(template)
    assert [(c.id, c.language) for c in result.components] == [("fn", "python"), ("js", "node")]
    spin = (tmp_path / "spin.toml").read_text()
    assert "(it rewrites this file and .wasmlet/lambda/ and .wasmlet/lambda-js/;" in spin
    assert (tmp_path / ".wasmlet/lambda/fn/wasmlet_entry.py").is_file()
    assert (
        'require("../../../src/app.mjs")'
        in (tmp_path / ".wasmlet/lambda-js/js/entry.mjs").read_text()
    )


def test_port_from_the_command_line_and_a_spin_toml_it_did_not_write(tmp_path: Path) -> None:
    _template(tmp_path, _function(_event(method="any")))
    (tmp_path / "spin.toml").write_text("spin_manifest_version = 2\n")
    r = run_cli("port", "aws-sam", cwd=tmp_path)
    assert r.returncode == 1
    assert "exists and was not written by wasmlet port; move it away or pass --force" in r.stderr
    assert r.stderr.startswith("Error: ")
    r = run_cli("port", "aws-sam", "--force", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "fn: ANY /x  <- Fn (app.handler; http-api event)" in r.stdout
    r = run_cli("port", "aws-sam", "nope.yaml", cwd=tmp_path)
    assert r.returncode == 1 and "nope.yaml: no such file" in r.stderr
    r = run_cli("port", "aws-sam", cwd=tmp_path / "src")
    assert r.returncode == 1 and "no template.yaml, template.yml or template.json here" in r.stderr


def test_port_options_auth_parameters_and_urls(tmp_path: Path) -> None:
    props = (
        "      Environment:\n        Variables:\n          STAGE: !Ref Stage\n"
        "          TOPIC: !Sub '${AWS::StackName}-${Stage}-${!Literal}'\n"
        "      FunctionUrlConfig:\n        AuthType: AWS_IAM\n"
        + EVENT.format(
            type="Api",
            props="            Path: /{proxy+}\n            Method: ANY\n"
            "            Auth:\n              ApiKeyRequired: true\n",
        )
    )
    template = _template(tmp_path, _function(props))
    text = template.read_text().replace(
        "Resources:", "Parameters:\n  Stage:\n    Type: String\nResources:"
    )
    template.write_text(text)
    with pytest.raises(PortError, match="!Ref Stage: no parameter or resource"):
        port_aws_sam(template)  # Stage has no Default
    with pytest.raises(PortError, match="nothing to port"):
        port_aws_sam(template, overrides={"Stage": "dev"})  # both routes need auth
    with pytest.raises(PortError, match="no parameter 'Nope'"):
        port_aws_sam(template, overrides={"Nope": "x"})
    result = port_aws_sam(
        template, overrides={"Stage": "dev"}, without_auth=True, region="eu-west-1"
    )
    function = result.project.functions[0]
    topic = f"{result.project.name}-dev-${{Literal}}"
    assert function.environment == {"STAGE": "dev", "TOPIC": topic}
    routes = {(r.route, r.kind, r.strip) for c in result.components for r in c.routes}
    assert routes == {("/...", "rest", False), ("/fn/...", "function-url", True)}
    notes = "\n".join(map(str, result.project.notes))
    assert "the route requires an API key, served WITHOUT it (--without-auth)" in notes
    assert "AuthType AWS_IAM, served WITHOUT it" in notes
    spin = (tmp_path / "spin.toml").read_text()
    assert 'AWS_REGION = "eu-west-1"' in spin


@pytest.mark.parametrize(
    ("template", "workdir", "entry", "route", "handler"),
    [
        (
            "lambda-python",
            "lambda",
            "wasmlet_entry.py",
            'Route("/extra/...", "extra", kind="http-api")',
            "app.py",
        ),
        (
            "lambda-js",
            "lambda-js",
            "entry.mjs",
            '{ route: "/extra/...", function: "extra", kind: "http-api" }',
            "app.mjs",
        ),
    ],
)
def test_add_a_lambda_template_to_an_app(
    tmp_path: Path, template: str, workdir: str, entry: str, route: str, handler: str
) -> None:
    r = run_cli("new", template, "main", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    app = tmp_path / "main"
    r = run_cli("add", template, "extra", cwd=app)
    assert r.returncode == 0, r.stderr
    manifest = tomllib.loads((app / "spin.toml").read_text())
    extra = manifest["component"]["extra"]
    build = app / "extra" / ".wasmlet" / workdir
    assert extra["source"] == f"extra/.wasmlet/{workdir}/extra/app.wasm"
    assert extra["build"]["workdir"] == f"extra/.wasmlet/{workdir}"
    assert extra["environment"]["AWS_LAMBDA_FUNCTION_NAME"] == "extra"
    assert [t["route"] for t in manifest["trigger"]["http"]] == ["/...", "/extra/..."]
    assert route in (build / "extra" / entry).read_text()
    assert (app / "extra" / handler).is_file() and not (app / "extra" / "spin.toml").exists()
    if template == "lambda-python":
        vendored = build / "lib/wasmlet_lambda"
        assert (vendored / "events.py").read_bytes() == (DEPS / "events.py").read_bytes()
    else:
        assert extra["build"]["command"] == "node lib/build.mjs extra ../.."
        # the entry's require reaches the component's handler: .wasmlet/lambda-js/extra/ -> extra/
        assert 'load: () => require("../../../app.mjs")' in (build / "extra" / entry).read_text()
        assert (build / "package-lock.json").is_file()
        assert (build / "lib/wasmlet-lambda/runtime.mjs").is_file()


def test_preload_modules_from_metadata(tmp_path: Path) -> None:
    meta = "    Metadata:\n      Wasmlet:\n        Preload: [csv, email.utils]\n"
    template = _template(tmp_path, _function(_event()) + meta)
    port_aws_sam(template)
    entry = (tmp_path / ".wasmlet/lambda/fn/wasmlet_entry.py").read_text()
    assert 'preload=("csv", "email.utils"),' in entry
    template.write_text(template.read_text().replace("[csv, email.utils]", "[1, 2]"))
    with pytest.raises(PortError, match=r"Wasmlet\.Preload: expected a list of module"):
        port_aws_sam(template)
