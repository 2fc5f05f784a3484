from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db.models import QuerySet

from approvals.policy import current_policy
from chat.models import ChatMessage
from hol.actors import is_agent, is_system
from hol.errors import NotFound, PermissionDenied
from hol.run_scope import ensure_task_in_scope
from tasks.models import Task, WorkOrder


def messages_after(*, task_id: UUID, after_id: int = 0, limit: int = 500) -> QuerySet[ChatMessage]:
    """A task's stream from just after `after_id`, oldest first: what a reconnecting client missed."""
    return ChatMessage.objects.filter(task_id=task_id, id__gt=after_id).order_by("id")[:limit]


def last_message_id(*, task_id: Any) -> int:
    """The id of the task's newest message (0 when none, or when the id is malformed: nothing to
    skip)."""
    try:
        pk = UUID(str(task_id))
    except ValueError:
        return 0
    last = ChatMessage.objects.filter(task_id=pk).order_by("-id").values_list("id", flat=True).first()
    return last or 0


def reply_to(*, question_id: int) -> ChatMessage | None:
    """The first human answer to a question, if any."""
    return (
        ChatMessage.objects.filter(
            parent_id=question_id,
            message_type=ChatMessage.MessageType.RESPONSE,
            sender_type=ChatMessage.SenderType.HUMAN,
        )
        .order_by("id")
        .first()
    )


def task_for_stream(*, actor: Any, task_id: Any) -> Task:
    """The task whose stream `actor` may read and post to: an agent account only the tasks it
    created or one of its workers holds or held; a person only with a role (or superuser).
    Unknown and malformed ids are NotFound; a task the actor may not see is PermissionDenied."""
    try:
        pk = UUID(str(task_id))
    except ValueError:
        raise NotFound(f"task {task_id} not found") from None
    task = Task.objects.select_related("assigned_to").filter(pk=pk).first()
    if task is None:
        raise NotFound(f"task {task_id} not found")
    if is_system(actor):
        return task
    if actor is None or not actor.is_authenticated or not actor.is_active:
        raise PermissionDenied("sign in to see this task")
    if is_agent(actor):
        ensure_task_in_scope(actor, task.pk)
        if task.created_by_id == actor.pk or WorkOrder.objects.filter(task=task, worker__user=actor).exists():
            return task
        raise PermissionDenied("agents see only their own tasks")
    if actor.is_superuser or actor.groups.filter(name__in=list(current_policy().roles)).exists():
        return task
    raise PermissionDenied("a role is needed to see tasks")


def questions_waiting(*, limit: int = 20) -> QuerySet[ChatMessage]:
    """Agents' questions nobody has answered yet, oldest first."""
    return (
        ChatMessage.objects.filter(message_type=ChatMessage.MessageType.REQUEST)
        .exclude(replies__message_type=ChatMessage.MessageType.RESPONSE)
        .select_related("task")
        .order_by("id")[:limit]
    )
