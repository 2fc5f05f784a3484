"""Posting to a task's chat and event stream; watchers get each message once it is committed."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db import transaction

from audit.actions import AuditAction
from audit.services import audit_record
from chat.broadcast import message_broadcast
from chat.models import ChatMessage
from chat.selectors import task_for_stream
from hol.actors import is_agent, is_system, require_actor
from hol.errors import BadRequest, Conflict, NotFound, PermissionDenied
from notifications.services import notification_create
from tasks.models import Task

MAX_CONTENT_BYTES = 64 * 1024
MAX_DATA_BYTES = 256 * 1024


def chat_message_post(
    *,
    actor: Any,
    task_id: UUID,
    content: str = "",
    message_type: str = ChatMessage.MessageType.STATUS,
    event_type: str = ChatMessage.EventType.MESSAGE,
    stage: str = "",
    data: dict | None = None,
    session_id: str = "",
    parent_id: int | None = None,
) -> ChatMessage:
    """Append a message to a task's stream. The poster must be able to see the task (an agent only
    its own, a person only with a role; HOL itself, SYSTEM, always). Agents post as `worker`,
    people as `human`, HOL as `system`. Only a person answers a question (a response from an agent
    or HOL would pass for a human's answer): it must answer a request of the same task. An agent's
    question notifies the people it waits on; every message is broadcast after commit."""
    if "\x00" in content:
        raise BadRequest("message must not contain the NUL character", code="invalid")
    if len(content.encode()) > MAX_CONTENT_BYTES:
        raise BadRequest("message is larger than 64 KiB", code="too_large")
    if data and len(json.dumps(data).encode()) > MAX_DATA_BYTES:
        raise BadRequest("data is larger than 256 KiB", code="too_large")
    if is_system(require_actor(actor)):
        sender_type = ChatMessage.SenderType.SYSTEM
    else:
        sender_type = ChatMessage.SenderType.WORKER if is_agent(actor) else ChatMessage.SenderType.HUMAN
    if message_type == ChatMessage.MessageType.RESPONSE and sender_type != ChatMessage.SenderType.HUMAN:
        raise PermissionDenied("only a person answers a question", code="answers_are_human")
    if event_type == ChatMessage.EventType.UNAPPROVED_ACTION and sender_type != ChatMessage.SenderType.SYSTEM:
        # The red flag on the task page must mean HOL saw it, never that someone typed it.
        raise PermissionDenied("only HOL flags unapproved actions", code="reserved_event_type")
    with transaction.atomic():
        task = task_for_stream(actor=actor, task_id=task_id)
        parent = None
        if parent_id is not None:
            parent = ChatMessage.objects.filter(pk=parent_id, task_id=task_id).first()
            if parent is None:
                raise NotFound(f"message {parent_id} not found in this task")
            if (
                message_type == ChatMessage.MessageType.RESPONSE
                and parent.message_type != ChatMessage.MessageType.REQUEST
            ):
                raise Conflict("only a question can be answered", code="not_a_question")
        message = ChatMessage.objects.create(
            task_id=task_id,
            sender=None if is_system(actor) else actor,
            sender_type=sender_type,
            message_type=message_type,
            event_type=event_type,
            stage=stage,
            content=content,
            data=data or {},
            session_id=session_id,
            parent=parent,
        )
        audit_record(
            actor=actor,
            action=AuditAction.CHAT_MESSAGE_POSTED,
            target=message,
            task_id=task_id,
            details={"message_type": message_type, "event_type": event_type, "parent": parent_id},
        )
        _after_post(message, task)
    return message


def _question_recipients(task: Task) -> list[Any]:
    """Who hears of an agent's question: the task's assignee, else the people of the role the
    task names in its metadata (`role`)."""
    if task.assigned_to is not None:
        return [task.assigned_to]
    role = (task.metadata or {}).get("role") if isinstance(task.metadata, dict) else None
    if not role:
        return []
    return list(get_user_model().objects.filter(groups__name=str(role), is_active=True))


def _after_post(message: ChatMessage, task: Task) -> None:
    """Inside the posting transaction: tell the people a question waits on, and broadcast the
    message once it is committed (stored before it is shown, never shown if rolled back)."""
    if message.message_type == ChatMessage.MessageType.REQUEST and message.sender_type != ChatMessage.SenderType.HUMAN:
        for user in _question_recipients(task):
            notification_create(
                user=user,
                kind="question",
                message=f"{task.title}: {message.content[:200]}",
                link=f"/tasks/{task.pk}/#message-{message.pk}",
                level="warning",
                related=message,
            )
    transaction.on_commit(lambda: message_broadcast(message))
