"""The embedded simulated CardGenius API: a deterministic, local stand-in for the live service.

This module owns the mock, from catalogue to socket. It serves exactly the protocol of
`cardgenius-api.md` (direct endpoints, partner token gateway, error bodies) and adds two
control routes, `GET /_mock/stats` and `POST /_mock/reset`, so a benchmark can read the counts
of a mock running in another process.

An answer is a pure function of the request body and `MockSettings`: `compute_response` tells a
test what the server will send. Faults are scripted (`Rule`), seeded (`error_rate`, jitter) or
driven by the injected clock (`rate_limit`, token expiry), so tests stay deterministic.

Speed: the catalogue and the static JSON text of every card are built once per settings and
cached; a response splices the per-request numbers into that text instead of running
`json.dumps` over a large dict. The server runs one thread per keep-alive connection, and
`start_mock_process` gives it a process (and GIL) of its own.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import multiprocessing
import random
import re
import secrets
import signal
import socket
import socketserver
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

# --- Request fields (cardgenius-api.md, "Request body") -------------------------------------

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
"""Spend fields in rupees per month."""

ANNUAL_FIELDS = (
    "hotels_annual",
    "flights_annual",
    "insurance_health_annual",
    "insurance_car_or_bike_annual",
    "large_electronics_purchase_like_mobile_tv_etc",
)
"""Spend fields in rupees per year; divided by 12 for the monthly figure."""

QUARTERLY_FIELDS = ("domestic_lounge_usage_quarterly", "international_lounge_usage_quarterly")
"""Lounge visits per quarter; valued at `LOUNGE_VISIT_VALUE` rupees a visit, divided by 3."""

SPEND_FIELDS = MONTHLY_FIELDS + ANNUAL_FIELDS + QUARTERLY_FIELDS
"""Every request field that carries a spend, in the order breakdowns list them."""

LOUNGE_VISIT_VALUE = {
    "domestic_lounge_usage_quarterly": 750,
    "international_lounge_usage_quarterly": 2500,
}
"""What one lounge visit is worth, in rupees."""

_SPEND_FIELD_SET = frozenset(SPEND_FIELDS)

MAX_CARDS = 100
_MAX_BODY_BYTES = 1 << 20
_MAX_ARRIVALS = 1_000_000  # arrival times kept for stats; about 8 MB at most
_GZIP_LEVEL = 1  # fast: the mock must not become the bottleneck it is meant to measure
_STARTUP_TIMEOUT_S = 10.0


# --- Settings and scripted rules -----------------------------------------------------------


@dataclass(frozen=True)
class MockSettings:
    """How the mock behaves. Plain data, so it pickles into a mock process."""

    latency_ms: float = 150.0
    """Mean time a calculate request waits before its answer, in milliseconds."""
    jitter_ms: float = 50.0
    """Uniform spread around `latency_ms`, +- milliseconds; a wait never goes below 0."""
    error_rate: float = 0.0
    """Share (0..1) of calculate requests answered 500, drawn from an RNG seeded by `seed`."""
    rate_limit: float = 0.0
    """Calculate requests per second above which the mock answers 429; 0 = no limit."""
    cards: int = 15
    """Catalogue size, 1..100; 15 gives ~35 KB responses, 100 gives ~1 MB."""
    seed: int = 0
    """Seeds the catalogue, the latency jitter and the error draws."""
    api_key: str = "mock-key"
    """The key that `/partner/token` accepts."""
    token_ttl_s: float = 3600.0
    """How long an issued partner token stays live, in seconds."""
    hostile_names: bool = False
    """Give a few cards names that start with "=", "+", "-" or "@" (spreadsheet formulas)."""

    def __post_init__(self) -> None:
        _check_number("latency_ms", self.latency_ms, "must be a number >= 0")
        _check_number("jitter_ms", self.jitter_ms, "must be a number >= 0")
        _check_number("rate_limit", self.rate_limit, "must be a number >= 0 (0 = no limit)")
        _check_number("token_ttl_s", self.token_ttl_s, "must be a number > 0", positive=True)
        _check_number("error_rate", self.error_rate, "must be between 0 and 1")
        if self.error_rate > 1:
            raise ValueError(
                f"MockSettings.error_rate ({self.error_rate!r}) must be between 0 and 1"
            )
        if _not_int(self.cards) or not 1 <= self.cards <= MAX_CARDS:
            raise ValueError(f"MockSettings.cards ({self.cards!r}) must be an integer 1..100")
        if _not_int(self.seed):
            raise ValueError(f"MockSettings.seed ({self.seed!r}) must be an integer")
        if not isinstance(self.api_key, str) or not self.api_key:
            raise ValueError("MockSettings.api_key must be a non-empty string")


def _not_int(value: object) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


def _check_number(name: str, value: object, rule: str, *, positive: bool = False) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value > 0 if positive else value >= 0)
    )
    if not ok:
        raise ValueError(f"MockSettings.{name} ({value!r}) {rule}")


@dataclass(frozen=True)
class Rule:
    """A scripted answer, checked (in the order added) before the normal one.

    Applies to a calculate request whose JSON body holds every key/value of `match` (empty
    `match` = every calculate request). It answers `times` matching requests, then is used up
    (None = forever): "fail the first time, succeed the second" is `Rule({}, 503, html, times=1)`.
    """

    match: Mapping[str, float]
    status: int
    body: str
    """Raw body to send: JSON, an HTML page, anything."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra headers, e.g. {"Retry-After": "2"} or a Content-Type (default: guessed JSON/HTML)."""
    times: int | None = None

    def __post_init__(self) -> None:
        if _not_int(self.status) or not 100 <= self.status <= 599:
            raise ValueError(f"Rule.status ({self.status!r}) must be an HTTP status 100..599")
        if self.times is not None and (_not_int(self.times) or self.times < 1):
            raise ValueError(f"Rule.times ({self.times!r}) must be None or an integer >= 1")

    def matches(self, body: object) -> bool:
        """True if this rule applies to a request with this parsed JSON body."""
        if not self.match:
            return True
        if not isinstance(body, dict):
            return False
        return all(key in body and body[key] == value for key, value in self.match.items())


