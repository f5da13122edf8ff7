"""Typed, frozen configuration: one dataclass per TOML table, validated once at load time.

`load_config(path, overrides)` reads `config.toml`, applies command-line overrides (keys like
`"processing.max_workers"`), checks every key, and returns a `Config`. Defaults live here and
only here. Errors are `ConfigError`s that name the file, the key, the value and the rule.

Relative paths in the file are taken from the file's folder; relative paths given on the
command line are taken from the working folder.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from pipeline.api.cardgenius import REQUEST_FIELDS, derived_fields
from pipeline.errors import ConfigError
from pipeline.schema import OUTCOME_FIELDS, RESERVED
from pipeline.traffic.windows import Window, parse_windows

EXCEL_MAX_COLUMNS = 16_384
RESULTS_SPARE_COLUMNS = 16
"""Results columns kept free below Excel's limit for the columns the workbook adds itself
(when the answer came, whether it was reused, ...), so `top_n` is refused here, at load,
rather than by the merge after every request was paid for."""

DEFAULT_MAX_AGE = "35d"
"""Users are run again about monthly (a spend table refresh): 35 days lets next month's run,
a few days late included, reuse the unchanged users' answers, while no answer is reused after
more than about one cycle of the partner's offers. After a known change of the card
catalogue, `run --refresh` asks everything again."""
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


@dataclass(frozen=True)
class InputConfig:
    path: Path = Path("data/sample_users.csv")
    """The users: .csv, .parquet or .xlsx."""
    id_column: str = "user_id"
    sheet: str = ""
    """For .xlsx: the sheet to read; "" = the first."""


@dataclass(frozen=True)
class ApiConfig:
    url: str = "http://127.0.0.1:8765/cg/api/pro"
    auth: str = "none"
    """"none" (direct endpoint) or "partner-token" (token from `key_env`)."""
    key_env: str = "CARDGENIUS_API_KEY"
    timeout: float = 30.0
    """Seconds to wait for a response."""
    connect_timeout: float = 5.0
    """Seconds to wait for a connection."""
    ca_bundle: str = ""
    """Path to a CA bundle for a corporate proxy; "" = the system's."""
    mock: bool = False
    """Start the embedded mock API for the run and send every request to it. Off unless
    asked for: a config that names a real `url` must get real answers, never simulated ones
    (the shipped config.toml turns it on for the sample)."""


@dataclass(frozen=True)
class ProcessingConfig:
    max_workers: int = 20
    """Requests in flight at once, all processes together."""
    processes: int = 2
    """Worker processes; each runs about max_workers / processes threads."""
    shard_size: int = 1000
    """Input rows per shard."""
    rate_limit: float = 0.0
    """Requests per second, all processes together; 0 = no client-side limit."""
    adaptive: bool = True
    dedupe_requests: bool = True
    windows: tuple[Window, ...] = ()
    """The partner's hours: daily time ranges with a rate each, in a named time zone
    (traffic/windows.py); outside them rate_limit holds."""


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: int = 4
    """Per row, the first try included."""
    backoff_initial: float = 0.5
    """Seconds before the first retry; doubled each retry, with jitter."""
    backoff_max: float = 60.0
    retry_after_max: float = 300.0
    """Longest Retry-After honoured, in seconds; longer counts as an outage."""
    give_up_after: float = 600.0
    """Seconds of continuous outage before the run stops with exit code 3."""


@dataclass(frozen=True)
class MockConfig:
    latency_ms: float = 150.0
    jitter_ms: float = 50.0
    error_rate: float = 0.0
    """Share of requests answered 500."""
    fail_share: float = 0.0
    """Share of users (told apart by their request body) answered 500 every time."""
    rate_limit: float = 0.0
    """Requests/s above which the mock answers 429 with Retry-After; 0 = none."""
    limit_kind: str = "sliding"
    """How the mock enforces rate_limit: "sliding", "fixed" (windows) or "token-bucket"."""
    limit_window: float = 1.0
    """Seconds: the window of the "sliding" and "fixed" kinds."""
    limit_burst: int = 0
    """Token bucket size in requests; 0 = a quarter second of rate_limit."""
    retry_after: str = "seconds"
    """Retry-After on a 429: "seconds", "date" (HTTP date) or "none"."""
    limit_headers: str = "none"
    """Quota headers on every answer: "none", "ietf" (RateLimit-*) or "x" (X-RateLimit-*)."""
    rate_schedule: str = ""
    """Changes of rate_limit during a run, "SECONDS:RATE,...", from the first request."""
    cards: int = 15
    """Catalogue size, 1 to 100; 100 gives ~1 MB responses."""
    seed: int = 0


