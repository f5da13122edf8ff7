"""The savings model: request values as rupees per month, body validation, per-field savings.

Pure functions of a request body and a card's `Earn`; the numbers the response text splices in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from pipeline.mockapi.catalogue import Earn
from pipeline.mockapi.fields import (
    _SPEND_FIELD_SET,
    ANNUAL_FIELDS,
    LOUNGE_VISIT_VALUE,
    SPEND_FIELDS,
)
from pipeline.mockapi.settings import _not_int


def monthly_value(field_name: str, value: float) -> float:
    """A request value as rupees per month: annual / 12, lounge visits * value / 3."""
    if field_name in LOUNGE_VISIT_VALUE:
        return value * LOUNGE_VISIT_VALUE[field_name] / 3
    if field_name in ANNUAL_FIELDS:
        return value / 12
    return value


def field_savings(earn: Earn, monthly: float) -> int:
    """Monthly savings in whole rupees on `monthly` rupees: min(spend * rate, cap), rounded."""
    raw = monthly * earn.rate
    if earn.cap is not None:
        raw = min(raw, earn.cap)
    return _rupees(raw)


def _rupees(amount: float) -> int:
    """Round amount >= 0 half up to whole rupees (Python's round() rounds half to even)."""
    return int(amount + 0.5)


def validate_body(body: object) -> str | None:
    """None if `body` (parsed JSON) is a valid request, else the reason, for a 400 answer.

    Spend fields must be numbers (not booleans) >= 0; `selected_card_id` null or an integer.
    Unknown keys are ignored; a missing spend field counts as 0.
    """
    if not isinstance(body, dict):
        return "the request body must be a JSON object"
    for key, value in body.items():
        if key == "selected_card_id":
            if value is not None and _not_int(value):
                return f"selected_card_id must be null or a card id, not {_show(value)}"
        elif key in _SPEND_FIELD_SET:
            reason = _spend_problem(value)
            if reason:
                return f"{key} {reason}"
    return None


def _spend_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number, not {_show(value)}"
    try:
        as_float = float(value)
    except OverflowError:
        return "is too large"
    if not math.isfinite(as_float):
        return f"must be a finite number, not {_show(value)}"
    if as_float < 0:
        return f"must not be negative ({_show(value)})"
    return None


def _show(value: object) -> str:
    """A value as it would appear in JSON, cut to 40 characters, for an error message."""
    text = json.dumps(value, default=repr)
    return text if len(text) <= 40 else text[:37] + "..."


def _monthly_spends(body: Mapping[str, object]) -> dict[str, float]:
    """Rupees per month by request field, for the fields with a non-zero value."""
    spends = {}
    for name in SPEND_FIELDS:
        value = body.get(name)
        if isinstance(value, int | float) and value:
            spends[name] = monthly_value(name, float(value))
    return spends
