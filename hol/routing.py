"""WebSocket routes; the consumers arrive with the chat and notification pages."""

from __future__ import annotations

websocket_urlpatterns: list = []
