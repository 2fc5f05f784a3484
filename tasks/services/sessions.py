"""Agent sessions (a Claude Code session id → worker, task) and the keep-alive policy (Beat).

`session_id` is always the agent's own session string; HOL's primary key of a session is
`agent_session_pk`."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from audit.actions import AuditAction
from audit.services import audit_record
from hol.actors import SYSTEM
from hol.errors import BadRequest, Conflict, NotFound, PermissionDenied
from hol.fetch import get_locked
from hol.run_scope import ensure_task_in_scope, run_scope
from hol.transitions import ensure_transition
from tasks.intake import byte_size
from tasks.models import AgentSession, Task, Worker
from tasks.selectors import task_visible_to
from tasks.services.notify import _tell_task_owner
from tasks.services.permissions import ensure_worker_owner, ensure_worker_owner_or_operator
from tasks.services.transitions import SESSION_TRANSITIONS

User = AbstractBaseUser

MAX_REASON_BYTES = 1024  # the reason reaches the task's assignee as a notification


def session_create(*, actor: User, session_id: str, worker_id: UUID, task_id: UUID | None = None) -> AgentSession:
    """Map an agent's own session id (e.g. a Claude Code session) to one of the actor's workers,
    and optionally to a task the actor may see (403 otherwise: a session on someone else's task
    would let its termination reason reach that task's assignee)."""
    worker = get_locked(Worker.objects, worker_id, what="worker", lock=False)
    ensure_worker_owner(actor, worker)
    scope = run_scope(actor)
    if scope is not None and not task_id:
        task_id = scope.task_id  # a run's session is its task's
    task = None
    if task_id:
        task = get_locked(Task.objects, task_id, what="task", lock=False)
        if not task_visible_to(actor=actor, task_id=task.pk):
            raise PermissionDenied("a session may only be linked to a task you submitted or work on")
    return session_open(actor=actor, session_id=session_id, worker=worker, task_id=task.pk if task else None)


def session_open(*, actor: User, session_id: str, worker: Worker, task_id: UUID | None) -> AgentSession:
    """Record the session (audited). For callers that have checked what session_create checks:
    session_create itself, and run_start, whose caller holds the task's work order through
    `worker` (which is what session_create would verify again)."""
    try:
        with transaction.atomic():
            session = AgentSession.objects.create(
                session_id=session_id, worker=worker, task_id=task_id, last_activity_at=timezone.now()
            )
            audit_record(
                actor=actor,
                action=AuditAction.SESSION_CREATED,
                target=session,
                task_id=task_id,
                details={"session_id": session_id, "worker": str(worker.pk)},
            )
    except IntegrityError:
        raise Conflict(f"session {session_id!r} already exists", code="session_exists") from None
    return session


def session_heartbeat(*, actor: User, agent_session_pk: UUID) -> AgentSession:
    """Record activity on a live session (terminated sessions stay terminated: 409)."""
    with transaction.atomic():
        session = get_locked(
            AgentSession.objects.select_related("worker"), agent_session_pk, what="session", of=("self",)
        )
        ensure_worker_owner(actor, session.worker)
        ensure_task_in_scope(actor, session.task_id)
        if session.status != AgentSession.Status.ACTIVE:
            ensure_transition(session.status, AgentSession.Status.ACTIVE, SESSION_TRANSITIONS, what="session")
        session.last_activity_at = timezone.now()
        session.status = AgentSession.Status.ACTIVE
        session.save(update_fields=["last_activity_at", "status"])
    return session


def session_terminate(
    *, actor: User, agent_session_pk: UUID, reason: str = "terminated by agent", tell_owner: bool = True
) -> AgentSession:
    """End a session: its worker's account, a task manager, or an account allowed to change
    sessions. The reason is text of at most MAX_REASON_BYTES. With `tell_owner=False` the
    caller tells the task's owner itself, with session_tell_owner (a run does, once its outcome
    is recorded, so the outcome is not kept waiting by a notification)."""
    if not isinstance(reason, str) or byte_size(reason) > MAX_REASON_BYTES:
        raise BadRequest(f"reason must be text of at most {MAX_REASON_BYTES} bytes", code="invalid")
    with transaction.atomic():
        session = get_locked(
            AgentSession.objects.select_related("worker", "task"), agent_session_pk, what="session", of=("self",)
        )
        ensure_worker_owner_or_operator(actor, session.worker, permission="tasks.change_agentsession")
        ensure_task_in_scope(actor, session.task_id)
        _terminate(actor=actor, session=session, reason=reason, now=timezone.now(), tell_owner=tell_owner)
    return session


def session_tell_owner(*, session: AgentSession) -> None:
    """Tell the task's owner that the session ended (its termination reason)."""
    if session.task_id and session.status == AgentSession.Status.TERMINATED:
        _tell_task_owner(
            task_id=session.task_id,
            kind="session.terminated",
            message=f"agent session {session.session_id} ended: {session.termination_reason}",
        )


def _terminate(*, actor: User, session: AgentSession, reason: str, now: datetime, tell_owner: bool = True) -> None:
    ensure_transition(session.status, AgentSession.Status.TERMINATED, SESSION_TRANSITIONS, what="session")
    session.status = AgentSession.Status.TERMINATED
    session.terminated_at = now
    session.termination_reason = reason
    session.save(update_fields=["status", "terminated_at", "termination_reason"])
    audit_record(
        actor=actor,
        action=AuditAction.SESSION_TERMINATED,
        target=session,
        task_id=session.task_id,
        details={"reason": reason},
    )
    if tell_owner:
        session_tell_owner(session=session)


def sessions_terminate_stale(*, now: datetime | None = None) -> int:
    """Beat (acting as SYSTEM): terminate sessions idle longer than HOL_SESSION_IDLE_SECONDS or
    older than HOL_SESSION_MAX_AGE_SECONDS (the keep-alive policy). The condition is checked
    again under the lock, so a session that heartbeats meanwhile survives; sessions another
    transaction holds are left for the next run."""
    now = now or timezone.now()
    idle_cutoff = now - timedelta(seconds=settings.HOL_SESSION_IDLE_SECONDS)
    age_cutoff = now - timedelta(seconds=settings.HOL_SESSION_MAX_AGE_SECONDS)
    stale = AgentSession.objects.exclude(status=AgentSession.Status.TERMINATED).filter(
        Q(last_activity_at__lt=idle_cutoff) | Q(created_at__lt=age_cutoff)
    )
    handled = 0
    for agent_session_pk in list(stale.values_list("pk", flat=True)):
        with transaction.atomic():
            try:
                session = get_locked(stale, agent_session_pk, what="session", skip_locked=True)
            except NotFound:
                continue
            reason = "maximum age reached" if session.created_at < age_cutoff else "idle timeout"
            _terminate(actor=SYSTEM, session=session, reason=reason, now=now)
            handled += 1
    return handled
