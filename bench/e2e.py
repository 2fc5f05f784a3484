"""End to end: tasks created through the service, carried out by real Celery workers running a
trivial agent command (a benchmark, not a test).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python -m bench.e2e [--tasks 200] [--concurrency 2] [--database hol_bench_e2e]

creates its own database (dropped and recreated), starts one `celery -A hol worker` with
`--concurrency` pool processes, creates `--tasks` tasks (each enqueued; the work order goes to
Celery on commit) and waits until every one is completed. The agent command is a small Python
script (a SHA-256 of 1 MB: the trivial unit of work) that notes the wall-clock time of its first
and last statement. Per task:

  overhead = (agent started - task created) + (task completed - agent exited)

so it holds the queue, Celery, the runner's bookkeeping, and the agent interpreter's own start
(which the anchor pays too). Two phases in one run:

- bulk: `--tasks` tasks created at once; `tasks_per_s` is creation of the first to completion of
  the last. Most of these tasks wait in the queue behind the pool, so their creation-to-start
  (`median_overhead_bulk_ms`) is mostly queueing, not HOL's overhead;
- paced: `--tasks` tasks again, one creator per pool process, each creating its next task when
  its last one completed, so no task waits for a busy pool: `median_overhead_ms` is what HOL adds
  to a task a free worker can take.
 The anchor, in the same run once the workers are stopped: the same
command run `--tasks` times by a plain loop over subprocess.run (the floor of starting it at all).
Without REDIS_URL, the embedded Redis of the data dir is used. The last line printed is one JSON
object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench._common import ROOT, fresh_database
from hol.launcher import stop_all

AGENT_SCRIPT = """\
import hashlib, os, time
started = time.time()
hashlib.sha256(b"x" * 1_000_000).hexdigest()
with open(os.path.join({out!r}, os.environ["HOL_TASK_ID"]), "w") as f:
    f.write(f"{{started}} {{time.time()}}")
