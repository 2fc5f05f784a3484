"""Fixtures for tests that drive HOL's real processes: daphne (started the way `./bin/hol run`
starts it) and Celery workers. Loaded by tests/conftest.py as a pytest plugin, so test modules use
these fixtures without importing them from each other.

The daphne process cannot see the test run's in-memory SQLite database, so on SQLite it gets a
freshly migrated file of its own; on PostgreSQL it serves the test database itself. A Celery
worker needs the shared PostgreSQL test database: its tests are skipped on SQLite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command
from django.db import connection

from hol.celery import app as celery_app
from hol.launcher import listening_socket, start_daphne, stop_all
from tests.processes import database_url, stop_and_remove
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 60


def manage(env: dict, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def _serves_the_test_database(config) -> bool:
    return bool(os.environ.get("DATABASE_URL"))


def per_test_unless_own_database(fixture_name: str, config) -> str:
    """A daphne serving the test database must not outlive the flush between tests: it would keep
    cached content-type ids (notifications and permissions point through them) that no longer
    exist. On SQLite the daphne serves a database file of its own that no flush touches, so one
    daphne per module serves every test."""
    return "function" if _serves_the_test_database(config) else "module"


@contextmanager
def another_daphne(env: dict) -> Iterator[str]:
    """One daphne process on its own port, serving the database `env` names; its URL once it
    answers."""
    with daphne_process(env) as (url, _):
        yield url


@contextmanager
def daphne_process(env: dict) -> Iterator[tuple[str, subprocess.Popen]]:
    """`another_daphne`, for a test that also watches the process: its URL and the process."""
    sock = listening_socket("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    processes = start_daphne(sock, 1, env=env, quiet=True)
    sock.close()  # daphne holds its own copy
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            assert processes[0].poll() is None, "daphne exited while starting"
            try:
                httpx.get(f"{url}/api/v1/ping", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "daphne did not answer"
                time.sleep(0.05)
        yield url, processes[0]
    finally:
        stop_all(processes)


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory) -> Path | None:
    """On SQLite, one migrated database file for the whole session: each live module starts from a
    copy of it instead of running every migration again in a subprocess."""
    if _serves_the_test_database(None):
        yield None
        return
    data_dir = Path(tempfile.mkdtemp(prefix="hol-mig-")).resolve()
    env = _base_env(data_dir)
    manage(env, "migrate", "--noinput", "-v", "0")
    yield data_dir
    stop_and_remove(data_dir)


def _base_env(data_dir: Path) -> dict:
    # HOL's defaults, not the ones of whoever runs the tests: no debug pages, no trusted proxy.
    env = {
        key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "HOL_DEBUG", "HOL_TRUST_PROXY")
    }
    env.update(DJANGO_SETTINGS_MODULE="hol.settings", HOL_DATA_DIR=str(data_dir), HOL_LOG_LEVEL="WARNING")
    env["HOL_ALLOWED_REPO_PREFIXES"] = "https://github.com/"
    env["HOL_CONN_MAX_AGE"] = "0"  # hold no connection that would block the test database's teardown
    return env


@pytest.fixture(scope="module")
def live_env(django_db_setup, django_db_blocker, _migrated_sqlite):
    """Environment for HOL processes serving the same database as this test run."""
    data_dir = Path(tempfile.mkdtemp(prefix="hol-live-")).resolve()  # short: holds a unix socket
    env = _base_env(data_dir)
    with django_db_blocker.unblock():
        vendor, settings_dict = connection.vendor, connection.settings_dict
    if vendor == "postgresql":
        env["DATABASE_URL"] = database_url(settings_dict)
    else:
        shutil.copyfile(_migrated_sqlite / "db.sqlite3", data_dir / "db.sqlite3")
    yield env
    stop_and_remove(data_dir)  # the daphne's embedded Redis, when REDIS_URL is unset


@pytest.fixture(scope="module")
def base_url(live_env):
    """One daphne for the module (tests/test_live_channels.py and the browser tests take one per
    test where it serves the test database: see `per_test_unless_own_database`)."""
    with another_daphne(live_env) as url:
        yield url


@pytest.fixture
def demo_passwords(live_env, transactional_db) -> dict[str, str]:
    """The demo accounts, made by the same command `./bin/hol run` uses, and their passwords as
    that command keeps them in the data dir."""
    manage(live_env, "bootstrap_roles", "--demo-users")
    return json.loads((Path(live_env["HOL_DATA_DIR"]) / "demo-accounts.json").read_text())


@pytest.fixture(scope=per_test_unless_own_database)
def daphne_url(live_env):
    """A daphne for tests whose database is flushed between them: one per test on PostgreSQL, one
    per module on SQLite (see `per_test_unless_own_database`)."""
    with another_daphne(live_env) as url:
        yield url


# --- the demo accounts, for modules that talk to daphne only ---


def token_for(base: str, username: str, passwords: dict[str, str]) -> str:
    response = httpx.post(f"{base}/api/v1/auth/token", json={"username": username, "password": passwords[username]})
    assert response.status_code == 200, response.text
    return response.json()["access"]


@pytest.fixture(scope="module")
def accounts(live_env, django_db_blocker):
    """The demo accounts, made once for the module by the command `./bin/hol run` uses. The
    tests talk to daphne only, so the database is not flushed between them (a flush would renew
    the content types the daphne process has cached); it is flushed once at the end."""
    manage(live_env, "bootstrap_roles", "--demo-users")
    yield json.loads((Path(live_env["HOL_DATA_DIR"]) / "demo-accounts.json").read_text())
    with django_db_blocker.unblock():
        call_command("flush", interactive=False, verbosity=0)


@pytest.fixture
def agent(base_url, accounts):
    """The demo agent's API session and the environment a HOL run would give it."""
    token = token_for(base_url, "demo_agent", accounts)
    http = httpx.Client(base_url=base_url, timeout=10, headers={"Authorization": f"Bearer {token}"})
    yield http, {"HOL_API_URL": base_url, "HOL_TOKEN": token}
    http.close()


