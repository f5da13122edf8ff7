"""Answers as data: `_Reply` (status, body, headers) and the helpers that build them.

The server decides which answer; the handler writes it to the socket.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.mockapi.cardtext import _dumps
from pipeline.mockapi.settings import Rule

_JSON = {"Content-Type": "application/json"}
_NOT_JSON = object()  # what _parse_json gives for a body that is not JSON


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=lambda: _JSON)


def _json_reply(status: int, payload: object, headers: Mapping[str, str] | None = None) -> _Reply:
    return _Reply(status, _dumps(payload).encode(), {**_JSON, **(headers or {})})


def _error_reply(
    status: int, message: str, code: str, headers: Mapping[str, str] | None = None
) -> _Reply:
    payload = {"success": False, "message": message, "error_code": code}
    return _json_reply(status, payload, headers)


def _rule_reply(rule: Rule) -> _Reply:
    headers = dict(rule.headers)
    if not any(name.lower() == "content-type" for name in headers):
        looks_json = rule.body.lstrip().startswith(("{", "["))
        headers["Content-Type"] = "application/json" if looks_json else "text/html; charset=utf-8"
    return _Reply(rule.status, rule.body.encode(), headers)


def _parse_json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _NOT_JSON
