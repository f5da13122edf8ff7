"""Inputs and configs: the users files (made once, cached), request bodies, pipeline configs.

Users come from scripts/make_sample_data.py (the sample's format); the request mapping is the
shipped config.toml's, so every contender sends the same bodies for the same rows.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.measure import SCRIPTS
from pipeline.api.cardgenius import build_body

ID_COLUMN = "user_id"
MAPPING: dict[str, tuple[str, ...]] = {
    "amazon_spends": ("avg_amazon_gmv",),
    "flipkart_spends": ("avg_flipkart_gmv",),
    "grocery_spends_online": ("avg_grocery_gmv",),
    "other_online_spends": ("avg_myntra_gmv", "avg_ajio_gmv", "avg_confirmed_gmv"),
}


def users_file(data_dir: Path, rows: int, fmt: str = "csv", *, clean: bool = True) -> Path:
    """A users file of `rows` rows (seed 42), made on first use and kept in `data_dir`."""
    path = data_dir / f"users-{rows}-{'clean' if clean else 'messy'}.{fmt}"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp" + path.suffix)
        cmd = [sys.executable, str(SCRIPTS / "make_sample_data.py"), "--rows", str(rows)]
        cmd += ["--out", str(tmp), "--format", fmt, *(["--clean"] if clean else [])]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        tmp.replace(path)
    return path


def body_of(row: Mapping[str, str]) -> dict[str, float]:
    """The request body of a clean CSV row, built as the pipeline builds it."""
    return build_body({f: tuple(float(row[c] or 0) for c in cols) for f, cols in MAPPING.items()})


def read_bodies(path: Path) -> list[dict[str, float]]:
    """Every row's body, read with the csv module (clean CSV files only)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [body_of(row) for row in csv.DictReader(handle)]


def write_config(folder: Path, input_path: Path, url: str, **tables: Mapping[str, Any]) -> Path:
    """A pipeline config in `folder` that calls `url` (no embedded mock); `tables` override."""
    values: dict[str, dict[str, Any]] = {
        "input": {"path": str(input_path), "id_column": ID_COLUMN},
        "request": {k: list(v) if len(v) > 1 else v[0] for k, v in MAPPING.items()},
        "api": {"url": url, "mock": False, "timeout": 30.0},
        # dedupe off: every contender sends one request per row, so the counts compare.
        "processing": {"max_workers": 20, "processes": 2, "dedupe_requests": False},
        "retry": {},
        "output": {"dir": str(folder / "out")},
    }
    for name, extra in tables.items():
        values.setdefault(name, {}).update(extra)
    path = folder / "config.toml"
    path.write_text(config_text(values), encoding="utf-8")
    return path


def config_text(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """TOML for a config of flat tables (the tests write theirs with it too)."""
    lines: list[str] = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)
