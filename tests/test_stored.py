"""run/stored.py: which rows a shard settles from the answer store when it starts, and how
each counts (a twin's answer from this run is deduplicated, not reused)."""

from __future__ import annotations

from pipeline import schema
from pipeline.run.stored import OFFLINE, OWN, REQUEST, REUSED, TWIN, Found, StoreUse
from pipeline.state.answers import RELEASED
from pipeline.state.cache import Stored

KEY = 42
OWNER, TWIN_ROW = 3, 70
STORED = Found(Stored(1.0e9, b""), {schema.STATUS: schema.OK, schema.REUSED: True})
OWN_ANSWER = {schema.STATUS: schema.OK, schema.REUSED: False}


def use(*, dedupe: bool = True, offline: bool = False) -> StoreUse:
    return StoreUse({KEY: (OWNER, 0)}, dedupe=dedupe, offline=offline)


def test_a_stored_answer_saves_the_request_of_a_row_that_would_send() -> None:
    assert use().settle(OWNER, KEY, STORED) == (REUSED, STORED.answer)
    assert use().settle(5, 7, Found(STORED.stored, STORED.answer)) == (REUSED, STORED.answer)
    # Without dedupe every row would send: each one reused saves a request.
    assert use(dedupe=False).settle(TWIN_ROW, KEY, STORED) == (REUSED, STORED.answer)


def test_a_twin_copies_the_runs_own_answer_when_its_owner_got_one() -> None:
    found = Found(STORED.stored, STORED.answer, own=OWN_ANSWER)
    assert use().settle(TWIN_ROW, KEY, found) == (OWN, OWN_ANSWER)


def test_a_twin_of_an_answer_from_an_earlier_run_is_reused_not_saved() -> None:
    assert use().settle(TWIN_ROW, KEY, STORED) == (TWIN, STORED.answer)
    for own in (RELEASED, {schema.STATUS: schema.FAILED}):  # no answer of this run's
        found = Found(STORED.stored, STORED.answer, own=own)
        assert use().settle(TWIN_ROW, KEY, found) == (TWIN, STORED.answer)


def test_without_a_usable_answer_a_row_is_sent_or_offline_fails() -> None:
    unusable = Found(STORED.stored, None)
    for found in (None, unusable):
        assert use().settle(OWNER, KEY, found) == (REQUEST, None)
        assert use(offline=True).settle(OWNER, KEY, found) == (OFFLINE, None)
    assert use(offline=True).settle(OWNER, None, None) == (REQUEST, None)  # no body key
