"""Shared fixtures: a real mock CardGenius server on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.mockapi import MockServer, MockSettings


@pytest.fixture
def mock_server() -> Iterator[MockServer]:
    """A fast mock (no latency) serving in a background thread of the test process."""
    with MockServer(MockSettings(latency_ms=0, jitter_ms=0)) as server:
        yield server


@pytest.fixture(autouse=True)
def answer_store_in_a_temp_folder(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test's answer store is its own, in a temporary folder: never the user's cache
    folder, and never another test's answers (worker processes inherit the environment)."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    return folder / "cardgenius-pipeline"


@pytest.fixture
def slow_server() -> Iterator[MockServer]:
    """A mock answering in 15 +- 5 ms: slow enough to signal or kill a run mid-way."""
    with MockServer(MockSettings(latency_ms=15, jitter_ms=5)) as server:
        yield server
