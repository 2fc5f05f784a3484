"""The intake policy gate of SPEC §3.4: a pure function from a submitted payload to task fields.

Accepts the aliases (`type`→operation, `payload`→inputs, `target.repository`→target.repo,
`repository_url`/`branch_name`→target.repo/ref), normalises, and raises `ValidationFailed`
with one of the stable codes below. It reads settings but touches no database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hol.errors import BadRequest, ValidationFailed
from tasks.models import Task

INVALID_OPERATION = "INVALID_OPERATION"
REPO_NOT_ALLOWED = "REPO_NOT_ALLOWED"
TIME_BUDGET_TOO_LOW = "TIME_BUDGET_TOO_LOW"
TIME_BUDGET_TOO_HIGH = "TIME_BUDGET_TOO_HIGH"
NETWORK_ACCESS_DENIED = "NETWORK_ACCESS_DENIED"
SECRETS_ACCESS_DENIED = "SECRETS_ACCESS_DENIED"

MIN_TIME_BUDGET = 30
MAX_TIME_BUDGET = 86400


def normalize_repo(repo: str) -> str:
    repo = repo.strip().lower()
    if repo.endswith(".git"):
        repo = repo[: -len(".git")]
    return repo.rstrip("/")


def apply_aliases(payload: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of `payload` with the accepted aliases folded into their canonical names."""
    data = dict(payload)
    if "type" in data and "operation" not in data:
        data["operation"] = data.pop("type")
    if "payload" in data and "inputs" not in data:
        data["inputs"] = data.pop("payload")
    target = data.get("target") or {}
    if not isinstance(target, dict):
        return data  # not an object: left for the serializer to refuse (400)
    target = dict(target)
    if "repository" in target and "repo" not in target:
        target["repo"] = target.pop("repository")
    if "repository_url" in data and "repo" not in target:
        target["repo"] = data.pop("repository_url")
    if "branch_name" in data and "ref" not in target:
        target["ref"] = data.pop("branch_name")
    data["target"] = target
    return data


def check_intake(
    data: dict[str, Any],
    *,
    allowed_repo_prefixes: Sequence[str],
    allow_network: bool = False,
    allow_secrets: bool = False,
) -> dict[str, Any]:
    """Apply the gate to an aliased payload; return normalised target/constraints/operation."""
    operation = data.get("operation", Task.Operation.CODE_CHANGE)
    if operation not in Task.Operation.values:
        raise ValidationFailed(
            f"operation {operation!r} is not one of {', '.join(Task.Operation.values)}", code=INVALID_OPERATION
        )

    target = data.get("target") or {}
    if not isinstance(target, dict):
        raise BadRequest("target must be an object {repo, ref, path}", code="invalid")
    repo = target.get("repo")
    if not isinstance(repo, str) or not repo.strip():
        raise ValidationFailed("target.repo is required", code=REPO_NOT_ALLOWED)
    repo = normalize_repo(repo)
    prefixes = [p.lower() for p in allowed_repo_prefixes]
    if not any(repo.startswith(prefix) for prefix in prefixes):
        allowed = ", ".join(prefixes) if prefixes else "none are configured (HOL_ALLOWED_REPO_PREFIXES)"
        raise ValidationFailed(f"repo {repo!r} is not allowed; allowed prefixes: {allowed}", code=REPO_NOT_ALLOWED)

    ref, path = target.get("ref") or "main", target.get("path") or ""
    if not isinstance(ref, str) or not isinstance(path, str):
        raise BadRequest("target.ref and target.path must be strings", code="invalid")

    constraints = data.get("constraints") or {}
    if not isinstance(constraints, dict):
        raise BadRequest("constraints must be an object", code="invalid")
    budget = constraints.get("time_budget_seconds", 900)
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise ValidationFailed("constraints.time_budget_seconds must be an integer", code=TIME_BUDGET_TOO_LOW)
    if budget < MIN_TIME_BUDGET:
        raise ValidationFailed(f"time_budget_seconds {budget} is below {MIN_TIME_BUDGET}", code=TIME_BUDGET_TOO_LOW)
    if budget > MAX_TIME_BUDGET:
        raise ValidationFailed(f"time_budget_seconds {budget} is above {MAX_TIME_BUDGET}", code=TIME_BUDGET_TOO_HIGH)
    wants_network = constraints.get("allow_network", False) is True
    wants_secrets = constraints.get("allow_secrets", False) is True
    if wants_network and not allow_network:
        raise ValidationFailed("network access is not allowed for tasks", code=NETWORK_ACCESS_DENIED)
    if wants_secrets and not allow_secrets:
        raise ValidationFailed("secrets access is not allowed for tasks", code=SECRETS_ACCESS_DENIED)

    return {
        "operation": operation,
        "target_repo": repo,
        "target_ref": ref.strip(),
        "target_path": path.strip(),
        "time_budget_seconds": budget,
        "allow_network": wants_network,
        "allow_secrets": wants_secrets,
    }
