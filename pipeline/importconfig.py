"""`pipeline import-config`: the thread-pool script's JSON config turned into a `config.toml`.

The script people used before this pipeline read a JSON file of this shape:

    {"api": {"base_url", "timeout", "sleep_between_requests", "max_retries"},
     "excel": {"input_file", "output_file", "sheet_name"},
     "column_mappings": {"user_id", "amazon_spends", "flipkart_spends", "grocery", "myntra",
                         "ajio", "avg_gmv", ...},
     "processing": {"top_n_cards", "other_online_mode", "skip_empty_rows", "continue_on_error"}}

`convert(raw, ...)` maps every key that has a meaning here to its key in `config.toml` and
lists the ones that do not, with why; `import_config(old, new)` reads the JSON, checks the
result as `pipeline run` would, and writes it atomically, never over an existing file. A value
of the wrong type is a `ConfigError` naming the key. Paths in the JSON are taken from the JSON's
folder (where the script was run from) and written relative to the new file's folder.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import tomllib

from pipeline.api.cardgenius import REQUEST_FIELDS
from pipeline.config import build_config, read_text
from pipeline.errors import ConfigError
from pipeline.state.atomic import atomic_path

SCRIPT_THREADS = 20  # the script's ThreadPoolExecutor(max_workers=20), when the file has none
ENDPOINTS = ("/cg/api/pro", "/cg/api/beta", "/partner/cardgenius/calculate")
# column_mappings names that are not the API's own field names.
SPEND_NAMES = {"grocery": "grocery_spends_online"}
OTHER_ONLINE = ("myntra", "ajio", "avg_gmv")  # added up into other_online_spends
NO_MEANING = {
    "processing.skip_empty_rows": "rows are never skipped silently: a row without an id is "
    "`invalid`, never sent, and listed on the Failures sheet; an empty spend counts as 0",
    "processing.continue_on_error": "a run always goes on past a failed row; "
    "`pipeline rerun-failed` retries the failed rows afterwards",
}


@dataclass
class Converted:
    """The new config's tables, what each old key became, and the keys left out (and why)."""

    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: dict[tuple[str, str], str] = field(default_factory=dict)  # (table, key) -> comment
    mapped: list[tuple[str, str]] = field(default_factory=list)  # old key, "[table] key = value"
    unused: list[tuple[str, str]] = field(default_factory=list)  # old key, why

    def set(self, old: str, table: str, key: str, value: Any, note: str = "") -> None:
        """`[table] key = value`, from the old key `old` ("" for none); `note` says how."""
        self.tables.setdefault(table, {})[key] = value
        self.notes[(table, key)] = note or f"from {old}"
        if old:
            self.mapped.append((old, f"[{table}] {key} = {toml_value(value)}"))


def import_config(old: Path, new: Path) -> Converted:
    """Read the script's JSON `old`, write `new` (TOML); refuse if `new` exists."""
    if new.exists():
        raise ConfigError(f"{new} exists; give another file with -o, or move it away first")
    text = read_text(old, "the script's config")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{old}: not valid JSON: {exc}") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{old}: must hold a JSON object")
    converted = convert(raw, old.resolve().parent, new.resolve().parent, where=str(old))
    toml = render(converted, old)
    build_config(_reparse(toml), source=new)  # what `pipeline run` will check, checked now
    with atomic_path(new) as tmp:
        tmp.write_text(toml, encoding="utf-8")
    return converted


def convert(raw: Mapping[str, Any], old_dir: Path, new_dir: Path, *, where: str) -> Converted:
    """The config of `raw` (the script's JSON); paths are moved from `old_dir` to `new_dir`."""
    out = Converted()
    read = _Reader(raw, where)
    _api(read, out)
    _excel(read, out, old_dir, new_dir)
    _columns(read, out)
    if (top_n := read.get("processing.top_n_cards", int)) is not None:
        out.set("processing.top_n_cards", "output", "top_n", top_n)
    for key, why in NO_MEANING.items():
        if read.has(key):
            out.unused.append((key, why))
    out.unused += [(key, "not a key of the script's config; ignored") for key in read.unasked()]
    return out


