from __future__ import annotations

from django.db import models


class AuditEntry(models.Model):
    """One recorded state change. Written only by `audit.services.audit_record`."""

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

    class Meta:
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["target_type", "target_id"]),
            models.Index(fields=["task_id"]),
            models.Index(fields=["action"]),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type}:{self.target_id} by {self.actor}"
