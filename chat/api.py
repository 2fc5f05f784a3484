"""The chat API: agents post log lines, events and questions to a task's stream and
read it back; a question's answer is long-polled at `GET /api/v1/chat/messages/{id}/reply?wait=N`,
an async view that holds neither a thread nor a database connection while it waits. Also the
one-time WebSocket ticket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import selectors
from chat import services as chat_services
from chat.broadcast import message_payload, reply_channel
from chat.models import ChatMessage
from chat.serializers import ChatMessageCreateSerializer, ChatMessageSerializer, WsTicketSerializer
from hol.api import validated
from hol.errors import BadRequest, DomainError, NotFound
from hol.longpoll import (
    POLL_SECONDS_WITHOUT_REDIS,
    answer_when_done,
    authenticate,
    error_response,
    extend_lease,
    heartbeat_seconds,
    limited,
    method_not_allowed,
    release_connection,
    release_request_thread,
    wait_seconds,
)
from hol.pubsub import Watch, shared_subscriber
from hol.ws_auth import TICKET_SECONDS, ticket_issue
from tasks.models import WorkOrder

MAX_PAGE = 500


class ChatMessagesView(APIView):
    """A task's chat and event stream: read (`?task=<id>&after=<message id>&limit=`) and post."""

    run_token_actions = ("get", "post")

    @extend_schema(
        parameters=[
            OpenApiParameter("task", str, required=True, description="the task's id"),
            OpenApiParameter("after", int, description="only messages with a larger id"),
            OpenApiParameter("limit", int, description=f"at most this many (≤ {MAX_PAGE})"),
        ],
        responses=ChatMessageSerializer(many=True),
    )
    def get(self, request):
        params = request.query_params
        if not params.get("task"):
            raise BadRequest("task is required", code="invalid")
        try:
            after = int(params.get("after") or 0)
            limit = min(max(int(params.get("limit") or MAX_PAGE), 1), MAX_PAGE)
        except ValueError:
            raise BadRequest("after and limit must be integers", code="invalid") from None
        task = selectors.task_for_stream(actor=request.user, task_id=params["task"])
        messages = selectors.messages_after(task_id=task.pk, after_id=after, limit=limit).select_related("sender")
        return Response([message_payload(message) for message in messages])

    @extend_schema(request=ChatMessageCreateSerializer, responses={201: ChatMessageSerializer})
    def post(self, request):
        data = validated(ChatMessageCreateSerializer, request.data)
        message = chat_services.chat_message_post(
            actor=request.user,
            task_id=data["task_id"],
            content=data["content"],
            message_type=data["message_type"],
            event_type=data["event_type"],
            stage=data["stage"],
            data=data["data"],
            session_id=data["session_id"],
            parent_id=data.get("parent_message_id"),
        )
        return Response(message_payload(message), status=status.HTTP_201_CREATED)


class WsTicketView(APIView):
    """Exchange the caller's credentials for a one-time WebSocket ticket (30 s, single use)."""

    run_token_actions = ("post",)

    @extend_schema(request=None, responses={201: WsTicketSerializer})
    def post(self, request):
        ticket = ticket_issue(user=request.user)
        return Response({"ticket": ticket, "expires_in": TICKET_SECONDS}, status=status.HTTP_201_CREATED)


# --- the long-poll read of a question's answer -----------------------------------------------------


def _reply_body(actor: Any, question_id: int) -> dict:
    question = ChatMessage.objects.filter(pk=question_id).first()
    if question is None:
        raise NotFound(f"message {question_id} not found")
    selectors.task_for_stream(actor=actor, task_id=question.task_id)
    if question.message_type != ChatMessage.MessageType.REQUEST:
        raise BadRequest("only a question (message_type request) has a reply", code="not_a_question")
    reply = selectors.reply_to(question_id=question_id)
    return {
        "question_id": question_id,
        "answered": reply is not None,
        "reply": message_payload(reply) if reply is not None else None,
    }


