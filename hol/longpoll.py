"""What the async long-poll views (approval waits, question replies) share: they authenticate
like the API, read on a connection they close at once, cap the wait, and answer errors with the
one error body."""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from rest_framework import exceptions as drf_exceptions

from hol.errors import BadRequest, DomainError, Unauthenticated, error_body
from hol.pubsub import Watch
from hol.run_scope import RunScopedJWTAuthentication

# How often a waiter re-reads the database while the shared Redis subscription is down.
POLL_SECONDS_WITHOUT_REDIS = 2.0
# Database reads of waiters running at once, per process: under ASGI each request reads in a
# thread of its own, on a connection of its own, so a thousand waiters starting (or polling
# without Redis) together would otherwise ask PostgreSQL for a thousand connections.
CONCURRENT_READS = 8

T = TypeVar("T")
log = logging.getLogger(__name__)
_read_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


async def limited(func: Callable[..., T], *args: Any) -> T:
    """`func(*args)` in a thread, once one of the process's CONCURRENT_READS slots is free."""
    loop = asyncio.get_running_loop()
    slots = _read_slots.get(loop)
    if slots is None:
        slots = _read_slots[loop] = asyncio.Semaphore(CONCURRENT_READS)
    async with slots:
        return await sync_to_async(func)(*args)


class _AfterWait:
    """The executor a long-poll's sync steps run on once its own thread is released: a few
    threads every waiter of the process shares, kept for the process's life, so waking a
    waiter starts no thread and its end joins none. Only what follows a wait runs here (the
    answer's middleware, a re-read, a heartbeat): each read opens and closes its own database
    connection, so no step needs the thread an earlier one ran on."""

    _pool = ThreadPoolExecutor(max_workers=CONCURRENT_READS, thread_name_prefix="hol-after-wait")

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shared: a request ending does not shut it down."""

    def __bool__(self) -> bool:
        # asgiref starts a thread to shut down a request's executor when the request ends, if
        # it has one: read as "none", this one is spared that thread.
        return False


AFTER_WAIT = _AfterWait()


def release_request_thread() -> None:
    """Let the request's own thread go for the length of a wait. Django runs each request's
    thread-sensitive sync code (middleware, reads) on a thread asgiref makes for that request and
    keeps until the request ends: a thousand waiters would hold a thousand idle threads. Released
    here, the request's later sync steps run on the threads the process's waiters share
    (AFTER_WAIT). Where the sync code has a parent thread instead (a sync caller, as in tests),
    nothing is held and nothing changes. (asgiref's per-context executors are internal to it:
    the pinned version's, checked by the 200-waiter test in test_approvals_longpoll.)"""
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is None:
        return
    executor = SyncToAsync.context_to_thread_executor.get(context)
    if executor is AFTER_WAIT:
        return
    SyncToAsync.context_to_thread_executor[context] = AFTER_WAIT
    if executor is not None:
        executor.shutdown(wait=False)  # its idle thread ends; nothing waits for it


class AnswerWhenDone(StreamingHttpResponse):
    """A long-poll's 200 answer whose JSON body is made when its wait ends. Its head passes
    through the middleware when the wait begins, while the request still has its thread; once
    decided, the answer is one write (daphne sends the head with the body), not another round
    of middleware on threads. Closing it ends the wait's watch, also when the body was never
    asked for (the client left first)."""

    def __init__(self, body: AsyncIterator[bytes], watch: Watch) -> None:
        super().__init__(body, content_type="application/json")
        self.watch = watch
        # Django neither iterates nor closes a response whose client left while the middleware
        # handled it: the watch then ends when the response is collected.
        weakref.finalize(self, watch.end_soon)

    def close(self) -> None:
        self.watch.end_soon()
        super().close()


async def answer_when_done(
    request: HttpRequest, watch: Watch, reads: AsyncIterator[dict | bytes], what: str
) -> HttpResponse:
    """The answer of a wait that found its object pending: `reads` yields what each read saw (a
    dict, or a body already encoded), the last being the answer. Under ASGI (daphne; Django's
    AsyncClient too, whose answer is read from `streaming_content`) it is an AnswerWhenDone; for
    a sync caller (the test client, whose event loop ends with the view) the wait happens here."""
    body = _last_read(watch, reads, what)
    if isinstance(request, ASGIRequest):
        return AnswerWhenDone(body, watch)
    return HttpResponse(b"".join([part async for part in body]), content_type="application/json")


async def _last_read(watch: Watch, reads: AsyncIterator[dict | bytes], what: str) -> AsyncIterator[bytes]:
    last: dict | bytes = b""
    try:
        try:
            async for read in reads:
                last = read
        except DomainError:
            pass  # gone from the caller's view meanwhile: the wait ends on what it last saw
        except Exception:
            # The answer is a 200 already (its head passed the middleware): logged, and the agent
            # gets what was last seen and asks again.
            log.warning("%s: the wait ended on an error; answering the last read", what, exc_info=True)
        yield last if isinstance(last, bytes) else json.dumps(last, cls=DjangoJSONEncoder).encode()
    finally:
        watch.end()


def extend_lease(actor: Any, worker_id: Any) -> bool:
    """A heartbeat for a waiting agent's worker, so the work order it holds is not requeued while
    a person decides or answers. False once it no longer may (the worker is gone or not the
    caller's)."""
    from tasks import services as task_services

    try:
        task_services.worker_heartbeat(actor=actor, worker_id=worker_id)
        return True
    except DomainError:
        return False
    finally:
        release_connection()


def heartbeat_seconds() -> float:
    """How often a wait heartbeats the waiting agent's worker (HOL_APPROVAL_WAIT_HEARTBEAT_SECONDS)."""
    return float(getattr(settings, "HOL_APPROVAL_WAIT_HEARTBEAT_SECONDS", 10))


def release_connection() -> None:
    # Waiting agents must not pin database connections between reads; inside an outer
    # transaction (the test suite's), the connection is not ours to close.
    if not connection.in_atomic_block:
        connection.close()


def authenticate(request: HttpRequest) -> Any:
    """The API's JWT, or the session of a signed-in person; Unauthenticated (401) otherwise."""
    try:
        result = RunScopedJWTAuthentication().authenticate(request)
    except drf_exceptions.AuthenticationFailed as exc:
        detail = exc.detail if isinstance(exc.detail, dict) else {"detail": exc.detail}
        raise Unauthenticated(
            str(detail.get("detail")), code=str(detail.get("code", "authentication_failed"))
        ) from None
    if result is not None:
        return result[0]
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user
    raise Unauthenticated("Authentication credentials were not provided.")


def wait_seconds(raw: str | None) -> float:
    """`?wait=N` as seconds, capped by HOL_APPROVAL_WAIT_MAX_SECONDS; 400 when not a number ≥ 0."""
    if raw in (None, ""):
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        raise BadRequest("wait must be a number of seconds", code="invalid") from None
    if not 0 <= wait < float("inf"):
        raise BadRequest("wait must be a number of seconds ≥ 0", code="invalid")
    return min(wait, float(settings.HOL_APPROVAL_WAIT_MAX_SECONDS))


def error_response(exc: DomainError) -> JsonResponse:
    return JsonResponse(error_body(exc.code, exc.message), status=exc.status_code)


def method_not_allowed(request: HttpRequest) -> JsonResponse:
    return JsonResponse(error_body("method_not_allowed", f'Method "{request.method}" not allowed.'), status=405)
