"""Status changes follow one table per model; anything else is a 409."""

from __future__ import annotations

from collections.abc import Mapping, Set

from hol.errors import Conflict

Transitions = Mapping[str, Set[str]]


def ensure_transition(current: str, new: str, allowed: Transitions, *, what: str) -> None:
    """Raise Conflict (409, `invalid_transition`) unless `current → new` is in `allowed`."""
    if new not in allowed.get(current, frozenset()):
        raise Conflict(f"{what} is {current}; it cannot become {new}", code="invalid_transition")
