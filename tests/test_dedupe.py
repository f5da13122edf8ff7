"""dedupe.py: which twin sends, who waits for whom, parked rows released; no store, no sleep."""

from __future__ import annotations

from typing import Any

from support import Clock

from pipeline import schema
from pipeline.run.dedupe import COPY, SEND, WAIT, DedupeBook
from pipeline.state.answers import RELEASED

KEY = 42
COPIED = {schema.STATUS, schema.HTTP_STATUS, schema.ERROR, "best"}


def row(n: int) -> dict[str, Any]:
    return {schema.ROW: n, "_key": KEY}


def outcome(n: int, status: str = schema.OK) -> dict[str, Any]:
    return {schema.ROW: n, schema.STATUS: status, schema.HTTP_STATUS: 200, "best": "Card A"}


def book(
    owner: tuple[int, int] | None = None,
    store: dict[int, dict[str, Any]] | None = None,
    *,
    retry_failed: bool = False,
    clock: Clock | None = None,
) -> DedupeBook:
    store = {} if store is None else store
    return DedupeBook(
        {KEY: owner}, store.get, COPIED, retry_failed=retry_failed, clock=clock or Clock()
    )


def test_the_first_twin_sends_the_others_follow_and_copy_its_answer() -> None:
    twins = book(owner=(1, 0))
    assert twins.claim(row(1), KEY) == (SEND, None)
    assert twins.claim(row(2), KEY) == (WAIT, None)
    assert twins.claim(row(3), KEY) == (WAIT, None)
    answer, waiting = twins.settle(row(1), KEY, outcome(1), final=True)
    assert answer == {schema.STATUS: schema.OK, schema.HTTP_STATUS: 200, "best": "Card A"}
    assert waiting == [row(2), row(3)]
    assert twins.take_new_answers() == {KEY: answer}
    assert twins.take_new_answers() == {}
    # A later twin copies the answer got here, without asking the store.
    assert twins.claim(row(4), KEY) == (COPY, answer)


def test_the_sender_back_after_an_outage_sends_again() -> None:
    twins = book(owner=(1, 0))
    assert twins.claim(row(1), KEY)[0] == SEND
    assert twins.claim(row(1), KEY)[0] == SEND


def test_a_sender_that_ran_out_of_retries_releases_its_followers() -> None:
    twins = book(owner=(1, 0))
    twins.claim(row(1), KEY)
    twins.claim(row(2), KEY)
    answer, waiting = twins.settle(row(1), KEY, outcome(1, schema.FAILED), final=False)
    assert (answer, waiting) == (None, [row(2)])  # they send for themselves
    assert twins.take_new_answers() == {KEY: RELEASED}  # and so do twins in later shards
    assert twins.claim(row(2), KEY) == (SEND, None)


def test_only_the_sender_settles_its_body() -> None:
    twins = book(owner=(1, 0))
    twins.claim(row(1), KEY)
    assert twins.settle(row(9), KEY, outcome(9), final=True) == (None, [])
    assert twins.take_new_answers() == {}


def test_a_twin_of_an_owner_elsewhere_is_parked_until_its_answer_comes() -> None:
    clock = Clock()
    twins = book(owner=(1, 0), clock=clock)
    assert twins.claim(row(7), KEY) == (WAIT, None)
    assert twins.parked_due(clock.now) == [KEY]  # the first look-up is at once
    assert twins.parked_due(clock.now + 0.1) == []
    clock.now += 0.25
    assert twins.parked_due(clock.now) == [KEY]
    assert twins.unpark({}) == []
    answer = {schema.STATUS: schema.OK, schema.HTTP_STATUS: 200, "best": "Card B"}
    assert twins.unpark({KEY: answer}) == [row(7)]
    assert not twins.parked
    assert twins.claim(row(7), KEY) == (COPY, answer)  # back in the queue, it copies


def test_a_released_parked_twin_sends_itself() -> None:
    twins = book(owner=(1, 0))
    twins.claim(row(7), KEY)
    assert twins.unpark({KEY: RELEASED}) == [row(7)]
    assert twins.claim(row(7), KEY) == (SEND, None)


def test_a_stored_answer_is_copied_unless_rerun_failed_finds_it_failed() -> None:
    failed = {schema.STATUS: schema.FAILED, schema.HTTP_STATUS: 400}
    assert book(owner=(1, 0), store={KEY: failed}).claim(row(7), KEY) == (COPY, failed)
    assert book(owner=(1, 0), store={KEY: failed}, retry_failed=True).claim(row(7), KEY) == (
        SEND,
        None,
    )


def test_no_parking_without_an_owner_or_in_rerun_failed() -> None:
    assert book(owner=None).claim(row(7), KEY) == (SEND, None)  # an old folder: first sends
    assert book(owner=(1, 0), retry_failed=True).claim(row(7), KEY) == (SEND, None)
    assert book(owner=(7, 0)).claim(row(7), KEY) == (SEND, None)  # the owner itself
