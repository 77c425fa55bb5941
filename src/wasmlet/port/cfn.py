"""CloudFormation templates (AWS SAM's are ones): YAML or JSON with the short-form intrinsic
tags (`!Ref`, `!Sub`, `!GetAtt`, ...), and what of the intrinsics can be resolved without an
AWS account: parameters (their `Default`, or `--parameter-overrides`), pseudo parameters,
`Fn::Sub`, `Fn::Join`, `Fn::Select`, `Fn::FindInMap`. A reference to another resource is
replaced by its logical id (`Ref`) or "" (`Fn::GetAtt`), and noted: wasmlet creates no AWS
resources.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import WasmletError
from .model import Note

ACCOUNT_ID = "000000000000"  # as the adapter's events and context say (no AWS account)
_SUB = re.compile(r"\$\{([^}!][^}]*)\}")


class PortError(WasmletError):
    """A template wasmlet cannot port: names the file, the place in it and the value."""


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's tags: `!Ref X` is `{"Ref": "X"}`, `!GetAtt A.B` is
    `{"Fn::GetAtt": ["A", "B"]}`, any other `!Name` is `{"Fn::Name": ...}`."""


def _intrinsic(loader: _Loader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    key = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    return {key: value}


_Loader.add_multi_constructor("!", _intrinsic)


def load_yaml(path: Path) -> Any:
    """A YAML (or JSON) file with CloudFormation's tags as data; `PortError` naming the file
    and line when it is not one."""
    name = path.name  # as every message names it
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PortError(f"{name}: cannot read the file: {e.strerror or e}") from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise PortError(f"{name}: not valid YAML{where}: {e.problem}") from None
    except yaml.YAMLError as e:
        raise PortError(f"{name}: not valid YAML: {e}") from None


def load_template(path: Path) -> dict[str, Any]:
    """A template file as data; `PortError` naming the file and line when it is not one."""
    data = load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise PortError(
            f"{path.name}: Resources: expected a mapping of resources (is this a template?)"
        )
    return data


def scalar_text(value: object) -> str | None:
    """A YAML scalar as the string CloudFormation passes on (`true`, `3`, `2024-01-01`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float) or hasattr(value, "isoformat"):
        return str(value)
    return None


class Resolver:
    """Resolves intrinsic functions in property values; what it cannot resolve is noted."""

    def __init__(
        self,
        template: Mapping[str, Any],
        file: str,
        *,
        region: str,
        stack_name: str,
        overrides: Mapping[str, str],
        notes: list[Note],
        other_resources: str | None = None,
    ) -> None:
        self.file = file
        # A Ref to a name the template does not declare is an error, unless resources come
        # from elsewhere too (the Serverless Framework's own): then it is noted, as this says.
        self.other_resources = other_resources
        self.resources: Mapping[str, Any] = template.get("Resources") or {}
        self.mappings: Mapping[str, Any] = template.get("Mappings") or {}
        self.notes = notes
        self.params: dict[str, str] = {}
        for name, spec in (template.get("Parameters") or {}).items():
            default = spec.get("Default") if isinstance(spec, dict) else None
            text = scalar_text(default)
            if text is not None:
                self.params[str(name)] = text
        declared = [str(p) for p in template.get("Parameters") or {}]
        unknown = sorted(set(overrides) - set(declared))
        if unknown:
            raise PortError(
                f"{file}: Parameters: no parameter {unknown[0]!r} "
                f"(the template's: {', '.join(declared) or 'none'})"
            )
        self.params.update(overrides)
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{stack_name}/0",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }

    def note(self, where: str, what: str, why: str) -> None:
        self.notes.append(Note(f"{self.file}: {where}", what, why))

    def string(self, value: object, where: str) -> str | None:
        """`value` as a string, intrinsics resolved; None (noted) when it cannot be."""
        text = scalar_text(value)
        if text is not None:
            return text
        if isinstance(value, dict) and len(value) == 1:
            ((name, arg),) = value.items()
            handler = self._intrinsics.get(name)
            if handler is not None:
                return handler(self, arg, where)
            self.note(where, f"{name} is not resolved", "it needs a deployed AWS stack")
            return None
        raise PortError(f"{self.file}: {where}: expected a string, got {_shown(value)}")

    def _ref(self, name: object, where: str) -> str | None:
        name = str(name)
        if name in self.params:
            return self.params[name]
        if name in self.pseudo:
            return self.pseudo[name]
        if name == "AWS::NoValue":
            return None
        if name in self.resources:
            kind = (self.resources[name] or {}).get("Type", "?")
            self.note(
                where,
                f"!Ref {name} ({kind}) is replaced by its logical id {name!r}",
                "wasmlet creates no AWS resources",
            )
            return name
        if self.other_resources is not None:
            self.note(where, f"Ref {name} is replaced by {name!r}", self.other_resources)
            return name
        raise PortError(
            f"{self.file}: {where}: !Ref {name}: no parameter or resource of that name "
            "(a parameter without Default needs --parameter-overrides NAME=VALUE)"
        )

    def _get_att(self, arg: object, where: str) -> str | None:
        target = ".".join(map(str, arg)) if isinstance(arg, list) else str(arg)
        self.note(where, f"!GetAtt {target} is replaced by ''", "wasmlet creates no AWS resources")
        return ""

    def _sub(self, arg: object, where: str) -> str | None:
        if isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], dict):
            text, extra = arg[0], arg[1]
        else:
            text, extra = arg, {}
        if not isinstance(text, str):
            raise PortError(f"{self.file}: {where}: !Sub: expected a string, got {_shown(text)}")
        unresolved = False

        def replace(m: re.Match[str]) -> str:
            nonlocal unresolved
            name = m.group(1).strip()
            if name in extra:
                value = self.string(extra[name], where)
            elif "." in name:
                value = self._get_att(name.split(".", 1), where)
            else:
                value = self._ref(name, where)
            if value is None:
                unresolved = True
                return ""
            return value

        result = _SUB.sub(replace, text).replace("${!", "${")
        return None if unresolved else result

    def _join(self, arg: object, where: str) -> str | None:
        if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list)):
            raise PortError(f"{self.file}: {where}: !Join: expected [delimiter, [values]]")
        parts = [self.string(v, where) for v in arg[1]]
        return None if any(p is None for p in parts) else str(arg[0]).join(map(str, parts))

    def _select(self, arg: object, where: str) -> str | None:
        if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list)):
            raise PortError(f"{self.file}: {where}: !Select: expected [index, [values]]")
        index = self.string(arg[0], where)
        if index is None or not index.isdigit() or int(index) >= len(arg[1]):
            raise PortError(f"{self.file}: {where}: !Select: index {arg[0]!r} is out of range")
        return self.string(arg[1][int(index)], where)

    def _find_in_map(self, arg: object, where: str) -> str | None:
        if not (isinstance(arg, list) and len(arg) == 3):
            raise PortError(f"{self.file}: {where}: !FindInMap: expected [map, key, key]")
        keys = [self.string(k, where) for k in arg]
        if any(k is None for k in keys):
            return None
        found: Any = self.mappings
        for key in keys:
            found = found.get(key) if isinstance(found, dict) else None
        if found is None:
            raise PortError(f"{self.file}: {where}: !FindInMap {keys}: no such entry in Mappings")
        return self.string(found, where)

    _intrinsics: dict[str, Callable[[Resolver, object, str], str | None]] = {
        "Ref": _ref,
        "Fn::GetAtt": _get_att,
        "Fn::Sub": _sub,
        "Fn::Join": _join,
        "Fn::Select": _select,
        "Fn::FindInMap": _find_in_map,
    }


def resolved_strings(
    values: Mapping[Any, object], where: str, resolve: Callable[[object, str], str | None]
) -> dict[str, str]:
    """A mapping's values (environment variables) as strings, by `resolve(value, where.key)`;
    those without a value (noted by `resolve`) left out."""
    out = {}
    for key, value in values.items():
        text = resolve(value, f"{where}.{key}")
        if text is not None:
            out[str(key)] = text
    return out


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
