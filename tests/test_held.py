"""run/held.py: a shard's rows held while the API may be refusing the run, with a real
judge (traffic/refusal.py); no clock, no I/O."""

from __future__ import annotations

from pipeline.errors import CredentialsRefused, ErrorKind, PermanentError
from pipeline.run.attempt import Attempt
from pipeline.run.held import HeldRows
from pipeline.traffic.refusal import RefusalJudge

NOT_FOUND = "HTTP 404: No route"


def attempt(row: int) -> Attempt:
    return Attempt({"_row": row}, 1)


def error(message: str = NOT_FOUND) -> PermanentError:
    return PermanentError(message, kind=ErrorKind.HTTP_4XX, http_status=404)


def rows_of(held: list[tuple[Attempt, object]]) -> list[int]:
    return [a.row["_row"] for a, _ in held]


def test_rows_are_held_until_an_answer_then_fail_with_their_own_errors() -> None:
    held = HeldRows(RefusalJudge())
    assert held.permanent(attempt(1), error()) == ([], "")
    assert held.permanent(attempt(2), error()) == ([], "")
    assert rows_of(held.answered()) == [1, 2]
    assert held.answered() == []  # once
    fail, refusal = held.permanent(attempt(3), error())
    assert rows_of(fail) == [3] and refusal == ""  # the judge is open: rows fail at once


def test_a_different_error_releases_the_held_rows_with_it() -> None:
    held = HeldRows(RefusalJudge())
    held.permanent(attempt(1), error())
    fail, refusal = held.permanent(attempt(2), error("HTTP 400: bad amount"))
    assert rows_of(fail) == [1, 2] and refusal == ""
    assert [e.message for _, e in fail] == [NOT_FOUND, "HTTP 400: bad amount"]


def test_alike_errors_refuse_the_run_once_and_the_rows_stay_held() -> None:
    held = HeldRows(RefusalJudge(refuse_after=3))
    held.permanent(attempt(1), error())
    held.permanent(attempt(2), error())
    fail, refusal = held.permanent(attempt(3), error())
    assert fail == [] and refusal.startswith("the API refused the run: its first 3 answers")
    assert held.refuse(refusal) is True and held.refused == refusal
    assert held.refuse("the API refused the credentials: x") is False  # told once
    assert held.permanent(attempt(4), error()) == ([], "")  # held, not refused again
    assert held.at_end(stopping=False) == ([], "")  # refused: nothing fails
    assert rows_of(held.rows) == [1, 2, 3, 4]


def test_a_refused_key_is_told_once() -> None:
    held = HeldRows(RefusalJudge())
    key = CredentialsRefused("HTTP 401", kind=ErrorKind.HTTP_4XX, http_status=401)
    assert held.refuse(f"the API refused the credentials: {key.message}") is True
    assert held.refuse("the API refused the run: anything") is False
    assert held.refused == "the API refused the credentials: HTTP 401"


def test_at_a_shards_end_few_alike_fail_and_enough_refuse() -> None:
    few = HeldRows(RefusalJudge(refuse_at_end=3))
    few.permanent(attempt(1), error())
    few.permanent(attempt(2), error())
    fail, refusal = few.at_end(stopping=False)
    assert rows_of(fail) == [1, 2] and refusal == ""
    many = HeldRows(RefusalJudge(refuse_at_end=3))
    for row in range(3):
        many.permanent(attempt(row), error())
    fail, refusal = many.at_end(stopping=False)
    assert fail == [] and refusal.startswith("the API refused the run: its first 3")


def test_a_stopping_run_leaves_held_rows_pending_for_the_next() -> None:
    held = HeldRows(RefusalJudge())
    held.permanent(attempt(1), error())
    assert held.at_end(stopping=True) == ([], "")
    assert rows_of(held.rows) == [1]


def test_rerun_failed_fails_a_permanent_error_at_once() -> None:
    held = HeldRows(RefusalJudge(), retry_failed=True)
    fail, refusal = held.permanent(attempt(7), error())
    assert rows_of(fail) == [7] and refusal == "" and held.rows == []
