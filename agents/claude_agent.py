"""Claude Code as HOL's agent: `HOL_AGENT_COMMAND="python agents/claude_agent.py"`.

It reads the run's task from HOL, and runs `claude -p` on it, headless, with HOL's hooks
(agents/claude-settings.json): every Bash, Write and Edit call asks HOL first (PreToolUse) and is
reported after it ran (PostToolUse). Claude's output streams to the task page like any agent's,
and its exit code completes or fails the work order.

  CLAUDE_BIN      the Claude Code executable (default `claude`, found on PATH)
  CLAUDE_WORKDIR  where Claude works (default: the task's target.path when it is a local folder,
                  else the run's trace folder)
  CLAUDE_ARGS     extra arguments, shell words (e.g. `--model sonnet --max-turns 40`)

Claude Code's own environment (its API key) must reach the run: name it in
HOL_AGENT_ENV_PASSTHROUGH (e.g. `ANTHROPIC_API_KEY`).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's hol_agent importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hol_agent import HolClient, HolError

SETTINGS = Path(__file__).resolve().parent / "claude-settings.json"
MAX_PROMPT_CHARS = 32_000


def prompt_of(task: dict) -> str:
    parts = [f"Task: {task.get('title') or ''}".strip(), f"Objective: {task.get('objective', '')}"]
    if task.get("description"):
        parts.append(f"Details: {task['description']}")
    target = task.get("target") or {}
    if target.get("repo"):
        parts.append(f"Repository: {target['repo']} (ref {target.get('ref') or 'default'})")
    parts.append(
        "Risky tool calls are sent to humans for approval through HOL; a denied call means a person"
        " said no or has not decided yet: do not work around it."
    )
    return "\n\n".join(parts)[:MAX_PROMPT_CHARS]


def workdir_of(task: dict) -> str:
    explicit = os.environ.get("CLAUDE_WORKDIR")
    if explicit:
        return explicit
    path = ((task.get("target") or {}).get("path")) or ""
    if path and Path(path).is_dir():
        return path
    return os.environ.get("HOL_TRACE_DIR") or os.getcwd()


def main() -> int:
    client = HolClient()
    try:
        task = client.task()
    except HolError as error:
        print(f"claude agent: cannot read the task from HOL: {error}", file=sys.stderr, flush=True)
        return 2
    command = [
        os.environ.get("CLAUDE_BIN", "claude"),
        "-p",
        prompt_of(task),
        "--settings",
        str(SETTINGS),
        *shlex.split(os.environ.get("CLAUDE_ARGS", "")),
    ]
    # The hooks run `python -m hol_agent` from Claude's working folder: HOL's checkout on the path
    # makes hol_agent importable there without installing it.
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    print(f"claude agent: task {client.task_id}: running {command[0]} -p …", flush=True)
    try:
        return subprocess.run(command, cwd=workdir_of(task), env=env, stdin=subprocess.DEVNULL).returncode
    except OSError as error:
        print(f"claude agent: cannot start {command[0]}: {error}", file=sys.stderr, flush=True)
        return 127


if __name__ == "__main__":
    raise SystemExit(main())
