"""Handing enqueued work to Celery workers, which carry it out (tasks.tasks.run_work_order), and
waking agents that long-poll the queue for it."""

from __future__ import annotations

import logging
from uuid import UUID

import redis
from django.conf import settings
from django.db import transaction

from hol.pubsub import redis_client

log = logging.getLogger(__name__)


def queue_channel() -> str:
    """The pub/sub channel of this HOL's queue (channels are server-wide, so it names the database)."""
    return f"hol:queue:{settings.DATABASES['default']['NAME']}"


def queue_wake_on_commit() -> None:
    """Once work is queued (or requeued), claimers waiting with `wait` try again. A lost message
    only costs them a wait: they re-read the queue when it ends."""

    def publish() -> None:
        try:
            redis_client().publish(queue_channel(), b"1")
        except redis.RedisError:
            log.warning("could not wake the queue's waiting claimers", exc_info=True)

    transaction.on_commit(publish)


def run_dispatch_on_commit(*, work_order_id: UUID) -> None:
    """Once the enqueue commits, a Celery worker is asked to carry the work order out. A broker
    that cannot be reached is logged, not raised: the work order stays queued for any claimer."""
    if not settings.HOL_RUN_WORK_IN_CELERY:
        return

    def send() -> None:
        from tasks.tasks import run_work_order  # the Celery module imports the services

        run_work_order.delay(str(work_order_id))

    transaction.on_commit(send, robust=True)
