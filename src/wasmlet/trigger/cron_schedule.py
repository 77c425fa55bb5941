"""Cron expressions as Spin's cron trigger plugin reads them, iterated with croniter.

The plugin (fermyon/spin-trigger-cron, the synchronous generation) schedules with
tokio-cron-scheduler 0.9.4, which parses with the `cron` crate 0.12: six or seven fields,
seconds first,

    sec  min  hour  day-of-month  month  day-of-week  [year]

or one of `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`; evaluated in UTC. Each field
is a list of `*`, `N`, `A-B`, `*/S`, `N/S` (N to the field's end, every S), `A-B/S`, and `?`
(= `*`) in the two day fields; months and days of the week also take names (`Jan`,
`January`, `Mon-Fri`). Where it differs from the usual (Vixie) cron:

- days of the week are numbered 1-7 from Sunday (1 = Sunday, 7 = Saturday; 0 is invalid);
- a day must match both the day-of-month and the day-of-week fields (Vixie: either).

croniter (Vixie numbering, 0-6 from Sunday) does the iteration: `translate` rewrites an
expression for it (the day-of-week field expanded to croniter's numbers, month names to
numbers, `?` to `*`, shorthands to their fields) after checking it against the grammar above,
so that an expression the plugin would refuse (5 fields, `L`, `W`, `#`, day of week 0, a step
after a name, out-of-range numbers) is refused here too, with the field named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from croniter import CroniterBadDateError, CroniterError, croniter

DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # index + 1 = the plugin's number
DAY_ALIASES = {"tues": "tue", "thurs": "thu"}  # the cron crate's other spellings
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
FULL_DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
FULL_MONTHS = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)  # fmt: skip
SHORTHANDS = {
    "@yearly": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 1",  # 1 = Sunday
    "@daily": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_ITEM = re.compile(
    r"(?P<base>\*|\?|(?P<a>[0-9]+|[A-Za-z]+)(?:-(?P<b>[0-9]+|[A-Za-z]+))?)(?:/(?P<step>[0-9]+))?"
)


class CronError(ValueError):
    """An expression the plugin would not accept (the message says why)."""


@dataclass(frozen=True)
class Field:
    name: str
    low: int
    high: int
    names: dict[str, int] = field(default_factory=dict)  # name -> the plugin's number
    any_ok: bool = False  # takes `?`


FIELDS = (
    Field("second", 0, 59),
    Field("minute", 0, 59),
    Field("hour", 0, 23),
    Field("day-of-month", 1, 31, any_ok=True),
    Field("month", 1, 12, {m: i % 12 + 1 for i, m in enumerate(MONTHS + FULL_MONTHS)}),
    Field(
        "day-of-week",
        1,
        7,
        {
            **{d: i % 7 + 1 for i, d in enumerate(DAYS + FULL_DAYS)},
            **{alias: DAYS.index(d) + 1 for alias, d in DAY_ALIASES.items()},
        },
        any_ok=True,
    ),
    Field("year", 1970, 2099),  # croniter's last year (the cron crate's is 2100)
)
DAY_OF_WEEK = 5
MAX_YEARS = 2099 - 1970  # how far croniter looks for a tick (the year field's span)


def translate(expression: str) -> str:
    """`expression` (the plugin's syntax) as croniter reads it, with `second_at_beginning`
    and `day_or=False`. Raises CronError naming the field and the problem."""
    text = expression.strip()
    if text.startswith("@"):
        if text.lower() not in SHORTHANDS:
            raise CronError(f"unknown shorthand {text!r} (known: {', '.join(SHORTHANDS)})")
        text = SHORTHANDS[text.lower()]
    fields = text.split()
    if len(fields) not in (6, 7):
        raise CronError(
            f"has {len(fields)} fields; it needs 6 or 7, seconds first: "
            "sec min hour day-of-month month day-of-week [year]"
        )
    out = []
    for index, (spec, text_field) in enumerate(zip(FIELDS, fields, strict=False)):
        values = [_item(spec, item) for item in text_field.split(",")]
        if index == DAY_OF_WEEK:
            out.append(_days_for_croniter(values))
        else:
            out.append(",".join(_croniter_item(v) for v in values))
    return " ".join(out)


@dataclass(frozen=True)
class _Item:
    """One item of a field, with names resolved: `*`, N, A-B, each with an optional step."""

    start: int | None  # None: the whole field (`*` or `?`)
    end: int | None  # a range's end (None: N alone, or N/S: to the field's end)
    step: int | None
    spec: Field


def _item(spec: Field, item: str) -> _Item:
    match = _ITEM.fullmatch(item)
    if match is None:
        raise CronError(f"{spec.name} field: {item!r} is not *, N, A-B or one of them /S")
    base, a, b, step = match["base"], match["a"], match["b"], match["step"]
    if base == "?" and not spec.any_ok:
        raise CronError(f"{spec.name} field: ? is only allowed in day-of-month and day-of-week")
    if step is not None:
        if int(step) == 0:
            raise CronError(f"{spec.name} field: {item!r} has a step of 0")
        if a is not None and b is None and not a.isdigit():
            raise CronError(f"{spec.name} field: {item!r}: a step follows *, a number or a range")
    if a is None:
        return _Item(None, None, int(step) if step else None, spec)
    start = _value(spec, a)
    end = _value(spec, b) if b is not None else None
    if end is not None and start > end:
        raise CronError(f"{spec.name} field: range {item!r} ends before it starts")
    return _Item(start, end, int(step) if step else None, spec)


def _value(spec: Field, token: str) -> int:
    if token.isdigit():
        number = int(token)
        if not spec.low <= number <= spec.high:
            hint = ""
            if spec.name == "day-of-week":
                hint = " (1 = Sunday ... 7 = Saturday, as in Spin's cron plugin)"
            raise CronError(
                f"{spec.name} field: {number} is out of range {spec.low}-{spec.high}{hint}"
            )
        return number
    if not spec.names:
        raise CronError(f"{spec.name} field: {token!r} is not a number")
    number_or_none = spec.names.get(token.lower())
    if number_or_none is None:
        raise CronError(f"{spec.name} field: unknown name {token!r}")
    return number_or_none


def _croniter_item(item: _Item) -> str:
    step = f"/{item.step}" if item.step else ""
    if item.start is None:
        return f"*{step}"
    if item.end is None:
        return f"{item.start}{step}"
    return f"{item.start}-{item.end}{step}"


def expand(item: _Item) -> set[int]:
    """The plugin's numbers an item stands for (N/S runs to the field's end, as in the cron
    crate)."""
    spec = item.spec
    if item.start is None:
        first, last = spec.low, spec.high
    elif item.end is None:
        first, last = item.start, spec.high if item.step else item.start
    else:
        first, last = item.start, item.end
    return set(range(first, last + 1, item.step or 1))


def _days_for_croniter(items: list[_Item]) -> str:
    """The day-of-week field in croniter's numbering (0-6 from Sunday), expanded."""
    days: set[int] = set()
    for item in items:
        days |= expand(item)
    if len(days) == 7:
        return "*"
    return ",".join(str(day - 1) for day in sorted(days))


