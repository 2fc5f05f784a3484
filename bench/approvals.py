"""Decision-to-agent latency of approvals (a benchmark, not a test).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python -m bench.approvals [--agents 50] [--rounds 3] [--web-processes 2]

creates its own database (hol_bench_approvals, dropped and recreated), migrates it, starts daphne
and, per round, opens one medium-risk request for each of --agents agents, then measures:

  (a) long-poll  every agent waits on its request with GET /api/v1/approvals/{id}?wait=60; once all
                 are waiting, a devops engineer approves the requests through the API one after
                 another; latency = the agent's return minus the moment the approving POST answered
                 (slightly negative when the agent heard before the approver's response arrived);
                 while they wait, GET /api/v1/queue/status is timed too (other API calls must stay fast);
  (b) polling    the same agents GET /api/v1/approvals/{id} every second (the common approach),
                 phase-shifted at random; latency = the first poll that sees `approved` minus the
                 decision's response;
  (c) floor      a Redis pub/sub round trip (PUBLISH, then the subscriber receiving it).

The last line printed is one JSON object with p50_ms, p99_ms, max_ms (long-poll), poll_p99_ms and
pubsub_p99_ms among others. Goal: p99 ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import sys
import threading
import time
from pathlib import Path

import httpx

from bench._common import fresh_database

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "hol_bench_approvals"
ACTION = {"action_type": "file", "operation": "write", "environment": "dev"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary(values_s: list[float]) -> dict[str, float]:
    ms = [value * 1000 for value in values_s]
    return {
        "p50": round(percentile(ms, 50), 2),
        "p99": round(percentile(ms, 99), 2),
        "max": round(max(ms), 2),
        "min": round(min(ms), 2),
    }


def setup_people(agents: int) -> tuple[list, object]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    User = get_user_model()
    agent_group = Group.objects.get(name="agent")
    accounts = []
    for index in range(agents):
        user = User.objects.create_user(f"bench_agent_{index}", password="x")
        user.groups.add(agent_group)
        accounts.append(user)
    approver = User.objects.create_user("bench_devops", password="x", is_staff=True)
    approver.groups.add(Group.objects.get(name="devops_engineer"))
    return accounts, approver


def open_requests(accounts: list) -> list[str]:
    from approvals.services import approval_request_create

    return [str(approval_request_create(actor=account, action=ACTION).pk) for account in accounts]


def token(user) -> str:
    from rest_framework_simplejwt.tokens import RefreshToken

    return str(RefreshToken.for_user(user).access_token)


def approve_one_by_one(base: str, approver_token: str, ids: list[str], decided: dict[str, float]) -> None:
    """The approver, in its own thread: one POST after another, noting when each answered."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {approver_token}"}, timeout=30) as client:
        for request_id in ids:
            response = client.post(f"/api/v1/approvals/{request_id}/approve", json={"justification": "bench"})
            decided[request_id] = time.perf_counter()
            if response.status_code != 200:
                raise RuntimeError(f"approve answered {response.status_code}: {response.text}")


async def long_poll_round(base: str, tokens: list[str], ids: list[str], approver_token: str) -> tuple[list, list]:
    returned: dict[str, float] = {}
    limits = httpx.Limits(max_connections=len(ids) + 10, max_keepalive_connections=len(ids) + 10)
    async with httpx.AsyncClient(base_url=base, timeout=90, limits=limits) as client:

        async def wait(agent_token: str, request_id: str) -> None:
            response = await client.get(
                f"/api/v1/approvals/{request_id}",
                params={"wait": 60},
                headers={"Authorization": f"Bearer {agent_token}"},
            )
            returned[request_id] = time.perf_counter()
            if response.status_code != 200 or response.json()["status"] != "approved":
                raise RuntimeError(f"wait answered {response.status_code}: {response.text[:200]}")

        waiters = [asyncio.create_task(wait(t, i)) for t, i in zip(tokens, ids, strict=True)]
        await asyncio.sleep(1.5)  # every agent is waiting now
        if returned:
            raise RuntimeError("an agent returned before any decision")
        pings = []
        for _ in range(30):  # other API calls while 50 agents wait
            started = time.perf_counter()
            other = await client.get("/api/v1/queue/status", headers={"Authorization": f"Bearer {approver_token}"})
            pings.append(time.perf_counter() - started)
            if other.status_code != 200:
                raise RuntimeError(f"queue status answered {other.status_code}")
        decided: dict[str, float] = {}
        approver = threading.Thread(target=approve_one_by_one, args=(base, approver_token, ids, decided))
        approver.start()
        await asyncio.gather(*waiters)
        await asyncio.to_thread(approver.join)
    return [returned[i] - decided[i] for i in ids], pings


