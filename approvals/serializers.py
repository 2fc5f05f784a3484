from __future__ import annotations

import json
from typing import Any

from rest_framework import serializers

from approvals.models import ApprovalDecision, ApprovalRequest, ExecutedAction, RiskLevel

MAX_JSON_BYTES = 256 * 1024  # JSON detail fields ≤ 256 KiB


def _small_json(value: Any) -> Any:
    if len(json.dumps(value, default=str).encode()) > MAX_JSON_BYTES:
        raise serializers.ValidationError("must be at most 256 KiB of JSON")
    return value


class RiskFactorSerializer(serializers.Serializer):
    name = serializers.CharField()
    why = serializers.CharField()
    level = serializers.ChoiceField(choices=RiskLevel.choices)


class AssessmentSerializer(serializers.Serializer):
    risk_level = serializers.ChoiceField(choices=RiskLevel.choices)
    risk_score = serializers.IntegerField(min_value=0, max_value=100)
    risk_factors = RiskFactorSerializer(many=True)
    auto_approve = serializers.BooleanField()
    required_approvals = serializers.IntegerField()
    require_justification = serializers.BooleanField()
    require_role = serializers.CharField(allow_null=True)
    timeout_minutes = serializers.IntegerField()


class ActionSerializer(serializers.Serializer):
    """The action an approval covers; its canonical form is what `action_hash` is taken over."""

    action_type = serializers.CharField(max_length=100)
    resource_type = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    operation = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    environment = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    details = serializers.DictField(required=False, default=dict)

    def validate_details(self, value: dict) -> dict:
        return _small_json(value)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and "details" not in data and "action_details" in data:
            data = {**data, "details": data["action_details"]}
        return super().to_internal_value(data)


class ApprovalCreateSerializer(ActionSerializer):
    workflow_id = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    thread_id = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    checkpoint_id = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    task_id = serializers.UUIDField(
        required=False, allow_null=True, help_text="A task you submitted or hold a work order of."
    )
    work_order_id = serializers.UUIDField(
        required=False,
        allow_null=True,
        help_text="A work order your worker holds; using the approval later needs it still held.",
    )
    session_id = serializers.CharField(
        max_length=200,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text=(
            "The agent session this request comes from: the agent's own session id (the `session_id` "
            "it registered with POST /api/v1/sessions, e.g. a Claude Code session id) or HOL's id of "
            "that session. It must be a session of your own worker."
        ),
    )
    agent_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    action_impact = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="")
    security_context = serializers.DictField(required=False, default=dict)

    def validate_security_context(self, value: dict) -> dict:
        return _small_json(value)


class DecisionInputSerializer(serializers.Serializer):
    justification = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="")
    reason = serializers.CharField(
        max_length=10_000,
        required=False,
        allow_blank=True,
        default="",
        help_text="For a rejection: why (required; `justification` is accepted too).",
    )

    def validate(self, data: dict) -> dict:
        return {"justification": data["justification"] or data["reason"]}


class CancelInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="")


class DecisionSerializer(serializers.ModelSerializer):
    approver = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ApprovalDecision
        fields = ["approver", "role", "decision", "justification", "created_at"]
        read_only_fields = fields


class ApprovalRequestSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    assigned_to = serializers.SlugRelatedField(slug_field="username", read_only=True)
    approver = serializers.SlugRelatedField(slug_field="username", read_only=True)
    risk_factors = RiskFactorSerializer(many=True, read_only=True)
    approvals_count = serializers.IntegerField(read_only=True)
    decisions = DecisionSerializer(many=True, read_only=True)

    class Meta:
        model = ApprovalRequest
        fields = [
            "id", "status", "risk_level", "risk_score", "risk_factors", "required_approvals", "approvals_count",
            "require_justification", "expires_at", "action_type", "resource_type", "operation", "environment",
            "action_details", "action_impact", "action_hash", "security_context", "workflow_id", "thread_id",
            "checkpoint_id", "task", "work_order", "agent_session", "requested_by", "agent_name", "assigned_role",
            "assigned_to", "escalation_level", "approver", "approver_role", "approval_justification",
            "rejection_reason", "decisions", "created_at", "updated_at", "decided_at", "consume_by", "consumed_at",
        ]  # fmt: skip
        read_only_fields = fields


class ExecutedReportSerializer(ActionSerializer):
    """An action an agent ran, as its PostToolUse hook reports it: the same action the PreToolUse
    hook asked approval for, plus the tool call's id and how it ended (never its output)."""

    tool_use_id = serializers.CharField(
        max_length=200, help_text="Claude Code's id of the tool call; reports are idempotent per id."
    )
    tool_name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    outcome = serializers.ChoiceField(choices=ExecutedAction.Outcome.choices, default=ExecutedAction.Outcome.SUCCEEDED)
    thread_id = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text="The agent's session id (Claude Code's).",
    )
    task_id = serializers.UUIDField(required=False, allow_null=True)
    work_order_id = serializers.UUIDField(required=False, allow_null=True)


class ExecutedActionSerializer(serializers.Serializer):
    """The answer to a report: whether the action needed approval, and whether it was flagged."""

    id = serializers.UUIDField(allow_null=True)
    tool_use_id = serializers.CharField()
    risky = serializers.BooleanField(help_text="the rules say this action needs approval")
    flagged = serializers.BooleanField(help_text="it ran without an approval that covered it")
    risk_level = serializers.ChoiceField(choices=RiskLevel.choices)
    action_hash = serializers.CharField()
    approval = serializers.UUIDField(allow_null=True, help_text="the consumed approval that covered it")
    task = serializers.UUIDField(allow_null=True)
    reported_at = serializers.DateTimeField(allow_null=True)
