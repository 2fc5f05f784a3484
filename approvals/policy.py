"""Reading approvals/config/approval-policies.yaml (path from settings) into checked objects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

RISK_LEVELS = ("low", "medium", "high", "critical")


@dataclass(frozen=True)
class Role:
    name: str
    may_approve: tuple[str, ...]
    escalates_to: str | None
    max_pending: int


def load_roles(path: Path | None = None) -> dict[str, Role]:
    """Parse the policy file; a malformed file raises ImproperlyConfigured naming file and problem."""
    path = Path(path or settings.HOL_APPROVAL_POLICIES_FILE)

    def bad(problem: str) -> ImproperlyConfigured:
        return ImproperlyConfigured(f"{path}: {problem}")

    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise bad(str(exc)) from exc
    if not isinstance(document, dict) or not isinstance(document.get("roles"), dict):
        raise bad("expected a mapping with a `roles` mapping")
    roles: dict[str, Role] = {}
    for name, spec in document["roles"].items():
        if not isinstance(spec, dict):
            raise bad(f"role {name!r} must be a mapping")
        levels = tuple(spec.get("may_approve") or ())
        unknown = [level for level in levels if level not in RISK_LEVELS]
        if unknown:
            raise bad(f"role {name!r} names unknown risk levels {unknown}")
        max_pending = spec.get("max_pending", 0)
        if not isinstance(max_pending, int) or max_pending < 0:
            raise bad(f"role {name!r}: max_pending must be a non-negative integer")
        roles[name] = Role(name, levels, spec.get("escalates_to"), max_pending)
    for role in roles.values():
        if role.escalates_to is not None and role.escalates_to not in roles:
            raise bad(f"role {role.name!r} escalates to unknown role {role.escalates_to!r}")
    return roles
