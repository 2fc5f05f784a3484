"""How fast the pages people work in render against a large database (not a test).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
      .venv/bin/python -m bench.pages [--tasks 100000] [--messages 300000] [--audit 1000000] \
      [--renders 50] [--database hol_bench_pages]

creates its own database (dropped and recreated), migrates it, and fills it untimed with COPY:
tasks (one work order each, an execution for each claimed one), workers and agent sessions, chat
messages spread over the tasks (agents' questions among them, most answered) plus one busy task
with thousands, a sealed audit chain (real seq, prev_hash, hash and canonical text, so
`verify_audit` passes) with a signed checkpoint every 1,000 entries, and notifications for the
person signed in. Then each page is rendered in this process through Django's test Client, signed
in as a tech lead who is staff: the dashboard, the task list, the busy task's page, the audit page
(and a filtered task list), each `--renders` times after two warm-up renders, timing every render
and counting its SQL statements (CaptureQueriesContext). The last line printed is one JSON object
with `p95_ms` and `queries` per page and `max_p95_ms`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench._common import fresh_database

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "hol_bench_pages"
WORKERS = 40
SESSIONS = 400
BUSY_TASK_MESSAGES = 3000
NOTIFICATIONS = 2000
CHECKPOINT_EVERY = 1000
REPOS = [f"https://github.com/acme/repo-{i}" for i in range(200)]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def jsonb(value):
    from psycopg.types.json import Jsonb

    return Jsonb(value)


def copy_rows(cursor, table: str, columns: tuple[str, ...], rows) -> int:
    count = 0
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def generate(url: str, *, tasks: int, messages: int, audit: int, lead_id: int, agent_id: int) -> dict:
    """Fill the database; return what the pages are rendered with (the busy task's id)."""
    import psycopg

    from audit.chain import (
        CHAINED_FIELDS,
        GENESIS_HASH,
        canonical_bytes,
        chained_fields,
        checkpoint_signature,
        entry_hash,
        format_timestamp,
    )

    rng = random.Random(7)
    now = datetime.now(UTC)
    start = now - timedelta(days=120)
    span = (now - start).total_seconds()
    task_ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(tasks)]
    created = sorted(start + timedelta(seconds=rng.random() * span) for _ in range(tasks))
    worker_ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(WORKERS)]
    statuses = ["completed"] * 80 + ["failed"] * 5 + ["cancelled"] * 3 + ["queued"] * 8 + ["in_progress"] * 4
    wo_status = {"completed": "completed", "failed": "failed", "cancelled": "cancelled", "queued": "queued"}
    priorities = [("high", 30), ("normal", 20), ("normal", 20), ("low", 10)]
    busy = task_ids[-1]
    timings: dict[str, float] = {}

    with psycopg.connect(url, autocommit=False) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        copy_rows(
            cur,
            "tasks_worker",
            ("id", "name", "user_id", "status", "last_heartbeat_at", "created_at", "updated_at"),
            (
                (w, f"worker-{i}", agent_id, rng.choice(["idle", "busy", "busy", "offline"]), now, start, now)
                for i, w in enumerate(worker_ids)
            ),
        )
        task_rows, wo_rows, ex_rows = [], [], []
        for i, (task_id, at) in enumerate(zip(task_ids, created, strict=True)):
            status = "in_progress" if task_id == busy else rng.choice(statuses)
            priority, rank = rng.choice(priorities)
            done = at + timedelta(minutes=rng.randint(1, 60)) if status in ("completed", "failed") else None
            task_rows.append(
                (
                    task_id,
                    f"Task {i}: fix the thing in module {i % 997}",
                    f"Make module {i % 997} behave",
                    "",
                    rng.choice(["feature", "bugfix", "test", "docs"]),
                    "code_change",
                    priority,
                    status,
                    jsonb({"kind": "agent", "id": agent_id, "label": "bench_agent"}),
                    agent_id,
                    lead_id if i % 10 == 0 else None,
                    rng.choice(REPOS),
                    "main",
                    "",
                    900,
                    False,
                    False,
                    jsonb({}),
                    jsonb({}),
                    jsonb([]),
                    None,
                    at,
                    done or at,
                    done,
                    "",
                )
            )
            held = status in ("completed", "failed", "in_progress")
            worker = rng.choice(worker_ids) if held else None
            wo_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            state = wo_status.get(status, rng.choice(["claimed", "running"]))
            wo_rows.append((wo_id, task_id, worker, state, rank, at, at, at if held else None, done, None, 0, 3, ""))
            if held:
                ex_state = {"completed": "completed", "failed": "failed"}.get(status, "running")
                ex_rows.append(
                    (
                        uuid.uuid4(),
                        task_id,
                        wo_id,
                        worker,
                        None,
                        1,
                        ex_state,
                        at,
                        done,
                        0 if ex_state == "completed" else None,
                        "ok\n" * 5,
                        "",
                    )
                )
        copy_rows(
            cur,
            "tasks_task",
            (
                "id",
                "title",
                "objective",
                "description",
                "task_type",
                "operation",
                "priority",
                "status",
                "requested_by",
                "created_by_id",
                "assigned_to_id",
                "target_repo",
                "target_ref",
                "target_path",
                "time_budget_seconds",
                "allow_network",
                "allow_secrets",
                "inputs",
                "metadata",
                "tags",
                "idempotency_key",
                "created_at",
                "updated_at",
                "completed_at",
                "callback_url",
            ),
            task_rows,
        )
        copy_rows(
            cur,
            "tasks_workorder",
            (
                "id",
                "task_id",
                "worker_id",
                "status",
                "priority",
                "enqueued_at",
                "available_at",
                "claimed_at",
                "completed_at",
                "lease_expires_at",
                "retry_count",
                "max_retries",
                "last_error",
            ),
            wo_rows,
        )
        copy_rows(
            cur,
            "tasks_execution",
            (
                "id",
                "task_id",
                "work_order_id",
                "worker_id",
                "agent_session_id",
                "attempt",
                "status",
                "started_at",
                "completed_at",
                "exit_code",
                "output",
                "trace_path",
            ),
            ex_rows,
        )
        active = [row for row in task_rows if row[7] == "in_progress"] or task_rows
        copy_rows(
            cur,
            "tasks_agentsession",
            (
                "id",
                "session_id",
                "worker_id",
                "task_id",
                "status",
                "last_activity_at",
                "created_at",
                "terminated_at",
                "termination_reason",
            ),
            (
                (
                    uuid.uuid4(),
                    f"session-{i}",
                    rng.choice(worker_ids),
                    rng.choice(active)[0],
                    "active" if i % 10 == 0 else "terminated",
                    now - timedelta(seconds=i),
                    now - timedelta(hours=1),
                    None,
                    "",
                )
                for i in range(SESSIONS)
            ),
        )
        conn.commit()
        timings["tasks_s"] = time.perf_counter() - started
        log(f"{tasks} tasks, {len(wo_rows)} work orders, {len(ex_rows)} executions in {timings['tasks_s']:.1f}s")

        # Chat: ids in time order; one question in 50, nine in ten of them answered by the lead.
        started = time.perf_counter()
        busy_count = min(BUSY_TASK_MESSAGES, messages // 2)
        spread = messages - busy_count
        per_task = sorted(rng.randrange(tasks) for _ in range(spread))
        columns = (
            "id",
            "task_id",
            "sender_id",
            "sender_type",
            "message_type",
            "event_type",
            "stage",
            "content",
            "data",
            "session_id",
            "parent_id",
            "created_at",
        )
        events = ["log"] * 6 + ["status", "code_change", "test_result", "summary"]

        def chat_rows():
            next_id = 1
            pending_question = None
            for n in range(messages):
                if n < spread:
                    task_index = per_task[n]
                    task_id, at = task_ids[task_index], created[task_index] + timedelta(seconds=n % 600)
                else:
                    task_id, at = busy, now - timedelta(seconds=messages - n)
                if pending_question is not None and pending_question[1] == task_id:
                    row = (
                        next_id,
                        task_id,
                        lead_id,
                        "human",
                        "response",
                        "message",
                        "",
                        "Yes, go ahead.",
                        jsonb({}),
                        "",
                        pending_question[0],
                        at,
                    )
                    pending_question = None
                elif n % 50 == 0:
                    row = (
                        next_id,
                        task_id,
                        agent_id,
                        "worker",
                        "request",
                        "message",
                        "",
                        f"Question {n}: may I change the public API?",
                        jsonb({}),
                        "session-0",
                        None,
                        at,
                    )
                    pending_question = (next_id, task_id) if n % 500 else None  # one in ten stays open
                else:
                    event = rng.choice(events)
                    data = {"diff": "--- a/x.py\n+++ b/x.py\n-old\n+new\n"} if event == "code_change" else {}
                    row = (
                        next_id,
                        task_id,
                        agent_id,
                        "worker",
                        "status",
                        event,
                        "implement",
                        f"Step {n}: edited module {n % 997} and ran the tests",
                        jsonb(data),
                        "session-0",
                        None,
                        at,
                    )
                yield row
                next_id += 1

        copy_rows(cur, "chat_chatmessage", columns, chat_rows())
        cur.execute("SELECT setval(pg_get_serial_sequence('chat_chatmessage', 'id'), %s)", [max(messages, 1)])
        copy_rows(
            cur,
            "notifications_notification",
            ("user_id", "kind", "message", "link", "level", "is_read", "created_at", "related_type_id", "related_id"),
            (
                (
                    lead_id,
                    "question",
                    f"An agent asked a question ({i})",
                    "/",
                    "info",
                    i % 3 != 0,
                    now - timedelta(minutes=i),
                    None,
                    "",
                )
                for i in range(NOTIFICATIONS)
            ),
        )
        conn.commit()
        timings["chat_s"] = time.perf_counter() - started
        log(f"{messages} chat messages ({busy_count} on the busy task) in {timings['chat_s']:.1f}s")

        # The audit chain, sealed as the sequencer would have sealed it.
        started = time.perf_counter()
        audit_start = now - timedelta(seconds=audit)
        checkpoints = []
        actions = [
            ("tasks", "task.created", "task"),
            ("tasks", "work_order.claimed", "workorder"),
            ("tasks", "work_order.completed", "workorder"),
            ("chat", "chat.message_posted", "chatmessage"),
        ]

        def audit_rows():
            prev_hash = GENESIS_HASH
            for seq in range(1, audit + 1):
                component, action, target_type = actions[seq % len(actions)]
                task_id = task_ids[seq % tasks]
                values = (
                    component,
                    action,
                    "bench_agent",
                    "agent",
                    "",
                    target_type,
                    str(uuid.UUID(int=seq)),
                    task_id,
                    audit_start + timedelta(seconds=seq),
                    {"attempt": seq % 4},
                )
                text = canonical_bytes(chained_fields(seq, prev_hash, values))
                digest = entry_hash(text)
                yield (*values[:9], jsonb(values[9]), seq, prev_hash, digest, text.decode())
                if seq % CHECKPOINT_EVERY == 0:
                    checkpoints.append((seq, digest, values[8]))
                prev_hash = digest

        copy_rows(
            cur,
            "audit_auditentry",
            (*CHAINED_FIELDS, "seq", "prev_hash", "hash", "canonical"),
            audit_rows(),
        )
        copy_rows(
            cur,
            "audit_auditcheckpoint",
            ("seq", "hash", "created_at", "signature"),
            (
                (seq, digest, at, checkpoint_signature(seq=seq, head_hash=digest, created_at=format_timestamp(at)))
                for seq, digest, at in checkpoints
            ),
        )
        conn.commit()
        timings["audit_s"] = time.perf_counter() - started
        log(f"{audit} sealed audit entries, {len(checkpoints)} checkpoints in {timings['audit_s']:.1f}s")

        started = time.perf_counter()
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE")  # what autovacuum would have done on a database this old
        timings["vacuum_s"] = time.perf_counter() - started
    return {"busy_task": busy, "timings": {key: round(value, 1) for key, value in timings.items()}}


def render(client, path: str, renders: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times, queries, sql = [], set(), []
    for attempt in range(renders + 2):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(path)
            elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}")
        if attempt >= 2:  # two warm-up renders: templates compiled, connection open
            times.append(elapsed * 1000)
            queries.add(len(captured))
            sql.append(sum(float(q["time"]) for q in captured.captured_queries) * 1000)
    times.sort()
    slowest = sorted(captured.captured_queries, key=lambda q: -float(q["time"]))[:3]
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 1),
        "queries": max(queries),
        # Time in the database as Django saw it (the rest is Python: view, templates).
        "sql_p50_ms": round(statistics.median(sql), 1),
        "slowest_sql": [f"{q['time']}s {q['sql'][:160]}" for q in slowest],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--audit", type=int, default=1_000_000)
    parser.add_argument("--renders", type=int, default=50)
    parser.add_argument("--database", default=DB_NAME)
    args = parser.parse_args()
    if args.tasks < 10 or args.messages < 100 or args.audit < 10:
        sys.exit("need at least 10 tasks, 100 messages and 10 audit entries")
    base_url = os.environ.get("DATABASE_URL")
    if not base_url or not base_url.startswith("postgres"):
        sys.exit("set DATABASE_URL to a PostgreSQL server (the benchmark creates its own database there)")
    url = fresh_database(base_url, args.database)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hol.settings")
    sys.path.insert(0, str(ROOT))
    import django

    from hol import datadir

    datadir.prepare()  # the data dir's keys, as manage.py makes them
    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.test import Client

    users = get_user_model().objects
    lead = users.create_user("bench_lead", is_staff=True)
    lead.groups.add(Group.objects.get_or_create(name="tech_lead")[0])
    agent = users.create_user("bench_agent")
    agent.groups.add(Group.objects.get_or_create(name="agent")[0])
    made = generate(url, tasks=args.tasks, messages=args.messages, audit=args.audit, lead_id=lead.pk, agent_id=agent.pk)

    client = Client()
    client.force_login(lead)
    pages = {
        "dashboard": "/",
        "task_list": "/tasks/",
        "task_page": f"/tasks/{made['busy_task']}/",
        "audit": "/audit/",
        "task_list_filtered": "/tasks/?status=failed&priority=high",
        # A substring of the repository: on PostgreSQL the trigram index of tasks 0007 serves it.
        "task_list_by_repo": "/tasks/?repo=repo-17",
    }
    results = {}
    for name, path in pages.items():
        results[name] = render(client, path, args.renders)
        figures = results[name]
        log(
            f"{name:20s} p50 {figures['p50_ms']:7.1f} ms  p95 {figures['p95_ms']:7.1f} ms  {figures['queries']} queries"
            f"  sql p50 {figures['sql_p50_ms']} ms"
        )
        for line in figures["slowest_sql"]:
            log(f"    {line}")
    print(
        json.dumps(
            {
                "benchmark": "pages",
                "tasks": args.tasks,
                "messages": args.messages,
                "audit": args.audit,
                "renders": args.renders,
                "generation": made["timings"],
                "p50_ms": {name: r["p50_ms"] for name, r in results.items()},
                "p95_ms": {name: r["p95_ms"] for name, r in results.items()},
                "queries": {name: r["queries"] for name, r in results.items()},
                "sql_p50_ms": {name: r["sql_p50_ms"] for name, r in results.items()},
                "max_p95_ms": max(r["p95_ms"] for r in results.values()),
            }
        )
    )


if __name__ == "__main__":
    main()
