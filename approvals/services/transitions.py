"""The life of an approval request after it is opened: decided, cancelled, consumed
once, expired (by Beat, or when read after its deadline). The one status table of the model is
here; opening a request (`requests`) follows it too.

Each function locks the request, checks who is acting, checks the transition against the table,
changes the row and records the audit entry in one transaction; notifications are created in it
too, while email, the webhook and the wake-up of long-polling agents leave the process on commit.
HOL itself (SYSTEM) is the actor of expiry and of the warnings before it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from approvals.models import ApprovalDecision, ApprovalRequest
from approvals.policy import Policy, current_policy
from approvals.risk import action_hash
from approvals.services.notify import approvers_of, describe, notify, publish_on_commit
from approvals.services.permissions import ensure_may_decide, ensure_open
from audit.actions import AuditAction
from audit.services import audit_record
from hol.actors import SYSTEM
from hol.errors import BadRequest, Conflict, NotFound, PermissionDenied
from hol.fetch import get_locked
from hol.run_scope import ensure_request_in_scope
from hol.transitions import ensure_transition

User = AbstractBaseUser
Status = ApprovalRequest.Status
SYSTEM_ROLE = "system"

TRANSITIONS = {
    Status.PENDING: {Status.APPROVED, Status.REJECTED, Status.EXPIRED, Status.CANCELLED},
}
WHAT = "approval request"


def _settle_linked_task(request: ApprovalRequest) -> None:
    """A task waiting at intake for this request is queued or cancelled by the same transaction
    that decided it (tasks.services decides whether this request is that task's)."""
    if request.task_id is not None:
        from tasks.services import task_intake_approval_settled

        task_intake_approval_settled(request=request)


def approval_decide(
    *,
    actor: User,
    request_id: UUID | str,
    decision: str,
    justification: str = "",
    now: datetime | None = None,
) -> ApprovalRequest:
    """Approve or reject. One reject rejects (fail closed) and always needs a reason;
    `required_approvals` distinct approvals approve; nobody decides twice; a decided or overdue
    request is a 409 and nothing changes; approving where the level requires it needs a
    justification (400). Approval opens the window (`consume_by`) in which the agent may use it."""
    if decision not in ApprovalDecision.Decision.values:
        raise BadRequest("decision must be approve or reject", code="invalid")
    justification = (justification or "").strip()
    policy = current_policy()
    now = now or timezone.now()
    rejecting = decision == ApprovalDecision.Decision.REJECT
    with transaction.atomic():
        request = get_locked(ApprovalRequest.objects, request_id, what=WHAT)
        role = ensure_may_decide(actor, request, policy)
        ensure_open(request, now)
        if request.decisions.filter(approver=actor).exists():
            raise Conflict("you already decided this request; another approver must", code="already_decided")
        if rejecting and not justification:
            raise BadRequest("a rejection needs a reason", code="reason_required")
        if not rejecting and request.require_justification and not justification:
            raise BadRequest(
                f"a justification is required to approve a {request.risk_level} risk request",
                code="justification_required",
            )
        ApprovalDecision.objects.create(
            request=request, approver=actor, role=role, decision=decision, justification=justification, created_at=now
        )
        approvals = request.decisions.filter(decision=ApprovalDecision.Decision.APPROVE).count()
        details = {"role": role, "justification": justification, "approvals": approvals}
        if rejecting:
            ensure_transition(request.status, Status.REJECTED, TRANSITIONS, what=WHAT)
            request.status, request.rejection_reason = Status.REJECTED, justification
            action = AuditAction.APPROVAL_REJECTED
        elif approvals >= request.required_approvals:
            ensure_transition(request.status, Status.APPROVED, TRANSITIONS, what=WHAT)
            request.status, request.approval_justification = Status.APPROVED, justification
            request.consume_by = now + timedelta(minutes=policy.level(request.risk_level).timeout_minutes)
            action = AuditAction.APPROVAL_APPROVED
        else:
            action = AuditAction.APPROVAL_APPROVAL_RECORDED
        if request.status != Status.PENDING:
            request.approver, request.approver_role, request.decided_at = actor, role, now
        request.save()
        audit_record(actor=actor, action=action, target=request, task_id=request.task_id, details=details)
        if request.status == Status.PENDING:
            message = (
                f"{describe(request)}: {actor.get_username()} approved "
                f"({approvals} of {request.required_approvals}); another approver is needed"
            )
            others = [user for user in approvers_of(request) if user.pk != actor.pk]
            notify(request, others, kind="approval.partially_approved", message=message, policy=policy)
        else:
            message = f"{describe(request)} was {request.status} by {actor.get_username()}"
            notify(request, [request.requested_by], kind="approval.decided", message=message, policy=policy)
            _settle_linked_task(request)
        publish_on_commit(request)
    return request


def approval_cancel(
    *,
    actor: User,
    request_id: UUID | str,
    reason: str = "",
    now: datetime | None = None,
    skip_permission_checks: bool = False,
) -> ApprovalRequest:
    """The requester withdraws a pending request. `skip_permission_checks` is for the tasks
    service withdrawing the request of a task someone allowed to manage it cancelled."""
    policy = current_policy()
    with transaction.atomic():
        request = get_locked(ApprovalRequest.objects, request_id, what=WHAT)
        if not skip_permission_checks:
            if request.requested_by_id != actor.pk:
                raise PermissionDenied("only the requester may cancel a request", code="not_requester")
            ensure_request_in_scope(actor, request)
        ensure_transition(request.status, Status.CANCELLED, TRANSITIONS, what=WHAT)
        request.status, request.decided_at = Status.CANCELLED, now or timezone.now()
        request.rejection_reason = (reason or "").strip()
        request.save()
        audit_record(
            actor=actor,
            action=AuditAction.APPROVAL_CANCELLED,
            target=request,
            task_id=request.task_id,
            details={"reason": request.rejection_reason},
        )
        message = f"{describe(request)} was withdrawn by {actor.get_username()}"
        notify(request, approvers_of(request), kind="approval.cancelled", message=message, policy=policy)
        _settle_linked_task(request)
        publish_on_commit(request)
    return request


def approval_consume(
    *, actor: User, request_id: UUID | str, action: dict[str, Any], now: datetime | None = None
) -> ApprovalRequest:
    """The requester uses an approval once, for exactly the action approved, within `consume_by`,
    and, when the request names a work order, while still holding it: 409 otherwise."""
    from tasks.models import WorkOrder

    now = now or timezone.now()
    with transaction.atomic():
        request = get_locked(ApprovalRequest.objects, request_id, what=WHAT)
        if request.requested_by_id != actor.pk:
            raise PermissionDenied("only the requester may use an approval", code="not_requester")
        ensure_request_in_scope(actor, request)
        if request.status == Status.EXPIRED or request.is_overdue(now):
            raise Conflict("the request expired", code="expired")
        if request.status != Status.APPROVED:
            raise Conflict(f"the request is {request.status}, not approved", code="not_approved")
        if request.consumed_at is not None:
            raise Conflict("this approval was already used; ask again", code="already_used")
        if request.consume_by is None or request.consume_by <= now:
            raise Conflict("the approval's window to act has passed; ask again", code="expired")
        if action_hash(action) != request.action_hash:
            raise Conflict("the action differs from the one approved; ask again", code="action_mismatch")
        if request.work_order_id is not None:
            work_order = get_locked(
                WorkOrder.objects.select_related("worker"), request.work_order_id, what="work order", of=("self",)
            )
            if (
                work_order.status not in WorkOrder.HELD
                or work_order.worker is None
                or work_order.worker.user_id != actor.pk
            ):
                raise Conflict("you no longer hold the work order this approval was for", code="work_order_not_held")
        request.consumed_at = now
        request.save(update_fields=["consumed_at", "updated_at"])
        audit_record(
            actor=actor,
            action=AuditAction.APPROVAL_CONSUMED,
            target=request,
            task_id=request.task_id,
            details={"action_hash": request.action_hash},
        )
    return request


# --- expiry: on read, and by Beat -----------------------------------------------------------------


def _expire(request: ApprovalRequest, now: datetime, policy: Policy) -> None:
    ensure_transition(request.status, Status.EXPIRED, TRANSITIONS, what=WHAT)
    request.status, request.decided_at = Status.EXPIRED, now
    request.save(update_fields=["status", "decided_at", "updated_at"])
    audit_record(actor=SYSTEM, action=AuditAction.APPROVAL_EXPIRED, target=request, task_id=request.task_id)
    notify(
        request,
        [request.requested_by, *approvers_of(request)],
        kind="approval.expired",
        message=f"{describe(request)} expired without a decision",
        level="warning",
        policy=policy,
    )
    _settle_linked_task(request)
    publish_on_commit(request)


def approval_expire_if_overdue(*, request_id: UUID | str, now: datetime | None = None) -> bool:
    """A pending request read after its deadline becomes expired there and then (HOL is the
    actor), so nobody sees `pending` for a request nobody can decide. Idempotent and safe under
    concurrent readers: the row is locked and re-checked, so it is expired and audited once.
    Returns whether this call expired it."""
    now = now or timezone.now()
    with transaction.atomic():
        try:
            request = get_locked(ApprovalRequest.objects, request_id, what=WHAT)
        except NotFound:
            return False
        if not request.is_overdue(now):
            return False
        _expire(request, now, current_policy())
    return True


def approvals_expire_overdue(*, now: datetime | None = None, among: QuerySet | None = None) -> int:
    """Pending requests past `expires_at` (of `among`, when given: those a list is about to show)
    become expired (HOL is the actor); the requester and the approvers are told. Safe to run twice
    or concurrently."""
    now = now or timezone.now()
    policy = current_policy()
    expired = 0
    due = (among if among is not None else ApprovalRequest.objects).filter(status=Status.PENDING, expires_at__lte=now)
    due = due.order_by().values_list("pk", flat=True)
    for pk in list(due[:1000]):
        with transaction.atomic():
            # Locked if still due and nobody else holds it (Beat passes over a row being decided).
            due_now = ApprovalRequest.objects.filter(status=Status.PENDING, expires_at__lte=now)
            request = get_locked(due_now, pk, what=WHAT, skip_locked=True, or_none=True)
            if request is None:
                continue
            _expire(request, now, policy)
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
            still_due = ApprovalRequest.objects.filter(expires_at__lte=horizon, **conditions)
            request = get_locked(still_due, pk, what=WHAT, skip_locked=True, or_none=True)
            if request is None:
                continue
            request.expiry_warned_at = now
            request.save(update_fields=["expiry_warned_at", "updated_at"])
            audit_record(
                actor=SYSTEM, action=AuditAction.APPROVAL_EXPIRY_WARNED, target=request, task_id=request.task_id
            )
            minutes = max(1, round((request.expires_at - now).total_seconds() / 60))
            notify(
                request,
                approvers_of(request),
                kind="approval.expiring",
                message=f"{describe(request)} expires in about {minutes} min",
                level="warning",
                policy=policy,
            )
            warned += 1
    return warned