@dataclass(frozen=True)
class Schedule:
    """A parsed expression: its ticks, in Unix seconds (UTC)."""

    expression: str  # as written
    croniter_expression: str

    def next_after(self, timestamp: float) -> int | None:
        """The first tick strictly after `timestamp`, or None if there is none (e.g. a year
        field whose years are past)."""
        try:
            return int(self._iterator(int(timestamp)).get_next())
        except CroniterBadDateError:
            return None

    def latest_at_or_before(self, timestamp: int) -> int | None:
        """The last tick at or before `timestamp`, or None if there is none."""
        try:
            return int(self._iterator(timestamp + 1).get_prev())
        except CroniterBadDateError:
            return None

    def _iterator(self, start: int) -> croniter:
        return croniter(
            self.croniter_expression,
            datetime.fromtimestamp(start, UTC),
            ret_type=float,
            day_or=False,
            second_at_beginning=True,
            max_years_between_matches=MAX_YEARS,
        )


def parse(expression: str, now: float) -> Schedule:
    """The schedule of `expression`; CronError if the plugin would refuse it or if it has no
    tick after `now` (the plugin would silently never run it)."""
    translated = translate(expression)
    try:
        croniter(translated, second_at_beginning=True, day_or=False)
    except CroniterError as e:  # what the checks above let through and croniter refuses
        raise CronError(str(e)) from None
    schedule = Schedule(expression, translated)
    if schedule.next_after(now) is None:
        raise CronError("matches no time from now on")
    return schedule


__all__ = ["CronError", "Schedule", "expand", "parse", "translate"]
