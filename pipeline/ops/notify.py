"""Notifications: a message to a webhook when a run starts, moves on, needs someone, or ends.

`[notify] webhook_env` names the environment variable that holds the webhook's URL (a secret:
it is never logged). Each message is a JSON object with `text` (what Slack and most chat
webhooks show) plus `event` and structured `fields` for other receivers. Messages carry counts,
times, paths and exit codes: never the API key, never a user's id or values.

Sending never holds the run up: `Notifier.send` puts the message on a queue and returns; the
notifier's own thread posts it with a short timeout and a few tries, then drops it and logs
that it did. At the end of a run `close` gives the last messages a few seconds to go out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.api.client import WebhookError, new_webhook_session, post_json
from pipeline.config import NotifyConfig
from pipeline.errors import ConfigError

log = logging.getLogger("pipeline")

SEND_TIMEOUT = 3.0
"""Seconds to wait for the webhook's answer."""
TRIES = 3
RETRY_PAUSE = 0.5
"""Seconds before the second try; doubled before each next one."""
FLUSH_SECONDS = 3.0
"""How long the end of a run waits for the last messages to go out."""
QUEUE_SIZE = 100


def webhook_url(config: NotifyConfig, environ: Mapping[str, str] = os.environ) -> str | None:
    """The webhook's URL from the environment; None when notifications are off."""
    if not config.webhook_env:
        return None
    url = environ.get(config.webhook_env, "").strip()
    where = f"[notify] webhook_env = {config.webhook_env!r}"
    if not url:
        raise ConfigError(
            f"{where}: the environment variable {config.webhook_env} is not set; set it to "
            'the webhook\'s URL, or set webhook_env = "" to send no notifications'
        )
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: its value must start with http:// or https://")
    return url


@dataclass(frozen=True)
class Message:
    event: str
    """started, progress, finished, stopped, stalled, moving, api_down, api_up."""
    text: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"text": self.text, "event": self.event, "fields": dict(self.fields)}


Post = Callable[[Any, str, dict[str, Any], float], None]


class Notifier:
    """Posts messages on its own thread, in order; `send` never blocks."""

    def __init__(
        self,
        url: str,
        *,
        post: Post = post_json,
        timeout: float = SEND_TIMEOUT,
        tries: int = TRIES,
        pause: float = RETRY_PAUSE,
    ) -> None:
        self._url = url
        self._post = post
        self._timeout = timeout
        self._tries = tries
        self._pause = pause
        self._queue: queue.Queue[Message | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._abandon = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="notifier", daemon=True)
        self._thread.start()

    def send(self, message: Message) -> None:
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            log.warning(
                "Notification %r dropped: %d messages wait to be sent.", message.event, QUEUE_SIZE
            )

    def close(self, wait: float = FLUSH_SECONDS) -> None:
        """Send what is queued, for at most `wait` seconds; then drop the rest."""
        with contextlib.suppress(queue.Full):  # full: the thread is stuck; it is dropped below
            self._queue.put(None, timeout=wait)
        self._thread.join(wait)
        if self._thread.is_alive():
            self._abandon.set()
            log.warning("Notifications not sent within %g s of the end: dropped.", wait)

    def _loop(self) -> None:
        session = new_webhook_session()
        try:
            while (message := self._queue.get()) is not None:
                if not self._abandon.is_set():
                    self._deliver(session, message)
        finally:
            session.close()

    def _deliver(self, session: Any, message: Message) -> None:
        error: WebhookError | None = None
        for attempt in range(self._tries):
            if attempt and self._abandon.wait(self._pause * 2 ** (attempt - 1)):
                break
            try:
                self._post(session, self._url, message.body(), self._timeout)
            except WebhookError as exc:
                error = exc
                continue
            log.debug("Notification sent: %s", message.event)
            return
        log.warning("Notification %r not sent (%s); dropped.", message.event, error)
