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


def _problem_in(path: Path):
    """An ImproperlyConfigured factory whose message names the file."""

    def bad(problem: str) -> ImproperlyConfigured:
        return ImproperlyConfigured(f"{path}: {problem}")

    return bad


def _read_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise _problem_in(path)(str(exc)) from exc


def load_roles(path: Path | None = None) -> dict[str, Role]:
    """Parse the policy file; a malformed file raises ImproperlyConfigured naming file and problem."""
    path = Path(path or settings.HOL_APPROVAL_POLICIES_FILE)

    bad = _problem_in(path)
    document = _read_yaml(path)
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


@dataclass(frozen=True)
class LevelPolicy:
    name: str
    score: int
    auto_approve: bool
    timeout_minutes: int
    require_approval_count: int
    require_role: str | None
    require_justification: bool
    channels: tuple[str, ...]


@dataclass(frozen=True)
class BaseRule:
    name: str
    types: tuple[str, ...]
    by: str
    levels: dict[str, str]


@dataclass(frozen=True)
class Trigger:
    name: str
    why: str
    level: str
    when: tuple[dict, ...]  # any one of these mappings, each of which must hold entirely


@dataclass(frozen=True)
class RiskRules:
    levels: dict[str, LevelPolicy]
    base: tuple[BaseRule, ...]
    triggers: tuple[Trigger, ...]
    unknown_level: str
    extra_factor_score: int


@dataclass(frozen=True)
class Policy:
    """Roles (approval-policies.yaml) and levels and risk rules (risk-assessment-rules.yaml)."""

    roles: dict[str, Role]
    rules: RiskRules

    def level(self, name: str) -> LevelPolicy:
        return self.rules.levels[name]

    def role_rank(self, role: str) -> tuple[int, int]:
        """Lower is more junior: the highest level a role may approve, then its place in the file."""
        spec = self.roles[role]
        highest = max((RISK_LEVELS.index(level) for level in spec.may_approve), default=-1)
        return highest, list(self.roles).index(role)

    def roles_for_level(self, level: str) -> list[str]:
        """Roles whose members may decide `level` (and hold `require_role` if the level sets one),
        most junior first."""
        required = self.level(level).require_role
        eligible = [name for name, role in self.roles.items() if level in role.may_approve and required in (None, name)]
        return sorted(eligible, key=self.role_rank)


CHANNELS = ("in_app", "email", "webhook")
CONDITION_OPERATORS = ("present", "gt")


def _check_condition(bad, trigger: str, field: str, expected) -> None:
    if isinstance(expected, dict):
        unknown = [key for key in expected if key not in CONDITION_OPERATORS]
        if unknown or len(expected) != 1:
            raise bad(f"trigger {trigger!r}: condition on {field!r} must be one of {CONDITION_OPERATORS}")
        if "gt" in expected and not isinstance(expected["gt"], int | float):
            raise bad(f"trigger {trigger!r}: `gt` on {field!r} needs a number")


