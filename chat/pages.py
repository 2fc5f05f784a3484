"""Answering an agent's question from the task page (a plain form: works without JavaScript)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from chat import services as chat_services
from chat.models import ChatMessage
from hol.errors import DomainError
from hol.pages import person_required


@require_POST
@person_required
def question_answer(request: HttpRequest, pk: Any) -> HttpResponse:
    text = (request.POST.get("message") or "").strip()
    try:
        parent_id = int(request.POST.get("parent_id", ""))
    except ValueError:
        parent_id = 0
    if not text or parent_id <= 0:
        messages.error(request, "Write an answer first.")
        return redirect("page-task", pk=pk)
    try:
        chat_services.chat_message_post(
            actor=request.user,
            task_id=pk,
            content=text,
            message_type=ChatMessage.MessageType.RESPONSE,
            event_type=ChatMessage.EventType.MESSAGE,
            parent_id=parent_id,
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect(f"/tasks/{pk}/#message-{parent_id}")
