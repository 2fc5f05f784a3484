"""Handing enqueued work to Celery workers, which carry it out (tasks.tasks.run_work_order)."""

from __future__ import annotations

from uuid import UUID

from django.conf import settings
from django.db import transaction


def run_dispatch_on_commit(*, work_order_id: UUID) -> None:
    """Once the enqueue commits, a Celery worker is asked to carry the work order out. A broker
    that cannot be reached is logged, not raised: the work order stays queued for any claimer."""
    if not settings.HOL_RUN_WORK_IN_CELERY:
        return

    def send() -> None:
        from tasks.tasks import run_work_order  # the Celery module imports the services

        run_work_order.delay(str(work_order_id))

    transaction.on_commit(send, robust=True)
