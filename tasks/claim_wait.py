"""`POST /api/v1/queue/claim`: the claim as an async view, so a claim with `wait` can long-poll
an empty queue without holding a thread or a database connection (ahead of the router's claim)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from datetime import datetime
from typing import Any

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from hol.api import StorableJSONParser, validated
from hol.errors import BadRequest, Conflict, DomainError, PermissionDenied, exception_handler
from hol.longpoll import (
    POLL_SECONDS_WITHOUT_REDIS,
    authenticate,
    error_response,
    extend_lease,
    heartbeat_seconds,
    limited,
    method_not_allowed,
    release_connection,
    release_request_thread,
)
from hol.pubsub import redis_client, shared_subscriber
from hol.run_scope import OUT_OF_SCOPE, run_scope
from tasks import selectors
from tasks import services as task_services
from tasks.serializers import (
    ClaimSerializer,
    WorkOrderSerializer,
)
from tasks.services.dispatch import queue_channel

# --- the long-poll claim --------------------------------------------------------------------------


MAX_PEEK_BYTES = 4096


def _refused_by_csrf(request: HttpRequest) -> bool:
    """A signed-in person's POST needs the CSRF token, as DRF's session authentication asks."""
    return CsrfViewMiddleware(lambda _: None).process_view(request, None, (), {}) is not None


def _authenticate_and_claim(request: HttpRequest, waiting: bool) -> tuple[Any, dict, dict | None]:
    try:
        # A bearer token authenticates by itself (or fails, 401); anything else falls back to the
        # session cookie, which a POST may only use with the CSRF token.
        uses_jwt = request.headers.get("Authorization", "").split(" ", 1)[0] in jwt_settings.AUTH_HEADER_TYPES
        actor = authenticate(request)
        if not uses_jwt and _refused_by_csrf(request):
            raise PermissionDenied("CSRF Failed: CSRF token missing or incorrect.", code="csrf_failed")
        if run_scope(actor) is not None:
            raise PermissionDenied("a run's token may not call this", code=OUT_OF_SCOPE)
        data = validated(ClaimSerializer, _json_body(request))
        work_order = _claim(actor, data["worker_id"])
        data["wait"] = min(data["wait"], float(settings.HOL_APPROVAL_WAIT_MAX_SECONDS)) if waiting else 0.0
        if work_order is None and data["wait"] > 0:
            _start_waiting(data["worker_id"], data["wait"])
        return actor, data, work_order
    finally:
        release_connection()


def _waiter_key(worker_id: Any) -> str:
    return f"hol:claim-waiter:{worker_id}"


def _start_waiting(worker_id: Any, wait: float) -> None:
    """One waiting claim per worker at a time (409 for another): a worker runs one agent loop,
    and a thousand waits on one worker would only multiply its heartbeats and wake-ups. Without
    Redis the limit is not kept; the wait itself still works."""
    try:
        taken = redis_client().set(_waiter_key(worker_id), b"1", nx=True, ex=int(wait) + 10)
    except redis.RedisError:
        return
    if not taken:
        raise Conflict("this worker already waits for work in another claim", code="already_waiting")


def _stop_waiting(worker_id: Any) -> None:
    with contextlib.suppress(redis.RedisError):
        redis_client().delete(_waiter_key(worker_id))


def _claim(actor: Any, worker_id: Any) -> dict | None:
    """The claimed work order as the API shows it (the claim returns it with its task), rendered
    here, off the event loop: an assignee's name is one more read."""
    work_order = task_services.work_order_claim(actor=actor, worker_id=worker_id)
    return None if work_order is None else WorkOrderSerializer(work_order).data


def _claim_again(actor: Any, worker_id: Any) -> tuple[dict | None, datetime | None]:
    """Claim; when nothing is claimable, also say when the next backed-off work order will be."""
    try:
        work_order = _claim(actor, worker_id)
        if work_order is not None:
            return work_order, None
        return None, selectors.next_available_at(now=timezone.now())
    finally:
        release_connection()


@csrf_exempt
async def queue_claim(request: HttpRequest) -> JsonResponse | HttpResponse:
    """`POST /api/v1/queue/claim` with `wait`: when the queue is empty, wait up to `wait` seconds
    (capped by HOL_APPROVAL_WAIT_MAX_SECONDS) for work instead of answering 204 at once. Waiters
    hold no thread and no database connection: they share the process's Redis subscription and
    try again when work is queued or requeued, or when a backed-off work order becomes
    available; without Redis they try every few seconds. The wait heartbeats the worker."""
    if request.method != "POST":
        return method_not_allowed(request)
    release_request_thread()  # no idle thread of its own while it waits
    try:
        if not _asks_to_wait(request):
            _, _, work_order = await limited(_authenticate_and_claim, request, False)
            return _claim_response(work_order)
        # Subscribe before the first try, so work queued in between still wakes us.
        subscriber = shared_subscriber()
        await subscriber.ready(timeout=1.0)
        async with contextlib.AsyncExitStack() as stack:
            woken = await stack.enter_async_context(subscriber.wait_on(queue_channel()))
            actor, data, work_order = await limited(_authenticate_and_claim, request, True)
            if work_order is None and data["wait"] > 0:
                # Redis only, off the shared threads (a hung Redis must not hold them).
                stack.push_async_callback(sync_to_async(_stop_waiting, thread_sensitive=False), data["worker_id"])
            wait = data["wait"]
            next_at = await limited(_next_available, None) if work_order is None else None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait
            next_heartbeat = loop.time() + heartbeat_seconds()
            while work_order is None:
                now = loop.time()
                if now >= deadline:
                    break
                wake_at = min(deadline, next_heartbeat)
                if not subscriber.healthy:
                    wake_at = min(wake_at, now + POLL_SECONDS_WITHOUT_REDIS)
                if next_at is not None:
                    wake_at = min(wake_at, now + max(0.0, (next_at - timezone.now()).total_seconds()) + 0.01)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), timeout=max(0.0, wake_at - now))
                woken.clear()
                if loop.time() >= next_heartbeat:
                    if not await limited(extend_lease, actor, data["worker_id"]):
                        break
                    next_heartbeat = loop.time() + heartbeat_seconds()
                work_order, next_at = await limited(_claim_again, actor, data["worker_id"])
    except DomainError as exc:
        return error_response(exc)
    except ValidationError as exc:
        return JsonResponse(exception_handler(exc, {}).data, status=400)
    return _claim_response(work_order)


def _claim_response(work_order: dict | None) -> HttpResponse:
    if work_order is None:
        return HttpResponse(status=204)
    return JsonResponse(work_order, encoder=DjangoJSONEncoder)


def _asks_to_wait(request: HttpRequest) -> bool:
    """A first look at `wait`, before authenticating: only a claim that may wait subscribes.
    The body is validated properly once the caller is known."""
    if len(request.body) > MAX_PEEK_BYTES:  # a claim is tiny; a big body is parsed after authenticating
        return False
    with contextlib.suppress(Exception):
        wait = json.loads(request.body or b"{}").get("wait")
        return isinstance(wait, int | float) and wait > 0
    return False


def _next_available(_: Any) -> datetime | None:
    try:
        return selectors.next_available_at(now=timezone.now())
    finally:
        release_connection()


def _json_body(request: HttpRequest) -> Any:
    """The request's JSON object, parsed as the API's own parser does (size, depth, no NUL)."""
    if not request.body:
        return {}
    try:
        return StorableJSONParser().parse(io.BytesIO(request.body), "application/json")
    except ParseError as exc:
        raise BadRequest(str(exc.detail), code="parse_error") from None
