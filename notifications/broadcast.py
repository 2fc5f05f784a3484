"""Pushing a user's notifications and unread count to their open pages (`/ws/notifications/`),
after the change commits."""

from __future__ import annotations

from typing import Any

from hol import layer
from notifications.models import Notification


def user_group(user_id: Any) -> str:
    return f"hol.user.{user_id}"


def notification_payload(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.pk,
        "kind": notification.kind,
        "message": notification.message,
        "link": notification.link,
        "level": notification.level,
        "is_read": notification.is_read,
        "created_at": notification.created_at.isoformat(),
    }


def notifications_changed(user_id: Any, notification: Notification | None = None) -> None:
    """Send the user's fresh unread count (and the new notification, if one was created)."""
    unread = Notification.objects.filter(user_id=user_id, is_read=False).count()
    event: dict[str, Any] = {"type": "notification.changed", "unread": unread}
    if notification is not None:
        event["notification"] = notification_payload(notification)
    layer.group_send(user_group(user_id), event)
