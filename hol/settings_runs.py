"""Settings of agent runs (what a Celery worker starts for a work order) and of task callbacks.
Star-imported by hol.settings, so they read as Django settings like every other knob."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from hol import datadir
from hol.environment import env_bool, env_int, env_list, env_secret

BASE_DIR = Path(__file__).resolve().parent.parent
HOL_DATA_DIR = datadir.data_dir_from_env()

# Celery workers carry out every enqueued work order by running HOL_AGENT_COMMAND; off leaves the
# queue to agents that claim over the API.
HOL_RUN_WORK_IN_CELERY = env_bool("HOL_RUN_WORK_IN_CELERY", True)
# The agent command (shell words; a leading `python` means this interpreter). Default: the bundled
# reference agent (agents/reference_agent.py: edits planned in the task's inputs, approved by a
# person); empty: the bundled demo agent, which only walks through the stages.
HOL_AGENT_COMMAND = os.environ.get(
    "HOL_AGENT_COMMAND", shlex.join([sys.executable, str(BASE_DIR / "agents" / "reference_agent.py")])
)
# Where agents reach HOL's API (given to them as HOL_API_URL).
HOL_API_URL = os.environ.get("HOL_API_URL", f"http://127.0.0.1:{os.environ.get('HOL_PORT', '8000')}")
# The operating-system account agents run as (the worker must run as root to switch to it). Unset,
# an agent runs as the worker's account and can read whatever the worker can, the data dir's keys
# included: set it wherever agents or the repositories they test are not trusted as much as HOL.
# Its trace folder becomes its home, so HOL_TRACE_ROOT must be reachable by it (outside the
# private HOL_DATA_DIR).
HOL_AGENT_USER = os.environ.get("HOL_AGENT_USER", "")
# Per-execution trace folders: HOL_TRACE_ROOT/<task>/<attempt>/ (output.log, events.jsonl, result.json).
HOL_TRACE_ROOT = Path(os.environ.get("HOL_TRACE_ROOT", HOL_DATA_DIR / "traces")).resolve()
# Limits on each agent process (0: none): CPU seconds (RLIMIT_CPU) and writable memory (RLIMIT_DATA).
HOL_AGENT_CPU_SECONDS = env_int("HOL_AGENT_CPU_SECONDS", 3600)
HOL_AGENT_MEMORY_MB = env_int("HOL_AGENT_MEMORY_MB", 4096)
# How often a run heartbeats and checks whether its work order was cancelled.
HOL_AGENT_POLL_SECONDS = float(os.environ.get("HOL_AGENT_POLL_SECONDS", 1))
# After SIGTERM to the agent's process group, how long before SIGKILL.
HOL_AGENT_KILL_GRACE_SECONDS = float(os.environ.get("HOL_AGENT_KILL_GRACE_SECONDS", 3))
# Extra environment variables passed through to agents (comma-separated names, e.g. an LLM API
# key); nothing else of HOL's environment (database URL, secret key) reaches them.
HOL_AGENT_ENV_PASSTHROUGH = env_list("HOL_AGENT_ENV_PASSTHROUGH")

# Task callbacks (a task's callback_url, POSTed once the task is final): plain http, and addresses
# inside the network (private, loopback, link-local), only for hosts named here (comma-separated).
HOL_CALLBACK_ALLOWED_HOSTS = [host.lower() for host in env_list("HOL_CALLBACK_ALLOWED_HOSTS")]
# Attempts per callback (connection errors and 5xx are retried with back-off: base * 2**n seconds),
# and how long one POST may take.
HOL_CALLBACK_MAX_ATTEMPTS = env_int("HOL_CALLBACK_MAX_ATTEMPTS", 4)
HOL_CALLBACK_BACKOFF_SECONDS = float(os.environ.get("HOL_CALLBACK_BACKOFF_SECONDS", 5))
HOL_CALLBACK_TIMEOUT_SECONDS = float(os.environ.get("HOL_CALLBACK_TIMEOUT_SECONDS", 5))
# Signs every callback body (X-HOL-Signature, HMAC-SHA256): HOL_CALLBACK_SECRET, else a random key
# made once per data dir. Receivers hold the same value to verify.
HOL_CALLBACK_SECRET = env_secret("HOL_CALLBACK_SECRET", HOL_DATA_DIR, datadir.CALLBACK_SECRET_FILE)
