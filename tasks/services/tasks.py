"""Tasks: intake, edits, cancellation (which also cancels their active work)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.actions import AuditAction
from audit.services import audit_record
from hol.actors import actor_label, actor_type
from hol.errors import BadRequest
from hol.fetch import get_locked, parse_uuid
from hol.transitions import ensure_transition
from tasks.callbacks import check_callback_url
from tasks.intake import apply_aliases, check_intake, check_sizes
from tasks.models import Execution, Priority, Task, WorkOrder
from tasks.selectors import holds_a_role
from tasks.services.callbacks import callback_dispatch_on_commit
from tasks.services.executions import execution_close
from tasks.services.intake_approval import needs_intake_approval, open_intake_approval
from tasks.services.permissions import ensure_can_manage_task
from tasks.services.queue import _enqueue, _release_worker
from tasks.services.transitions import TASK_TRANSITIONS, WORK_ORDER_TRANSITIONS

User = AbstractBaseUser

# One answer whatever the reason (unknown, inactive, an agent, no role), so the API cannot be
# used to find out which usernames exist.
ASSIGNEE_REFUSED = "assigned_to must be the username of an active person with a role"


def _assignee(username: Any) -> User | None:
    if username is None or username == "":
        return None
    user = None
    if isinstance(username, str):
        user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None or not holds_a_role(user):
        raise BadRequest(ASSIGNEE_REFUSED, code="invalid_assignee")
    return user


def _requested_by(actor: User, claimed: Any) -> dict[str, str]:
    """Who asked is the signed-in account; what the client says about it is only a label."""
    label = claimed.get("label") if isinstance(claimed, dict) else None
    return {
        "kind": actor_type(actor),
        "id": "" if actor.pk is None else str(actor.pk),
        "label": label or actor_label(actor),
    }


def task_create(*, actor: User, payload: dict[str, Any]) -> tuple[Task, bool]:
    """Create a task through the intake gate. The same idempotency_key from the same submitter
    returns the existing task (created=False) instead of a second one. `assigned_to` is a
    username; `requested_by` is the actor, whatever the payload claims beyond a label. A task
    whose declared `action` assesses high or critical starts approval_pending with an approval
    request in the actor's name, and is not enqueued until that is approved."""
    data = apply_aliases(payload)
    key = data.get("idempotency_key") or None
    existing = _submitted_before(actor, key)
    if existing is not None:
        return existing, False
    check_sizes(data)
    gated = check_intake(
        data,
        allowed_repo_prefixes=settings.HOL_ALLOWED_REPO_PREFIXES,
        allow_network=settings.HOL_INTAKE_ALLOW_NETWORK,
        allow_secrets=settings.HOL_INTAKE_ALLOW_SECRETS,
    )
    objective = (data.get("objective") or "").strip()
    if not objective:
        raise BadRequest("objective is required", code="invalid")
    title = (data.get("title") or "").strip() or objective.splitlines()[0][:200]
    assigned_to = _assignee(data.get("assigned_to"))
    callback_url = data.get("callback_url") or ""
    if callback_url:
        check_callback_url(callback_url, allowed_hosts=settings.HOL_CALLBACK_ALLOWED_HOSTS)
    action = data.get("action") or None
    waits_for_approval = needs_intake_approval(action)
    try:
        with transaction.atomic():
            task = Task.objects.create(
                title=title,
                objective=objective,
                description=data.get("description", ""),
                task_type=data.get("task_type", Task.Type.FEATURE),
                priority=data.get("priority", Priority.NORMAL),
                requested_by=_requested_by(actor, data.get("requested_by")),
                created_by=actor,
                assigned_to=assigned_to,
                inputs=data.get("inputs") or {},
                metadata=data.get("metadata") or {},
                tags=data.get("tags") or [],
                idempotency_key=key,
                callback_url=callback_url,
                status=Task.Status.APPROVAL_PENDING if waits_for_approval else Task.Status.QUEUED,
                **gated,
            )
            audit_record(
                actor=actor,
                action=AuditAction.TASK_CREATED,
                target=task,
                task_id=task.pk,
                details={
                    "repo": task.target_repo,
                    "operation": task.operation,
                    "priority": task.priority,
                    "status": task.status,
                },
            )
            if waits_for_approval:
                open_intake_approval(actor=actor, task=task, action=action)
            elif data.get("enqueue"):
                _enqueue(actor=actor, task=task, priority=None, max_retries=None)
    except IntegrityError:
        # A concurrent request with the same key won the race: answer with its task.
        existing = _submitted_before(actor, key)
        if existing is not None:
            return existing, False
        raise
    return task, True


