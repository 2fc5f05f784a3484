"""Who may act on tasks, work orders, workers and sessions. Each raises PermissionDenied (403)
or Conflict (409) and returns nothing; HOL itself (SYSTEM) passes, since it acts by design."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from hol.actors import is_agent, is_system
from hol.errors import Conflict, PermissionDenied
from tasks.models import Task, Worker, WorkOrder

User = AbstractBaseUser


def ensure_worker_owner(actor: User, worker: Worker) -> None:
    """Only the agent account a worker belongs to may act as that worker."""
    if not is_system(actor) and worker.user_id != actor.pk:
        raise PermissionDenied("this worker belongs to another account")


def ensure_worker_owner_or_staff(actor: User, worker: Worker) -> None:
    if actor.is_staff and not is_agent(actor):
        return
    ensure_worker_owner(actor, worker)


def ensure_can_manage_task(actor: User, task: Task) -> None:
    """Humans manage any task; an agent account only the tasks it submitted."""
    if is_system(actor) or not is_agent(actor) or task.created_by_id == actor.pk:
        return
    raise PermissionDenied("agents may only change tasks they submitted")


def ensure_holder(actor: User, work_order: WorkOrder) -> None:
    """Only the worker holding a work order may finish it: 403 for others, 409 if nobody holds it."""
    if work_order.worker is not None:
        ensure_worker_owner(actor, work_order.worker)
    if work_order.status not in WorkOrder.HELD:
        raise Conflict(f"work order is {work_order.status}, not held by a worker", code="not_held")
