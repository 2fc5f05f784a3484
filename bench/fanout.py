"""Chat fan-out through a real daphne on the Redis channel layer.

N WebSocket subscribers (agents, JWT subprotocol) watch one task; M messages are posted over the
HTTP API one after another. Measured: delivery latency from the start of each POST to its arrival
at each subscriber (p50, p99), messages/s, and messages lost. The anchor, in the same run: a bare
channels-redis `group_send` → `receive` to the same number of channels. The last line is JSON.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.fanout
    (defaults: --subscribers 100 --messages 1000; the database named by --db-name is recreated)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time

import httpx

from bench._common import fresh_database

DB_NAME = "hol_bench_fanout"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def through_daphne(base: str, token: str, task_id: str, subscribers: int, messages: int) -> dict:
    from websockets.asyncio.client import connect

    ws_url = base.replace("http://", "ws://") + f"/ws/tasks/{task_id}/"
    sockets = [
        await connect(ws_url, subprotocols=["hol.v1", f"hol.jwt.{token}"], max_queue=None) for _ in range(subscribers)
    ]
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    last_arrival = 0.0

    async def listen(ws) -> int:
        nonlocal last_arrival
        got = 0
        try:
            while got < messages:
                event = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
                now = time.perf_counter()
                latencies.append(now - sent_at[event["message"]["content"]])
                last_arrival = max(last_arrival, now)
                got += 1
        except TimeoutError:
            pass
        return got

    listeners = [asyncio.create_task(listen(ws)) for ws in sockets]
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        started = time.perf_counter()
        for n in range(messages):
            content = f"line {n}"
            sent_at[content] = time.perf_counter()
            response = await http.post("/api/v1/chat/messages", json={"task_id": task_id, "content": content})
            response.raise_for_status()
    received = sum(await asyncio.gather(*listeners))
    for ws in sockets:
        await ws.close()
    return {
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "lost": subscribers * messages - received,
        "messages_per_s": messages / (last_arrival - started) if last_arrival > started else 0.0,
    }


async def anchor(subscribers: int, messages: int) -> float:
    """p99 (ms) of a bare channels-redis group_send → receive to `subscribers` channels."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    group = f"bench.anchor.{os.getpid()}"
    channels = [await layer.new_channel() for _ in range(subscribers)]
    for channel in channels:
        await layer.group_add(group, channel)
    latencies: list[float] = []

    async def listen(channel: str) -> None:
        for _ in range(messages):
            event = await layer.receive(channel)
            latencies.append(time.perf_counter() - event["sent"])

    listeners = [asyncio.create_task(listen(channel)) for channel in channels]
    for _ in range(messages):
        await layer.group_send(group, {"type": "chat.message", "sent": time.perf_counter()})
    await asyncio.wait_for(asyncio.gather(*listeners), timeout=120)
    for channel in channels:
        await layer.group_discard(group, channel)
    return percentile(latencies, 0.99) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--db-name", default=DB_NAME)
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        log("set DATABASE_URL to a PostgreSQL server (any database; the bench makes its own)")
        return 2
    os.environ["DATABASE_URL"] = fresh_database(base_url, args.db_name)
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    os.environ.setdefault("HOL_RUN_WORK_IN_CELERY", "0")  # the bench's tasks are never run
    os.environ.setdefault("HOL_ALLOWED_REPO_PREFIXES", "https://github.com/acme/")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hol.settings")
    import django

    from hol import datadir

    datadir.prepare()  # the data dir's keys, as manage.py makes them
    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connections
    from rest_framework_simplejwt.tokens import RefreshToken

    from hol.launcher import listening_socket, start_daphne, stop_all
    from tasks.services import task_create

    agent = get_user_model().objects.create_user("bench_agent", password="unused-bench-password")
    agent.groups.add(Group.objects.get_or_create(name="agent")[0])
    task, _ = task_create(
        actor=agent, payload={"objective": "fan-out bench", "target": {"repo": "https://github.com/acme/bench"}}
    )
    token = str(RefreshToken.for_user(agent).access_token)
    connections.close_all()

    sock = listening_socket("127.0.0.1", 0)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    processes = start_daphne(sock, 1, env=dict(os.environ), quiet=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(f"{base}/api/v1/ping", headers={"Authorization": f"Bearer {token}"}, timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("daphne did not start") from None
                time.sleep(0.1)
        log(f"{args.subscribers} subscribers, {args.messages} messages through daphne")
        result = asyncio.run(through_daphne(base, token, str(task.pk), args.subscribers, args.messages))
    finally:
        stop_all(processes)
        sock.close()
    log("anchor: bare group_send → receive")
    result["anchor_p99_ms"] = asyncio.run(anchor(args.subscribers, args.messages))
    result = {"bench": "fanout", "subscribers": args.subscribers, "messages": args.messages, **result}
    result["goal_p99_le_3x_anchor_and_none_lost"] = (
        result["p99_ms"] <= 3 * result["anchor_p99_ms"] and result["lost"] == 0
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
