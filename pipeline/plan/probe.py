"""The probe of `pipeline plan --probe N`: N real requests for latency and response size.

Owns sending the requests (one at a time, to the configured API or a mock started for it) and
measuring each answer; `ProbeResult` holds the measurements as plain numbers.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.api.client import (
    CardGeniusClient,
    TokenSource,
    fetch_token,
    new_session,
)
from pipeline.api.endpoint import open_endpoint
from pipeline.config import Config
from pipeline.errors import CallError


@dataclass(frozen=True)
class ProbeResult:
    sent: int
    latencies_ms: tuple[float, ...]
    """Of the answered requests."""
    request_bytes: tuple[int, ...]
    response_bytes: tuple[int, ...]
    """Uncompressed size of each 200 answer."""
    response_wire_bytes: tuple[int, ...]
    """Size of each 200 answer as it travelled (gzip-compressed when the server compressed)."""
    errors: tuple[str, ...] = ()


def mean(values: Sequence[int]) -> float:
    """The mean of a probe's measurements; 0.0 for none."""
    return sum(values) / len(values) if values else 0.0


def run_probe(
    config: Config,
    bodies: Sequence[Mapping[str, float]],
    count: int,
    *,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> ProbeResult:
    """Send `count` requests one at a time (bodies in turn), spaced to `rate_limit` if set."""
    spacing = 1.0 / config.processing.rate_limit if config.processing.rate_limit > 0 else 0.0
    sizes: list[tuple[int, int, int]] = []
    latencies: list[float] = []
    errors: list[str] = []
    with open_endpoint(config) as endpoint:
        session = new_session(endpoint)
        session.hooks["response"].append(functools.partial(_record_sizes, sizes))
        tokens = TokenSource(endpoint, fetch_token) if endpoint.auth == "partner-token" else None
        client = CardGeniusClient(endpoint, session, tokens, clock=clock)
        last = -math.inf
        try:
            for i in range(count):
                wait = last + spacing - clock()
                if wait > 0:
                    sleep(wait)
                last = clock()
                try:
                    latencies.append(client.call(bodies[i % len(bodies)]).latency_ms)
                except CallError as exc:
                    errors.append(exc.message)
        finally:
            session.close()
    return ProbeResult(
        sent=count,
        latencies_ms=tuple(latencies),
        request_bytes=tuple(s[0] for s in sizes),
        response_bytes=tuple(s[1] for s in sizes),
        response_wire_bytes=tuple(s[2] for s in sizes),
        errors=tuple(errors),
    )


def _record_sizes(sizes: list[tuple[int, int, int]], response: Any, *args: Any, **kw: Any) -> None:
    """A requests response hook: (request, response, response on the wire) bytes of a 200."""
    if response.status_code != 200 or "/token" in response.url:
        return
    body = response.content  # reads (and decompresses) the answer
    length = response.headers.get("Content-Length", "")
    wire = int(length) if length.isdigit() else int(response.raw.tell())
    request = response.request
    head = f"{request.method} {request.path_url} HTTP/1.1\r\nHost: {response.url}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items()) + "\r\n"
    sizes.append((len(head) + len(request.body or b""), len(body), wire))
