"""Shared fixtures: a real mock CardGenius server on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.mockapi import MockServer, MockSettings


@pytest.fixture
def mock_server() -> Iterator[MockServer]:
    """A fast mock (no latency) serving in a background thread of the test process."""
    with MockServer(MockSettings(latency_ms=0, jitter_ms=0)) as server:
        yield server
