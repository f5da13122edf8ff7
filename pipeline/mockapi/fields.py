"""The request's spend fields (docs/cardgenius-api.md, "Request body") and the unit of each.

Every other part of the mock reads the field names from here: the catalogue picks the fields a
card rewards, scoring turns a value into rupees per month, the text lists breakdowns in this order.
"""

from __future__ import annotations

from pipeline.api.cardgenius import ANNUAL_FIELDS, MONTHLY_FIELDS, QUARTERLY_FIELDS

__all__ = [
    "ANNUAL_FIELDS",
    "LOUNGE_VISIT_VALUE",
    "MONTHLY_FIELDS",
    "QUARTERLY_FIELDS",
    "SPEND_FIELDS",
]

# The protocol's field lists are the client's (pipeline/api/cardgenius.py): one definition
# of docs/cardgenius-api.md's request body for both sides. Monthly: rupees per month; annual:
# rupees per year, divided by 12 for the monthly figure; quarterly: lounge visits per quarter,
# valued at `LOUNGE_VISIT_VALUE` rupees a visit, divided by 3.
SPEND_FIELDS = MONTHLY_FIELDS + ANNUAL_FIELDS + QUARTERLY_FIELDS
"""Every request field that carries a spend, in the order breakdowns list them."""

LOUNGE_VISIT_VALUE = {
    "domestic_lounge_usage_quarterly": 750,
    "international_lounge_usage_quarterly": 2500,
}
"""What one lounge visit is worth, in rupees."""

_SPEND_FIELD_SET = frozenset(SPEND_FIELDS)