def _api(read: _Reader, out: Converted) -> None:
    url = read.get("api.base_url", str)
    if url is not None:
        if not url.startswith(("http://", "https://")):
            read.fail("api.base_url", url, "must start with http:// or https://")
        if not url.rstrip("/").endswith(ENDPOINTS):
            url = url.rstrip("/") + ENDPOINTS[0]  # the script's base plus the direct endpoint
        out.set("api.base_url", "api", "url", url)
    out.set("", "api", "auth", "none", "the direct endpoint, as the script called it")
    out.set("", "api", "mock", False, "the real API; `run --mock` tries the embedded one")
    if (timeout := read.get("api.timeout", float)) is not None:
        out.set("api.timeout", "api", "timeout", timeout)
    threads = read.get("processing.max_workers", int)
    if threads:
        out.set("processing.max_workers", "processing", "max_workers", threads)
    else:
        threads = SCRIPT_THREADS
        out.set("", "processing", "max_workers", threads, "the script's 20 threads")
    out.set("", "processing", "processes", min(2, threads), "worker processes sharing them")
    sleep = read.get("api.sleep_between_requests", float)
    if sleep is not None:
        # Each of the script's threads waited `sleep` s between requests: at most threads/sleep
        # requests a second in all, which is what the shared limit holds here.
        rate = round(threads / sleep, 3) if sleep > 0 else 0.0
        how = f"{threads} threads / {sleep:g} s" if sleep > 0 else "no pause: no limit"
        out.set("api.sleep_between_requests", "processing", "rate_limit", rate, f"{how}")
    if (retries := read.get("api.max_retries", int)) is not None:
        note = f"from api.max_retries: {retries} retries + the first try"
        out.set("api.max_retries", "retry", "max_attempts", retries + 1, note)


def _excel(read: _Reader, out: Converted, old_dir: Path, new_dir: Path) -> None:
    source = read.get("excel.input_file", str)
    if source is not None:
        out.set("excel.input_file", "input", "path", _moved(source, old_dir, new_dir))
    sheet = read.get("excel.sheet_name", object)
    if isinstance(sheet, str) and sheet:
        out.set("excel.sheet_name", "input", "sheet", sheet)
    elif sheet == 0 and not isinstance(sheet, bool):
        out.set("excel.sheet_name", "input", "sheet", "", "from excel.sheet_name 0: the first")
    elif sheet is not None:
        read.fail("excel.sheet_name", sheet, "only 0 (the first sheet) or a sheet's name maps")
    target = read.get("excel.output_file", str)
    if target is not None:
        path = Path(target)
        if path.suffix.lower() != ".xlsx":
            read.fail("excel.output_file", target, "must be an .xlsx file")
        folder = _moved(str(path.parent), old_dir, new_dir) if path.parent != Path() else "out"
        out.set("excel.output_file", "output", "dir", folder)
        out.set("excel.output_file", "output", "excel", path.name)


def _columns(read: _Reader, out: Converted) -> None:
    mappings = read.get("column_mappings", dict) or {}
    mode = read.get("processing.other_online_mode", str) or "sum_components"
    if mode != "sum_components":
        read.fail(
            "processing.other_online_mode",
            mode,
            'only "sum_components" is known; map other_online_spends in [request] by hand',
        )
    other: list[str] = []
    for name, column in mappings.items():
        key = f"column_mappings.{name}"
        if not isinstance(column, str) or not column.strip():
            read.fail(key, column, "must be an input column's name")
        if name == "user_id":
            out.set(key, "input", "id_column", column)
        elif name in OTHER_ONLINE:
            other.append(column)
        elif name in SPEND_NAMES or name in REQUEST_FIELDS:
            out.set(key, "request", SPEND_NAMES.get(name, name), column)
        else:
            known = "user_id, grocery, myntra, ajio, avg_gmv or a CardGenius request field"
            read.fail(key, column, f"{name!r} is not one of {known}")
    if other:
        names = " + ".join(n for n in OTHER_ONLINE if n in mappings)
        note = f"{names}, added up (other_online_mode = {mode})"
        out.set(f"column_mappings.{names}", "request", "other_online_spends", other, note)
    if not out.tables.get("request"):
        read.fail("column_mappings", mappings, "maps no spend column to the API")


