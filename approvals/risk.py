"""Risk assessment: a pure function of an action and the rules file, and the action hash
that ties an approval to exactly the action it was asked for."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from approvals.policy import RISK_LEVELS, RiskRules, Trigger

ACTION_FIELDS = ("action_type", "resource_type", "operation", "environment")


@dataclass(frozen=True)
class Assessment:
    risk_level: str
    risk_score: int
    risk_factors: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"risk_level": self.risk_level, "risk_score": self.risk_score, "risk_factors": self.risk_factors}


def canonical_action(action: dict[str, Any]) -> dict[str, Any]:
    """The parts of an action an approval covers, normalised: type, resource, operation,
    environment (lower-cased, trimmed) and details as given."""
    canon = {name: str(action.get(name) or "").strip().lower() for name in ACTION_FIELDS}
    canon["details"] = action.get("details") or {}
    return canon


def action_hash(action: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of the action (sorted keys, no whitespace)."""
    encoded = json.dumps(canonical_action(action), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


def _lookup(action: dict[str, Any], path: str) -> Any:
    value: Any = action
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str) and isinstance(expected, str):
        return actual.strip().lower() == expected.lower()
    return actual == expected and type(actual) is type(expected)


def _holds(actual: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        if "present" in expected:
            return bool(actual) == bool(expected["present"])
        try:
            return actual is not None and not isinstance(actual, bool) and float(actual) > float(expected["gt"])
        except (TypeError, ValueError):
            return False
    if isinstance(expected, list):
        return any(_same(actual, item) for item in expected)
    return _same(actual, expected)


def _fires(trigger: Trigger, action: dict[str, Any]) -> bool:
    return any(
        all(_holds(_lookup(action, path), expected) for path, expected in alternative.items())
        for alternative in trigger.when
    )


def assess(action: dict[str, Any], rules: RiskRules) -> Assessment:
    """The risk of `action`: the highest level of every matching rule; unknown actions are
    `rules.unknown_level` (medium by default), never low."""
    canon = canonical_action(action)
    lookup_action = {**action, **{name: canon[name] for name in ACTION_FIELDS}}
    factors: list[tuple[str, dict[str, str]]] = []

    base_rule = next((rule for rule in rules.base if canon["action_type"] in rule.types), None)
    if base_rule is None:
        base_rule = next((rule for rule in rules.base if canon["resource_type"] in rule.types), None)
    if base_rule is None:
        factors.append(
            (
                rules.unknown_level,
                {
                    "name": "unknown_action_type",
                    "why": f"no rule knows action type {canon['action_type'] or '(none)'!r}: fails closed",
                },
            )
        )
    else:
        key = canon[base_rule.by]
        level = base_rule.levels.get(key) or base_rule.levels.get("*")
        if level is None:
            factors.append(
                (
                    rules.unknown_level,
                    {
                        "name": f"{base_rule.name}.unknown_{base_rule.by}",
                        "why": f"{base_rule.by} {key or '(none)'!r} is not in the rule: fails closed",
                    },
                )
            )
        else:
            factors.append((level, {"name": base_rule.name, "why": f"{base_rule.by} {key or '*'!r} is {level}"}))

    for trigger in rules.triggers:
        if _fires(trigger, lookup_action):
            factors.append((trigger.level, {"name": trigger.name, "why": trigger.why}))

    level = max((level for level, _ in factors), key=RISK_LEVELS.index)
    index = RISK_LEVELS.index(level)
    ceiling = rules.levels[RISK_LEVELS[index + 1]].score - 1 if index + 1 < len(RISK_LEVELS) else 100
    score = min(rules.levels[level].score + rules.extra_factor_score * (len(factors) - 1), ceiling)
    return Assessment(
        risk_level=level,
        risk_score=score,
        risk_factors=[{**factor, "level": factor_level} for factor_level, factor in factors],
    )
