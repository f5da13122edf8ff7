"""Check input rows and clean their values, a batch at a time, exactly as a run does.

Owns `RowChecker`, which `shard.py` uses to write input shards and `plan/figures.py` to count
them.
Blank rows never get here (readers.py skips them). A row is `invalid` when its id
is empty or repeated, or a value is negative, not a number (text, NaN, infinite), above
`MAX_AMOUNT`, or a formula whose value was never saved (.xlsx); `_invalid` says why: the row
number, then every reason joined by "; " (id first, then the columns in order). A value is
cleaned before parsing: a currency sign (₹, Rs, Rs., INR, $; any case) before or after the
number, thousands commas and any whitespace are removed; an empty cell counts as 0. Checks run
per batch with polars expressions; only the repeated-id check walks the ids in Python.
Row numbers in messages are as a person's editor shows them (the header is row 1, see
readers.LINE); `_row` counts the rows kept, from 0.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from pipeline.inputs.readers import LINE
from pipeline.inputs.xlsx import FORMULA
from pipeline.schema import INVALID, ROW, input_schema

MAX_AMOUNT = 1e12
"""Rupees: a value above it is a mistake (a pasted id, a unit slip), not a user's spend; sent,
it would be a 13-digit-plus number in the body (1e300 would be 301 digits)."""
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
        """The batch (from readers, with LINE) as input-shard rows: `_row` counts on from
        earlier batches."""
        frame = pl.DataFrame(pl.from_arrow(batch))
        name = self.id_column
        ident = frame.select(_id_expr(name, frame.schema[name])).select(
            pl.when(pl.col(name) != FORMULA).then(pl.col(name)).alias(name),
            (pl.col(name) == FORMULA).fill_null(False).alias(_ID_FORMULA),
        )
        ids, lines = ident[name], frame[LINE].alias(_LINE)
        columns = [
            ids,
            pl.Series(_REPEAT, self._repeats(ids, lines), pl.String),
            ident[_ID_FORMULA],
            lines,
        ]
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

    def _repeats(self, ids: pl.Series, lines: pl.Series) -> list[str | None]:
        reasons: list[str | None] = [None] * len(ids)
        seen = self._seen
        for index, (key, line) in enumerate(zip(ids.to_list(), lines.to_list(), strict=True)):
            if key is not None and (first := seen.setdefault(key, line)) != line:
                reasons[index] = f"duplicate {self.id_column} (first at row {first})"
        return reasons

    def _reasons(self, parsed: pl.DataFrame) -> pl.Series:
        """`_invalid` for a parsed batch; the texts are built only for the rows that need one."""
        problem = pl.any_horizontal(
            pl.col(self.id_column).is_null(),
            pl.col(_REPEAT).is_not_null(),
            *(pl.col(_fault_column(name)) != _FINE for name in self.value_columns),
        )
        id_column = self.id_column
        parts = [
            pl.when(pl.col(_ID_FORMULA))
            .then(pl.lit(f"{id_column}: {_FORMULA_TEXT}"))
            .when(pl.col(id_column).is_null())
            .then(pl.lit(f"missing {id_column}")),
            pl.col(_REPEAT),
            *(_reason_expr(name) for name in self.value_columns),
        ]
        reason = pl.concat_str(parts, separator="; ", ignore_nulls=True)
        found = (
            parsed.with_row_index(_INDEX)
            .filter(problem)
            .select(_INDEX, pl.format("row {}: {}", pl.col(_LINE), reason))
        )
        reasons = pl.Series(INVALID, dtype=pl.String).extend_constant(None, parsed.height)
        if found.height:
            reasons = reasons.scatter(found[_INDEX], found.to_series(1))
        return reasons


# Working columns of a batch being checked; the NUL keeps them apart from any input column.
_REPEAT = "\0repeat"
_INDEX = "\0index"
_LINE = "\0line"
_ID_FORMULA = "\0id formula"
_FINE, _NOT_A_NUMBER, _NEGATIVE, _TOO_LARGE, _FORMULA = 0, 1, 2, 3, 4
_FORMULA_TEXT = "a formula without a saved value (open the file in Excel and save it)"


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
        # NaN is not a number, as the text "NaN" is not (a row of only empty cells, which
        # pandas writes as NaN, was skipped as blank by the reader).
        return series.cast(pl.String), series.cast(pl.Float64).fill_null(0.0)
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
        pl.when(pl.col(_text_column(name)) == FORMULA)
        .then(_FORMULA)
        .when(number.is_null() | ~number.is_finite())
        .then(_NOT_A_NUMBER)
        .when(number < 0)
        .then(_NEGATIVE)
        .when(number > MAX_AMOUNT)
        .then(_TOO_LARGE)
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
        .when(fault == _TOO_LARGE)
        .then(pl.format("{}: {} is more than 1,000,000,000,000", pl.lit(name), shown))
        .when(fault == _FORMULA)
        .then(pl.lit(f"{name}: {_FORMULA_TEXT}"))
    )
