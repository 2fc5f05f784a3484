"""The long-poll read `GET /api/v1/approvals/{id}?wait=N`: an async view that holds neither a
thread, a database connection nor a Redis connection of its own while it waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from approvals import selectors
from approvals import services as approval_services
from approvals.models import ApprovalRequest
from approvals.serializers import ApprovalRequestSerializer
from approvals.services import channel_name
from hol.errors import DomainError
from hol.longpoll import (
    POLL_SECONDS_WITHOUT_REDIS,
    answer_when_done,
    authenticate,
    error_response,
    extend_lease,
    limited,
    method_not_allowed,
    release_connection,
    release_request_thread,
    wait_seconds,
)
from hol.pubsub import Watch, shared_subscriber


@dataclass
class _Seen:
    """What one read of the request tells the waiting loop."""

    body: dict
    expires_at: datetime | None  # while pending: when it will read as expired
    lease_worker_id: Any  # the caller's worker holding the linked work order, whose lease the wait extends


def _serialize(actor: Any, pk: str) -> _Seen:
    from tasks.models import WorkOrder

    approval = selectors.approval_get(actor=actor, request_id=pk)
    if approval.is_overdue(timezone.now()) and approval_services.approval_expire_if_overdue(request_id=approval.pk):
        approval = selectors.approval_get(actor=actor, request_id=pk)
    pending = approval.status == ApprovalRequest.Status.PENDING
    worker_id = None
    if pending and approval.work_order_id:
        worker_id = (
            WorkOrder.objects.filter(pk=approval.work_order_id, status__in=WorkOrder.HELD, worker__user_id=actor.pk)
            .values_list("worker_id", flat=True)
            .first()
        )
    # A plain dict: the serializer's ReturnDict would keep the serializer and its fields alive
    # for as long as the wait lasts.
    body = dict(ApprovalRequestSerializer(approval).data)
    return _Seen(body, approval.expires_at if pending else None, worker_id)


def _read(actor: Any, pk: str) -> _Seen:
    try:
        return _serialize(actor, pk)
    finally:
        release_connection()


def _authenticate_and_read(request: HttpRequest, pk: str) -> tuple[Any, _Seen]:
    try:
        actor = authenticate(request)
        return actor, _serialize(actor, pk)
    finally:
        release_connection()


async def approval_detail(request: HttpRequest, pk: str) -> HttpResponse:
    """Read a request; with `wait=N`, wait while it is pending until it is decided or N seconds
    (capped by HOL_APPROVAL_WAIT_MAX_SECONDS) pass. Waiters share the process's one Redis
    subscription: the row is read once at the start, each read on a connection that is closed
    right after; the decision's wake-up message carries the decided request, sealed, so the
    waiter answers without reading again. Without Redis (down or hung) the wait re-reads the row
    every few seconds instead, so the decision still arrives. A request that reaches its deadline
    during the wait is read again, and so answers `expired`. When the request names a work order
    the caller's worker holds, the wait heartbeats that worker every
    HOL_APPROVAL_WAIT_HEARTBEAT_SECONDS (default 10), so the lease outlives the wait.

    Once the first read finds it pending, the answer is a 200 whose body is made when the wait
    ends (hol.longpoll.answer_when_done): a read that fails meanwhile (the request left the
    caller's view, the database went away) ends the wait on what was last seen."""
    if request.method != "GET":
        return method_not_allowed(request)
    try:
        wait = wait_seconds(request.GET.get("wait"))
        if wait <= 0:
            _, seen = await limited(_authenticate_and_read, request, pk)
            return JsonResponse(seen.body, encoder=DjangoJSONEncoder)
        subscriber = shared_subscriber()
        await subscriber.ready(timeout=min(wait, 1.0))
        # Subscribe before the first read, so a decision made in between still wakes us.
        watch = await subscriber.watch(channel_name(pk))
        try:
            actor, seen = await limited(_authenticate_and_read, request, pk)
        except BaseException:
            watch.end()
            raise
    except DomainError as exc:
        return error_response(exc)
    if seen.body["status"] != ApprovalRequest.Status.PENDING:
        watch.end()
        return JsonResponse(seen.body, encoder=DjangoJSONEncoder)
    return await answer_when_done(request, watch, _reads(watch, actor, pk, seen, wait), f"approval {pk}")


async def _reads(watch: Watch, actor: Any, pk: str, seen: _Seen, wait: float) -> AsyncIterator[dict | bytes]:
    """What each read of the waited request sees, until it is decided or the wait ends; the last
    is `approval_detail`'s answer."""
    yield seen.body
    heartbeat_every = float(getattr(settings, "HOL_APPROVAL_WAIT_HEARTBEAT_SECONDS", 10))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    next_heartbeat = loop.time()
    decided = watch.wakeup
    while seen.body["status"] == ApprovalRequest.Status.PENDING:
        now = loop.time()
        if now >= deadline:
            return
        if seen.lease_worker_id is not None and now >= next_heartbeat:
            if not await limited(extend_lease, actor, seen.lease_worker_id):
                seen.lease_worker_id = None
            next_heartbeat = now + heartbeat_every
        # Without Redis nothing will wake us: poll the database instead.
        polling = not watch.subscriber.healthy
        wake_at = deadline
        if polling:
            wake_at = min(wake_at, now + POLL_SECONDS_WITHOUT_REDIS)
        if seen.expires_at is not None:
            wake_at = min(wake_at, now + max(0.0, (seen.expires_at - timezone.now()).total_seconds()) + 0.01)
        if seen.lease_worker_id is not None:
            wake_at = min(wake_at, next_heartbeat)
        release_request_thread()  # no idle thread of its own while it waits
        try:
            await asyncio.wait_for(decided.wait(), timeout=max(0.0, wake_at - now))
            woken = True
        except TimeoutError:
            woken = False
        message = decided.message if woken else None
        decided.clear()
        # The decision usually comes sealed in the message: answered without a read.
        if (body := approval_services.unsealed_body(seen.body["id"], message)) is not None:
            yield body.encode()
            return
        overdue = seen.expires_at is not None and seen.expires_at <= timezone.now()
        if woken or polling or overdue:
            seen = await limited(_read, actor, pk)
            yield seen.body
