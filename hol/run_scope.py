"""A run's token reaches one task and one work order.

A Celery worker gives the agent it starts a short-lived token for the worker's service account,
the account that holds every work order that host runs. The token names its run in the `hol_run`
claim, and what it may reach is narrowed to that run's task and work order: an agent cannot read,
post to, link, finish or fail another run's work, even though the account behind it could. Views
name the actions a run's token may call (`run_token_actions`); every other view refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from rest_framework.permissions import BasePermission
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken

CLAIM = "hol_run"
OUT_OF_SCOPE = "outside_run_scope"


@dataclass(frozen=True)
class RunScope:
    task_id: UUID
    work_order_id: UUID

    def as_claim(self) -> dict[str, str]:
        return {"task": str(self.task_id), "work_order": str(self.work_order_id)}

    @classmethod
    def from_claim(cls, claim: Any) -> RunScope:
        try:
            return cls(task_id=UUID(str(claim["task"])), work_order_id=UUID(str(claim["work_order"])))
        except (TypeError, KeyError, ValueError):
            raise InvalidToken("the token's run claim is malformed") from None

    def encode(self) -> str:
        return f"{self.task_id} {self.work_order_id}"

    @classmethod
    def decode(cls, text: str) -> RunScope:
        task_id, work_order_id = text.split(" ")
        return cls(task_id=UUID(task_id), work_order_id=UUID(work_order_id))


def run_scope(actor: Any) -> RunScope | None:
    """The run an actor's credentials are limited to; None for everyone else."""
    return getattr(actor, "hol_run_scope", None)


def scope_user(user: Any, scope: RunScope | None) -> Any:
    if scope is not None:
        user.hol_run_scope = scope
    return user


def ensure_task_in_scope(actor: Any, task_id: Any) -> None:
    from hol.errors import PermissionDenied  # hol.errors imports DRF's views, which load this module

    scope = run_scope(actor)
    if scope is not None and str(task_id) != str(scope.task_id):
        raise PermissionDenied("this run's token reaches only its own task", code=OUT_OF_SCOPE)


def ensure_work_order_in_scope(actor: Any, work_order_id: Any) -> None:
    from hol.errors import PermissionDenied

    scope = run_scope(actor)
    if scope is not None and str(work_order_id) != str(scope.work_order_id):
        raise PermissionDenied("this run's token reaches only its own work order", code=OUT_OF_SCOPE)


def ensure_request_in_scope(actor: Any, request: Any) -> None:
    """An approval request a run's token may act on: one of its task or its work order."""
    from hol.errors import PermissionDenied

    scope = run_scope(actor)
    if scope is None:
        return
    if str(request.task_id) != str(scope.task_id) and str(request.work_order_id) != str(scope.work_order_id):
        raise PermissionDenied("this run's token reaches only its own approval requests", code=OUT_OF_SCOPE)


class RunScopedJWTAuthentication(JWTAuthentication):
    """simplejwt's authentication, carrying a run token's scope on the user it returns."""

    def get_user(self, validated_token: Any) -> Any:
        user = super().get_user(validated_token)
        claim = validated_token.get(CLAIM)
        return scope_user(user, RunScope.from_claim(claim) if claim is not None else None)


class RunTokenPermission(BasePermission):
    """A run's token calls only the actions a view lists in `run_token_actions` (viewset actions,
    or HTTP methods in lower case for a plain APIView)."""

    message = "a run's token may not call this"
    code = OUT_OF_SCOPE

    def has_permission(self, request: Any, view: Any) -> bool:
        if run_scope(request.user) is None:
            return True
        action = getattr(view, "action", None) or request.method.lower()
        return action in getattr(view, "run_token_actions", ())
