"""How values become worksheet cells: SpreadsheetML `<c>` elements, a whole column at a time.

A column's Arrow type decides its kind: a string is an inline string (`t="inlineStr"`: text,
exactly as it came, never a formula, whatever its first character), a boolean a boolean, an
integer a number, a floating or decimal number a number in the money format (`#,##0.00`), any
other type its text. Null, NaN, infinities and "" are no cell at all: empty is empty.

Text loses only what a workbook cannot hold: characters XML 1.0 cannot carry (C0 controls other
than tab, LF and CR; U+FFFE and U+FFFF; lone surrogates) are removed, and text longer than
Excel's 32,767 characters (UTF-16 units, as Excel counts) is cut and marked; both are counted
in `Changes`. CR is written as `&#13;` so that no XML parser turns it into LF.

Why Arrow kernels: each column of a record batch is turned into cell XML by Arrow's string
kernels in C, with no Python work per cell; only the rare cell that must be cut goes through
Python. `value_cell` is the Python twin for the few cells of the header and the Summary.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

MAX_CELL_CHARS = 32_767  # Excel's limit, in UTF-16 units
TRUNCATED_SUFFIX = "…[truncated]"
MONEY_FORMAT = "#,##0.00"

TEXT, NUMBER, MONEY, BOOL, OTHER = "text", "number", "money", "bool", "other"

# XML 1.0 cannot hold these. Arrow strings are valid UTF-8, so they hold no lone surrogate;
# Python strings (Summary) may.
_ILLEGAL_RE2 = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x{FFFE}\x{FFFF}]"
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("\r", "&#13;"))
_TEXT_OPEN = '" t="inlineStr"><is><t xml:space="preserve">'


@dataclass
class Changes:
    """Cells whose text had to change to fit in a workbook."""

    sanitized: int = 0  # characters XML cannot hold were removed
    truncated: int = 0  # cut to MAX_CELL_CHARS


@dataclass(frozen=True)
class Styles:
    """Cell style indexes (`s="..."`) in the workbook's styles part; 0 is the default."""

    money: int
    header: int


def kind_of(dtype: pa.DataType) -> str:
    """The cell kind of an Arrow type."""
    if pa.types.is_boolean(dtype):
        return BOOL
    if pa.types.is_integer(dtype):
        return NUMBER
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return MONEY
    return TEXT if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) else OTHER


def column_cells(
    values: pa.Array, kind: str, ref: str, rows: pa.Array, styles: Styles, changes: Changes
) -> pa.Array:
    """One `<c>` element per value, null where the cell is empty. `ref` is the column letter,
    `rows` the row numbers as strings."""
    at = f'<c r="{ref}'
    if kind == MONEY:
        return pc.binary_join_element_wise(
            at, rows, f'" s="{styles.money}"><v>', _number_text(values), "</v></c>", ""
        )
    if kind == NUMBER:
        return pc.binary_join_element_wise(at, rows, '"><v>', _number_text(values), "</v></c>", "")
    if kind == BOOL:
        bits = pc.cast(pc.cast(values, pa.int8()), pa.string())
        return pc.binary_join_element_wise(at, rows, '" t="b"><v>', bits, "</v></c>", "")
    if kind == OTHER:
        values = pa.array([None if v is None else str(v) for v in values.to_pylist()], pa.string())
    text = clean_texts(values, changes)
    return pc.binary_join_element_wise(at, rows, _TEXT_OPEN, text, "</t></is></c>", "")


def _number_text(values: pa.Array) -> pa.Array:
    """Numbers as text, shortest round-trip form; NaN and infinities as null (Excel has
    neither)."""
    if pa.types.is_decimal(values.type):
        values = pc.cast(values, pa.float64())
    if pa.types.is_floating(values.type):
        values = pc.if_else(pc.is_finite(values), values, pa.scalar(None, values.type))
    return pc.cast(values, pa.string())


def clean_texts(values: pa.Array, changes: Changes) -> pa.Array:
    """Strings ready for XML text nodes: see the module docstring; "" becomes null."""
    values = pc.cast(values, pa.string())
    values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
    illegal = pc.sum(pc.match_substring_regex(values, _ILLEGAL_RE2)).as_py() or 0
    if illegal:
        values = pc.replace_substring_regex(values, _ILLEGAL_RE2, "")
        changes.sanitized += illegal
    # Only text past half the limit can be over it, even if all of it is surrogate pairs.
    if pc.any(pc.greater(pc.utf8_length(values), MAX_CELL_CHARS // 2)).as_py():
        cut = [None if v is None else _fit(v, changes) for v in values.to_pylist()]
        values = pa.array(cut, pa.string())
    for char, escape in _ESCAPES:
        values = pc.replace_substring(values, char, escape)
    return values


def fit_text(text: str, changes: Changes) -> str:
    """One string as a cell can hold it: characters XML cannot carry removed, cut to Excel's
    limit (not escaped: for openpyxl's cells)."""
    if _ILLEGAL.search(text) is not None:
        text = _ILLEGAL.sub("", text)
        changes.sanitized += 1
    return _fit(text, changes)


def clean_text(text: str, changes: Changes) -> str:
    """One string ready for an XML text node, as `clean_texts` does for a column."""
    text = fit_text(text, changes)
    for char, escape in _ESCAPES:
        text = text.replace(char, escape)
    return text


def _fit(text: str, changes: Changes) -> str:
    """`text` cut to MAX_CELL_CHARS UTF-16 units, ending in TRUNCATED_SUFFIX, if it is longer."""
    if len(text) <= MAX_CELL_CHARS // 2:
        return text
    units = text.encode("utf-16-le", "surrogatepass")
    if len(units) <= 2 * MAX_CELL_CHARS:
        return text
    head = units[: 2 * (MAX_CELL_CHARS - len(TRUNCATED_SUFFIX))]
    changes.truncated += 1
    return head.decode("utf-16-le", "ignore") + TRUNCATED_SUFFIX  # drops a split pair


def value_cell(value: object, ref: str, changes: Changes, style: int = 0) -> str:
    """The `<c>` element of one Python value at `ref` (such as "B7"): a bool, int or finite
    float as such, a string as text, None and "" as "" (no cell), any other value as its text.
    `style` applies to text cells (the header's bold)."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return f'<c r="{ref}" t="b"><v>{value:d}</v></c>'
    if isinstance(value, int):
        return f'<c r="{ref}"><v>{value}</v></c>'
    if isinstance(value, float) and math.isfinite(value):
        return f'<c r="{ref}"><v>{value!r}</v></c>'
    text = clean_text(value if isinstance(value, str) else str(value), changes)
    shown = f' s="{style}"' if style else ""
    return f'<c r="{ref}"{shown} t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'


def display_width(value: object) -> int:
    """Characters `value` takes on screen, roughly (money with thousands separators)."""
    if value is None:
        return 0
    if isinstance(value, float):
        return len(f"{value:,.2f}") if math.isfinite(value) else 0
    return len(str(value))
