"""Reads with rules: which approval requests an account may see, and which wait on whom."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db.models import QuerySet
from guardian.shortcuts import get_objects_for_user

from approvals.models import ApprovalRequest
from hol.actors import is_agent
from hol.errors import NotFound


def approvals_visible_to(*, actor: Any) -> QuerySet[ApprovalRequest]:
    """An agent account sees the requests it made; people see all."""
    qs = ApprovalRequest.objects.select_related("requested_by", "assigned_to", "approver")
    return qs.filter(requested_by=actor) if is_agent(actor) else qs


def approval_get(*, actor: Any, request_id: UUID | str) -> ApprovalRequest:
    try:
        pk = UUID(str(request_id))
    except ValueError:
        raise NotFound(f"approval request {request_id} not found") from None
    request = approvals_visible_to(actor=actor).prefetch_related("decisions__approver").filter(pk=pk).first()
    if request is None:
        raise NotFound(f"approval request {request_id} not found")
    return request


def approvals_decidable_by(*, actor: Any) -> QuerySet[ApprovalRequest]:
    """Pending requests the actor holds the decide permission on (their role's or their own)."""
    if is_agent(actor):
        return ApprovalRequest.objects.none()
    qs = get_objects_for_user(
        actor, "approvals.decide_approvalrequest", klass=ApprovalRequest, accept_global_perms=False
    )
    return qs.filter(status=ApprovalRequest.Status.PENDING).exclude(requested_by=actor)
