from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from notifications.models import Notification


def notifications_for(*, user: Any, unread_only: bool = False) -> QuerySet[Notification]:
    """A user's own notifications, newest first."""
    qs = Notification.objects.filter(user=user)
    return qs.filter(is_read=False) if unread_only else qs


def unread_count(*, user: Any) -> int:
    return Notification.objects.filter(user=user, is_read=False).count()