"""
WAIT_SECONDS = 600
QUIET = ("--without-gossip", "--without-mingle", "--without-heartbeat")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ms(values: list[float]) -> float:
    return round(1000 * statistics.median(values), 2)


def start_worker(env: dict, concurrency: int, log_path: Path) -> subprocess.Popen:
    with log_path.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "hol", "worker", "-c", str(concurrency), "-l", "INFO", *QUIET],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while "ready." not in log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the Celery worker did not start; see {log_path}")
        time.sleep(0.1)
    return process


def make_submitter():
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user("bench_e2e_developer", password=None)
    user.groups.add(Group.objects.get(name="developer"))
    return user


def create_tasks(user, count: int) -> dict[str, float]:
    """Create and enqueue `count` tasks; the wall-clock time each creation began, by task id."""
    from tasks import services as task_services

    created: dict[str, float] = {}
    for index in range(count):
        began = time.time()
        task, _ = task_services.task_create(
            actor=user,
            payload={
                "title": f"bench e2e {index}",
                "objective": "Hash a megabyte",
                "target": {"repo": "https://github.com/acme/shop"},
                "assigned_to": user.username,
            },
        )
        task_services.work_order_enqueue(actor=user, task_id=task.pk, max_retries=0)
        created[str(task.pk)] = began
    return created


def wait_until_done(ids: list[str], *, poll: float = 0.2) -> dict[str, tuple[str, float | None]]:
    from tasks.models import Task

    deadline = time.monotonic() + WAIT_SECONDS
    final = {"completed", "failed", "cancelled"}
    while True:
        rows = {
            str(pk): (status, done)
            for pk, status, done in Task.objects.filter(pk__in=ids).values_list("pk", "status", "completed_at")
        }
        if all(rows[pk][0] in final for pk in ids):
            return {pk: (status, done.timestamp() if done else None) for pk, (status, done) in rows.items()}
        if time.monotonic() > deadline:
            pending = sum(rows[pk][0] not in final for pk in ids)
            raise RuntimeError(f"{pending} tasks still not finished after {WAIT_SECONDS} s")
        time.sleep(poll)


def paced(user, count: int, creators: int) -> tuple[dict[str, float], dict[str, tuple[str, float | None]]]:
    """`creators` threads, each creating a task once its previous one finished, `count` in all."""
    from django.db import connection

    created: dict[str, float] = {}
    finished: dict[str, tuple[str, float | None]] = {}
    left = iter(range(count))
    lock = threading.Lock()

    def creator() -> None:
        try:
            while True:
                with lock:
                    if next(left, None) is None:
                        return
                one = create_tasks(user, 1)
                finished.update(wait_until_done(list(one), poll=0.05))
                created.update(one)
        finally:
            connection.close()

    threads = [threading.Thread(target=creator) for _ in range(creators)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return created, finished


def overheads_of(created: dict[str, float], finished: dict, out: Path) -> tuple[list, list, list]:
    """Per task: created → agent started, agent exited → completed, and their sum (seconds)."""
    before, after, total = [], [], []
    for pk, began in created.items():
        agent_started, agent_exited = map(float, (out / pk).read_text().split())
        before.append(agent_started - began)
        after.append(finished[pk][1] - agent_exited)
        total.append(before[-1] + after[-1])
    return before, after, total


def anchor(command: list[str], count: int) -> list[float]:
    env = {"PATH": os.environ["PATH"]}
    durations = []
    for index in range(count):
        began = time.perf_counter()
        subprocess.run(command, env={**env, "HOL_TASK_ID": f"anchor-{index}"}, check=True)
        durations.append(time.perf_counter() - began)
    return durations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2, help="Celery pool processes")
    parser.add_argument("--database", default="hol_bench_e2e")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        sys.exit("bench.e2e needs DATABASE_URL (PostgreSQL)")
    if args.tasks < 1:
        sys.exit("--tasks must be at least 1")

    work = Path(tempfile.mkdtemp(prefix="hol-bench-e2e-"))  # removed after a successful run
    os.environ.setdefault("HOL_DATA_DIR", str(work / "data"))
    os.environ["DATABASE_URL"] = fresh_database(os.environ["DATABASE_URL"], args.database)
    os.environ.setdefault("HOL_ALLOWED_REPO_PREFIXES", "https://github.com/acme/")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hol.settings")
    from hol import datadir

    datadir.prepare()
    import django

    django.setup()
    from django.core.management import call_command

    from hol.embedded_redis import start_if_embedded

    start_if_embedded()
    call_command("bootstrap_roles", verbosity=0)

    out = work / "agent-times"
    out.mkdir()
    script = work / "agent.py"
    script.write_text(AGENT_SCRIPT.format(out=str(out)))
    command = [sys.executable, str(script)]
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOL_AGENT")}
    env.update(
        HOL_AGENT_COMMAND=f"{sys.executable} {script}",
        HOL_TRACE_ROOT=str(work / "traces"),
        HOL_API_URL="http://127.0.0.1:9",  # the agent calls no API
    )
    worker = start_worker(env, args.concurrency, work / "worker.log")
    try:
        user = make_submitter()
        log(f"creating {args.tasks} tasks; {args.concurrency} Celery pool processes")
        first = time.time()
        created = create_tasks(user, args.tasks)
        finished = wait_until_done(list(created))
        log(f"paced: {args.tasks} tasks, each created when its creator's last one completed")
        paced_created, paced_finished = paced(user, args.tasks, args.concurrency)
    finally:
        stop_all([worker], timeout=30)

    for outcome in (finished, paced_finished):
        statuses = [status for status, _ in outcome.values()]
        if statuses.count("completed") != args.tasks:
            sys.exit(f"not every task completed: {sorted(set(statuses))}; see {work / 'worker.log'}")
    from tasks.models import WorkOrder

    claimed = {str(task): at.timestamp() for task, at in WorkOrder.objects.values_list("task_id", "claimed_at")}
    _, _, bulk_overheads = overheads_of(created, finished, out)
    before, after, overheads = overheads_of(paced_created, paced_finished, out)
    # From the work order's claim instead of the task's creation (the bulk phase's queueing left out).
    bulk_after_claim = [
        total - (agent_started - began) + (agent_started - claimed[pk])
        for (pk, began), total in zip(created.items(), bulk_overheads, strict=True)
        for agent_started in [float((out / pk).read_text().split()[0])]
    ]
    last = max(done for _, done in finished.values())
    tasks_per_s = round(args.tasks / (last - first), 2)

    log(f"anchor: the agent command run {args.tasks} times by subprocess.run")
    anchor_runs = anchor(command, args.tasks)
    figures = {
        "tasks": args.tasks,
        "celery_processes": args.concurrency,
        "tasks_per_s": tasks_per_s,
        "median_overhead_ms": ms(overheads),
        "median_created_to_agent_started_ms": ms(before),
        "median_agent_exited_to_completed_ms": ms(after),
        "p90_overhead_ms": round(1000 * statistics.quantiles(overheads, n=10)[-1], 2) if len(overheads) > 1 else None,
        "median_overhead_bulk_ms": ms(bulk_overheads),
        "median_overhead_bulk_after_claim_ms": ms(bulk_after_claim),
        "anchor_median_ms": ms(anchor_runs),
        "anchor_runs_per_s": round(len(anchor_runs) / sum(anchor_runs), 2),
    }
    log(
        f"tasks/s {tasks_per_s}; median overhead {figures['median_overhead_ms']} ms; "
        f"anchor {figures['anchor_median_ms']} ms"
    )
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
