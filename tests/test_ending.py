"""run/ending.py: how an invocation's requests ended, its exit code and the line it says."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipeline.errors import EXIT_INTERRUPTED, EXIT_OUTAGE, RefusedError
from pipeline.run.ending import Ending, stop_code
from pipeline.run.pool import PoolResult
from pipeline.run.tasks import ShardReport

ROOT = Path("out")


def test_an_unfinished_shard_is_an_interruption() -> None:
    done = [ShardReport("a", True), ShardReport("b", True)]
    assert Ending.of(PoolResult(done)).finished
    ending = Ending.of(PoolResult([ShardReport("a", True), ShardReport("b", False)]))
    assert ending.interrupted and not ending.finished
    assert Ending.of(PoolResult(done, interrupted=True)).interrupted
    assert Ending().finished  # nothing to request


def test_a_refusal_outranks_an_outage_which_outranks_an_interruption(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline")
    everything = Ending(interrupted=True, outage=True, refused="the API refused the run: x")
    with pytest.raises(RefusedError, match=r"^the API refused the run: x\. No row was marked"):
        stop_code(everything, ROOT, 600.0, retry_failed=False)
    assert stop_code(Ending(interrupted=True, outage=True), ROOT, 600.0, False) == EXIT_OUTAGE
    assert "longer than [retry] give_up_after (600 s)" in caplog.text
    assert stop_code(Ending(interrupted=True), ROOT, 600.0, True) == EXIT_INTERRUPTED
    assert "run `pipeline rerun-failed` with the same settings" in caplog.text
    assert stop_code(Ending(), ROOT, 600.0, False) is None
