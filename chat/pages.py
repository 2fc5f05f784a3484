"""Answering an agent's question from the task page (a plain form: works without JavaScript). A
plan an agent asks about gets Approve plan / Reject plan buttons: the answer is an ordinary human
response to the plan's message, carrying `data.decision`."""

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

PLAN_DECISIONS = {"approve": "Plan approved", "reject": "Plan rejected"}


@require_POST
@person_required
def question_answer(request: HttpRequest, pk: Any) -> HttpResponse:
    text = (request.POST.get("message") or "").strip()
    decision = request.POST.get("decision") or ""
    try:
        parent_id = int(request.POST.get("parent_id", ""))
    except ValueError:
        parent_id = 0
    if parent_id <= 0 or (decision and decision not in PLAN_DECISIONS):
        messages.error(request, "That answer names no question.")
        return redirect("page-task", pk=pk)
    if decision == "reject" and not text:
        messages.error(request, "Say why the plan is rejected.")
        return redirect(f"/tasks/{pk}/#message-{parent_id}")
    if not text and not decision:
        messages.error(request, "Write an answer first.")
        return redirect("page-task", pk=pk)
    data = {}
    if decision:
        text = f"{PLAN_DECISIONS[decision]}: {text}" if text else PLAN_DECISIONS[decision]
        data = {"decision": decision}
    try:
        chat_services.chat_message_post(
            actor=request.user,
            task_id=pk,
            content=text,
            message_type=ChatMessage.MessageType.RESPONSE,
            event_type=ChatMessage.EventType.MESSAGE,
            data=data,
            parent_id=parent_id,
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect(f"/tasks/{pk}/#message-{parent_id}")
