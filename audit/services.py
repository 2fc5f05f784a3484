from __future__ import annotations

from typing import Any

from django.db import models, transaction
from django.utils import timezone

from audit.models import AuditEntry
from hol.actors import actor_label, actor_type


def audit_record(
    *,
    actor: Any,
    action: str,
    target: models.Model,
    details: dict | None = None,
    task_id: Any = None,
    phase: str = "",
) -> AuditEntry:
    """Record one state change. Must run inside the transaction that makes the change.

    `actor` is a user, or None for HOL itself (Beat, the system). `action` is
    `<entity>.<verb>` (e.g. `work_order.claimed`); the component is the target's app.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must be called inside the transaction of the change it records")
    return AuditEntry.objects.create(
        component=target._meta.app_label,
        action=action,
        actor=actor_label(actor),
        actor_type=actor_type(actor),
        phase=phase,
        target_type=target._meta.model_name,
        target_id=str(target.pk),
        task_id=task_id,
        timestamp=timezone.now(),
        details=details or {},
    )
