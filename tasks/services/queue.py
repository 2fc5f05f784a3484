"""The work queue: enqueue, claim, start, complete, fail; leases and their lapse (Beat).

Claim and complete are the hot path. On PostgreSQL each is one statement (queue_functions.py): a
function installed by the migration `tasks 0002_queue_functions` locks, checks, changes and audits
in one round trip, and when it refuses it changes nothing and returns the facts from which the same
helpers raise the same errors. Elsewhere (SQLite) the same steps run here through the ORM in one
transaction, under the same tests.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from audit.actions import AuditAction
from audit.services import audit_record
from hol.actors import SYSTEM
from hol.errors import Conflict, NotFound
from hol.fetch import get_locked, parse_uuid
from hol.run_scope import ensure_work_order_in_scope
from hol.transitions import ensure_transition
from tasks.models import PRIORITY_RANK, Execution, Task, Worker, WorkOrder
from tasks.services.callbacks import callback_dispatch_on_commit
from tasks.services.dispatch import queue_wake_on_commit, run_dispatch_on_commit
from tasks.services.executions import execution_close
from tasks.services.notify import _tell_task_owner
from tasks.services.permissions import ensure_can_manage_task, ensure_worker_owner
from tasks.services.queue_functions import (
    CLAIMABLE_TASK,
    RUNNING_TASK,
    claim_in_one_statement,
    complete_in_one_statement,
    ensure_may_finish,
    refuse_task_status,
)
from tasks.services.transitions import TASK_TRANSITIONS, WORK_ORDER_TRANSITIONS, WORKER_TRANSITIONS

User = AbstractBaseUser


def _set_task_status(
    *, task_id: UUID, status: str, from_statuses: tuple[str, ...], now: datetime | None = None
) -> None:
    """Move a task to `status` from one of `from_statuses`; Conflict (409) when it is elsewhere,
    so a task whose status disagrees with its work is reported, never skipped."""
    for current in from_statuses:
        ensure_transition(current, status, TASK_TRANSITIONS, what="task")
    now = now or timezone.now()
    fields: dict[str, Any] = {"status": status, "updated_at": now}
    if status in (Task.Status.COMPLETED, Task.Status.FAILED):
        fields["completed_at"] = now
    if Task.objects.filter(pk=task_id, status__in=from_statuses).update(**fields) == 1:
        return
    current = Task.objects.filter(pk=task_id).values_list("status", flat=True).first()
    if current is None:
        raise NotFound(f"task {task_id} not found")
    refuse_task_status(current, status)


def _set_worker_status(*, actor: User, worker: Worker, status: str, now: datetime) -> None:
    """Claiming counts as a heartbeat; a status that really changes is audited."""
    previous, worker.last_heartbeat_at = worker.status, now
    if status == previous:
        worker.save(update_fields=["last_heartbeat_at"])
        return
    ensure_transition(previous, status, WORKER_TRANSITIONS, what="worker")
    worker.status = status
    worker.save(update_fields=["status", "last_heartbeat_at", "updated_at"])
    audit_record(
        actor=actor,
        action=AuditAction.WORKER_STATUS_CHANGED,
        target=worker,
        details={"from": previous, "to": status},
    )


def _release_worker(worker_id: UUID | None, *, actor: User, now: datetime | None = None) -> None:
    """A busy worker holding nothing more goes back to idle (audited)."""
    if worker_id is None:
        return
    still_holding = WorkOrder.objects.filter(worker_id=OuterRef("pk"), status__in=WorkOrder.HELD)
    released = Worker.objects.filter(~Exists(still_holding), pk=worker_id, status=Worker.Status.BUSY).update(
        status=Worker.Status.IDLE, updated_at=now or timezone.now()
    )
    if released:
        audit_record(
            actor=actor,
            action=AuditAction.WORKER_STATUS_CHANGED,
            target=Worker(pk=worker_id),
            details={"from": Worker.Status.BUSY, "to": Worker.Status.IDLE},
        )


# --- enqueue --------------------------------------------------------------------------------------


def work_order_enqueue(
    *, actor: User, task_id: UUID, priority: str | None = None, max_retries: int | None = None
) -> WorkOrder:
    """Put a task on the queue. A task holds at most one active work order; completed and
    cancelled tasks are not enqueued again; a failed task may be retried."""
    with transaction.atomic():
        task = get_locked(Task.objects, task_id, what="task")
        ensure_can_manage_task(actor, task)
        return _enqueue(actor=actor, task=task, priority=priority, max_retries=max_retries)


def _enqueue(*, actor: User, task: Task, priority: str | None, max_retries: int | None) -> WorkOrder:
    if task.status == Task.Status.APPROVAL_PENDING:
        raise Conflict(
            "task waits for its approval request; it is enqueued once that is approved", code="approval_pending"
        )
    if task.status in (Task.Status.COMPLETED, Task.Status.CANCELLED):
        raise Conflict(f"task is {task.status}; it cannot be enqueued", code="invalid_transition")
    if WorkOrder.objects.filter(task=task, status__in=WorkOrder.ACTIVE).exists():
        raise Conflict("task already has an active work order", code="already_enqueued")
    if task.status == Task.Status.FAILED:
        _set_task_status(task_id=task.pk, status=Task.Status.QUEUED, from_statuses=(Task.Status.FAILED,))
    now = timezone.now()
    work_order = WorkOrder.objects.create(
        task=task,
        priority=PRIORITY_RANK[priority or task.priority],
        enqueued_at=now,
        available_at=now,
        max_retries=settings.HOL_DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
    )
    audit_record(
        actor=actor,
        action=AuditAction.WORK_ORDER_ENQUEUED,
        target=work_order,
        task_id=task.pk,
        details={"priority": work_order.priority_name, "max_retries": work_order.max_retries},
    )
    run_dispatch_on_commit(work_order_id=work_order.pk)
    queue_wake_on_commit()
    return work_order


# --- claim ----------------------------------------------------------------------------------------


def work_order_claim(*, actor: User, worker_id: UUID, now: datetime | None = None) -> WorkOrder | None:
    """Atomically take the best queued work order (highest priority, then oldest) for a worker
    the actor owns: the order is claimed with a lease, an execution opens, the task goes in
    progress and the worker busy. Returns None when nothing is claimable (a claim still counts
    as the worker's heartbeat). Never hands one order to two workers."""
    worker_id = parse_uuid(worker_id, what="worker")
    now = now or timezone.now()
    lease_expires_at = now + timedelta(seconds=settings.HOL_LEASE_SECONDS)
    if connection.vendor == "postgresql":
        return claim_in_one_statement(actor=actor, worker_id=worker_id, now=now, lease_expires_at=lease_expires_at)
    with transaction.atomic():
        worker = get_locked(Worker.objects, worker_id, what="worker")
        ensure_worker_owner(actor, worker)
        work_order = next(
            iter(WorkOrder.objects.raw(_CLAIM_ORM_SQL, _claim_params(worker_id, now, lease_expires_at))), None
        )
        if work_order is not None:
            _set_task_status(
                task_id=work_order.task_id, status=Task.Status.IN_PROGRESS, from_statuses=CLAIMABLE_TASK, now=now
            )
            status = Worker.Status.BUSY
        else:
            status = Worker.Status.IDLE if worker.status == Worker.Status.OFFLINE else worker.status
        _set_worker_status(actor=actor, worker=worker, status=status, now=now)
        if work_order is None:
            return None
        attempt = work_order.retry_count + 1
        Execution.objects.create(
            task_id=work_order.task_id, work_order=work_order, worker=worker, attempt=attempt, started_at=now
        )
        audit_record(
            actor=actor,
            action=AuditAction.WORK_ORDER_CLAIMED,
            target=work_order,
            task_id=work_order.task_id,
            details={"worker": str(worker_id), "attempt": attempt},
        )
    return work_order


_TABLE = WorkOrder._meta.db_table
# One statement, so two claimers can never take the same row (SQLite lets one writer at a time).
_CLAIM_ORM_SQL = (
    f"UPDATE {_TABLE} SET status = %s, worker_id = %s, claimed_at = %s, lease_expires_at = %s "
    f"WHERE id = (SELECT id FROM {_TABLE} WHERE status = %s AND available_at <= %s "
    "ORDER BY priority DESC, enqueued_at ASC LIMIT 1) "
    f"RETURNING {', '.join(field.column for field in WorkOrder._meta.concrete_fields)}"
)


def _claim_params(worker_id: UUID, now: datetime, lease_expires_at: datetime) -> list:
    adapt = connection.ops.adapt_datetimefield_value
    worker_ref = WorkOrder._meta.get_field("worker").get_db_prep_value(worker_id, connection)
    return [
        WorkOrder.Status.CLAIMED,
        worker_ref,
        adapt(now),
        adapt(lease_expires_at),
        WorkOrder.Status.QUEUED,
        adapt(now),
    ]


# --- start, complete, fail ------------------------------------------------------------------------


def _get_held(actor: User, work_order_id: UUID, new_status: str) -> WorkOrder:
    work_order = get_locked(WorkOrder.objects.select_related("worker"), work_order_id, what="work order", of=("self",))
    ensure_may_finish(actor, work_order, new_status)
    return work_order


def work_order_start(*, actor: User, work_order_id: UUID) -> WorkOrder:
    """The holder reports that it started running the claimed work (claimed → running)."""
    with transaction.atomic():
        work_order = _get_held(actor, work_order_id, WorkOrder.Status.RUNNING)
        work_order.status = WorkOrder.Status.RUNNING
        work_order.save(update_fields=["status"])
        audit_record(actor=actor, action=AuditAction.WORK_ORDER_STARTED, target=work_order, task_id=work_order.task_id)
    return work_order


def work_order_complete(
    *, actor: User, work_order_id: UUID, output: str = "", now: datetime | None = None
) -> WorkOrder:
    """The holder finishes its work order: the order, its execution and its task complete, and
    the worker goes idle when it holds nothing more."""
    work_order_id = parse_uuid(work_order_id, what="work order")
    ensure_work_order_in_scope(actor, work_order_id)
    now = now or timezone.now()
    if connection.vendor == "postgresql":
        work_order, has_callback = complete_in_one_statement(
            actor=actor, work_order_id=work_order_id, output=output, now=now
        )
        # Outside a transaction the statement has committed and this dispatches at once.
        callback_dispatch_on_commit(task_id=work_order.task_id, status=Task.Status.COMPLETED, has_callback=has_callback)
        return work_order
    with transaction.atomic():
        work_order = _get_held(actor, work_order_id, WorkOrder.Status.COMPLETED)
        _set_task_status(task_id=work_order.task_id, status=Task.Status.COMPLETED, from_statuses=RUNNING_TASK, now=now)
        work_order.status, work_order.completed_at, work_order.lease_expires_at = WorkOrder.Status.COMPLETED, now, None
        work_order.save(update_fields=["status", "completed_at", "lease_expires_at"])
        execution_close(work_order=work_order, status=Execution.Status.COMPLETED, now=now, output=output, exit_code=0)
        _release_worker(work_order.worker_id, actor=actor, now=now)
        audit_record(
            actor=actor, action=AuditAction.WORK_ORDER_COMPLETED, target=work_order, task_id=work_order.task_id
        )
        callback_dispatch_on_commit(task_id=work_order.task_id, status=Task.Status.COMPLETED)
    return work_order


def work_order_fail(
    *, actor: User, work_order_id: UUID, error: str, retryable: bool = True, exit_code: int | None = None
) -> WorkOrder:
    """The holder reports failure: requeued with back-off while retries remain and the error is
    retryable, otherwise failed for good (and the task's owner is told)."""
    with transaction.atomic():
        work_order = _get_held(actor, work_order_id, WorkOrder.Status.FAILED)
        _requeue_or_fail(actor=actor, work_order=work_order, error=error, retryable=retryable, exit_code=exit_code)
    return work_order


def backoff_seconds(retry_count: int) -> float:
    """Seconds to wait before the `retry_count`-th retry: base * 2**(retry_count-1), capped."""
    return min(
        settings.HOL_RETRY_BACKOFF_SECONDS * 2 ** max(retry_count - 1, 0), settings.HOL_RETRY_BACKOFF_MAX_SECONDS
    )


def _requeue_or_fail(
    *,
    actor: User,
    work_order: WorkOrder,
    error: str,
    retryable: bool,
    exit_code: int | None = None,
    now: datetime | None = None,
) -> None:
    """Requeue a held work order with back-off while retries remain, else fail it for good."""
    now = now or timezone.now()
    worker_id = work_order.worker_id
    requeue = retryable and work_order.retry_count < work_order.max_retries
    new_status = WorkOrder.Status.QUEUED if requeue else WorkOrder.Status.FAILED
    ensure_transition(work_order.status, new_status, WORK_ORDER_TRANSITIONS, what="work order")
    execution_close(work_order=work_order, status=Execution.Status.FAILED, now=now, output=error, exit_code=exit_code)
    work_order.status, work_order.last_error, work_order.lease_expires_at = new_status, error, None
    if requeue:
        work_order.retry_count += 1
        work_order.worker = None
        work_order.available_at = now + timedelta(seconds=backoff_seconds(work_order.retry_count))
        work_order.save(
            update_fields=["status", "worker", "retry_count", "available_at", "last_error", "lease_expires_at"]
        )
        _set_task_status(task_id=work_order.task_id, status=Task.Status.QUEUED, from_statuses=RUNNING_TASK, now=now)
        queue_wake_on_commit()
        action = AuditAction.WORK_ORDER_REQUEUED
        details = {
            "retry_count": work_order.retry_count,
            "available_at": work_order.available_at.isoformat(),
            "error": error[:500],
        }
    else:
        work_order.completed_at = now
        work_order.save(update_fields=["status", "completed_at", "last_error", "lease_expires_at"])
        _set_task_status(task_id=work_order.task_id, status=Task.Status.FAILED, from_statuses=RUNNING_TASK, now=now)
        action = AuditAction.WORK_ORDER_FAILED
        details = {"retry_count": work_order.retry_count, "error": error[:500]}
    _release_worker(worker_id, actor=actor, now=now)
    audit_record(actor=actor, action=action, target=work_order, task_id=work_order.task_id, details=details)
    if not requeue:
        callback_dispatch_on_commit(task_id=work_order.task_id, status=Task.Status.FAILED)
        _tell_task_owner(
            task_id=work_order.task_id,
            kind="work_order.failed",
            message=f"Work on a task failed for good after {work_order.retry_count} retries: {error[:200]}",
            level="error",
        )


def work_orders_requeue_lapsed(*, now: datetime | None = None) -> int:
    """Beat: every held work order whose lease ran out goes back to the queue (or fails for good),
    on behalf of HOL itself. Returns how many were handled. Safe to run concurrently: a row
    another transaction holds is passed over."""
    now = now or timezone.now()
    lapsed = WorkOrder.objects.filter(status__in=WorkOrder.HELD, lease_expires_at__lt=now)
    handled = 0
    for work_order_id in list(lapsed.values_list("pk", flat=True)):
        with transaction.atomic():
            try:
                work_order = get_locked(lapsed, work_order_id, what="work order", skip_locked=True)
            except NotFound:
                continue  # taken by another run, or finished meanwhile
            _requeue_or_fail(
                actor=SYSTEM,
                work_order=work_order,
                error="lease expired: the worker stopped heartbeating",
                retryable=True,
                now=now,
            )
            handled += 1
    return handled
