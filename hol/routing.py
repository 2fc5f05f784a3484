"""WebSocket routes."""

from __future__ import annotations

from django.urls import re_path

from chat.consumers import TaskStreamConsumer
from notifications.consumers import DashboardConsumer, NotificationConsumer

websocket_urlpatterns: list = [
    re_path(r"^ws/tasks/(?P<task_id>[0-9a-fA-F-]{32,36})/$", TaskStreamConsumer.as_asgi()),
    re_path(r"^ws/notifications/$", NotificationConsumer.as_asgi()),
    re_path(r"^ws/dashboard/$", DashboardConsumer.as_asgi()),
]
