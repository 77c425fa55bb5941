"""The Serverless Framework's variables (`${source:address, fallback}`) that can be resolved
without an AWS account or the framework: `self:` (the configuration itself), `env:` (the
porting shell's environment, as at deploy time), `opt:stage`/`opt:region` (the port's
options), `sls:stage`, `aws:region`, `aws:accountId` (wasmlet's fake one), `param:` (the
`params` block), `file(path):address` (YAML and JSON files) and `strToBool(...)`. Others
(`ssm:`, `cf:`, `s3:`, JavaScript files, ...) and variables without a value or fallback are
noted with where they are; the setting that used them is then not set.

Innermost variables first, so that nested ones (`${self:custom.${sls:stage}.table}`) work;
a value that is one variable keeps its type (`memorySize: ${self:custom.memory}` is a
number).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from .cfn import ACCOUNT_ID, PortError

_INNERMOST = re.compile(r"\$\{([^${}]*)\}")
_SOURCES = ("self", "env", "opt", "sls", "aws", "param")  # each a method `_<source>`
_MAX_STEPS = 100
_LITERAL = re.compile(r"""\s*(?:'([^']*)'|"([^"]*)"|(-?\d+(?:\.\d+)?)|(true|false|null))\s*""")
_NEEDS_ACCOUNT = {
    "ssm": "SSM parameters need an AWS account",
    "cf": "CloudFormation outputs need a deployed stack",
    "s3": "S3 objects need an AWS account",
    "aws": "only aws:region and aws:accountId are known without an AWS account",
    "sls": "only sls:stage is known without the framework",
}


class Unresolved(Exception):
    """A variable without a value: its text and why."""

    def __init__(self, variable: str, why: str) -> None:
        super().__init__(f"{variable}: {why}")
        self.variable = variable
        self.why = why


class Variables:
    """Resolves the variables of one configuration."""

    def __init__(
        self, config: dict[str, Any], base: Path, file: str, options: dict[str, str]
    ) -> None:
        self.config = config
        self.base = base
        self.file = file
        self.options = options  # the port's --stage and --region, when given
        # The effective stage and region: the reader sets them once it has resolved them.
        self.stage = options.get("stage", "dev")
        self.region = options.get("region", "us-east-1")
        self._active: set[str] = set()

    def resolve(self, value: Any) -> Any:
        """`value` with its variables resolved (recursively in mappings and lists);
        `Unresolved` for the first one without a value."""
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, str) or "${" not in value:
            return value
        text: Any = value
        for _ in range(_MAX_STEPS):
            match = _INNERMOST.search(text) if isinstance(text, str) else None
            if match is None:
                return text
            found = self._variable(match.group(1).strip(), match.group(0))
            if match.group(0) == text:
                text = found  # one variable: its value, whatever its type
            else:
                shown = found if isinstance(found, str) else json.dumps(found)
                text = text[: match.start()] + shown + text[match.end() :]
        raise PortError(f"{self.file}: {value!r}: variables nested too deep (a loop?)")

    def _variable(self, body: str, whole: str) -> Any:
        primary, *fallbacks = _split(body)
        try:
            return self._source(primary.strip(), whole)
        except Unresolved:
            if not fallbacks:
                raise
        return _literal(fallbacks[0])

    def _source(self, address: str, whole: str) -> Any:
        if address.startswith("file(") and ")" in address:
            return self._file(address, whole)
        if address.startswith("strToBool(") and address.endswith(")"):
            return address[len("strToBool(") : -1].strip().lower() in ("true", "1")
        source, colon, rest = address.partition(":")
        handler = getattr(self, f"_{source}") if colon and source in _SOURCES else None
        if handler is None:
            why = _NEEDS_ACCOUNT.get(source, f"unknown variable source {source!r}")
            raise Unresolved(whole, why if colon else "expected ${source:address}")
        return handler(rest.strip(), whole)

    def _self(self, address: str, whole: str) -> Any:
        if address in self._active:
            raise PortError(f"{self.file}: {whole}: refers to itself")
        found = _lookup(self.config, address)
        if found is None:
            raise Unresolved(whole, f"{self.file} has no {address or '(root)'}")
        self._active.add(address)
        try:
            return self.resolve(found)
        finally:
            self._active.discard(address)

    def _env(self, address: str, whole: str) -> Any:
        if address not in os.environ:
            raise Unresolved(whole, f"{address} is not set in the environment of `wasmlet port`")
        return os.environ[address]

    def _opt(self, address: str, whole: str) -> Any:
        if address not in self.options:
            raise Unresolved(whole, f"no --{address} option given")
        return self.options[address]

    def _sls(self, address: str, whole: str) -> Any:
        if address == "stage":
            return self.stage
        raise Unresolved(whole, _NEEDS_ACCOUNT["sls"])

    def _aws(self, address: str, whole: str) -> Any:
        known = {"region": self.region, "accountId": ACCOUNT_ID}
        if address not in known:
            raise Unresolved(whole, _NEEDS_ACCOUNT["aws"])
        return known[address]

    def _param(self, address: str, whole: str) -> Any:
        params = self.config.get("params") or {}
        for scope in (self.stage, "default"):
            values = params.get(scope) if isinstance(params, dict) else None
            if isinstance(values, dict) and address in values:
                return self.resolve(values[address])
        raise Unresolved(whole, f"no params.{self.stage}.{address} or params.default.{address}")

    def _file(self, address: str, whole: str) -> Any:
        name, _, key = address[len("file(") :].partition(")")
        key = key.removeprefix(":").strip()
        path = (self.base / name.strip().strip("'\"")).resolve()
        if path.suffix not in (".yml", ".yaml", ".json"):
            raise Unresolved(whole, "only YAML and JSON files are read (not code)")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise Unresolved(whole, f"cannot read {name.strip()}: {error.strerror}") from None
        except yaml.YAMLError as error:
            raise PortError(f"{self.file}: {whole}: {name.strip()} is not YAML: {error}") from None
        found = _lookup(data, key) if key else data
        if found is None:
            raise Unresolved(whole, f"{name.strip()} has no {key}")
        return self.resolve(found)


def _split(body: str) -> list[str]:
    """`opt:stage, 'dev'` → the address and its fallbacks (commas in quotes stay)."""
    parts, current, quote = [], "", ""
    for c in body:
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == ",":
            parts.append(current)
            current = ""
            continue
        current += c
    return [*parts, current]


def _literal(text: str) -> Any:
    match = _LITERAL.fullmatch(text)
    if match is None:
        return text.strip()  # an unquoted fallback, or a nested variable's value
    single, double, number, word = match.groups()
    if number is not None:
        return float(number) if "." in number else int(number)
    if word is not None:
        return {"true": True, "false": False, "null": None}[word]
    return single if single is not None else double


def _lookup(data: Any, address: str) -> Any:
    found = data
    for key in address.split(".") if address else []:
        found = found.get(key) if isinstance(found, dict) else None
    return found
