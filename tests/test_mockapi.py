"""The embedded mock API, against a real server on a loopback port, with real HTTP calls."""

from __future__ import annotations

import gzip
import http.client
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from pipeline.mockapi import (
    ANNUAL_FIELDS,
    LOUNGE_VISIT_VALUE,
    MONTHLY_FIELDS,
    SPEND_FIELDS,
    Card,
    Earn,
    MockServer,
    MockSettings,
    Rule,
    SlidingWindow,
    accepts_gzip,
    always_fails,
    build_catalogue,
    compute_response,
    field_savings,
    monthly_value,
    render_response,
    retry_after_header,
    serve,
    start_mock_process,
    validate_body,
)

FAST = MockSettings(latency_ms=0, jitter_ms=0)
PRO = "/cg/api/pro"
FULL_BODY: dict[str, object] = {
    **{name: 2000 + 500 * i for i, name in enumerate(MONTHLY_FIELDS)},
    **{name: 60000 for name in ANNUAL_FIELDS},
    "domestic_lounge_usage_quarterly": 2,
    "international_lounge_usage_quarterly": 1,
    "selected_card_id": None,
}


class FakeClock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer(FAST) as mock:
        yield mock


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False
        yield s


def post(
    session: requests.Session, server: MockServer, path: str, body: object, **kwargs: Any
) -> requests.Response:
    return session.post(server.base_url + path, json=body, timeout=10, **kwargs)


def find_earn(catalogue: list[Card], wanted: Callable[[Earn], bool]) -> tuple[Card, Earn]:
    """The first (card, earn) of the catalogue for which `wanted(earn)` holds."""
    for card in catalogue:
        for earn in card.earn:
            if wanted(earn):
                return card, earn
    raise AssertionError("no card in the catalogue has such an earn rate")


def only_card(body: dict[str, object], settings: MockSettings = FAST) -> dict[str, Any]:
    cards = compute_response(body, settings)["savings"]
    assert len(cards) == 1
    card: dict[str, Any] = cards[0]
    return card


# --- Settings, rules and small pure pieces --------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("latency_ms", -1),
        ("jitter_ms", float("nan")),
        ("error_rate", 1.5),
        ("fail_share", -0.1),
        ("fail_share", 2),
        ("rate_limit", -0.1),
        ("cards", 0),
        ("cards", 101),
        ("cards", True),
        ("seed", 1.5),
        ("api_key", ""),
        ("token_ttl_s", 0),
    ],
)
def test_settings_reject_impossible_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        MockSettings(**{field: value})  # type: ignore[arg-type]


def test_rule_rejects_bad_status_and_times() -> None:
    with pytest.raises(ValueError, match="status"):
        Rule({}, 99, "")
    with pytest.raises(ValueError, match="times"):
        Rule({}, 500, "", times=0)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip, deflate", True),
        ("deflate, GZIP;q=0.5", True),
        ("gzip;q=0", False),
        ("identity", False),
        ("", False),
    ],
)
def test_accepts_gzip(header: str, expected: bool) -> None:
    assert accepts_gzip(header) is expected


def test_retry_after_is_whole_seconds_rounded_up_at_least_one() -> None:
    assert [retry_after_header(s) for s in (0.01, 1.0, 1.2, 2.9)] == ["1", "1", "2", "3"]


def test_sliding_window_admits_the_rate_per_second_then_frees_up() -> None:
    window = SlidingWindow(2)
    assert [window.admit(10.0).wait_s, window.admit(10.4).wait_s] == [0.0, 0.0]
    assert window.admit(10.5).wait_s == pytest.approx(0.5)  # the first slot frees at 11.0
    assert window.admit(11.0).wait_s == 0.0
    slow = SlidingWindow(0.5)  # one request per 2 seconds
    assert slow.admit(0.0).wait_s == 0.0
    assert slow.admit(1.0).wait_s == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([1, 2], "JSON object"),
        ("text", "JSON object"),
        ({"amazon_spends": "100"}, "amazon_spends must be a number"),
        ({"fuel": True}, "fuel must be a number"),
        ({"rent": -5}, "rent must not be negative"),
        ({"hotels_annual": float("inf")}, "hotels_annual must be a finite number"),
        ({"fuel": None}, "fuel must be a number"),
        ({"selected_card_id": "114"}, "selected_card_id"),
        ({"selected_card_id": 1.5}, "selected_card_id"),
    ],
)
def test_validate_body_gives_the_reason(body: object, reason: str) -> None:
    message = validate_body(body)
    assert message is not None and reason in message


