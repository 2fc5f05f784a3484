"""Fixtures every test module shares: the personas, their API clients, and settings that keep the
suite fast and self-contained. Builders live in tests/factories.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.test import APIClient

from tests.factories import claim_work, client_for, make_persona, register_worker, submit_task, task_payload
from tests.processes import database_url, start_approver

pytest_plugins = ["tests.live"]


@pytest.fixture
def agent_007(db):
    return make_persona("agent_007")


@pytest.fixture
def agent_008(db):
    return make_persona("agent_008")


@pytest.fixture
def alice_developer(db):
    return make_persona("alice_developer")


@pytest.fixture
def bob_tech_lead(db):
    return make_persona("bob_tech_lead")


@pytest.fixture
def erin_tech_lead(db):
    return make_persona("erin_tech_lead")


@pytest.fixture
def carol_devops(db):
    return make_persona("carol_devops")


@pytest.fixture
def dave_devops(db):
    return make_persona("dave_devops")


@pytest.fixture
def nina_no_role(db):
    """A signed-in person in no role at all: a contractor account, a forgotten test user."""
    return get_user_model().objects.create_user(username="nina_no_role", password="pw-nina_no_role")


@pytest.fixture
def frank_devops(db):
    return make_persona("frank_devops")


@pytest.fixture
def as_agent_007(agent_007) -> APIClient:
    return client_for(agent_007)


@pytest.fixture
def as_agent_008(agent_008) -> APIClient:
    return client_for(agent_008)


@pytest.fixture
def as_alice(alice_developer) -> APIClient:
    return client_for(alice_developer)


@pytest.fixture
def new_task():
    """A payload for POST /api/v1/tasks with any fields replaced."""
    return task_payload


@pytest.fixture
def worker_007(as_agent_007) -> str:
    return register_worker(as_agent_007, "007-laptop")


@pytest.fixture
def worker_008(as_agent_008) -> str:
    return register_worker(as_agent_008, "008-laptop")


@pytest.fixture
def claimed(as_agent_007, worker_007) -> str:
    """A work order agent_007's worker holds: a task created, enqueued and claimed over the API."""
    return claim_work(as_agent_007, submit_task(as_agent_007), worker_007)


@pytest.fixture
def approver_processes():
    """Starts approvers (tests/processes.py) on this run's PostgreSQL database: call it with a
    username; each is stopped at the end of the test."""
    env = {**os.environ, "DATABASE_URL": database_url(connection.settings_dict)}
    started: list = []

    def start(username: str):
        started.append(start_approver(username, env))
        return started[-1]

    yield start
    for proc in started:
        proc.stdin.close()
        proc.wait(10)


@pytest.fixture
def low_needs_people(tmp_path, settings):
    """The shipped rules with low no longer auto-approved, so people decide low requests too."""
    document = yaml.safe_load(Path(settings.HOL_RISK_RULES_FILE).read_text())
    document["levels"]["low"]["auto_approve"] = False
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(document))
    settings.HOL_RISK_RULES_FILE = path


def pytest_collection_modifyitems(config, items):
    """Tests marked `postgres` need PostgreSQL (SKIP LOCKED, triggers, concurrent writers)."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def embedded_redis_server():
    """On the embedded defaults the tests use HOL's own Redis: started here unless already running.
    The run stops it at its end when it was not running before (hol/pytest_plugin.py)."""
    from hol import embedded_redis

    embedded_redis.start_if_embedded()


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    """Personas are created in almost every test; PBKDF2's deliberate slowness costs ~0.3 s each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _seal_audit_inline(settings):
    """The test process seals audit entries inline after commit, so no background sealer thread
    holds a connection to the test database when it is dropped. Servers the tests start as
    subprocesses keep the default background sealer."""
    settings.HOL_AUDIT_SEAL_DELAY_SECONDS = 0


@pytest.fixture(autouse=True)
def github_repos_allowed(settings):
    """HOL denies every repository until HOL_ALLOWED_REPO_PREFIXES names some; the suite's
    tasks live on GitHub. Tests of the deny-all default set it back to empty."""
    settings.HOL_ALLOWED_REPO_PREFIXES = ["https://github.com/"]


@pytest.fixture(autouse=True)
def _fresh_throttles():
    """DRF throttles count in the cache (Redis); each test starts with none spent. Only the
    cache's own keys go: the same Redis carries Celery's queue and the channel layer."""
    forget_cached_counts()
    yield
    forget_cached_counts()


def forget_cached_counts() -> None:
    from django.conf import settings
    from django.core.cache import cache

    client = cache._cache.get_client(write=True)
    for key in client.scan_iter(f"{settings.CACHES['default']['KEY_PREFIX']}:*"):
        client.delete(key)


@pytest.fixture
def celery_eager():
    """Celery tasks dispatched during the test run in this process, at once."""
    from hol.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


CHROMIUM = os.environ.get("HOL_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


@pytest.fixture(scope="module")
def browser():
    """One headless chromium (Playwright driving Debian's) for a module's tests; each test opens
    its own contexts. Playwright's sync API runs an event loop in this thread while Django's test
    fixtures still touch the database from it (flushes between tests), which is safe here: nothing
    else runs. Module scope keeps that allowance away from the rest of the suite."""
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
            )
            yield chromium
            chromium.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where screenshots go: the README's folder when asked (HOL_UPDATE_SCREENSHOTS=1), so that an
    ordinary test run leaves the working tree clean."""
    if os.environ.get("HOL_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS
    return tmp_path
