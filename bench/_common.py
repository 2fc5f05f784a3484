"""Plumbing shared by the benchmarks: a private PostgreSQL database, timed worker processes, and
daphne serving HOL on a shared socket."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
# The HTTP floor mounted by bench.settings (JWT authentication and nothing else).
FLOOR_PATH = "/bench/floor"


def database_url_for(base_url: str, name: str) -> str:
    """The URL of database `name` on the server `base_url` points at."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path="/" + name))


def admin_dsn(base_url: str) -> str:
    return database_url_for(base_url, "postgres")


def fresh_database(base_url: str, name: str) -> str:
    """Drop and recreate database `name`, migrate it with manage.py; return its URL."""
    with psycopg.connect(admin_dsn(base_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = database_url_for(base_url, name)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        check=True,
    )
    return url


def _child(target: Callable, index: int, args: tuple, barrier, results) -> None:
    try:
        state = target("setup", index, *args)
        barrier.wait()
        started = time.perf_counter()
        outcome = target("run", index, *args, state=state)
        results.put((index, started, time.perf_counter(), outcome, None))
    except BaseException as error:  # reported to the parent, which fails the run
        barrier.abort()
        results.put((index, 0.0, 0.0, None, f"{type(error).__name__}: {error}"))


def timed_processes(target: Callable, count: int, args: tuple = ()) -> tuple[float, list[Any]]:
    """Run `target` in `count` forked processes. Each calls target("setup", i, *args) untimed, all
    meet at a barrier, then target("run", i, *args, state=...) is timed. Returns (seconds from the
    first start to the last finish, outcomes by index)."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        conn.close()  # children must not share the parent's database socket, nor its pool
        if conn.settings_dict.get("OPTIONS", {}).get("pool"):
            conn.close_pool()
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(count)
    results = context.Queue()
    procs = [context.Process(target=_child, args=(target, i, args, barrier, results)) for i in range(count)]
    for proc in procs:
        proc.start()
    rows = [results.get(timeout=900) for _ in procs]
    for proc in procs:
        proc.join()
    errors = [error for *_, error in rows if error]
    if errors:
        raise RuntimeError(f"a benchmark process failed: {errors[0]}")
    start = min(row[1] for row in rows)
    finish = max(row[2] for row in rows)
    outcomes = [outcome for _, _, _, outcome, _ in sorted(rows, key=lambda row: row[0])]
    return finish - start, outcomes


class StatementCounter:
    """Counts every SQL statement Django runs in this process, on every connection (the audit
    sealer's thread included)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, execute, sql, params, many, context):
        with self._lock:
            self.count += 1
        return execute(sql, params, many, context)

    def watch(self, connection) -> None:
        if self not in connection.execute_wrappers:
            connection.execute_wrappers.append(self)

    def watch_every_connection(self) -> None:
        from django.db import connections
        from django.db.backends.signals import connection_created

        for connection in connections.all(initialized_only=True):
            self.watch(connection)
        connection_created.connect(lambda sender, connection, **kwargs: self.watch(connection), weak=False)


def transactions_committed(url: str) -> int:
    """PostgreSQL's count of committed transactions in the database `url` names (every statement
    outside a transaction block counts as one). Backends report theirs when they end."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


class JsonClient:
    """A keep-alive HTTP/1.1 client for one connection (http.client is the cheapest in Python)."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            # As behind the TLS proxy of a production setup (HOL_DEBUG=0 redirects plain HTTP).
            "X-Forwarded-Proto": "https",
        }

    def post(self, path: str, body: dict | None = None) -> tuple[int, Any]:
        return self.request("POST", path, body)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        payload = None if method == "GET" else json.dumps(body or {})
        self.conn.request(method, path, body=payload, headers=self.headers)
        response = self.conn.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else None)

    def local_port(self) -> int:
        return self.conn.sock.getsockname()[1]

    def close(self) -> None:
        self.conn.close()


def socket_owners(pids: list[int]) -> dict[int, int]:
    """Map each established TCP connection's remote port to the daphne pid holding its socket,
    read from /proc (so a run can report how connections spread over the processes)."""
    inode_pid: dict[str, int] = {}
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            for fd in fd_dir.iterdir():
                try:
                    link = os.readlink(fd)
                except OSError:
                    continue
                if link.startswith("socket:["):
                    inode_pid[link[8:-1]] = pid
        except OSError:
            continue
    owners: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if fields[3] == "01" and fields[9] in inode_pid:  # 01 = ESTABLISHED
                owners[remote_port] = inode_pid[fields[9]]
    return owners


def wait_until_serving(port: int, token: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client = JsonClient(port, token)
            status, _ = client.post(FLOOR_PATH)
            client.close()
            if status == 200:
                return
            raise RuntimeError(f"the floor answered {status}")
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