def test_validate_body_accepts_valid_bodies_and_ignores_unknown_keys() -> None:
    assert validate_body(FULL_BODY) is None
    assert validate_body({"amazon_spends": 10.5, "selected_card_id": 114, "x": "y"}) is None
    assert validate_body({}) is None


def test_monthly_value_units() -> None:
    assert monthly_value("amazon_spends", 8000) == 8000
    assert monthly_value("flights_annual", 120000) == 10000
    assert (
        monthly_value("domestic_lounge_usage_quarterly", 3)
        == LOUNGE_VISIT_VALUE["domestic_lounge_usage_quarterly"]
    )


# --- Catalogue -----------------------------------------------------------------------------


def test_catalogue_is_deterministic_and_varied() -> None:
    catalogue = build_catalogue(15, seed=0)
    assert catalogue == build_catalogue(15, seed=0)
    assert catalogue != build_catalogue(15, seed=1)
    ids = [card.id for card in catalogue]
    assert len(set(ids)) == 15 and all(isinstance(i, int) and i >= 100 for i in ids)
    assert len({card.card_name for card in catalogue}) == 15
    fees = [card.joining_fees for card in catalogue]
    assert all(0 <= fee <= 10000 for fee in fees) and fees.count(0) >= 2
    assert all(card.earn for card in catalogue)
    assert any(card.welcome_cash == 0 for card in catalogue)


def test_about_one_card_in_13_answers_null_money() -> None:
    assert sum(card.null_savings for card in build_catalogue(15, 0)) >= 1
    assert 6 <= sum(card.null_savings for card in build_catalogue(100, 0)) <= 9


def test_hostile_names_only_rename_cards() -> None:
    plain = build_catalogue(15, 0)
    hostile = build_catalogue(15, 0, hostile_names=True)
    assert {name.card_name[0] for name in hostile} >= {"=", "+", "-", "@"}
    assert [c.earn for c in hostile] == [c.earn for c in plain]
    names = [
        c["card_name"]
        for c in compute_response(FULL_BODY, MockSettings(hostile_names=True))["savings"]
    ]
    assert names == [card.card_name for card in hostile]
    assert '=HYPERLINK("http://x","Card")' in names


# --- The answer ----------------------------------------------------------------------------


def test_same_body_same_answer_across_servers_with_the_same_seed(
    server: MockServer, session: requests.Session
) -> None:
    first = post(session, server, PRO, FULL_BODY)
    with MockServer(FAST) as other:
        second = post(session, other, PRO, FULL_BODY)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert first.json() == compute_response(FULL_BODY, FAST)
    assert first.json()["success"] is True
    assert first.json()["message"] == "Savings calculated successfully"


def test_money_arithmetic_of_every_card() -> None:
    catalogue = {card.id: card for card in build_catalogue(100, 0)}
    answer = compute_response(FULL_BODY, MockSettings(cards=100))
    assert [c["id"] for c in answer["savings"]] == list(catalogue)  # catalogue order, unsorted
    for got in answer["savings"]:
        card = catalogue[got["id"]]
        breakdown = got["spending_breakdown"]
        assert list(breakdown) == [earn.field for earn in card.earn]
        assert got["spending_breakdown_array"] == list(breakdown.values())
        assert got["total_savings"] == sum(item["savings"] for item in breakdown.values())
        assert got["joining_fees"] == str(card.joining_fees)
        if card.null_savings:
            assert got["total_savings_yearly"] is None and got["total_extra_benefits"] is None
        else:
            assert got["total_savings_yearly"] == 12 * got["total_savings"]
            assert got["roi"] == got["total_savings_yearly"] - card.joining_fees
            assert isinstance(got["total_extra_benefits"], int)
    nulls = [c for c in answer["savings"] if c["total_savings_yearly"] is None]
    assert nulls and all(catalogue[c["id"]].null_savings for c in nulls)


