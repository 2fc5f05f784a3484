"""Celery tasks of the approvals app: Beat housekeeping. Each calls a service and is safe to run
twice or concurrently."""

from __future__ import annotations

from celery import shared_task

from approvals import services as approval_services


@shared_task(name="approvals.tasks.expire_overdue_approvals")
def expire_overdue_approvals() -> int:
    """Pending requests past their expiry become expired; waiting agents are woken."""
    return approval_services.approvals_expire_overdue()


@shared_task(name="approvals.tasks.warn_expiring_approvals")
def warn_expiring_approvals() -> int:
    """Approvers hear about pending requests that are about to expire."""
    return approval_services.approvals_warn_expiring()