def _submitted_before(actor: User, key: str | None) -> Task | None:
    """The task `actor` already submitted under idempotency key `key`, if any."""
    if not key:
        return None
    return Task.objects.filter(created_by=actor, idempotency_key=key).first()


def task_create_opens_approval(*, actor: User, payload: dict[str, Any]) -> bool:
    """Whether task_create(actor, payload) would open an approval request: a new task (not a
    replay of an idempotency key) whose declared action assesses high or critical. The API counts
    such a submission against the caller's approval rate before it is made."""
    data = apply_aliases(payload)
    if _submitted_before(actor, data.get("idempotency_key") or None) is not None:
        return False
    return needs_intake_approval(data.get("action") or None)


TASK_EDITABLE = ("title", "description", "priority")


def task_update(*, actor: User, task_id: UUID, changes: dict[str, Any]) -> Task:
    """Edit title, description, priority; the only status a caller may set is `cancelled`,
    which also cancels the task's active work orders. Who may: see ensure_can_manage_task."""
    check_sizes(changes, fields=("description",))
    task_id = parse_uuid(task_id, what="task")
    with transaction.atomic():
        intake_approval = _lock_pending_intake_approval(task_id)
        task = get_locked(Task.objects, task_id, what="task")
        ensure_can_manage_task(actor, task)
        fields = [name for name in TASK_EDITABLE if name in changes and changes[name] != getattr(task, name)]
        for name in fields:
            setattr(task, name, changes[name])
        if "status" in changes and changes["status"] != task.status:
            if changes["status"] != Task.Status.CANCELLED:
                raise BadRequest("the only status a task can be given is cancelled", code="invalid")
            ensure_transition(task.status, Task.Status.CANCELLED, TASK_TRANSITIONS, what="task")
            was_waiting = task.status == Task.Status.APPROVAL_PENDING
            task.status = Task.Status.CANCELLED
            task.completed_at = timezone.now()
            fields += ["status", "completed_at"]
            _cancel_active_work(actor=actor, task=task)
        if fields:
            task.save(update_fields=[*fields, "updated_at"])
            action = AuditAction.TASK_CANCELLED if "status" in fields else AuditAction.TASK_UPDATED
            audit_record(actor=actor, action=action, target=task, task_id=task.pk, details={"fields": fields})
        if "status" in fields:
            if was_waiting and intake_approval is not None and intake_approval.pk == task.intake_approval_id:
                _withdraw_intake_approval(actor=actor, request_id=intake_approval.pk)
            callback_dispatch_on_commit(task_id=task.pk, status=Task.Status.CANCELLED)
    return task


def _lock_pending_intake_approval(task_id: UUID) -> Any:
    """The task's pending intake approval request, locked before the task: a decision locks the
    request and then the task, so cancelling takes them in the same order and the two never
    deadlock."""
    from approvals.models import ApprovalRequest

    request_id = Task.objects.filter(pk=task_id).values_list("intake_approval_id", flat=True).first()
    if request_id is None:
        return None
    pending = ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING)
    return get_locked(pending, request_id, what="approval request", or_none=True)


def _withdraw_intake_approval(*, actor: User, request_id: UUID) -> None:
    """Nobody needs to decide on a task that was cancelled: its request is withdrawn, by whoever
    cancelled the task (not necessarily its requester, hence the named skip)."""
    from approvals.services import approval_cancel

    approval_cancel(actor=actor, request_id=request_id, reason="the task was cancelled", skip_permission_checks=True)


def _cancel_active_work(*, actor: User, task: Task) -> None:
    now = timezone.now()
    for work_order in WorkOrder.objects.select_for_update().filter(task=task, status__in=WorkOrder.ACTIVE):
        ensure_transition(work_order.status, WorkOrder.Status.CANCELLED, WORK_ORDER_TRANSITIONS, what="work order")
        was_held = work_order.status in WorkOrder.HELD
        work_order.status, work_order.completed_at, work_order.lease_expires_at = (
            WorkOrder.Status.CANCELLED,
            now,
            None,
        )
        work_order.save(update_fields=["status", "completed_at", "lease_expires_at"])
        if was_held:
            execution_close(work_order=work_order, status=Execution.Status.FAILED, now=now, output="cancelled")
            _release_worker(work_order.worker_id, actor=actor)
        audit_record(actor=actor, action=AuditAction.WORK_ORDER_CANCELLED, target=work_order, task_id=task.pk)
