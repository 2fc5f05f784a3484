"""What every page needs: the signed-in person's unread notification count for the header badge."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from notifications.selectors import unread_count


def nav_context(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"unread_notifications": unread_count(user=user)}
