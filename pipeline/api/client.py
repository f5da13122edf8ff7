"""The only module that speaks HTTP: one CardGenius call and its auth, fetching a partner
token, and posting a notification to a webhook (`post_json`).

`CardGeniusClient.call(body)` sends one request on the calling thread's `requests.Session` and
returns the decoded list of cards, or raises `TransientError` / `PermanentError` (pipeline.errors)
so the caller can decide about retries. With `auth = "partner-token"` a process-wide
`TokenSource` (tokens.py) fetches the token once and refreshes it (single flight) after a 401.
What the answer's status and bytes mean is answer.py's.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from pipeline.api.answer import Answer, detail, http_error, read_checked
from pipeline.api.cardgenius import body_bytes
from pipeline.api.classify import Outcome, classify_status, parse_quota, status_kind
from pipeline.api.tokens import REFUSALS_IN_A_ROW, TokenSource
from pipeline.errors import (
    AuthError,
    CredentialsRefused,
    ErrorKind,
    PermanentError,
    TransientError,
)

# Answer and the token parts live beside this module; callers keep importing them from here.
__all__ = [
    "REFUSALS_IN_A_ROW",
    "Answer",
    "CardGeniusClient",
    "Endpoint",
    "TokenSource",
    "WebhookError",
    "fetch_token",
    "new_session",
    "new_webhook_session",
    "partner_urls",
    "post_json",
]

USER_AGENT = "cardgenius-pipeline/0.1"


@dataclass(frozen=True)
class Endpoint:
    """Where and how to call; plain data, so it crosses process boundaries."""

    url: str
    """The calculate endpoint: the direct `/cg/api/pro` or the gateway's calculate URL."""
    auth: str = "none"
    token_url: str = ""
    api_key: str = ""
    key_env: str = ""
    """The environment variable the key came from: messages name it, never the key."""
    timeout: float = 30.0
    connect_timeout: float = 5.0
    verify: str | bool = True

    def __repr__(self) -> str:  # the key must never reach a log or a traceback
        return f"Endpoint(url={self.url!r}, auth={self.auth!r})"


def partner_urls(url: str) -> tuple[str, str]:
    """(calculate URL, token URL) for the partner gateway at `url`.

    `url` may be the gateway's calculate URL (`.../partner/cardgenius/calculate`) or just its
    origin; the token URL is `/partner/token` beside it.
    """
    parts = urlsplit(url)
    path = parts.path
    prefix = path[: path.index("/partner/")] if "/partner/" in path else path.rstrip("/")
    if prefix.endswith(("/cg/api/pro", "/cg/api/beta")):
        prefix = prefix.rsplit("/cg/api/", 1)[0]

    def at(p: str) -> str:
        return urlunsplit((parts.scheme, parts.netloc, prefix + p, "", ""))

    return at("/partner/cardgenius/calculate"), at("/partner/token")


def fetch_token(endpoint: Endpoint, session: requests.Session | None = None) -> str:
    """POST the key to the token URL; the JWT from the answer. Errors never show the key."""
    # A Session made here is closed before this returns. Tokens are fetched once a process
    # (and after a 401), so the connection is not kept either ("Connection: close"): a refused
    # key's error keeps this frame, and so the Session, alive in its traceback.
    with contextlib.ExitStack() as stack:
        http = session or stack.enter_context(requests.Session())
        try:
            response = http.post(
                endpoint.token_url,
                json={"x-api-key": endpoint.api_key},
                headers={"Connection": "close"},
                timeout=(endpoint.connect_timeout, endpoint.timeout),
                verify=endpoint.verify,
            )
        except requests.RequestException as exc:
            failed = f"token request failed: {type(exc).__name__}"
            kind = ErrorKind.TIMEOUT if isinstance(exc, requests.Timeout) else ErrorKind.CONNECTION
            raise TransientError(failed, kind=kind) from None
        with response:
            status, content = response.status_code, response.content
    if status in (401, 403):
        raise CredentialsRefused(
            f"the token endpoint refused the key in {endpoint.key_env or 'the environment'} "
            f"(HTTP {status}{detail(content)})",
            kind=ErrorKind.HTTP_4XX,
            http_status=status,
        )
    outcome = classify_status(status)
    if outcome is not Outcome.SUCCESS:
        refused = outcome in (Outcome.PERMANENT, Outcome.AUTH)
        raise (PermanentError if refused else TransientError)(
            f"token request answered HTTP {status}{detail(content)}",
            kind=status_kind(status),
            http_status=status,
        )
    try:
        token = json.loads(content)["data"]["jwttoken"]
    except (ValueError, KeyError, TypeError):
        token = None
    if not isinstance(token, str) or not token:
        raise TransientError(
            "token answer has no data.jwttoken", kind=ErrorKind.BAD_BODY, http_status=status
        )
    return token


