"""The endpoint a run calls: the partner's, or the embedded mock API started for the run.

`open_endpoint(config)` yields the `Endpoint` (url, auth flow, token url, key, timeouts) the
workers and the probe use; with `[api] mock = true` it starts the mock in its own process
first and stops it when the block ends. The key comes from the environment variable that
`[api] key_env` names, and is never logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

from pipeline.api.client import Endpoint, partner_urls
from pipeline.config import Config
from pipeline.errors import ConfigError

log = logging.getLogger("pipeline")


def identity(config: Config) -> dict[str, Any]:
    """What decides the answers of the endpoint the config calls: the auth flow, and the URL
    or, for the mock, its catalogue (its latency and faults do not change an answer). Part of
    the run's fingerprint and of the answer store's key: a mock answer never answers a real
    run."""
    found: dict[str, Any] = {"auth": config.api.auth}
    if config.api.mock:
        found.update(mock=True, cards=config.mock.cards, seed=config.mock.seed)
    else:
        found.update(url=config.api.url)
    return found


def identity_text(config: Config) -> str:
    return json.dumps(identity(config), sort_keys=True, separators=(",", ":"))


def mock_settings(config: Config) -> Any:
    from pipeline.mockapi import MockSettings

    m = config.mock
    return MockSettings(
        latency_ms=m.latency_ms,
        jitter_ms=m.jitter_ms,
        error_rate=m.error_rate,
        fail_share=m.fail_share,
        rate_limit=m.rate_limit,
        limit_kind=m.limit_kind,
        limit_window_s=m.limit_window,
        limit_burst=m.limit_burst,
        retry_after=m.retry_after,
        limit_headers=m.limit_headers,
        rate_schedule=m.rate_schedule,
        cards=m.cards,
        seed=m.seed,
    )


def check_key(config: Config) -> None:
    """Raise ConfigError when partner-token auth has no key to send (the mock has its own).
    A run checks this before it writes anything: a usage error leaves no state."""
    api = config.api
    if api.auth == "partner-token" and not api.mock and not os.environ.get(api.key_env):
        raise ConfigError(f"[api] key_env: environment variable {api.key_env} is not set")


@contextlib.contextmanager
def open_endpoint(config: Config) -> Iterator[Endpoint]:
    """The endpoint to call; with `[api] mock = true`, a mock API started for the run."""
    api = config.api
    key = os.environ.get(api.key_env, "")
    verify: str | bool = api.ca_bundle or True
    with contextlib.ExitStack() as stack:
        url = api.url
        if api.mock:
            from pipeline import mockapi

            settings = mock_settings(config)
            mock = stack.enter_context(mockapi.start_mock_process(settings))
            url = mock.base_url + "/cg/api/pro"
            key = key or settings.api_key
            log.info("Started the mock CardGenius API on %s", mock.base_url)
        token_url = ""
        if api.auth == "partner-token":
            check_key(config)
            url, token_url = partner_urls(url)
        yield Endpoint(
            url=url,
            auth=api.auth,
            token_url=token_url,
            api_key=key,
            key_env=api.key_env,
            timeout=api.timeout,
            connect_timeout=api.connect_timeout,
            verify=verify,
        )
