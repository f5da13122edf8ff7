"""cardgenius.py and cards.py: checks, ranking and flattening on hand-written responses."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.api import cards as cardlib
from pipeline.api.cardgenius import build_body, cards_of, derive, derived_fields
from pipeline.api.cards import BadBody, rank

FIELDS = ["amazon_spends", "flipkart_spends"]


def card(
    cid: int, yearly: Any, fees: Any = "0", extra: Any = 0, **breakdown: float
) -> dict[str, Any]:
    return {
        "id": cid,
        "card_name": f"Card {cid}",
        "joining_fees": fees,
        "total_savings_yearly": yearly,
        "total_extra_benefits": extra,
        "spending_breakdown": {k: {"on": k, "savings": v} for k, v in breakdown.items()},
    }


def test_net_savings_formula_with_string_fees_and_null_extra() -> None:
    assert cardlib.net_savings(card(1, 12000, fees="1000", extra=500)) == 11500
    assert cardlib.net_savings(card(1, 12000, fees="1,000", extra=None)) == 11000
    assert cardlib.net_savings(card(1, 12000, fees=None, extra=None)) == 12000
    assert cardlib.net_savings(card(1, None, fees="0")) is None


def test_rank_skips_null_yearly_and_keeps_api_order_on_ties() -> None:
    cards = [card(1, 1000), card(2, None), card(3, 5000, fees="4000"), card(4, 3000)]
    ranked = rank(cards)
    assert [c["id"] for _, c in ranked] == [4, 1, 3]  # 3000, then 1000 and 1000 in API order
    assert [net for net, _ in ranked] == [3000, 1000, 1000]


def test_derive_top_n_columns() -> None:
    cards = [
        card(10, 6000, fees="500", extra=100, amazon_spends=300.0),
        card(20, 12000, fees="1000", extra=None, amazon_spends=700.0, flipkart_spends=50.0),
        card(30, None),
    ]
    row = derive(cards, FIELDS, top_n=3)
    assert row["cards_returned"] == 3
    assert row["top1_card_id"] == 20
    assert row["top1_card_name"] == "Card 20"
    assert row["top1_joining_fees"] == 1000.0
    assert row["top1_total_savings_yearly"] == 12000.0
    assert row["top1_total_extra_benefits"] == 0.0
    assert row["top1_net_savings"] == 11000.0
    assert row["top1_amazon_spends_savings"] == 700.0
    assert row["top1_flipkart_spends_savings"] == 50.0
    assert row["top2_card_id"] == 10
    assert row["top2_net_savings"] == 5600.0
    assert row["top2_flipkart_spends_savings"] == 0.0  # no breakdown item: 0
    assert row["best_card_savings_gap"] == 5400.0
    # Only two cards could be ranked: the third slot stays empty.
    assert all(row[f"top3_{name}"] is None for name in ("card_id", "card_name", "net_savings"))
    assert row["top3_amazon_spends_savings"] is None
    assert set(row) == {name for name, _ in derived_fields(FIELDS, 3)}


def test_derive_with_one_card_has_no_gap_and_empty_list_has_nothing() -> None:
    one = derive([card(1, 1200)], FIELDS, top_n=2)
    assert one["best_card_savings_gap"] is None
    assert one["top2_card_id"] is None
    empty = derive([], FIELDS, top_n=1)
    assert empty["cards_returned"] == 0
    assert empty["top1_card_id"] is None


def test_cards_of_direct_and_wrapped() -> None:
    direct = {"success": True, "message": "ok", "savings": [card(1, 10)]}
    assert cards_of(direct, wrapped=False) == direct["savings"]
    wrapped = {"status": "success", "message": "", "data": direct}
    assert cards_of(wrapped, wrapped=True) == direct["savings"]
    assert cards_of({"success": True, "savings": []}, wrapped=False) == []


@pytest.mark.parametrize(
    "payload",
    [
        [],
        "text",
        {"success": False, "message": "Calculation failed"},
        {"success": True},
        {"success": True, "savings": {"id": 1}},
        {"success": True, "savings": [1, 2]},
    ],
)
def test_cards_of_rejects_unusable_bodies(payload: Any) -> None:
    with pytest.raises(BadBody):
        cards_of(payload, wrapped=False)


def test_wrapped_error_is_bad_body_with_message() -> None:
    with pytest.raises(BadBody, match="Token expired"):
        cards_of({"status": "error", "message": "Token expired"}, wrapped=True)


def test_build_body_sums_columns_and_keeps_whole_rupees_as_ints() -> None:
    body = build_body({"amazon_spends": (1200.0,), "other_online_spends": (10.5, 0.25, 4.0)})
    assert body == {"amazon_spends": 1200, "other_online_spends": 14.75}
    assert isinstance(body["amazon_spends"], int)


def test_money_parses_leniently() -> None:
    assert cardlib.money("2,500") == 2500.0
    assert cardlib.money("") is None
    assert cardlib.money("free") is None
    assert cardlib.money(True) is None
    assert cardlib.money(7) == 7.0


@pytest.mark.parametrize(
    ("cards", "message"),
    [
        ([card(1, float("inf"))], "card 1: total_savings_yearly is inf, which a workbook"),
        ([card(1, 100, fees=float("nan"))], "card 1: joining_fees is nan"),
        ([card(1, 100, fees="1e400")], "card 1: joining_fees is inf"),
        ([card(1, 100, extra=10**400)], "card 1: total_extra_benefits is inf"),
        ([card(1, 1.5e308)], "card 1: total_savings_yearly is 1.5e+308, which a workbook"),
        ([card(1, 9e307, extra=9e307)], "card 1: net savings is inf"),
        ([card(2**70, 100)], "a top card's id is 1180591620717411303424: not a whole number"),
        ([{**card(1, 100), "id": None}], "a top card's id is None"),
        ([{k: v for k, v in card(1, 100).items() if k != "card_name"}], "card 1 has no card_name"),
        (
            [card(1, 100), {k: v for k, v in card(2, 1).items() if k != "total_savings_yearly"}],
            "card 2 has no total_savings_yearly",
        ),
        ([card(1, 100, amazon_spends=float("inf"))], "spending_breakdown.amazon_spends.savings"),
    ],
)
def test_answers_the_results_cannot_hold_are_bad_bodies(
    cards: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(BadBody) as caught:
        cardlib.check_answer(cards, FIELDS, top_n=3)
    assert message in str(caught.value)


def test_answers_that_fit_pass_the_check() -> None:
    cards = [card(1, 1000, fees=None, extra=None), card(2, None), card(2**63 - 1, 9.9e307)]
    cardlib.check_answer(cards, FIELDS, top_n=3)
    # A card below the top N may lack an id: it is never shown.
    cardlib.check_answer([card(1, 100), {**card(2, 1), "id": None}], FIELDS, top_n=1)


def test_the_check_ranks_as_rank_does_so_derive_need_not_rank_again() -> None:
    cards = [
        card(1, 1000, fees="1,000", extra="250"),
        card(2, None),
        card(3, "5000", fees=" 4000 ", extra=None, amazon_spends=10.0),
        card(4, 3000, fees=None, extra=1.5),
        card(5, 3002, fees=True, extra=""),  # a boolean and "" are no money: 0
    ]
    ranked = cardlib.check_answer(cards, FIELDS, top_n=3)
    assert ranked == rank(cards)
    assert [c["id"] for _, c in ranked] == [5, 4, 3, 1]
    assert derive(cards, FIELDS, 3, ranked) == derive(cards, FIELDS, 3)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12, 12.0),
        (1.5, 1.5),
        ("1,000.5", 1000.5),
        (" 7 ", 7.0),
        ("", None),
        ("x", None),
        (True, None),
        (None, None),
        (10**400, float("inf")),
        ([1], None),
    ],
)
def test_money_reads_what_the_api_sends(value: Any, expected: float | None) -> None:
    assert cardlib.money(value) == expected
