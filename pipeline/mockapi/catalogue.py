"""The simulated card catalogue: `Card`, `Earn`, `Milestone` and `build_catalogue`.

The catalogue is a pure function of (cards, seed, hostile_names), built once per settings and
cached; scoring and the response text read it, nothing changes it.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass, replace

from pipeline.mockapi.fields import LOUNGE_VISIT_VALUE, SPEND_FIELDS
from pipeline.mockapi.settings import MAX_CARDS, _not_int


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
