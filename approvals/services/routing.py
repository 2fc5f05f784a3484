"""Where a request goes: assignment to the most junior role that may decide it (with room, else up
the escalation chain), escalation by an approver, and the object permissions (django-guardian)
recording who may decide each request."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from guardian.shortcuts import assign_perm

from approvals.models import ApprovalRequest
from approvals.policy import Policy, current_policy
from approvals.services.notify import approvers_of, describe, notify, publish_on_commit
from approvals.services.permissions import DECIDE_PERMISSION, ensure_may_decide, ensure_open, requesting_accounts
from audit.actions import AuditAction
from audit.services import audit_record
from hol.actors import AGENT_GROUP
from hol.errors import Conflict
from hol.fetch import get_locked

User = AbstractBaseUser
Status = ApprovalRequest.Status


def username(user: User | None) -> str | None:
    return user.get_username() if user is not None else None


def grant(request: ApprovalRequest, policy: Policy) -> None:
    """Record, as object permissions, who may decide this request: every role group eligible for
    its level, and the assigned approver."""
    for role in policy.roles_for_level(request.risk_level):
        group, _ = Group.objects.get_or_create(name=role)
        assign_perm(DECIDE_PERMISSION, group, request)
    if request.assigned_to_id:
        assign_perm(DECIDE_PERMISSION, request.assigned_to, request)


def assign(request: ApprovalRequest, role: str, policy: Policy) -> list[tuple[str, str]]:
    """Assign to the member of `role` with the fewest pending requests who still has room under the
    role's max_pending; when nobody has room, move up the escalation chain (escalation_level + 1
    each step). At the top with nobody free, the request waits for the whole role. Returns the
    escalation steps taken."""
    steps: list[tuple[str, str]] = []
    excluded = requesting_accounts(request)
    while True:
        # Assignments to one role take turns (a lock on its group row), so the pending counts
        # below include every assignment committed before, and two requests made at once cannot
        # both take an approver's last free place. Roles are locked up the chain, never down.
        Group.objects.select_for_update().filter(name=role).first()
        limit = policy.roles[role].max_pending
        candidates = (
            get_user_model()
            .objects.filter(groups__name=role, is_active=True)
            .exclude(groups__name=AGENT_GROUP)
            .exclude(pk__in=excluded)
            .annotate(
                pending=Count(
                    "assigned_approvals",
                    filter=Q(assigned_approvals__status=Status.PENDING) & ~Q(assigned_approvals__pk=request.pk),
                )
            )
            .filter(pending__lt=limit)
            .order_by("pending", "pk")
        )
        chosen = candidates.first()
        next_role = policy.roles[role].escalates_to
        if chosen is not None or next_role is None:
            request.assigned_role, request.assigned_to = role, chosen
            return steps
        steps.append((role, next_role))
        request.escalation_level += 1
        role = next_role


def approval_escalate(
    *, actor: User, request_id: UUID | str, justification: str = "", now: datetime | None = None
) -> ApprovalRequest:
    """Someone who may decide hands the request up to the assigned role's `escalates_to`
    (escalation_level + 1), assigned there like a new request; 409 at the top of the chain."""
    policy = current_policy()
    now = now or timezone.now()
    with transaction.atomic():
        request = get_locked(ApprovalRequest.objects, request_id, what="approval request")
        ensure_may_decide(actor, request, policy)
        ensure_open(request, now)
        current = policy.roles.get(request.assigned_role)
        if current is None or current.escalates_to is None:
            raise Conflict(f"{request.assigned_role or 'this role'} has nobody to escalate to", code="cannot_escalate")
        from_role = request.assigned_role
        request.escalation_level += 1
        steps = assign(request, current.escalates_to, policy)
        request.save()
        grant(request, policy)
        audit_record(
            actor=actor,
            action=AuditAction.APPROVAL_ESCALATED,
            target=request,
            task_id=request.task_id,
            details={
                "from_role": from_role,
                "to_role": request.assigned_role,
                "assigned_to": username(request.assigned_to),
                "justification": (justification or "").strip(),
                "further_steps": len(steps),
            },
        )
        notify(
            request,
            approvers_of(request),
            kind="approval.escalated",
            message=f"{describe(request)} was escalated to you by {actor.get_username()}",
            level="warning",
            policy=policy,
        )
        publish_on_commit(request)
    return request
