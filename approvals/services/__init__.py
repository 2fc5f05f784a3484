"""Every state change of approval requests, shared by the API, the admin, the
management command and Beat, one module per story:

- `requests`: open a request (assess, check links, auto-approve or assign);
- `transitions`: the status table; decide, cancel, consume, expire (on read and by Beat), warn;
- `permissions`: who may decide a request, and what a request may link to;
- `routing`: assignment, escalation, and the object permissions of who may decide;
- `notify`: in-app notifications, email and webhook (via Celery), waking waiting agents;
- `executions`: what agents report they ran, matched to the approvals they used, or flagged.
"""

from approvals.services.executions import approval_execution_report
from approvals.services.notify import channel_name, publish_decided, slack_escape, unsealed_body
from approvals.services.permissions import DECIDE_PERMISSION, ensure_may_decide, ensure_open, resolve_links
from approvals.services.requests import approval_request_ask, approval_request_create, risk_assess
from approvals.services.routing import approval_escalate
from approvals.services.transitions import (
    SYSTEM_ROLE,
    TRANSITIONS,
    approval_cancel,
    approval_consume,
    approval_decide,
    approval_expire_if_overdue,
    approvals_expire_overdue,
    approvals_warn_expiring,
)

__all__ = [
    "DECIDE_PERMISSION",
    "SYSTEM_ROLE",
    "TRANSITIONS",
    "approval_cancel",
    "approval_consume",
    "approval_decide",
    "approval_escalate",
    "approval_execution_report",
    "approval_expire_if_overdue",
    "approval_request_ask",
    "approval_request_create",
    "approvals_expire_overdue",
    "approvals_warn_expiring",
    "channel_name",
    "ensure_may_decide",
    "ensure_open",
    "publish_decided",
    "resolve_links",
    "risk_assess",
    "slack_escape",
    "unsealed_body",
]