# --- The catalogue -------------------------------------------------------------------------


@dataclass(frozen=True)
class Earn:
    """What a card pays on one request field."""

    field: str
    rate: float
    """Savings per rupee of monthly spend (0.05 = 5%); for lounge fields, share of the value."""
    cap: int | None
    """Most savings this field earns in a month, in rupees; None = uncapped."""


@dataclass(frozen=True)
class Milestone:
    """A bonus paid once yearly spend reaches `minimum_spend` rupees."""

    minimum_spend: int
    cash: int
    """Cash value of the bonus, in rupees."""


@dataclass(frozen=True)
class Card:
    """One card of the simulated catalogue: what it is called and how it scores."""

    id: int
    card_name: str
    seo_card_alias: str
    bank_id: int
    tags: str
    joining_fees: int
    """Rupees, 0..10000; sent as a string of digits, like the live API does."""
    conv_rate: float
    """Rupees per reward point (1 = cashback)."""
    earn: tuple[Earn, ...]
    """Fields the card rewards, in `SPEND_FIELDS` order; others get no breakdown item."""
    welcome_cash: int
    """Cash value of the welcome benefit, in rupees; 0 = none."""
    milestones: tuple[Milestone, ...]
    """Ascending by `minimum_spend`."""
    null_savings: bool
    """Answers `total_savings_yearly: null` (and other null money fields), as some live cards do."""


_BANKS = (
    ("HDFC Bank", 8),
    ("SBI Card", 3),
    ("ICICI Bank", 5),
    ("Axis Bank", 2),
    ("Kotak", 11),
    ("IDFC FIRST", 14),
    ("AU Bank", 18),
    ("RBL Bank", 9),
    ("YES Bank", 12),
    ("IndusInd", 10),
    ("HSBC", 15),
    ("Standard Chartered", 16),
    ("American Express", 1),
    ("BOB", 4),
    ("Federal Bank", 21),
)
_PRODUCTS = (
    ("Millennia", "shopping, dining"),
    ("Regalia", "travel, lounge"),
    ("Cashback", "cashback, shopping"),
    ("Rewards", "rewards"),
    ("Platinum Edge", "lifestyle"),
    ("Fuel Plus", "fuel"),
    ("Travel One", "travel, lounge"),
    ("Everyday", "groceries, bills"),
)
_HOSTILE_NAMES = (
    '=HYPERLINK("http://x","Card")',
    "+91 Rewards Credit Card",
    "-10% Fuel Credit Card",
    "@Home Credit Card",
)
_FEES = (499, 500, 999, 1000, 1499, 2500, 2999, 4999, 10000)
_WELCOME_CASH = (0, 0, 250, 500, 1000, 1500, 2500, 5000)
_RATES = (0.01, 0.015, 0.02, 0.025, 0.033, 0.05, 0.075, 0.1)
_CAPS = (None, None, 250, 500, 750, 1000, 1500, 2000, 3000)
_MILESTONE_STEPS = (50_000, 100_000, 200_000, 400_000)
_NULL_EVERY = 13  # about one card in 13 answers null money fields


def build_catalogue(cards: int, seed: int, hostile_names: bool = False) -> list[Card]:
    """The deterministic catalogue of `cards` (1..100) cards for `seed`, in response order.

    `hostile_names` renames a few cards (positions 1, 4, 7, 10) to formula-like names and
    changes nothing else.
    """
    return list(_catalogue(cards, seed, hostile_names))


