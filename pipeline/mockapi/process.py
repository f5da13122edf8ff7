"""Running the mock: in a spawned process of its own (`start_mock_process`), or in the foreground.

`start_mock_process` gives the server a process (and GIL) of its own; only plain, picklable
settings and rules cross into it, and `_mock_process_main` is its module-level target.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType

from pipeline.mockapi.server import MockServer
from pipeline.mockapi.settings import MockSettings, Rule

_STARTUP_TIMEOUT_S = 10.0


class MockProcess:
    """A MockServer in a process of its own; `stop()` terminates and joins it."""

    def __init__(self, process: BaseProcess, conn: Connection, port: int) -> None:
        self._process = process
        self._conn = conn
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        _end_process(self._process)
        self._conn.close()

    def __enter__(self) -> MockProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_mock_process(
    settings: MockSettings, port: int = 0, *, rules: Sequence[Rule] = ()
) -> MockProcess:
    """Start a mock on 127.0.0.1:`port` (0 = any free port) in a spawned process.

    Returns once it listens; raises RuntimeError if it does not within 10 seconds.
    """
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(
        target=_mock_process_main,
        args=(settings, port, tuple(rules), theirs),
        name="cardgenius-mock",
        daemon=True,
    )
    process.start()
    theirs.close()
    try:
        return MockProcess(process, ours, _await_port(process, ours))
    except BaseException:
        _end_process(process)
        ours.close()
        raise


def _end_process(process: BaseProcess) -> None:
    """Terminate and join; kill if it has not ended within 5 seconds."""
    if process.is_alive():
        process.terminate()
    process.join(5)
    if process.is_alive():
        process.kill()
        process.join()


def _await_port(process: BaseProcess, conn: Connection) -> int:
    if not conn.poll(_STARTUP_TIMEOUT_S):
        raise RuntimeError(f"the mock API process did not listen within {_STARTUP_TIMEOUT_S:g} s")
    try:
        kind, detail = conn.recv()
    except EOFError:
        process.join(1)
        raise RuntimeError(
            f"the mock API process exited before listening (exit code {process.exitcode})"
        ) from None
    if kind != "ready":
        raise RuntimeError(f"the mock API process could not start: {detail}")
    return int(detail)


def _mock_process_main(
    settings: MockSettings, port: int, rules: tuple[Rule, ...], conn: Connection
) -> None:
    """The mock process: serve until terminated or until the parent's end of `conn` closes."""
    # Ctrl+C reaches the whole process group; the parent decides when the mock goes away.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    server = MockServer(settings, port=port)
    for rule in rules:
        server.add_rule(rule)
    try:
        server.start()
    except OSError as exc:
        conn.send(("error", f"cannot listen on 127.0.0.1:{port}: {exc}"))
        return
    conn.send(("ready", server.port))
    try:
        with contextlib.suppress(EOFError, OSError):
            conn.recv()  # nothing is ever sent: this ends (EOFError) when the parent goes away
    finally:
        server.stop()


def serve(
    settings: MockSettings, host: str, port: int, announce: Callable[[str], None] = print
) -> None:
    """Serve in the foreground until KeyboardInterrupt, after announcing the URL in one line."""
    with MockServer(settings, host, port) as server, contextlib.suppress(KeyboardInterrupt):
        announce(
            f"CardGenius mock API on {server.base_url} ({settings.cards} cards, latency "
            f"{settings.latency_ms:g}±{settings.jitter_ms:g} ms{_limit_text(settings)}) - "
            "Ctrl+C to stop"
        )
        forever = threading.Event()
        while not forever.wait(0.5):  # short waits: Ctrl+C is seen at once on every platform
            pass


def _limit_text(s: MockSettings) -> str:
    """ ", 60 req/s token-bucket" and the like; "" without a rate limit."""
    if not s.rate_limit:
        return ""
    window = f" {s.limit_window_s:g} s" if s.limit_kind != "token-bucket" else ""
    text = f", {s.rate_limit:g} req/s {s.limit_kind}{window}, Retry-After {s.retry_after}"
    if s.limit_headers != "none":
        text += f", {s.limit_headers} quota headers"
    if s.rate_schedule:
        text += f", schedule {s.rate_schedule}"
    return text
