"""Many agents long-polling on their own approval requests through daphne (a benchmark, not a test).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python -m bench.waiters [--agents 1000] [--web-processes 1] [--database hol_bench_waiters]

creates its own database (dropped and recreated), migrates it, starts daphne, opens one request per
agent, then:

  (a) waiting   every agent waits on its request with GET /api/v1/approvals/{id}?wait=120 (on a
                keep-alive connection, as hol_agent's client keeps one; closed after the round); once all
                wait (each has subscribed and read its row), the Redis connections of each daphne
                process (CLIENT LIST matched to the process's sockets) and the added RSS (VmRSS)
                are read; then the agents cancel their requests one after another (POST
                .../cancel, from a process of its own); latency = the waiting agent's answer minus
                the moment the cancelling POST was sent (the issue's measure: it includes the
                decision's own work); the *_after_answer_ms figures count from the moment the
                POST answered instead (negative when the agent had its answer first: the
                decision is published on commit, before the POST's own answer is rendered);
  (b) alone     fresh requests are cancelled the same way with nobody waiting: half of them before
                the waiting round (after an untimed warm-up of WARM_UP cancels, and a VACUUM
                ANALYZE of the fresh tables) and half after it, so a machine that speeds up or
                slows down over the run weighs on both sides alike.

The last line printed is one JSON object with p50_ms, p99_ms, redis_clients_waiting (the most of any
process), rss_mb_added, web_processes and ops_ratio (cancels/s with waiters / without); and, to
tell the wake-ups' cost from the machine's drift, web_cpu_ms_per_decision_alone/_waiting (the
daphne processes' CPU time per cancel, their waiters' answers included).
Goal: p99 ≤ 50 ms, ops_ratio ≥ 0.8, Redis connections ≤ 4 per process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import multiprocessing
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing, suppress
from pathlib import Path

import httpx
import psycopg

from bench._common import fresh_database

DB_NAME = "hol_bench_waiters"
WARM_UP = 200  # untimed cancels before the first timed round: a fresh process's first requests
ACTION = {"action_type": "file", "operation": "write", "environment": "dev"}
WAIT_SECONDS = 120


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes `pids` have used so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def redis_connections_of(pid: int, redis_url: str) -> int:
    """Connections Redis's CLIENT LIST shows from process `pid` (matched by the TCP ports the
    process holds, read from /proc)."""
    import redis

    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    local_ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and fields[9] in inodes:  # 01: established
                local_ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    with closing(redis.Redis.from_url(redis_url)) as client:
        return sum(int(entry["addr"].rsplit(":", 1)[1]) in local_ports for entry in client.client_list())


def setup_agents(count: int) -> list:
    """`count` agent accounts in two bulk inserts, sharing one precomputed password hash."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group

    User = get_user_model()
    password = make_password(None)  # unusable: the agents use tokens
    User.objects.bulk_create([User(username=f"bench_agent_{i}", password=password) for i in range(count)])
    accounts = list(User.objects.filter(username__startswith="bench_agent_").order_by("pk"))
    group = Group.objects.get_or_create(name="agent")[0]
    User.groups.through.objects.bulk_create([User.groups.through(user_id=u.pk, group_id=group.pk) for u in accounts])
    return accounts


def open_requests(accounts: list) -> list[str]:
    from approvals.services import approval_request_create

    return [str(approval_request_create(actor=account, action=ACTION).pk) for account in accounts]


def token(user) -> str:
    from rest_framework_simplejwt.tokens import RefreshToken

    return str(RefreshToken.for_user(user).access_token)


def cancel_one_by_one(base: str, tokens: list[str], ids: list[str]) -> tuple[float, dict[str, tuple[float, float]]]:
    """Each agent cancels its own request, one after another; returns the seconds the run took and
    when each cancel was sent and answered (time.monotonic, the same clock in every process)."""
    decided: dict[str, tuple[float, float]] = {}
    started = time.monotonic()
    with httpx.Client(base_url=base, timeout=30) as client:
        for agent_token, request_id in zip(tokens, ids, strict=True):
            sent = time.monotonic()
            response = client.post(
                f"/api/v1/approvals/{request_id}/cancel",
                json={"reason": "bench"},
                headers={"Authorization": f"Bearer {agent_token}"},
            )
            decided[request_id] = (sent, time.monotonic())
            if response.status_code != 200:
                raise RuntimeError(f"cancel answered {response.status_code}: {response.text[:200]}")
    return time.monotonic() - started, decided


