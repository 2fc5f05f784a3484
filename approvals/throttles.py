"""How fast one account may ask for approvals and report executed actions. The counts live in the
cache (Redis), which every web process shares, so a limit holds across processes."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.throttling import UserRateThrottle


class ApprovalRequestThrottle(UserRateThrottle):
    """Approval requests per account and minute (HOL_APPROVAL_RATE_PER_MINUTE, default 30): an
    agent in a loop cannot flood the approvers' inboxes. Over the rate: 429 with Retry-After."""

    scope = "approval_request"

    def get_rate(self) -> str:
        return f"{int(getattr(settings, 'HOL_APPROVAL_RATE_PER_MINUTE', 30))}/min"


class ExecutedReportThrottle(UserRateThrottle):
    """Reports of executed actions per account and minute: room for an agent's busiest minute of
    tool calls, but a loop cannot flood the people a flag notifies. Over it: 429."""

    scope = "approval_executed"
    rate = "120/min"

    def get_rate(self) -> str:
        return self.rate


def count_approval_request(request: Any, *, view: Any) -> None:
    """Count one approval request that `view` opens on the side (a task submitted with a high-risk
    action) against the caller's approval rate, the same count POST /api/v1/approvals keeps: 429
    with Retry-After beyond it, so a second door does not double the rate."""
    throttle = ApprovalRequestThrottle()
    if not throttle.allow_request(request, view):
        view.throttled(request, throttle.wait())
