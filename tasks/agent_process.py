"""The agent process of a run: started in its own session and process group under CPU and memory
limits, its stdout and stderr read line by line, the whole group killed at the time budget or when
asked to stop. Nothing here touches the database."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import logging
import os
import queue
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from tasks.agent_user import AgentUser

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEMO_AGENT = ROOT / "agents" / "demo_agent.py"
MAX_LINE_CHARS = 8 * 1024
FLUSH_SECONDS = 0.25  # lines are handed on in batches at most this old
PR_SET_PDEATHSIG = 1
EOF = ("", None)  # what a reader thread puts on the queue when its pipe closes


@dataclass
class AgentOutcome:
    """How an agent process ended: `exited` (exit_code says how), `timed_out`, or `stopped`
    (its work order was taken away, e.g. cancelled)."""

    ended: str
    exit_code: int | None
    reason: str
    duration_seconds: float
    tail: list[str] = field(default_factory=list)


def agent_command() -> list[str]:
    """HOL_AGENT_COMMAND as argv; a leading `python` is this interpreter, whose full path starts
    far faster than a PATH lookup through version-manager shims."""
    words = shlex.split(settings.HOL_AGENT_COMMAND) or ["python", str(DEMO_AGENT)]
    if words[0] in ("python", "python3"):
        words[0] = sys.executable
    return words


def _limit_child(cpu_seconds: int, memory_mb: int) -> Callable[[], None]:
    def apply() -> None:
        if cpu_seconds > 0:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
        if memory_mb > 0:
            # RLIMIT_DATA counts memory actually writable (heap, anonymous mappings), not address
            # space: runtimes such as Node reserve many GB of address space they never use.
            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        # The agent dies with the process that runs it, so a killed Celery worker leaves no agent
        # behind to finish work that is being redelivered elsewhere.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    return apply


@functools.cache
def _tool(name: str) -> str | None:
    return shutil.which(name)


def _launch(command: list[str], env: dict[str, str], cpu_seconds: int, memory_mb: int) -> tuple[list[str], Any]:
    """The command line that starts `command` dying with its parent and under its limits, and the
    preexec_fn it still needs (None when util-linux's setpriv and prlimit do that work). A Python
    preexec_fn makes the worker fork its whole interpreter (16 ms a run on a small machine, against
    under 1 ms for the vfork Python uses without one); setpriv and prlimit, exec'd in turn in the
    same process, cost about 4 ms."""
    program = command[0]
    # (A relative path with a slash is the child's to resolve, from its own working folder.)
    if ("/" not in program or os.path.isabs(program)) and shutil.which(program, path=env.get("PATH")) is None:
        # Said here, not by a wrapper's exit code: the run fails with "agent could not start".
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    setpriv, prlimit = _tool("setpriv"), _tool("prlimit")
    limits = []
    if cpu_seconds > 0:
        limits.append(f"--cpu={cpu_seconds}:{cpu_seconds + 5}")
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        limits.append(f"--data={limit}:{limit}")
    if setpriv is None or (limits and prlimit is None):
        return command, _limit_child(cpu_seconds, memory_mb)
    wrapper = [setpriv, "--pdeathsig", "KILL", "--"]
    if limits:
        wrapper += [prlimit, *limits, "--"]
    return [*wrapper, *command], None


def _account(user: AgentUser | None) -> dict[str, Any]:
    if user is None:
        return {}
    # Its own groups only: none of the worker's supplementary groups carry over.
    return {"user": user.uid, "group": user.gid, "extra_groups": list(user.groups)}


def _kill_group(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the whole process group, SIGKILL to what is left after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _pump(stream: Any, name: str, lines: queue.Queue) -> None:
    for raw in iter(stream.readline, b""):
        lines.put((name, raw.decode("utf-8", "replace").rstrip("\r\n")[:MAX_LINE_CHARS]))
    stream.close()
    lines.put(EOF)


def _exit_reason(code: int) -> str:
    if code == -signal.SIGXCPU:
        return f"agent exceeded its CPU time limit ({settings.HOL_AGENT_CPU_SECONDS}s)"
    if code < 0:
        return f"agent killed by signal {-code}"
    return f"agent exited with code {code}"


def run_agent(
    command: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    time_budget_seconds: float,
    on_lines: Callable[[list[tuple[str, str]]], None],
    keep_going: Callable[[], bool],
    poll_seconds: float,
    cpu_seconds: int = 0,
    memory_mb: int = 0,
    kill_grace_seconds: float = 3.0,
    user: AgentUser | None = None,
) -> AgentOutcome:
    """Run `command` in a new process group and session (as `user`'s account when given),
    handing its stdout/stderr lines to `on_lines` in batches. Every `poll_seconds` `keep_going()`
    is asked whether to continue; a False, or the time budget running out, kills the whole group."""
    started = time.monotonic()
    deadline = started + time_budget_seconds
    lines: queue.Queue = queue.Queue()
    tail: list[str] = []
    argv, preexec_fn = _launch(command, env, cpu_seconds, memory_mb)
    process = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        # The reader threads start after this fork, so the child runs preexec_fn single-threaded.
        preexec_fn=preexec_fn,
        **_account(user),
    )
    readers = [
        threading.Thread(target=_pump, args=(process.stdout, "stdout", lines), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, "stderr", lines), daemon=True),
    ]
    for reader in readers:
        reader.start()

    pending: list[tuple[str, str]] = []

    def flush() -> None:
        if pending:
            on_lines(list(pending))
            tail.extend(line for _, line in pending)
            del tail[:-200]
            pending.clear()

    ended, reason = "exited", ""
    next_poll = started + poll_seconds
    last_flush = started
    open_streams = len(readers)
    while process.poll() is None:
        now = time.monotonic()
        timeout = max(0.01, min(next_poll, deadline, last_flush + FLUSH_SECONDS) - now)
        if open_streams:
            with contextlib.suppress(queue.Empty):
                item = lines.get(timeout=timeout)
                while True:
                    if item is EOF:
                        open_streams -= 1
                    else:
                        pending.append(item)
                    if len(pending) >= 500 or not open_streams:
                        break
                    item = lines.get_nowait()
        else:
            # Both pipes closed: the agent is exiting, so wait on the process itself and notice
            # its end at once instead of at the next batch.
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=timeout)
        now = time.monotonic()
        if now - last_flush >= FLUSH_SECONDS:
            flush()
            last_flush = now
        if now >= deadline:
            ended, reason = "timed_out", f"time budget of {time_budget_seconds:g}s exceeded: agent process group killed"
            break
        if now >= next_poll:
            next_poll = now + poll_seconds
            if not keep_going():
                ended, reason = "stopped", "work order no longer held (cancelled): agent process group killed"
                break
    # Also reaps whatever the agent left running in its group after it exited.
    _kill_group(process, kill_grace_seconds if ended != "exited" else 0)
    for reader in readers:
        reader.join(timeout=5)
    while True:
        try:
            item = lines.get_nowait()
        except queue.Empty:
            break
        if item is not EOF:
            pending.append(item)
    flush()
    exit_code = process.returncode
    if ended == "exited" and exit_code != 0:
        reason = _exit_reason(exit_code)
    return AgentOutcome(
        ended=ended,
        exit_code=exit_code,
        reason=reason,
        duration_seconds=round(time.monotonic() - started, 3),
        tail=tail,
    )
