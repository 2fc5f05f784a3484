"""The work queue: enqueue, claim, start, complete, fail; leases and their lapse (Beat)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from audit.services import audit_record
from hol.actors import SYSTEM
from hol.errors import Conflict, NotFound
from hol.fetch import get_locked
from hol.transitions import ensure_transition
from tasks.models import PRIORITY_RANK, Execution, Task, Worker, WorkOrder
from tasks.services.dispatch import run_dispatch_on_commit
from tasks.services.notify import _tell_task_owner
from tasks.services.permissions import (
    ensure_can_manage_task,
    ensure_holder,
    ensure_worker_owner,
)
from tasks.services.transitions import WORK_ORDER_TRANSITIONS

User = AbstractBaseUser


def _set_task_status(*, task_id: UUID, status: str, from_statuses: tuple[str, ...]) -> None:
    fields: dict[str, Any] = {"status": status, "updated_at": timezone.now()}
    if status in (Task.Status.COMPLETED, Task.Status.FAILED):
        fields["completed_at"] = fields["updated_at"]
    Task.objects.filter(pk=task_id, status__in=from_statuses).update(**fields)


# --- the queue ---


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
        action="work_order.enqueued",
        target=work_order,
        task_id=task.pk,
        details={"priority": work_order.priority_name, "max_retries": work_order.max_retries},
    )
    run_dispatch_on_commit(work_order_id=work_order.pk)
    return work_order


def _claim_sql() -> str:
    table = WorkOrder._meta.db_table
    skip_locked = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    # One statement: pick the best claimable row (skipping rows other claimers hold) and take it.
    return (
        f"UPDATE {table} SET status = %s, worker_id = %s, claimed_at = %s, lease_expires_at = %s "
        f"WHERE id = (SELECT id FROM {table} WHERE status = %s AND available_at <= %s "
        f"ORDER BY priority DESC, enqueued_at ASC LIMIT 1{skip_locked}) "
        f"RETURNING {', '.join(field.column for field in WorkOrder._meta.concrete_fields)}"
    )


def work_order_claim(*, actor: User, worker_id: UUID) -> WorkOrder | None:
    """Atomically take the best queued work order (highest priority, then oldest) for a worker
    the actor owns. Returns None when nothing is claimable. Never hands one order to two workers."""
    worker = get_locked(Worker.objects, worker_id, what="worker", lock=False)
    ensure_worker_owner(actor, worker)
    now = timezone.now()
    lease = now + timedelta(seconds=settings.HOL_LEASE_SECONDS)
    adapt = connection.ops.adapt_datetimefield_value
    worker_ref = WorkOrder._meta.get_field("worker").get_db_prep_value(worker.pk, connection)
    with transaction.atomic():
        # The claim returns the whole row, so the claimed work order needs no second SELECT.
        claimed = WorkOrder.objects.raw(
            _claim_sql(),
            [WorkOrder.Status.CLAIMED, worker_ref, adapt(now), adapt(lease), WorkOrder.Status.QUEUED, adapt(now)],
        )
        work_order = next(iter(claimed), None)
        if work_order is not None:
            worker_status = Worker.Status.BUSY
        elif worker.status == Worker.Status.OFFLINE:
            worker_status = Worker.Status.IDLE
        else:
            worker_status = worker.status
        Worker.objects.filter(pk=worker.pk).update(status=worker_status, last_heartbeat_at=now)
        if work_order is None:
            return None
        attempt = work_order.retry_count + 1
        Execution.objects.create(
            task_id=work_order.task_id,
            work_order=work_order,
            worker=worker,
            attempt=attempt,
            started_at=now,
        )
        _set_task_status(
            task_id=work_order.task_id, status=Task.Status.IN_PROGRESS, from_statuses=(Task.Status.QUEUED,)
        )
        audit_record(
            actor=actor,
            action="work_order.claimed",
            target=work_order,
            task_id=work_order.task_id,
            details={"worker": str(worker.pk), "attempt": attempt},
        )
    return work_order


def _lock_held(actor: User, work_order_id: UUID) -> WorkOrder:
    work_order = (
        WorkOrder.objects.select_for_update(of=("self",)).select_related("worker").filter(pk=work_order_id).first()
    )
    if work_order is None:
        raise NotFound(f"work order {work_order_id} not found")
    ensure_holder(actor, work_order)
    return work_order


def _release_worker(worker_id: UUID | None) -> None:
    """A worker holding nothing more goes back to idle."""
    if worker_id is None:
        return
    still_holding = WorkOrder.objects.filter(worker_id=OuterRef("pk"), status__in=WorkOrder.HELD)
    Worker.objects.filter(~Exists(still_holding), pk=worker_id, status=Worker.Status.BUSY).update(
        status=Worker.Status.IDLE
    )


def work_order_start(*, actor: User, work_order_id: UUID) -> WorkOrder:
    """The holder reports that it started running the claimed work (claimed → running)."""
    with transaction.atomic():
        work_order = _lock_held(actor, work_order_id)
        ensure_transition(work_order.status, WorkOrder.Status.RUNNING, WORK_ORDER_TRANSITIONS, what="work order")
        work_order.status = WorkOrder.Status.RUNNING
        work_order.save(update_fields=["status"])
        audit_record(actor=actor, action="work_order.started", target=work_order, task_id=work_order.task_id)
    return work_order


def work_order_complete(*, actor: User, work_order_id: UUID, output: str = "") -> WorkOrder:
    """The holder finishes its work order: the order, its execution and its task complete."""
    with transaction.atomic():
        work_order = _lock_held(actor, work_order_id)
        now = timezone.now()
        work_order.status, work_order.completed_at, work_order.lease_expires_at = (
            WorkOrder.Status.COMPLETED,
            now,
            None,
        )
        work_order.save(update_fields=["status", "completed_at", "lease_expires_at"])
        Execution.objects.filter(work_order=work_order, status=Execution.Status.RUNNING).update(
            status=Execution.Status.COMPLETED, completed_at=now, output=output, exit_code=0
        )
        _set_task_status(
            task_id=work_order.task_id, status=Task.Status.COMPLETED, from_statuses=(Task.Status.IN_PROGRESS,)
        )
        _release_worker(work_order.worker_id)
        audit_record(actor=actor, action="work_order.completed", target=work_order, task_id=work_order.task_id)
    return work_order


def work_order_fail(
    *, actor: User, work_order_id: UUID, error: str, retryable: bool = True, exit_code: int | None = None
) -> WorkOrder:
    """The holder reports failure: requeued with back-off while retries remain and the error is
    retryable, otherwise failed for good (and the task's owner is told)."""
    with transaction.atomic():
        work_order = _lock_held(actor, work_order_id)
        _requeue_or_fail(actor=actor, work_order=work_order, error=error, retryable=retryable, exit_code=exit_code)
    return work_order


def backoff_seconds(retry_count: int) -> float:
    """Seconds to wait before the `retry_count`-th retry: base * 2**(retry_count-1), capped."""
    return min(
        settings.HOL_RETRY_BACKOFF_SECONDS * 2 ** max(retry_count - 1, 0), settings.HOL_RETRY_BACKOFF_MAX_SECONDS
    )


def _requeue_or_fail(
    *, actor: User, work_order: WorkOrder, error: str, retryable: bool, exit_code: int | None = None
) -> None:
    now = timezone.now()
    worker_id = work_order.worker_id
    Execution.objects.filter(work_order=work_order, status=Execution.Status.RUNNING).update(
        status=Execution.Status.FAILED, completed_at=now, output=error, exit_code=exit_code
    )
    work_order.last_error = error
    work_order.lease_expires_at = None
    if retryable and work_order.retry_count < work_order.max_retries:
        work_order.retry_count += 1
        work_order.status = WorkOrder.Status.QUEUED
        work_order.worker = None
        work_order.available_at = now + timedelta(seconds=backoff_seconds(work_order.retry_count))
        work_order.save(
            update_fields=["status", "worker", "retry_count", "available_at", "last_error", "lease_expires_at"]
        )
        _set_task_status(
            task_id=work_order.task_id, status=Task.Status.QUEUED, from_statuses=(Task.Status.IN_PROGRESS,)
        )
        audit_record(
            actor=actor,
            action="work_order.requeued",
            target=work_order,
            task_id=work_order.task_id,
            details={
                "retry_count": work_order.retry_count,
                "available_at": work_order.available_at.isoformat(),
                "error": error[:500],
            },
        )
    else:
        work_order.status = WorkOrder.Status.FAILED
        work_order.completed_at = now
        work_order.save(update_fields=["status", "completed_at", "last_error", "lease_expires_at"])
        _set_task_status(
            task_id=work_order.task_id,
            status=Task.Status.FAILED,
            from_statuses=(Task.Status.IN_PROGRESS, Task.Status.QUEUED),
        )
        audit_record(
            actor=actor,
            action="work_order.failed",
            target=work_order,
            task_id=work_order.task_id,
            details={"retry_count": work_order.retry_count, "error": error[:500]},
        )
        _tell_task_owner(
            task_id=work_order.task_id,
            kind="work_order.failed",
            message=f"Work on a task failed for good after {work_order.retry_count} retries: {error[:200]}",
            level="error",
        )
    _release_worker(worker_id)


def work_orders_requeue_lapsed(*, now: datetime | None = None) -> int:
    """Beat: every held work order whose lease ran out goes back to the queue (or fails for good).
    Returns how many were handled. Safe to run concurrently: locked rows are skipped."""
    now = now or timezone.now()
    handled = 0
    lapsed_ids = list(
        WorkOrder.objects.filter(status__in=WorkOrder.HELD, lease_expires_at__lt=now).values_list("pk", flat=True)
    )
    for work_order_id in lapsed_ids:
        with transaction.atomic():
            work_order = (
                WorkOrder.objects.select_for_update(skip_locked=True)
                .filter(pk=work_order_id, status__in=WorkOrder.HELD, lease_expires_at__lt=now)
                .first()
            )
            if work_order is None:
                continue
            _requeue_or_fail(
                actor=SYSTEM,
                work_order=work_order,
                error="lease expired: the worker stopped heartbeating",
                retryable=True,
            )
            handled += 1
    return handled
