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

import functools
import json
import logging
import math
import multiprocessing
import random
import re
import secrets
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

CALCULATE_PATHS = ("/cg/api/pro", "/cg/api/beta", "/partner/cardgenius/calculate")
"""The routes that score a body; only these count as calculate requests."""

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
            raise ValueError(f"MockSettings.error_rate ({self.error_rate!r}) must be between 0 and 1")
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
    """Round half up to whole rupees (Python's round() would round half to even)."""
    return math.floor(amount + 0.5)


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
        elif key in LOUNGE_VISIT_VALUE or key in ANNUAL_FIELDS or key in MONTHLY_FIELDS:
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
    text = json.dumps(value) if _jsonable(value) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _jsonable(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict)


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


def render_response(body: Mapping[str, object], settings: MockSettings, *, beta: bool = False) -> bytes:
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
    cards = ",".join(_render_card(text, spends, total_spends, beta) for text in texts)
    return f"{_RESPONSE_HEAD}{cards}]}}".encode("ascii")


def compute_response(
    body: Mapping[str, object], settings: MockSettings, *, beta: bool = False
) -> dict[str, Any]:
    """The direct endpoint's JSON answer to a valid body, parsed: what the server sends."""
    answer: dict[str, Any] = json.loads(render_response(body, settings, beta=beta))
    return answer


def _render_card(text: _CardText, spends: Mapping[str, float], total_spends: float, beta: bool) -> str:
    card = text.card
    items = []
    total = potential = 0
    beneficial = 0.0
    for earn_text in text.earn:
        earn = earn_text.earn
        monthly = spends.get(earn.field, 0.0)
        savings = field_savings(earn, monthly)
        items.append(earn_text.render(monthly, savings, card.conv_rate))
        total += savings
        potential += savings if earn.cap is None else earn.cap
        beneficial += 0.0 if earn.field in LOUNGE_VISIT_VALUE else monthly
    reached = sum(1 for m in card.milestones if m.minimum_spend <= 12 * total_spends)
    extra = card.welcome_cash + sum(m.cash for m in card.milestones[:reached])
    yearly = 12 * total
    if card.null_savings:
        money = f'"total_savings":{total},"total_savings_yearly":null,"total_extra_benefits":null,'
        money += '"max_potential_savings":null,"roi":null,'
    else:
        money = f'"total_savings":{total},"total_savings_yearly":{yearly},"total_extra_benefits":{extra},'
        money += f'"max_potential_savings":{12 * potential},"roi":{yearly - card.joining_fees},'
    money += f'"total_beneficial_spends":{_rupees(beneficial)},"total_spends":{_rupees(total_spends)},'
    keyed = ",".join(f'"{t.earn.field}":{item}' for t, item in zip(text.earn, items, strict=True))
    return (
        f"{text.head}{money}{text.middle_by_milestones[reached]}"
        f"{text.recommended if beta else ''}"
        f'"spending_breakdown":{{{keyed}}},"spending_breakdown_array":[{",".join(items)}]}}'
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
    )


def _welcome_text(card: Card) -> str:
    benefits = []
    if card.welcome_cash:
        cash = card.welcome_cash
        benefits.append(
            {"minimum_spend": "5000", "maximum_days": "30", "voucher_bonus": str(cash), "cash_value": cash}
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
    return _EarnText(earn=earn, head=f'{{"on":"{earn.field}","spend":', middle=middle, tail=tail)
