"""The request's spend fields (cardgenius-api.md, "Request body") and the unit of each.

Every other part of the mock reads the field names from here: the catalogue picks the fields a
card rewards, scoring turns a value into rupees per month, the text lists breakdowns in this order.
"""

from __future__ import annotations

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
