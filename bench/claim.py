"""Claim + complete throughput of the work queue on PostgreSQL (a benchmark, not a test).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.claim

creates its own database (hol_bench_claim, dropped and recreated), migrates it, and measures, with
8 concurrent processes each claiming and completing until the queue is empty:

  (a) raw       psycopg: UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED) RETURNING, then a
                completing UPDATE, on a plain copy of the work order table (no Django, no audit);
  (b) service   tasks.services.work_order_claim / work_order_complete;
  (c) http      POST /api/v1/queue/claim + /queue/complete through daphne with JWT, keep-alive;
  (d) floor     POST /bench/floor (JWT authentication and nothing else) twice per unit, same daphne
                (a view of the benchmark's own, mounted by bench.settings, which daphne runs with).

(c) and (d) run once per --web-processes value (daphne processes sharing one socket; the
connections are spread evenly over them). Every phase checks that each work order was claimed and
completed exactly once. The last line printed is one JSON object with the figures, and where
each phase's time goes: SQL statements, committed transactions (PostgreSQL's count, sealing
included) and client CPU milliseconds per unit (the claimer processes', or daphne's for HTTP).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from datetime import timedelta
from typing import NamedTuple

import psycopg

from bench._common import (
    FLOOR_PATH,
    JsonClient,
    StatementCounter,
    fresh_database,
    socket_owners,
    timed_processes,
    transactions_committed,
    wait_until_serving,
)

RAW_TABLE = "bench_raw_queue"
AGENT = "bench_agent"


class Outcome(NamedTuple):
    """What one claimer process did: the work order ids it claimed and completed, the SQL
    statements it sent and the CPU seconds it used."""

    ids: list[str]
    statements: int
    cpu_seconds: float


def cost_per_unit(outcomes: list[Outcome], count: int, commits: int) -> dict:
    return {
        "statements_per_unit": round(sum(o.statements for o in outcomes) / count, 2),
        "commits_per_unit": round(commits / count, 2),
        "client_cpu_ms_per_unit": round(1000 * sum(o.cpu_seconds for o in outcomes) / count, 3),
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- (a) raw psycopg ------------------------------------------------------------------------------


def raw_prepare(url: str, count: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        # Same columns, defaults and indexes (the partial claim index too), no foreign keys.
        conn.execute(f"CREATE TABLE {RAW_TABLE} (LIKE tasks_workorder INCLUDING ALL)")
        conn.execute(
            f"INSERT INTO {RAW_TABLE} (id, task_id, status, priority, enqueued_at, available_at, retry_count, "
            "max_retries, last_error) "
            "SELECT gen_random_uuid(), gen_random_uuid(), 'queued', (ARRAY[10, 20, 30])[1 + (n %% 3)], "
            "now() - make_interval(secs => n), now() - interval '1 second', 0, 3, '' "
            "FROM generate_series(1, %s) AS n",
            [count],
        )
        conn.execute(f"ANALYZE {RAW_TABLE}")


RAW_CLAIM = (
    f"UPDATE {RAW_TABLE} SET status = 'claimed', worker_id = %s, claimed_at = now(), "
    "lease_expires_at = now() + interval '60 seconds' "
    f"WHERE id = (SELECT id FROM {RAW_TABLE} WHERE status = 'queued' AND available_at <= now() "
    "ORDER BY priority DESC, enqueued_at ASC LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"
)
RAW_COMPLETE = (
    f"UPDATE {RAW_TABLE} SET status = 'completed', completed_at = now(), lease_expires_at = NULL "
    "WHERE id = %s AND status = 'claimed'"
)


def raw_claimer(step: str, index: int, url: str, worker_ids: list, *, state=None):
    if step == "setup":
        conn = psycopg.connect(url, autocommit=True, prepare_threshold=0)
        conn.execute("SELECT 1")
        return conn
    conn, worker_id, claimed = state, worker_ids[index], []
    cpu, statements = time.process_time(), 0
    while True:
        row = conn.execute(RAW_CLAIM, [worker_id]).fetchone()
        statements += 1
        if row is None:
            break
        statements += 1
        if conn.execute(RAW_COMPLETE, [row[0]]).rowcount != 1:
            raise RuntimeError(f"raw: {row[0]} was not claimed by us")
        claimed.append(str(row[0]))
    conn.close()
    return Outcome(claimed, statements, time.process_time() - cpu)


def raw_verify(url: str, count: int, claimed: list[list[str]]) -> None:
    ids = [work_order_id for chunk in claimed for work_order_id in chunk]
    if len(ids) != count or len(set(ids)) != count:
        raise AssertionError(f"raw: {len(ids)} claims, {len(set(ids))} distinct, expected {count}")
    with psycopg.connect(url) as conn:
        done = conn.execute(f"SELECT count(*) FROM {RAW_TABLE} WHERE status = 'completed'").fetchone()[0]
    if done != count:
        raise AssertionError(f"raw: {done} completed rows, expected {count}")


# --- HOL fixtures ---------------------------------------------------------------------------------


def make_agent(processes: int):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from tasks.models import Worker

    user = get_user_model().objects.create_user(username=AGENT, password=os.urandom(8).hex())
    user.groups.add(Group.objects.get_or_create(name="agent")[0])
    workers = Worker.objects.bulk_create(
        [Worker(name=f"bench-{i}", user=user, status=Worker.Status.IDLE) for i in range(processes)]
    )
    return user, [str(worker.pk) for worker in workers]


def make_batch(label: str, count: int, user) -> None:
    """`count` queued tasks with one queued work order each, of mixed priority, tagged `label`."""
    from django.utils import timezone

    from tasks.models import PRIORITY_RANK, Task, WorkOrder

    rng = random.Random(label)
    now = timezone.now()
    tasks, orders = [], []
    for i in range(count):
        priority = rng.choice(list(PRIORITY_RANK))
        task = Task(
            title=f"bench {label} {i}",
            objective="benchmark",
            target_repo="https://github.com/acme/bench",
            priority=priority,
            created_by=user,
            metadata={"bench": label},
            requested_by={"kind": "agent", "id": str(user.pk), "label": AGENT},
        )
        tasks.append(task)
        enqueued = now - timedelta(microseconds=count - i)
        orders.append(
            WorkOrder(
                task=task, priority=PRIORITY_RANK[priority], enqueued_at=enqueued, available_at=enqueued, max_retries=3
            )
        )
    Task.objects.bulk_create(tasks, batch_size=2000)
    WorkOrder.objects.bulk_create(orders, batch_size=2000)


def hol_verify(label: str, count: int, claimed: list[list[str]]) -> None:
    """Each work order of the batch claimed once, completed, one completed execution, task completed,
    one claimed and one completed audit entry; every worker idle again."""
    from django.db.models import Count, Q

    from audit.models import AuditEntry
    from tasks.models import Execution, Task, Worker, WorkOrder

    ids = [work_order_id for chunk in claimed for work_order_id in chunk]
    if len(ids) != count or len(set(ids)) != count:
        raise AssertionError(f"{label}: {len(ids)} claims, {len(set(ids))} distinct, expected {count}")
    orders = WorkOrder.objects.filter(task__metadata__bench=label)
    stats = orders.aggregate(total=Count("pk"), done=Count("pk", filter=Q(status=WorkOrder.Status.COMPLETED)))
    if stats != {"total": count, "done": count}:
        raise AssertionError(f"{label}: work orders {stats}, expected {count} completed")
    if {str(pk) for pk in orders.values_list("pk", flat=True)} != set(ids):
        raise AssertionError(f"{label}: the claimed ids are not the batch's work orders")
    executions = Execution.objects.filter(task__metadata__bench=label)
    if executions.count() != count or executions.filter(status=Execution.Status.COMPLETED).count() != count:
        raise AssertionError(f"{label}: executions are not one completed per work order")
    tasks_done = Task.objects.filter(metadata__bench=label, status=Task.Status.COMPLETED).count()
    if tasks_done != count:
        raise AssertionError(f"{label}: {tasks_done} tasks completed, expected {count}")
    batch_tasks = Task.objects.filter(metadata__bench=label).values("pk")
    for action in ("work_order.claimed", "work_order.completed"):
        recorded = AuditEntry.objects.filter(task_id__in=batch_tasks, action=action).count()
        if recorded != count:
            raise AssertionError(f"{label}: {recorded} {action} audit entries, expected {count}")
    if Worker.objects.exclude(status=Worker.Status.IDLE).exists():
        raise AssertionError(f"{label}: a worker is not idle after its last completion")


# --- (b) the service functions --------------------------------------------------------------------


def service_claimer(step: str, index: int, worker_ids: list, *, state=None):
    from django.contrib.auth import get_user_model

    from audit.services import audit_seal_pending
    from tasks import services

    if step == "setup":
        actor = get_user_model().objects.get(username=AGENT)
        counter = StatementCounter()
        counter.watch_every_connection()
        return actor, counter
    (actor, counter), worker_id, claimed = state, worker_ids[index], []
    cpu, statements = time.process_time(), counter.count
    while True:
        work_order = services.work_order_claim(actor=actor, worker_id=worker_id)
        if work_order is None:
            break
        services.work_order_complete(actor=actor, work_order_id=work_order.pk, output="")
        claimed.append(str(work_order.pk))
    audit_seal_pending()  # what the background sealer has not sealed yet belongs to the units' cost
    return Outcome(claimed, counter.count - statements, time.process_time() - cpu)


# --- (c) and (d) over HTTP ------------------------------------------------------------------------


def connect_balanced(port: int, token: str, spread) -> JsonClient:
    """Open a keep-alive connection, reconnecting until it lands on a daphne process that has fewer
    than its fair share, so N processes really serve the clients (accept() is first come)."""
    daphne_pids, slots, lock, share = spread
    for _ in range(500):
        client = JsonClient(port, token)
        client.post(FLOOR_PATH)
        owner = socket_owners(daphne_pids).get(client.local_port())
        if owner is not None:
            with lock:
                slot = daphne_pids.index(owner)
                if slots[slot] < share:
                    slots[slot] += 1
                    return client
        client.close()
        time.sleep(0.01)
    raise RuntimeError("could not spread the connections over the daphne processes")


def read_counters(client: JsonClient) -> dict:
    status, counters = client.request("GET", "/bench/counters")
    if status != 200:
        raise RuntimeError(f"counters answered {status}")
    return counters


def http_client(step: str, index: int, mode: str, port: int, token: str, worker_ids: list, units: list, spread, *,
                state=None):  # fmt: skip
    if step == "setup":
        client = connect_balanced(port, token, spread)
        for _ in range(3):
            client.post(FLOOR_PATH)
        return client, read_counters(client)
    (client, before), done = state, []
    if mode == "floor":
        for _ in range(2 * units[index]):
            status, _ = client.post(FLOOR_PATH)
            if status != 200:
                raise RuntimeError(f"the floor answered {status}")
            done.append("")
    else:
        worker_id = worker_ids[index]
        while True:
            status, body = client.post("/api/v1/queue/claim", {"worker_id": worker_id})
            if status == 204:
                break
            if status != 200:
                raise RuntimeError(f"claim answered {status}: {body}")
            status, answer = client.post("/api/v1/queue/complete", {"work_order_id": body["id"], "output": ""})
            if status != 200 or answer["status"] != "completed":
                raise RuntimeError(f"complete answered {status}: {answer}")
            done.append(body["id"])
    after = read_counters(client)
    client.close()
    return done, before, after


def daphne_cost(outcomes: list, count: int) -> dict:
    """Statements and CPU of the daphne processes per unit, from each process's counters read by
    its clients before and after the run (the widest span seen for each process)."""
    first: dict[int, dict] = {}
    last: dict[int, dict] = {}
    for _, before, after in outcomes:
        pid = before["pid"]
        if pid not in first or before["statements"] < first[pid]["statements"]:
            first[pid] = before
        if pid not in last or after["statements"] > last[pid]["statements"]:
            last[pid] = after
    statements = sum(last[pid]["statements"] - first[pid]["statements"] for pid in first)
    cpu = sum(last[pid]["cpu_seconds"] - first[pid]["cpu_seconds"] for pid in first)
    return {"statements_per_unit": round(statements / count, 2), "server_cpu_ms_per_unit": round(1000 * cpu / count, 3)}


def run_http(*, web: int, processes: int, count: int, user, worker_ids: list[str], url: str) -> dict:
    """(d) then (c) against `web` daphne processes sharing one listening socket."""
    import multiprocessing

    from rest_framework_simplejwt.tokens import AccessToken

    from hol.launcher import listening_socket, start_daphne, stop_all

    label = f"http{web}"
    make_batch(label, count, user)
    token = str(AccessToken.for_user(user))
    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    # Web processes get a connection pool (see HOL_DB_POOL in settings) unless told otherwise, and
    # the benchmark's settings, which add its floor view and counters to HOL's URLs.
    env = {"HOL_DB_POOL": "1", **os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings"}
    daphnes = start_daphne(sock, web, env=env, quiet=True)
    context = multiprocessing.get_context("fork")
    units = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    figures: dict = {"web_processes": web}
    try:
        wait_until_serving(port, token)
        time.sleep(2.0)  # every daphne process up and accepting before the connections are spread
        pids = [proc.pid for proc in daphnes]
        for mode in ("floor", "http"):
            slots = context.Array("i", web)
            spread = (pids, slots, context.Lock(), math.ceil(processes / web))
            seconds, outcomes = timed_processes(http_client, processes, (mode, port, token, worker_ids, units, spread))
            figures[f"{mode}_connections_per_daphne"] = list(slots)
            figures[f"{mode}_cost"] = daphne_cost(outcomes, count)
            log(f"  web={web} {mode}: {seconds:.1f}s {figures[f'{mode}_cost']}")
            if mode == "floor":
                calls = sum(len(done) for done, _, _ in outcomes)
                if calls != 2 * count:
                    raise AssertionError(f"floor: {calls} requests, expected {2 * count}")
                figures["http_floor_ops_s"] = round(count / seconds, 1)
            else:
                hol_verify(label, count, [done for done, _, _ in outcomes])
                figures["http_ops_s"] = round(count / seconds, 1)
    finally:
        stop_all(daphnes)
        sock.close()
    figures["http_ratio"] = round(figures["http_ops_s"] / figures["http_floor_ops_s"], 3)
    return figures


# --- main -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-orders", type=int, default=20_000, help="work orders per phase (default 20,000)")
    parser.add_argument("--processes", type=int, default=8, help="concurrent claimer/client processes")
    parser.add_argument(
        "--web-processes",
        default=str(os.cpu_count() or 1),
        help="comma-separated daphne process counts to measure (c) and (d) with, e.g. 1,2,3 "
        "(default: one per core); the best http_ratio is reported on top",
    )
    parser.add_argument("--database", default="hol_bench_claim", help="database to (re)create for the run")
    parser.add_argument("--skip", default="", help="comma-separated phases to skip: raw,service,http")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        parser.error("set DATABASE_URL to a PostgreSQL server (its database name is replaced by --database)")
    skip = set(filter(None, args.skip.split(",")))
    webs = [int(n) for n in args.web_processes.split(",")]
    count, processes = args.work_orders, args.processes

    log(f"creating and migrating {args.database} ...")
    url = fresh_database(os.environ["DATABASE_URL"], args.database)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("HOL_JWT_ACCESS_SECONDS", "3600")  # a token that outlives the run
    # The benchmark is the agent: no Celery worker races it for the work it enqueues.
    os.environ.setdefault("HOL_RUN_WORK_IN_CELERY", "0")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hol.settings")
    import django

    from hol import datadir

    datadir.prepare()  # the data dir's keys, as manage.py makes them
    django.setup()
    from django.conf import settings

    user, worker_ids = make_agent(processes)
    result: dict = {}

    if "raw" not in skip:
        raw_prepare(url, count)
        commits = transactions_committed(url)
        seconds, outcomes = timed_processes(raw_claimer, processes, (url, worker_ids))
        raw_verify(url, count, [o.ids for o in outcomes])
        result["raw_ops_s"] = round(count / seconds, 1)
        result["raw_cost"] = cost_per_unit(outcomes, count, transactions_committed(url) - commits)
        log(f"raw: {seconds:.1f}s, {result['raw_ops_s']}/s {result['raw_cost']}")

    if "service" not in skip:
        make_batch("service", count, user)
        commits = transactions_committed(url)
        seconds, outcomes = timed_processes(service_claimer, processes, (worker_ids,))
        hol_verify("service", count, [o.ids for o in outcomes])
        result["service_ops_s"] = round(count / seconds, 1)
        result["service_cost"] = cost_per_unit(outcomes, count, transactions_committed(url) - commits)
        log(f"service: {seconds:.1f}s, {result['service_ops_s']}/s {result['service_cost']}")

    if "http" not in skip:
        runs = []
        for web in webs:
            runs.append(run_http(web=web, processes=processes, count=count, user=user, worker_ids=worker_ids, url=url))
            log(f"http web={web}: {runs[-1]}")
        best = max(runs, key=lambda run: run["http_ops_s"])
        keys = ("http_ops_s", "http_floor_ops_s", "web_processes", "http_cost", "floor_cost")
        result.update({key: best[key] for key in keys})
        result["http_runs"] = runs

    if "raw_ops_s" in result and "service_ops_s" in result:
        result["service_ratio"] = round(result["service_ops_s"] / result["raw_ops_s"], 3)
    if "http_ops_s" in result:
        result["http_ratio"] = round(result["http_ops_s"] / result["http_floor_ops_s"], 3)
    result.update(
        work_orders=count,
        processes=processes,
        debug=settings.DEBUG,
        all_completed_exactly_once=True,  # every phase verified it, or the run raised
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
