"""The shared subscription (hol.pubsub) against a real Redis: waiters leave their channels in
batches, and a channel watched again before its batch goes out stays subscribed."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import closing

import redis
from django.conf import settings

from hol.pubsub import UNSUBSCRIBE_EVERY_SECONDS, SharedSubscriber


def subscribers(*channels: str) -> list[int]:
    with closing(redis.Redis.from_url(settings.REDIS_URL)) as client:
        return [count for _, count in client.pubsub_numsub(*channels)]


async def until(predicate, seconds: float = 5) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def test_channels_left_are_unsubscribed_together_and_one_watched_again_stays():
    first, second = f"hol:test:{uuid.uuid4()}", f"hol:test:{uuid.uuid4()}"

    async def scenario() -> None:
        subscriber = SharedSubscriber(settings.REDIS_URL)
        try:
            assert await subscriber.ready(timeout=5)
            watches = [await subscriber.watch(first), await subscriber.watch(second)]
            assert await asyncio.to_thread(subscribers, first, second) == [1, 1]
            for watch in watches:
                watch.end()
                watch.end()  # a second end does nothing
            # Watched again before the batch goes out: that channel must stay subscribed.
            again = await subscriber.watch(first)
            await asyncio.sleep(UNSUBSCRIBE_EVERY_SECONDS * 3)
            assert await asyncio.to_thread(subscribers, first, second) == [1, 0]
            await asyncio.to_thread(lambda: redis.Redis.from_url(settings.REDIS_URL).publish(first, b"decided"))
            assert await until(again.wakeup.is_set)
            assert again.wakeup.message == b"decided"
            again.end_soon()  # from a thread, as a closed answer does it; here from the loop itself
            assert await until(lambda: first not in subscriber.waiters)
            await asyncio.sleep(UNSUBSCRIBE_EVERY_SECONDS * 3)
            assert await asyncio.to_thread(subscribers, first, second) == [0, 0]
        finally:
            subscriber._task.cancel()

    asyncio.run(scenario())
