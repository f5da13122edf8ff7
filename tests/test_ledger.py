"""run/ledger.py: what a shard has settled and what follows from each outcome (twins copy,
the store's answers count as stored.py says, batches and events see every row); a real
dedupe book and tally, a fake clock, no threads, no files."""

from __future__ import annotations

from typing import Any

from support import Clock

from pipeline import schema
from pipeline.errors import ErrorKind, PermanentError, TransientError
from pipeline.run.attempt import Attempt
from pipeline.run.dedupe import DedupeBook
from pipeline.run.ledger import BODY, KEY, ShardLedger
from pipeline.run.stored import Found, StoreUse
from pipeline.run.tally import WORKING, ShardTally
from pipeline.state.cache import Stored

BODY_KEY = 42
COLUMNS = (schema.ROW, "user_id")
COPIED = {schema.STATUS, schema.HTTP_STATUS, schema.ERROR_KIND, schema.ERROR, schema.REUSED}
OWNERS = {BODY_KEY: (1, 0)}


def row(n: int) -> dict[str, Any]:
    return {schema.ROW: n, "user_id": f"U{n}", KEY: BODY_KEY, BODY: BODY_KEY}


def answered(n: int) -> Attempt:
    outcome = {schema.ROW: n, schema.STATUS: schema.OK, schema.HTTP_STATUS: 200}
    outcome |= {schema.LATENCY_MS: 5.0, schema.ERROR_KIND: None, schema.ERROR: None}
    return Attempt(row(n), 1, outcome=outcome | {schema.REUSED: False}, answered_at=7.0)


def ledger(clock: Clock, *, offline: bool = False) -> ShardLedger:
    twins = DedupeBook(OWNERS, {}.get, COPIED, clock=clock)
    store = StoreUse(OWNERS, offline=offline)
    return ShardLedger(COLUMNS, ShardTally("s", clock=clock), twins, store, clock=clock)


def test_an_answer_settles_its_followers_and_is_kept_for_both_stores() -> None:
    clock = Clock()
    book = ledger(clock)
    assert book.by_copy(row(1)) is False  # the sender
    assert book.by_copy(row(2)) is True  # follows it
    book.answered(answered(1))
    assert book.outcomes[2][schema.STATUS] == schema.OK
    assert book.outcomes[2][schema.ATTEMPTS] == 0
    batch, answers, stored = book.take_unsaved()
    assert [o[schema.ROW] for o in batch] == [1, 2]
    assert list(answers) == [BODY_KEY] and [(k, at) for k, at, _ in stored] == [(BODY_KEY, 7.0)]
    assert book.take_unsaved() == ([], {}, [])
    event = book.tally.take_event(WORKING, len(book.outcomes))
    figures = event.figures
    assert (figures.states, figures.deduped, figures.reused) == ({schema.OK: 2}, 1, 0)


def test_a_sender_out_of_retries_hands_its_followers_back_a_permanent_error_does_not() -> None:
    clock = Clock()
    book = ledger(clock)
    book.by_copy(row(1))
    book.by_copy(row(2))
    timeout = TransientError("timeout", kind=ErrorKind.TIMEOUT)
    assert book.failed(Attempt(row(1), 3), timeout) == [row(2)]
    assert book.outcomes[1][schema.ERROR_KIND] == "timeout"
    other = ledger(clock)
    other.by_copy(row(1))
    other.by_copy(row(2))
    refused = PermanentError("HTTP 400: bad", kind=ErrorKind.HTTP_4XX, http_status=400)
    assert other.failed(Attempt(row(1), 1), refused) == []
    assert other.outcomes[2][schema.ERROR] == "HTTP 400: bad"  # copied: the body's own fault


def test_store_answers_count_as_reused_saved_or_deduped() -> None:
    clock = Clock()
    book = ledger(clock)
    earlier = {schema.STATUS: schema.OK, schema.HTTP_STATUS: 200, schema.REUSED: True}
    found = {BODY_KEY: Found(Stored(100.0, b""), earlier)}
    assert book.from_store(row(1), found) is True  # the owner: a request saved
    assert book.from_store(row(5), found) is True  # a twin: reused, dedupe saved it
    own = {schema.STATUS: schema.OK, schema.HTTP_STATUS: 200, schema.REUSED: False}
    this_run = {BODY_KEY: Found(Stored(100.0, b""), earlier, own=own)}
    assert book.from_store(row(6), this_run) is True  # this run's answer: deduped only
    assert [book.outcomes[n][schema.REUSED] for n in (1, 5, 6)] == [True, True, False]
    event = book.tally.take_event(WORKING, len(book.outcomes))
    figures = event.figures
    assert (figures.reused, figures.saved, figures.deduped) == (2, 1, 2)
    assert book.from_store(row(7), {}) is False  # nothing stored: requested


def test_offline_a_row_without_a_stored_answer_fails_at_once() -> None:
    book = ledger(Clock(), offline=True)
    assert book.from_store(row(1), {}) is True
    assert book.outcomes[1][schema.STATUS] == schema.FAILED
    assert book.outcomes[1][schema.ERROR].startswith("offline: no stored answer")