@dataclass(frozen=True)
class OutputConfig:
    dir: Path = Path("out")
    excel: str = "results.xlsx"
    """The workbook's file name, inside `dir`."""
    top_n: int = 3
    """Cards per user in the results."""


@dataclass(frozen=True)
class NotifyConfig:
    webhook_env: str = ""
    """Environment variable holding the webhook URL (Slack-compatible); "" = no messages."""
    every_percent: float = 25.0
    """A progress message each time this share of the rows is done; 0 = none."""
    stall_after: float = 30.0
    """Minutes without a finished row (while not paused) before a `stalled` message; 0 = never."""


@dataclass(frozen=True)
class MetricsConfig:
    port: int = 0
    """Serve Prometheus metrics at http://host:port/metrics during a run; 0 = off."""
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class CacheConfig:
    path: str = ""
    """The answer store's folder, shared by every run; "" = the user's cache folder."""
    max_age: str = DEFAULT_MAX_AGE
    """Reuse a stored answer younger than this ("7d", "36h", "30m"); "0" = never reuse."""


@dataclass(frozen=True)
class Config:
    input: InputConfig = field(default_factory=InputConfig)
    request: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """API field -> the input columns whose values are added up to make it."""
    api: ApiConfig = field(default_factory=ApiConfig)
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    mock: MockConfig = field(default_factory=MockConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    source: Path | None = None
    """The file this config came from; None for defaults."""

    @property
    def value_columns(self) -> tuple[str, ...]:
        """The input columns the request mapping reads, each once, in mapping order."""
        seen: dict[str, None] = {}
        for columns in self.request.values():
            seen.update(dict.fromkeys(columns))
        return tuple(seen)

    @property
    def excel_path(self) -> Path:
        return self.output.dir / self.output.excel


_TABLES: dict[str, type] = {
    "input": InputConfig,
    "api": ApiConfig,
    "processing": ProcessingConfig,
    "retry": RetryConfig,
    "mock": MockConfig,
    "output": OutputConfig,
    "notify": NotifyConfig,
    "metrics": MetricsConfig,
    "cache": CacheConfig,
}


def load_config(path: Path, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read `path` (TOML), apply `overrides` ("table.key" -> value), validate, return."""
    text = read_text(path, "config file", "(use --config PATH)")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return build_config(raw, source=path, overrides=overrides)


def read_text(path: Path, what: str, hint: str = "") -> str:
    """The UTF-8 text of `path`, the `what` ("config file"); a ConfigError if it cannot be
    read, with `hint` when it is missing."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found {hint}".rstrip()) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}") from None


