"""Reads with rules: which approval requests an account may see, which wait on whom, and what
happened to the requests of one workflow or task."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db.models import Count, Q, QuerySet
from guardian.shortcuts import get_objects_for_user

from approvals.models import ApprovalRequest
from hol.actors import is_agent, is_system
from hol.errors import NotFound
from hol.fetch import parse_uuid
from hol.run_scope import run_scope


def approvals_visible_to(*, actor: Any) -> QuerySet[ApprovalRequest]:
    """An agent account sees the requests it made (a run's token: those of its task); people
    and HOL itself see all."""
    qs = ApprovalRequest.objects.select_related("requested_by", "assigned_to", "approver")
    if not is_agent(actor):
        return qs
    scope = run_scope(actor)
    if scope is not None:
        qs = qs.filter(Q(task_id=scope.task_id) | Q(work_order_id=scope.work_order_id))
    return qs.filter(requested_by=actor)


def approval_get(*, actor: Any, request_id: UUID | str) -> ApprovalRequest:
    pk = parse_uuid(request_id, what="approval request")
    request = approvals_visible_to(actor=actor).prefetch_related("decisions__approver").filter(pk=pk).first()
    if request is None:
        raise NotFound(f"approval request {request_id} not found")
    return request


def approvals_decidable_by(*, actor: Any) -> QuerySet[ApprovalRequest]:
    """Pending requests the actor holds the decide permission on (their role's or their own)."""
    if is_agent(actor):
        return ApprovalRequest.objects.none()
    if is_system(actor):
        return ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING)
    qs = get_objects_for_user(
        actor, "approvals.decide_approvalrequest", klass=ApprovalRequest, accept_global_perms=False
    )
    return qs.filter(status=ApprovalRequest.Status.PENDING).exclude(requested_by=actor)


def approvals_report(*, actor: Any, workflow_id: str | None = None, task_id: Any = None) -> dict[str, Any]:
    """The requests of one workflow or one task: counts by status, every audited step in order,
    and why requests were rejected."""
    from audit.models import AuditEntry

    qs = approvals_visible_to(actor=actor)
    if workflow_id is not None:
        qs = qs.filter(workflow_id=workflow_id)
    if task_id is not None:
        task_pk = parse_uuid(task_id, what="task")
        qs = qs.filter(task_id=task_pk) | qs.filter(work_order__task_id=task_pk)
    requests = list(qs.order_by("created_at"))
    counts = dict(qs.order_by().values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    entries = AuditEntry.objects.filter(
        target_type="approvalrequest", target_id__in=[str(request.pk) for request in requests]
    ).order_by("timestamp", "id")
    return {
        "requests": requests,
        "counts": {status: counts.get(status, 0) for status in ApprovalRequest.Status.values},
        "timeline": list(entries.values("timestamp", "target_id", "action", "actor", "details")),
        "rejections": [
            (request, request.rejection_reason)
            for request in requests
            if request.status == ApprovalRequest.Status.REJECTED
        ],
    }
