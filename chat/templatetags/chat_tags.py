"""Showing agents' events readably: diffs line by line, test results as rows. Values stay
strings handed to the template, which escapes them."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def diff_lines(diff: Any) -> list[tuple[str, str]]:
    """(css class, line) for each line of a unified diff."""
    lines = []
    for line in str(diff).splitlines():
        if line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = ""
        lines.append((kind, line))
    return lines


@register.filter
def test_rows(data: Any) -> list[dict[str, str]]:
    tests = data.get("tests") if isinstance(data, dict) else None
    if not isinstance(tests, list):
        return []
    rows = []
    for test in tests:
        if not isinstance(test, dict):
            continue
        outcome = str(test.get("status") or test.get("outcome") or "")
        rows.append(
            {
                "name": str(test.get("name", "")),
                "outcome": outcome,
                "css": "s-ok" if outcome in ("passed", "ok") else ("s-queued" if outcome == "skipped" else "s-bad"),
                "duration": "" if test.get("duration") is None else f"{test['duration']} s",
            }
        )
    return rows