@functools.lru_cache(maxsize=16)
def _catalogue(cards: int, seed: int, hostile_names: bool) -> tuple[Card, ...]:
    if _not_int(cards) or not 1 <= cards <= MAX_CARDS:
        raise ValueError(f"cards ({cards!r}) must be an integer 1..100")
    rng = random.Random(seed)
    combos = [(bank, product) for bank in _BANKS for product in _PRODUCTS]
    rng.shuffle(combos)
    ids = sorted(rng.sample(range(100, 1000), cards))
    catalogue = [_make_card(i, ids[i], *combos[i], rng) for i in range(cards)]
    if hostile_names:
        for name, index in zip(_HOSTILE_NAMES, range(1, cards, 3), strict=False):
            catalogue[index] = replace(catalogue[index], card_name=name)
    return tuple(catalogue)


def _make_card(
    index: int,
    card_id: int,
    bank: tuple[str, int],
    product: tuple[str, str],
    rng: random.Random,
) -> Card:
    name = f"{bank[0]} {product[0]} Credit Card"
    milestones = sorted(rng.sample(_MILESTONE_STEPS, rng.randint(0, 2)))
    return Card(
        id=card_id,
        card_name=name,
        seo_card_alias=re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"),
        bank_id=bank[1],
        tags=product[1],
        joining_fees=0 if index % 4 == 0 else rng.choice(_FEES),
        conv_rate=rng.choice((0.25, 0.5, 1.0)),
        earn=_pick_earn(rng),
        welcome_cash=rng.choice(_WELCOME_CASH),
        milestones=tuple(Milestone(step, step // 100) for step in milestones),
        null_savings=index % _NULL_EVERY == 5,
    )


def _pick_earn(rng: random.Random) -> tuple[Earn, ...]:
    chosen = sorted(rng.sample(range(len(SPEND_FIELDS)), rng.randint(2, 4)))
    earn = []
    for position in chosen:
        name = SPEND_FIELDS[position]
        if name in LOUNGE_VISIT_VALUE:  # free visits per quarter, as a monthly rupee cap
            cap = round(rng.randint(1, 4) * LOUNGE_VISIT_VALUE[name] / 3)
            earn.append(Earn(name, 1.0, cap))
        else:
            earn.append(Earn(name, rng.choice(_RATES), rng.choice(_CAPS)))
    return tuple(earn)


# --- Scoring ---------------------------------------------------------------------------------


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


# --- Rendering: static card text, built once, with the request's numbers spliced in ----------

_RESPONSE_HEAD = '{"success":true,"message":"Savings calculated successfully","savings":['
_FIELD_LABELS = {
    "amazon_spends": "Amazon",
    "flipkart_spends": "Flipkart",
    "grocery_spends_online": "online groceries",
    "online_food_ordering": "food delivery",
    "other_online_spends": "other online shopping",
    "other_offline_spends": "other offline spends",
    "dining_or_going_out": "dining out",
    "fuel": "fuel",
    "school_fees": "school fees",
    "rent": "rent",
    "mobile_phone_bills": "mobile bills",
    "electricity_bills": "electricity bills",
    "water_bills": "water bills",
    "ott_channels": "OTT subscriptions",
    "all_pharmacy": "pharmacy",
    "hotels_annual": "hotel bookings",
    "flights_annual": "flight bookings",
    "insurance_health_annual": "health insurance",
    "insurance_car_or_bike_annual": "motor insurance",
    "large_electronics_purchase_like_mobile_tv_etc": "large electronics",
    "domestic_lounge_usage_quarterly": "domestic lounge visits",
    "international_lounge_usage_quarterly": "international lounge visits",
}
_POINT_NAMES = {1.0: "cashback", 0.5: "CashPoints", 0.25: "Reward Points"}
_REDEMPTIONS = (
    ("Cashback", "Statement credit"),
    ("Voucher", "Amazon Pay"),
    ("Voucher", "Flipkart"),
    ("Air Miles", "Air India Maharaja Club"),
    ("Air Miles", "Club Vistara"),
    ("Hotel Points", "Marriott Bonvoy"),
    ("Voucher", "Tanishq"),
    ("Voucher", "Myntra"),
    ("Product Catalogue", "Rewards catalogue"),
    ("Voucher", "BigBasket"),
    ("Air Miles", "InterMiles"),
    ("Hotel Points", "ITC Hotels"),
)


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _num(value: float) -> str:
    """A JSON number: 1.0 -> "1", 0.25 -> "0.25"."""
    return str(int(value)) if float(value).is_integer() else repr(value)


@dataclass(frozen=True)
class _EarnText:
    """One breakdown item as text, with holes for spend, points and savings."""

    earn: Earn
    head: str
    """'{"on":"amazon_spends","spend":'"""
    middle: str
    """The explanation between spend and savings; plain ASCII, safe inside a JSON string."""
    tail: str
    """From the end of the first explanation sentence to the closing brace."""
    counts_as_spend: bool
    """False for lounge visits, which are not rupees spent."""

    def render(self, monthly: float, savings: int, conv_rate: float) -> str:
        spend = _rupees(monthly)
        points = _rupees(savings / conv_rate)
        return (
            f'{self.head}{spend},"points_earned":{points},"savings":{savings},'
            f'"explanation":["On Rs {spend:,}{self.middle}{savings:,}{self.tail}'
        )


@dataclass(frozen=True)
class _CardText:
    """A card's response text that does not depend on the request."""

    card: Card
    head: str
    """From '{"id":' to the joining fee, with a trailing comma."""
    middle_by_milestones: tuple[str, ...]
    """welcomeBenefits .. redemption_options, indexed by the number of milestones reached."""
    recommended: str
    """The beta endpoint's recommended_redemption_options, with a trailing comma."""
    earn: tuple[_EarnText, ...]
    extra_by_milestones: tuple[int, ...]
    """total_extra_benefits, indexed by the number of milestones reached."""


def render_response(
    body: Mapping[str, object], settings: MockSettings, *, beta: bool = False
) -> bytes:
    """The direct endpoint's answer to a valid body, as compact JSON bytes.

    No card is scored when every spend is 0 (`savings: []`); `selected_card_id` keeps that one
    card (an id outside the catalogue also gives `savings: []`). Cards come in catalogue order.
    """
    spends = _monthly_spends(body)
    texts = _card_texts(settings.cards, settings.seed, settings.hostile_names) if spends else ()
    selected = body.get("selected_card_id")
    if selected is not None:
        texts = tuple(text for text in texts if text.card.id == selected)
    total_spends = sum(v for k, v in spends.items() if k not in LOUNGE_VISIT_VALUE)
    parts = [_RESPONSE_HEAD]
    for text in texts:
        parts += _card_parts(text, spends, total_spends, beta)
        parts.append(",")
    if texts:
        parts.pop()  # the comma after the last card
    parts.append("]}")
    return "".join(parts).encode("ascii")


def compute_response(
    body: Mapping[str, object], settings: MockSettings, *, beta: bool = False
) -> dict[str, Any]:
    """The direct endpoint's JSON answer to a valid body, parsed: what the server sends."""
    answer: dict[str, Any] = json.loads(render_response(body, settings, beta=beta))
    return answer


def _card_parts(
    text: _CardText, spends: Mapping[str, float], total_spends: float, beta: bool
) -> list[str]:
    """One card's JSON text, in pieces: the static text with this request's numbers."""
    card = text.card
    items = []
    keyed = []
    total = potential = 0
    beneficial = 0.0
    for earn_text in text.earn:
        earn = earn_text.earn
        monthly = spends.get(earn.field, 0.0)
        savings = field_savings(earn, monthly)
        item = earn_text.render(monthly, savings, card.conv_rate)
        items.append(item)
        keyed.append(f'"{earn.field}":{item}')
        total += savings
        potential += savings if earn.cap is None else earn.cap  # every capped field maxed out
        if earn_text.counts_as_spend:
            beneficial += monthly
    reached = 0
    for milestone in card.milestones:
        reached += milestone.minimum_spend <= 12 * total_spends
    return [
        text.head,
        _money_text(card, total, text.extra_by_milestones[reached], potential),
        f'"total_beneficial_spends":{_rupees(beneficial)},"total_spends":{_rupees(total_spends)},',
        text.middle_by_milestones[reached],
        text.recommended if beta else "",
        '"spending_breakdown":{',
        ",".join(keyed),
        '},"spending_breakdown_array":[',
        ",".join(items),
        "]}",
    ]


def _money_text(card: Card, total: int, extra: int, potential: int) -> str:
    """The totals, monthly and yearly, in rupees; null where this card answers null."""
    if card.null_savings:
        return (
            f'"total_savings":{total},"total_savings_yearly":null,"total_extra_benefits":null,'
            '"max_potential_savings":null,"roi":null,'
        )
    yearly = 12 * total
    return (
        f'"total_savings":{total},"total_savings_yearly":{yearly},"total_extra_benefits":{extra},'
        f'"max_potential_savings":{12 * potential},"roi":{yearly - card.joining_fees},'
    )


@functools.lru_cache(maxsize=16)
def _card_texts(cards: int, seed: int, hostile_names: bool) -> tuple[_CardText, ...]:
    """The static text of every card, built once per catalogue."""
    options = _redemption_count(cards)
    return tuple(_card_text(card, options) for card in _catalogue(cards, seed, hostile_names))


def _redemption_count(cards: int) -> int:
    """Redemption options per card, so responses weigh what the live API's do.

    The live API answers about 35 KB for its 15 featured cards but about 1 MB for the full
    ~100-card catalogue, whose entries carry long redemption lists; benchmarks rely on both.
    """
    return max(1, round(1 + (cards - 15) * 0.33))


def _card_text(card: Card, redemption_options: int) -> _CardText:
    head = {
        "id": card.id,
        "card_name": card.card_name,
        "seo_card_alias": card.seo_card_alias,
        "bank_id": card.bank_id,
        "tags": card.tags,
        "joining_fees": str(card.joining_fees),
    }
    options = [_redemption_option(card, j) for j in range(redemption_options)]
    redemption = f'"redemption_options":{_dumps(options)},'
    recommended = [
        {**{k: o[k] for k in ("id", "method", "brand", "conversion_rate")}, "reason": "Best value"}
        for o in options[:2]
    ]
    return _CardText(
        card=card,
        head=_dumps(head)[:-1] + ",",
        middle_by_milestones=tuple(
            f"{_welcome_text(card)}{_milestones_text(card, reached)}{redemption}"
            for reached in range(len(card.milestones) + 1)
        ),
        recommended=f'"recommended_redemption_options":{_dumps(recommended)},',
        earn=tuple(_earn_text(card, earn) for earn in card.earn),
        extra_by_milestones=tuple(
            card.welcome_cash + sum(m.cash for m in card.milestones[:reached])
            for reached in range(len(card.milestones) + 1)
        ),
    )


def _welcome_text(card: Card) -> str:
    benefits = []
    if card.welcome_cash:
        cash = card.welcome_cash
        benefits.append(
            {
                "minimum_spend": "5000",
                "maximum_days": "30",
                "voucher_bonus": str(cash),
                "cash_value": cash,
            }
        )
    return f'"welcomeBenefits":{_dumps(benefits)},'


def _milestones_text(card: Card, reached: int) -> str:
    entries = [
        {
            "minimum_spend": str(m.minimum_spend),
            "eligible": i < reached,
            "voucherBonus": str(m.cash),
            "rpBonus": "",
            "cash_conversion": m.cash if i < reached else 0,
        }
        for i, m in enumerate(card.milestones)
    ]
    return f'"milestone_benefits":{_dumps(entries)},'


def _redemption_option(card: Card, j: int) -> dict[str, object]:
    method, brand = _REDEMPTIONS[(card.id + j) % len(_REDEMPTIONS)]
    rate = round(card.conv_rate * (1.0 if j == 0 else 0.5 + (j % 6) * 0.1), 3)
    min_points = 500 * (1 + j % 4)
    return {
        "id": card.id * 100 + j,
        "method": method,
        "brand": brand,
        "conversion_rate": rate,
        "min_points": min_points,
        "processing_fee": 99,
        "terms": (
            f"Redeem for {brand} at Rs {_num(rate)} a point, in multiples of 100 points from "
            f"{min_points} points; Rs 99 plus GST a request, credited within 7 working days."
        ),
    }


def _earn_text(card: Card, earn: Earn) -> _EarnText:
    label = _FIELD_LABELS[earn.field]
    points = _POINT_NAMES[card.conv_rate]
    if earn.field in LOUNGE_VISIT_VALUE:
        middle = f" a month of {label} (Rs {LOUNGE_VISIT_VALUE[earn.field]:,} a visit) you get"
        middle += " complimentary access, i.e. Rs "
    else:
        middle = f" a month on {label} you get {earn.rate * 100:g}% {points}, i.e. Rs "
    cap_sentence = (
        f"Savings on {label} are capped at Rs {earn.cap:,} a month."
        if earn.cap is not None
        else f"There is no monthly cap on {label}."
    )
    tail = (
        f'.",{_dumps(cap_sentence)}],'
        f'"conv_rate":{_num(card.conv_rate)},"maxCap":{_dumps(earn.cap)}}}'
    )
    return _EarnText(
        earn=earn,
        head=f'{{"on":"{earn.field}","spend":',
        middle=middle,
        tail=tail,
        counts_as_spend=earn.field not in LOUNGE_VISIT_VALUE,
    )


# --- Server state: stats, rate window, tokens, rules -----------------------------------------


class _Stats:
    """Request counts; handlers run in many threads, so every access holds the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests = 0
            self._by_path: dict[str, int] = {}
            self._by_status: dict[str, int] = {}
            self._calculate = 0
            self._arrivals: deque[float] = deque(maxlen=_MAX_ARRIVALS)

    def arrival(self, at: float) -> None:
        """Count a calculate request that arrived at `at` (clock seconds)."""
        with self._lock:
            self._calculate += 1
            self._arrivals.append(at)

    def answered(self, path: str, status: int) -> None:
        with self._lock:
            self._requests += 1
            self._by_path[path] = self._by_path.get(path, 0) + 1
            self._by_status[str(status)] = self._by_status.get(str(status), 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self._requests,
                "by_path": dict(self._by_path),
                "by_status": dict(self._by_status),
                "calculate": self._calculate,
                "arrivals": list(self._arrivals),
                "process_cpu_s": time.process_time(),
            }


class SlidingWindow:
    """The mock's rate limit: a sliding window over admitted calculate requests.

    At `rate` >= 1 request/s, at most floor(`rate`) requests are admitted in any 1-second span;
    below 1 request/s the span grows to 1/`rate` seconds and holds one. Refused requests do not
    fill the window, so a client that keeps knocking still gets through once it slows down.
    """

    def __init__(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError(f"rate ({rate!r}) must be > 0 requests/s")
        self.window_s = max(1.0, 1.0 / rate)
        self.limit = max(1, math.floor(rate * self.window_s + 1e-9))
        self._admitted: deque[float] = deque()
        self._lock = threading.Lock()

    def admit(self, now: float) -> float:
        """0.0 if a request arriving at `now` (clock seconds) is admitted, else the seconds
        until the window would admit it."""
        with self._lock:
            while self._admitted and self._admitted[0] <= now - self.window_s:
                self._admitted.popleft()
            if len(self._admitted) < self.limit:
                self._admitted.append(now)
                return 0.0
            return self._admitted[0] + self.window_s - now


def retry_after_header(wait_s: float) -> str:
    """`Retry-After` for a wait of `wait_s` seconds: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(wait_s)))


