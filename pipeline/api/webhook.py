"""Posting a JSON message to a webhook (Slack-compatible incoming webhooks and the like).

Only the notifier's thread calls this (ops/notify.py): one `requests.Session`, a short
timeout, and every failure turned into a `WebhookError` whose text never holds the URL (a
webhook URL is a secret: whoever has it can post to the channel).
"""

from __future__ import annotations

from typing import Any

import requests


class WebhookError(Exception):
    """The message was not accepted; the text says why, without the URL."""


def new_session() -> requests.Session:
    return requests.Session()


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
