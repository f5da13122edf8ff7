"""client.py against the mock API on a real port: answers, errors, timeouts, tokens."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from pipeline.api.cardgenius import body_bytes
from pipeline.api.cards import rank
from pipeline.api.client import (
    REFUSALS_IN_A_ROW,
    CardGeniusClient,
    Endpoint,
    TokenSource,
    fetch_token,
    new_session,
    partner_urls,
)
from pipeline.errors import (
    CallError,
    CredentialsRefused,
    ErrorKind,
    PermanentError,
    TransientError,
)
from pipeline.mockapi import MockServer, MockSettings, Rule, compute_response

BODY = {"amazon_spends": 8000, "flipkart_spends": 1200, "grocery_spends_online": 3000}


def client_for(server: MockServer, **endpoint: object) -> CardGeniusClient:
    ep = Endpoint(url=server.base_url + "/cg/api/pro", **endpoint)  # type: ignore[arg-type]
    return CardGeniusClient(ep, new_session(ep))


def test_ok_answer_is_the_mock_model(mock_server: MockServer) -> None:
    answer = client_for(mock_server).call(BODY)
    assert answer.http_status == 200
    assert answer.cards == compute_response(BODY, mock_server.settings)["savings"]
    assert answer.latency_ms > 0


def test_a_body_given_as_its_bytes_is_sent_as_they_are(mock_server: MockServer) -> None:
    client = client_for(mock_server)
    assert client.call(body_bytes(BODY)).cards == client.call(BODY).cards
    assert client.call(b'{"amazon_spends":8000}').cards != client.call(BODY).cards


def test_what_the_check_makes_of_the_cards_goes_with_the_answer(mock_server: MockServer) -> None:
    ep = Endpoint(url=mock_server.base_url + "/cg/api/pro")
    client = CardGeniusClient(ep, new_session(ep), check=rank)
    answer = client.call(BODY)
    assert answer.checked == rank(answer.cards) != []


@pytest.mark.parametrize(
    ("rule", "error", "status", "kind", "text"),
    [
        (
            Rule(match={}, status=400, body='{"success": false, "message": "bad"}'),
            PermanentError,
            400,
            ErrorKind.HTTP_4XX,
            "HTTP 400: bad",
        ),
        (
            Rule(match={}, status=404, body="<html>nope</html>"),
            PermanentError,
            404,
            ErrorKind.HTTP_4XX,
            "HTTP 404",
        ),
        (
            Rule(match={}, status=503, body="<html>busy</html>"),
            TransientError,
            503,
            ErrorKind.HTTP_5XX,
            "HTTP 503",
        ),
        (Rule(match={}, status=408, body=""), TransientError, 408, ErrorKind.HTTP_4XX, "HTTP 408"),
        (
            Rule(match={}, status=200, body="<html>proxy</html>"),
            TransientError,
            200,
            ErrorKind.BAD_BODY,
            "bad body: answer is not JSON",
        ),
        (
            Rule(match={}, status=200, body='{"success": false, "message": "x"}'),
            TransientError,
            200,
            ErrorKind.BAD_BODY,
            "bad body",
        ),
    ],
)
def test_errors_are_classified(
    mock_server: MockServer,
    rule: Rule,
    error: type[CallError],
    status: int,
    kind: ErrorKind,
    text: str,
) -> None:
    mock_server.add_rule(rule)
    with pytest.raises(error) as info:
        client_for(mock_server).call(BODY)
    assert info.value.http_status == status
    assert info.value.kind is kind
    assert str(info.value).startswith(text)


def test_429_carries_retry_after(mock_server: MockServer) -> None:
    mock_server.add_rule(Rule(match={}, status=429, body="{}", headers={"Retry-After": "3"}))
    with pytest.raises(TransientError) as info:
        client_for(mock_server).call(BODY)
    assert info.value.http_status == 429
    assert info.value.kind is ErrorKind.HTTP_429
    assert info.value.retry_after == 3.0


def test_rule_fails_once_then_answers(mock_server: MockServer) -> None:
    mock_server.add_rule(Rule(match={}, status=502, body="", times=1))
    client = client_for(mock_server)
    with pytest.raises(TransientError):
        client.call(BODY)
    assert client.call(BODY).http_status == 200


def test_timeout_is_transient() -> None:
    with (
        MockServer(MockSettings(latency_ms=1000, jitter_ms=0)) as slow,
        pytest.raises(TransientError, match="timeout") as info,
    ):
        client_for(slow, timeout=0.1).call(BODY)
    assert info.value.kind is ErrorKind.TIMEOUT


def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ep = Endpoint(url=f"http://127.0.0.1:{port}/cg/api/pro", connect_timeout=1.0)
    with pytest.raises(TransientError, match="connection error") as info:
        CardGeniusClient(ep, new_session(ep)).call(BODY)
    assert info.value.http_status is None
    assert info.value.kind is ErrorKind.CONNECTION


def partner_endpoint(server: MockServer, key: str = "mock-key") -> Endpoint:
    url, token_url = partner_urls(server.base_url)
    return Endpoint(
        url=url, auth="partner-token", token_url=token_url, api_key=key, key_env="CG_KEY"
    )


def test_partner_urls() -> None:
    assert partner_urls("https://api.example/partner/cardgenius/calculate") == (
        "https://api.example/partner/cardgenius/calculate",
        "https://api.example/partner/token",
    )
    assert partner_urls("http://h:1/cg/api/pro") == (
        "http://h:1/partner/cardgenius/calculate",
        "http://h:1/partner/token",
    )


def test_partner_token_flow_and_single_flight_refresh(mock_server: MockServer) -> None:
    endpoint = partner_endpoint(mock_server)
    tokens = TokenSource(endpoint, fetch_token)
    clients = [CardGeniusClient(endpoint, new_session(endpoint), tokens) for _ in range(6)]
    expected = compute_response(BODY, mock_server.settings)["savings"]
    assert clients[0].call(BODY).cards == expected
    assert tokens.refreshes == 1

    mock_server.expire_tokens()
    results: list[object] = []
    barrier = threading.Barrier(len(clients))

    def call(client: CardGeniusClient) -> None:
        barrier.wait()
        results.append(client.call(BODY).cards)

    threads = [threading.Thread(target=call, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [expected] * len(clients)
    assert tokens.refreshes == 2  # one refresh for all six threads
    assert mock_server.stats()["by_path"]["/partner/token"] == 2


def test_wrong_key_is_refused_naming_its_variable_never_the_key(mock_server: MockServer) -> None:
    endpoint = partner_endpoint(mock_server, key="s3cret-key")
    client = CardGeniusClient(endpoint, new_session(endpoint), TokenSource(endpoint, fetch_token))
    with pytest.raises(CredentialsRefused) as info:
        client.call(BODY)
    assert info.value.http_status == 401
    assert str(info.value) == (
        "the token endpoint refused the key in CG_KEY (HTTP 401: Invalid API key)"
    )
    assert "s3cret" not in repr(endpoint)


@pytest.mark.parametrize("status", [401, 403])
def test_a_401_or_403_that_a_fresh_token_does_not_cure_refuses_the_key(
    mock_server: MockServer, status: int
) -> None:
    endpoint = partner_endpoint(mock_server)
    tokens = TokenSource(endpoint, fetch_token)
    client = CardGeniusClient(endpoint, new_session(endpoint), tokens)
    mock_server.add_rule(Rule({}, status, '{"status": "error", "message": "Key suspended"}'))
    for _ in range(REFUSALS_IN_A_ROW - 1):  # a token may expire at once: a race, retried
        with pytest.raises(TransientError, match=f"HTTP {status}: Key suspended, with a fresh"):
            client.call(BODY)
    with pytest.raises(CredentialsRefused) as info:
        client.call(BODY)
    assert str(info.value) == (
        f"HTTP {status}: Key suspended, with a fresh token for the key in CG_KEY"
    )
    assert tokens.refreshes == 1 + REFUSALS_IN_A_ROW  # the first, then one fresh per call
    mock_server.clear_rules()
    assert client.call(BODY).cards  # one 401 that a fresh token cures is no refusal
    mock_server.add_rule(Rule({}, 401, "{}", times=1))
    assert client.call(BODY).cards


def test_token_fetch_closes_its_session(mock_server: MockServer) -> None:
    """The Session made for a token fetch is closed before the error leaves: a refused key's
    error (kept by the caller, with its traceback and so the Session) holds no connection."""
    endpoint = partner_endpoint(mock_server, key="wrong")
    with pytest.raises(CredentialsRefused) as info:
        fetch_token(endpoint)
    deadline = time.monotonic() + 5.0
    while mock_server.open_connections() and time.monotonic() < deadline:
        time.sleep(0.01)  # the server's thread sees the client's close on its next read
    assert mock_server.open_connections() == 0
    assert info.value.http_status == 401


def test_session_reads_proxies_and_ca_bundle_from_the_environment_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/corp-ca.pem")
    remote = new_session(Endpoint(url="https://api.example/cg/api/pro"))
    assert remote.trust_env is False  # no environment look-ups per call
    assert remote.proxies["https"] == "http://proxy.internal:3128"
    assert remote.verify == "/etc/corp-ca.pem"
    local = new_session(Endpoint(url="http://127.0.0.1:8765/cg/api/pro"))
    assert local.proxies == {}  # NO_PROXY honoured
    pinned = new_session(Endpoint(url="https://api.example/x", verify="/etc/own.pem"))
    assert pinned.verify == "/etc/own.pem"  # [api] ca_bundle wins
