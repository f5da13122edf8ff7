"""`MockServer`: the simulated API's routes and answers, served from a background thread.

It serves exactly the protocol of `docs/cardgenius-api.md` (direct endpoints, partner token
gateway, error bodies) plus the control routes `GET /_mock/stats` and `POST /_mock/reset`.
`_calculate` fixes the order in which faults and checks apply to a calculate request.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from pipeline.mockapi.cardtext import _card_texts
from pipeline.mockapi.gateway import (
    Gateway,
    Schedule,
    Verdict,
    limit_headers,
    make_gateway,
    parse_schedule,
    retry_after_date,
    retry_after_header,
)
from pipeline.mockapi.handler import _HTTPServer
from pipeline.mockapi.render import render_response
from pipeline.mockapi.replies import (
    _JSON,
    _NOT_JSON,
    _error_reply,
    _json_reply,
    _parse_json,
    _Reply,
    _rule_reply,
)
from pipeline.mockapi.scoring import validate_body
from pipeline.mockapi.settings import MockSettings, Rule
from pipeline.mockapi.state import _RuleBook, _Stats, _Tokens

_Route = Callable[[bytes, "str | None"], _Reply]


def always_fails(body: object, settings: MockSettings) -> bool:
    """True for the `fail_share` of request bodies that the mock answers 500 every time: a
    pure function of the body's numbers and `seed`, so a test knows which users they are."""
    if not isinstance(body, dict):
        return False
    # The nonzero numbers only, as floats: 1200 and 1200.0, an absent field and a 0, are alike.
    spends = sorted((k, float(v)) for k, v in body.items() if isinstance(v, int | float) and v)
    text = json.dumps(spends)
    digest = hashlib.blake2b(f"{settings.seed}:{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < settings.fail_share * 2.0**64


class MockServer:
    """The simulated API on a real socket, served from a background thread.

    `clock` (monotonic seconds) times arrivals, the rate window and token expiry; `sleep`
    (seconds) is how each calculate request waits out its latency, in its own handler thread,
    so concurrent requests overlap. Routes under `/_mock/` are not counted in `stats()`.
    """

    def __init__(
        self,
        settings: MockSettings,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._address = (host, port)
        self._clock = clock
        self._sleep = sleep
        self._stats = _Stats()
        self._rules = _RuleBook()
        self._tokens = _Tokens(settings.token_ttl_s, clock)
        self._gateway: Gateway | None = None
        self._schedule = Schedule(settings.rate_limit, parse_schedule(settings.rate_schedule))
        self._first_arrival: float | None = None
        self._gateway_lock = threading.Lock()
        self._new_gateway()
        self._latency_rng = random.Random(f"latency:{settings.seed}")
        self._error_rng = random.Random(f"errors:{settings.seed}")
        self._routes: dict[str, tuple[str, _Route]] = {
            "/cg/api/pro": ("POST", functools.partial(self._calculate, beta=False, partner=False)),
            "/cg/api/beta": ("POST", functools.partial(self._calculate, beta=True, partner=False)),
            "/partner/cardgenius/calculate": (
                "POST",
                functools.partial(self._calculate, beta=False, partner=True),
            ),
            "/partner/token": ("POST", self._issue_token),
            "/_mock/stats": ("GET", lambda _body, _token: _json_reply(200, self.stats())),
            "/_mock/reset": ("POST", self._reset),
        }
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        _card_texts(settings.cards, settings.seed, settings.hostile_names)  # build it now

    # Lifecycle

    def start(self) -> MockServer:
        """Bind and serve in a daemon thread; returns once the socket listens."""
        if self._httpd is not None:
            raise RuntimeError("MockServer is already started")
        httpd = _HTTPServer(self._address, self)
        self._httpd, self._port = httpd, httpd.server_port
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"cardgenius-mock-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection; does nothing if not started."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._port is None:
            raise RuntimeError("MockServer has no port until start()")
        return self._port

    @property
    def base_url(self) -> str:
        """e.g. "http://127.0.0.1:54321"."""
        return f"http://{self._address[0]}:{self.port}"

    # Control

    def stats(self) -> dict[str, Any]:
        """{"requests", "by_path", "by_status" (keys are strings), "calculate",
        "arrivals" (clock seconds of the calculate requests, oldest first), "throttled" (the
        arrivals of those answered 429), "process_cpu_s"
        (CPU seconds used so far by the process that serves the mock)}."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        """Forget the counts; the rate limit starts afresh, its schedule from the next request."""
        self._stats.reset()
        self._new_gateway()

    def _new_gateway(self) -> None:
        s = self.settings
        with self._gateway_lock:
            self._first_arrival = None
            self._gateway = None
            if s.rate_limit > 0:
                self._gateway = make_gateway(
                    s.limit_kind, s.rate_limit, s.limit_window_s, s.limit_burst
                )

    def add_rule(self, rule: Rule) -> None:
        """Script an answer; rules are checked in the order added, before the normal answer."""
        self._rules.add(rule)

    def clear_rules(self) -> None:
        """Forget every scripted rule (the API "comes back")."""
        self._rules.clear()

    def expire_tokens(self) -> None:
        """Invalidate every partner token issued so far."""
        self._tokens.expire_all()

    def open_connections(self) -> int:
        """Client connections open now (a client that closes its socket leaves this count)."""
        httpd = self._httpd
        return httpd.open_connections() if httpd is not None else 0

    # Answers

    def _answer(self, method: str, target: str, body: bytes, token: str | None) -> _Reply:
        """Answer one request; `target` is the request path, query string included."""
        path = target.partition("?")[0]
        route = self._routes.get(path)
        if route is None:
            reply = _error_reply(404, f"No route {method} {path}", "NOT_FOUND")
        elif method != route[0]:
            reply = _error_reply(405, f"Use {route[0]} for {path}", "METHOD", {"Allow": route[0]})
        else:
            reply = route[1](body, token)
        if not path.startswith("/_mock/"):
            self._stats.answered(path, reply.status)
        return reply

    def _calculate(self, body: bytes, token: str | None, *, beta: bool, partner: bool) -> _Reply:
        """The order of checks: scripted rule, rate limit and token (answered at once, as a
        gateway would), then the latency wait, the random 500, the users that always fail,
        the body, the answer."""
        arrival = self._clock()
        self._stats.arrival(arrival)
        parsed = _parse_json(body)
        rule = self._rules.take(parsed)
        if rule is not None:
            self._wait()
            return _rule_reply(rule)
        verdict = self._admit(arrival)
        quota = self._quota_headers(verdict)
        if verdict is not None and not verdict.admitted:
            self._stats.throttled(arrival)
            return self._throttle(verdict, quota)
        if partner and not self._tokens.is_live(token):
            return _json_reply(401, {"status": "error", "message": "Token expired"})
        self._wait()
        if self.settings.error_rate and self._error_rng.random() < self.settings.error_rate:
            return _error_reply(500, "Internal error", "CALC_500")
        if self.settings.fail_share and always_fails(parsed, self.settings):
            return _error_reply(500, "Internal error", "CALC_500")
        reason = (
            "the request body is not valid JSON" if parsed is _NOT_JSON else validate_body(parsed)
        )
        if reason is not None or not isinstance(parsed, dict):
            return _error_reply(400, reason or "bad body", "CALC_001")
        answer = render_response(parsed, self.settings, beta=beta)
        if partner:
            answer = b'{"status":"success","message":"","data":' + answer + b"}"
        return _Reply(200, answer, {**_JSON, **quota}) if quota else _Reply(200, answer)

    def _admit(self, arrival: float) -> Verdict | None:
        """The gateway's verdict (None without a rate limit), at the scheduled rate."""
        with self._gateway_lock:
            gateway = self._gateway
            if gateway is None:
                return None
            if self._first_arrival is None:
                self._first_arrival = arrival
            rate = self._schedule.rate_at(arrival - self._first_arrival)
            if rate != gateway.rate:
                gateway.set_rate(rate)
        return gateway.admit(arrival)

    def _quota_headers(self, verdict: Verdict | None) -> dict[str, str]:
        style = self.settings.limit_headers
        if verdict is None or style == "none":
            return {}
        return limit_headers(verdict, "RateLimit" if style == "ietf" else "X-RateLimit")

    def _throttle(self, verdict: Verdict, quota: dict[str, str]) -> _Reply:
        """The 429: Retry-After in seconds, as a date, or none, as the settings say."""
        assert self._gateway is not None
        message = f"Too many requests: the limit is {self._gateway.rate:g} requests/s"
        headers = dict(quota)
        if self.settings.retry_after == "seconds":
            headers["Retry-After"] = retry_after_header(verdict.wait_s)
        elif self.settings.retry_after == "date":
            headers["Retry-After"] = retry_after_date(verdict.wait_s)
        return _error_reply(429, message, "CALC_429", headers)

    def _wait(self) -> None:
        """Wait latency_ms +- jitter_ms (uniform, never below 0) with the injected sleep."""
        latency, jitter = self.settings.latency_ms, self.settings.jitter_ms
        if latency == 0 and jitter == 0:
            return
        delay_ms = max(0.0, latency + self._latency_rng.uniform(-jitter, jitter))
        self._sleep(delay_ms / 1000)

    def _issue_token(self, body: bytes, _token: str | None) -> _Reply:
        parsed = _parse_json(body)
        key = parsed.get("x-api-key") if isinstance(parsed, dict) else None
        if key != self.settings.api_key:
            return _json_reply(401, {"status": "error", "message": "Invalid API key"})
        return _json_reply(200, {"status": "success", "message": "", "data": self._tokens.issue()})

    def _reset(self, _body: bytes, _token: str | None) -> _Reply:
        self.reset_stats()
        return _json_reply(200, {"status": "success", "message": "stats reset"})
