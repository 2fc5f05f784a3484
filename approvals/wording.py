"""How an approval request reads to a person: time left in words, progress, how it ended."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.html import format_html

from approvals.models import ApprovalRequest


def duration_in_words(delta: timedelta) -> str:
    """`1 h 59 min` rather than `1:59:34.827639`; whole minutes, rounded down."""
    minutes = int(delta.total_seconds()) // 60
    if minutes < 1:
        return "under 1 min"
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


def time_left_in_words(request: ApprovalRequest, now: datetime | None = None) -> str:
    if request.status != ApprovalRequest.Status.PENDING:
        return "—"
    left = request.expires_at - (now or timezone.now())
    return "overdue" if left <= timedelta(0) else duration_in_words(left)


def progress_in_words(request: ApprovalRequest) -> str:
    noun = "approval" if request.required_approvals == 1 else "approvals"
    return f"{request.approvals_count} of {request.required_approvals} {noun}"


def pretty_json(value) -> str:
    if not value:
        return "—"
    return format_html('<pre class="hol-json">{}</pre>', json.dumps(value, indent=2, sort_keys=True, default=str))


def deadline_in_words(request: ApprovalRequest) -> str:
    left = time_left_in_words(request)
    return left if left == "overdue" else f"{left} left"


def outcome_in_words(request: ApprovalRequest) -> str:
    """How a request that is no longer pending ended, for the top of its page."""
    by = f" by {request.approver.get_username()} ({request.approver_role})" if request.approver_id else ""
    if request.status == ApprovalRequest.Status.APPROVED:
        return f"Approved{by or ' automatically'}."
    if request.status == ApprovalRequest.Status.REJECTED:
        return f"Rejected{by}: {request.rejection_reason}" if request.rejection_reason else f"Rejected{by}."
    if request.status == ApprovalRequest.Status.EXPIRED:
        return "Expired without a decision."
    return "Withdrawn by its requester."


def outcome_message(decision: str, request: ApprovalRequest) -> str:
    if decision == "escalate":
        who = request.assigned_to.get_username() if request.assigned_to_id else f"any {request.assigned_role}"
        return f"Escalated to {request.assigned_role} ({who})."
    if request.status == ApprovalRequest.Status.PENDING:
        return f"Your approval is recorded: {progress_in_words(request)}; another approver is needed."
    return f"The request is {request.status}."
