"""Reads with rules: what each account may see of tasks, workers, sessions and the queue."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db.models import Count, Q, QuerySet

from hol.actors import is_agent
from hol.errors import NotFound
from tasks.models import RANK_PRIORITY, AgentSession, Task, Worker, WorkOrder


def tasks_visible_to(*, actor: Any) -> QuerySet[Task]:
    """Every signed-in account may read tasks: agents need the ones they work on."""
    return Task.objects.select_related("assigned_to", "created_by")


def workers_visible_to(*, actor: Any) -> QuerySet[Worker]:
    """An agent account sees only its own workers; people see all."""
    qs = Worker.objects.select_related("user")
    return qs.filter(user=actor) if is_agent(actor) else qs


def sessions_visible_to(*, actor: Any) -> QuerySet[AgentSession]:
    qs = AgentSession.objects.select_related("worker", "task")
    return qs.filter(worker__user=actor) if is_agent(actor) else qs


def session_lookup(*, actor: Any, key: str) -> AgentSession:
    """Find a session by HOL's id or by the agent's own session_id."""
    qs = sessions_visible_to(actor=actor)
    try:
        session = qs.filter(Q(pk=UUID(key)) | Q(session_id=key)).first()
    except ValueError:
        session = qs.filter(session_id=key).first()
    if session is None:
        raise NotFound(f"session {key} not found")
    return session


def queue_status() -> dict[str, Any]:
    """Depth per priority, held and failed work orders, and workers by status."""
    by_status = dict(WorkOrder.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    depth = dict.fromkeys(RANK_PRIORITY.values(), 0)
    for rank, n in (
        WorkOrder.objects.filter(status=WorkOrder.Status.QUEUED).values_list("priority").annotate(n=Count("id"))
    ):
        depth[RANK_PRIORITY.get(rank, str(rank))] = n
    workers = dict.fromkeys(Worker.Status.values, 0)
    workers.update(dict(Worker.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n")))
    return {
        "depth": depth,
        "queued": by_status.get(WorkOrder.Status.QUEUED, 0),
        "claimed": by_status.get(WorkOrder.Status.CLAIMED, 0),
        "running": by_status.get(WorkOrder.Status.RUNNING, 0),
        "completed": by_status.get(WorkOrder.Status.COMPLETED, 0),
        "failed": by_status.get(WorkOrder.Status.FAILED, 0),
        "workers": workers,
    }