def test_monthly_savings_are_capped() -> None:
    catalogue = build_catalogue(100, 0)
    card, earn = find_earn(catalogue, lambda e: e.cap is not None and e.field in MONTHLY_FIELDS)
    item = only_card(
        {earn.field: 10_000_000, "selected_card_id": card.id}, MockSettings(cards=100)
    )["spending_breakdown"][earn.field]
    assert item["savings"] == earn.cap and item["maxCap"] == earn.cap
    assert item["spend"] == 10_000_000


def test_uncapped_savings_are_spend_times_rate() -> None:
    catalogue = build_catalogue(100, 0)
    card, earn = find_earn(catalogue, lambda e: e.cap is None and e.field in MONTHLY_FIELDS)
    got = only_card({earn.field: 10_000, "selected_card_id": card.id}, MockSettings(cards=100))
    assert got["spending_breakdown"][earn.field]["savings"] == round(10_000 * earn.rate)
    assert got["spending_breakdown"][earn.field]["maxCap"] is None


def test_annual_fields_count_a_twelfth_and_lounge_visits_a_third() -> None:
    settings = MockSettings(cards=100)
    catalogue = build_catalogue(100, 0)
    card, earn = find_earn(catalogue, lambda e: e.field in ANNUAL_FIELDS)
    got = only_card({earn.field: 120_000, "selected_card_id": card.id}, settings)
    assert got["spending_breakdown"][earn.field]["spend"] == 10_000
    assert got["total_savings"] == field_savings(earn, 10_000)
    card, earn = find_earn(catalogue, lambda e: e.field in LOUNGE_VISIT_VALUE)
    got = only_card({earn.field: 3, "selected_card_id": card.id}, settings)
    visit = LOUNGE_VISIT_VALUE[earn.field]
    assert earn.cap is not None
    assert got["total_savings"] == min(visit, earn.cap)  # 3 visits a quarter = 1 a month


def test_a_field_without_a_rate_has_no_breakdown_item() -> None:
    catalogue = build_catalogue(15, 0)
    card = next(c for c in catalogue if "amazon_spends" not in {e.field for e in c.earn})
    got = only_card({"amazon_spends": 8000, "selected_card_id": card.id})
    assert "amazon_spends" not in got["spending_breakdown"]
    assert got["total_savings"] == 0


@pytest.mark.parametrize(
    "body",
    [{}, dict.fromkeys(SPEND_FIELDS, 0), {"unknown": 5}, {"selected_card_id": None}],
)
def test_no_spend_means_no_cards(
    server: MockServer, session: requests.Session, body: dict[str, object]
) -> None:
    response = post(session, server, PRO, body)
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "message": "Savings calculated successfully",
        "savings": [],
    }


def test_selected_card_id_answers_that_card_alone() -> None:
    card = build_catalogue(15, 0)[3]
    got = only_card({**FULL_BODY, "selected_card_id": card.id})
    assert got["id"] == card.id and got["card_name"] == card.card_name
    assert compute_response({**FULL_BODY, "selected_card_id": 99_999}, FAST)["savings"] == []


def test_beta_adds_recommended_redemption_options(
    server: MockServer, session: requests.Session
) -> None:
    beta = post(session, server, "/cg/api/beta", FULL_BODY).json()
    assert beta == compute_response(FULL_BODY, FAST, beta=True)
    assert all(card["recommended_redemption_options"] for card in beta["savings"])
    pro = compute_response(FULL_BODY, FAST)
    assert all("recommended_redemption_options" not in card for card in pro["savings"])


def test_response_sizes_match_the_live_api() -> None:
    assert 25_000 <= len(render_response(FULL_BODY, FAST)) <= 45_000
    assert 800_000 <= len(render_response(FULL_BODY, MockSettings(cards=100))) <= 1_500_000


# --- HTTP behaviour ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"{not json", b"[1, 2]", b'{"amazon_spends": "8000"}', b'{"fuel": -1}', b'{"rent": true}'],
)
def test_bad_bodies_get_400(server: MockServer, session: requests.Session, data: bytes) -> None:
    response = session.post(server.base_url + PRO, data=data, timeout=10)
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False and body["error_code"] == "CALC_001" and body["message"]


