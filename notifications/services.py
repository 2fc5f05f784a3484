"""Creating notifications and marking them read; every one is audited."""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction

from audit.actions import AuditAction
from audit.services import audit_record
from hol.actors import SYSTEM
from hol.fetch import get_locked
from notifications.broadcast import notifications_changed
from notifications.models import Notification


def notification_create(
    *, user: Any, kind: str, message: str, link: str = "", level: str = "info", related: models.Model | None = None
) -> Notification:
    """Tell `user` something. HOL itself is the actor; the entry is audited with the change."""
    with transaction.atomic():
        notification = Notification.objects.create(
            user=user,
            kind=kind,
            message=message,
            link=link,
            level=level,
            related_type=ContentType.objects.get_for_model(related) if related is not None else None,
            related_id=str(related.pk) if related is not None else "",
        )
        audit_record(
            actor=SYSTEM,
            action=AuditAction.NOTIFICATION_CREATED,
            target=notification,
            details={"user": user.get_username(), "kind": kind},
        )
        transaction.on_commit(lambda: notifications_changed(user.pk, notification))
    return notification


def notification_mark_read(*, actor: Any, notification_id: int) -> Notification:
    """A user marks one of their own notifications read (others' are not found, not forbidden,
    so their existence does not leak)."""
    with transaction.atomic():
        notification = get_locked(Notification.objects.filter(user=actor), notification_id, what="notification")
        if not notification.is_read:
            notification.is_read = True
            notification.save(update_fields=["is_read"])
            audit_record(actor=actor, action=AuditAction.NOTIFICATION_READ, target=notification)
            transaction.on_commit(lambda: notifications_changed(actor.pk))
    return notification
