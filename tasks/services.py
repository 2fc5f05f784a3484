"""Every state change of tasks, work orders, workers, sessions and executions.

Each function locks what it changes, checks permission and the transition, changes, and
records the audit entry in the same transaction (STYLE.md). Views, admin actions and Celery
tasks call these; nothing else writes these models.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from audit.services import audit_record
from hol.actors import actor_label, actor_type, is_agent
from hol.errors import BadRequest, Conflict, NotFound, PermissionDenied
from notifications.services import notification_create
from tasks.intake import apply_aliases, check_intake
from tasks.models import PRIORITY_RANK, AgentSession, Execution, Priority, Task, Worker, WorkOrder

User = AbstractBaseUser

TASK_TRANSITIONS = {
    Task.Status.QUEUED: {Task.Status.IN_PROGRESS, Task.Status.CANCELLED},
    Task.Status.IN_PROGRESS: {Task.Status.QUEUED, Task.Status.COMPLETED, Task.Status.FAILED, Task.Status.CANCELLED},
    Task.Status.FAILED: {Task.Status.QUEUED},
}
WORK_ORDER_TRANSITIONS = {
    WorkOrder.Status.QUEUED: {WorkOrder.Status.CLAIMED, WorkOrder.Status.CANCELLED},
    WorkOrder.Status.CLAIMED: {
        WorkOrder.Status.RUNNING,
        WorkOrder.Status.COMPLETED,
        WorkOrder.Status.FAILED,
        WorkOrder.Status.QUEUED,
        WorkOrder.Status.CANCELLED,
    },
    WorkOrder.Status.RUNNING: {
        WorkOrder.Status.COMPLETED,
        WorkOrder.Status.FAILED,
        WorkOrder.Status.QUEUED,
        WorkOrder.Status.CANCELLED,
    },
}


def ensure_transition(current: str, new: str, allowed: dict[str, set[str]], what: str) -> None:
    if new not in allowed.get(current, set()):
        raise Conflict(f"{what} is {current}; it cannot become {new}", code="invalid_transition")


def _get(model: type, pk: Any, *, lock: bool = False, **lock_kwargs: Any) -> Any:
    manager = model.objects.select_for_update(**lock_kwargs) if lock else model.objects
    try:
        return manager.get(pk=pk)
    except (model.DoesNotExist, ValueError, TypeError, DjangoValidationError):
        raise NotFound(f"{model._meta.verbose_name} {pk} not found") from None


# --- permission rules -----------------------------------------------------------------------------


def ensure_worker_owner(actor: User | None, worker: Worker) -> None:
    """Only the agent account a worker belongs to may act as that worker."""
    if actor is not None and worker.user_id != actor.pk:
        raise PermissionDenied("this worker belongs to another account")


def ensure_worker_owner_or_staff(actor: User | None, worker: Worker) -> None:
    if actor is not None and actor.is_staff and not is_agent(actor):
        return
    ensure_worker_owner(actor, worker)


def ensure_can_manage_task(actor: User | None, task: Task) -> None:
    """Humans manage any task; an agent account only the tasks it submitted."""
    if actor is None or not is_agent(actor) or task.created_by_id == actor.pk:
        return
    raise PermissionDenied("agents may only change tasks they submitted")


def ensure_holder(actor: User | None, work_order: WorkOrder) -> None:
    """Only the worker holding a work order may finish it: 403 for others, 409 if nobody holds it."""
    if work_order.worker is not None:
        ensure_worker_owner(actor, work_order.worker)
    if work_order.status not in WorkOrder.HELD:
        raise Conflict(f"work order is {work_order.status}, not held by a worker", code="not_held")


# --- tasks ----------------------------------------------------------------------------------------


def task_create(*, actor: User, payload: dict[str, Any]) -> tuple[Task, bool]:
    """Create a task through the intake gate. The same idempotency_key from the same submitter
    returns the existing task (created=False) instead of a second one."""
    data = apply_aliases(payload)
    key = data.get("idempotency_key") or None
    if key:
        existing = Task.objects.filter(created_by=actor, idempotency_key=key).first()
        if existing is not None:
            return existing, False
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
    requested_by = data.get("requested_by") or {
        "kind": actor_type(actor),
        "id": str(actor.pk),
        "label": actor_label(actor),
    }
    try:
        with transaction.atomic():
            task = Task.objects.create(
                title=title,
                objective=objective,
                description=data.get("description", ""),
                task_type=data.get("task_type", Task.Type.FEATURE),
                priority=data.get("priority", Priority.NORMAL),
                requested_by=requested_by,
                created_by=actor,
                assigned_to=data.get("assigned_to"),
                inputs=data.get("inputs") or {},
                metadata=data.get("metadata") or {},
                tags=data.get("tags") or [],
                idempotency_key=key,
                **gated,
            )
            audit_record(
                actor=actor,
                action="task.created",
                target=task,
                task_id=task.pk,
                details={"repo": task.target_repo, "operation": task.operation, "priority": task.priority},
            )
            if data.get("enqueue"):
                _enqueue(actor=actor, task=task, priority=None, max_retries=None)
    except IntegrityError:
        if key:
            # A concurrent request with the same key won the race: answer with its task.
            existing = Task.objects.filter(created_by=actor, idempotency_key=key).first()
            if existing is not None:
                return existing, False
        raise
    return task, True


TASK_EDITABLE = ("title", "description", "priority")


def task_update(*, actor: User, task_id: UUID, changes: dict[str, Any]) -> Task:
    """Edit title, description, priority; the only status a caller may set is `cancelled`,
    which also cancels the task's active work orders."""
    with transaction.atomic():
        task = _get(Task, task_id, lock=True)
        ensure_can_manage_task(actor, task)
        fields = [name for name in TASK_EDITABLE if name in changes and changes[name] != getattr(task, name)]
        for name in fields:
            setattr(task, name, changes[name])
        if "status" in changes and changes["status"] != task.status:
            if changes["status"] != Task.Status.CANCELLED:
                raise BadRequest("the only status a task can be given is cancelled", code="invalid")
            ensure_transition(task.status, Task.Status.CANCELLED, TASK_TRANSITIONS, "task")
            task.status = Task.Status.CANCELLED
            task.completed_at = timezone.now()
            fields += ["status", "completed_at"]
            _cancel_active_work(actor=actor, task=task)
        if fields:
            task.save(update_fields=[*fields, "updated_at"])
            action = "task.cancelled" if "status" in fields else "task.updated"
            audit_record(actor=actor, action=action, target=task, task_id=task.pk, details={"fields": fields})
    return task


