"""Opening an approval request: assess the action's risk, check what it links to, and either
approve it at once (low risk with auto_approve; HOL itself approves) or assign it to the most
junior role that may decide it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
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
from hol.transitions import ensure_transition

User = AbstractBaseUser
Status = ApprovalRequest.Status


def risk_assess(*, action: dict[str, Any]) -> Assessment:
    """Assess an action against the rules file as it is now."""
    return assess(action, current_policy().rules)


def approval_request_create(
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
) -> ApprovalRequest:
    """Assess the action and open a request. Low risk with auto_approve is created already
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
            return request

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
    return request
