"""What agents report they actually ran (Claude Code's PostToolUse hook), checked against the
approvals they used.

A risky action (one whose level the rules do not auto-approve) must have been covered by an
approval of the same agent, for the same action (`action_hash`), in the same scope (work order,
else agent session or thread), consumed shortly before, and not already matched to another run:
one approval covers one run. A risky action without one went around the gate: it is flagged —
an audit entry, a red event on the task's stream, a notification to the people responsible.
Actions that need no approval are neither kept nor flagged, so the hook adds no noise."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from approvals.models import ApprovalRequest, ExecutedAction
from approvals.policy import Policy, current_policy
from approvals.risk import Assessment, action_hash, assess, canonical_action
from approvals.services.notify import role_members
from approvals.services.permissions import resolve_links
from audit.actions import AuditAction
from audit.services import audit_record
from hol.actors import SYSTEM, is_agent
from hol.errors import BadRequest, Conflict, PermissionDenied
from hol.fetch import get_locked
from hol.run_scope import ensure_task_in_scope
from notifications.services import notification_create

User = AbstractBaseUser
# An approval is consumed just before its action runs, and a tool call runs minutes at most; an
# older unmatched approval (its run never reported) must not cover a later run of the same action.
MATCH_WINDOW = timedelta(hours=1)
# What of the command or path the flag shows: enough to recognise it, bounded for the stream.
SHOWN_CHARS = 4000


def _own_session(actor: User, session_key: str) -> Any:
    """The agent session `session_key` names, when HOL knows one: it must be of the actor's own
    worker (403 otherwise, so an agent cannot report into, or flag, another agent's session).
    None when no session has that id (a Claude Code session HOL only knows as a thread)."""
    from tasks.models import AgentSession

    if not session_key:
        return None
    session = AgentSession.objects.select_related("worker", "task").filter(session_id=session_key).first()
    if session is not None and session.worker.user_id != actor.pk:
        raise PermissionDenied("you may only report from a session of your own worker", code="not_your_session")
    if session is not None:
        ensure_task_in_scope(actor, session.task_id)
    return session


def _covering_approval(
    *, actor: User, hash_: str, work_order: Any, session: Any, thread_id: str, now: datetime
) -> ApprovalRequest | None:
    candidates = ApprovalRequest.objects.filter(
        requested_by=actor,
        action_hash=hash_,
        status=ApprovalRequest.Status.APPROVED,
        consumed_at__isnull=False,
        consumed_at__gte=now - MATCH_WINDOW,
        execution__isnull=True,
    )
    if work_order is not None:
        scope = Q(work_order=work_order)
    else:
        scope = Q(work_order__isnull=True) & (
            Q(thread_id=thread_id) | Q(agent_session=session) if session else Q(thread_id=thread_id)
        )
    return candidates.filter(scope).order_by("consumed_at").first()


def shown(executed: ExecutedAction) -> str:
    """The command or file an executed action names, as the flag shows it."""
    details = executed.action_details if isinstance(executed.action_details, dict) else {}
    value = details.get("command") or details.get("path") or ""
    text = str(value) if value else f"{executed.action_type} {executed.operation}".strip()
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def _responsible(task: Any, level: str, policy: Policy) -> list[User]:
    """Who hears of a flag: the task's assignee, else the person who submitted it, else the people
    of the role its metadata names; failing all (or without a task), the people of the most junior
    role that could have approved the action, so no flag goes unheard."""
    if task is not None:
        if task.assigned_to is not None and task.assigned_to.is_active:
            return [task.assigned_to]
        if task.created_by is not None and task.created_by.is_active and not is_agent(task.created_by):
            return [task.created_by]
        role = task.metadata.get("role") if isinstance(task.metadata, dict) else None
        people = list(get_user_model().objects.filter(groups__name=str(role), is_active=True)) if role else []
        if people:
            return people
    roles = policy.roles_for_level(level)
    return role_members(roles[0]) if roles else []


def _flag(executed: ExecutedAction, *, actor: User, assessment: Assessment, policy: Policy) -> None:
    """Audit, stream and notify an action that ran without an approval covering it."""
    from chat.models import ChatMessage
    from chat.services import chat_message_post

    task = executed.task
    what = shown(executed)
    agent = actor.get_username()
    audit_record(
        actor=actor,
        action=AuditAction.APPROVAL_BYPASSED,
        target=executed,
        task_id=task.pk if task else None,
        details={
            "tool_name": executed.tool_name,
            "tool_use_id": executed.tool_use_id,
            "action_type": executed.action_type,
            "operation": executed.operation,
            "environment": executed.environment,
            "risk_level": executed.risk_level,
            "action_hash": executed.action_hash,
            "outcome": executed.outcome,
            "thread_id": executed.thread_id,
            "what": what[:500],
        },
    )
    summary = f"{agent} ran {executed.tool_name or executed.action_type} without approval ({executed.risk_level} risk)"
    link = ""
    if task is not None:
        message = chat_message_post(
            actor=SYSTEM,
            task_id=task.pk,
            content=summary,
            event_type=ChatMessage.EventType.UNAPPROVED_ACTION,
            data={
                "what": what,
                "tool_name": executed.tool_name,
                "tool_use_id": executed.tool_use_id,
                "action_type": executed.action_type,
                "operation": executed.operation,
                "risk_level": executed.risk_level,
                "risk_factors": [factor["name"] for factor in assessment.risk_factors],
                "outcome": executed.outcome,
                "agent": agent,
                "execution_id": str(executed.pk),
            },
            session_id=executed.thread_id,
        )
        link = f"/tasks/{task.pk}/#message-{message.pk}"
    where = f" on task {task.title}" if task is not None else ""
    for user in _responsible(task, executed.risk_level, policy):
        notification_create(
            user=user,
            kind="approval.bypassed",
            message=f"{summary}{where}: {what[:200]}",
            link=link,
            level="error",
            related=executed,
        )


def approval_execution_report(
    *,
    actor: User,
    tool_use_id: str,
    action: dict[str, Any],
    tool_name: str = "",
    outcome: str = ExecutedAction.Outcome.SUCCEEDED,
    thread_id: str = "",
    task_id: Any = None,
    work_order_id: Any = None,
    session_id: str = "",
    now: datetime | None = None,
) -> tuple[ExecutedAction | None, bool, Assessment]:
    """An agent reports an action it ran. Returns the kept record (None for an action the rules
    let run without approval), whether this report created it, and the assessment. Only agent
    accounts report, only for their own task, work order and session (403). Reporting the same
    tool use again returns the first record and flags nothing more; the same tool use reported
    with a different action is a 409."""
    if not is_agent(actor):
        raise PermissionDenied("only agent accounts report the actions they ran", code="agents_only")
    tool_use_id = (tool_use_id or "").strip()
    if not tool_use_id:
        raise BadRequest("tool_use_id is required", code="invalid")
    if outcome not in ExecutedAction.Outcome.values:
        raise BadRequest("outcome must be succeeded or failed", code="invalid")
    policy = current_policy()
    assessment = assess(action, policy.rules)
    canon = canonical_action(action)
    hash_ = action_hash(action)
    now = now or timezone.now()
    with transaction.atomic():
        links = resolve_links(actor=actor, task_id=task_id, work_order_id=work_order_id, session_id=None)
        session = _own_session(actor, session_id or thread_id)
        # One agent's reports queue here: a tool use is recorded once, an approval covers one run.
        get_locked(type(actor).objects, actor.pk, what="user")
        existing = ExecutedAction.objects.filter(reported_by=actor, tool_use_id=tool_use_id).first()
        if existing is not None:
            if existing.action_hash != hash_:
                raise Conflict("this tool use was already reported with another action", code="report_mismatch")
            return existing, False, assessment
        if policy.level(assessment.risk_level).auto_approve:
            return None, False, assessment
        work_order = links["work_order"]
        task = links["task"] or (work_order.task if work_order else None) or (session.task if session else None)
        approval = _covering_approval(
            actor=actor, hash_=hash_, work_order=work_order, session=session, thread_id=thread_id, now=now
        )
        executed = ExecutedAction.objects.create(
            reported_by=actor,
            tool_use_id=tool_use_id,
            tool_name=tool_name,
            thread_id=thread_id,
            task=task,
            work_order=work_order,
            agent_session=session,
            action_type=canon["action_type"],
            resource_type=canon["resource_type"],
            operation=canon["operation"],
            environment=canon["environment"],
            action_details=canon["details"],
            action_hash=hash_,
            risk_level=assessment.risk_level,
            outcome=outcome,
            approval=approval,
            flagged=approval is None,
            reported_at=now,
        )
        if approval is not None:
            audit_record(
                actor=actor,
                action=AuditAction.APPROVAL_EXECUTED,
                target=approval,
                task_id=task.pk if task else None,
                details={"tool_use_id": tool_use_id, "execution": str(executed.pk), "outcome": outcome},
            )
        else:
            _flag(executed, actor=actor, assessment=assessment, policy=policy)
    return executed, True, assessment
