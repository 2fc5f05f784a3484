"""Celery tasks of the tasks app: carrying out work orders, and Beat housekeeping. Each takes ids,
not objects, calls services, and is safe to run twice or concurrently."""

from __future__ import annotations

from uuid import UUID

from celery import shared_task
from django.db import DatabaseError

from tasks import runner
from tasks import services as task_services


@shared_task(
    bind=True,
    name="tasks.tasks.run_work_order",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
    ignore_result=True,
    # A database that is briefly unreachable must not drop the run; the message comes back.
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    retry_backoff_max=60,
)
def run_work_order(self, work_order_id: str) -> None:
    """Carry out a work order with the agent command. The message is acknowledged only when the
    run ends, so a worker killed mid-run has it redelivered; while the order waits (back-off, or
    another worker holds it) the message comes back later instead of being dropped."""
    try:
        work_order_uuid = UUID(str(work_order_id))
    except ValueError:
        return
    look_again_in = runner.carry_out(work_order_uuid)
    if look_again_in is not None:
        raise self.retry(countdown=look_again_in)


@shared_task(name="tasks.tasks.requeue_lapsed_work")
def requeue_lapsed_work() -> dict[str, int]:
    """Silent workers go offline; held work whose lease lapsed is requeued or failed for good.
    Requeued work is dispatched to Celery again: its holder died, and a Celery worker killed
    outright leaves its message with the broker until the broker's visibility timeout."""
    lapsed = runner.lapsed_work_order_ids()
    counts = {
        "workers_offline": task_services.workers_mark_silent_offline(),
        "work_orders_requeued": task_services.work_orders_requeue_lapsed(),
    }
    runner.dispatch_requeued(lapsed)
    return counts


@shared_task(name="tasks.tasks.terminate_stale_sessions")
def terminate_stale_sessions() -> int:
    """The session keep-alive policy: idle or too old sessions are terminated."""
    return task_services.sessions_terminate_stale()


# Each attempt has socket timeouts, but a receiver dripping bytes could hold a worker process
# for ever: the whole attempt is bounded too.
@shared_task(name="tasks.tasks.send_task_callback", ignore_result=True, soft_time_limit=30, time_limit=45)
def send_task_callback(task_id: str, status: str, attempt: int = 1, delivery_id: str = "") -> None:
    """POST a final task's outcome to its callback_url; retried with back-off while the service
    says so. Dispatched on commit by the change that made the task final."""
    retry_in = task_services.task_callback_send(
        task_id=task_id, status=status, attempt=attempt, delivery_id=delivery_id
    )
    if retry_in is not None:
        send_task_callback.apply_async((task_id, status, attempt + 1, delivery_id), countdown=retry_in)
