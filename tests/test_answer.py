"""api/answer.py and api/tokens.py on their own: an answer's bytes read into cards or the
error they raise, and the partner token's single flight and refusal count (no HTTP)."""

from __future__ import annotations

import json
import threading

import pytest

from pipeline.api.answer import detail, http_error, read_cards
from pipeline.api.cards import BadBody
from pipeline.api.classify import Outcome
from pipeline.api.client import Endpoint
from pipeline.api.tokens import TokenSource
from pipeline.errors import AuthError, ErrorKind, PermanentError, TransientError

CARDS = [{"card_name": "A", "net_savings": 100}]


def body(**payload: object) -> bytes:
    return json.dumps(payload).encode()


def test_a_good_body_gives_its_cards_direct_or_wrapped() -> None:
    direct = body(success=True, savings=CARDS)
    assert read_cards(direct, 200, wrapped=False) == CARDS
    wrapped = body(status="success", data={"success": True, "savings": CARDS})
    assert read_cards(wrapped, 200, wrapped=True) == CARDS


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"<html>proxy</html>", "answer is not JSON"),
        (b'{"success": true, "savings": [{"net_savings": NaN}]}', "answer holds NaN"),
        (b"\xff\xfe", "answer is not JSON"),
        (body(success=False, message="down for upkeep"), "answer without success: true"),
    ],
)
def test_an_unusable_body_is_a_transient_bad_body(content: bytes, reason: str) -> None:
    with pytest.raises(TransientError) as raised:
        read_cards(content, 200, wrapped=False)
    assert raised.value.kind is ErrorKind.BAD_BODY and raised.value.http_status == 200
    assert raised.value.message.startswith(f"bad body: {reason}")


def test_the_callers_check_makes_an_answer_unusable() -> None:
    def check(cards: list[object]) -> None:
        raise BadBody("a card without net_savings")

    with pytest.raises(TransientError, match="bad body: a card without net_savings"):
        read_cards(body(success=True, savings=CARDS), 200, wrapped=False, check=check)


def test_errors_by_outcome_quote_the_apis_message_on_one_line() -> None:
    message = body(message="No route\n  POST /cg/api/nope")
    error = http_error(Outcome.PERMANENT, 404, None, message)
    assert (
        isinstance(error, PermanentError)
        and error.message == "HTTP 404: No route POST /cg/api/nope"
    )
    assert isinstance(http_error(Outcome.AUTH, 401, None, b""), AuthError)
    throttled = http_error(Outcome.THROTTLED, 429, "7", b"")
    assert isinstance(throttled, TransientError) and throttled.retry_after == 7.0
    assert throttled.kind is ErrorKind.HTTP_429
    assert detail(b"<html>") == "" and detail(body(message="x" * 300)) == ": " + "x" * 200


def test_one_fetch_for_threads_that_refresh_the_same_stale_token() -> None:
    fetched: list[str] = []

    def fetch(endpoint: Endpoint) -> str:
        fetched.append(f"token-{len(fetched) + 1}")
        return fetched[-1]

    tokens = TokenSource(Endpoint(url="http://127.0.0.1:1/x"), fetch)
    stale = tokens.get()
    threads = [threading.Thread(target=tokens.refresh, args=(stale,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fetched == ["token-1", "token-2"] and tokens.get() == "token-2"
    assert tokens.refused("token-2") == 1
    assert tokens.refused("token-2") == 1  # the same fresh token, refused on another thread
    assert tokens.refused("token-3") == 2
