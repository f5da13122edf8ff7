"""The partner token of one worker process, shared by its threads, and when a refused
token means a refused key.

After a 401 each thread calls `refresh(stale)`: the first one fetches a new token, the others
wait for it and reuse it (single flight). `refused_in_a_row` counts the fresh tokens (each
once, however many threads used it) refused since the last answer: one can be a token that
expired at once (a race); `REFUSALS_IN_A_ROW` of them are a key the API refuses.

No HTTP here: the client passes the fetch (client.fetch_token), the tests a function of theirs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a type only: client.py imports this module
    from pipeline.api.client import Endpoint

REFUSALS_IN_A_ROW = 3


class TokenSource:
    def __init__(self, endpoint: Endpoint, fetch: Callable[[Endpoint], str]) -> None:
        self._endpoint = endpoint
        self._fetch = fetch
        self._lock = threading.Lock()
        self._token: str | None = None
        self.refreshes = 0
        self.refused_in_a_row = 0
        self._last_refused: str | None = None

    def refused(self, token: str) -> int:
        """A call with the fresh `token` was refused: fresh tokens refused in a row."""
        with self._lock:
            if token != self._last_refused:
                self._last_refused = token
                self.refused_in_a_row += 1
            return self.refused_in_a_row

    def get(self) -> str:
        with self._lock:
            if self._token is None:
                self._token = self._fetch(self._endpoint)
                self.refreshes += 1
            return self._token

    def refresh(self, stale: str) -> str:
        with self._lock:
            if self._token == stale or self._token is None:
                self._token = self._fetch(self._endpoint)
                self.refreshes += 1
            return self._token