def test_unknown_path_404_and_wrong_method_405(
    server: MockServer, session: requests.Session
) -> None:
    assert session.get(server.base_url + "/nope", timeout=10).status_code == 404
    response = session.get(server.base_url + PRO, timeout=10)
    assert response.status_code == 405 and response.headers["Allow"] == "POST"


def test_gzip_when_asked_with_content_length(server: MockServer, session: requests.Session) -> None:
    expected = render_response(FULL_BODY, FAST)
    with post(
        session, server, PRO, FULL_BODY, headers={"Accept-Encoding": "gzip"}, stream=True
    ) as r:
        raw = r.raw.read(decode_content=False)
        assert r.headers["Content-Encoding"] == "gzip"
        assert int(r.headers["Content-Length"]) == len(raw) < len(expected) / 3
    assert gzip.decompress(raw) == expected
    with post(session, server, PRO, FULL_BODY, headers={"Accept-Encoding": "identity"}) as r:
        assert "Content-Encoding" not in r.headers
        assert int(r.headers["Content-Length"]) == len(r.content)
        assert r.content == expected


def test_connections_are_kept_alive(server: MockServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        sockets = []
        for _ in range(2):
            conn.request("POST", PRO, body=json.dumps(FULL_BODY).encode())
            response = conn.getresponse()
            assert response.status == 200 and not response.will_close
            response.read()
            sockets.append(conn.sock)
        assert sockets[0] is sockets[1] is not None
    finally:
        conn.close()


def test_stop_closes_idle_keep_alive_connections_quickly(session: requests.Session) -> None:
    mock = MockServer(FAST).start()
    assert post(session, mock, PRO, FULL_BODY).status_code == 200  # leaves a connection open
    started = time.monotonic()
    mock.stop()
    assert time.monotonic() - started < 2


# --- Partner token gateway -----------------------------------------------------------------


def test_partner_token_flow(server: MockServer, session: requests.Session) -> None:
    wrong = post(session, server, "/partner/token", {"x-api-key": "nope"})
    assert wrong.status_code == 401
    assert wrong.json() == {"status": "error", "message": "Invalid API key"}

    issued = post(session, server, "/partner/token", {"x-api-key": "mock-key"})
    assert issued.status_code == 200
    assert issued.json()["status"] == "success"
    token = issued.json()["data"]["jwttoken"]
    assert issued.json()["data"]["expiresAt"].endswith("Z")

    calculate = "/partner/cardgenius/calculate"
    missing = post(session, server, calculate, FULL_BODY)
    assert missing.status_code == 401
    assert missing.json() == {"status": "error", "message": "Token expired"}

    answer = post(session, server, calculate, FULL_BODY, headers={"partner-token": token})
    assert answer.status_code == 200
    expected = {"status": "success", "message": "", "data": compute_response(FULL_BODY, FAST)}
    assert answer.json() == expected

    server.expire_tokens()
    expired = post(session, server, calculate, FULL_BODY, headers={"partner-token": token})
    assert expired.status_code == 401


def test_partner_tokens_expire_after_their_ttl(session: requests.Session) -> None:
    clock = FakeClock()
    settings = MockSettings(latency_ms=0, jitter_ms=0, token_ttl_s=60)
    with MockServer(settings, clock=clock) as mock:
        token = post(session, mock, "/partner/token", {"x-api-key": "mock-key"}).json()["data"]
        headers = {"partner-token": token["jwttoken"]}
        calculate = "/partner/cardgenius/calculate"
        clock.now += 59
        assert post(session, mock, calculate, FULL_BODY, headers=headers).status_code == 200
        clock.now += 2
        assert post(session, mock, calculate, FULL_BODY, headers=headers).status_code == 401


# --- Scripted and simulated faults ---------------------------------------------------------


def test_rule_answers_once_then_the_normal_answer(
    server: MockServer, session: requests.Session
) -> None:
    server.add_rule(Rule({}, 503, "<html><body>Service Unavailable</body></html>", times=1))
    first = post(session, server, PRO, FULL_BODY)
    assert first.status_code == 503
    assert first.headers["Content-Type"].startswith("text/html")
    assert "Service Unavailable" in first.text
    second = post(session, server, PRO, FULL_BODY)
    assert second.status_code == 200 and second.json() == compute_response(FULL_BODY, FAST)


def test_rule_matching_one_user_applies_forever_and_in_order(
    server: MockServer, session: requests.Session
) -> None:
    refusal = '{"success": false, "message": "bad user", "error_code": "CALC_001"}'
    server.add_rule(Rule({"amazon_spends": 1234}, 400, refusal))
    server.add_rule(Rule({}, 429, "{}", headers={"Retry-After": "7"}, times=1))
    for _ in range(3):
        response = post(session, server, PRO, {"amazon_spends": 1234.0})
        assert response.status_code == 400 and response.json()["message"] == "bad user"
    limited = post(session, server, PRO, {"amazon_spends": 99})
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert post(session, server, PRO, {"amazon_spends": 99}).status_code == 200


def test_rate_limit_answers_429_with_integer_retry_after(session: requests.Session) -> None:
    clock = FakeClock()
    settings = MockSettings(latency_ms=0, jitter_ms=0, rate_limit=2)
    with MockServer(settings, clock=clock) as mock:
        statuses = [post(session, mock, PRO, FULL_BODY).status_code for _ in range(2)]
        refused = post(session, mock, PRO, FULL_BODY)
        assert statuses == [200, 200] and refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["success"] is False
        clock.now += 1.0
        assert post(session, mock, PRO, FULL_BODY).status_code == 200


def test_error_rate_one_fails_every_calculate_request(session: requests.Session) -> None:
    with MockServer(MockSettings(latency_ms=0, jitter_ms=0, error_rate=1.0)) as mock:
        responses = [post(session, mock, PRO, FULL_BODY) for _ in range(5)]
    assert {r.status_code for r in responses} == {500}
    assert responses[0].json() == {
        "success": False,
        "message": "Internal error",
        "error_code": "CALC_500",
    }


def test_error_draws_are_seeded(session: requests.Session) -> None:
    settings = MockSettings(latency_ms=0, jitter_ms=0, error_rate=0.5, seed=7)
    runs = []
    for _ in range(2):
        with MockServer(settings) as mock:
            runs.append([post(session, mock, PRO, FULL_BODY).status_code for _ in range(20)])
    assert runs[0] == runs[1] and set(runs[0]) == {200, 500}


def test_fail_share_fails_the_same_users_every_time(session: requests.Session) -> None:
    settings = MockSettings(latency_ms=0, jitter_ms=0, fail_share=0.3)
    bodies = [{**FULL_BODY, "amazon_spends": 1000 + i} for i in range(40)]
    with MockServer(settings) as mock:
        runs = [[post(session, mock, PRO, b).status_code for b in bodies] for _ in range(2)]
    expected = [500 if always_fails(b, settings) else 200 for b in bodies]
    assert runs[0] == runs[1] == expected
    assert 4 <= expected.count(500) <= 20  # about 30% of the users, and not all
    # The same numbers written otherwise (a float, an explicit 0) are the same user.
    assert always_fails(bodies[0], settings) == always_fails(
        {**bodies[0], "amazon_spends": 1000.0, "fuel_spends": 0}, settings
    )


def test_latency_uses_the_injected_sleep(session: requests.Session) -> None:
    sleeps: list[float] = []
    with MockServer(MockSettings(latency_ms=150, jitter_ms=50), sleep=sleeps.append) as mock:
        for _ in range(10):
            post(session, mock, PRO, FULL_BODY)
        post(session, mock, "/partner/token", {"x-api-key": "mock-key"})  # not delayed
    assert len(sleeps) == 10 and all(0.1 <= s <= 0.2 for s in sleeps)
    assert len(set(sleeps)) > 1
    negative: list[float] = []
    with MockServer(MockSettings(latency_ms=5, jitter_ms=50), sleep=negative.append) as mock:
        for _ in range(10):
            post(session, mock, PRO, FULL_BODY)
    assert all(s >= 0 for s in negative)


def test_concurrent_requests_overlap_their_latency() -> None:
    def call(url: str) -> int:
        with requests.Session() as s:
            return s.post(url, json=FULL_BODY, timeout=10).status_code

    with MockServer(MockSettings(latency_ms=200, jitter_ms=0)) as mock:
        started = time.monotonic()
        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(call, [mock.base_url + PRO] * 20))
        elapsed = time.monotonic() - started
    assert statuses == [200] * 20
    assert 0.2 <= elapsed < 2.0  # one after another would take 4 s


