"""Approval requests an agent makes before a risky action, and the decisions people make on them.
Written only by approvals.services."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class RiskLevel(models.TextChoices):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class ApprovalRequest(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"
        EXPIRED = "expired"
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workflow_id = models.CharField(max_length=200, blank=True, default="")
    thread_id = models.CharField(max_length=200, blank=True, default="")
    checkpoint_id = models.CharField(max_length=200, blank=True, default="")
    task = models.ForeignKey(
        "tasks.Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="approval_requests"
    )
    work_order = models.ForeignKey(
        "tasks.WorkOrder", null=True, blank=True, on_delete=models.SET_NULL, related_name="approval_requests"
    )
    # The agent's session (AgentSession); its own `session_id` string is a field of that row.
    agent_session = models.ForeignKey(
        "tasks.AgentSession", null=True, blank=True, on_delete=models.SET_NULL, related_name="approval_requests"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approval_requests"
    )
    agent_name = models.CharField(max_length=200, blank=True, default="")
    action_type = models.CharField(max_length=100)
    resource_type = models.CharField(max_length=100, blank=True, default="")
    operation = models.CharField(max_length=100, blank=True, default="")
    environment = models.CharField(max_length=100, blank=True, default="")
    action_details = models.JSONField(default=dict, blank=True)
    action_impact = models.TextField(blank=True, default="")
    action_hash = models.CharField(max_length=64)
    risk_level = models.CharField(max_length=10, choices=RiskLevel.choices)
    risk_score = models.PositiveSmallIntegerField()
    risk_factors = models.JSONField(default=list, blank=True)
    security_context = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    required_approvals = models.PositiveSmallIntegerField(default=1)
    require_justification = models.BooleanField(default=False)
    assigned_role = models.CharField(max_length=60, blank=True, default="")
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_approvals"
    )
    escalation_level = models.PositiveSmallIntegerField(default=0)
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )  # the final decider; empty with approver_role "system" for auto-approved requests
    approver_role = models.CharField(max_length=60, blank=True, default="")
    approval_justification = models.TextField(blank=True, default="")
    rejection_reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()  # the decision deadline: pending after it reads as expired
    consume_by = models.DateTimeField(null=True, blank=True)  # approved: the end of the window to use it
    consumed_at = models.DateTimeField(null=True, blank=True)
    expiry_warned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("decide_approvalrequest", "Can decide this approval request")]
        indexes = [
            models.Index(fields=["status", "expires_at"]),
            models.Index(fields=["assigned_to", "status"]),
            models.Index(fields=["requested_by", "-created_at"]),
            models.Index(fields=["risk_level", "status"]),
        ]

    def __str__(self) -> str:
        return f"{self.action_type}/{self.operation or '-'} ({self.risk_level}, {self.status})"

    @property
    def time_left(self) -> timedelta | None:
        if self.status != self.Status.PENDING:
            return None
        return max(self.expires_at - timezone.now(), timedelta(0))

    def is_overdue(self, now: datetime) -> bool:
        """Pending past its decision deadline: it reads, and soon is, expired."""
        return self.status == self.Status.PENDING and self.expires_at <= now

    @property
    def approvals_count(self) -> int:
        return sum(1 for decision in self.decisions.all() if decision.decision == ApprovalDecision.Decision.APPROVE)


class ApprovalDecision(models.Model):
    class Decision(models.TextChoices):
        APPROVE = "approve"
        REJECT = "reject"

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="decisions")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    role = models.CharField(max_length=60)
    decision = models.CharField(max_length=10, choices=Decision.choices)
    justification = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["request", "approver"], name="one_decision_per_approver")]

    def __str__(self) -> str:
        return f"{self.approver} {self.decision}d {self.request_id}"


class ExecutedAction(models.Model):
    """A risky action an agent reports it actually ran (Claude Code's PostToolUse hook), matched
    to the consumed approval that covered it, or flagged because none did. Actions the rules let
    run without approval are not kept."""

    class Outcome(models.TextChoices):
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    reported_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    tool_use_id = models.CharField(max_length=200)
    tool_name = models.CharField(max_length=100, blank=True, default="")
    thread_id = models.CharField(max_length=200, blank=True, default="")
    task = models.ForeignKey(
        "tasks.Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="executed_actions"
    )
    work_order = models.ForeignKey(
        "tasks.WorkOrder", null=True, blank=True, on_delete=models.SET_NULL, related_name="executed_actions"
    )
    agent_session = models.ForeignKey(
        "tasks.AgentSession", null=True, blank=True, on_delete=models.SET_NULL, related_name="executed_actions"
    )
    action_type = models.CharField(max_length=100)
    resource_type = models.CharField(max_length=100, blank=True, default="")
    operation = models.CharField(max_length=100, blank=True, default="")
    environment = models.CharField(max_length=100, blank=True, default="")
    action_details = models.JSONField(default=dict, blank=True)
    action_hash = models.CharField(max_length=64)
    risk_level = models.CharField(max_length=10, choices=RiskLevel.choices)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.SUCCEEDED)
    # One approval covers one execution: a second run of the same action needs its own approval.
    approval = models.OneToOneField(
        ApprovalRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="execution"
    )
    flagged = models.BooleanField(default=False)  # ran without an approval that covered it
    reported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-reported_at"]
        constraints = [models.UniqueConstraint(fields=["reported_by", "tool_use_id"], name="one_report_per_tool_use")]
        indexes = [models.Index(fields=["task", "flagged"])]

    def __str__(self) -> str:
        return f"{self.tool_name or self.action_type} {self.tool_use_id} ({'flagged' if self.flagged else 'approved'})"
