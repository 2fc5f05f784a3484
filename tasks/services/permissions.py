"""Who may act on tasks, work orders, workers and sessions. Each raises PermissionDenied (403)
or Conflict (409) and returns nothing; HOL itself (SYSTEM) passes, since it acts by design."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from hol.actors import is_agent, is_system
from hol.errors import Conflict, PermissionDenied
from hol.run_scope import OUT_OF_SCOPE, ensure_work_order_in_scope, run_scope
from tasks.models import Task, Worker, WorkOrder

User = AbstractBaseUser

# Roles whose members run the queue for everyone: edit, cancel and enqueue any task, take any
# worker out of service, end any session. The approval policy file says who may decide which
# approvals, not who operates the queue, so the list lives here.
TASK_MANAGER_ROLES = ("tech_lead", "devops_engineer")


def is_operator(actor: User, permission: str) -> bool:
    """A person in a task-manager role, or an account holding `permission` (admin-granted).
    An agent account never operates on other accounts' work, whatever its groups."""
    if is_agent(actor) or not actor.is_active:
        return False
    return actor.groups.filter(name__in=TASK_MANAGER_ROLES).exists() or actor.has_perm(permission)


def ensure_worker_owner(actor: User, worker: Worker) -> None:
    """Only the agent account a worker belongs to may act as that worker; a run's token only as
    the worker holding its work order."""
    if not is_system(actor) and worker.user_id != actor.pk:
        raise PermissionDenied("this worker belongs to another account")
    scope = run_scope(actor)
    if scope is not None and not WorkOrder.objects.filter(pk=scope.work_order_id, worker_id=worker.pk).exists():
        raise PermissionDenied("this run's token acts only as the worker running it", code=OUT_OF_SCOPE)


def ensure_worker_owner_or_operator(actor: User, worker: Worker, *, permission: str) -> None:
    """The worker's own account, or an operator (see `is_operator`) holding `permission`."""
    if is_system(actor) or worker.user_id == actor.pk or is_operator(actor, permission):
        return
    raise PermissionDenied("this worker belongs to another account")


def ensure_can_manage_task(actor: User, task: Task) -> None:
    """The account that submitted the task, a person in a task-manager role, or an account with
    the `tasks.change_task` permission."""
    if is_system(actor) or task.created_by_id == actor.pk or is_operator(actor, "tasks.change_task"):
        return
    raise PermissionDenied(
        "only the task's submitter, a tech lead or devops engineer, or an account allowed to change tasks may manage it"
    )


def ensure_holder(actor: User, work_order: WorkOrder) -> None:
    """Only the worker holding a work order may finish it: 403 for others, 409 if nobody holds it."""
    ensure_work_order_in_scope(actor, work_order.pk)
    if work_order.worker is not None:
        ensure_worker_owner(actor, work_order.worker)
    if work_order.status not in WorkOrder.HELD:
        raise Conflict(f"work order is {work_order.status}, not held by a worker", code="not_held")
