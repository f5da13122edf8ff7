"""The embedded simulated CardGenius API: a deterministic, local stand-in for the live service.

This package owns the mock, from catalogue to socket. It serves exactly the protocol of
`docs/cardgenius-api.md` (direct endpoints, partner token gateway, error bodies) and adds two
control routes, `GET /_mock/stats` and `POST /_mock/reset`, so a benchmark can read the counts
of a mock running in another process.

An answer is a pure function of the request body and `MockSettings`: `compute_response` tells a
test what the server will send. Faults are scripted (`Rule`), seeded (`error_rate`,
`fail_share`, jitter) or driven by the injected clock (`rate_limit` and its schedule, token
expiry), so tests stay deterministic.

The modules, from data to socket:

- `fields`: the request's spend fields and their units.
- `settings`: `MockSettings` and scripted `Rule`s.
- `catalogue`: the simulated cards, built once per settings.
- `scoring`: the savings model and request validation.
- `cardtext`: the static JSON text of every card, built once per settings.
- `render`: a response, the request's numbers spliced into that text.
- `gateway`: the rate limit, as gateways enforce it (sliding, fixed, token bucket), and the
  quota headers it sends.
- `state`: stats, partner tokens, the rule book.
- `replies`: answers as data (status, body, headers).
- `server`: `MockServer`, routes and the order of checks.
- `handler`: HTTP/1.1 keep-alive, gzip, one thread per connection.
- `process`: the mock in a spawned process, or in the foreground.

Import from here (`from pipeline.mockapi import MockServer`); the modules are the layout.
"""

from __future__ import annotations

from pipeline.mockapi.catalogue import Card, Earn, Milestone, build_catalogue
from pipeline.mockapi.fields import (
    ANNUAL_FIELDS,
    LOUNGE_VISIT_VALUE,
    MONTHLY_FIELDS,
    QUARTERLY_FIELDS,
    SPEND_FIELDS,
)
from pipeline.mockapi.gateway import (
    KINDS,
    FixedWindow,
    Gateway,
    Schedule,
    SlidingWindow,
    TokenBucket,
    Verdict,
    make_gateway,
    parse_schedule,
    retry_after_header,
)
from pipeline.mockapi.handler import accepts_gzip
from pipeline.mockapi.process import MockProcess, serve, start_mock_process
from pipeline.mockapi.render import compute_response, render_response
from pipeline.mockapi.scoring import field_savings, monthly_value, validate_body
from pipeline.mockapi.server import MockServer, always_fails
from pipeline.mockapi.settings import MAX_CARDS, MockSettings, Rule

__all__ = [
    "ANNUAL_FIELDS",
    "KINDS",
    "LOUNGE_VISIT_VALUE",
    "MAX_CARDS",
    "MONTHLY_FIELDS",
    "QUARTERLY_FIELDS",
    "SPEND_FIELDS",
    "Card",
    "Earn",
    "FixedWindow",
    "Gateway",
    "Milestone",
    "MockProcess",
    "MockServer",
    "MockSettings",
    "Rule",
    "Schedule",
    "SlidingWindow",
    "TokenBucket",
    "Verdict",
    "accepts_gzip",
    "always_fails",
    "build_catalogue",
    "compute_response",
    "field_savings",
    "make_gateway",
    "monthly_value",
    "parse_schedule",
    "render_response",
    "retry_after_header",
    "serve",
    "start_mock_process",
    "validate_body",
]
