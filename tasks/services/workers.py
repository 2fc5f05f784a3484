"""Workers: register, heartbeat (extends leases), deregister; silent ones go offline (Beat).
Every change of a worker's status goes through the WORKER_TRANSITIONS table and is audited."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from audit.actions import AuditAction
from audit.services import audit_record
from hol.actors import SYSTEM
from hol.errors import NotFound
from hol.fetch import get_locked
from hol.transitions import ensure_transition
from tasks.models import Worker, WorkOrder
from tasks.services.permissions import ensure_worker_owner, ensure_worker_owner_or_operator
from tasks.services.queue import _requeue_or_fail
from tasks.services.transitions import WORKER_TRANSITIONS

User = AbstractBaseUser


def worker_register(*, actor: User, name: str) -> Worker:
    """Register a worker owned by the calling account."""
    with transaction.atomic():
        worker = Worker.objects.create(
            name=name, user=actor, status=Worker.Status.IDLE, last_heartbeat_at=timezone.now()
        )
        audit_record(actor=actor, action=AuditAction.WORKER_REGISTERED, target=worker, details={"name": name})
    return worker


def worker_heartbeat(*, actor: User, worker_id: UUID, status: str | None = None) -> Worker:
    """Record that the worker is alive, optionally with its status, and extend the leases of
    every work order it holds. An offline worker that heartbeats comes back idle."""
    ensure_worker_owner(actor, get_locked(Worker.objects, worker_id, what="worker", lock=False))
    with transaction.atomic():
        # The work orders first, then their worker: the order in which completing or failing a
        # work order takes them, so a heartbeat and a completion never deadlock.
        held = list(
            WorkOrder.objects.select_for_update()
            .filter(worker_id=worker_id, status__in=WorkOrder.HELD)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        worker = get_locked(Worker.objects, worker_id, what="worker")
        now = timezone.now()
        if status is None and worker.status == Worker.Status.OFFLINE:
            status = Worker.Status.IDLE
        worker.last_heartbeat_at = now
        worker.save(update_fields=["last_heartbeat_at", "updated_at"])
        if status is not None and status != worker.status:
            _change_status(actor=actor, worker=worker, status=status, action=AuditAction.WORKER_STATUS_CHANGED)
        WorkOrder.objects.filter(pk__in=held, worker=worker, status__in=WorkOrder.HELD).update(
            lease_expires_at=now + timedelta(seconds=settings.HOL_LEASE_SECONDS)
        )
    return worker


def _change_status(*, actor: User, worker: Worker, status: str, action: AuditAction, reason: str | None = None) -> None:
    """A locked worker takes `status`; the audit entry says from what, to what, and why."""
    previous = worker.status
    ensure_transition(previous, status, WORKER_TRANSITIONS, what="worker")
    worker.status = status
    worker.save(update_fields=["status", "updated_at"])
    details = {"from": previous, "to": status}
    if reason is not None:
        details["reason"] = reason
    audit_record(actor=actor, action=action, target=worker, details=details)


def _worker_offline(*, actor: User, worker: Worker, action: AuditAction, reason: str) -> None:
    if worker.status != Worker.Status.OFFLINE:
        _change_status(actor=actor, worker=worker, status=Worker.Status.OFFLINE, action=action, reason=reason)
    for work_order in WorkOrder.objects.select_for_update().filter(worker=worker, status__in=WorkOrder.HELD):
        _requeue_or_fail(actor=actor, work_order=work_order, error=reason, retryable=True)


def worker_deregister(*, actor: User, worker_id: UUID) -> Worker:
    """Take a worker out of service (its owner, a task manager, or an account allowed to change
    workers): it goes offline and what it held is requeued. The row stays, so its history
    remains readable."""
    with transaction.atomic():
        worker = get_locked(Worker.objects, worker_id, what="worker")
        ensure_worker_owner_or_operator(actor, worker, permission="tasks.change_worker")
        if worker.status == Worker.Status.OFFLINE and not worker.work_orders.filter(status__in=WorkOrder.HELD).exists():
            return worker
        _worker_offline(
            actor=actor, worker=worker, action=AuditAction.WORKER_DEREGISTERED, reason="worker deregistered"
        )
    return worker


def workers_mark_silent_offline(*, now: datetime | None = None) -> int:
    """Beat (acting as SYSTEM): workers silent past HOL_WORKER_TIMEOUT_SECONDS go offline and
    their work is requeued. Workers another transaction holds are left for the next run."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.HOL_WORKER_TIMEOUT_SECONDS)
    silent = Worker.objects.exclude(status=Worker.Status.OFFLINE).filter(last_heartbeat_at__lt=cutoff)
    handled = 0
    for worker_id in list(silent.values_list("pk", flat=True)):
        with transaction.atomic():
            try:
                worker = get_locked(silent, worker_id, what="worker", skip_locked=True)
            except NotFound:
                continue  # heartbeated, went offline, or is locked meanwhile
            _worker_offline(actor=SYSTEM, worker=worker, action=AuditAction.WORKER_OFFLINE, reason="heartbeat lapsed")
            handled += 1
    return handled
