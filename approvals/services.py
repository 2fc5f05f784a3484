"""Every state change of approval requests (SPEC §3.3), shared by the API, the admin, the
management command and Beat.

Each function locks the request, checks who is acting, checks the transition, changes the row and
records the audit entry in one transaction; notifications are created in it too, while email, the
webhook and the wake-up of long-polling agents leave the process in on_commit.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone
from guardian.shortcuts import assign_perm

from approvals import broadcast, delivery
from approvals.models import ApprovalDecision, ApprovalRequest
from approvals.policy import Policy, current_policy
from approvals.risk import Assessment, action_hash, assess, canonical_action
from audit.services import audit_record
from hol.actors import AGENT_GROUP, SYSTEM, is_agent
from hol.errors import BadRequest, Conflict, NotFound, PermissionDenied
from notifications.services import notification_create

log = logging.getLogger(__name__)
User = AbstractBaseUser
Status = ApprovalRequest.Status
DECIDE_PERMISSION = "approvals.decide_approvalrequest"
SYSTEM_ROLE = "system"


# --- reading the rules ----------------------------------------------------------------------------


def risk_assess(*, action: dict[str, Any]) -> Assessment:
    """Assess an action against the rules file as it is now."""
    return assess(action, current_policy().rules)


def _get_locked(request_id: UUID | str) -> ApprovalRequest:
    try:
        pk = UUID(str(request_id))
    except ValueError:
        raise NotFound(f"approval request {request_id} not found") from None
    request = ApprovalRequest.objects.select_for_update().filter(pk=pk).first()
    if request is None:
        raise NotFound(f"approval request {request_id} not found")
    return request


def _requesting_accounts(request: ApprovalRequest) -> set[Any]:
    """The requester and the accounts owning the worker the request came from: none may decide."""
    accounts = {request.requested_by_id}
    if request.work_order_id and request.work_order.worker_id:
        accounts.add(request.work_order.worker.user_id)
    if request.session_id:
        accounts.add(request.session.worker.user_id)
    return accounts


def _user_roles(user: User) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


def ensure_may_decide(actor: User | None, request: ApprovalRequest, policy: Policy) -> str:
    """Who may decide (approve, reject, escalate) a request: a person, not the requester or the
    owner of the requesting worker, holding a role whose levels include the request's level (and
    the level's `require_role`), with the object permission recorded for this request. Returns the
    role they decide as (the most senior that qualifies)."""
    if actor is None or not actor.is_authenticated:
        raise PermissionDenied("a decision needs a signed-in approver", code="not_authenticated")
    if is_agent(actor):
        raise PermissionDenied("agents never decide approval requests", code="agents_cannot_decide")
    if actor.pk in _requesting_accounts(request):
        raise PermissionDenied("nobody may decide a request they (or their worker) made", code="self_approval")
    held = _user_roles(actor)
    eligible = [role for role in policy.roles_for_level(request.risk_level) if role in held]
    if not eligible:
        required = policy.level(request.risk_level).require_role
        if required and any(
            request.risk_level in policy.roles[role].may_approve for role in held if role in policy.roles
        ):
            raise PermissionDenied(
                f"{request.risk_level} requests must be decided by a {required}", code="role_required"
            )
        raise PermissionDenied(
            f"your roles ({', '.join(sorted(held)) or 'none'}) may not decide {request.risk_level} requests",
            code="role_cannot_decide",
        )
    if not actor.has_perm(DECIDE_PERMISSION, request):
        raise PermissionDenied("you are not among those who may decide this request", code="not_eligible")
    return max(eligible, key=policy.role_rank)


def _ensure_open(request: ApprovalRequest, now: datetime) -> None:
    if request.status != Status.PENDING:
        raise Conflict(f"the request is {request.status}; it can no longer be decided", code="not_pending")
    if request.expires_at <= now:
        raise Conflict("the request expired; it can no longer be decided", code="expired")


# --- notifications --------------------------------------------------------------------------------


def _link(request: ApprovalRequest) -> str:
    return f"/admin/approvals/approvalrequest/{request.pk}/change/"


def _role_members(role: str) -> list[User]:
    return list(get_user_model().objects.filter(groups__name=role, is_active=True).exclude(groups__name=AGENT_GROUP))


def _approvers_of(request: ApprovalRequest) -> list[User]:
    """Who hears about a request waiting for a decision: its assignee, or its whole role."""
    if request.assigned_to_id:
        return [request.assigned_to]
    return [user for user in _role_members(request.assigned_role) if user.pk not in _requesting_accounts(request)]


def _notify(
    request: ApprovalRequest, users: list[User], *, kind: str, message: str, level: str = "info", policy: Policy
) -> None:
    """In-app for each user now; email and webhook (per the level's channels) after commit."""
    for user in users:
        notification_create(user=user, kind=kind, message=message, link=_link(request), level=level, related=request)
    channels = policy.level(request.risk_level).channels
    payload = {
        "id": str(request.pk),
        "kind": kind,
        "status": request.status,
        "risk_level": request.risk_level,
        "action_type": request.action_type,
        "operation": request.operation,
        "environment": request.environment,
        "link": _link(request),
    }
    if "email" in channels and users:
        addresses = [user.email for user in users if getattr(user, "email", "")]
        transaction.on_commit(
            lambda: delivery.send_email(recipients=addresses, subject=f"[HOL] {kind}", message=message)
        )
    if "webhook" in channels:
        transaction.on_commit(lambda: delivery.post_webhook(text=message, payload=payload))


def _publish(request: ApprovalRequest) -> None:
    request_id, status = request.pk, request.status
    transaction.on_commit(lambda: broadcast.publish_decided(request_id, status))


def _describe(request: ApprovalRequest) -> str:
    target = " ".join(part for part in (request.action_type, request.operation, request.environment) if part)
    return f"{request.risk_level} risk approval request {str(request.pk)[:8]} ({target})"


# --- assignment -----------------------------------------------------------------------------------


def _grant(request: ApprovalRequest, policy: Policy) -> None:
    """Record, as object permissions, who may decide this request: every role group eligible for
    its level, and the assigned approver."""
    for role in policy.roles_for_level(request.risk_level):
        group, _ = Group.objects.get_or_create(name=role)
        assign_perm(DECIDE_PERMISSION, group, request)
    if request.assigned_to_id:
        assign_perm(DECIDE_PERMISSION, request.assigned_to, request)


def _assign(request: ApprovalRequest, role: str, policy: Policy) -> list[tuple[str, str]]:
    """Assign to the member of `role` with the fewest pending requests who still has room under the
    role's max_pending; when nobody has room, move up the escalation chain (escalation_level + 1
    each step). At the top with nobody free, the request waits for the whole role. Returns the
    escalation steps taken."""
    steps: list[tuple[str, str]] = []
    excluded = _requesting_accounts(request)
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


# --- transitions ----------------------------------------------------------------------------------


def _link_object(model: type, pk: Any, what: str) -> Any:
    if pk in (None, ""):
        return None
    try:
        return model.objects.get(pk=pk)
    except (model.DoesNotExist, ValueError, TypeError):
        raise BadRequest(f"{what} {pk} not found", code="invalid") from None


def approval_request_create(
    *,
    actor: User,
    action: dict[str, Any],
    workflow_id: str = "",
    thread_id: str = "",
    checkpoint_id: str = "",
    task_id: Any = None,
    work_order_id: Any = None,
    session_id: Any = None,
    agent_name: str = "",
    action_impact: str = "",
    security_context: dict | None = None,
) -> ApprovalRequest:
    """Assess the action and open a request. Low risk with auto_approve is created already
    approved by HOL itself; anything else is assigned to the most junior role that may decide it
    (with room, else up the chain) and waits until `timeout_minutes` from now."""
    from tasks.models import AgentSession, Task, WorkOrder

    policy = current_policy()
    assessment = assess(action, policy.rules)
    level = policy.level(assessment.risk_level)
    canon = canonical_action(action)
    now = timezone.now()
    with transaction.atomic():
        request = ApprovalRequest(
            workflow_id=workflow_id or "",
            thread_id=thread_id or "",
            checkpoint_id=checkpoint_id or "",
            task=_link_object(Task, task_id, "task"),
            work_order=_link_object(WorkOrder, work_order_id, "work order"),
            session=_link_object(AgentSession, session_id, "session"),
            requested_by=actor,
            agent_name=agent_name or actor.get_username(),
            action_type=canon["action_type"],
            resource_type=canon["resource_type"],
            operation=canon["operation"],
            environment=canon["environment"],
            action_details=canon["details"],
            action_impact=action_impact or "",
            action_hash=action_hash(action),
            risk_level=assessment.risk_level,
            risk_score=assessment.risk_score,
            risk_factors=assessment.risk_factors,
            security_context=security_context or {},
            required_approvals=level.require_approval_count,
            require_justification=level.require_justification,
            created_at=now,
            expires_at=now + timedelta(minutes=level.timeout_minutes),
        )
        task_pk = request.task_id or (request.work_order.task_id if request.work_order else None)
        details = {
            "risk_level": request.risk_level,
            "risk_score": request.risk_score,
            "action_type": request.action_type,
            "operation": request.operation,
            "environment": request.environment,
            "action_hash": request.action_hash,
        }
        if level.auto_approve:
            request.status = Status.APPROVED
            request.approver_role = SYSTEM_ROLE
            request.approval_justification = f"auto-approved: {request.risk_level} risk"
            request.decided_at = now
            request.save()
            audit_record(actor=actor, action="approval.requested", target=request, task_id=task_pk, details=details)
            audit_record(actor=SYSTEM, action="approval.auto_approved", target=request, task_id=task_pk)
            _notify(
                request,
                [actor],
                kind="approval.decided",
                message=f"{_describe(request)} was approved automatically",
                policy=policy,
            )
            _publish(request)
            return request

        roles = policy.roles_for_level(request.risk_level)
        if not roles:
            raise Conflict(f"no role in the policy may decide {request.risk_level} requests", code="no_eligible_role")
        steps = _assign(request, roles[0], policy)
        request.save()
        _grant(request, policy)
        audit_record(
            actor=actor,
            action="approval.requested",
            target=request,
            task_id=task_pk,
            details={**details, "assigned_role": request.assigned_role, "assigned_to": _username(request.assigned_to)},
        )
        for from_role, to_role in steps:
            audit_record(
                actor=SYSTEM,
                action="approval.escalated",
                target=request,
                task_id=task_pk,
                details={"from_role": from_role, "to_role": to_role, "reason": "no approver with room"},
            )
        kind = "approval.escalated" if steps else "approval.assigned"
        _notify(
            request,
            _approvers_of(request),
            kind=kind,
            message=f"{_describe(request)} needs your decision"
            + (f" (escalated: nobody in {steps[0][0]} had room)" if steps else ""),
            level="warning" if request.risk_level in ("high", "critical") else "info",
            policy=policy,
        )
    return request


def _username(user: User | None) -> str | None:
    return user.get_username() if user is not None else None


def approval_decide(*, actor: User, request_id: UUID | str, decision: str, justification: str = "") -> ApprovalRequest:
    """Approve or reject. One reject rejects (fail closed); `required_approvals` distinct approvals
    approve; nobody decides twice; a decided or overdue request is a 409 and nothing changes;
    approving where the level requires it needs a justification (400). Approval sets `expires_at`
    to the end of the window in which the agent may consume it."""
    if decision not in ApprovalDecision.Decision.values:
        raise BadRequest("decision must be approve or reject", code="invalid")
    justification = (justification or "").strip()
    policy = current_policy()
    with transaction.atomic():
        request = _get_locked(request_id)
        role = ensure_may_decide(actor, request, policy)
        now = timezone.now()
        _ensure_open(request, now)
        if request.decisions.filter(approver=actor).exists():
            raise Conflict("you already decided this request; another approver must", code="already_decided")
        if decision == ApprovalDecision.Decision.APPROVE and request.require_justification and not justification:
            raise BadRequest(
                f"a justification is required to approve a {request.risk_level} risk request",
                code="justification_required",
            )
        ApprovalDecision.objects.create(
            request=request, approver=actor, role=role, decision=decision, justification=justification, created_at=now
        )
        approvals = request.decisions.filter(decision=ApprovalDecision.Decision.APPROVE).count()
        details = {"role": role, "justification": justification, "approvals": approvals}
        if decision == ApprovalDecision.Decision.REJECT:
            request.status, request.rejection_reason = Status.REJECTED, justification
            action = "approval.rejected"
        elif approvals >= request.required_approvals:
            request.status, request.approval_justification = Status.APPROVED, justification
            request.expires_at = now + timedelta(minutes=policy.level(request.risk_level).timeout_minutes)
            action = "approval.approved"
        else:
            action = "approval.approval_recorded"
        if request.status != Status.PENDING:
            request.approver, request.approver_role, request.decided_at = actor, role, now
        request.save()
        audit_record(actor=actor, action=action, target=request, task_id=request.task_id, details=details)
        if request.status == Status.PENDING:
            message = (
                f"{_describe(request)}: {actor.get_username()} approved "
                f"({approvals} of {request.required_approvals}); another approver is needed"
            )
            others = [user for user in _approvers_of(request) if user.pk != actor.pk]
            _notify(request, others, kind="approval.partially_approved", message=message, policy=policy)
        else:
            message = f"{_describe(request)} was {request.status} by {actor.get_username()}"
            _notify(request, [request.requested_by], kind="approval.decided", message=message, policy=policy)
        _publish(request)
    return request


def approval_escalate(*, actor: User, request_id: UUID | str, justification: str = "") -> ApprovalRequest:
    """Someone who may decide hands the request up to the assigned role's `escalates_to`
    (escalation_level + 1), assigned there like a new request; 409 at the top of the chain."""
    policy = current_policy()
    with transaction.atomic():
        request = _get_locked(request_id)
        ensure_may_decide(actor, request, policy)
        _ensure_open(request, timezone.now())
        current = policy.roles.get(request.assigned_role)
        if current is None or current.escalates_to is None:
            raise Conflict(f"{request.assigned_role or 'this role'} has nobody to escalate to", code="cannot_escalate")
        from_role = request.assigned_role
        request.escalation_level += 1
        steps = _assign(request, current.escalates_to, policy)
        request.save()
        _grant(request, policy)
        audit_record(
            actor=actor,
            action="approval.escalated",
            target=request,
            task_id=request.task_id,
            details={
                "from_role": from_role,
                "to_role": request.assigned_role,
                "assigned_to": _username(request.assigned_to),
                "justification": (justification or "").strip(),
                "further_steps": len(steps),
            },
        )
        _notify(
            request,
            _approvers_of(request),
            kind="approval.escalated",
            message=f"{_describe(request)} was escalated to you by {actor.get_username()}",
            level="warning",
            policy=policy,
        )
        _publish(request)
    return request


def approval_cancel(*, actor: User, request_id: UUID | str, reason: str = "") -> ApprovalRequest:
    """The requester withdraws a pending request."""
    policy = current_policy()
    with transaction.atomic():
        request = _get_locked(request_id)
        if actor is None or request.requested_by_id != actor.pk:
            raise PermissionDenied("only the requester may cancel a request", code="not_requester")
        if request.status != Status.PENDING:
            raise Conflict(f"the request is {request.status}; it cannot be cancelled", code="not_pending")
        request.status, request.decided_at = Status.CANCELLED, timezone.now()
        request.rejection_reason = (reason or "").strip()
        request.save()
        audit_record(
            actor=actor,
            action="approval.cancelled",
            target=request,
            task_id=request.task_id,
            details={"reason": reason},
        )
        _notify(
            request,
            _approvers_of(request),
            kind="approval.cancelled",
            message=f"{_describe(request)} was withdrawn by its requester",
            policy=policy,
        )
        _publish(request)
    return request


def approval_consume(*, actor: User, request_id: UUID | str, action: dict[str, Any]) -> ApprovalRequest:
    """The requester uses an approval once, for exactly the action approved: 409 when it is not
    approved, already used, past its window, or the action's hash differs."""
    with transaction.atomic():
        request = _get_locked(request_id)
        if actor is None or request.requested_by_id != actor.pk:
            raise PermissionDenied("only the requester may use an approval", code="not_requester")
        now = timezone.now()
        if request.status == Status.EXPIRED:
            raise Conflict("the request expired", code="expired")
        if request.status != Status.APPROVED:
            raise Conflict(f"the request is {request.status}, not approved", code="not_approved")
        if request.consumed_at is not None:
            raise Conflict("this approval was already used; ask again", code="already_used")
        if request.expires_at <= now:
            raise Conflict("the approval's window to act has passed; ask again", code="expired")
        if action_hash(action) != request.action_hash:
            raise Conflict("the action differs from the one approved; ask again", code="action_mismatch")
        request.consumed_at = now
        request.save(update_fields=["consumed_at", "updated_at"])
        audit_record(
            actor=actor,
            action="approval.consumed",
            target=request,
            task_id=request.task_id,
            details={"action_hash": request.action_hash},
        )
    return request


# --- Beat -----------------------------------------------------------------------------------------


def _lock_due(pk: Any, **conditions: Any) -> ApprovalRequest | None:
    skip_locked = connection.features.has_select_for_update_skip_locked
    return ApprovalRequest.objects.select_for_update(skip_locked=skip_locked).filter(pk=pk, **conditions).first()


def approvals_expire_overdue(*, now: datetime | None = None) -> int:
    """Pending requests past `expires_at` become expired (HOL is the actor); the requester and the
    approvers are told. Safe to run twice or concurrently."""
    now = now or timezone.now()
    policy = current_policy()
    expired = 0
    due = ApprovalRequest.objects.filter(status=Status.PENDING, expires_at__lte=now).values_list("pk", flat=True)
    for pk in list(due[:1000]):
        with transaction.atomic():
            request = _lock_due(pk, status=Status.PENDING, expires_at__lte=now)
            if request is None:
                continue
            request.status, request.decided_at = Status.EXPIRED, now
            request.save(update_fields=["status", "decided_at", "updated_at"])
            audit_record(actor=SYSTEM, action="approval.expired", target=request, task_id=request.task_id)
            message = f"{_describe(request)} expired without a decision"
            _notify(
                request,
                [request.requested_by, *_approvers_of(request)],
                kind="approval.expired",
                message=message,
                level="warning",
                policy=policy,
            )
            _publish(request)
            expired += 1
    return expired


def approvals_warn_expiring(*, now: datetime | None = None) -> int:
    """Tell the approvers of pending requests expiring within HOL_APPROVAL_EXPIRY_WARNING_SECONDS,
    once per request."""
    now = now or timezone.now()
    horizon = now + timedelta(seconds=settings.HOL_APPROVAL_EXPIRY_WARNING_SECONDS)
    conditions = {"status": Status.PENDING, "expiry_warned_at__isnull": True, "expires_at__gt": now}
    policy = current_policy()
    warned = 0
    due = ApprovalRequest.objects.filter(expires_at__lte=horizon, **conditions).values_list("pk", flat=True)
    for pk in list(due[:1000]):
        with transaction.atomic():
            request = _lock_due(pk, expires_at__lte=horizon, **conditions)
            if request is None:
                continue
            request.expiry_warned_at = now
            request.save(update_fields=["expiry_warned_at", "updated_at"])
            audit_record(actor=SYSTEM, action="approval.expiry_warned", target=request, task_id=request.task_id)
            minutes = max(1, round((request.expires_at - now).total_seconds() / 60))
            _notify(
                request,
                _approvers_of(request),
                kind="approval.expiring",
                message=f"{_describe(request)} expires in about {minutes} min",
                level="warning",
                policy=policy,
            )
            warned += 1
    return warned