def build_config(
    raw: Mapping[str, Any],
    *,
    source: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    where = str(source) if source else "config"
    base = source.parent if source else Path.cwd()
    unknown = set(raw) - set(_TABLES) - {"request"}
    if unknown:
        known = ", ".join(["request", *_TABLES])
        raise ConfigError(f"{where}: unknown table [{sorted(unknown)[0]}] (tables: {known})")
    tables: dict[str, Any] = {}
    for name, cls in _TABLES.items():
        table = raw.get(name, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: [{name}] must be a table")
        tables[name] = _build_table(where, name, cls, table, base)
    request = _build_request(where, raw.get("request"))
    config = Config(request=request, source=source, **tables)
    for key, value in (overrides or {}).items():
        config = _override(config, key, value)
    _check(where, config, {key: _flag(key) for key in overrides or {}})
    return config


def _flag(key: str) -> str:
    """The command-line flag that overrides config `key` ("processing.max_workers" ->
    "--max-workers"); a few flags are named otherwise than their key."""
    name = key.partition(".")[2]
    return {"output.dir": "--out", "input.path": "--input", "processing.rate_limit": "--rate"}.get(
        key, f"--{name.replace('_', '-')}"
    )


def _build_table(where: str, name: str, cls: type, table: Mapping[str, Any], base: Path) -> Any:
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key [{name}] {key} (keys: {', '.join(known)})")
        label = f"{where}: [{name}] {key}"
        if (name, key) == ("processing", "windows"):
            try:
                values[key] = parse_windows(label, value)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            continue
        values[key] = _coerce(label, known[key].default, value)
    for key, spec in known.items():
        path = values.get(key, spec.default)
        if isinstance(path, Path) and not path.is_absolute():
            values[key] = base / path
    return cls(**values)


def _coerce(label: str, default: Any, value: Any) -> Any:
    """Check `value` against the type of the field's default; ints are accepted for floats."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{label} = {value!r}: must be true or false")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{label} = {value!r}: must be a whole number")
    if isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{label} = {value!r}: must be a finite number")
            return float(value)
        raise ConfigError(f"{label} = {value!r}: must be a number")
    if isinstance(default, Path):
        if isinstance(value, str | Path) and str(value):
            return Path(value)
        raise ConfigError(f"{label} = {value!r}: must be a non-empty path")
    if isinstance(value, str):
        return value
    raise ConfigError(f"{label} = {value!r}: must be a string")


def _build_request(where: str, table: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(table, Mapping) or not table:
        raise ConfigError(
            f"{where}: [request] must map at least one API field to an input column, "
            'e.g. amazon_spends = "avg_amazon_gmv"'
        )
    mapping: dict[str, tuple[str, ...]] = {}
    for api_field, columns in table.items():
        label = f"{where}: [request] {api_field}"
        if api_field not in REQUEST_FIELDS:
            raise ConfigError(
                f"{label}: not a CardGenius request field (see docs/cardgenius-api.md)"
            )
        if isinstance(columns, str):
            columns = [columns]
        if (
            not isinstance(columns, list)
            or not columns
            or not all(isinstance(c, str) and c.strip() for c in columns)
        ):
            raise ConfigError(f"{label} = {columns!r}: must be a column name or a list of them")
        names = tuple(c.strip() for c in columns)
        twice = sorted({c for c in names if names.count(c) > 1})
        if twice:
            # The body would add the column twice while Results shows it once.
            raise ConfigError(f"{label}: column {twice[0]!r} is listed twice; list it once")
        mapping[api_field] = names
    return mapping


def _override(config: Config, key: str, value: Any) -> Config:
    table_name, _, name = key.partition(".")
    table = getattr(config, table_name)
    default = getattr(type(table)(), name)
    coerced = _coerce(_flag(key), default, value)
    if isinstance(coerced, Path) and not coerced.is_absolute():
        coerced = Path.cwd() / coerced
    return replace(config, **{table_name: replace(table, **{name: coerced})})


_POSITIVE = {
    "processing.max_workers": 1,
    "processing.processes": 1,
    "processing.shard_size": 1,
    "retry.max_attempts": 1,
    "mock.cards": 1,
    "output.top_n": 1,
}
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


def _check(where: str, c: Config, flags: Mapping[str, str]) -> None:
    """The rules that span one value or several; each message names the key and the rule,
    or the command-line flag when the value came from one (`flags`: key -> flag)."""

    def fail(key: str, rule: str) -> None:
        if key in flags:
            raise ConfigError(f"{flags[key]} {_get(c, key)}: {rule}")
        table, _, name = key.partition(".")
        raise ConfigError(f"{where}: [{table}] {name} = {_get(c, key)!r}: {rule}")

    for key, low in _POSITIVE.items():
        if _get(c, key) < low:
            fail(key, f"must be at least {low}")
    for key in _NOT_NEGATIVE:
        if _get(c, key) < 0:
            fail(key, "must not be negative")
    for key in ("api.timeout", "api.connect_timeout"):
        if _get(c, key) <= 0:
            fail(key, "must be more than 0 seconds")
    if c.processing.processes > c.processing.max_workers:
        fail("processing.processes", f"must not exceed max_workers ({c.processing.max_workers})")
    _check_mock(c.mock, fail)
    if c.mock.cards > 100:
        fail("mock.cards", "must be at most 100")
    for name in ("error_rate", "fail_share"):
        if not 0.0 <= getattr(c.mock, name) <= 1.0:
            fail(f"mock.{name}", "must be between 0 and 1")
    if c.retry.backoff_max < c.retry.backoff_initial:
        fail("retry.backoff_max", f"must be at least backoff_initial ({c.retry.backoff_initial})")
    if c.api.auth not in ("none", "partner-token"):
        fail("api.auth", 'must be "none" or "partner-token"')
    if not c.api.mock and not c.api.url.startswith(("http://", "https://")):
        fail("api.url", "must start with http:// or https://")
    if not c.input.id_column.strip():
        fail("input.id_column", "must name a column")
    if c.input.id_column in c.value_columns:
        fail("input.id_column", "is also mapped in [request]")
    # id, status, the values, then cards_returned, best_card_savings_gap and per card 6 + one
    # per API field (derived_fields); counted, not built: top_n may be absurdly large.
    width = 2 + len(c.value_columns) + 2 + c.output.top_n * (6 + len(c.request))
    if width > EXCEL_MAX_COLUMNS - RESULTS_SPARE_COLUMNS:
        fail(
            "output.top_n",
            f"gives {width} Results columns, more than an Excel sheet holds "
            f"({EXCEL_MAX_COLUMNS}, less {RESULTS_SPARE_COLUMNS} kept for the workbook's own)",
        )
    derived = derived_fields(list(c.request), c.output.top_n)
    _check_names(where, c, {name for name, _ in derived})
    if not 0.0 <= c.notify.every_percent <= 100.0:
        fail("notify.every_percent", "must be between 0 and 100")
    if not 0 <= c.metrics.port <= 65535:
        fail("metrics.port", "must be between 0 (off) and 65535")
    if not c.metrics.host.strip():
        fail("metrics.host", "must name an address, e.g. 127.0.0.1")
    try:
        parse_age(c.cache.max_age)
    except ValueError as exc:
        fail("cache.max_age", str(exc).partition(" is ")[2])
    if not c.output.excel.lower().endswith(".xlsx") or "/" in c.output.excel:
        fail("output.excel", "must be a file name ending in .xlsx")


_OUTCOME_NAMES = [name for name, _ in OUTCOME_FIELDS]


def _check_names(where: str, c: Config, derived: set[str]) -> None:
    """The id column and the mapped columns go into the results beside the pipeline's own
    columns; one named like those (`status`, `top1_card_id`, ...) would be overwritten, so it
    is refused: rename it in the input."""
    for name in (c.input.id_column, *c.value_columns):
        if name in RESERVED or name in derived:
            key = "[input] id_column" if name == c.input.id_column else "[request]"
            raise ConfigError(
                f"{where}: {key}: input column {name!r} has the name of a result column; "
                f"rename it in the input file (result columns: {', '.join(_OUTCOME_NAMES)}, "
                "cards_returned, best_card_savings_gap, top<k>_...)"
            )


_MOCK_CHOICES = {
    "limit_kind": ("sliding", "fixed", "token-bucket"),
    "retry_after": ("seconds", "date", "none"),
    "limit_headers": ("none", "ietf", "x"),
}


def _check_mock(m: MockConfig, fail: Any) -> None:
    for name, allowed in _MOCK_CHOICES.items():
        if getattr(m, name) not in allowed:
            fail(f"mock.{name}", "must be one of " + ", ".join(f'"{a}"' for a in allowed))
    if m.limit_window <= 0:
        fail("mock.limit_window", "must be more than 0 seconds")
    if m.limit_burst < 0:
        fail("mock.limit_burst", "must not be negative")
    if not m.rate_schedule:
        return
    from pipeline.mockapi.gateway import parse_schedule

    try:
        parse_schedule(m.rate_schedule)
    except ValueError as exc:
        fail("mock.rate_schedule", str(exc))
    if m.rate_limit <= 0:
        fail("mock.rate_schedule", "needs rate_limit > 0 to start from")


def _get(config: Config, key: str) -> Any:
    table, _, name = key.partition(".")
    return getattr(getattr(config, table), name)


def cache_dir(config: Config) -> Path:
    """The answer store's folder: `[cache] path` (relative to the config file's folder), or
    the user's cache folder (XDG_CACHE_HOME, else ~/.cache) when it is empty."""
    if config.cache.path:
        path = Path(config.cache.path).expanduser()
        base = config.source.parent if config.source else Path.cwd()
        return path if path.is_absolute() else base / path
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "cardgenius-pipeline"
