"""Agent sessions (a Claude Code session id → worker, task) and the keep-alive policy (Beat)."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import audit_record
from hol.actors import SYSTEM
from hol.errors import Conflict
from hol.fetch import get_locked
from hol.transitions import ensure_transition
from tasks.models import AgentSession, Task, Worker
from tasks.services.notify import _tell_task_owner
from tasks.services.permissions import (
    ensure_worker_owner,
    ensure_worker_owner_or_staff,
)
from tasks.services.transitions import SESSION_TRANSITIONS

User = AbstractBaseUser


def session_create(*, actor: User, session_id: str, worker_id: UUID, task_id: UUID | None = None) -> AgentSession:
    """Map an agent's own session id (e.g. a Claude Code session) to one of the actor's workers."""
    worker = get_locked(Worker.objects, worker_id, what="worker", lock=False)
    ensure_worker_owner(actor, worker)
    task = get_locked(Task.objects, task_id, what="task", lock=False) if task_id else None
    try:
        with transaction.atomic():
            session = AgentSession.objects.create(
                session_id=session_id, worker=worker, task=task, last_activity_at=timezone.now()
            )
            audit_record(
                actor=actor,
                action="session.created",
                target=session,
                task_id=task_id,
                details={"session_id": session_id, "worker": str(worker.pk)},
            )
    except IntegrityError:
        raise Conflict(f"session {session_id!r} already exists", code="session_exists") from None
    return session


def session_heartbeat(*, actor: User, session_pk: UUID) -> AgentSession:
    """Record activity on a live session (terminated sessions stay terminated: 409)."""
    with transaction.atomic():
        session = get_locked(AgentSession.objects.select_related("worker"), session_pk, what="session", of=("self",))
        ensure_worker_owner(actor, session.worker)
        if session.status == AgentSession.Status.TERMINATED:
            raise Conflict("session is terminated", code="invalid_transition")
        session.last_activity_at = timezone.now()
        session.status = AgentSession.Status.ACTIVE
        session.save(update_fields=["last_activity_at", "status"])
    return session


def session_terminate(*, actor: User, session_pk: UUID, reason: str = "terminated by agent") -> AgentSession:
    """End a session (its worker's owner, staff, or the keep-alive policy)."""
    with transaction.atomic():
        session = get_locked(
            AgentSession.objects.select_related("worker", "task"), session_pk, what="session", of=("self",)
        )
        ensure_worker_owner_or_staff(actor, session.worker)
        ensure_transition(session.status, AgentSession.Status.TERMINATED, SESSION_TRANSITIONS, what="session")
        session.status = AgentSession.Status.TERMINATED
        session.terminated_at = timezone.now()
        session.termination_reason = reason
        session.save(update_fields=["status", "terminated_at", "termination_reason"])
        audit_record(
            actor=actor,
            action="session.terminated",
            target=session,
            task_id=session.task_id,
            details={"reason": reason},
        )
        if session.task_id:
            _tell_task_owner(
                task_id=session.task_id,
                kind="session.terminated",
                message=f"agent session {session.session_id} ended: {reason}",
            )
    return session


def sessions_terminate_stale(*, now: datetime | None = None) -> int:
    """Beat: terminate sessions idle longer than HOL_SESSION_IDLE_SECONDS or older than
    HOL_SESSION_MAX_AGE_SECONDS (the keep-alive policy)."""
    now = now or timezone.now()
    idle_cutoff = now - timedelta(seconds=settings.HOL_SESSION_IDLE_SECONDS)
    age_cutoff = now - timedelta(seconds=settings.HOL_SESSION_MAX_AGE_SECONDS)
    handled = 0
    live = AgentSession.objects.exclude(status=AgentSession.Status.TERMINATED)
    for session in live.filter(last_activity_at__lt=idle_cutoff).only("pk"):
        handled += _terminate_quietly(session.pk, "idle timeout")
    for session in live.filter(created_at__lt=age_cutoff).only("pk"):
        handled += _terminate_quietly(session.pk, "maximum age reached")
    return handled


def _terminate_quietly(session_pk: UUID, reason: str) -> int:
    try:
        session_terminate(actor=SYSTEM, session_pk=session_pk, reason=reason)
    except Conflict:
        return 0  # terminated meanwhile
    return 1