def cancel_in_own_process(base: str, tokens: list[str], ids: list[str]) -> tuple[float, dict[str, tuple[float, float]]]:
    """`cancel_one_by_one` in a process of its own: the client deciding must not share an
    interpreter lock with the client holding a thousand waiting connections, or the bench would
    measure its own contention instead of the server's."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(cancel_one_by_one, base, tokens, ids).result()


async def settled(client, agent_token: str, ids: list[str], redis_url: str) -> None:
    """Until every waiter waits: each has subscribed to its request's channel (Redis counts the
    subscriptions), then a read sent after them answers, which it does once the first reads
    queued before it have run."""
    import redis

    with closing(redis.Redis.from_url(redis_url)) as client_redis:
        channels = [f"hol:approval:{request_id}" for request_id in ids]
        while True:
            await asyncio.sleep(0.5)
            counts = [
                n
                for start in range(0, len(channels), 200)
                for _, n in client_redis.pubsub_numsub(*channels[start : start + 200])
            ]
            if all(counts):
                break
    response = await client.get(f"/api/v1/approvals/{ids[0]}", headers={"Authorization": f"Bearer {agent_token}"})
    if response.status_code != 200:
        raise RuntimeError(f"read answered {response.status_code}: {response.text[:200]}")


async def long_poll(base: str, path: str, agent_token: str, kept: list) -> tuple[int, bytes]:
    """One GET on a keep-alive connection of its own, as an agent's persistent HTTP client makes
    it (hol_agent keeps its connection for its next call), without an HTTP client library's
    per-response CPU, which on two cores would compete with the server for the machine and so be
    measured as the server's. The connection is left open in `kept`, closed after the round."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    kept.append(writer)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {agent_token}\r\n\r\n".encode())
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
    if b"content-length" in fields:
        body = await reader.readexactly(int(fields[b"content-length"]))
    else:  # chunked
        chunks = []
        while (size := int((await reader.readuntil(b"\r\n")).strip(), 16)) > 0:
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readexactly(2)
        body = b"".join(chunks)
    return int(head.split(b" ", 2)[1]), body


