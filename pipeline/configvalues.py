"""Each value of `config.toml` and of a command-line flag, turned into its field's type.

Owns the step between the TOML text and the rules (configrules.py): unknown keys are refused,
each value must have the type of its field's default (ints are taken for floats, a path must
not be empty), relative paths are resolved, `[processing] windows` and the `[request]`
mapping are parsed. A wrong value is a `ConfigError` naming the file, the table, the key and
the value, or the flag when it came from one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.api.cardgenius import REQUEST_FIELDS
from pipeline.errors import ConfigError
from pipeline.traffic.windows import parse_windows

if TYPE_CHECKING:  # config.py calls these to build the Config they return
    from pipeline.config import Config


def flag(key: str) -> str:
    """The command-line flag that overrides config `key` ("processing.max_workers" ->
    "--max-workers"); a few flags are named otherwise than their key."""
    name = key.partition(".")[2]
    return {"output.dir": "--out", "input.path": "--input", "processing.rate_limit": "--rate"}.get(
        key, f"--{name.replace('_', '-')}"
    )


def build_table(where: str, name: str, cls: type, table: Mapping[str, Any], base: Path) -> Any:
    """The dataclass `cls` of the table `[name]`, from its TOML values; relative paths are
    taken from `base`, the config file's folder."""
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
        values[key] = coerce(label, known[key].default, value)
    for key, spec in known.items():
        path = values.get(key, spec.default)
        if isinstance(path, Path) and not path.is_absolute():
            values[key] = base / path
    return cls(**values)


def coerce(label: str, default: Any, value: Any) -> Any:
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


def build_request(where: str, table: Any) -> dict[str, tuple[str, ...]]:
    """The `[request]` table: API field -> the input columns added up to make it."""
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


def override(config: Config, key: str, value: Any) -> Config:
    """`config` with "table.name" set to a flag's `value`; a relative path is taken from the
    working folder (where the command was typed), not the config file's."""
    table_name, _, name = key.partition(".")
    table = getattr(config, table_name)
    default = getattr(type(table)(), name)
    coerced = coerce(flag(key), default, value)
    if isinstance(coerced, Path) and not coerced.is_absolute():
        coerced = Path.cwd() / coerced
    return replace(config, **{table_name: replace(table, **{name: coerced})})
