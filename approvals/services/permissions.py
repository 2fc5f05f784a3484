"""Who may do what with an approval request: decide it (approve, reject, escalate), and which
tasks, work orders and sessions an account may link to the requests it makes."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any
from uuid import UUID

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q

from approvals.models import ApprovalRequest
from approvals.policy import Policy
from hol.actors import is_agent, is_system
from hol.errors import BadRequest, Conflict, NotFound, PermissionDenied
from hol.fetch import parse_uuid
from hol.run_scope import ensure_task_in_scope, ensure_work_order_in_scope, run_scope

User = AbstractBaseUser
Status = ApprovalRequest.Status
DECIDE_PERMISSION = "approvals.decide_approvalrequest"


def requesting_accounts(request: ApprovalRequest) -> set[Any]:
    """The requester and the accounts owning the worker the request came from: none may decide."""
    accounts = {request.requested_by_id}
    if request.work_order_id and request.work_order.worker_id:
        accounts.add(request.work_order.worker.user_id)
    if request.agent_session_id:
        accounts.add(request.agent_session.worker.user_id)
    return accounts


def _user_roles(user: User) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


def ensure_may_decide(actor: User, request: ApprovalRequest, policy: Policy) -> str:
    """Who may decide (approve, reject, escalate) a request: a person, not the requester or the
    owner of the requesting worker, holding a role whose levels include the request's level (and
    the level's `require_role`), with the object permission recorded for this request. An account
    in the agent role never decides, whatever other roles it holds. Returns the role they decide
    as (the most senior that qualifies)."""
    if actor is None or is_system(actor) or not actor.is_authenticated:
        raise PermissionDenied("a decision needs a signed-in approver", code="not_authenticated")
    if is_agent(actor):
        raise PermissionDenied("agents never decide approval requests", code="agents_cannot_decide")
    if actor.pk in requesting_accounts(request):
        raise PermissionDenied("nobody may decide a request they (or their worker) made", code="self_approval")
    held = _user_roles(actor)
    eligible = [role for role in policy.roles_for_level(request.risk_level) if role in held]
    if not eligible:
        required = policy.level(request.risk_level).require_role
        if required and any(
            request.risk_level in policy.roles[role].may_approve for role in held if role in policy.roles
        ):
            raise PermissionDenied(
                f"{request.risk_level} requests must be decided by a {required}", code="role_required"
            )
        raise PermissionDenied(
            f"your roles ({', '.join(sorted(held)) or 'none'}) may not decide {request.risk_level} requests",
            code="role_cannot_decide",
        )
    if not actor.has_perm(DECIDE_PERMISSION, request):
        raise PermissionDenied("you are not among those who may decide this request", code="not_eligible")
    return max(eligible, key=policy.role_rank)


def ensure_open(request: ApprovalRequest, now: datetime) -> None:
    """A request is decided or escalated only while pending and before its decision deadline."""
    if request.status != Status.PENDING:
        raise Conflict(f"the request is {request.status}; it can no longer be decided", code="not_pending")
    if request.expires_at <= now:
        raise Conflict("the request expired; it can no longer be decided", code="expired")


# --- what a request may link to -------------------------------------------------------------------
# An id that names nothing gets the same 403 as one naming something the actor may not link, so the
# answer does not tell which ids exist.

NOT_YOUR_TASK = "you may only link a task you submitted or work on"
NOT_YOUR_WORK_ORDER = "you may only link a work order your worker holds"
NOT_YOUR_SESSION = "you may only link a session of your own worker"


def _as_uuid(value: Any) -> UUID | None:
    """The id, or None for one that cannot name a row (answered like any other foreign id)."""
    try:
        return parse_uuid(value, what="id")
    except NotFound:
        return None


def _linkable_task(actor: User, task_id: Any) -> Any:
    """A task the actor sees through the API (`tasks_visible_to`: a person without a role sees
    only the tasks they submitted); an agent, moreover, only one it submitted or whose work its
    worker holds now."""
    from tasks.models import WorkOrder
    from tasks.selectors import tasks_visible_to

    pk = _as_uuid(task_id)
    if pk is not None:
        ensure_task_in_scope(actor, pk)
    task = tasks_visible_to(actor=actor).filter(pk=pk).first() if pk is not None else None
    if (
        task is not None
        and is_agent(actor)
        and task.created_by_id != actor.pk
        and not WorkOrder.objects.filter(task=task, worker__user=actor, status__in=WorkOrder.HELD).exists()
    ):
        task = None  # an agent that once held the task's work sees it, but no longer links it
    if task is None:
        raise PermissionDenied(NOT_YOUR_TASK, code="not_your_task")
    return task


def _linkable_work_order(actor: User, work_order_id: Any) -> Any:
    """A work order the actor's worker holds."""
    from tasks.models import WorkOrder

    pk = _as_uuid(work_order_id)
    work_order = WorkOrder.objects.select_related("worker").filter(pk=pk).first() if pk is not None else None
    if not (
        work_order is not None
        and work_order.status in WorkOrder.HELD
        and work_order.worker is not None
        and work_order.worker.user_id == actor.pk
    ):
        raise PermissionDenied(NOT_YOUR_WORK_ORDER, code="not_your_work_order")
    ensure_work_order_in_scope(actor, work_order.pk)
    return work_order


def _linkable_session(actor: User, key: Any) -> Any:
    """A session of the actor's own worker, by the agent's own `session_id` string or HOL's id."""
    from tasks.models import AgentSession

    condition = Q(session_id=str(key))
    with contextlib.suppress(ValueError):
        condition |= Q(pk=UUID(str(key)))
    session = AgentSession.objects.select_related("worker").filter(condition).first()
    if session is None or session.worker.user_id != actor.pk:
        raise PermissionDenied(NOT_YOUR_SESSION, code="not_your_session")
    ensure_task_in_scope(actor, session.task_id)
    return session


def resolve_links(*, actor: User, task_id: Any, work_order_id: Any, session_id: Any) -> dict[str, Any]:
    """The task, work order and agent session a request links to, each one the actor may link:
    a task it may see (an agent: one it submitted or holds work of), a work order its worker
    holds, a session of its worker. Anything else, or an id that names nothing, is a 403: nobody
    attaches a request to work they cannot see, an agent cannot borrow another agent's work to
    exclude that agent's people from deciding, and ids cannot be probed."""
    scope = run_scope(actor)
    if scope is not None and task_id in (None, "") and work_order_id in (None, ""):
        work_order_id = scope.work_order_id  # a run's request belongs to its work order
    task = _linkable_task(actor, task_id) if task_id not in (None, "") else None
    work_order = _linkable_work_order(actor, work_order_id) if work_order_id not in (None, "") else None
    session = _linkable_session(actor, session_id) if session_id not in (None, "") else None
    if task is not None and work_order is not None and work_order.task_id != task.pk:
        raise BadRequest("the work order belongs to another task", code="links_disagree")
    return {"task": task, "work_order": work_order, "agent_session": session}
