"""`/ws/notifications/` (a person's unread count and new notifications) and `/ws/dashboard/`
(worker, queue and session figures, and recent activity)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async

from hol.changes import DASHBOARD_GROUP
from hol.dashboard import dashboard_snapshot
from hol.errors import PermissionDenied
from hol.run_scope import run_scope
from hol.ws_auth import AuthenticatedConsumer
from notifications.broadcast import user_group
from notifications.selectors import unread_count
from tasks.selectors import sees_every_task

# Services push a change (hol.changes); this slow re-read only covers what has no audited commit
# (a session's last activity) and a push lost to a Redis outage. Sent only when they changed.
DASHBOARD_REFRESH_SECONDS = 30.0


class NotificationConsumer(AuthenticatedConsumer):
    group: str | None = None

    async def admit(self) -> None:
        if run_scope(self.user) is not None:
            raise PermissionDenied("a run's token has no notifications")
        self.group = user_group(self.user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        unread = await database_sync_to_async(unread_count)(user=self.user)
        await self.send_json({"type": "notification", "unread": unread})

    async def notification_changed(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "notification", **{k: v for k, v in event.items() if k != "type"}})

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)


class DashboardConsumer(AuthenticatedConsumer):
    refresher: asyncio.Task | None = None
    joined = False

    async def admit(self) -> None:
        # The dashboard shows every task's activity: only those who may read every task see it.
        if run_scope(self.user) is not None or not await database_sync_to_async(sees_every_task)(self.user):
            raise PermissionDenied("the dashboard is for people with a role")
        await self.channel_layer.group_add(DASHBOARD_GROUP, self.channel_name)
        self.joined = True
        self.last: dict[str, Any] | None = None
        await self.refresh()
        self.refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def refresh(self) -> None:
        snapshot = await database_sync_to_async(dashboard_snapshot)(actor=self.user)
        if snapshot != self.last:
            self.last = snapshot
            await self.send_json({"type": "dashboard.snapshot", "snapshot": snapshot})

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(DASHBOARD_REFRESH_SECONDS)
            await self.refresh()

    async def dashboard_activity(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "dashboard.activity", "activity": event["activity"]})

    async def dashboard_changed(self, event: dict[str, Any]) -> None:
        """A service committed a change (hol.changes): read the figures again."""
        await self.refresh()

    async def disconnect(self, code: int) -> None:
        if self.refresher is not None:
            self.refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.refresher
        if self.joined:
            await self.channel_layer.group_discard(DASHBOARD_GROUP, self.channel_name)
