from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Priority(models.TextChoices):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


# Work orders store a rank so the claim query orders by an indexed integer (higher first).
PRIORITY_RANK = {Priority.HIGH: 30, Priority.NORMAL: 20, Priority.LOW: 10}
RANK_PRIORITY = {rank: name for name, rank in PRIORITY_RANK.items()}


class Task(models.Model):
    class Type(models.TextChoices):
        FEATURE = "feature"
        BUGFIX = "bugfix"
        TEST = "test"
        DOCS = "docs"

    class Operation(models.TextChoices):
        CODE_CHANGE = "code_change"
        DOCS = "docs"
        ANALYSIS = "analysis"
        OPS = "ops"

    class Status(models.TextChoices):
        # High or critical risk at intake: waits for its approval request before it is queued.
        APPROVAL_PENDING = "approval_pending"
        QUEUED = "queued"
        IN_PROGRESS = "in_progress"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINAL = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=200)
    objective = models.TextField()
    description = models.TextField(blank=True, default="")
    task_type = models.CharField(max_length=10, choices=Type.choices, default=Type.FEATURE)
    operation = models.CharField(max_length=20, choices=Operation.choices, default=Operation.CODE_CHANGE)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.JSONField(default=dict, blank=True)  # {kind: human|agent|system, id, label}
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_tasks"
    )
    target_repo = models.CharField(max_length=500)
    target_ref = models.CharField(max_length=200, default="main")
    target_path = models.CharField(max_length=500, blank=True, default="")
    time_budget_seconds = models.PositiveIntegerField(default=900)
    allow_network = models.BooleanField(default=False)
    allow_secrets = models.BooleanField(default=False)
    inputs = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    # The approval request intake opened for a high or critical task; only its decision moves
    # the task out of approval_pending (other requests linked to the task never do).
    intake_approval = models.ForeignKey(
        "approvals.ApprovalRequest", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Where HOL POSTs the task's outcome once it is final (empty: nowhere). Checked at intake and
    # again at send time (tasks/callbacks.py).
    callback_url = models.CharField(max_length=2048, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="task_idempotency_per_submitter",
            )
        ]
        indexes = [
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["target_repo"]),
            # The task list, newest first, a page at a time.
            models.Index(fields=["-created_at"], name="task_newest_first"),
        ]

    def __str__(self) -> str:
        return self.title


class Worker(models.Model):
    class Status(models.TextChoices):
        IDLE = "idle"
        BUSY = "busy"
        WAITING = "waiting"
        ERROR = "error"
        OFFLINE = "offline"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=120)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="workers")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.IDLE)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["status", "last_heartbeat_at"])]

    def __str__(self) -> str:
        return self.name


class AgentSession(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        IDLE = "idle"
        TERMINATED = "terminated"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session_id = models.CharField(max_length=200, unique=True)
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="sessions")
    task = models.ForeignKey(Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="sessions")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    last_activity_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    terminated_at = models.DateTimeField(null=True, blank=True)
    termination_reason = models.CharField(max_length=1024, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "last_activity_at"])]

    def __str__(self) -> str:
        return self.session_id


class WorkOrder(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        CLAIMED = "claimed"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    HELD = (Status.CLAIMED, Status.RUNNING)
    ACTIVE = (Status.QUEUED, Status.CLAIMED, Status.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="work_orders")
    worker = models.ForeignKey(Worker, null=True, blank=True, on_delete=models.SET_NULL, related_name="work_orders")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    priority = models.PositiveSmallIntegerField(default=PRIORITY_RANK[Priority.NORMAL])
    enqueued_at = models.DateTimeField()
    available_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    retry_count = models.PositiveIntegerField(default=0)
    max_retries = models.PositiveIntegerField(default=3)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-enqueued_at"]
        indexes = [
            # The claim query: queued work, highest priority first, then oldest.
            models.Index(fields=["-priority", "enqueued_at"], condition=Q(status="queued"), name="workorder_claimable"),
            models.Index(fields=["status", "lease_expires_at"], name="workorder_leases"),
            models.Index(fields=["worker", "status"], name="workorder_holder"),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} #{self.retry_count} ({self.status})"

    @property
    def priority_name(self) -> str:
        return RANK_PRIORITY.get(self.priority, str(self.priority))


class Execution(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="executions")
    work_order = models.ForeignKey(WorkOrder, on_delete=models.CASCADE, related_name="executions")
    worker = models.ForeignKey(Worker, null=True, blank=True, on_delete=models.SET_NULL, related_name="executions")
    # Not `session`: `session_id` is the agent's own session string (AgentSession.session_id).
    agent_session = models.ForeignKey(
        AgentSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="executions"
    )
    attempt = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    output = models.TextField(blank=True, default="")
    trace_path = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["-started_at"]
        constraints = [models.UniqueConstraint(fields=["work_order", "attempt"], name="execution_attempt_once")]

    def __str__(self) -> str:
        return f"{self.work_order_id} attempt {self.attempt}"
