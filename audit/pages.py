"""The audit page (staff): the latest checkpoint, the latest verification run (Beat's or one a
person asked for), and a button to verify now. Verifying a long chain takes seconds, so the button
hands the run to a Celery worker, one run at a time, and the page shows the stored result."""

from __future__ import annotations

import logging

import redis
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from audit import selectors
from audit.models import AuditCheckpoint, AuditEntry, AuditVerification
from audit.tasks import VERIFY_LOCK_KEY, VERIFY_LOCK_SECONDS, verify_chain_as
from hol import errors
from hol.pages import person_required
from hol.pubsub import redis_client

log = logging.getLogger(__name__)


def _ensure_staff(request: HttpRequest) -> None:
    try:
        selectors.ensure_audit_reader(request.user)
    except errors.PermissionDenied as exc:
        raise PermissionDenied(exc.message) from None


def _verifying() -> bool:
    try:
        return bool(redis_client().exists(VERIFY_LOCK_KEY))
    except redis.RedisError:
        return False


@person_required
def audit_page(request: HttpRequest) -> HttpResponse:
    _ensure_staff(request)
    return render(
        request,
        "audit/page.html",
        {
            "checkpoint": AuditCheckpoint.objects.order_by("-seq", "-id").first(),
            "verification": AuditVerification.objects.first(),
            "verifying": _verifying(),
            "entries": AuditEntry.objects.order_by("-id")[:25],
        },
    )


@require_POST
@person_required
def audit_verify_now(request: HttpRequest) -> HttpResponse:
    _ensure_staff(request)
    try:
        # One run at a time, whoever asks: a second click while one runs starts nothing.
        started = redis_client().set(VERIFY_LOCK_KEY, request.user.get_username(), nx=True, ex=VERIFY_LOCK_SECONDS)
    except redis.RedisError:
        log.warning("could not take the verification lock", exc_info=True)
        messages.error(request, "Could not start a verification: Redis cannot be reached.")
        return redirect("page-audit")
    if not started:
        messages.info(request, "A verification is already running; its result shows here when it ends.")
        return redirect("page-audit")
    try:
        verify_chain_as.delay(request.user.pk)
    except Exception:  # the broker is down: give the lock back so the next click may try again
        log.warning("could not hand the verification to a worker", exc_info=True)
        redis_client().delete(VERIFY_LOCK_KEY)
        messages.error(request, "Could not start a verification: no Celery worker can be reached.")
        return redirect("page-audit")
    messages.success(request, "Verification started; reload in a few seconds for its result.")
    return redirect("page-audit")