class _Tokens:
    """Partner tokens: opaque strings, live for `ttl_s` seconds of the injected clock."""

    def __init__(self, ttl_s: float, clock: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> dict[str, str]:
        """A new token, as the `data` of the `/partner/token` answer."""
        token = "mock." + secrets.token_urlsafe(24)
        now = self._clock()
        expires_at = datetime.now(timezone.utc) + timedelta(seconds=self._ttl_s)
        with self._lock:
            self._expiry = {t: at for t, at in self._expiry.items() if at > now}
            self._expiry[token] = now + self._ttl_s
        return {"jwttoken": token, "expiresAt": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def is_live(self, token: str | None) -> bool:
        with self._lock:
            expiry = self._expiry.get(token or "")
        return expiry is not None and self._clock() < expiry

    def expire_all(self) -> None:
        with self._lock:
            self._expiry.clear()


@dataclass
class _ArmedRule:
    rule: Rule
    left: int | None
    """Answers this rule may still give; None = forever."""


class _RuleBook:
    """Scripted rules in the order added, with how many answers each has left."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[_ArmedRule] = []

    def add(self, rule: Rule) -> None:
        with self._lock:
            self._armed.append(_ArmedRule(rule, rule.times))

    def take(self, body: object) -> Rule | None:
        """The first live rule that matches `body`, using up one of its answers; else None."""
        with self._lock:
            for armed in self._armed:
                if armed.left != 0 and armed.rule.matches(body):
                    if armed.left is not None:
                        armed.left -= 1
                    return armed.rule
        return None


# --- Answers ---------------------------------------------------------------------------------

_JSON = {"Content-Type": "application/json"}
_NOT_JSON = object()  # what _parse_json gives for a body that is not JSON


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=lambda: _JSON)


def _json_reply(status: int, payload: object, headers: Mapping[str, str] | None = None) -> _Reply:
    return _Reply(status, _dumps(payload).encode(), {**_JSON, **(headers or {})})


def _error_reply(
    status: int, message: str, code: str, headers: Mapping[str, str] | None = None
) -> _Reply:
    payload = {"success": False, "message": message, "error_code": code}
    return _json_reply(status, payload, headers)


def _rule_reply(rule: Rule) -> _Reply:
    headers = dict(rule.headers)
    if not any(name.lower() == "content-type" for name in headers):
        looks_json = rule.body.lstrip().startswith(("{", "["))
        headers["Content-Type"] = "application/json" if looks_json else "text/html; charset=utf-8"
    return _Reply(rule.status, rule.body.encode(), headers)


def _parse_json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _NOT_JSON


_Route = Callable[[bytes, "str | None"], _Reply]


class MockServer:
    """The simulated API on a real socket, served from a background thread.

    `clock` (monotonic seconds) times arrivals, the rate window and token expiry; `sleep`
    (seconds) is how each calculate request waits out its latency, in its own handler thread,
    so concurrent requests overlap. Routes under `/_mock/` are not counted in `stats()`.
    """

    def __init__(
        self,
        settings: MockSettings,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._address = (host, port)
        self._clock = clock
        self._sleep = sleep
        self._stats = _Stats()
        self._rules = _RuleBook()
        self._tokens = _Tokens(settings.token_ttl_s, clock)
        self._window = SlidingWindow(settings.rate_limit) if settings.rate_limit > 0 else None
        self._latency_rng = random.Random(f"latency:{settings.seed}")
        self._error_rng = random.Random(f"errors:{settings.seed}")
        self._routes: dict[str, tuple[str, _Route]] = {
            "/cg/api/pro": ("POST", functools.partial(self._calculate, beta=False, partner=False)),
            "/cg/api/beta": ("POST", functools.partial(self._calculate, beta=True, partner=False)),
            "/partner/cardgenius/calculate": (
                "POST",
                functools.partial(self._calculate, beta=False, partner=True),
            ),
            "/partner/token": ("POST", self._issue_token),
            "/_mock/stats": ("GET", lambda _body, _token: _json_reply(200, self.stats())),
            "/_mock/reset": ("POST", self._reset),
        }
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        _card_texts(settings.cards, settings.seed, settings.hostile_names)  # build it now

    # Lifecycle

    def start(self) -> MockServer:
        """Bind and serve in a daemon thread; returns once the socket listens."""
        if self._httpd is not None:
            raise RuntimeError("MockServer is already started")
        httpd = _HTTPServer(self._address, self)
        self._httpd, self._port = httpd, httpd.server_port
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"cardgenius-mock-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection; does nothing if not started."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._port is None:
            raise RuntimeError("MockServer has no port until start()")
        return self._port

    @property
    def base_url(self) -> str:
        """e.g. "http://127.0.0.1:54321"."""
        return f"http://{self._address[0]}:{self.port}"

    # Control

    def stats(self) -> dict[str, Any]:
        """{"requests", "by_path", "by_status" (keys are strings), "calculate",
        "arrivals" (clock seconds of the calculate requests, oldest first), "process_cpu_s"
        (CPU seconds used so far by the process that serves the mock)}."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        self._stats.reset()

    def add_rule(self, rule: Rule) -> None:
        """Script an answer; rules are checked in the order added, before the normal answer."""
        self._rules.add(rule)

    def expire_tokens(self) -> None:
        """Invalidate every partner token issued so far."""
        self._tokens.expire_all()

    # Answers

    def _answer(self, method: str, target: str, body: bytes, token: str | None) -> _Reply:
        """Answer one request; `target` is the request path, query string included."""
        path = target.partition("?")[0]
        route = self._routes.get(path)
        if route is None:
            reply = _error_reply(404, f"No route {method} {path}", "NOT_FOUND")
        elif method != route[0]:
            reply = _error_reply(405, f"Use {route[0]} for {path}", "METHOD", {"Allow": route[0]})
        else:
            reply = route[1](body, token)
        if not path.startswith("/_mock/"):
            self._stats.answered(path, reply.status)
        return reply

    def _calculate(self, body: bytes, token: str | None, *, beta: bool, partner: bool) -> _Reply:
        """The order of checks: scripted rule, rate limit and token (answered at once, as a
        gateway would), then the latency wait, the random 500, the body, the answer."""
        arrival = self._clock()
        self._stats.arrival(arrival)
        parsed = _parse_json(body)
        rule = self._rules.take(parsed)
        if rule is not None:
            self._wait()
            return _rule_reply(rule)
        wait_s = self._window.admit(arrival) if self._window is not None else 0.0
        if wait_s > 0:
            message = f"Too many requests: the limit is {self.settings.rate_limit:g} requests/s"
            return _error_reply(
                429, message, "CALC_429", {"Retry-After": retry_after_header(wait_s)}
            )
        if partner and not self._tokens.is_live(token):
            return _json_reply(401, {"status": "error", "message": "Token expired"})
        self._wait()
        if self.settings.error_rate and self._error_rng.random() < self.settings.error_rate:
            return _error_reply(500, "Internal error", "CALC_500")
        reason = (
            "the request body is not valid JSON" if parsed is _NOT_JSON else validate_body(parsed)
        )
        if reason is not None or not isinstance(parsed, dict):
            return _error_reply(400, reason or "bad body", "CALC_001")
        answer = render_response(parsed, self.settings, beta=beta)
        if partner:
            answer = b'{"status":"success","message":"","data":' + answer + b"}"
        return _Reply(200, answer)

    def _wait(self) -> None:
        """Wait latency_ms +- jitter_ms (uniform, never below 0) with the injected sleep."""
        latency, jitter = self.settings.latency_ms, self.settings.jitter_ms
        if latency == 0 and jitter == 0:
            return
        delay_ms = max(0.0, latency + self._latency_rng.uniform(-jitter, jitter))
        self._sleep(delay_ms / 1000)

    def _issue_token(self, body: bytes, _token: str | None) -> _Reply:
        parsed = _parse_json(body)
        key = parsed.get("x-api-key") if isinstance(parsed, dict) else None
        if key != self.settings.api_key:
            return _json_reply(401, {"status": "error", "message": "Invalid API key"})
        return _json_reply(200, {"status": "success", "message": "", "data": self._tokens.issue()})

    def _reset(self, _body: bytes, _token: str | None) -> _Reply:
        self.reset_stats()
        return _json_reply(200, {"status": "success", "message": "stats reset"})


# --- HTTP ------------------------------------------------------------------------------------


def accepts_gzip(accept_encoding: str) -> bool:
    """True if an `Accept-Encoding` header value allows gzip (and not with q=0)."""
    for part in accept_encoding.split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() != "gzip":
            continue
        name, _, value = params.partition("=")
        if name.strip().lower() != "q":
            return True
        try:
            return float(value) > 0
        except ValueError:
            return False
    return False


def _gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip header, mtime 0
    return compressor.compress(data) + compressor.flush()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; each response goes out in one write, Content-Length always."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no stderr line per request."""

    def _serve(self, method: str) -> None:
        body = self._read_body()
        if body is None:
            self.close_connection = True
            reply = _error_reply(400, "bad or missing Content-Length", "CALC_001")
        else:
            token = self.headers.get("partner-token")
            reply = self.server.mock._answer(method, self.path, body, token)
        self._send(reply)

    def _read_body(self) -> bytes | None:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None if self.headers.get("Transfer-Encoding") else b""
        try:
            length = int(raw)
        except ValueError:
            return None
        if not 0 <= length <= _MAX_BODY_BYTES:
            return None
        return self.rfile.read(length)

    def _send(self, reply: _Reply) -> None:
        body = reply.body
        lines = [f"HTTP/1.1 {reply.status} {_phrase(reply.status)}"]
        lines.extend(f"{name}: {value}" for name, value in reply.headers.items())
        if accepts_gzip(self.headers.get("Accept-Encoding", "")):
            body = _gzip(body)
            lines.append("Content-Encoding: gzip")
        lines.append(f"Content-Length: {len(body)}")
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


class _HTTPServer(ThreadingHTTPServer):
    """One daemon thread per connection; tracks connections so `stop()` can close them."""

    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not hold up stop()
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], mock: MockServer) -> None:
        self.mock = mock
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can stall on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    def close_connections(self) -> None:
        with self._open_lock:
            for connection in self._open:
                with contextlib.suppress(OSError):  # already closed by the client
                    connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client went away mid-request: normal for a load test
        logger.exception("mock API: error while answering %s", client_address)


