from __future__ import annotations

from uuid import UUID

from django.db.models import QuerySet

from chat.models import ChatMessage


def messages_after(*, task_id: UUID, after_id: int = 0, limit: int = 500) -> QuerySet[ChatMessage]:
    """A task's stream from just after `after_id`, oldest first: what a reconnecting client missed."""
    return ChatMessage.objects.filter(task_id=task_id, id__gt=after_id).order_by("id")[:limit]


def reply_to(*, question_id: int) -> ChatMessage | None:
    """The first human answer to a question, if any."""
    return (
        ChatMessage.objects.filter(parent_id=question_id, message_type=ChatMessage.MessageType.RESPONSE)
        .order_by("id")
        .first()
    )