# --- Stats, processes, foreground ----------------------------------------------------------


def test_stats_count_requests(session: requests.Session) -> None:
    clock = FakeClock()
    with MockServer(FAST, clock=clock) as mock:
        for _ in range(3):
            post(session, mock, PRO, FULL_BODY)
            clock.now += 0.5
        post(session, mock, PRO, {"fuel": -1})
        post(session, mock, "/partner/token", {"x-api-key": "mock-key"})
        session.get(mock.base_url + "/nope", timeout=10)
        stats = mock.stats()
        assert stats["requests"] == 6
        assert stats["by_path"] == {PRO: 4, "/partner/token": 1, "/nope": 1}
        assert stats["by_status"] == {"200": 4, "400": 1, "404": 1}
        assert stats["calculate"] == 4
        assert stats["arrivals"] == [1000.0, 1000.5, 1001.0, 1001.5]
        remote = session.get(mock.base_url + "/_mock/stats", timeout=10).json()
        assert {k: v for k, v in remote.items() if k != "process_cpu_s"} == {
            k: v for k, v in stats.items() if k != "process_cpu_s"
        }
        assert session.post(mock.base_url + "/_mock/reset", timeout=10).status_code == 200
        assert mock.stats()["requests"] == 0 and mock.stats()["arrivals"] == []
        post(session, mock, PRO, FULL_BODY)
        mock.reset_stats()
        assert mock.stats()["calculate"] == 0


