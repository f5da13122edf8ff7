"""Run control: `pipeline control pause | resume | rate R | stop` steers a run that is going.

The command's side (`send`) checks that a run is going in the folder, leaves the command in
the folder's control channel (state/channel.py) and waits for the run to take it. The run's
side (`RunControl`) is called by the pool on every tick (~0.2 s): it takes the commands and
pulls the coordinator's levers (traffic/watch.py), which act on the limits every process
shares, so a change reaches every worker within a second. Each change is logged with its time
and kept as a note for the live view and `pipeline watch`.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pipeline.errors import PipelineError, RunStateError
from pipeline.state.channel import post_command, running_pid, take_commands
from pipeline.state.store import RunLayout
from pipeline.traffic.watch import TrafficWatch

log = logging.getLogger("pipeline")

ACTIONS = ("pause", "resume", "rate", "stop")
TAKE_WAIT_SECONDS = 3.0
"""How long `send` waits to see the run take its command (it looks ~5 times a second)."""
MAX_NOTES = 10


def command(action: str, value: str | None = None) -> dict[str, Any]:
    """A command from the command line's words; a bad one is a one-line error."""
    if action not in ACTIONS:
        raise PipelineError(f"control {action}: not a control command ({', '.join(ACTIONS)})")
    if action != "rate":
        if value is not None:
            raise PipelineError(f"control {action} takes no value (got {value!r})")
        return {"action": action}
    try:
        rate = float(value) if value is not None else math.nan
    except ValueError:
        rate = math.nan
    if not math.isfinite(rate) or rate < 0:
        raise PipelineError(
            f"control rate {value or ''}: give requests per second, a number of 0 or more "
            "(0 = no client-side limit), e.g. `pipeline control rate 5`"
        )
    return {"action": "rate", "rate": rate}


def send(
    layout: RunLayout,
    order: dict[str, Any],
    *,
    wait: float = TAKE_WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Leave `order` for the run going in `layout`; returns what to tell the user."""
    pid = running_pid(layout)
    if pid is None:
        raise RunStateError(f"{layout.root}: no run is going here, so there is nothing to control")
    try:
        path = post_command(layout, order)
    except OSError as exc:
        raise RunStateError(
            f"{layout.control_dir}: cannot leave the command there ({exc.strerror}); only a "
            "user who can write the run folder can steer its run"
        ) from None
    deadline = time.monotonic() + wait
    while path.exists() and time.monotonic() < deadline:
        sleep(0.05)
    what = describe(order)
    if path.exists():
        return (
            f"Sent to the run in {layout.root} (pid {pid}): {what}. It has not taken it yet; "
            "it takes commands once its requests have begun."
        )
    return f"The run in {layout.root} (pid {pid}) took it: {what}."


def describe(order: dict[str, Any]) -> str:
    action = order.get("action")
    if action == "rate":
        rate = float(order["rate"])
        return f"rate {rate:g} requests/s" if rate > 0 else "no client-side rate limit"
    return {"pause": "paused", "resume": "resumed", "stop": "stopping"}.get(str(action), "?")


class RunControl:
    """The run's side: takes the commands and applies them (pool.py calls it every tick)."""

    def __init__(self, layout: RunLayout, wall: Callable[[], float] = time.time) -> None:
        self.layout = layout
        self.wall = wall
        self.notes: deque[str] = deque(maxlen=MAX_NOTES)
        """The latest changes, each with its time, oldest first."""
        self.stopped = False
        """A `control stop` was applied."""

    def __call__(self, levers: TrafficWatch) -> None:
        for order in take_commands(self.layout):
            self.apply(levers, order)

    def apply(self, levers: TrafficWatch, order: dict[str, Any]) -> None:
        action = order.get("action")
        if action == "pause":
            levers.hold()
        elif action == "resume":
            levers.resume()
        elif action == "rate" and isinstance(order.get("rate"), int | float):
            levers.set_ceiling(float(order["rate"]))
        elif action == "stop":
            self.stopped = True
            levers.stop_run()
        else:
            log.warning("Control: ignored a command this version does not know (%r).", action)
            return
        at = datetime.fromtimestamp(self.wall()).astimezone().strftime("%H:%M:%S")
        note = f"{at} {describe(order)}"
        self.notes.append(note)
        log.info("Control: %s (pipeline control %s)", note, action)