class _Reader:
    """Dotted keys of the JSON, typed; remembers which were asked for."""

    def __init__(self, raw: Mapping[str, Any], where: str) -> None:
        self._raw, self._where = raw, where
        self._asked: set[str] = set()

    def has(self, key: str) -> bool:
        self._asked.add(key)
        return self._find(key) is not _MISSING

    def get(self, key: str, kind: type) -> Any:
        """The value at `key` as `kind` (int, float, str, dict or object); None when absent."""
        self._asked.add(key)
        value = self._find(key)
        if value is _MISSING or value is None or kind is object:
            return None if value is _MISSING else value
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if kind is float:
            if not number or not math.isfinite(value) or value < 0:
                self.fail(key, value, "must be a number, 0 or more")
            return float(value)
        if kind is int:
            if not number or not isinstance(value, int) or value < 0:
                self.fail(key, value, "must be a whole number, 0 or more")
            return value
        if not isinstance(value, kind):
            self.fail(key, value, "must be a text" if kind is str else "must be an object")
        return value

    def fail(self, key: str, value: object, rule: str) -> NoReturn:
        raise ConfigError(f"{self._where}: {key} = {json.dumps(value)}: {rule}")

    def unasked(self) -> list[str]:
        """The keys of the file (two levels deep) that no one asked for."""
        keys = []
        for table, values in self._raw.items():
            if table in self._asked:
                continue
            inner = list(values) if isinstance(values, Mapping) and values else [None]
            keys += [str(table) if k is None else f"{table}.{k}" for k in inner]
        return [key for key in keys if key not in self._asked]

    def _find(self, key: str) -> Any:
        value: Any = self._raw
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return _MISSING
            value = value[part]
        return value


_MISSING = object()


def _moved(path: str, old_dir: Path, new_dir: Path) -> str:
    """`path` (relative to `old_dir`) relative to `new_dir`, or absolute if it cannot be."""
    absolute = Path(path) if Path(path).is_absolute() else old_dir / path
    try:
        return Path(os.path.relpath(absolute, new_dir)).as_posix()
    except ValueError:  # another drive (Windows)
        return absolute.as_posix()


def render(converted: Converted, old: Path) -> str:
    """The TOML text: a header, then each table, each key with the old key it came from."""
    lines = [
        f"# Made by `pipeline import-config` from {old.name}. Every key is documented in",
        "# README.md; paths are relative to this file. Keys not set here take their defaults.",
    ]
    for table in ("input", "request", "api", "processing", "retry", "output"):
        values = converted.tables.get(table)
        if not values:
            continue
        lines += ["", f"[{table}]"]
        for key, value in values.items():
            line = f"{key} = {toml_value(value)}"
            lines.append(f"{line:<40} # {converted.notes[(table, key)]}")
    return "\n".join(lines) + "\n"


def report(converted: Converted, old: Path, new: Path) -> str:
    """What `import-config` prints: what became what, what was left out, what to run next."""
    lines = [f"Wrote {new} from {old}:"]
    width = max((len(k) for k, _ in converted.mapped), default=0)
    lines += [f"  {old_key:<{width}}  ->  {new_key}" for old_key, new_key in converted.mapped]
    if converted.unused:
        lines.append("Left out, no meaning here:")
        lines += [f"  {key}: {why}" for key, why in converted.unused]
    command = f"pipeline run --config {shlex.quote(str(new))}"
    lines += [
        "Next, a trial on the first 100 users, then the whole run:",
        f"  {command} --limit 100 --out trial",
        f"  {command}",
    ]
    return "\n".join(lines)


def toml_value(value: Any) -> str:
    """`value` (text, number, bool or list of texts) as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    # JSON's string escapes are TOML's; DEL is the one TOML also wants escaped.
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def _reparse(text: str) -> dict[str, Any]:
    return tomllib.loads(text)
