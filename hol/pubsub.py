"""One Redis pub/sub connection per process (per event loop), shared by every long-poll waiter.

A waiter asks for a channel and gets a `Wakeup` (an asyncio.Event) that is set when a message
arrives on it, and holds that message's data. Many waiters on many channels cost one Redis
connection, not one each. Redis is a speed-up only: while the connection is down `healthy` is
False and waiters re-read the database every few seconds instead of waiting for a wake-up that
may never come.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from functools import lru_cache

import redis
import redis.asyncio as aioredis
from django.conf import settings

log = logging.getLogger(__name__)

RECONNECT_SECONDS = 1.0
# The subscription pings Redis this often when nothing else arrives, and counts Redis as lost
# after HUNG_SECONDS without a word (a pong included).
PING_SECONDS = 1.0
HUNG_SECONDS = 3.0
# Channels nobody waits on any more are unsubscribed in one command at most this often.
UNSUBSCRIBE_EVERY_SECONDS = 0.2


@lru_cache(maxsize=4)
def _redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def redis_client() -> redis.Redis:
    """The process's plain (blocking) Redis client, for publishing and small keys."""
    return _redis_client(settings.REDIS_URL)


class Wakeup(asyncio.Event):
    """Set on each message of the channel waited on; `message` is the data of the latest one
    (None when woken without one: the subscription was lost and the waiter must look itself)."""

    def __init__(self) -> None:
        super().__init__()
        self.message: bytes | None = None

    def clear(self) -> None:
        super().clear()
        self.message = None


class Watch:
    """One waiter's registration on a channel (`SharedSubscriber.watch`). `end()` on the event
    loop or `end_soon()` from any thread ends it; ending twice does nothing."""

    def __init__(self, subscriber: SharedSubscriber, channel: str) -> None:
        self.subscriber = subscriber
        self.channel = channel
        self.wakeup = Wakeup()
        self._ended = False

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self.subscriber._unwatch(self.channel, self.wakeup)

    def end_soon(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the process is ending
            self.subscriber._task.get_loop().call_soon_threadsafe(self.end)


class SharedSubscriber:
    def __init__(self, url: str) -> None:
        self.url = url
        self.waiters: dict[str, set[Wakeup]] = {}
        self.healthy = False
        self._pubsub: aioredis.client.PubSub | None = None
        self._ready = asyncio.Event()
        self._leaving: set[str] = set()
        self._unsubscriber: asyncio.Task | None = None
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            client = aioredis.from_url(self.url, socket_connect_timeout=2)
            pubsub = client.pubsub()
            try:
                # A placeholder subscription keeps the connection in subscribed mode while idle.
                # A Redis that accepts the connection but never answers (a stopped process) must
                # not hold this loop: the first subscription has a deadline too.
                channels = set(self.waiters)
                await asyncio.wait_for(pubsub.subscribe("hol:pubsub:keepalive", *channels), timeout=HUNG_SECONDS)
                # From here on new waiters subscribe themselves; those who came meanwhile, now.
                self._pubsub = pubsub
                if late := set(self.waiters) - channels:
                    await asyncio.wait_for(pubsub.subscribe(*late), timeout=HUNG_SECONDS)
                if gone := channels - set(self.waiters):  # left meanwhile, with no connection to leave
                    await asyncio.wait_for(pubsub.unsubscribe(*gone), timeout=HUNG_SECONDS)
                self.healthy = True
                self._ready.set()
                last_heard = last_ping = loop.time()
                while True:
                    message = await pubsub.get_message(timeout=PING_SECONDS)
                    now = loop.time()
                    if message is not None:
                        last_heard = now
                        if message.get("type") == "message":
                            for event in self.waiters.get(message["channel"].decode(), ()):
                                event.message = message["data"]
                                event.set()
                    if now - last_heard > HUNG_SECONDS:
                        # A hung Redis keeps the socket open and says nothing: no error would
                        # ever come, so silence past the deadline counts as a lost connection.
                        raise ConnectionError(f"Redis has not answered for {HUNG_SECONDS:.0f} s")
                    if now - last_ping >= PING_SECONDS:
                        last_ping = now
                        await asyncio.wait_for(pubsub.ping(), timeout=PING_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception:  # any Redis failure: wake everyone to poll, retry later
                log.warning("shared Redis subscription lost; waiters poll the database", exc_info=True)
            finally:
                self.healthy = False
                self._ready.clear()
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), timeout=1)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.aclose(), timeout=1)
            for events in self.waiters.values():
                for event in events:
                    event.message = None
                    event.set()
            await asyncio.sleep(RECONNECT_SECONDS)

    async def watch(self, channel: str) -> Watch:
        """Register a waiter on `channel`, subscribing (if nobody else waits on it) before this
        returns, so a message published after it wakes the waiter. The caller ends the watch."""
        watch = Watch(self, channel)
        first = channel not in self.waiters
        self.waiters.setdefault(channel, set()).add(watch.wakeup)
        try:
            if first and self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._pubsub.subscribe(channel), timeout=2)
        except BaseException:  # cancelled (the client left) before the caller holds the watch
            watch.end()
            raise
        return watch

    def _unwatch(self, channel: str, event: Wakeup) -> None:
        events = self.waiters.get(channel)
        if events is None:
            return
        events.discard(event)
        if not events:
            del self.waiters[channel]
            # Later, together with the channels others leave meanwhile: one UNSUBSCRIBE for
            # many, and a waiter's answer does not wait for Redis to confirm.
            self._leaving.add(channel)
            if self._unsubscriber is None or self._unsubscriber.done():
                self._unsubscriber = self._task.get_loop().create_task(self._unsubscribe_left())

    async def _unsubscribe_left(self) -> None:
        while self._leaving:
            await asyncio.sleep(UNSUBSCRIBE_EVERY_SECONDS)
            channels = [channel for channel in self._leaving if channel not in self.waiters]
            self._leaving.clear()
            pubsub = self._pubsub
            if not channels or pubsub is None:
                continue  # nothing left, or the connection is gone (and its subscriptions with it)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.unsubscribe(*channels), timeout=2)
                # A channel watched again meanwhile may have been subscribed before that went out.
                if again := [channel for channel in channels if channel in self.waiters]:
                    await asyncio.wait_for(pubsub.subscribe(*again), timeout=2)

    @contextlib.asynccontextmanager
    async def wait_on(self, channel: str) -> AsyncIterator[Wakeup]:
        """`watch` for the length of a block: yields the Wakeup, set on each message."""
        watch = await self.watch(channel)
        try:
            yield watch.wakeup
        finally:
            watch.end()

    async def ready(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout=timeout)
        return self.healthy


_subscribers: dict[int, SharedSubscriber] = {}


def shared_subscriber() -> SharedSubscriber:
    """The subscriber of the running event loop (daphne runs one loop per process)."""
    loop = asyncio.get_running_loop()
    subscriber = _subscribers.get(id(loop))
    stale = subscriber is None or subscriber._task.get_loop() is not loop or subscriber._task.done()
    if stale or subscriber.url != settings.REDIS_URL:
        subscriber = _subscribers[id(loop)] = SharedSubscriber(settings.REDIS_URL)
    return subscriber
