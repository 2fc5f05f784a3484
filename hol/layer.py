"""Sending to Channels groups from synchronous code (services after commit, Celery tasks).

`async_to_sync(layer.group_send)` starts a thread and an event loop for each call, and so opens a
new Redis connection each time: about 15 ms a message on a small machine, paid by the request or
the agent run that made the change. Here one sender thread per process keeps one event loop, and
so its Redis connections, and sends the messages in the order they were handed over (a task
page sees its events in order). The caller does not wait: the event is already stored, and pages
catch up from the database when a push is lost.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import queue
import threading
from typing import Any

import redis
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

FLUSH_AT_EXIT_SECONDS = 2.0

_lock = threading.Lock()
_outbox: queue.Queue[tuple[str, dict[str, Any]] | None] | None = None


def group_send(group: str, event: dict[str, Any]) -> None:
    """Hand `event` to the process's sender for `group`; returns at once."""
    global _outbox
    with _lock:
        if _outbox is None:
            _outbox = queue.Queue()
            threading.Thread(target=_run, args=(_outbox,), name="hol-group-send", daemon=True).start()
        outbox = _outbox
    outbox.put((group, event))


def flush(timeout: float = FLUSH_AT_EXIT_SECONDS) -> bool:
    """Wait until every message handed over so far is sent (True), or `timeout` passes."""
    with _lock:
        outbox = _outbox
    if outbox is None:
        return True
    done = threading.Event()
    outbox.put(("", {"_flushed": done}))
    return done.wait(timeout)


def _run(outbox: queue.Queue[tuple[str, dict[str, Any]] | None]) -> None:
    loop = asyncio.new_event_loop()
    try:
        while True:
            item = outbox.get()
            if item is None:
                return
            group, event = item
            if "_flushed" in event:
                event["_flushed"].set()
                continue
            layer = get_channel_layer()
            if layer is None:
                continue
            try:
                loop.run_until_complete(layer.group_send(group, event))
            except (redis.RedisError, OSError):
                log.warning("could not send to the Channels group %s", group, exc_info=True)
            except Exception:
                log.exception("sending to the Channels group %s failed", group)
    finally:
        loop.close()


def _forget_in_child() -> None:
    # A forked process has no copy of the parent's sender thread: it starts its own when needed.
    global _lock, _outbox
    _lock = threading.Lock()
    _outbox = None


os.register_at_fork(after_in_child=_forget_in_child)
# What a process hands over just before it exits (a management command, a worker shutting down)
# still reaches the pages.
atexit.register(flush)
