"""`./hol run`: prepare the database and start daphne, a Celery worker and Celery Beat together.

Ctrl-C (or SIGTERM) stops all of them. Without DATABASE_URL / REDIS_URL everything runs on the
embedded SQLite file and the embedded Redis (SPEC §2).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def listening_socket(host: str, port: int) -> socket.socket:
    """One listening socket that several daphne processes accept from (one per core)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # daphne's fd endpoint adopts IPv4 sockets
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def start_daphne(sock: socket.socket, processes: int, *, env: dict | None = None, quiet: bool = False) -> list:
    """Start `processes` daphne servers sharing `sock`; each is its own process group."""
    fd = sock.fileno()
    command = [
        sys.executable, "-m", "daphne", "--fd", str(fd), "--proxy-headers",
        "hol.asgi:application",
    ]  # fmt: skip
    if quiet:
        command[3:3] = ["-v", "0"]
    return [
        subprocess.Popen(command, cwd=ROOT, pass_fds=(fd,), env=env, start_new_session=True) for _ in range(processes)
    ]


def stop_all(processes: list, timeout: float = 10.0) -> None:
    for proc in processes:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in processes:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=True)


def ensure_database(database: dict) -> None:
    """Create the PostgreSQL database DATABASE_URL names if it does not exist yet."""
    if not database["ENGINE"].endswith("postgresql"):
        return
    import psycopg
    from psycopg import sql

    params = {
        "host": database.get("HOST") or None,
        "port": database.get("PORT") or None,
        "user": database.get("USER") or None,
        "password": database.get("PASSWORD") or None,
    }
    try:
        psycopg.connect(dbname=database["NAME"], **params).close()
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database["NAME"])))
        print(f"created database {database['NAME']}", flush=True)


def demo_password(data_dir: Path) -> str:
    """One password for the demo users, made on first run and kept (mode 600) in the data dir."""
    path = data_dir / "demo-password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(12))
        path.chmod(0o600)
    return path.read_text().strip()


def main() -> int:
    parser = argparse.ArgumentParser(description="Start HOL: web (daphne), Celery worker, Celery Beat.")
    parser.add_argument("--host", default=os.environ.get("HOL_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("HOL_PORT", "8000")))
    parser.add_argument(
        "--web-processes",
        type=int,
        default=int(os.environ.get("HOL_WEB_PROCESSES", os.cpu_count() or 1)),
        help="daphne processes sharing the port (default: one per core)",
    )
    parser.add_argument("--worker-concurrency", type=int, default=int(os.environ.get("HOL_WORKER_CONCURRENCY", "2")))
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hol.settings")
    import django

    django.setup()  # starts the embedded Redis when REDIS_URL is unset
    from django.conf import settings

    ensure_database(settings.DATABASES["default"])
    manage("migrate", "--noinput", "-v", "0")
    password = demo_password(settings.HOL_DATA_DIR)
    manage("bootstrap_roles", "--demo-users", "--password", password)
    manage("install_schedule")

    sock = listening_socket(args.host, args.port)
    celery = [sys.executable, "-m", "celery", "-A", "hol"]
    # Web processes never fork, so they may pool database connections (see HOL_DB_POOL in
    # settings); the Celery worker forks its children and keeps per-process connections.
    web_env = {**os.environ, "HOL_DB_POOL": os.environ.get("HOL_DB_POOL", "1")}
    processes = start_daphne(sock, args.web_processes, env=web_env)
    processes.append(
        subprocess.Popen(
            [*celery, "worker", "-l", "INFO", "-c", str(args.worker_concurrency)], cwd=ROOT, start_new_session=True
        )
    )
    processes.append(subprocess.Popen([*celery, "beat", "-l", "INFO"], cwd=ROOT, start_new_session=True))

    database = settings.DATABASES["default"]
    print(
        f"\nHOL is running at http://{args.host}:{args.port}/  (API docs: /api/docs/, admin: /admin/)\n"
        f"  database: {database['ENGINE'].rsplit('.', 1)[-1]} {database['NAME']}\n"
        f"  redis:    {settings.REDIS_URL}\n"
        f"  web:      {args.web_processes} daphne process(es); Celery worker; Celery Beat\n"
        f"  sign in as demo_developer, demo_tech_lead, demo_devops_engineer or demo_agent "
        f"with password {password}\n"
        f"  Ctrl-C stops everything.\n",
        flush=True,
    )

    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        dead = [proc for proc in processes if proc.poll() is not None]
        if dead:
            print(f"a HOL process exited ({dead[0].args[2:5]}, code {dead[0].returncode}); stopping", flush=True)
            code = 1
            break
        time.sleep(0.5)
    stop_all(processes)
    if not os.environ.get("REDIS_URL"):
        from hol.embedded_redis import stop as stop_redis

        stop_redis(settings.HOL_REDIS_SOCKET)
    print("HOL stopped.", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