def _cancel_active_work(*, actor: User | None, task: Task) -> None:
    now = timezone.now()
    for work_order in WorkOrder.objects.select_for_update().filter(task=task, status__in=WorkOrder.ACTIVE):
        was_held = work_order.status in WorkOrder.HELD
        work_order.status, work_order.completed_at, work_order.lease_expires_at = (
            WorkOrder.Status.CANCELLED,
            now,
            None,
        )
        work_order.save(update_fields=["status", "completed_at", "lease_expires_at"])
        if was_held:
            Execution.objects.filter(work_order=work_order, status=Execution.Status.RUNNING).update(
                status=Execution.Status.FAILED, completed_at=now, output="cancelled"
            )
            _release_worker(work_order.worker_id)
        audit_record(actor=actor, action="work_order.cancelled", target=work_order, task_id=task.pk)


def _set_task_status(*, task_id: UUID, status: str, from_statuses: tuple[str, ...]) -> None:
    fields: dict[str, Any] = {"status": status, "updated_at": timezone.now()}
    if status in (Task.Status.COMPLETED, Task.Status.FAILED):
        fields["completed_at"] = fields["updated_at"]
    Task.objects.filter(pk=task_id, status__in=from_statuses).update(**fields)


# --- the queue ------------------------------------------------------------------------------------


def work_order_enqueue(
    *, actor: User, task_id: UUID, priority: str | None = None, max_retries: int | None = None
) -> WorkOrder:
    """Put a task on the queue. A task holds at most one active work order; completed and
    cancelled tasks are not enqueued again; a failed task may be retried."""
    with transaction.atomic():
        task = _get(Task, task_id, lock=True)
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
    worker = _get(Worker, worker_id)
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


def _lock_held(actor: User | None, work_order_id: UUID) -> WorkOrder:
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


def work_order_start(*, actor: User | None, work_order_id: UUID) -> WorkOrder:
    """The holder reports that it started running the claimed work (claimed → running)."""
    with transaction.atomic():
        work_order = _lock_held(actor, work_order_id)
        ensure_transition(work_order.status, WorkOrder.Status.RUNNING, WORK_ORDER_TRANSITIONS, "work order")
        work_order.status = WorkOrder.Status.RUNNING
        work_order.save(update_fields=["status"])
        audit_record(actor=actor, action="work_order.started", target=work_order, task_id=work_order.task_id)
    return work_order


