from __future__ import annotations

from rest_framework import serializers

from approvals.serializers import ActionSerializer
from tasks.callbacks import MAX_URL_LENGTH
from tasks.intake import apply_aliases
from tasks.models import AgentSession, Execution, Priority, Task, Worker, WorkOrder
from tasks.services.sessions import MAX_REASON_BYTES


class TargetSerializer(serializers.Serializer):
    repo = serializers.CharField(source="target_repo")
    ref = serializers.CharField(source="target_ref")
    path = serializers.CharField(source="target_path", allow_blank=True)


class ConstraintsSerializer(serializers.Serializer):
    time_budget_seconds = serializers.IntegerField()
    allow_network = serializers.BooleanField()
    allow_secrets = serializers.BooleanField()


class TaskSerializer(serializers.ModelSerializer):
    target = TargetSerializer(source="*", read_only=True)
    constraints = ConstraintsSerializer(source="*", read_only=True)
    assigned_to = serializers.SlugRelatedField(slug_field="username", read_only=True)
    approval_request = serializers.PrimaryKeyRelatedField(source="intake_approval", read_only=True)

    class Meta:
        model = Task
        fields = [
            "id", "title", "objective", "description", "task_type", "operation", "priority", "status",
            "requested_by", "assigned_to", "target", "constraints", "inputs", "metadata", "tags",
            "idempotency_key", "approval_request", "callback_url", "created_at", "updated_at", "completed_at",
        ]  # fmt: skip
        read_only_fields = fields


class RequestedBySerializer(serializers.Serializer):
    """Accepted for compatibility; `kind` and `id` are always the signed-in account's, and only
    `label` is kept from what the client sends."""

    kind = serializers.ChoiceField(choices=["human", "agent", "system"], required=False)
    id = serializers.CharField(max_length=200, required=False, allow_blank=True)
    label = serializers.CharField(max_length=200, required=False, allow_blank=True)


class TaskCreateSerializer(serializers.Serializer):
    """Intake input. Aliases (`type`, `payload`, `target.repository`, `repository_url`,
    `branch_name`) are accepted; the policy gate itself runs in the service (422 codes)."""

    title = serializers.CharField(max_length=200, required=False, allow_blank=True)
    objective = serializers.CharField(trim_whitespace=True)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    task_type = serializers.ChoiceField(choices=Task.Type.choices, required=False)
    operation = serializers.CharField(required=False, help_text="code_change | docs | analysis | ops")
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    requested_by = RequestedBySerializer(required=False)
    assigned_to = serializers.CharField(
        max_length=150,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="username of an active person with a role",
    )
    target = serializers.DictField(help_text="{repo, ref (main), path ('')}")
    constraints = serializers.DictField(required=False, help_text="{time_budget_seconds, allow_network, allow_secrets}")
    inputs = serializers.JSONField(required=False)
    metadata = serializers.JSONField(required=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=50)
    idempotency_key = serializers.CharField(max_length=200, required=False, allow_blank=True)
    enqueue = serializers.BooleanField(required=False, default=False, help_text="also put it on the queue")
    action = ActionSerializer(
        required=False,
        help_text="the riskiest action the task will take; high or critical risk makes the task wait "
        "(approval_pending) for an approval request",
    )
    callback_url = serializers.CharField(
        max_length=MAX_URL_LENGTH,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="https URL HOL POSTs the signed outcome to once the task is final",
    )

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["expected a JSON object"]})
        return super().to_internal_value(apply_aliases(data))


class TaskUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    status = serializers.ChoiceField(choices=[Task.Status.CANCELLED], required=False)


class WorkerSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Worker
        fields = ["id", "name", "user", "status", "last_heartbeat_at", "created_at", "updated_at"]
        read_only_fields = fields


class WorkerRegisterSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120)


class WorkerHeartbeatSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=[Worker.Status.IDLE, Worker.Status.BUSY, Worker.Status.WAITING, Worker.Status.ERROR], required=False
    )


class WorkOrderSerializer(serializers.ModelSerializer):
    priority = serializers.CharField(source="priority_name", read_only=True)
    task = TaskSerializer(read_only=True)

    class Meta:
        model = WorkOrder
        fields = [
            "id", "task", "worker", "status", "priority", "enqueued_at", "available_at", "claimed_at",
            "completed_at", "lease_expires_at", "retry_count", "max_retries", "last_error",
        ]  # fmt: skip
        read_only_fields = fields


class WorkOrderBriefSerializer(WorkOrderSerializer):
    """A work order without its task (for answers where the caller already has the task)."""

    class Meta(WorkOrderSerializer.Meta):
        fields = [name for name in WorkOrderSerializer.Meta.fields if name != "task"]
        read_only_fields = fields


class EnqueueSerializer(serializers.Serializer):
    task_id = serializers.UUIDField()
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    max_retries = serializers.IntegerField(min_value=0, max_value=100, required=False)


class ClaimSerializer(serializers.Serializer):
    worker_id = serializers.UUIDField()
    wait = serializers.FloatField(
        required=False,
        default=0,
        min_value=0,
        help_text="seconds to wait for work when the queue is empty (capped by HOL_APPROVAL_WAIT_MAX_SECONDS)",
    )


class CompleteSerializer(serializers.Serializer):
    work_order_id = serializers.UUIDField()
    output = serializers.CharField(required=False, allow_blank=True, default="", max_length=256 * 1024)


class FailSerializer(serializers.Serializer):
    work_order_id = serializers.UUIDField()
    error = serializers.CharField(max_length=64 * 1024)
    retryable = serializers.BooleanField(required=False, default=True)


class QueueStatusSerializer(serializers.Serializer):
    depth = serializers.DictField(child=serializers.IntegerField())
    queued = serializers.IntegerField()
    claimed = serializers.IntegerField()
    running = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()
    workers = serializers.DictField(child=serializers.IntegerField())


class SessionSerializer(serializers.ModelSerializer):
    class Meta:
        model = AgentSession
        fields = [
            "id", "session_id", "worker", "task", "status", "last_activity_at", "created_at", "terminated_at",
            "termination_reason",
        ]  # fmt: skip
        read_only_fields = fields


class SessionCreateSerializer(serializers.Serializer):
    session_id = serializers.CharField(max_length=200)
    worker_id = serializers.UUIDField()
    task_id = serializers.UUIDField(required=False, allow_null=True)


class SessionTerminateSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=MAX_REASON_BYTES, required=False, default="terminated by agent", help_text="at most 1 KiB of text"
    )


class ExecutionSerializer(serializers.ModelSerializer):
    session = serializers.PrimaryKeyRelatedField(source="agent_session", read_only=True)

    class Meta:
        model = Execution
        fields = [
            "id", "task", "work_order", "worker", "session", "attempt", "status", "started_at", "completed_at",
            "exit_code", "output", "trace_path",
        ]  # fmt: skip
        read_only_fields = fields
