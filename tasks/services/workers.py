"""Workers: register, heartbeat (extends leases), deregister; silent ones go offline (Beat)."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from hol.actors import SYSTEM
from hol.fetch import get_locked
from tasks.models import Worker, WorkOrder
from tasks.services.permissions import (
    ensure_worker_owner,
    ensure_worker_owner_or_staff,
)
from tasks.services.queue import _requeue_or_fail

User = AbstractBaseUser


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
        worker = get_locked(Worker.objects, worker_id, what="worker")
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


def _worker_offline(*, actor: User, worker: Worker, action: str, reason: str) -> None:
    worker.status = Worker.Status.OFFLINE
    worker.save(update_fields=["status", "updated_at"])
    audit_record(actor=actor, action=action, target=worker, details={"reason": reason})
    for work_order in WorkOrder.objects.select_for_update().filter(worker=worker, status__in=WorkOrder.HELD):
        _requeue_or_fail(actor=actor, work_order=work_order, error=reason, retryable=True)


def worker_deregister(*, actor: User, worker_id: UUID) -> Worker:
    """Take a worker out of service (its owner or staff): it goes offline and what it held is
    requeued. The row stays, so its history remains readable."""
    with transaction.atomic():
        worker = get_locked(Worker.objects, worker_id, what="worker")
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
            _worker_offline(actor=SYSTEM, worker=worker, action="worker.offline", reason="heartbeat lapsed")
            handled += 1
    return handled
