"""classify.py: what an HTTP status means, an error's outcome, and Retry-After parsing."""

from __future__ import annotations

import pickle
from datetime import datetime, timezone

import pytest

from pipeline.api.classify import (
    Outcome,
    classify_status,
    outcome_of,
    parse_retry_after,
    status_kind,
)
from pipeline.errors import AuthError, CallError, ErrorKind, PermanentError, TransientError


@pytest.mark.parametrize(
    ("status", "outcome", "kind"),
    [
        (200, Outcome.SUCCESS, None),
        (400, Outcome.PERMANENT, ErrorKind.HTTP_4XX),
        (401, Outcome.AUTH, ErrorKind.HTTP_4XX),
        (403, Outcome.PERMANENT, ErrorKind.HTTP_4XX),
        (404, Outcome.PERMANENT, ErrorKind.HTTP_4XX),
        (408, Outcome.TRANSIENT, ErrorKind.HTTP_4XX),
        (422, Outcome.PERMANENT, ErrorKind.HTTP_4XX),
        (429, Outcome.THROTTLED, ErrorKind.HTTP_429),
        (500, Outcome.TRANSIENT, ErrorKind.HTTP_5XX),
        (502, Outcome.TRANSIENT, ErrorKind.HTTP_5XX),
        (503, Outcome.TRANSIENT, ErrorKind.HTTP_5XX),
        (504, Outcome.TRANSIENT, ErrorKind.HTTP_5XX),
    ],
)
def test_classification_follows_the_contract(
    status: int, outcome: Outcome, kind: ErrorKind | None
) -> None:
    assert classify_status(status) is outcome
    if kind is not None:
        assert status_kind(status) is kind


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (TransientError("timeout", kind=ErrorKind.TIMEOUT), Outcome.TRANSIENT),
        (TransientError("HTTP 503", kind=ErrorKind.HTTP_5XX, http_status=503), Outcome.TRANSIENT),
        (TransientError("HTTP 429", kind=ErrorKind.HTTP_429, http_status=429), Outcome.THROTTLED),
        (PermanentError("HTTP 404", kind=ErrorKind.HTTP_4XX, http_status=404), Outcome.PERMANENT),
        (AuthError("HTTP 401", kind=ErrorKind.HTTP_4XX, http_status=401), Outcome.AUTH),
    ],
)
def test_an_errors_outcome_comes_from_its_class_and_kind(
    error: CallError, outcome: Outcome
) -> None:
    assert outcome_of(error) is outcome


def test_an_error_keeps_its_kind_across_processes() -> None:
    error = TransientError("bad body: x", kind=ErrorKind.BAD_BODY, http_status=200, retry_after=2)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is TransientError
    assert (copy.message, copy.kind, copy.http_status, copy.retry_after) == (
        "bad body: x",
        ErrorKind.BAD_BODY,
        200,
        2,
    )


def test_parse_retry_after_both_forms() -> None:
    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after("Sat, 28 Nov 2026 12:00:42 GMT", now) == 42.0
    assert parse_retry_after("Sat, 28 Nov 2026 11:00:00 GMT", now) == 0.0  # in the past
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("", now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-5", now) is None
