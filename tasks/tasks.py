"""Celery tasks of the tasks app: Beat housekeeping. Each takes no objects, calls services, and
is safe to run twice or concurrently."""

from __future__ import annotations

from celery import shared_task

from tasks import services as task_services


@shared_task(name="tasks.tasks.requeue_lapsed_work")
def requeue_lapsed_work() -> dict[str, int]:
    """Silent workers go offline; held work whose lease lapsed is requeued or failed for good."""
    return {
        "workers_offline": task_services.workers_mark_silent_offline(),
        "work_orders_requeued": task_services.work_orders_requeue_lapsed(),
    }


@shared_task(name="tasks.tasks.terminate_stale_sessions")
def terminate_stale_sessions() -> int:
    """The session keep-alive policy: idle or too old sessions are terminated."""
    return task_services.sessions_terminate_stale()
