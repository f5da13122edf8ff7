"""The calculate answer: the request's numbers spliced into the static card text.

An answer is a pure function of the request body and `MockSettings`: `compute_response` tells a
test what the server will send.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pipeline.mockapi.cardtext import _card_texts, _CardText
from pipeline.mockapi.catalogue import Card
from pipeline.mockapi.fields import LOUNGE_VISIT_VALUE
from pipeline.mockapi.scoring import _monthly_spends, _rupees, field_savings
from pipeline.mockapi.settings import MockSettings

_RESPONSE_HEAD = '{"success":true,"message":"Savings calculated successfully","savings":['


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