def test_mock_process_comes_up_serves_and_stops(session: requests.Session) -> None:
    with start_mock_process(FAST) as mock:
        assert mock.base_url == f"http://127.0.0.1:{mock.port}"
        response = session.post(mock.base_url + PRO, json=FULL_BODY, timeout=10)
        assert response.json() == compute_response(FULL_BODY, FAST)
        stats = session.get(mock.base_url + "/_mock/stats", timeout=10).json()
        assert stats["calculate"] == 1
    with pytest.raises(requests.ConnectionError):
        requests.post(mock.base_url + PRO, json=FULL_BODY, timeout=2)


def test_mock_process_ends_when_its_parent_dies() -> None:
    parent = (
        "import os\n"
        "from pipeline.mockapi import MockSettings, start_mock_process\n"
        "mock = start_mock_process(MockSettings(latency_ms=0, jitter_ms=0))\n"
        "print(mock.base_url, flush=True)\n"
        "os._exit(0)  # no cleanup: the mock must notice on its own\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", parent], capture_output=True, text=True, timeout=30, check=True
    )
    url = done.stdout.strip()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/_mock/stats", timeout=1).close()
        except requests.ConnectionError:
            return
        time.sleep(0.05)
    raise AssertionError(f"the orphaned mock at {url} is still serving")


def test_mock_process_on_a_busy_port_raises(server: MockServer) -> None:
    with pytest.raises(RuntimeError, match="could not start"):
        start_mock_process(FAST, port=server.port)


def test_serve_announces_then_serves_until_interrupted(session: requests.Session) -> None:
    announced: list[str] = []
    statuses: list[int] = []

    def client_then_interrupt() -> None:
        try:
            deadline = time.monotonic() + 10
            while not announced and time.monotonic() < deadline:
                time.sleep(0.01)
            url = announced[0].split()[4]
            statuses.append(session.post(url + PRO, json=FULL_BODY, timeout=10).status_code)
        finally:  # always, so a failure here cannot leave serve() running forever
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    # Python leaves SIGINT ignored when it starts so (pytest run as a background job of a
    # script): the test wants the usual Ctrl+C, whatever launched it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    helper = threading.Thread(target=client_then_interrupt)
    helper.start()
    try:
        serve(FAST, "127.0.0.1", 0, announce=announced.append)
    finally:
        signal.signal(signal.SIGINT, previous)
    helper.join()
    assert statuses == [200]
    assert announced[0].startswith("CardGenius mock API on http://127.0.0.1:")
    assert "15 cards, latency 0±0 ms" in announced[0]
