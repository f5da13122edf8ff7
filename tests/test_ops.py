"""The operating side's parts: alert policies (fake clock), the control levers on real shared
limits, the status facts read back, and the views that draw them."""

from __future__ import annotations

import io
import json
import multiprocessing
import threading
from pathlib import Path

import pytest
from rich.console import Console

from pipeline.config import build_config
from pipeline.errors import ConfigError, PipelineError
from pipeline.ops import alerts, control
from pipeline.ops.notify import webhook_url
from pipeline.state.channel import post_command
from pipeline.state.store import RunLayout
from pipeline.traffic.limiter import Limiter
from pipeline.traffic.shared import SharedLimits
from pipeline.traffic.watch import TrafficWatch
from pipeline.view.facts import Facts, WorkerLine, facts_from_record, progress_line
from pipeline.view.frame import render_facts
from pipeline.view.progress import RunSnapshot

REQUEST = {"amazon_spends": "amazon"}


def test_milestones_each_step_once_and_none_at_the_end() -> None:
    steps = alerts.Milestones(25.0, done=0, total=200)
    assert steps.reached(49, 200) == []
    assert steps.reached(50, 200) == [25.0]
    assert steps.reached(60, 200) == []
    assert steps.reached(199, 200) == [50.0, 75.0]  # a jump crosses several, in order
    assert steps.reached(200, 200) == []  # 100% is the `finished` message


def test_milestones_of_a_resumed_run_start_after_what_was_done() -> None:
    assert alerts.Milestones(25.0, done=110, total=200).reached(160, 200) == [75.0]
    assert alerts.Milestones(0.0, done=0, total=200).reached(200, 200) == []


def test_stall_said_once_not_while_paused_and_moving_again() -> None:
    watch = alerts.StallWatch(after=60.0, now=0.0)
    assert watch.update(10, paused=False, now=0.0) is None
    assert watch.update(10, paused=False, now=59.0) is None
    assert watch.update(10, paused=True, now=100.0) is None  # a pause restarts the count
    assert watch.update(10, paused=False, now=159.0) is None
    assert watch.update(10, paused=False, now=160.0) == alerts.STALLED
    assert watch.update(10, paused=False, now=500.0) is None  # said once
    assert watch.update(11, paused=False, now=501.0) == alerts.MOVING
    assert alerts.StallWatch(after=0.0, now=0.0).update(0, paused=False, now=1e9) is None


def test_outage_down_and_back_each_once() -> None:
    edge = alerts.OutageEdge()
    assert edge.update(False, 0.0) is None
    assert edge.update(True, 5.0) == (alerts.DOWN, 0.0)
    assert edge.update(True, 50.0) is None
    assert edge.update(False, 125.0) == (alerts.UP, 120.0)


def levers(rate: float = 40.0, adaptive: bool = True) -> TrafficWatch:
    config = build_config(
        {"request": REQUEST, "processing": {"rate_limit": rate, "adaptive": adaptive}}
    )
    limits = SharedLimits(multiprocessing.get_context("spawn"), rate, 4)
    stop = threading.Event()
    return TrafficWatch(config, Limiter(limits, stop), stop)


@pytest.mark.parametrize("adaptive", [True, False])
def test_control_commands_pull_the_levers(tmp_path: Path, adaptive: bool) -> None:
    layout = RunLayout(tmp_path)
    watch = levers(adaptive=adaptive)
    run_control = control.RunControl(layout, wall=lambda: 0.0)
    for words in (("pause",), ("rate", "5"), ("resume",)):
        post_command(layout, control.command(*words))
    post_command(layout, control.command("pause"))
    run_control(watch)  # all four, in the order they were posted
    assert watch.limiter.held() and watch.snapshot().held
    assert watch.limiter.rate() == 5.0 and watch.snapshot().rate_limit == 5.0
    watch.tick()
    assert watch.limiter.rate() <= 5.0  # adaptive control stays under the operator's rate
    assert [n.split(" ", 1)[1] for n in run_control.notes] == [
        "paused",
        "rate 5 requests/s",
        "resumed",
        "paused",
    ]
    post_command(layout, control.command("stop"))
    run_control(watch)
    assert watch.stop.is_set() and run_control.stopped
    assert not list(layout.control_dir.iterdir())


