"""The run folder as a channel between a running run and any other terminal of its user.

    out/status.json        the running run's figures, rewritten about once a second
    out/control/*.json     commands for the running run (`pipeline control`), one file each
    out/.lock              the running coordinator's pid (state/lock.py)

Commands are files named by the time they were posted, so the run applies them in order and
a burst of them loses none; the run takes each (reads, then deletes it) within a second.
Whoever can write the run folder can steer its run: the folder's permissions are the access
control, as they are for its results.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from pipeline.state.store import RunLayout, write_json_atomic

log = logging.getLogger("pipeline")


def post_command(layout: RunLayout, command: dict[str, Any]) -> Path:
    """Leave `command` for the run; returns its file, which disappears once it is taken."""
    path = layout.control_dir / f"{time.time_ns():020d}-{os.getpid()}.json"
    write_json_atomic(path, command)
    return path


def _command_files(layout: RunLayout) -> list[Path]:
    try:
        names = os.listdir(layout.control_dir)
    except FileNotFoundError:
        return []
    # Dot names are the atomic writer's temporary files: not whole yet.
    return [layout.control_dir / n for n in sorted(names) if n.endswith(".json") and n[0] != "."]


def take_commands(layout: RunLayout) -> list[dict[str, Any]]:
    """The commands waiting, oldest first; each is removed as it is read."""
    commands = []
    for path in _command_files(layout):
        try:
            command = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            command = None
        path.unlink(missing_ok=True)
        if isinstance(command, dict):
            commands.append(command)
        else:
            log.warning("Control: ignored %s, not a command this tool wrote.", path.name)
    return commands


def discard_commands(layout: RunLayout) -> int:
    """Remove commands left for a run that ended before taking them; returns how many."""
    files = _command_files(layout)
    for path in files:
        path.unlink(missing_ok=True)
    return len(files)


def write_status(layout: RunLayout, record: dict[str, Any]) -> None:
    """Replace status.json (whole, never half-written; not fsynced: it is rewritten every
    second and only describes the moment)."""
    write_json_atomic(layout.status_file, record, durable=False)


def read_status(layout: RunLayout) -> dict[str, Any] | None:
    """The last status the run wrote; None when there is none (or it is not ours)."""
    try:
        data = json.loads(layout.status_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def lock_holder(layout: RunLayout) -> int | None:
    """The pid the run folder's lock names: the last coordinator that took it."""
    try:
        text = layout.lock_file.read_text(encoding="utf-8").split()
    except OSError:
        return None
    return int(text[1]) if len(text) == 2 and text[0] == "pid" and text[1].isdigit() else None


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (of any user: EPERM says it exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


STARTING, RUNNING, FINISHED, STOPPED = "starting", "running", "finished", "stopped"
"""A status file's `state`: a run sharding its input, requesting, or ended (with an exit code
below 2, or of 2 or more)."""


def running_pid(layout: RunLayout) -> int | None:
    """The pid of the run going in this folder now, or None.

    The lock names the last coordinator that took it; that process is alive, and its status
    file does not say it has ended (a process that ran a run and went on to other things, as
    a test does, still holds the pid).
    """
    pid = lock_holder(layout)
    if pid is None or not process_alive(pid):
        return None
    status = read_status(layout)
    ended = status is not None and status.get("state") in (FINISHED, STOPPED)
    if ended and status is not None and status.get("pid") == pid:
        return None
    return pid
