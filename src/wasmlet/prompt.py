"""Questions on a terminal, for `wasmlet new` and `wasmlet add` run without all their
arguments. `input()` gives line editing through readline where Python has it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from .errors import WasmletError


def interactive() -> bool:
    """Whether there is a person to ask: stdin and stdout are both terminals."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def ask(
    question: str, default: str | None = None, check: Callable[[str], None] | None = None
) -> str:
    """Ask until the answer passes `check` (which raises `WasmletError` with the reason).

    An empty answer takes `default` when there is one (which may be empty)."""
    shown = f"{question} [{default}]: " if default else f"{question}: "
    while True:
        try:
            answer = input(shown).strip()
        except EOFError:
            print()
            raise WasmletError("no answer (end of input)") from None
        if not answer:
            if default is None:
                print("  please answer")
                continue
            answer = default
        if check is not None:
            try:
                check(answer)
            except WasmletError as e:
                print(f"  {e}")
                continue
        return answer


def choose(question: str, options: Sequence[tuple[str, str]]) -> str:
    """Ask for one of `options` (name, description) by its number or its name."""
    for i, (name, description) in enumerate(options, 1):
        print(f"  {i}) {name:<10} {description}")
    names = [name for name, _ in options]

    def valid(answer: str) -> None:
        if answer not in names and not (answer.isdigit() and 1 <= int(answer) <= len(names)):
            raise WasmletError(f"pick a number from 1 to {len(names)} or a name")

    answer = ask(question, check=valid)
    return names[int(answer) - 1] if answer.isdigit() else answer
