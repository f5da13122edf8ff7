"""An answer's cards: money fields read as numbers, net savings, the ranking, and the check
that an answer fits the results.

Pure functions of the decoded JSON. An answer the results cannot hold raises `BadBody`, which
the client turns into a retryable error (api/client.py); cardgenius.py makes the derived
columns from the ranking checked here. The formulas are in docs/cardgenius-api.md.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

EXCEL_MAX = 9.99999999999999e307
"""The largest number an Excel cell holds; a larger one (or inf, NaN) cannot be a result."""
INT64_MAX = 2**63 - 1


class BadBody(ValueError):
    """A 200 answer that cannot be used: not JSON, `success: false`, the wrong shape, or
    numbers the results cannot hold."""


def money(value: Any) -> float | None:
    """A money field as a number: JSON numbers as they are, digit strings parsed
    ("1,000" too); null, "" and anything else unreadable is None. An integer too large for
    a float is inf (`check_answer` refuses it)."""
    kind = type(value)
    if kind is float:  # the common cases first (bool is not int here)
        return value  # type: ignore[no-any-return]
    if kind is int:
        try:
            return float(value)
        except OverflowError:  # a 400-digit integer
            return math.inf
    if kind is str:
        try:  # float() takes what the cleaning below would leave of a string without ","
            return float(value)
        except ValueError:
            pass
    return _other_money(value)


def _other_money(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _int_money(value) if isinstance(value, int) else float(value)
    if isinstance(value, str):
        text = value.replace(",", "").strip()
        try:
            return float(text) if text else None
        except ValueError:
            return None
    return None


def _int_money(value: int) -> float:
    try:
        return float(value)
    except OverflowError:  # a 400-digit integer
        return math.inf


def net_savings(card: Mapping[str, Any]) -> float | None:
    """total_savings_yearly - joining_fees + total_extra_benefits; None when the yearly
    savings are missing (such a card is not ranked). Missing fees and benefits count as 0."""
    yearly = money(card.get("total_savings_yearly"))
    if yearly is None:
        return None
    fees = money(card.get("joining_fees")) or 0.0
    extra = money(card.get("total_extra_benefits")) or 0.0
    return yearly - fees + extra


Ranked = list[tuple[float, Mapping[str, Any]]]
"""Cards with their net savings, highest first (`rank`)."""
_MONEY_FIELDS = ("total_savings_yearly", "joining_fees", "total_extra_benefits")


def rank(cards: Sequence[Mapping[str, Any]]) -> Ranked:
    """Cards with their net savings, highest first; ties keep the API's order."""
    scored = [(net, card) for card in cards if (net := net_savings(card)) is not None]
    scored.sort(key=_NET, reverse=True)  # stable, reversed too: ties keep the API's order
    return scored


_NET = operator.itemgetter(0)


def is_mapping(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """isinstance(value, Mapping), the decoded JSON object first: the ABC's check costs four
    times a type's, some forty times an answer."""
    return type(value) is dict or isinstance(value, Mapping)


def check_answer(cards: Sequence[Mapping[str, Any]], mapped: Sequence[str], top_n: int) -> Ranked:
    """Raise BadBody, naming the card and the field, for an answer the results cannot hold:
    a card without `total_savings_yearly` (null is fine: the card is not ranked), a money
    value or a net saving that is not finite or past Excel's largest number, or a top card
    whose id is missing or past 64 bits, or whose name is missing. Answers like that are a
    fault of the API (retried, then `failed`), never inf or NaN in a workbook.

    Returns the ranking it checked (`rank`), so that `derive` need not rank again: each
    money field is read once a card, here, on every answer."""
    values = []
    for position, card in enumerate(cards, start=1):
        if "total_savings_yearly" not in card:
            raise BadBody(f"card {position} has no total_savings_yearly")
        numbers = (
            money(card["total_savings_yearly"]),
            money(card.get("joining_fees")),
            money(card.get("total_extra_benefits")),
        )
        for value in numbers:
            if value is not None and not -EXCEL_MAX <= value <= EXCEL_MAX:  # inf, NaN too
                for name, each in zip(_MONEY_FIELDS, numbers, strict=True):
                    _check_number(card, position, name, each)  # raises, naming the first
        values.append(numbers)
    ranked = []
    for card, (yearly, fees, extra) in zip(cards, values, strict=True):
        if yearly is not None:  # as `net_savings`: missing fees and benefits count as 0
            net = yearly - (fees or 0.0) + (extra or 0.0)
            if not -EXCEL_MAX <= net <= EXCEL_MAX:
                _check_number(card, 0, "net savings", net)
            ranked.append((net, card))
    ranked.sort(key=_NET, reverse=True)
    if len(ranked) >= 2:
        _check_number(
            ranked[0][1], 0, "savings gap to the second card", ranked[0][0] - ranked[1][0]
        )
    for _, card in ranked[:top_n]:
        raw = card.get("id")
        number = card_id(raw)
        if number is None or not -INT64_MAX - 1 <= number <= INT64_MAX:
            raise BadBody(f"a top card's id is {_shown(raw)}: not a whole number of 64 bits")
        if not isinstance(card.get("card_name"), str):
            raise BadBody(f"card {number} has no card_name")
        breakdown = card.get("spending_breakdown")
        for f in mapped if is_mapping(breakdown) else ():
            item = breakdown.get(f)  # type: ignore[union-attr]
            if type(item) is dict or isinstance(item, Mapping):  # see is_mapping
                _check_number(
                    card, 0, f"spending_breakdown.{f}.savings", money(item.get("savings"))
                )
    return ranked


def _check_number(card: Mapping[str, Any], position: int, name: str, value: float | None) -> None:
    """`value` (of `name`, on the card at 1-based `position`, 0 when not known) must fit."""
    if value is None or -EXCEL_MAX <= value <= EXCEL_MAX:  # False for inf and NaN
        return
    raw = card.get("id")
    short = isinstance(raw, str) and len(raw) <= 20
    short = short or (isinstance(raw, int) and abs(raw) < 10**20)
    which = f"card {raw}" if short else (f"card {position}" if position else "a card")
    raise BadBody(f"{which}: {name} is {value:g}, which a workbook cannot hold")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 30 else text[:27] + "..."


def card_id(value: Any) -> int | None:
    """A card's id as a whole number: an int, or a string of digits; else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
