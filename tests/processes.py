"""Real concurrency for tests: forked OS processes sharing the test database."""

from __future__ import annotations

import multiprocessing
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from django.db import connections

from hol import embedded_redis


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
