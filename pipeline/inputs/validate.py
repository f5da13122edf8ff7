"""Check input rows and clean their values, a batch at a time, exactly as a run does.

Owns `RowChecker`, which `shard.py` uses to write input shards and `plan/figures.py` to count them.
A row is `invalid` when its id is empty or repeated, or a value is negative or not a number;
`_invalid` says why, every reason joined by "; " (id first, then the columns in order). A value
is cleaned before parsing: a currency sign (₹, Rs, Rs., INR, $; any case) before or after the
number, thousands commas and any whitespace are removed; an empty cell counts as 0. Checks run per
batch with polars expressions; only the repeated-id check walks the ids in Python.
Row numbers in messages are 1-based data rows; `_row` is 0-based.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from pipeline.schema import INVALID, ROW, input_schema

_MAX_TEXT = 40  # characters of a bad value quoted in a reason
# Cleaning a value that does not parse as it is: whitespace (\s covers NBSP and thin spaces,
# plus zero-width spaces and BOMs from copy-pasting) goes, then a currency sign before the
# number (after any minus) or after it, and the Indian "/-" ("Rs. 500/-"); then commas, but
# only where they group thousands (1,250.50, 1,00,000), so that "1,5" is not read as 15.
_SPACES = r"[\s\u200b\ufeff]"
_CURRENCY = r"(?:₹|rs\.?|inr|\$)"
_LEADING_CURRENCY = rf"(?i)^([-+]?){_CURRENCY}"
_TRAILING_CURRENCY = rf"(?i){_CURRENCY}?(?:/-)?$"
_GROUPED = r"^[-+]?(?:\d{1,3}(?:,\d{3})*|\d{1,2}(?:,\d{2})*,\d{3})(?:\.\d*)?$"


class RowChecker:
    """Checks batches in input order; remembers every id seen to find repeats across the file.

    Memory: `_seen` holds a str and an int per id: ~120 MB per million ids like "CG0000001"
    (measured with tracemalloc: 121 MB), so 2,000,000 users cost ~240 MB on top of a batch.
    """

    def __init__(self, id_column: str, value_columns: list[str]) -> None:
        self.id_column = id_column
        self.value_columns = value_columns
        self.schema = input_schema(id_column, value_columns)
        self.rows = 0
        self.invalid = 0
        self._seen: dict[str, int] = {}

    def check(self, batch: pa.Table) -> pa.Table:
        """The batch as input-shard rows: `_row` counts on from earlier batches."""
        frame = pl.DataFrame(pl.from_arrow(batch))
        ids = frame.select(_id_expr(self.id_column, frame.schema[self.id_column])).to_series()
        columns = [ids, pl.Series(_REPEAT, self._repeats(ids), pl.String)]
        for name in self.value_columns:
            text, number = _parse(frame[name])
            columns += [number.alias(name), text.alias(_text_column(name))]
        parsed = pl.DataFrame(columns).with_columns(
            pl.int_range(self.rows, self.rows + pl.len(), dtype=pl.Int64).alias(ROW),
            *(_fault_expr(name) for name in self.value_columns),
        )
        values = [
            pl.when(pl.col(_fault_column(name)) == _FINE).then(pl.col(name).abs()).alias(name)
            for name in self.value_columns  # abs() turns -0.0 into 0.0
        ]
        table = parsed.select(ROW, self.id_column, *values).with_columns(self._reasons(parsed))
        table = table.to_arrow().cast(self.schema)
        self.rows += table.num_rows
        self.invalid += table.num_rows - table.column(INVALID).null_count
        return table

    def _repeats(self, ids: pl.Series) -> list[str | None]:
        reasons: list[str | None] = [None] * len(ids)
        seen = self._seen
        for offset, key in enumerate(ids.to_list(), start=self.rows):
            if key is not None and (first := seen.setdefault(key, offset)) != offset:
                reasons[offset - self.rows] = (
                    f"duplicate {self.id_column} (first at row {first + 1})"
                )
        return reasons

    def _reasons(self, parsed: pl.DataFrame) -> pl.Series:
        """`_invalid` for a parsed batch; the texts are built only for the rows that need one."""
        problem = pl.any_horizontal(
            pl.col(self.id_column).is_null(),
            pl.col(_REPEAT).is_not_null(),
            *(pl.col(_fault_column(name)) != _FINE for name in self.value_columns),
        )
        parts = [
            pl.when(pl.col(self.id_column).is_null()).then(pl.lit(f"missing {self.id_column}")),
            pl.col(_REPEAT),
            *(_reason_expr(name) for name in self.value_columns),
        ]
        found = (
            parsed.with_row_index(_INDEX)
            .filter(problem)
            .select(_INDEX, pl.concat_str(parts, separator="; ", ignore_nulls=True))
        )
        reasons = pl.Series(INVALID, dtype=pl.String).extend_constant(None, parsed.height)
        if found.height:
            reasons = reasons.scatter(found[_INDEX], found.to_series(1))
        return reasons


# Working columns of a batch being checked; the NUL keeps them apart from any input column.
_REPEAT = "\0repeat"
_INDEX = "\0index"
_FINE, _NOT_A_NUMBER, _NEGATIVE = 0, 1, 2


def _text_column(name: str) -> str:
    return f"\0text:{name}"


def _fault_column(name: str) -> str:
    return f"\0fault:{name}"


def _id_expr(name: str, dtype: pl.DataType) -> pl.Expr:
    """The id as stripped text; a whole number from Parquet (1234.0) becomes "1234"."""
    col = pl.col(name)
    if dtype.is_decimal():
        col = col.cast(pl.Float64)
    if dtype.is_float() or dtype.is_decimal():
        whole = (col == col.floor()) & (col.abs() < 2.0**63)
        col = (
            pl.when(col.is_nan())
            .then(None)
            .when(whole)
            .then(col.cast(pl.Int64).cast(pl.String))
            .otherwise(col.cast(pl.String))
        )
    text = col.cast(pl.String).str.strip_chars()
    return pl.when(text != "").then(text).alias(name)


def _parse(series: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(text, number) of one value column: 0.0 for an empty cell, null when it is no number."""
    if series.dtype.is_numeric():
        number = series.cast(pl.Float64).fill_nan(None)  # NaN: how pandas writes an empty cell
        return series.cast(pl.String), number.fill_null(0.0)
    text = series.cast(pl.String).str.strip_chars()
    number = text.cast(pl.Float64, strict=False)
    empty = (text.is_null() | (text == "")).fill_null(True)
    # Most cells are plain numbers; only the others go through the (slower) cleaning regexes.
    # Cleaning only removes characters that a parsable number cannot hold, so this is exact.
    retry = number.is_null() & ~empty
    if retry.any():
        rows = retry.arg_true()
        number = number.scatter(rows, _clean_number(text.gather(rows)))
    if empty.any():
        number = number.scatter(empty.arg_true(), 0.0)
    return text, number


