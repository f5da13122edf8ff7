"""The pipeline's exceptions and the exit code each one maps to.

User mistakes (config, input, usage) are `PipelineError`s: the CLI prints their message as one
line and exits 2, never a traceback. `TransientError` and `PermanentError` classify a failed
API call and drive retries; each carries its `ErrorKind`. Every exception here survives
pickling, because workers raise them in other processes.
"""

from __future__ import annotations

import errno
from enum import Enum

EXIT_OK = 0
EXIT_FAILED_ROWS = 1
EXIT_USAGE = 2
EXIT_OUTAGE = 3
EXIT_REFUSED = 4
EXIT_LOCAL = 5
EXIT_INTERRUPTED = 130


class PipelineError(Exception):
    """An error the user can act on; its message is shown as one line."""

    exit_code = EXIT_USAGE


class ConfigError(PipelineError):
    """The config file or a command-line override is wrong; the message names the key."""


class InputError(PipelineError):
    """The input file cannot be read as a table of users; the message names the file."""


class RunStateError(PipelineError):
    """The output folder holds a run that this command cannot continue."""


class OutageError(PipelineError):
    """The API stayed unavailable for longer than `[retry] give_up_after`; state is saved."""

    exit_code = EXIT_OUTAGE


class RefusedError(PipelineError):
    """The API refused the run: credentials refused, or the same permanent error for every
    request (a wrong url, a changed API). State is saved and no row is marked failed."""

    exit_code = EXIT_REFUSED


class LocalError(PipelineError):
    """A local failure: disk full, permission denied, a worker process that keeps dying.
    State is saved; the message names the path or the shard."""

    exit_code = EXIT_LOCAL


_FULL = {errno.ENOSPC, errno.EDQUOT}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
TOO_LARGE = "the file is too large for the file size limit (ulimit -f) or the file system"
TOO_LARGE_TODO = "raise the limit or free some space"
"""EFBIG: a write past the process's RLIMIT_FSIZE (Python ignores SIGXFSZ, so the write
fails instead of killing the process) or past the largest file the file system holds."""


def file_size_limited() -> bool:
    """True when this process may not write files past some size (`ulimit -f`)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return False
    return resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY


def local_error(exc: OSError, path: object = None) -> LocalError:
    """A failed file operation as one line: the path, what went wrong, what to do."""
    where = path or exc.filename or "a file of the run"
    if exc.errno in _FULL:
        what, todo = "the disk is full", "free some space"
    elif exc.errno == errno.EFBIG:
        what, todo = TOO_LARGE, TOO_LARGE_TODO
    elif exc.errno in _DENIED:
        what, todo = "permission denied", "make it writable"
    else:
        what, todo = exc.strerror or str(exc), "fix that"
    return LocalError(
        f"{where}: {what}; finished rows are saved: {todo}, then run the same command again"
    )


def worker_failure(shard: str, exc: BaseException) -> PipelineError:
    """What a shard's error in a worker means for the run (its exit code and its line)."""
    if isinstance(exc, PipelineError):
        return exc
    if isinstance(exc, OSError):
        return local_error(exc)
    if isinstance(exc, MemoryError) or "can't start new thread" in str(exc):
        return LocalError(
            f"shard {shard}: a worker process ran out of memory ({type(exc).__name__}: {exc}); "
            "finished rows are saved: free some memory, or lower [processing] processes or "
            "max_workers, then run the same command again"
        )
    return LocalError(f"shard {shard}: a worker failed: {type(exc).__name__}: {exc}")


class ErrorKind(str, Enum):
    """What went wrong with a call, set where the error is made; stored in the result shard's
    `error_kind` column, counted by the live view and `status`."""

    HTTP_429 = "http_429"
    HTTP_5XX = "http_5xx"
    HTTP_4XX = "http_4xx"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    BAD_BODY = "bad_body"
    """HTTP 200 with an answer the pipeline cannot use."""
    OTHER = "other"


class CallError(Exception):
    """A failed API call: what went wrong (`kind`), the HTTP status (None when no answer came
    back) and the server's `Retry-After` in seconds (None when it gave none)."""

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.http_status = http_status
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, ...]:
        args = (type(self), self.message, self.kind, self.http_status, self.retry_after)
        return (_rebuild, args)


def _rebuild(
    cls: type[CallError],
    message: str,
    kind: ErrorKind,
    http_status: int | None,
    retry_after: float | None,
) -> CallError:
    return cls(message, kind=kind, http_status=http_status, retry_after=retry_after)


class TransientError(CallError):
    """Worth retrying: timeout, connection error, 408, 429, 5xx, or an unusable 200 body."""


class PermanentError(CallError):
    """Not worth retrying: a 4xx other than 401, 408 and 429."""


class AuthError(CallError):
    """HTTP 401: the partner token expired or is unknown; refresh it and call again."""


class CredentialsRefused(CallError):
    """The API refuses the key: the token endpoint turned it down, or a fresh token still
    gets 401/403. No row can succeed with it, so the run stops (exit 4) instead of failing
    every row; the message names the key's environment variable, never the key."""
