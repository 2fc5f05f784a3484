"""Celery tasks of the audit app (Beat). Each takes no objects, calls services, and is safe to run
twice or concurrently (the sequencer and checkpoints run under the chain lock)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.contrib.auth import get_user_model

from audit import services as audit_services
from hol.actors import SYSTEM
from hol.pubsub import redis_client

log = logging.getLogger(__name__)


@shared_task(name="audit.tasks.record_checkpoint")
def record_checkpoint() -> int | None:
    """Seal entries left pending (the safety net behind the post-commit kick), then sign the head.
    Returns the checkpoint's seq, or None when there was nothing new to sign."""
    checkpoint = audit_services.audit_checkpoint_record()
    return checkpoint.seq if checkpoint else None


@shared_task(name="audit.tasks.verify_chain")
def verify_chain() -> dict:
    """Verify the whole chain as HOL itself and store the run; the audit page shows the latest.
    A broken chain is also logged as an error, so log-based alerting sees it."""
    run = audit_services.audit_verify_record(actor=SYSTEM)
    if not run.ok:
        log.error("audit chain broken at seq %s: %s", run.first_bad_seq, run.problem)
    return {"ok": run.ok, "count": run.count, "head_seq": run.head_seq, "first_bad_seq": run.first_bad_seq}


# Held while a verification a person asked for runs (the audit page's button), so clicks do not
# pile up runs; it lapses by itself if the worker dies mid-run.
VERIFY_LOCK_KEY = "hol:audit:verifying"
VERIFY_LOCK_SECONDS = 15 * 60


@shared_task(name="audit.tasks.verify_chain_as")
def verify_chain_as(user_id: int) -> dict | None:
    """The audit page's "verify now": verify as the person who asked (who must still be allowed
    to read the audit log), store the run, and release the page's lock."""
    try:
        user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
        if user is None:
            return None
        run = audit_services.audit_verify_record(actor=user)
        if not run.ok:
            log.error("audit chain broken at seq %s: %s", run.first_bad_seq, run.problem)
        return {"ok": run.ok, "count": run.count, "head_seq": run.head_seq, "first_bad_seq": run.first_bad_seq}
    finally:
        redis_client().delete(VERIFY_LOCK_KEY)
