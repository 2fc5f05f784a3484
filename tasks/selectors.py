"""Reads with rules: what each account may see of tasks, workers, sessions and the queue."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from approvals.policy import current_policy
from hol.actors import AGENT_GROUP, is_agent, is_system
from hol.errors import NotFound
from hol.run_scope import run_scope
from tasks.models import RANK_PRIORITY, AgentSession, Execution, Task, Worker, WorkOrder


def _signed_in(actor: Any) -> bool:
    return actor is not None and actor.is_authenticated and actor.is_active


def holds_a_role(actor: Any) -> bool:
    """A person (not an agent account) in one of the roles the approval policy names."""
    if is_system(actor) or not _signed_in(actor) or is_agent(actor):
        return False
    cached = getattr(actor, "_hol_holds_a_role", None)
    if cached is None:
        roles = [name for name in current_policy().roles if name != AGENT_GROUP]
        cached = actor.groups.filter(name__in=roles).exists()
        actor._hol_holds_a_role = cached
    return cached


def sees_every_task(actor: Any) -> bool:
    """HOL itself, people with a role, and accounts given the model permission (e.g. view-only
    staff) read every task; an account with none of these reads none."""
    if is_system(actor):
        return True
    if not _signed_in(actor) or is_agent(actor):
        return False
    return holds_a_role(actor) or actor.has_perm("tasks.view_task") or actor.has_perm("tasks.change_task")


def tasks_visible_to(*, actor: Any) -> QuerySet[Task]:
    """An agent sees the tasks it submitted and those its workers hold or held (a requeued work
    order forgets its worker; the execution row remembers). Inputs may hold credentials, so an
    account without a role sees only what it submitted itself."""
    qs = Task.objects.select_related("assigned_to", "created_by")
    if sees_every_task(actor):
        return qs
    if not _signed_in(actor):
        return qs.none()
    if not is_agent(actor):
        return qs.filter(created_by=actor)
    scope = run_scope(actor)
    if scope is not None:
        qs = qs.filter(pk=scope.task_id)
    holds = WorkOrder.objects.filter(task=OuterRef("pk"), worker__user=actor)
    held = Execution.objects.filter(task=OuterRef("pk"), worker__user=actor)
    return qs.filter(Q(created_by=actor) | Exists(holds) | Exists(held))


def task_visible_to(*, actor: Any, task_id: Any) -> bool:
    return tasks_visible_to(actor=actor).filter(pk=task_id).exists()


def workers_visible_to(*, actor: Any) -> QuerySet[Worker]:
    """An agent account sees only its own workers; those who see every task see every worker."""
    qs = Worker.objects.select_related("user")
    if not _signed_in(actor):
        return qs.none()
    if is_agent(actor):
        return qs.filter(user=actor)
    return qs if sees_every_task(actor) else qs.none()


def sessions_visible_to(*, actor: Any) -> QuerySet[AgentSession]:
    """Sessions name the tasks they work on: the same people see them as see every task."""
    qs = AgentSession.objects.select_related("worker", "task")
    if not _signed_in(actor):
        return qs.none()
    if is_agent(actor):
        scope = run_scope(actor)
        if scope is not None:
            qs = qs.filter(task_id=scope.task_id)
        return qs.filter(worker__user=actor)
    return qs if sees_every_task(actor) else qs.none()


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


def queue_status(*, completed: bool = True) -> dict[str, Any]:
    """Depth per priority, held and failed work orders, and workers by status. Completed work
    orders are nearly the whole table, so counting them reads the whole table: pages that render
    on every visit pass completed=False and get None."""
    work_orders = WorkOrder.objects.all()
    if not completed:
        # The remaining statuses come from the (status, lease_expires_at) index.
        work_orders = work_orders.filter(status__in=[*WorkOrder.ACTIVE, WorkOrder.Status.FAILED])
    by_status = dict(work_orders.values_list("status").annotate(n=Count("*")).values_list("status", "n"))
    depth = dict.fromkeys(RANK_PRIORITY.values(), 0)
    for rank, n in (
        WorkOrder.objects.filter(status=WorkOrder.Status.QUEUED).values_list("priority").annotate(n=Count("*"))
    ):
        depth[RANK_PRIORITY.get(rank, str(rank))] = n
    workers = dict.fromkeys(Worker.Status.values, 0)
    workers.update(dict(Worker.objects.values_list("status").annotate(n=Count("*")).values_list("status", "n")))
    return {
        "depth": depth,
        "queued": by_status.get(WorkOrder.Status.QUEUED, 0),
        "claimed": by_status.get(WorkOrder.Status.CLAIMED, 0),
        "running": by_status.get(WorkOrder.Status.RUNNING, 0),
        "completed": by_status.get(WorkOrder.Status.COMPLETED, 0) if completed else None,
        "failed": by_status.get(WorkOrder.Status.FAILED, 0),
        "workers": workers,
    }


def next_available_at(*, now: datetime) -> datetime | None:
    """When the soonest backed-off work order becomes claimable; None when none is waiting."""
    return (
        WorkOrder.objects.filter(status=WorkOrder.Status.QUEUED, available_at__gt=now)
        .order_by("available_at")
        .values_list("available_at", flat=True)
        .first()
    )