@pytest.fixture(scope="module")
def tech_lead(base_url, accounts):
    """The demo tech lead's API session: the human who decides medium-risk approval requests.
    Signing in costs a password hash, so one session serves the module."""
    token = token_for(base_url, "demo_tech_lead", accounts)
    with httpx.Client(base_url=base_url, timeout=10, headers={"Authorization": f"Bearer {token}"}) as http:
        yield http


# --- Celery workers (PostgreSQL: the worker process serves the test database) ---

QUIET_WORKER = ("--without-gossip", "--without-mingle", "--without-heartbeat")


def start_celery_worker(env: dict, log_path: Path, *, concurrency: int) -> subprocess.Popen:
    """`celery -A hol worker` in a process group of its own, once it says it is ready."""
    command = [sys.executable, "-m", "celery", "-A", "hol", "worker", "-c", str(concurrency), "-l", "INFO"]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*command, *QUIET_WORKER],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        eventually(lambda: "ready." in log_path.read_text(), what="the Celery worker to start")
    except BaseException:
        stop_worker(process)
        raise
    return process


def stop_worker(process: subprocess.Popen) -> None:
    stop_all([process], timeout=20)


@pytest.fixture(scope="module")
def agent_scripts(tmp_path_factory) -> Path:
    """Each test writes the agent script of its task here, named by the task id."""
    return tmp_path_factory.mktemp("agents")


@pytest.fixture
def start_worker(transactional_db, agent_scripts, tmp_path_factory):
    """Starts `celery -A hol worker` processes (two pool processes each) against this run's
    database and Redis; their agent command runs the script the test wrote for the task, unless
    `agent_command` says otherwise. Workers live for one test: the database is flushed between
    tests, and a worker must not carry cached rows (content types, its account) or late
    messages from one test into the next."""
    vendor, settings_dict = connection.vendor, connection.settings_dict
    if vendor != "postgresql":
        pytest.skip("a separate worker process needs the shared PostgreSQL test database")
    default_command = (
        "python -c 'import os, runpy; "
        f'runpy.run_path(os.path.join("{agent_scripts}", os.environ["HOL_TASK_ID"] + ".py"), run_name="__main__")\''
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOL_")}
    env.update(
        DATABASE_URL=database_url(settings_dict),
        DJANGO_SETTINGS_MODULE="hol.settings",
        HOL_DATA_DIR=str(tmp_path_factory.mktemp("celery-data")),
        HOL_TRACE_ROOT=str(tmp_path_factory.mktemp("traces")),
        HOL_CONN_MAX_AGE="0",
        HOL_LEASE_SECONDS="3",
        HOL_RETRY_BACKOFF_SECONDS="0.2",
        HOL_AGENT_POLL_SECONDS="0.2",
        HOL_AGENT_KILL_GRACE_SECONDS="1",
        HOL_AUDIT_SEAL_DELAY_SECONDS="0",
        HOL_API_URL="http://127.0.0.1:9",  # no HOL serves the API here; agents that call it get refused
    )
    celery_app.control.purge()  # messages left by earlier runs name work orders that are gone
    processes: list[subprocess.Popen] = []

    def start(*, agent_command: str | None = default_command, extra_env: dict | None = None) -> subprocess.Popen:
        worker_env = {**env, **(extra_env or {})}
        if agent_command is not None:
            worker_env["HOL_AGENT_COMMAND"] = agent_command
        log_path = tmp_path_factory.mktemp("celery-log") / "worker.log"
        process = start_celery_worker(worker_env, log_path, concurrency=2)
        processes.append(process)
        return process

    yield start
    for process in processes:
        stop_worker(process)