# --- Running it: in another process, or in the foreground ------------------------------------


class MockProcess:
    """A MockServer in a process of its own; `stop()` terminates and joins it."""

    def __init__(self, process: BaseProcess, conn: Connection, port: int) -> None:
        self._process = process
        self._conn = conn
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        _end_process(self._process)
        self._conn.close()

    def __enter__(self) -> MockProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_mock_process(
    settings: MockSettings, port: int = 0, *, rules: Sequence[Rule] = ()
) -> MockProcess:
    """Start a mock on 127.0.0.1:`port` (0 = any free port) in a spawned process.

    Returns once it listens; raises RuntimeError if it does not within 10 seconds.
    """
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(
        target=_mock_process_main,
        args=(settings, port, tuple(rules), theirs),
        name="cardgenius-mock",
        daemon=True,
    )
    process.start()
    theirs.close()
    try:
        return MockProcess(process, ours, _await_port(process, ours))
    except BaseException:
        _end_process(process)
        ours.close()
        raise


def _end_process(process: BaseProcess) -> None:
    """Terminate and join; kill if it has not ended within 5 seconds."""
    if process.is_alive():
        process.terminate()
    process.join(5)
    if process.is_alive():
        process.kill()
        process.join()


def _await_port(process: BaseProcess, conn: Connection) -> int:
    if not conn.poll(_STARTUP_TIMEOUT_S):
        raise RuntimeError(f"the mock API process did not listen within {_STARTUP_TIMEOUT_S:g} s")
    try:
        kind, detail = conn.recv()
    except EOFError:
        process.join(1)
        raise RuntimeError(
            f"the mock API process exited before listening (exit code {process.exitcode})"
        ) from None
    if kind != "ready":
        raise RuntimeError(f"the mock API process could not start: {detail}")
    return int(detail)


