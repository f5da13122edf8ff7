"""Typed, frozen configuration: one dataclass per TOML table, validated once at load time.

`load_config(path, overrides)` reads `config.toml`, applies command-line overrides (keys like
`"processing.max_workers"`), checks every key, and returns a `Config`. Defaults live here and
only here. Errors are `ConfigError`s that name the file, the key, the value and the rule.

This module owns the tables, their fields and defaults, and the order of loading; each value
gets its type in configvalues.py, and the rules the values must meet are in configrules.py.

Relative paths in the file are taken from the file's folder; relative paths given on the
command line are taken from the working folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from pipeline import configrules, configvalues
from pipeline.errors import ConfigError
from pipeline.traffic.windows import Window

DEFAULT_MAX_AGE = "35d"
"""Users are run again about monthly (a spend table refresh): 35 days lets next month's run,
a few days late included, reuse the unchanged users' answers, while no answer is reused after
more than about one cycle of the partner's offers. After a known change of the card
catalogue, `run --refresh` asks everything again."""


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
    """The `Config` of a parsed TOML document `raw` (from `source`, None: built in code),
    with `overrides` ("table.key" -> a flag's value) applied before the rules are checked."""
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
        tables[name] = configvalues.build_table(where, name, cls, table, base)
    request = configvalues.build_request(where, raw.get("request"))
    config = Config(request=request, source=source, **tables)
    for key, value in (overrides or {}).items():
        config = configvalues.override(config, key, value)
    configrules.check(where, config, {key: configvalues.flag(key) for key in overrides or {}})
    return config


def cache_dir(config: Config) -> Path:
    """The answer store's folder: `[cache] path` (relative to the config file's folder), or
    the user's cache folder (XDG_CACHE_HOME, else ~/.cache) when it is empty."""
    if config.cache.path:
        path = Path(config.cache.path).expanduser()
        base = config.source.parent if config.source else Path.cwd()
        return path if path.is_absolute() else base / path
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "cardgenius-pipeline"