async def polling_round(base: str, tokens: list[str], ids: list[str], approver_token: str) -> list[float]:
    seen: dict[str, float] = {}
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=len(ids) + 10, max_keepalive_connections=len(ids) + 10)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def poll(agent_token: str, request_id: str) -> None:
            await asyncio.sleep(random.random())  # agents started at different moments
            headers = {"Authorization": f"Bearer {agent_token}"}
            while not stop.is_set():
                response = await client.get(f"/api/v1/approvals/{request_id}", headers=headers)
                if response.json()["status"] == "approved":
                    seen[request_id] = time.perf_counter()
                    return
                await asyncio.sleep(1.0)

        pollers = [asyncio.create_task(poll(t, i)) for t, i in zip(tokens, ids, strict=True)]
        await asyncio.sleep(2.0)
        decided: dict[str, float] = {}
        approver = threading.Thread(target=approve_one_by_one, args=(base, approver_token, ids, decided))
        approver.start()
        await asyncio.wait_for(asyncio.gather(*pollers), timeout=60)
        stop.set()
        await asyncio.to_thread(approver.join)
    return [seen[i] - decided[i] for i in ids]


async def pubsub_round_trips(redis_url: str, count: int) -> list[float]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe("hol:bench:pubsub")
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    trips = []
    for _ in range(count):
        started = time.perf_counter()
        await client.publish("hol:bench:pubsub", "x")
        while await pubsub.get_message(ignore_subscribe_messages=True, timeout=5) is None:
            pass
        trips.append(time.perf_counter() - started)
    await pubsub.aclose()
    await client.aclose()
    return trips


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--web-processes", type=int, default=2)
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        log("set DATABASE_URL to a PostgreSQL server (any database; the bench makes its own)")
        return 2
    os.environ["DATABASE_URL"] = fresh_database(base_url, DB_NAME)
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hol.settings")
    import django

    from hol import datadir

    datadir.prepare()  # the data dir's keys, as manage.py makes them
    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the figures
    from django.conf import settings
    from django.db import connections

    from hol.launcher import listening_socket, start_daphne, stop_all

    accounts, approver = setup_people(args.agents)
    tokens = [token(account) for account in accounts]
    approver_token = token(approver)
    connections.close_all()

    sock = listening_socket("127.0.0.1", 0)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    processes = start_daphne(sock, args.web_processes, env=dict(os.environ), quiet=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(
                    f"{base}/api/v1/queue/status", headers={"Authorization": f"Bearer {approver_token}"}, timeout=2
                )
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("daphne did not start") from None
                time.sleep(0.1)

        long_poll: list[float] = []
        pings: list[float] = []
        polling: list[float] = []
        for round_number in range(args.rounds):
            log(f"round {round_number + 1}/{args.rounds}: long-poll")
            latencies, round_pings = asyncio.run(long_poll_round(base, tokens, open_requests(accounts), approver_token))
            long_poll += latencies
            pings += round_pings
            log(f"round {round_number + 1}/{args.rounds}: polling every second")
            polling += asyncio.run(polling_round(base, tokens, open_requests(accounts), approver_token))
            connections.close_all()
        log("pub/sub round trips")
        pubsub = asyncio.run(pubsub_round_trips(settings.REDIS_URL, 500))
    finally:
        stop_all(processes)
        sock.close()

    result = {
        "bench": "approvals",
        "agents": args.agents,
        "rounds": args.rounds,
        "web_processes": args.web_processes,
        "decisions": len(long_poll),
        **{f"{key}_ms": value for key, value in summary(long_poll).items()},
        **{f"poll_{key}_ms": value for key, value in summary(polling).items()},
        **{f"pubsub_{key}_ms": value for key, value in summary(pubsub).items()},
        **{f"other_call_while_waiting_{key}_ms": value for key, value in summary(pings).items()},
    }
    result["goal_p99_le_100ms"] = result["p99_ms"] <= 100
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
