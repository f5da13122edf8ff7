"""`pipeline cache stats`: the answer store's contents as text."""

from __future__ import annotations

from typing import Any


def age_text(seconds: float) -> str:
    """An age for people: "45s", "12m", "5h 3m", "3d 4h"."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86_400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86_400}d {s % 86_400 // 3600}h"


def render(facts: dict[str, Any], max_age: str) -> str:
    size = facts["bytes"] / 1e6
    lines = [
        f"Answer store: {facts['path']} ({size:,.1f} MB)",
        f"  answers: {facts['answers']:,} (a run reuses those younger than {max_age})",
    ]
    for e in facts["endpoints"]:
        lines.append(
            f"  {e['endpoint']}: {e['answers']:,} answers, oldest {age_text(e['oldest_age_s'])}"
            f", newest {age_text(e['newest_age_s'])}"
        )
    return "\n".join(lines)
