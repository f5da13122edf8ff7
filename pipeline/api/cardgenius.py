"""The CardGenius API's shape: request fields, the body and its key, the answer's envelope,
and the derived columns.

Pure functions of plain data; no HTTP here (that is `client.py`). A response is untrusted
input: anything unusable raises `BadBody`, which the client turns into a retryable error.
What the cards' numbers mean, how they are ranked and checked, is cards.py's.
The protocol as the pipeline uses it is described in docs/cardgenius-api.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from pipeline.api.cards import BadBody, Ranked, card_id, is_mapping, money, rank

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
        id_name, card_name, fees, yearly, extra, net_name, savings = names
        if k >= len(ranked):
            row.update(dict.fromkeys((id_name, card_name, fees, yearly, extra, net_name)))
            row.update(dict.fromkeys(name for _, name in savings))
            continue
        net, card = ranked[k]
        row[id_name] = card_id(card.get("id"))
        row[card_name] = _text(card.get("card_name"))
        row[fees] = money(card.get("joining_fees"))
        row[yearly] = money(card.get("total_savings_yearly"))
        row[extra] = money(card.get("total_extra_benefits")) or 0.0
        row[net_name] = net
        breakdown = card.get("spending_breakdown")
        if not is_mapping(breakdown):
            breakdown = {}
        for f, name in savings:
            item = breakdown.get(f)
            if type(item) is dict or isinstance(item, Mapping):  # see cards.is_mapping
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


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