def load_rules(path: Path | None = None, *, roles: dict[str, Role] | None = None) -> RiskRules:
    """Parse the risk rules file; a malformed file raises ImproperlyConfigured naming file and problem."""
    path = Path(path or settings.HOL_RISK_RULES_FILE)

    bad = _problem_in(path)
    document = _read_yaml(path)
    if not isinstance(document, dict):
        raise bad("expected a mapping with `levels`, `base` and `triggers`")
    raw_levels = document.get("levels")
    if not isinstance(raw_levels, dict) or sorted(raw_levels, key=str) != sorted(RISK_LEVELS):
        raise bad(f"`levels` must be a mapping with exactly the levels {list(RISK_LEVELS)}")
    levels: dict[str, LevelPolicy] = {}
    for name in RISK_LEVELS:
        spec = raw_levels[name]
        if not isinstance(spec, dict):
            raise bad(f"level {name!r} must be a mapping")
        try:
            level = LevelPolicy(
                name=name,
                score=int(spec["score"]),
                auto_approve=bool(spec.get("auto_approve", False)),
                timeout_minutes=int(spec["timeout_minutes"]),
                require_approval_count=int(spec.get("require_approval_count", 1)),
                require_role=spec.get("require_role"),
                require_justification=bool(spec.get("require_justification", False)),
                channels=tuple(spec.get("channels") or ("in_app",)),
            )
        except KeyError as exc:
            raise bad(f"level {name!r} is missing {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise bad(f"level {name!r}: {exc}") from None
        if not 0 <= level.score <= 100:
            raise bad(f"level {name!r}: score must be within 0..100")
        if level.timeout_minutes <= 0 or level.require_approval_count < 1:
            raise bad(f"level {name!r}: timeout_minutes and require_approval_count must be positive")
        if unknown := [channel for channel in level.channels if channel not in CHANNELS]:
            raise bad(f"level {name!r} names unknown channels {unknown} (known: {list(CHANNELS)})")
        if roles is not None and level.require_role is not None:
            if level.require_role not in roles:
                raise bad(f"level {name!r} requires unknown role {level.require_role!r}")
            if name not in roles[level.require_role].may_approve:
                raise bad(f"level {name!r} requires role {level.require_role!r}, which may not approve it")
        levels[name] = level
    if [levels[name].score for name in RISK_LEVELS] != sorted(levels[name].score for name in RISK_LEVELS):
        raise bad("level scores must grow with the level")

    unknown_level = document.get("unknown_level", "medium")
    if unknown_level not in ("medium", "high", "critical"):
        raise bad("`unknown_level` must be medium, high or critical (never low: unknown actions fail closed)")

    base: list[BaseRule] = []
    for index, spec in enumerate(document.get("base") or []):
        if not isinstance(spec, dict) or not spec.get("name") or not spec.get("types"):
            raise bad(f"base rule #{index + 1} needs a `name` and `types`")
        by = spec.get("by", "operation")
        if by not in ("operation", "environment"):
            raise bad(f"base rule {spec['name']!r}: `by` must be operation or environment")
        mapping = spec.get("levels")
        if not isinstance(mapping, dict) or not mapping:
            raise bad(f"base rule {spec['name']!r} needs a `levels` mapping")
        if wrong := [value for value in mapping.values() if value not in RISK_LEVELS]:
            raise bad(f"base rule {spec['name']!r} names unknown risk levels {wrong}")
        base.append(
            BaseRule(
                name=str(spec["name"]),
                types=tuple(str(t).lower() for t in spec["types"]),
                by=by,
                levels={str(key).lower(): value for key, value in mapping.items()},
            )
        )

    triggers: list[Trigger] = []
    for index, spec in enumerate(document.get("triggers") or []):
        if not isinstance(spec, dict) or not spec.get("name"):
            raise bad(f"trigger #{index + 1} needs a `name`")
        name = str(spec["name"])
        if spec.get("level") not in RISK_LEVELS:
            raise bad(f"trigger {name!r}: `level` must be one of {list(RISK_LEVELS)}")
        when = spec.get("when")
        alternatives = when if isinstance(when, list) else [when]
        if not alternatives or not all(isinstance(item, dict) and item for item in alternatives):
            raise bad(f"trigger {name!r}: `when` must be a mapping of conditions or a list of them")
        for item in alternatives:
            for field, expected in item.items():
                _check_condition(bad, name, field, expected)
        triggers.append(Trigger(name, str(spec.get("why", name)), spec["level"], tuple(alternatives)))

    return RiskRules(
        levels=levels,
        base=tuple(base),
        triggers=tuple(triggers),
        unknown_level=unknown_level,
        extra_factor_score=int(document.get("extra_factor_score", 3)),
    )


_cache: dict[tuple, Policy] = {}


def current_policy() -> Policy:
    """The policy as the files say now: re-read when either file changes (mtime), so editing a
    file changes behaviour without a restart."""
    roles_path = Path(settings.HOL_APPROVAL_POLICIES_FILE)
    rules_path = Path(settings.HOL_RISK_RULES_FILE)
    try:
        key = (roles_path, roles_path.stat().st_mtime_ns, rules_path, rules_path.stat().st_mtime_ns)
    except OSError as exc:
        raise ImproperlyConfigured(f"{exc.filename}: {exc.strerror}") from exc
    policy = _cache.get(key)
    if policy is None:
        roles = load_roles(roles_path)
        policy = Policy(roles=roles, rules=load_rules(rules_path, roles=roles))
        _cache.clear()
        _cache[key] = policy
    return policy
