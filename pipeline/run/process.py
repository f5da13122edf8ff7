"""A worker process's resources, the same for every shard it runs.

`WorkerProcess` holds the request threads, one `requests.Session` per thread (made on first
use), the partner-token source, the run's answer store for twins and the answer store kept
across runs (reuse.py), plus what each shard needs from the settings: the request mapping,
the derived columns and the result schema. `close()` releases what it built: the serial
executor calls it when the run ends (a pool's process exits, and its resources with it).
"""

from __future__ import annotations

import random
import threading
from typing import Any

from pipeline import schema
from pipeline.api import cardgenius
from pipeline.api.cards import Ranked, check_answer
from pipeline.api.client import CardGeniusClient, TokenSource, fetch_token, new_session
from pipeline.run.reuse import Reuse
from pipeline.run.tasks import WorkerSettings
from pipeline.state.answers import AnswerCache, read_repeated
from pipeline.state.store import RunLayout
from pipeline.traffic.limiter import Limiter
from pipeline.traffic.refusal import RefusalJudge


class WorkerProcess:
    """One process's threads, a `requests.Session` each, and its token; the same for every shard."""

    def __init__(self, settings: WorkerSettings, limiter: Limiter, events: Any, stop: Any):
        from concurrent.futures import ThreadPoolExecutor

        self.settings = settings
        self.limiter = limiter
        self.events = events
        self.stop = stop
        self.layout = RunLayout(settings.root)
        self.pool = ThreadPoolExecutor(settings.threads, thread_name_prefix="request")
        self.local = threading.local()
        self.clients: list[CardGeniusClient] = []
        """Every thread's client, for `close`."""
        self.clients_lock = threading.Lock()
        self.rng = random.Random()
        self.judge = RefusalJudge()
        """Whether the API refuses the run: one per process, for the shards it runs in turn."""
        endpoint = settings.endpoint
        self.tokens = TokenSource(endpoint, fetch_token) if endpoint.auth != "none" else None
        self.repeated = read_repeated(self.layout.repeated_file) if settings.dedupe else {}
        self.answers = AnswerCache(self.layout.answers_file) if self.repeated else None
        self.mapped = [api_field for api_field, _ in settings.mapping]
        self.derived = cardgenius.derived_fields(self.mapped, settings.top_n)
        cache = settings.cache
        self.reuse = Reuse(cache, self.mapped, settings.top_n) if cache is not None else None
        # What a row with the same request body copies from another's outcome.
        self.copied = {
            schema.STATUS,
            schema.HTTP_STATUS,
            schema.ERROR_KIND,
            schema.ERROR,
            schema.ANSWERED_AT,
            schema.REUSED,
        } | {name for name, _ in self.derived}
        self.result_schema = schema.result_schema(
            settings.id_column, settings.value_columns, self.derived
        )

    def client(self) -> CardGeniusClient:
        """The calling thread's client, with its own Session (made on first use)."""
        client: CardGeniusClient | None = getattr(self.local, "client", None)
        if client is None:
            endpoint = self.settings.endpoint
            client = CardGeniusClient(
                endpoint, new_session(endpoint), self.tokens, check=self.check_answer
            )
            self.local.client = client
            with self.clients_lock:
                self.clients.append(client)
        return client

    def close(self) -> None:
        """End the request threads (after their work), close every Session and the answer
        store's connection."""
        self.pool.shutdown(wait=True)
        with self.clients_lock:
            clients, self.clients = self.clients, []
        for client in clients:
            client.session.close()
        if self.answers is not None:
            self.answers.close()

    def check_answer(self, cards: list[Any]) -> Ranked:
        """An answer whose numbers the results cannot hold is unusable (retried); a usable
        one's ranking goes with it to `outcomes.answered_outcome`."""
        return check_answer(cards, self.mapped, self.settings.top_n)

    def body(self, row: dict[str, Any]) -> dict[str, float]:
        mapping = self.settings.mapping
        return cardgenius.build_body({f: tuple(row[c] for c in cols) for f, cols in mapping})
