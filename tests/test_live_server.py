"""HOL served by a real daphne (started the way `./bin/hol run` starts it), driven over HTTP
(the fixtures are in tests/live.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from hol import embedded_redis
from tests.live import manage

ROOT = Path(__file__).resolve().parent.parent


def test_agent_runs_the_whole_loop_over_http_through_daphne(base_url, demo_passwords, new_task):
    with httpx.Client(base_url=base_url, timeout=10) as http:
        token = http.post(
            "/api/v1/auth/token", json={"username": "demo_agent", "password": demo_passwords["demo_agent"]}
        )
        assert token.status_code == 200, token.text
        http.headers["Authorization"] = f"Bearer {token.json()['access']}"

        worker = http.post("/api/v1/workers", json={"name": "live-laptop"})
        assert worker.status_code == 201, worker.text
        task = http.post("/api/v1/tasks", json=new_task())
        assert task.status_code == 201, task.text
        enqueued = http.post("/api/v1/queue/enqueue", json={"task_id": task.json()["id"]})
        assert enqueued.status_code == 201, enqueued.text
        claim = http.post("/api/v1/queue/claim", json={"worker_id": worker.json()["id"]})
        assert claim.status_code == 200, claim.text
        assert claim.json()["task"]["id"] == task.json()["id"]
        done = http.post("/api/v1/queue/complete", json={"work_order_id": claim.json()["id"], "output": "ok"})
        assert done.status_code == 200, done.text

        assert http.get(f"/api/v1/tasks/{task.json()['id']}").json()["status"] == "completed"
        assert http.post("/api/v1/queue/claim", json={"worker_id": worker.json()["id"]}).status_code == 204


def test_live_server_refuses_requests_without_a_token(base_url, transactional_db):
    response = httpx.get(f"{base_url}/api/v1/tasks", timeout=10)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_live_server_serves_the_interactive_api_docs(base_url, transactional_db):
    response = httpx.get(f"{base_url}/api/docs/", timeout=10)
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


def test_live_server_serves_static_files_with_their_type(base_url, transactional_db):
    response = httpx.get(f"{base_url}/static/hol/hol.css", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert response.content == (ROOT / "static" / "hol" / "hol.css").read_bytes()
    assert httpx.get(f"{base_url}/static/hol/nothing.css", timeout=10).status_code == 404


def test_every_middleware_runs_on_the_event_loop_under_daphne():
    """A sync-only middleware makes every request cross to a thread and back around it."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    sync_only = [path for path in settings.MIDDLEWARE if not getattr(import_string(path), "async_capable", False)]
    assert sync_only == []


def test_live_server_serves_the_openapi_schema_with_the_queue(base_url, transactional_db):
    response = httpx.get(f"{base_url}/api/schema/", timeout=10)
    assert response.status_code == 200
    assert "/api/v1/queue/claim" in response.text
    assert "/api/v1/auth/token" in response.text


# --- what an error page tells a stranger ----------------------------------------------------------

# Words of Django's debug pages: the URL patterns of a 404, the settings of a 400 or 500.
DEBUG_PAGE_WORDS = ("URLconf", "urlpatterns", "REDIS_URL", "CELERY_BROKER_URL", "HOL_DATA_DIR", "Traceback")


def test_a_404_shows_no_url_patterns_or_settings(base_url, transactional_db):
    response = httpx.get(f"{base_url}/no-such-page/", timeout=10)
    assert response.status_code == 404
    assert [word for word in DEBUG_PAGE_WORDS if word in response.text] == []


def test_an_oversized_admin_login_form_gets_a_400_that_shows_no_settings(base_url, transactional_db):
    form = {"username": "x" * (2 * 1024 * 1024), "password": "guess"}
    with httpx.Client(base_url=base_url, timeout=30) as browser:
        browser.get("/admin/login/")  # the CSRF cookie, so the form itself is read
        response = browser.post("/admin/login/", data=form)
    assert response.status_code == 400
    assert [word for word in DEBUG_PAGE_WORDS if word in response.text] == []


def test_guessing_passwords_through_daphne_is_throttled(base_url, live_env, transactional_db):
    try:
        with httpx.Client(base_url=base_url, timeout=10) as http:
            answers = [
                http.post("/api/v1/auth/token", json={"username": "demo_tech_lead", "password": f"guess-{n}"})
                for n in range(12)
            ]
        assert answers[0].status_code == 401
        assert answers[-1].status_code == 429
        assert int(answers[-1].headers["Retry-After"]) > 0
    finally:
        manage(live_env, "axes_reset")  # the other tests sign in from this address too


# --- `./bin/hol run` itself -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, what: str, log: Path, launcher: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + 180
    while not predicate():
        assert launcher is None or launcher.poll() is None, f"the launcher exited while {what}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"timed out while {what}:\n{log.read_text()}"
        time.sleep(0.2)


def command_lines() -> list[str]:
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return lines


@pytest.mark.slow
@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="the launcher test runs on the embedded defaults")
def test_the_launcher_starts_hol_with_demo_accounts_and_stops_its_redis():
    """On the embedded defaults: demo passwords printed, on no command line, each signing in as
    its own account; Ctrl-C stops every process, the Redis server it started included."""
    with tempfile.TemporaryDirectory(prefix="hol-run-") as name:
        data_dir, log = Path(name) / "data", Path(name) / "launcher.log"
        env = {key: value for key, value in os.environ.items() if not key.startswith("HOL_")}
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        env.update(HOL_DATA_DIR=str(data_dir), HOL_ENV_FILE=str(Path(name) / "no.env"), HOL_LOG_LEVEL="WARNING")
        port = free_port()
        command = [sys.executable, "-m", "hol.launcher", "run", "--port", str(port), "--web-processes", "1"]
        with log.open("w") as output:
            launcher = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: "Ctrl-C stops everything" in log.read_text(), "starting", log, launcher)
            passwords = json.loads((data_dir / "demo-accounts.json").read_text())
            assert {"demo_devops_engineer", "demo_devops_engineer_2", "demo_agent"} <= set(passwords)
            assert all(password in log.read_text() for password in passwords.values())
            assert [line for line in command_lines() if any(p in line for p in passwords.values())] == []
            answer = httpx.post(
                f"http://127.0.0.1:{port}/api/v1/auth/token",
                json={"username": "demo_devops_engineer_2", "password": passwords["demo_devops_engineer_2"]},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            assert embedded_redis.answers_ping(data_dir / "redis.sock")
        finally:
            launcher.send_signal(signal.SIGINT)
            launcher.wait(timeout=60)
        assert launcher.returncode == 0, log.read_text()
        wait_for(lambda: not embedded_redis.answers_ping(data_dir / "redis.sock"), "stopping redis", log)
