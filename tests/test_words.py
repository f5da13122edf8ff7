"""What users read points only inside the repository and uses words they understand.

README, BENCHMARKS.md, docs/, config.toml, the package and the scripts must not point to
files outside the repository (`../shared`, `shared/spec`), number work by tracker tickets
("issue 3"), or say "session" for one invocation of a command: in this code base a Session is
a `requests.Session`, so "this session", `session_rows` or "Session 3" would mislead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_DETERMINERS = (
    "this|that|the|last|earlier|previous|next|later|each|every|one|a|an|whole|same|first|"
    "second|third|current|its|per|in|during|between|across"
)
RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("points outside the repository", re.compile(r"\.\./shared|shared/spec")),
    ("names a tracker ticket", re.compile(r"(?i)\bissues?\s+#?\d+")),
    # Lowercase `session` after a determiner is prose about a period of work ("this
    # session", "earlier sessions"); a requests.Session is written with a capital S.
    ("says 'session' for an invocation", re.compile(rf"(?i:\b(?:{_DETERMINERS})\s+)sessions?\b")),
    ("says 'session' for an invocation", re.compile(r"\bsessions?'s?(?=\W|$)")),
    ("says 'session' for an invocation", re.compile(r"\bsessions\b")),
    ("says 'session' for an invocation", re.compile(r"\bSessions?\s+\d")),
    # Names like session_rows or record_session; new_session and webhook_session make a
    # requests.Session.
    (
        "says 'session' for an invocation",
        re.compile(
            r"(?i)\bsession_\w+"
            r"|\b(?:record|last|this|that|each|every|earlier|previous|next|current|first)_sessions?\b"
        ),
    ),
)


def problems(text: str) -> list[str]:
    """One line per offending line: its number, the rule and the words that break it."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for why, pattern in RULES:
            match = pattern.search(line)
            if match:
                found.append(f"{number}: {why}: {match.group(0)!r}")
    return found


def _user_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "BENCHMARKS.md", ROOT / "config.toml"]
    files += sorted((ROOT / "docs").glob("*.md"))
    for folder in ("pipeline", "scripts"):
        files += sorted(
            p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts
        )
    return files


@pytest.mark.parametrize("path", _user_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_user_facing_text_points_inside_and_says_what_it_means(path: Path) -> None:
    assert path.exists(), f"{path} is missing"
    text = path.read_text(encoding="utf-8")
    assert problems(text) == [], f"{path.relative_to(ROOT)}:\n" + "\n".join(problems(text))


@pytest.mark.parametrize(
    "bad",
    [
        "See ../shared/spec/cardgenius-api.md for the protocol.",
        "the design is in shared/spec/ARCHITECTURE.md",
        "Benchmarks of issue 3: the pipeline",
        "(Issue #4 bar: >= 0.85 H)",
        "Rows requested in this session",
        "rows done in earlier sessions",
        "Keep the last session's figures",
        "Session 3 reran scenarios 1 and 2",
        "self.session_rows += 1",
        'info["last_session"] = facts',
        "def record_session(layout):",
        "One process's threads, sessions and token",
    ],
)
def test_the_rules_catch(bad: str) -> None:
    assert problems(bad), bad


@pytest.mark.parametrize(
    "good",
    [
        "one `requests.Session` per thread",
        "session = requests.Session()",
        "client = CardGeniusClient(endpoint, new_session(endpoint), self.tokens)",
        "session = webhook_session()",
        "self.session.post(url, data=data)",
        "def fetch_token(endpoint: Endpoint, session: requests.Session | None = None) -> str:",
        "ONE shared default `requests.Session`; the Session reads it once here",
        "rows done before this resume",
        "docs/cardgenius-api.md",
        "exit code 3 means the API stayed unavailable",
    ],
)
def test_the_rules_allow(good: str) -> None:
    assert problems(good) == [], good
