"""Celery tasks of the audit app (Beat). Each takes no objects, calls services, and is safe to run
twice or concurrently (the sequencer and checkpoints run under the chain lock)."""

from __future__ import annotations

from celery import shared_task

from audit import services as audit_services


@shared_task(name="audit.tasks.record_checkpoint")
def record_checkpoint() -> int | None:
    """Seal entries left pending (the safety net behind the post-commit kick), then sign the head.
    Returns the checkpoint's seq, or None when there was nothing new to sign."""
    checkpoint = audit_services.audit_checkpoint_record()
    return checkpoint.seq if checkpoint else None
