"""`/ws/tasks/{task_id}/`: a task's chat and event stream.

Server → client: `{"type": "chat.message", "message": {...}}`, each message once. Connecting with
`?after=<id>` first replays everything stored after that id, so a reconnecting page loses nothing;
a client may also ask `{"type": "replay", "after": <id>}` at any time (after a gap it noticed).
Client → server: `{"type": "human_response", "parent_id": <question id>, "message": "..."}`,
posted through the chat service like any answer.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from chat import selectors
from chat import services as chat_services
from chat.broadcast import message_payload, task_group
from chat.models import ChatMessage
from hol.errors import DomainError
from hol.ws_auth import AuthenticatedConsumer

REPLAY_PAGE = 500
REPLAY_PAGES = 10


class TaskStreamConsumer(AuthenticatedConsumer):
    group: str | None = None
    stored_before_accept = 0

    async def before_accept(self) -> None:
        # The socket joins the task's group only after it is accepted: without `?after=`, what is
        # stored from this moment on is replayed after joining, so nothing falls in between.
        task_id = self.scope["url_route"]["kwargs"]["task_id"]
        self.stored_before_accept = await database_sync_to_async(selectors.last_message_id)(task_id=task_id)

    async def admit(self) -> None:
        task_id = self.scope["url_route"]["kwargs"]["task_id"]
        self.task = await database_sync_to_async(selectors.task_for_stream)(actor=self.user, task_id=task_id)
        self.group = task_group(self.task.pk)
        # Join before replaying: a message committed in between arrives on the group and is
        # dropped below if the replay already sent it.
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.sent: set[int] = set()
        raw_after = parse_qs(self.scope.get("query_string", b"").decode()).get("after", [""])[0]
        await self.replay(int(raw_after) if raw_after.isdigit() else self.stored_before_accept)

    async def replay(self, after: int) -> None:
        """Send what was stored after `after`, at most REPLAY_PAGES pages; a client that is further
        behind asks again from the last id it got."""
        for _ in range(REPLAY_PAGES):
            page = await database_sync_to_async(self._page)(after)
            for payload in page:
                await self._forward(payload)
            if len(page) < REPLAY_PAGE:
                return
            after = page[-1]["id"]

    def _page(self, after: int) -> list[dict[str, Any]]:
        messages = selectors.messages_after(task_id=self.task.pk, after_id=after, limit=REPLAY_PAGE)
        return [message_payload(message) for message in messages.select_related("sender")]

    async def _forward(self, payload: dict[str, Any]) -> None:
        if payload["id"] in self.sent:
            return
        self.sent.add(payload["id"])
        await self.send_json({"type": "chat.message", "message": payload})

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self._forward(event["message"])

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            await self._error("invalid", "expected a JSON object")
            return
        kind = content.get("type")
        if kind == "replay":
            after = content.get("after")
            await self.replay(after if isinstance(after, int) and after >= 0 else 0)
        elif kind == "human_response":
            parent_id, text = content.get("parent_id"), content.get("message")
            if not isinstance(parent_id, int) or not isinstance(text, str) or not text.strip():
                await self._error("invalid", "human_response needs an integer parent_id and a message")
                return
            try:
                await database_sync_to_async(chat_services.chat_message_post)(
                    actor=self.user,
                    task_id=self.task.pk,
                    content=text,
                    message_type=ChatMessage.MessageType.RESPONSE,
                    event_type=ChatMessage.EventType.MESSAGE,
                    parent_id=parent_id,
                )
            except DomainError as exc:
                await self._error(exc.code, exc.message)
        else:
            await self._error("invalid", "unknown message type")

    async def _error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
