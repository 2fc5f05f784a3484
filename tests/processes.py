"""Real concurrency for tests: OS processes sharing the test database, forked or started anew."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from django.db import connections

from hol import embedded_redis


def database_url(settings_dict: dict) -> str:
    """The DATABASE_URL that points a process HOL starts at the PostgreSQL database of `settings_dict`."""
    credentials = quote(settings_dict["USER"] or "", safe="")
    if settings_dict.get("PASSWORD"):
        credentials += ":" + quote(settings_dict["PASSWORD"], safe="")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{credentials}@{host}:{port}/{settings_dict['NAME']}"


def release_connections_before_fork() -> None:
    """Children must open their own connections: a socket shared across fork corrupts both ends.
    With HOL_DB_POOL the pool (and its threads) would be inherited too, so it is closed as well."""
    connections.close_all()
    for conn in connections.all(initialized_only=True):
        if conn.settings_dict.get("OPTIONS", {}).get("pool"):
            conn.close_pool()


def run_forked(target: Callable, args_per_process: list[tuple], *, timeout: float) -> list:
    """Fork one process per args tuple, each calling `target(*args, start_barrier, results_queue)`
    and putting one report on the queue; return the reports, after checking every child exited 0.
    Children still alive after `timeout` are killed, so a hung child fails the test instead of
    hanging the suite."""
    release_connections_before_fork()
    context = multiprocessing.get_context("fork")
    start = context.Barrier(len(args_per_process))
    results = context.Queue()
    processes = [context.Process(target=target, args=(*args, start, results)) for args in args_per_process]
    try:
        for process in processes:
            process.start()
        reports = [results.get(timeout=timeout) for _ in processes]
        for process in processes:
            process.join(timeout=timeout)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
    exit_codes = [process.exitcode for process in processes]
    assert exit_codes == [0] * len(processes), f"child exit codes: {exit_codes}"
    return reports


def _exited(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")  # a daemonized server nobody reaps stays a zombie


def stop_and_remove(data_dir: Path) -> None:
    """Stop the embedded server of `data_dir` and wait for it to exit before deleting the dir
    (it writes its log while shutting down, which would leave the dir behind)."""
    try:
        pid = int((data_dir / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        pid = None
    embedded_redis.stop(data_dir / "redis.sock")
    deadline = time.monotonic() + 10
    while pid is not None and not _exited(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    shutil.rmtree(data_dir, ignore_errors=True)


# --- approvers deciding at the same moment ---

ROOT = Path(__file__).resolve().parent.parent
# Rounds of a race: each starts both deciders within microseconds of each other.
ROUNDS = 6

# A child that sets Django up, connects, loads the account named by its first argument as `user`
# and says "ready"; what follows it in a script runs with those at hand.
DJANGO_CHILD = r"""
import json, os, sys
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hol.settings")
django.setup()
from django.contrib.auth import get_user_model
from django.db import connection
user = get_user_model().objects.get(username=sys.argv[1])
connection.ensure_connection()
print("ready", flush=True)
"""

APPROVER = (
    DJANGO_CHILD
    + r"""
from approvals.services import approval_decide
from hol.errors import DomainError
for line in sys.stdin:
    request_id, decision = line.split()
    try:
        result = approval_decide(actor=user, request_id=request_id, decision=decision, justification="race")
        print(json.dumps({"ok": True, "status": result.status}), flush=True)
    except DomainError as exc:
        print(json.dumps({"ok": False, "code": exc.code}), flush=True)
"""
)


def start_child(script: str, username: str, env: dict) -> subprocess.Popen:
    """`script` (DJANGO_CHILD and what follows) in a process of its own, as `username`, with
    pipes to its stdin and stdout (text)."""
    return subprocess.Popen(
        [sys.executable, "-c", script, username],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def start_approver(username: str, env: dict) -> subprocess.Popen:
    """A long-lived process that decides a request for each `<request id> <decision>` line on its
    stdin and prints the outcome as JSON. It says "ready" first."""
    return start_child(APPROVER, username, env)


def race(processes: list[subprocess.Popen], orders: list[str]) -> list[dict]:
    """One round: each approver gets its order at once; their outcomes, in the same order."""
    for proc, order in zip(processes, orders, strict=True):
        proc.stdin.write(order + "\n")
    for proc in processes:
        proc.stdin.flush()
    return [json.loads(proc.stdout.readline()) for proc in processes]
