"""The rules a loaded config must meet, as a table: one row per key and rule, checked in order.

Owns what makes a value acceptable once it has its type (configvalues.py gave it that): at
least 1, not negative, one of a few words, within a range, consistent with another key, small
enough for an Excel sheet. `check` refuses the first broken rule with a `ConfigError` that
names the file, the key, the value and the rule, or the command-line flag when the value came
from one. The order of the table is the order in which mistakes are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.api.cardgenius import derived_fields
from pipeline.errors import ConfigError
from pipeline.schema import OUTCOME_FIELDS, RESERVED

if TYPE_CHECKING:  # config.py calls `check`; the rules only read what it built
    from pipeline.config import Config

EXCEL_MAX_COLUMNS = 16_384
RESULTS_SPARE_COLUMNS = 16
"""Results columns kept free below Excel's limit for the columns the workbook adds itself
(when the answer came, whether it was reused, ...), so `top_n` is refused here, at load,
rather than by the merge after every request was paid for."""

_AGE_UNITS = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0}


def parse_age(text: str) -> float:
    """An age like "7d", "36h", "30m", "90s" in seconds; "0" is 0. ValueError if not one."""
    text = text.strip().lower()
    if text == "0":
        return 0.0
    number, unit = text[:-1], text[-1:]
    if unit not in _AGE_UNITS or not number.isdigit():
        raise ValueError(f'{text!r} is not an age like "30d", "12h", "30m" or "0"')
    return int(number) * _AGE_UNITS[unit]


Check = Callable[[Any, "Config"], "str | None"]
"""A rule: the key's value and the whole config -> the rule's words if broken, else None."""


@dataclass(frozen=True)
class Rule:
    key: str
    """The key the rule is about ("table.name"); its value is what `broken` is given."""
    broken: Check
    whole: bool = False
    """True: `broken` words the whole refusal (after the file's name), not only the rule."""


def check(where: str, config: Config, flags: Mapping[str, str]) -> None:
    """Refuse the first rule of `RULES` that `config` breaks. `where`: the file's name (or
    "config"); `flags`: key -> the command-line flag its value came from."""
    for rule in RULES:
        value = value_of(config, rule.key)
        broken = rule.broken(value, config)
        if broken is None:
            continue
        if rule.whole:
            raise ConfigError(f"{where}: {broken}")
        if rule.key in flags:
            raise ConfigError(f"{flags[rule.key]} {value}: {broken}")
        table, _, name = rule.key.partition(".")
        raise ConfigError(f"{where}: [{table}] {name} = {value!r}: {broken}")


def value_of(config: Config, key: str) -> Any:
    """The value of "table.name" in `config`."""
    table, _, name = key.partition(".")
    return getattr(getattr(config, table), name)


# --- rules any key can have


def _at_least(low: int) -> Check:
    return lambda value, _: f"must be at least {low}" if value < low else None


def _at_most(high: int) -> Check:
    return lambda value, _: f"must be at most {high}" if value > high else None


def _not_negative(value: float, _: Config) -> str | None:
    return "must not be negative" if value < 0 else None


def _more_than_0_seconds(value: float, _: Config) -> str | None:
    return "must be more than 0 seconds" if value <= 0 else None


def _between(low: float, high: float, words: str) -> Check:
    return lambda value, _: None if low <= value <= high else f"must be between {words}"


def _one_of(*allowed: str) -> Check:
    words = ", ".join(f'"{a}"' for a in allowed)
    return lambda value, _: None if value in allowed else f"must be one of {words}"


# --- rules of one key


def _within_max_workers(processes: int, c: Config) -> str | None:
    if processes > c.processing.max_workers:
        return f"must not exceed max_workers ({c.processing.max_workers})"
    return None


def _schedule(schedule: str, c: Config) -> str | None:
    if not schedule:
        return None
    # Imported only when there is a schedule: the mock's package (server, catalogue) would
    # otherwise load with every command.
    from pipeline.mockapi.gateway import parse_schedule

    try:
        parse_schedule(schedule)
    except ValueError as exc:
        return str(exc)
    return None if c.mock.rate_limit > 0 else "needs rate_limit > 0 to start from"


def _after_backoff_initial(backoff_max: float, c: Config) -> str | None:
    if backoff_max < c.retry.backoff_initial:
        return f"must be at least backoff_initial ({c.retry.backoff_initial})"
    return None


def _auth(auth: str, _: Config) -> str | None:
    return None if auth in ("none", "partner-token") else 'must be "none" or "partner-token"'


def _url(url: str, c: Config) -> str | None:
    # With the embedded mock the url is not called, so any text will do.
    if c.api.mock or url.startswith(("http://", "https://")):
        return None
    return "must start with http:// or https://"


def _names_a_column(column: str, _: Config) -> str | None:
    return None if column.strip() else "must name a column"


def _not_mapped(column: str, c: Config) -> str | None:
    return "is also mapped in [request]" if column in c.value_columns else None


def _fits_a_sheet(top_n: int, c: Config) -> str | None:
    # id, status, the values, then cards_returned, best_card_savings_gap and per card 6 + one
    # per API field (derived_fields); counted, not built: top_n may be absurdly large.
    width = 2 + len(c.value_columns) + 2 + top_n * (6 + len(c.request))
    if width <= EXCEL_MAX_COLUMNS - RESULTS_SPARE_COLUMNS:
        return None
    return (
        f"gives {width} Results columns, more than an Excel sheet holds "
        f"({EXCEL_MAX_COLUMNS}, less {RESULTS_SPARE_COLUMNS} kept for the workbook's own)"
    )


_OUTCOME_NAMES = [name for name, _ in OUTCOME_FIELDS]


def _not_a_result_name(id_column: str, c: Config) -> str | None:
    """The id column and the mapped columns go into the results beside the pipeline's own
    columns; one named like those (`status`, `top1_card_id`, ...) would be overwritten, so it
    is refused: rename it in the input. Runs after `_fits_a_sheet`, which bounds the derived
    columns it lists."""
    derived = {name for name, _ in derived_fields(list(c.request), c.output.top_n)}
    for name in (id_column, *c.value_columns):
        if name in RESERVED or name in derived:
            key = "[input] id_column" if name == id_column else "[request]"
            return (
                f"{key}: input column {name!r} has the name of a result column; "
                f"rename it in the input file (result columns: {', '.join(_OUTCOME_NAMES)}, "
                "cards_returned, best_card_savings_gap, top<k>_...)"
            )
    return None


def _names_an_address(host: str, _: Config) -> str | None:
    return None if host.strip() else "must name an address, e.g. 127.0.0.1"


def _age(text: str, _: Config) -> str | None:
    try:
        parse_age(text)
    except ValueError as exc:
        return str(exc).partition(" is ")[2]
    return None


def _workbook_name(name: str, _: Config) -> str | None:
    if name.lower().endswith(".xlsx") and "/" not in name:
        return None
    return "must be a file name ending in .xlsx"


_POSITIVE = (
    "processing.max_workers",
    "processing.processes",
    "processing.shard_size",
    "retry.max_attempts",
    "mock.cards",
    "output.top_n",
)
_NOT_NEGATIVE = (
    "api.timeout",
    "api.connect_timeout",
    "processing.rate_limit",
    "retry.backoff_initial",
    "retry.backoff_max",
    "retry.retry_after_max",
    "retry.give_up_after",
    "mock.latency_ms",
    "mock.jitter_ms",
    "mock.rate_limit",
    "notify.stall_after",
)

RULES: tuple[Rule, ...] = (
    *(Rule(key, _at_least(1)) for key in _POSITIVE),
    *(Rule(key, _not_negative) for key in _NOT_NEGATIVE),
    Rule("api.timeout", _more_than_0_seconds),
    Rule("api.connect_timeout", _more_than_0_seconds),
    Rule("processing.processes", _within_max_workers),
    Rule("mock.limit_kind", _one_of("sliding", "fixed", "token-bucket")),
    Rule("mock.retry_after", _one_of("seconds", "date", "none")),
    Rule("mock.limit_headers", _one_of("none", "ietf", "x")),
    Rule("mock.limit_window", _more_than_0_seconds),
    Rule("mock.limit_burst", _not_negative),
    Rule("mock.rate_schedule", _schedule),
    Rule("mock.cards", _at_most(100)),
    Rule("mock.error_rate", _between(0.0, 1.0, "0 and 1")),
    Rule("mock.fail_share", _between(0.0, 1.0, "0 and 1")),
    Rule("retry.backoff_max", _after_backoff_initial),
    Rule("api.auth", _auth),
    Rule("api.url", _url),
    Rule("input.id_column", _names_a_column),
    Rule("input.id_column", _not_mapped),
    Rule("output.top_n", _fits_a_sheet),
    Rule("input.id_column", _not_a_result_name, whole=True),
    Rule("notify.every_percent", _between(0.0, 100.0, "0 and 100")),
    Rule("metrics.port", _between(0, 65535, "0 (off) and 65535")),
    Rule("metrics.host", _names_an_address),
    Rule("cache.max_age", _age),
    Rule("output.excel", _workbook_name),
)
"""Every rule, in the order mistakes are reported."""
