"""Opening an approval request: assess the action's risk, check what it links to, and either
approve it at once (low risk with auto_approve; HOL itself approves) or assign it to the most
junior role that may decide it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from approvals.models import ApprovalRequest
from approvals.policy import current_policy
from approvals.risk import Assessment, action_hash, assess, canonical_action
from approvals.services.notify import approvers_of, describe, notify, publish_on_commit
from approvals.services.permissions import resolve_links
from approvals.services.routing import assign, grant, username
from approvals.services.transitions import SYSTEM_ROLE, TRANSITIONS, WHAT
from audit.actions import AuditAction
from audit.services import audit_record
from hol.actors import SYSTEM
from hol.errors import Conflict
from hol.fetch import get_locked
from hol.transitions import ensure_transition

User = AbstractBaseUser
Status = ApprovalRequest.Status


def risk_assess(*, action: dict[str, Any]) -> Assessment:
    """Assess an action against the rules file as it is now."""
    return assess(action, current_policy().rules)


def approval_request_create(**kwargs: Any) -> ApprovalRequest:
    """`approval_request_ask` for callers that need only the request."""
    return approval_request_ask(**kwargs)[0]


def _open_request_for(
    *, actor: User, links: dict[str, Any], thread_id: str, hash_: str, now: datetime
) -> ApprovalRequest | None:
    """The request this work order (or, without one, this agent session, or else this thread of
    the asker) already has open for the same action: pending and not overdue, or approved and
    still usable. Its row (work order, session, asker) is locked first, so two identical asks at
    once queue here and the second finds the first's request instead of opening another."""
    from tasks.models import AgentSession, WorkOrder

    if links["work_order"] is not None:
        get_locked(WorkOrder.objects, links["work_order"].pk, what="work order", of=("self",))
        scope = {"work_order": links["work_order"]}
    elif links["agent_session"] is not None:
        get_locked(AgentSession.objects, links["agent_session"].pk, what="agent session", of=("self",))
        scope = {"agent_session": links["agent_session"], "work_order__isnull": True}
    elif thread_id:
        # An agent outside a run names its session by the thread (the Claude Code hook passes
        # Claude's session id there); the asker's own row is the lock.
        get_locked(type(actor).objects, actor.pk, what="user")
        scope = {"thread_id": thread_id, "work_order__isnull": True, "agent_session__isnull": True}
    else:
        return None
    mine = ApprovalRequest.objects.filter(requested_by=actor, action_hash=hash_, **scope)
    usable = Q(status=Status.PENDING, expires_at__gt=now) | Q(
        status=Status.APPROVED, consumed_at__isnull=True, consume_by__gt=now
    )
    return mine.filter(usable).order_by("-created_at").first()


def approval_request_ask(
    *,
    actor: User,
    action: dict[str, Any],
    workflow_id: str = "",
    thread_id: str = "",
    checkpoint_id: str = "",
    task_id: Any = None,
    work_order_id: Any = None,
    session_id: Any = None,
    agent_name: str = "",
    action_impact: str = "",
    security_context: dict | None = None,
    now: datetime | None = None,
) -> tuple[ApprovalRequest, bool]:
    """Assess the action and open a request; returns it and whether it is new. Asking again is
    idempotent: the same work order (or session) asking for the same action gets its open request
    back (pending, or approved and not yet used), never a second one for people to decide, so an
    agent whose wait timed out, or a graph node run again on resume, finds its request. Otherwise
    a new request. Low risk with auto_approve is created already
    approved by HOL itself; anything else is assigned to the most junior role that may decide it
    (with room, else up the chain) and waits until `timeout_minutes` from now. Linked objects
    must be the actor's own (see `resolve_links`); `session_id` is the agent's session string
    or HOL's id of the session."""
    policy = current_policy()
    assessment = assess(action, policy.rules)
    level = policy.level(assessment.risk_level)
    canon = canonical_action(action)
    now = now or timezone.now()
    with transaction.atomic():
        links = resolve_links(actor=actor, task_id=task_id, work_order_id=work_order_id, session_id=session_id)
        existing = _open_request_for(
            actor=actor, links=links, thread_id=thread_id or "", hash_=action_hash(action), now=now
        )
        if existing is not None:
            return existing, False
        request = ApprovalRequest(
            workflow_id=workflow_id or "",
            thread_id=thread_id or "",
            checkpoint_id=checkpoint_id or "",
            **links,
            requested_by=actor,
            agent_name=agent_name or actor.get_username(),
            action_type=canon["action_type"],
            resource_type=canon["resource_type"],
            operation=canon["operation"],
            environment=canon["environment"],
            action_details=canon["details"],
            action_impact=action_impact or "",
            action_hash=action_hash(action),
            risk_level=assessment.risk_level,
            risk_score=assessment.risk_score,
            risk_factors=assessment.risk_factors,
            security_context=security_context or {},
            required_approvals=level.require_approval_count,
            require_justification=level.require_justification,
            created_at=now,
            expires_at=now + timedelta(minutes=level.timeout_minutes),
        )
        task_pk = request.task_id or (request.work_order.task_id if request.work_order else None)
        details = {
            "risk_level": request.risk_level,
            "risk_score": request.risk_score,
            "action_type": request.action_type,
            "operation": request.operation,
            "environment": request.environment,
            "action_hash": request.action_hash,
        }
        if level.auto_approve:
            ensure_transition(request.status, Status.APPROVED, TRANSITIONS, what=WHAT)
            request.status = Status.APPROVED
            request.approver_role = SYSTEM_ROLE
            request.approval_justification = f"auto-approved: {request.risk_level} risk"
            request.decided_at = now
            request.consume_by = now + timedelta(minutes=level.timeout_minutes)
            request.save()
            audit_record(
                actor=actor, action=AuditAction.APPROVAL_REQUESTED, target=request, task_id=task_pk, details=details
            )
            audit_record(actor=SYSTEM, action=AuditAction.APPROVAL_AUTO_APPROVED, target=request, task_id=task_pk)
            message = f"{describe(request)} was approved automatically"
            notify(request, [actor], kind="approval.decided", message=message, policy=policy)
            publish_on_commit(request)
            return request, True

        roles = policy.roles_for_level(request.risk_level)
        if not roles:
            raise Conflict(f"no role in the policy may decide {request.risk_level} requests", code="no_eligible_role")
        steps = assign(request, roles[0], policy)
        request.save()
        grant(request, policy)
        audit_record(
            actor=actor,
            action=AuditAction.APPROVAL_REQUESTED,
            target=request,
            task_id=task_pk,
            details={**details, "assigned_role": request.assigned_role, "assigned_to": username(request.assigned_to)},
        )
        for from_role, to_role in steps:
            audit_record(
                actor=SYSTEM,
                action=AuditAction.APPROVAL_ESCALATED,
                target=request,
                task_id=task_pk,
                details={"from_role": from_role, "to_role": to_role, "reason": "no approver with room"},
            )
        notify(
            request,
            approvers_of(request),
            kind="approval.escalated" if steps else "approval.assigned",
            message=f"{describe(request)} needs your decision"
            + (f" (escalated: nobody in {steps[0][0]} had room)" if steps else ""),
            level="warning" if request.risk_level in ("high", "critical") else "info",
            policy=policy,
        )
    return request, True