def _mock_process_main(
    settings: MockSettings, port: int, rules: tuple[Rule, ...], conn: Connection
) -> None:
    """The mock process: serve until terminated or until the parent's end of `conn` closes."""
    # Ctrl+C reaches the whole process group; the parent decides when the mock goes away.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    server = MockServer(settings, port=port)
    for rule in rules:
        server.add_rule(rule)
    try:
        server.start()
    except OSError as exc:
        conn.send(("error", f"cannot listen on 127.0.0.1:{port}: {exc}"))
        return
    conn.send(("ready", server.port))
    try:
        with contextlib.suppress(EOFError, OSError):
            conn.recv()  # nothing is ever sent: this ends (EOFError) when the parent goes away
    finally:
        server.stop()


def serve(
    settings: MockSettings, host: str, port: int, announce: Callable[[str], None] = print
) -> None:
    """Serve in the foreground until KeyboardInterrupt, after announcing the URL in one line."""
    with MockServer(settings, host, port) as server, contextlib.suppress(KeyboardInterrupt):
        announce(
            f"CardGenius mock API on {server.base_url} ({settings.cards} cards, latency "
            f"{settings.latency_ms:g}±{settings.jitter_ms:g} ms) - Ctrl+C to stop"
        )
        threading.Event().wait()
