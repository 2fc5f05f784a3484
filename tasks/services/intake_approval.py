"""Tasks that wait for people before they are queued: a task whose declared action assesses high or
critical at intake is `approval_pending`, with an approval request asked in its submitter's name
(so the submitter, and the worker it runs, never decide it). The decision on that request, and
only that one, settles the task in the decision's own transaction: approved → queued and
enqueued; rejected, expired or withdrawn → cancelled with the reason, its owner told."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from audit.actions import AuditAction
from audit.services import audit_record
from hol.actors import SYSTEM
from hol.fetch import get_locked
from hol.transitions import ensure_transition
from tasks.models import Task
from tasks.services.callbacks import callback_dispatch_on_commit
from tasks.services.notify import _tell_task_owner
from tasks.services.queue import _enqueue
from tasks.services.transitions import TASK_TRANSITIONS

User = AbstractBaseUser

# Risk levels at which intake waits for an approval; lower levels are queued as before.
GATED_LEVELS = ("high", "critical")


def needs_intake_approval(action: dict[str, Any] | None) -> bool:
    """Whether a task declaring `action` starts approval_pending: its risk is a gated level."""
    from approvals.services import risk_assess

    return bool(action) and risk_assess(action=action).risk_level in GATED_LEVELS


def open_intake_approval(*, actor: User, task: Task, action: dict[str, Any]) -> None:
    """Inside task_create's transaction, for a task created approval_pending: open its approval
    request, asked by the submitter, linked to the task."""
    from approvals.services import approval_request_create

    request = approval_request_create(
        actor=actor,
        action=action,
        task_id=task.pk,
        workflow_id=f"task:{task.pk}",
        action_impact=f"Task intake: {task.title} ({task.target_repo}@{task.target_ref})",
    )
    task.intake_approval = request
    task.save(update_fields=["intake_approval", "updated_at"])


def task_intake_approval_settled(*, request: Any) -> None:
    """Called by the approvals services in the transaction that moved `request` out of pending
    (the request row is locked there, so this runs once per request). Only the task whose intake
    request it is, still approval_pending, moves. HOL is the actor; the audit names the request."""
    from approvals.models import ApprovalRequest

    if request.task_id is None or request.status == ApprovalRequest.Status.PENDING:
        return
    task = get_locked(Task.objects, request.task_id, what="task")
    if task.intake_approval_id != request.pk or task.status != Task.Status.APPROVAL_PENDING:
        return
    details = {"approval_request": str(request.pk), "approval_status": request.status}
    if request.status == ApprovalRequest.Status.APPROVED:
        ensure_transition(task.status, Task.Status.QUEUED, TASK_TRANSITIONS, what="task")
        task.status = Task.Status.QUEUED
        task.save(update_fields=["status", "updated_at"])
        audit_record(actor=SYSTEM, action=AuditAction.TASK_APPROVED, target=task, task_id=task.pk, details=details)
        _enqueue(actor=SYSTEM, task=task, priority=None, max_retries=None)
        return
    ensure_transition(task.status, Task.Status.CANCELLED, TASK_TRANSITIONS, what="task")
    reason = f"its approval request was {request.status}" + (
        f": {request.rejection_reason}" if request.rejection_reason else ""
    )
    task.status, task.completed_at = Task.Status.CANCELLED, timezone.now()
    task.save(update_fields=["status", "completed_at", "updated_at"])
    audit_record(
        actor=SYSTEM,
        action=AuditAction.TASK_CANCELLED,
        target=task,
        task_id=task.pk,
        details={**details, "reason": reason},
    )
    _tell_task_owner(task_id=task.pk, kind="task.cancelled", message=f"cancelled: {reason}", level="warning")
    callback_dispatch_on_commit(task_id=task.pk, status=Task.Status.CANCELLED)