def _read(actor: Any, question_id: int) -> dict:
    try:
        return _reply_body(actor, question_id)
    finally:
        release_connection()


def _lease_worker(actor: Any, question_id: int) -> Any:
    """The asker's worker when it holds a work order of the question's task: its lease must
    outlive the wait for a person's answer."""
    task_id = ChatMessage.objects.filter(pk=question_id).values_list("task_id", flat=True).first()
    return (
        WorkOrder.objects.filter(task_id=task_id, status__in=WorkOrder.HELD, worker__user_id=actor.pk)
        .values_list("worker_id", flat=True)
        .first()
    )


def _authenticate_and_read(request: HttpRequest, question_id: int) -> tuple[Any, dict, Any]:
    try:
        actor = authenticate(request)
        body = _reply_body(actor, question_id)
        return actor, body, None if body["answered"] else _lease_worker(actor, question_id)
    finally:
        release_connection()


async def chat_message_reply(request: HttpRequest, pk: str) -> HttpResponse:
    """The first human answer to a question; with `wait=N`, wait up to N seconds (capped by
    HOL_APPROVAL_WAIT_MAX_SECONDS) for it. Waiters share the process's one Redis subscription;
    without Redis they re-read the database every few seconds, so they still get their answer.
    An asker whose worker holds a work order of the task is heartbeaten while it waits, so its
    lease outlives the wait for a person. Once the first read finds no answer, the answer is a
    200 whose body is made when the wait ends (hol.longpoll.answer_when_done): a read that fails
    meanwhile ends the wait on what was last seen."""
    if request.method != "GET":
        return method_not_allowed(request)
    question_id = int(pk)
    try:
        wait = wait_seconds(request.GET.get("wait"))
        if wait <= 0:
            _, body, _ = await limited(_authenticate_and_read, request, question_id)
            return JsonResponse(body, encoder=DjangoJSONEncoder)
        subscriber = shared_subscriber()
        await subscriber.ready(timeout=min(wait, 1.0))
        # Subscribe before the first read, so an answer given in between still wakes us.
        watch = await subscriber.watch(reply_channel(question_id))
        try:
            actor, body, lease_worker = await limited(_authenticate_and_read, request, question_id)
        except BaseException:
            watch.end()
            raise
    except DomainError as exc:
        return error_response(exc)
    if body["answered"]:
        watch.end()
        return JsonResponse(body, encoder=DjangoJSONEncoder)
    reads = _reads(watch, actor, question_id, body, lease_worker, wait)
    return await answer_when_done(request, watch, reads, f"question {question_id}")


async def _reads(
    watch: Watch, actor: Any, question_id: int, body: dict, lease_worker: Any, wait: float
) -> AsyncIterator[dict]:
    """What each read of the waited question sees, until it is answered or the wait ends; the
    last is `chat_message_reply`'s answer."""
    yield body
    answered = watch.wakeup
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    next_heartbeat = loop.time()
    while not body["answered"]:
        now = loop.time()
        if now >= deadline:
            return
        if lease_worker is not None and now >= next_heartbeat:
            if not await limited(extend_lease, actor, lease_worker):
                lease_worker = None
            next_heartbeat = now + heartbeat_seconds()
        wake_at = deadline
        if not watch.subscriber.healthy:  # nothing will wake us: read the database instead
            wake_at = min(wake_at, now + POLL_SECONDS_WITHOUT_REDIS)
        if lease_worker is not None:
            wake_at = min(wake_at, next_heartbeat)
        release_request_thread()  # no idle thread of its own while it waits
        try:
            await asyncio.wait_for(answered.wait(), timeout=max(0.0, wake_at - now))
        except TimeoutError:
            if loop.time() >= deadline:
                return
            if watch.subscriber.healthy and lease_worker is not None:
                continue  # woken only to heartbeat; nothing new to read
        answered.clear()
        body = await limited(_read, actor, question_id)
        yield body
