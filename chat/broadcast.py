"""Getting a stored chat message to the people and agents watching: the task's Channels group
(pages and agents on `/ws/tasks/{id}/`), the dashboard's activity feed, and a Redis pub/sub
message per answered question for agents long-polling its reply. Called after commit only, so
nothing is ever shown that a rollback then removes."""

from __future__ import annotations

import logging
from typing import Any

import redis

from chat.models import ChatMessage
from hol.changes import DASHBOARD_GROUP
from hol.layer import group_send as _group_send
from hol.pubsub import redis_client

log = logging.getLogger(__name__)


def task_group(task_id: Any) -> str:
    # Group names allow only ASCII letters, digits, hyphens, periods and underscores.
    return f"hol.task.{task_id}"


def reply_channel(question_id: int) -> str:
    return f"hol:chat-reply:{question_id}"


def message_payload(message: ChatMessage) -> dict[str, Any]:
    """The one shape a message has on the API and on every socket."""
    return {
        "id": message.pk,
        "task_id": str(message.task_id),
        "sender": message.sender.get_username() if message.sender_id else "system",
        "sender_type": message.sender_type,
        "message_type": message.message_type,
        "event_type": message.event_type,
        "type": message.event_type,
        "stage": message.stage,
        "content": message.content,
        "data": message.data,
        "session_id": message.session_id,
        "parent_message_id": message.parent_id,
        "timestamp": message.created_at.isoformat(),
    }


def message_broadcast(message: ChatMessage) -> None:
    payload = message_payload(message)
    _group_send(task_group(message.task_id), {"type": "chat.message", "message": payload})
    _group_send(
        DASHBOARD_GROUP,
        {
            "type": "dashboard.activity",
            "activity": {
                "kind": "chat",
                "task_id": payload["task_id"],
                "task_title": message.task.title,
                "event_type": message.event_type,
                "message_type": message.message_type,
                "sender": payload["sender"],
                "content": message.content[:200],
                "timestamp": payload["timestamp"],
            },
        },
    )
    if message.message_type == ChatMessage.MessageType.RESPONSE and message.parent_id:
        try:
            redis_client().publish(reply_channel(message.parent_id), str(message.pk))
        except redis.RedisError:
            # Waiting agents fall back to reading the database; a lost wake-up costs a few seconds.
            log.warning("could not publish the answer to question %s", message.parent_id, exc_info=True)
