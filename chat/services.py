"""Posting to a task's chat and event stream."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from django.db import transaction

from audit.actions import AuditAction
from audit.services import audit_record
from chat.models import ChatMessage
from hol.actors import is_agent, is_system, require_actor
from hol.errors import BadRequest, Conflict, NotFound
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
    """Append a message to a task's stream. Agents post as `worker`, people as `human`, HOL as
    `system`. A response must answer a request of the same task."""
    if len(content.encode()) > MAX_CONTENT_BYTES:
        raise BadRequest("message is larger than 64 KiB", code="too_large")
    if data and len(json.dumps(data).encode()) > MAX_DATA_BYTES:
        raise BadRequest("data is larger than 256 KiB", code="too_large")
    if is_system(require_actor(actor)):
        sender_type = ChatMessage.SenderType.SYSTEM
    else:
        sender_type = ChatMessage.SenderType.WORKER if is_agent(actor) else ChatMessage.SenderType.HUMAN
    with transaction.atomic():
        if not Task.objects.filter(pk=task_id).exists():
            raise NotFound(f"task {task_id} not found")
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
    return message