def work_order_complete(*, actor: User | None, work_order_id: UUID, output: str = "") -> WorkOrder:
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
    *, actor: User | None, work_order_id: UUID, error: str, retryable: bool = True, exit_code: int | None = None
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
    *, actor: User | None, work_order: WorkOrder, error: str, retryable: bool, exit_code: int | None = None
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


def _tell_task_owner(*, task_id: UUID, kind: str, message: str, level: str = "info") -> None:
    task = Task.objects.filter(pk=task_id).select_related("assigned_to").first()
    if task is None or task.assigned_to is None:
        return
    notification_create(
        user=task.assigned_to,
        kind=kind,
        message=f"{task.title}: {message}",
        link=f"/tasks/{task.pk}/",
        level=level,
        related=task,
    )


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
                actor=None,
                work_order=work_order,
                error="lease expired: the worker stopped heartbeating",
                retryable=True,
            )
            handled += 1
    return handled


# --- workers --------------------------------------------------------------------------------------


def worker_register(*, actor: User, name: str) -> Worker:
    """Register a worker owned by the calling account."""
    with transaction.atomic():
        worker = Worker.objects.create(
            name=name, user=actor, status=Worker.Status.IDLE, last_heartbeat_at=timezone.now()
        )
        audit_record(actor=actor, action="worker.registered", target=worker, details={"name": name})
    return worker


def worker_heartbeat(*, actor: User, worker_id: UUID, status: str | None = None) -> Worker:
    """Record that the worker is alive, optionally with its status, and extend the leases of
    every work order it holds."""
    with transaction.atomic():
        worker = _get(Worker, worker_id, lock=True)
        ensure_worker_owner(actor, worker)
        now = timezone.now()
        previous = worker.status
        if status is None and previous == Worker.Status.OFFLINE:
            status = Worker.Status.IDLE
        worker.last_heartbeat_at = now
        fields = ["last_heartbeat_at", "updated_at"]
        if status is not None and status != previous:
            worker.status = status
            fields.append("status")
        worker.save(update_fields=fields)
        WorkOrder.objects.filter(worker=worker, status__in=WorkOrder.HELD).update(
            lease_expires_at=now + timedelta(seconds=settings.HOL_LEASE_SECONDS)
        )
        if "status" in fields:
            audit_record(
                actor=actor,
                action="worker.status_changed",
                target=worker,
                details={"from": previous, "to": worker.status},
            )
    return worker


def _worker_offline(*, actor: User | None, worker: Worker, action: str, reason: str) -> None:
    worker.status = Worker.Status.OFFLINE
    worker.save(update_fields=["status", "updated_at"])
    audit_record(actor=actor, action=action, target=worker, details={"reason": reason})
    for work_order in WorkOrder.objects.select_for_update().filter(worker=worker, status__in=WorkOrder.HELD):
        _requeue_or_fail(actor=actor, work_order=work_order, error=reason, retryable=True)


def worker_deregister(*, actor: User, worker_id: UUID) -> Worker:
    """Take a worker out of service (its owner or staff): it goes offline and what it held is
    requeued. The row stays, so its history remains readable."""
    with transaction.atomic():
        worker = _get(Worker, worker_id, lock=True)
        ensure_worker_owner_or_staff(actor, worker)
        if worker.status == Worker.Status.OFFLINE and not worker.work_orders.filter(status__in=WorkOrder.HELD).exists():
            return worker
        _worker_offline(actor=actor, worker=worker, action="worker.deregistered", reason="worker deregistered")
    return worker