async def waiting_round(base: str, tokens: list[str], ids: list[str], pids: list[int], redis_url: str) -> dict:
    returned: dict[str, float] = {}
    rss_before = sum(rss_mb(pid) for pid in pids)
    kept: list = []
    async with httpx.AsyncClient(base_url=base, timeout=WAIT_SECONDS + 30) as client:

        async def wait(agent_token: str, request_id: str) -> None:
            path = f"/api/v1/approvals/{request_id}?wait={WAIT_SECONDS}"
            code, body = await long_poll(base, path, agent_token, kept)
            returned[request_id] = time.monotonic()
            if code != 200 or json.loads(body)["status"] != "cancelled":
                raise RuntimeError(f"wait answered {code}: {body[:200]!r}")

        waiters = [asyncio.create_task(wait(t, i)) for t, i in zip(tokens, ids, strict=True)]
        started = time.perf_counter()
        await settled(client, tokens[0], ids, redis_url)
        log(f"all {len(ids)} waiting after {time.perf_counter() - started:.1f} s")
        if returned:
            raise RuntimeError("an agent returned before any decision")
        redis_clients = [redis_connections_of(pid, redis_url) for pid in pids]
        rss_waiting = sum(rss_mb(pid) for pid in pids)
        cpu_before = cpu_seconds(pids)
        seconds, decided = await asyncio.to_thread(cancel_in_own_process, base, tokens, ids)
        await asyncio.gather(*waiters)
        cpu = cpu_seconds(pids) - cpu_before
    for writer in kept:  # the agents are done; their connections end before the next round
        writer.close()
    await asyncio.sleep(2)
    return {
        "latencies": [returned[i] - decided[i][0] for i in ids],
        "latencies_after_answer": [returned[i] - decided[i][1] for i in ids],
        "redis_clients": redis_clients,
        "rss_mb_added": rss_waiting - rss_before,
        "seconds": seconds,
        "cpu_seconds": cpu,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--web-processes", type=int, default=1)
    parser.add_argument("--database", default=DB_NAME)
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        log("set DATABASE_URL to a PostgreSQL server (any database; the bench makes its own)")
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 2 * args.agents + 256))  # one socket per waiter, plus the usual
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))  # daphne inherits it too
    os.environ["DATABASE_URL"] = fresh_database(base_url, args.database)
    # The waits must outlast the whole round of cancels, however long it takes here.
    os.environ.setdefault("HOL_APPROVAL_WAIT_MAX_SECONDS", str(WAIT_SECONDS))
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    os.environ.setdefault("HOL_RUN_WORK_IN_CELERY", "0")
    os.environ.setdefault("HOL_APPROVAL_RATE_PER_MINUTE", "100000")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hol.settings")
    import django

    from hol import datadir

    datadir.prepare()  # the data dir's keys, as manage.py makes them
    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from django.conf import settings
    from django.db import connections

    from hol.launcher import listening_socket, start_daphne, stop_all

    log(f"{args.agents} agents")
    accounts = setup_agents(args.agents)
    tokens = [token(account) for account in accounts]
    waited_ids = open_requests(accounts)
    alone_ids = open_requests(accounts)
    warm_ids = open_requests(accounts[:WARM_UP])
    connections.close_all()
    # Statistics for the fresh tables now, not from autovacuum in the middle of a timed round.
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")

    sock = listening_socket("127.0.0.1", 0)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    processes = start_daphne(sock, args.web_processes, env=dict(os.environ), quiet=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/api/v1/approvals/{alone_ids[0]}", headers={"Authorization": f"Bearer {tokens[0]}"})
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("daphne did not start") from None
                time.sleep(0.1)
        pids = [process.pid for process in processes]
        half = args.agents // 2
        cancel_in_own_process(base, tokens[:WARM_UP], warm_ids)
        log("alone (first half): cancels with nobody waiting")
        cpu_alone = cpu_seconds(pids)
        before_seconds, _ = cancel_in_own_process(base, tokens[:half], alone_ids[:half])
        cpu_alone = cpu_seconds(pids) - cpu_alone
        log("waiting: every agent long-polls, then each cancels its request in turn")
        waiting = asyncio.run(waiting_round(base, tokens, waited_ids, pids, settings.REDIS_URL))
        log("alone (second half): cancels with nobody waiting")
        cpu_after = cpu_seconds(pids)
        after_seconds, _ = cancel_in_own_process(base, tokens[half:], alone_ids[half:])
        cpu_alone += cpu_seconds(pids) - cpu_after
    finally:
        stop_all(processes)
        sock.close()

    latencies_ms = [value * 1000 for value in waiting["latencies"]]
    after_answer_ms = [value * 1000 for value in waiting["latencies_after_answer"]]
    with_waiters = args.agents / waiting["seconds"]
    without = args.agents / (before_seconds + after_seconds)
    result = {
        "bench": "waiters",
        "agents": args.agents,
        "web_processes": args.web_processes,
        "p50_ms": round(percentile(latencies_ms, 50), 2),
        "p99_ms": round(percentile(latencies_ms, 99), 2),
        "max_ms": round(max(latencies_ms), 2),
        "p50_after_answer_ms": round(percentile(after_answer_ms, 50), 2),
        "p99_after_answer_ms": round(percentile(after_answer_ms, 99), 2),
        "redis_clients_waiting": max(waiting["redis_clients"]),
        "redis_clients_per_process": waiting["redis_clients"],
        "rss_mb_added": round(waiting["rss_mb_added"], 1),
        "decisions_per_s_waiting": round(with_waiters, 1),
        "decisions_per_s_alone": round(without, 1),
        "decisions_per_s_alone_before_after": [
            round(half / before_seconds, 1),
            round((args.agents - half) / after_seconds, 1),
        ],
        # The web processes' CPU per decision: the wake-ups' share, apart from the machine's drift.
        "web_cpu_ms_per_decision_alone": round(cpu_alone / args.agents * 1000, 2),
        "web_cpu_ms_per_decision_waiting": round(waiting["cpu_seconds"] / args.agents * 1000, 2),
        "ops_ratio": round(with_waiters / without, 3),
    }
    result["goal_met"] = result["p99_ms"] <= 50 and result["ops_ratio"] >= 0.8 and result["redis_clients_waiting"] <= 4
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
