"""Waiting on what a test can observe, never for a while: each helper polls real state (a row,
a Redis subscription or key) until it holds, and fails the test when a deadline passes first."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import closing
from typing import Any

import redis

WAIT_SECONDS = 60


def eventually(check: Callable[[], Any], *, seconds: float = WAIT_SECONDS, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def wait_for_status(task: Any, *statuses: str) -> str:
    """The task's status, once it is one of `statuses`."""
    from tasks.models import Task

    def status() -> str:
        return Task.objects.values_list("status", flat=True).get(pk=task.pk)

    eventually(lambda: status() in statuses, what=f"task {' or '.join(statuses)}")
    return status()


def wait_until_subscribed(redis_url: str, channels: Iterable[str], *, seconds: float = 30) -> None:
    """Until every one of `channels` has a subscriber on the Redis server at `redis_url`: a
    long-poll waiter subscribes before it first reads, so from then on a publish wakes it.
    Channels are server-wide, so each must be unique to the test (an approval request's is)."""
    channels = list(channels)
    with closing(redis.Redis.from_url(redis_url)) as watcher:
        eventually(
            lambda: all(count > 0 for _, count in watcher.pubsub_numsub(*channels)),
            seconds=seconds,
            what=f"{len(channels)} waiter(s) to subscribe",
        )


def wait_until_key_exists(redis_url: str, key: str, *, seconds: float = 30) -> None:
    """Until `key` exists in the Redis database at `redis_url`."""
    with closing(redis.Redis.from_url(redis_url)) as watcher:
        eventually(lambda: watcher.exists(key), seconds=seconds, what=f"Redis key {key}")
