"""The static JSON text of every card: what does not depend on the request, built once.

Speed: the catalogue and the static JSON text of every card are built once per settings and
cached (`_card_texts`); a response splices the per-request numbers into that text
(`pipeline.mockapi.render`) instead of running `json.dumps` over a large dict.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from pipeline.mockapi.catalogue import Card, Earn, _catalogue
from pipeline.mockapi.fields import LOUNGE_VISIT_VALUE
from pipeline.mockapi.scoring import _rupees

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