def test_bad_commands_are_refused_before_anything_is_sent() -> None:
    assert control.command("rate", "0") == {"action": "rate", "rate": 0.0}
    for words in (("rate",), ("rate", "-2"), ("rate", "nan"), ("rate", "x"), ("stop", "1")):
        with pytest.raises(PipelineError):
            control.command(*words)


def test_held_requests_wait_until_resume() -> None:
    limits = SharedLimits(multiprocessing.get_context("spawn"), 0.0, 2)
    stop = threading.Event()
    limiter = Limiter(limits, stop)
    limiter.hold()
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.append(limiter.acquire()))
    thread.start()
    thread.join(0.3)
    assert thread.is_alive() and not got
    limiter.unhold()
    thread.join(5.0)
    assert got and got[0] is not None
    limiter.hold()
    waiting = threading.Thread(target=lambda: got.append(limiter.acquire()))
    waiting.start()
    stop.set()  # a stop ends the wait: no request
    waiting.join(5.0)
    assert got[-1] is None


def known_facts() -> Facts:
    return Facts(
        total=1000,
        done=420,
        counts={"ok": 400, "failed": 20},
        errors={"http_429": 3},
        requests=430,
        retries=10,
        elapsed=65.0,
        eta=90.0,
        users_recent=4.5,
        latency=(120.0, 240.0, 300.0),
        latency_window=430,
        workers=(WorkerLine(7, "shard-00001.parquet", 20, 50, "paused"),),
        snapshot=RunSnapshot(
            in_flight=0, max_workers=8, rate_limit=5.0, held=True, notes=("11:00:01 paused",)
        ),
    )


def test_facts_read_back_from_the_status_record_are_the_same() -> None:
    facts = known_facts()
    assert facts_from_record(json.loads(json.dumps(facts.record()))) == facts
    assert facts_from_record({**facts.record(), "from_a_newer_version": 1}) == facts


def test_views_show_the_operator_pause_and_the_changes() -> None:
    facts = known_facts()
    screen = Console(file=io.StringIO(), width=100, record=True, color_system=None)
    screen.print(render_facts(facts, 100))
    text = screen.export_text()
    assert "PAUSED by the operator: `pipeline control resume` to go on" in text
    assert "control  11:00:01 paused" in text
    assert "420/1,000 users" in text and "of 5 limit" in text
    line = progress_line(facts)
    assert line.startswith("Progress: 420/1000 users processed (42.0%)")
    assert "paused by the operator" in line


def test_notify_and_metrics_keys_are_checked() -> None:
    for table, key, value in (
        ("notify", "every_percent", 150),
        ("notify", "stall_after", -1),
        ("metrics", "port", 70000),
        ("metrics", "host", " "),
    ):
        with pytest.raises(ConfigError, match=rf"\[{table}\] {key}"):
            build_config({"request": REQUEST, table: {key: value}})
    with pytest.raises(ConfigError, match="unknown key"):
        build_config({"request": REQUEST, "notify": {"url": "http://x"}})


def test_webhook_url_comes_from_the_named_variable_and_is_never_quoted() -> None:
    config = build_config({"request": REQUEST, "notify": {"webhook_env": "HOOK"}}).notify
    assert webhook_url(config, {"HOOK": "https://hooks.example/T/B/secret"}) is not None
    with pytest.raises(ConfigError, match="HOOK is not set"):
        webhook_url(config, {})
    with pytest.raises(ConfigError) as bad:
        webhook_url(config, {"HOOK": "hooks.example/secret"})
    assert "secret" not in str(bad.value)
    assert webhook_url(build_config({"request": REQUEST}).notify, {}) is None
