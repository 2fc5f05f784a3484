"""`./bin/hol run`: prepare the data dir and the database, then start daphne, a Celery worker and
Celery Beat together.

Ctrl-C (or SIGTERM) stops all of them, and the embedded Redis if this launcher started it. Without
DATABASE_URL / REDIS_URL everything runs on the embedded SQLite file and the embedded Redis.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from hol import datadir

ROOT = Path(__file__).resolve().parent.parent


def listening_socket(host: str, port: int) -> socket.socket:
    """One listening socket that several daphne processes accept from (one per core)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # daphne's fd endpoint adopts IPv4 sockets
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def trusts_proxy(env: Mapping[str, str]) -> bool:
    """HOL_TRUST_PROXY, read as the settings read it: forwarded headers are believed only then."""
    return env.get("HOL_TRUST_PROXY", "0").strip().lower() in {"1", "true", "yes", "on"}


def daphne_command(fd: int, *, proxy_headers: bool, quiet: bool) -> list[str]:
    verbosity = ["-v", "0"] if quiet else []
    forwarded = ["--proxy-headers"] if proxy_headers else []
    return [sys.executable, "-m", "daphne", *verbosity, *forwarded, "--fd", str(fd), "hol.asgi:application"]


def start_daphne(sock: socket.socket, processes: int, *, env: dict | None = None, quiet: bool = False) -> list:
    """Start `processes` daphne servers sharing `sock`; each is its own process group. Web
    processes never fork, so they pool their database connections (see HOL_DB_POOL in settings)
    unless the environment says otherwise."""
    fd = sock.fileno()
    env = dict(os.environ if env is None else env)
    env.setdefault("HOL_DB_POOL", "1")
    command = daphne_command(fd, proxy_headers=trusts_proxy(env), quiet=quiet)
    return [
        subprocess.Popen(command, cwd=ROOT, pass_fds=(fd,), env=env, start_new_session=True) for _ in range(processes)
    ]


def stop_all(processes: list, timeout: float = 10.0) -> None:
    """SIGTERM to each process's group, SIGKILL to those still running after `timeout` seconds."""
    for proc in processes:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in processes:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


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


def celery_command(role: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "hol", role, "-l", "INFO", *options]


def print_demo_accounts(data_dir: Path) -> None:
    passwords = datadir.demo_passwords(data_dir)
    width = max(map(len, passwords), default=0)
    print(f"  demo accounts (passwords kept in {data_dir / datadir.DEMO_ACCOUNTS_FILE}):")
    for username, password in sorted(passwords.items()):
        print(f"    {username:<{width}}  {password}")


def load_env_file(path: Path) -> None:
    """Read `KEY=VALUE` lines (blank lines and `#` comments skipped, optional `export ` and quotes)
    into the environment; a variable already set in the environment wins. Nothing is executed."""
    if not path.is_file():
        return
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise SystemExit(f"{path}:{number}: expected KEY=VALUE")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        os.environ.setdefault(key, value)


def wants_demo_accounts(flag: bool | None, env: Mapping[str, str]) -> bool:
    """Demo accounts only on the embedded database, unless asked for (or refused) by name."""
    return flag if flag is not None else not env.get("DATABASE_URL")


def main(argv: list[str] | None = None) -> int:
    """`run [options]` starts HOL; `manage ARGS` runs manage.py ARGS with the same environment."""
    argv = sys.argv[1:] if argv is None else argv
    load_env_file(Path(os.environ.get("HOL_ENV_FILE", ROOT / ".env")))
    if argv[:1] == ["manage"]:
        return subprocess.run([sys.executable, str(ROOT / "manage.py"), *argv[1:]], check=False).returncode
    return run(argv[1:] if argv[:1] == ["run"] else argv)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="./bin/hol run", description="Start HOL: web (daphne), Celery worker, Celery Beat."
    )
    parser.add_argument("--host", default=os.environ.get("HOL_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("HOL_PORT", "8000")))
    parser.add_argument(
        "--web-processes",
        type=int,
        default=int(os.environ.get("HOL_WEB_PROCESSES", os.cpu_count() or 1)),
        help="daphne processes sharing the port (default: one per core)",
    )
    parser.add_argument("--worker-concurrency", type=int, default=int(os.environ.get("HOL_WORKER_CONCURRENCY", "2")))
    parser.add_argument(
        "--demo",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="create the demo accounts (default: only on the embedded database, DATABASE_URL unset)",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hol.settings")
    datadir.prepare()
    import django

    django.setup()
    from django.conf import settings

    from hol.embedded_redis import start_if_embedded
    from hol.embedded_redis import stop as stop_redis

    started_redis = start_if_embedded()
    ensure_database(settings.DATABASES["default"])
    manage("migrate", "--noinput", "-v", "0")
    demo = wants_demo_accounts(args.demo, os.environ)
    manage("bootstrap_roles", *(["--demo-users"] if demo else []))
    manage("install_schedule")

    sock = listening_socket(args.host, args.port)
    # The Celery worker forks its children and keeps per-process connections; daphnes pool theirs.
    children = [(f"daphne {n + 1}", proc) for n, proc in enumerate(start_daphne(sock, args.web_processes))]
    for name, command in (
        ("celery worker", celery_command("worker", "-c", str(args.worker_concurrency))),
        ("celery beat", celery_command("beat")),
    ):
        children.append((name, subprocess.Popen(command, cwd=ROOT, start_new_session=True)))

    database = settings.DATABASES["default"]
    print(
        f"\nHOL is running at http://{args.host}:{args.port}/  (API docs: /api/docs/, admin: /admin/)\n"
        f"  database: {database['ENGINE'].rsplit('.', 1)[-1]} {database['NAME']}\n"
        f"  redis:    {settings.REDIS_URL}\n"
        f"  web:      {args.web_processes} daphne process(es); Celery worker; Celery Beat",
        flush=True,
    )
    if demo:
        print_demo_accounts(settings.HOL_DATA_DIR)
    else:
        print("  no demo accounts; add people with ./bin/hol manage hol_user add NAME --role ROLE")
    print("  Ctrl-C stops everything.\n", flush=True)

    stopping = False

    def on_signal(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    while not stopping:
        dead = [(name, proc) for name, proc in children if proc.poll() is not None]
        if dead:
            name, proc = dead[0]
            print(f"a HOL process exited ({name}, code {proc.returncode}); stopping", flush=True)
            code = 1
            break
        time.sleep(0.5)
    stop_all([proc for _, proc in children])
    if started_redis:
        stop_redis(settings.HOL_REDIS_SOCKET)
    print("HOL stopped.", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
