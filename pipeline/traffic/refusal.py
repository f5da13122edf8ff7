"""Whether the API refuses the run, not single rows: the same permanent error for everything.

A permanent error (a 4xx other than 401, 408, 429) is normally the row's own fault, and the
row ends `failed`. But a wrong `url` answers 404 to every request, and an API that changed
its fields answers 400 to every body: failing every row would spend the whole batch's quota
to learn one fact. So, until the run has seen an answer, permanent errors are held (the rows
stay pending) and compared:

- an answer, or a permanent error that differs (status or message) from the first one, shows
  that the errors are the rows' own: the held rows fail with their errors, and from then on
  every permanent error fails its row at once (`RELEASE`, then `FAIL`);
- `REFUSE_AFTER` identical ones with no answer refuse the run (`REFUSE`): it stops with exit
  code 4, quoting the status and the API's message, and no row is marked failed.

Why 10: one row's 400 says nothing, and two or three alike can be a few bad rows in a row;
ten in a row, identical, with not one answer, is not a coincidence of the data. It costs at
most 10 requests, plus those already in flight, against the whole batch. A shard that ends
with every answer held (a run of fewer rows than that) is refused if at least
`REFUSE_AT_END` are alike; one or two are left to fail as the rows' own.

One judge per worker process, for the shards it runs in turn; plain state, no clock, no I/O.
"""

from __future__ import annotations

REFUSE_AFTER = 10
REFUSE_AT_END = 3

HOLD = "hold"
FAIL = "fail"
RELEASE = "release"
REFUSE = "refuse"


class RefusalJudge:
    def __init__(self, refuse_after: int = REFUSE_AFTER, refuse_at_end: int = REFUSE_AT_END):
        self.refuse_after = refuse_after
        self.refuse_at_end = refuse_at_end
        self.open = False
        """An answer came, or the errors differ: permanent errors are the rows' own."""
        self.first: str | None = None
        """The first permanent error ("HTTP 404: No route ..."), while the judge is closed."""
        self.alike = 0
        self.refusal: str | None = None
        """Why the run is refused, once it is."""

    def answered(self) -> bool:
        """An answer came. True when this opens the judge: the held rows fail now."""
        if self.open:
            return False
        self.open = True
        return self.alike > 0

    def permanent(self, message: str) -> str:
        """A permanent error `message` for a row: FAIL it, HOLD it (pending), RELEASE (fail
        it and the held rows), or REFUSE the run (hold it too; `refusal` says why)."""
        if self.open:
            return FAIL
        if self.refusal is not None:
            return HOLD
        if self.first is not None and message != self.first:
            self.open = True
            return RELEASE
        self.first = message
        self.alike += 1
        if self.alike >= self.refuse_after:
            self._refuse()
            return REFUSE
        return HOLD

    def shard_ended(self) -> str | None:
        """A shard has nothing left to send but its held rows: the refusal, if every answer
        so far was the same error at least `refuse_at_end` times; else None (they fail)."""
        if self.refusal is None and not self.open:
            if self.alike >= self.refuse_at_end:
                self._refuse()
            else:
                self.open = True  # too few to judge: the errors are the rows' own
        return self.refusal

    def _refuse(self) -> None:
        self.refusal = (
            f"its first {self.alike} answers were all {self.first}, and none succeeded "
            "(a wrong [api] url, or an API that changed?)"
        )
