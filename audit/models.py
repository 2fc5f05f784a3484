from __future__ import annotations

from django.db import models
from django.db.models import Q


class AuditEntry(models.Model):
    """One recorded state change, and its link in the hash chain.

    Written by `audit.services.audit_record` inside the transaction of the change, with the chain
    fields empty ("pending"); `audit.services.audit_seal_pending` (the sequencer) then fills
    `seq`, `prev_hash`, `hash` and `canonical` exactly once ("sealed"). On PostgreSQL a trigger
    refuses every other UPDATE and every DELETE (migration 0002).
    """

    component = models.CharField(max_length=40)
    action = models.CharField(max_length=80)
    actor = models.CharField(max_length=150)
    actor_type = models.CharField(max_length=10)  # human | agent | system
    phase = models.CharField(max_length=40, blank=True, default="")
    target_type = models.CharField(max_length=60)
    target_id = models.CharField(max_length=64)
    task_id = models.UUIDField(null=True, blank=True)
    timestamp = models.DateTimeField()
    details = models.JSONField(default=dict, blank=True)
    # The chain: null / empty until the sequencer seals the entry.
    seq = models.BigIntegerField(null=True, blank=True, unique=True)
    prev_hash = models.CharField(max_length=64, blank=True, default="")
    hash = models.CharField(max_length=64, blank=True, default="")
    # The exact text whose UTF-8 bytes were hashed (audit.chain.canonical_bytes).
    canonical = models.TextField(blank=True, default="")

    class Meta:
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["target_type", "target_id"]),
            models.Index(fields=["task_id"]),
            models.Index(fields=["action"]),
            models.Index(fields=["timestamp"]),
            # The sequencer's work list: small, since entries are sealed right after commit.
            models.Index(fields=["id"], condition=Q(seq__isnull=True), name="audit_entry_pending"),
        ]
        constraints = [
            # A second guard against a fork: two sealed entries can never name the same predecessor.
            models.UniqueConstraint(
                fields=["prev_hash"], condition=Q(seq__isnull=False), name="audit_entry_one_successor"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type}:{self.target_id} by {self.actor}"

    @property
    def is_sealed(self) -> bool:
        return self.seq is not None


class AuditCheckpoint(models.Model):
    """The chain head (seq + hash) at a moment, signed with HMAC-SHA256 under
    settings.HOL_AUDIT_CHECKPOINT_KEY, so that removing entries from the tail is detectable."""

    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    signature = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq", "-id"]
        get_latest_by = "seq"
        # The latest checkpoint (the audit page): Beat adds one a minute, so the table grows.
        indexes = [models.Index(fields=["-seq", "-id"], name="audit_checkpoint_latest")]

    def __str__(self) -> str:
        return f"checkpoint at seq {self.seq}"


class AuditVerification(models.Model):
    """One run of the chain verification (Beat's, or one a person asked for), kept so the audit
    page shows the latest result without walking the whole chain on every view."""

    started_at = models.DateTimeField()
    duration_seconds = models.FloatField()
    run_by = models.CharField(max_length=150)  # a username, or "system" for Beat
    ok = models.BooleanField()
    count = models.BigIntegerField()
    head_seq = models.BigIntegerField()
    head_hash = models.CharField(max_length=64)
    first_bad_seq = models.BigIntegerField(null=True, blank=True)
    problem = models.TextField(blank=True, default="")
    pending = models.IntegerField(default=0)

    class Meta:
        ordering = ["-started_at", "-id"]
        get_latest_by = ["started_at", "id"]

    def __str__(self) -> str:
        state = "intact" if self.ok else f"broken at seq {self.first_bad_seq}"
        return f"verification {self.started_at:%Y-%m-%d %H:%M}: {state}"