def _clean_number(text: pl.Series) -> pl.Series:
    """Parse values the plain cast refused, after cleaning (see `_SPACES`); null if still bad."""
    cleaned = (
        text.str.replace_all(_SPACES, "")
        .str.replace(_LEADING_CURRENCY, "${1}")
        .str.replace(_TRAILING_CURRENCY, "")
    )
    t = pl.col("t")
    grouped = ~t.str.contains(",", literal=True) | t.str.contains(_GROUPED)
    number = t.str.replace_all(",", "", literal=True).cast(pl.Float64, strict=False)
    return pl.DataFrame({"t": cleaned}).select(pl.when(grouped).then(number)).to_series()


def _fault_expr(name: str) -> pl.Expr:
    number = pl.col(name)
    return (
        pl.when(number.is_null() | ~number.is_finite())
        .then(_NOT_A_NUMBER)
        .when(number < 0)
        .then(_NEGATIVE)
        .otherwise(_FINE)
        .cast(pl.Int8)
        .alias(_fault_column(name))
    )


def _reason_expr(name: str) -> pl.Expr:
    fault, shown = pl.col(_fault_column(name)), pl.col(_text_column(name)).str.slice(0, _MAX_TEXT)
    return (
        pl.when(fault == _NOT_A_NUMBER)
        .then(pl.format("{}: '{}' is not a number", pl.lit(name), shown))
        .when(fault == _NEGATIVE)
        .then(pl.format("{}: {} is negative", pl.lit(name), shown))
    )
