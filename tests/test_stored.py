"""run/stored.py: which rows a shard settles from the answer store when it starts, and how
each counts."""

from __future__ import annotations

from pipeline import schema
from pipeline.run.stored import OFFLINE, REQUEST, REUSED, TWIN, Found, StoreUse
from pipeline.state.cache import Stored

KEY = 42
OWNER, TWIN_ROW = 3, 70
STORED = Found(Stored(1.0e9, b""), {schema.STATUS: schema.OK, schema.REUSED: True})


def use(*, dedupe: bool = True, offline: bool = False) -> StoreUse:
    return StoreUse({KEY: (OWNER, 0)}, dedupe=dedupe, offline=offline)


def test_a_stored_answer_saves_the_request_of_a_row_that_would_send() -> None:
    assert use().settle(OWNER, KEY, STORED) == (REUSED, STORED.answer)
    assert use().settle(5, 7, Found(STORED.stored, STORED.answer)) == (REUSED, STORED.answer)
    # Without dedupe every row would send: each one reused saves a request.
    assert use(dedupe=False).settle(TWIN_ROW, KEY, STORED) == (REUSED, STORED.answer)


def test_a_twin_of_an_answer_from_an_earlier_run_is_reused_not_saved() -> None:
    assert use().settle(TWIN_ROW, KEY, STORED) == (TWIN, STORED.answer)


def test_without_a_usable_answer_a_row_is_sent_or_offline_fails() -> None:
    unusable = Found(STORED.stored, None)
    for found in (None, unusable):
        assert use().settle(OWNER, KEY, found) == (REQUEST, None)
        assert use(offline=True).settle(OWNER, KEY, found) == (OFFLINE, None)
    assert use(offline=True).settle(OWNER, None, None) == (REQUEST, None)  # no body key
