"""The audit page (staff): the latest checkpoint and verification, and a button to verify now.
Verifying a long chain takes seconds, so it runs on request and its result is kept in Redis."""

from __future__ import annotations

import json
import logging
from datetime import datetime

import redis
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from audit import selectors
from audit.models import AuditCheckpoint, AuditEntry
from hol import errors
from hol.pages import person_required
from hol.pubsub import redis_client

log = logging.getLogger(__name__)
LAST_VERIFICATION_KEY = "hol:audit:last-verification"


def _ensure_staff(request: HttpRequest) -> None:
    try:
        selectors.ensure_audit_reader(request.user)
    except errors.PermissionDenied as exc:
        raise PermissionDenied(exc.message) from None


def _last_verification() -> dict | None:
    try:
        raw = redis_client().get(LAST_VERIFICATION_KEY)
    except redis.RedisError:
        return None
    return json.loads(raw) if raw else None


@person_required
def audit_page(request: HttpRequest) -> HttpResponse:
    _ensure_staff(request)
    verification = _last_verification()
    return render(
        request,
        "audit/page.html",
        {
            "checkpoint": AuditCheckpoint.objects.order_by("-seq", "-id").first(),
            "verification": verification,
            "verified_at": verification and datetime.fromisoformat(verification["verified_at"]),
            "entries": AuditEntry.objects.order_by("-id")[:25],
        },
    )


@require_POST
@person_required
def audit_verify_now(request: HttpRequest) -> HttpResponse:
    _ensure_staff(request)
    result = selectors.audit_verify().as_dict()
    result["verified_at"] = timezone.now().isoformat()
    result["verified_by"] = request.user.get_username()
    try:
        redis_client().set(LAST_VERIFICATION_KEY, json.dumps(result, default=str))
    except redis.RedisError:
        log.warning("could not keep the verification result", exc_info=True)
    return redirect("page-audit")