class CardGeniusClient:
    """Calls the API for one thread: its own Session, the process's TokenSource.

    Every call is the same POST but for its body and token, so the request is prepared once
    (the Session's headers merged in) and each call sends a copy with `Session.send`: the
    prepared-request flow of requests' documentation. `Session.post` would merge the settings
    and check types again on every call, a cost per request (BENCHMARKS.md). The environment
    is read once by `new_session`, which is what `Session.post` would add. When the API sets
    cookies, calls go through `Session.post`, which sends them back.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        session: requests.Session,
        tokens: TokenSource | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
        check: Callable[[list[Mapping[str, Any]]], Any] | None = None,
    ) -> None:
        """`check(cards)` raises BadBody for an answer its caller cannot use (see
        cards.check_answer): it is then a retried error like any unusable body. What it
        returns goes with the answer (`Answer.checked`)."""
        self.endpoint = endpoint
        self.session = session
        self.tokens = tokens
        self._clock = clock
        self._check = check
        self._wrapped = endpoint.auth == "partner-token"
        self._prepared = session.prepare_request(requests.Request("POST", endpoint.url))
        self._send_settings: dict[str, Any] = {
            "timeout": (endpoint.connect_timeout, endpoint.timeout),
            "proxies": dict(session.proxies),
            "verify": session.verify,
            "cert": session.cert,
            "stream": False,
        }

    def call(self, body: Mapping[str, Any] | bytes) -> Answer:
        """One request; a 401 or 403 refreshes the token and tries once more (not an
        attempt). A fresh token refused too is a transient error, until it happens
        `REFUSALS_IN_A_ROW` times with no answer between: then the key is refused
        (CredentialsRefused). `body`: the request body, or the bytes `body_bytes` made of it."""
        tokens = self.tokens
        token = tokens.get() if tokens else None
        try:
            answer = self._call_once(body, token)
            if tokens is not None and tokens.refused_in_a_row:
                tokens.refused_in_a_row = 0
            return answer
        except (AuthError, PermanentError) as exc:
            if exc.http_status not in (401, 403):
                raise
            if self.tokens is None or token is None:
                if isinstance(exc, AuthError):
                    raise PermanentError(
                        f"{exc.message} without partner-token auth",
                        kind=ErrorKind.HTTP_4XX,
                        http_status=401,
                    ) from None
                raise
        fresh = self.tokens.refresh(token)
        try:
            answer = self._call_once(body, fresh)
            self.tokens.refused_in_a_row = 0
            return answer
        except (AuthError, PermanentError) as exc:
            if exc.http_status not in (401, 403):
                raise
            if self.tokens.refused(fresh) < REFUSALS_IN_A_ROW:
                message = f"{exc.message}, with a fresh token"
                raise TransientError(message, kind=exc.kind, http_status=exc.http_status) from None
            raise CredentialsRefused(
                f"{exc.message}, with a fresh token for the key in "
                f"{self.endpoint.key_env or 'the environment'}",
                kind=ErrorKind.HTTP_4XX,
                http_status=exc.http_status,
            ) from None

    def _call_once(self, body: Mapping[str, Any] | bytes, token: str | None) -> Answer:
        # The bytes its key (`cardgenius.body_key`) was made from: given, or made here.
        data = body if isinstance(body, bytes) else body_bytes(body)
        started = self._clock()
        try:
            response = self._post(data, token)
            content = response.content
        except requests.Timeout:
            raise TransientError("timeout", kind=ErrorKind.TIMEOUT) from None
        except requests.RequestException as exc:
            message = f"connection error: {type(exc).__name__}"
            raise TransientError(message, kind=ErrorKind.CONNECTION) from None
        latency_ms = (self._clock() - started) * 1000.0
        status = response.status_code
        outcome = classify_status(status)
        if outcome is not Outcome.SUCCESS:
            raise http_error(outcome, status, response.headers.get("Retry-After"), content)
        cards, checked = read_checked(content, status, wrapped=self._wrapped, check=self._check)
        quota = parse_quota(response.headers, time.time())
        return Answer(cards, status, latency_ms, quota, checked)

    def _post(self, data: bytes, token: str | None) -> requests.Response:
        if self.session.cookies:
            headers = {"partner-token": token} if token else None
            timeout = self._send_settings["timeout"]
            return self.session.post(self.endpoint.url, data=data, headers=headers, timeout=timeout)
        request = self._prepared.copy()
        request.body = data
        request.headers["Content-Length"] = str(len(data))
        if token:
            request.headers["partner-token"] = token
        return self.session.send(request, **self._send_settings)


def new_session(endpoint: Endpoint) -> requests.Session:
    """A Session for one thread: JSON content type, gzip accepted, TLS per the config.

    With `trust_env` on, requests reads the proxy settings (and ~/.netrc) from the environment
    again on every call. The environment does not change during a run, so the Session reads
    it once here: the same proxies (HTTP(S)_PROXY, NO_PROXY) and CA bundle
    (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) as requests would use, without the per-call cost.
    """
    session = requests.Session()
    session.headers.update(
        {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Accept-Encoding": "gzip"}
    )
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(endpoint.url))
    verify = endpoint.verify
    if verify is True and endpoint.url.startswith("https:"):
        # Only for TLS: with a path, requests stats it on every call, to no use for http.
        verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.verify = verify
    return session


# --- webhooks (ops/notify.py's thread): the same HTTP stack, so the same proxies and CAs


class WebhookError(Exception):
    """A webhook did not take a message; the text says why, never the URL (a webhook URL is
    a secret: whoever has it can post to the channel)."""


def new_webhook_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


def post_json(session: requests.Session, url: str, body: dict[str, Any], timeout: float) -> None:
    """POST `body` as JSON; raise `WebhookError` unless the answer is a 2xx."""
    try:
        answer = session.post(url, json=body, timeout=timeout)
    except requests.Timeout:
        raise WebhookError(f"no answer within {timeout:g} s") from None
    except requests.RequestException as exc:
        raise WebhookError(f"cannot reach the webhook ({type(exc).__name__})") from None
    answer.close()
    if not 200 <= answer.status_code < 300:
        raise WebhookError(f"the webhook answered HTTP {answer.status_code}")
