"""The intake policy gate: a pure function from a submitted payload to task fields.

Accepts the aliases (`type`→operation, `payload`→inputs, `target.repository`→target.repo,
`repository_url`/`branch_name`→target.repo/ref), normalises, and raises `ValidationFailed`
with one of the stable codes below. It reads settings but touches no database.
"""

from __future__ import annotations

import json
import re
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
INVALID_REF = "INVALID_REF"
INVALID_PATH = "INVALID_PATH"
TOO_LARGE = "too_large"

MIN_TIME_BUDGET = 30
MAX_TIME_BUDGET = 86400
MAX_FIELD_BYTES = 256 * 1024  # objective, description, inputs, metadata: each
MAX_REPO_LENGTH = Task._meta.get_field("target_repo").max_length
MAX_REF_LENGTH = Task._meta.get_field("target_ref").max_length
MAX_PATH_LENGTH = Task._meta.get_field("target_path").max_length
# Refs and paths reach git's command line: no control characters, no option-looking leading `-`.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def byte_size(value: Any) -> int:
    """The size a field takes stored: UTF-8 bytes of text, or of JSON as serialised."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-8", "surrogatepass"))


SIZED_FIELDS = ("objective", "description", "inputs", "metadata")


def check_sizes(data: dict[str, Any], *, fields: Sequence[str] = SIZED_FIELDS) -> None:
    """400 `too_large` when one of `fields` exceeds MAX_FIELD_BYTES."""
    for name in fields:
        if name in data and data[name] is not None and byte_size(data[name]) > MAX_FIELD_BYTES:
            raise BadRequest(f"{name} is larger than {MAX_FIELD_BYTES // 1024} KiB", code=TOO_LARGE)


def _check_git_name(value: str, *, what: str, code: str, max_length: int) -> None:
    if len(value) > max_length:
        raise ValidationFailed(f"{what} is longer than {max_length} characters", code=code)
    if _CONTROL.search(value):
        raise ValidationFailed(f"{what} must not contain control characters", code=code)
    if value.startswith("-"):
        raise ValidationFailed(f"{what} must not start with '-'", code=code)
    if ".." in re.split(r"[/\\]", value):
        raise ValidationFailed(f"{what} must not contain a '..' segment", code=code)


def _check_repo(repo: str) -> None:
    """A prefix check means nothing if the rest of the URL can climb out of it (`acme/../evil`)."""
    if len(repo) > MAX_REPO_LENGTH:
        raise ValidationFailed(f"target.repo is longer than {MAX_REPO_LENGTH} characters", code=REPO_NOT_ALLOWED)
    if _CONTROL.search(repo) or re.search(r"\s", repo):
        raise ValidationFailed("target.repo must not contain spaces or control characters", code=REPO_NOT_ALLOWED)
    if ".." in re.split(r"[/\\:]", repo) or "%2e" in repo.lower():
        raise ValidationFailed("target.repo must not contain a '..' segment", code=REPO_NOT_ALLOWED)


def _check_ref(ref: str) -> None:
    _check_git_name(ref, what="target.ref", code=INVALID_REF, max_length=MAX_REF_LENGTH)
    if ".." in ref:  # git reads `a..b` as a range, never as one ref
        raise ValidationFailed("target.ref must not contain '..'", code=INVALID_REF)


def _check_path(path: str) -> None:
    _check_git_name(path, what="target.path", code=INVALID_PATH, max_length=MAX_PATH_LENGTH)
    if path.startswith(("/", "\\")):
        raise ValidationFailed("target.path must be relative to the repository", code=INVALID_PATH)


def normalize_repo(repo: str) -> str:
    """A URL is lower-cased, without a trailing `.git` or `/`: one spelling per repository. A
    local path names a directory on a case-sensitive file system, where a bare repository's
    `.git` is part of its name: kept as written but for trailing slashes."""
    repo = repo.strip()
    if repo.startswith("/"):
        return repo.rstrip("/") or "/"
    repo = repo.lower()
    if repo.endswith(".git"):
        repo = repo[: -len(".git")]
    return repo.rstrip("/")


def repo_under(repo: str, prefix: str) -> bool:
    """Whether a normalised repository starts with an allowed prefix: a local path exactly as
    written, a URL in any case."""
    if repo.startswith("/"):
        return repo.startswith(prefix)
    return repo.startswith(prefix.lower())


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
    _check_repo(repo)
    prefixes = [p.strip() for p in allowed_repo_prefixes if p.strip()]
    if not any(repo_under(repo, prefix) for prefix in prefixes):
        if prefixes:
            why = f"it does not start with a prefix in HOL_ALLOWED_REPO_PREFIXES ({', '.join(prefixes)})"
        else:
            why = "HOL_ALLOWED_REPO_PREFIXES is unset or empty, which denies every repository"
        raise ValidationFailed(f"repo {repo!r} is not allowed: {why}", code=REPO_NOT_ALLOWED)

    ref, path = target.get("ref") or "main", target.get("path") or ""
    if not isinstance(ref, str) or not isinstance(path, str):
        raise BadRequest("target.ref and target.path must be strings", code="invalid")
    ref, path = ref.strip(), path.strip()
    _check_ref(ref)
    _check_path(path)

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
        "target_ref": ref,
        "target_path": path,
        "time_budget_seconds": budget,
        "allow_network": wants_network,
        "allow_secrets": wants_secrets,
    }
