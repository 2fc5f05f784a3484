"""Telling waiting agents that a request was decided: a Redis pub/sub message per request,
published after the deciding transaction commits (services call `publish_decided` in on_commit)."""

from __future__ import annotations

import json
import logging
from functools import lru_cache

import redis
from django.conf import settings

log = logging.getLogger(__name__)


def channel_name(request_id: object) -> str:
    # Pub/sub channels are server-wide (not per Redis db); a request id is unique across HOL installs.
    return f"hol:approval:{request_id}"


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def publish_decided(request_id: object, status: str) -> None:
    """Wake agents long-polling this request. A lost message only costs them a wait: they re-read
    the row when their wait ends, so a Redis failure is logged, never raised."""
    try:
        _client(settings.REDIS_URL).publish(channel_name(request_id), json.dumps({"status": status}))
    except redis.RedisError:
        log.warning("could not publish the decision of approval %s", request_id, exc_info=True)
