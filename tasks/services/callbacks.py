"""Telling a task's callback_url how the task ended: dispatched to Celery after the commit that made
the task final, signed, retried with back-off, and audited (sent, or failed for good)."""

from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.actions import AuditAction
from audit.services import audit_record
from hol.actors import SYSTEM
from tasks import callbacks
from tasks.models import Execution, Task, WorkOrder

log = logging.getLogger(__name__)

SUMMARY_CHARS = 4000  # of the output or the error, from its end (where the conclusion is)


def callback_dispatch_on_commit(*, task_id: UUID, status: str, has_callback: bool | None = None) -> None:
    """Once the change that made the task `status` (final) commits, a Celery task POSTs its
    outcome, if the task names a callback_url (`has_callback`, when the caller already knows)."""
    if status not in Task.FINAL:
        return
    if has_callback is None:
        has_callback = Task.objects.filter(pk=task_id).exclude(callback_url="").exists()
    if not has_callback:
        return

    def send() -> None:
        from tasks.tasks import send_task_callback  # the Celery module imports the services

        # One id for the delivery, kept by its retries, so a receiver that answered but whose
        # answer was lost can tell the retry is one it already has.
        send_task_callback.delay(str(task_id), status, 1, secrets.token_hex(16))

    transaction.on_commit(send, robust=True)


def _tail(text: str) -> str:
    return text if len(text) <= SUMMARY_CHARS else "…" + text[-SUMMARY_CHARS:]


def callback_payload(*, task: Task, sent_at: datetime, delivery_id: str = "") -> dict[str, Any]:
    """What the receiver gets. `sent_at` is X-HOL-Timestamp too, inside the signed body, so a
    receiver can refuse old deliveries; `delivery_id` is the same on every retry of one delivery,
    so a receiver can drop one it already has."""
    payload: dict[str, Any] = {
        "delivery_id": delivery_id or secrets.token_hex(16),
        "task_id": str(task.pk),
        "status": task.status,
        "title": task.title,
        "finished_at": (task.completed_at or task.updated_at).isoformat(),
        "sent_at": sent_at.isoformat(),
    }
    if task.status == Task.Status.COMPLETED:
        execution = Execution.objects.filter(task=task, status=Execution.Status.COMPLETED).order_by("-started_at")
        payload["output"] = _tail(execution.values_list("output", flat=True).first() or "")
    elif task.status == Task.Status.FAILED:
        work_order = WorkOrder.objects.filter(task=task, status=WorkOrder.Status.FAILED).order_by("-completed_at")
        payload["error"] = _tail(work_order.values_list("last_error", flat=True).first() or "")
    else:
        approval = task.intake_approval
        if approval is not None and approval.status != approval.Status.APPROVED:
            payload["reason"] = f"approval {approval.status}: {approval.rejection_reason}".rstrip(": ")
    return payload


def task_callback_send(
    *, task_id: UUID | str, status: str, attempt: int = 1, delivery_id: str = "", now: datetime | None = None
) -> float | None:
    """One attempt to POST the task's outcome to its callback_url. Returns the seconds to wait
    before the next attempt, or None when done: delivered, refused, or out of attempts (each
    audited as HOL). Nothing is sent when the task has since left `status` (a failed task that
    was retried reports its next final state instead)."""
    task = Task.objects.filter(pk=task_id).select_related("intake_approval").first()
    if task is None or task.status != status or not task.callback_url:
        return None
    now = now or timezone.now()
    payload = callback_payload(task=task, sent_at=now, delivery_id=delivery_id)
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "HOL-callback",
        callbacks.SIGNATURE_HEADER: callbacks.signature(settings.HOL_CALLBACK_SECRET, body),
        callbacks.TIMESTAMP_HEADER: now.isoformat(),
    }
    delivery = callbacks.post(
        task.callback_url,
        body=body,
        headers=headers,
        allowed_hosts=settings.HOL_CALLBACK_ALLOWED_HOSTS,
        timeout=settings.HOL_CALLBACK_TIMEOUT_SECONDS,
    )
    details = {"status": status, "attempt": attempt, "http_status": delivery.status_code}
    if delivery.delivered:
        with transaction.atomic():
            audit_record(
                actor=SYSTEM, action=AuditAction.TASK_CALLBACK_SENT, target=task, task_id=task.pk, details=details
            )
        return None
    if delivery.retryable and attempt < settings.HOL_CALLBACK_MAX_ATTEMPTS:
        log.warning("callback of task %s, attempt %d: %s; retrying", task.pk, attempt, delivery.error)
        return settings.HOL_CALLBACK_BACKOFF_SECONDS * 2 ** (attempt - 1)
    with transaction.atomic():
        audit_record(
            actor=SYSTEM,
            action=AuditAction.TASK_CALLBACK_FAILED,
            target=task,
            task_id=task.pk,
            details={**details, "error": delivery.error},
        )
    return None
