"""`/healthz` and `/version` for load balancers and monitors: no authentication, so they say
whether each part answers and nothing about how it is configured (no hosts, no error texts)."""

from __future__ import annotations

import subprocess
import threading
import time
import tomllib
from functools import lru_cache

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from hol.pubsub import redis_client

# A ping waits this long for workers; the answer is kept a few seconds so that a flood of
# unauthenticated /healthz calls costs one broadcast, not one each.
CELERY_PING_TIMEOUT = 0.5
CELERY_CACHE_SECONDS = 5.0
_celery_cache: dict[str, tuple[float, str]] = {}
_celery_lock = threading.Lock()


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        return "unavailable"
    return "ok"


def check_redis() -> str:
    try:
        redis_client().ping()
    except Exception:
        return "unavailable"
    return "ok"


def _ping_celery() -> str:
    from hol.celery import app

    try:
        # A connection of its own, closed after: nothing of the broadcast outlives the check in
        # this process (a forked child would inherit it and hang on it).
        with app.connection_for_write() as conn:
            replies = app.control.inspect(timeout=CELERY_PING_TIMEOUT, connection=conn).ping()
    except Exception:
        return "unavailable"
    return "ok" if replies else "no_workers"


def check_celery(*, now: float | None = None) -> str:
    """`ok` when at least one worker answers a ping, `no_workers` when the broker answers but no
    worker does, `unavailable` when the broker cannot be reached."""
    now = time.monotonic() if now is None else now
    with _celery_lock:
        cached = _celery_cache.get(settings.CELERY_BROKER_URL)
        if cached and now - cached[0] < CELERY_CACHE_SECONDS:
            return cached[1]
        status = _ping_celery()
        _celery_cache[settings.CELERY_BROKER_URL] = (now, status)
        return status


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database and Redis answer (HOL can take and keep work); Celery's state is
    reported but does not fail the check, since work waits in the queue until a worker comes."""
    checks = {"database": check_database(), "redis": check_redis()}
    checks["celery"] = check_celery() if checks["redis"] == "ok" else "unavailable"
    healthy = checks["database"] == "ok" and checks["redis"] == "ok"
    body = {"status": "ok" if healthy else "unavailable", "checks": checks}
    response = JsonResponse(body, status=200 if healthy else 503)
    response["Cache-Control"] = "no-store"
    return response


@lru_cache(maxsize=1)
def hol_version() -> str:
    with open(settings.BASE_DIR / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=2,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out if len(out) == 40 and all(c in "0123456789abcdef" for c in out) else None


@require_GET
def version(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"version": hol_version(), "commit": git_commit()})