def workers_mark_silent_offline(*, now: datetime | None = None) -> int:
    """Beat: workers silent past HOL_WORKER_TIMEOUT_SECONDS go offline; their work is requeued."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.HOL_WORKER_TIMEOUT_SECONDS)
    silent = list(
        Worker.objects.exclude(status=Worker.Status.OFFLINE)
        .filter(last_heartbeat_at__lt=cutoff)
        .values_list("pk", flat=True)
    )
    handled = 0
    for worker_id in silent:
        with transaction.atomic():
            worker = (
                Worker.objects.select_for_update(skip_locked=True)
                .exclude(status=Worker.Status.OFFLINE)
                .filter(pk=worker_id, last_heartbeat_at__lt=cutoff)
                .first()
            )
            if worker is None:
                continue
            _worker_offline(actor=None, worker=worker, action="worker.offline", reason="heartbeat lapsed")
            handled += 1
    return handled


# --- sessions -------------------------------------------------------------------------------------


def session_create(*, actor: User, session_id: str, worker_id: UUID, task_id: UUID | None = None) -> AgentSession:
    """Map an agent's own session id (e.g. a Claude Code session) to one of the actor's workers."""
    worker = _get(Worker, worker_id)
    ensure_worker_owner(actor, worker)
    task = _get(Task, task_id) if task_id else None
    try:
        with transaction.atomic():
            session = AgentSession.objects.create(
                session_id=session_id, worker=worker, task=task, last_activity_at=timezone.now()
            )
            audit_record(
                actor=actor,
                action="session.created",
                target=session,
                task_id=task_id,
                details={"session_id": session_id, "worker": str(worker.pk)},
            )
    except IntegrityError:
        raise Conflict(f"session {session_id!r} already exists", code="session_exists") from None
    return session


def session_heartbeat(*, actor: User, session_pk: UUID) -> AgentSession:
    """Record activity on a live session (terminated sessions stay terminated: 409)."""
    with transaction.atomic():
        session = (
            AgentSession.objects.select_for_update(of=("self",)).select_related("worker").filter(pk=session_pk).first()
        )
        if session is None:
            raise NotFound(f"session {session_pk} not found")
        ensure_worker_owner(actor, session.worker)
        if session.status == AgentSession.Status.TERMINATED:
            raise Conflict("session is terminated", code="invalid_transition")
        session.last_activity_at = timezone.now()
        session.status = AgentSession.Status.ACTIVE
        session.save(update_fields=["last_activity_at", "status"])
    return session


def session_terminate(*, actor: User | None, session_pk: UUID, reason: str = "terminated by agent") -> AgentSession:
    """End a session (its worker's owner, staff, or the keep-alive policy)."""
    with transaction.atomic():
        session = (
            AgentSession.objects.select_for_update(of=("self",))
            .select_related("worker", "task")
            .filter(pk=session_pk)
            .first()
        )
        if session is None:
            raise NotFound(f"session {session_pk} not found")
        ensure_worker_owner_or_staff(actor, session.worker)
        ensure_transition(
            session.status,
            AgentSession.Status.TERMINATED,
            {
                AgentSession.Status.ACTIVE: {AgentSession.Status.TERMINATED},
                AgentSession.Status.IDLE: {AgentSession.Status.TERMINATED},
            },
            "session",
        )
        session.status = AgentSession.Status.TERMINATED
        session.terminated_at = timezone.now()
        session.termination_reason = reason
        session.save(update_fields=["status", "terminated_at", "termination_reason"])
        audit_record(
            actor=actor,
            action="session.terminated",
            target=session,
            task_id=session.task_id,
            details={"reason": reason},
        )
        if session.task_id:
            _tell_task_owner(
                task_id=session.task_id,
                kind="session.terminated",
                message=f"agent session {session.session_id} ended: {reason}",
            )
    return session


def sessions_terminate_stale(*, now: datetime | None = None) -> int:
    """Beat: terminate sessions idle longer than HOL_SESSION_IDLE_SECONDS or older than
    HOL_SESSION_MAX_AGE_SECONDS (the keep-alive policy)."""
    now = now or timezone.now()
    idle_cutoff = now - timedelta(seconds=settings.HOL_SESSION_IDLE_SECONDS)
    age_cutoff = now - timedelta(seconds=settings.HOL_SESSION_MAX_AGE_SECONDS)
    handled = 0
    live = AgentSession.objects.exclude(status=AgentSession.Status.TERMINATED)
    for session in live.filter(last_activity_at__lt=idle_cutoff).only("pk"):
        handled += _terminate_quietly(session.pk, "idle timeout")
    for session in live.filter(created_at__lt=age_cutoff).only("pk"):
        handled += _terminate_quietly(session.pk, "maximum age reached")
    return handled


def _terminate_quietly(session_pk: UUID, reason: str) -> int:
    try:
        session_terminate(actor=None, session_pk=session_pk, reason=reason)
    except Conflict:
        return 0  # terminated meanwhile
    return 1
