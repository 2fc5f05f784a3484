"""Celery tasks of the approvals app: Beat housekeeping, and delivering notices by email and
webhook. Each calls a service and is safe to run twice or concurrently."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from approvals import services as approval_services
from approvals.services import notify


@shared_task(name="approvals.tasks.expire_overdue_approvals")
def expire_overdue_approvals() -> int:
    """Pending requests past their expiry become expired; waiting agents are woken."""
    return approval_services.approvals_expire_overdue()


@shared_task(name="approvals.tasks.warn_expiring_approvals")
def warn_expiring_approvals() -> int:
    """Approvers hear about pending requests that are about to expire."""
    return approval_services.approvals_warn_expiring()


@shared_task(name="approvals.tasks.deliver_approval_notice")
def deliver_approval_notice(
    *, kind: str, message: str, recipient_ids: list[Any], channels: list[str], payload: dict
) -> None:
    """Email the recipients (read again here, so a deactivated account gets nothing) and post the
    webhook. Dispatched on commit by the service that changed the request."""
    notify.deliver(kind=kind, message=message, recipient_ids=recipient_ids, channels=channels, payload=payload)
