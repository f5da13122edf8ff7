"""The CardGenius API's shape: request fields, response checks, ranking and derived columns.

Pure functions of plain data; no HTTP here (that is `client.py`). A response is untrusted
input: anything unusable raises `BadBody`, which the client turns into a retryable error.
The protocol as the pipeline uses it is described in docs/cardgenius-api.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

import pyarrow as pa

MONTHLY_FIELDS = (
    "amazon_spends",
    "flipkart_spends",
    "grocery_spends_online",
    "online_food_ordering",
    "other_online_spends",
    "other_offline_spends",
    "dining_or_going_out",
    "fuel",
    "school_fees",
    "rent",
    "mobile_phone_bills",
    "electricity_bills",
    "water_bills",
    "ott_channels",
    "all_pharmacy",
)
ANNUAL_FIELDS = (
    "hotels_annual",
    "flights_annual",
    "insurance_health_annual",
    "insurance_car_or_bike_annual",
    "large_electronics_purchase_like_mobile_tv_etc",
)
QUARTERLY_FIELDS = ("domestic_lounge_usage_quarterly", "international_lounge_usage_quarterly")
REQUEST_FIELDS = frozenset(MONTHLY_FIELDS + ANNUAL_FIELDS + QUARTERLY_FIELDS)


EXCEL_MAX = 9.99999999999999e307
"""The largest number an Excel cell holds; a larger one (or inf, NaN) cannot be a result."""
INT64_MAX = 2**63 - 1


class BadBody(ValueError):
    """A 200 answer that cannot be used: not JSON, `success: false`, the wrong shape, or
    numbers the results cannot hold."""


def build_body(values: Mapping[str, tuple[float, ...]]) -> dict[str, float]:
    """The request body: each API field the sum of its input values (already validated)."""
    body: dict[str, float] = {}
    for api_field, parts in values.items():
        total = sum(parts)
        # Whole rupees go out as ints, so the body reads as a person would write it.
        body[api_field] = int(total) if float(total).is_integer() else round(total, 2)
    return body


def body_bytes(body: Mapping[str, float]) -> bytes:
    """The exact bytes sent for a body: compact JSON, keys sorted, so that the same body is the
    same bytes whatever the order of the `[request]` mapping."""
    return _BODY_JSON.encode(body).encode()


_BODY_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True)
"""One encoder for every body (`json.dumps` with options makes one per call)."""


def body_key(data: bytes) -> int:
    """A body's identity: its bytes (`body_bytes`) hashed with BLAKE2b to 128 bits. Dedupe,
    the answer stores and `plan` all key on it; it depends on nothing but the bytes, so it
    stays the same across library upgrades and machines (at 10^8 bodies, the odds of two
    sharing a key are about 10^-23)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=16).digest(), "big")


def key_text(key: int) -> str:
    """A body key as 32 hex digits, as the stores hold it."""
    return f"{key:032x}"


def cards_of(payload: Any, *, wrapped: bool) -> list[Mapping[str, Any]]:
    """The `savings` list of a decoded 200 answer; `wrapped` for the partner gateway's
    `{"status": "success", "data": {...}}` envelope."""
    if wrapped:
        if not isinstance(payload, Mapping) or payload.get("status") != "success":
            raise BadBody(_message(payload, "partner answer without status 'success'"))
        payload = payload.get("data")
    if not isinstance(payload, Mapping):
        raise BadBody("answer is not a JSON object")
    if payload.get("success") is not True:
        raise BadBody(_message(payload, "answer without success: true"))
    savings = payload.get("savings")
    # type() first: JSON objects decode to dicts, and an ABC isinstance per card is slower.
    if not isinstance(savings, list) or not all(
        type(c) is dict or isinstance(c, Mapping) for c in savings
    ):
        raise BadBody("answer has no 'savings' list of cards")
    return savings


def _message(payload: Any, fallback: str) -> str:
    if isinstance(payload, Mapping) and isinstance(payload.get("message"), str):
        return f"{fallback}: {payload['message'][:200]}"
    return fallback


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


def _is_mapping(value: Any) -> TypeGuard[Mapping[str, Any]]:
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
        card_id = _card_id(raw)
        if card_id is None or not -INT64_MAX - 1 <= card_id <= INT64_MAX:
            raise BadBody(f"a top card's id is {_shown(raw)}: not a whole number of 64 bits")
        if not isinstance(card.get("card_name"), str):
            raise BadBody(f"card {card_id} has no card_name")
        breakdown = card.get("spending_breakdown")
        for f in mapped if _is_mapping(breakdown) else ():
            item = breakdown.get(f)  # type: ignore[union-attr]
            if type(item) is dict or isinstance(item, Mapping):  # see _is_mapping
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


def derived_fields(mapped: Sequence[str], top_n: int) -> list[tuple[str, pa.DataType]]:
    """Names and types of the derived columns, in the order result shards hold them."""
    columns: list[tuple[str, pa.DataType]] = [
        ("cards_returned", pa.int32()),
        ("best_card_savings_gap", pa.float64()),
    ]
    for k in range(1, top_n + 1):
        columns += [
            (f"top{k}_card_id", pa.int64()),
            (f"top{k}_card_name", pa.string()),
            (f"top{k}_joining_fees", pa.float64()),
            (f"top{k}_total_savings_yearly", pa.float64()),
            (f"top{k}_total_extra_benefits", pa.float64()),
            (f"top{k}_net_savings", pa.float64()),
        ]
        columns += [(f"top{k}_{f}_savings", pa.float64()) for f in mapped]
    return columns


def derive(
    cards: Sequence[Mapping[str, Any]],
    mapped: Sequence[str],
    top_n: int,
    ranked: Ranked | None = None,
) -> dict[str, Any]:
    """The derived columns for one user (see `derived_fields`); absent cards leave None.
    `ranked`: the cards' ranking when it is known already (`check_answer` returns it)."""
    if ranked is None:
        ranked = rank(cards)
    row: dict[str, Any] = {
        "cards_returned": len(cards),
        "best_card_savings_gap": ranked[0][0] - ranked[1][0] if len(ranked) >= 2 else None,
    }
    for k, names in enumerate(_top_names(tuple(mapped), top_n)):
        card_id, card_name, fees, yearly, extra, net_name, savings = names
        if k >= len(ranked):
            row.update(dict.fromkeys((card_id, card_name, fees, yearly, extra, net_name)))
            row.update(dict.fromkeys(name for _, name in savings))
            continue
        net, card = ranked[k]
        row[card_id] = _card_id(card.get("id"))
        row[card_name] = _text(card.get("card_name"))
        row[fees] = money(card.get("joining_fees"))
        row[yearly] = money(card.get("total_savings_yearly"))
        row[extra] = money(card.get("total_extra_benefits")) or 0.0
        row[net_name] = net
        breakdown = card.get("spending_breakdown")
        if not _is_mapping(breakdown):
            breakdown = {}
        for f, name in savings:
            item = breakdown.get(f)
            if type(item) is dict or isinstance(item, Mapping):  # see _is_mapping
                saved = money(item.get("savings"))
            else:
                saved = None
            row[name] = saved or 0.0
    return row


@functools.lru_cache(maxsize=16)
def _top_names(
    mapped: tuple[str, ...], top_n: int
) -> tuple[tuple[str, str, str, str, str, str, tuple[tuple[str, str], ...]], ...]:
    """Column names of each top-k card: made once, not per user."""
    return tuple(
        (
            f"top{k}_card_id",
            f"top{k}_card_name",
            f"top{k}_joining_fees",
            f"top{k}_total_savings_yearly",
            f"top{k}_total_extra_benefits",
            f"top{k}_net_savings",
            tuple((f, f"top{k}_{f}_savings") for f in mapped),
        )
        for k in range(1, top_n + 1)
    )


def _card_id(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
