from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken


def make_user(username: str, role: str, *, is_staff: bool = False):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=username, password="pw-" + username, is_staff=is_staff)
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def agent_007(db):
    return make_user("agent_007", "agent")


@pytest.fixture
def agent_008(db):
    return make_user("agent_008", "agent")


@pytest.fixture
def alice_developer(db):
    return make_user("alice_developer", "developer", is_staff=True)


@pytest.fixture
def bob_tech_lead(db):
    return make_user("bob_tech_lead", "tech_lead", is_staff=True)


@pytest.fixture
def carol_devops(db):
    return make_user("carol_devops", "devops_engineer", is_staff=True)


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


@pytest.fixture
def as_agent_007(agent_007) -> APIClient:
    return client_for(agent_007)


@pytest.fixture
def as_agent_008(agent_008) -> APIClient:
    return client_for(agent_008)


@pytest.fixture
def as_alice(alice_developer) -> APIClient:
    return client_for(alice_developer)


TASK = {
    "title": "Fix the flaky login test",
    "objective": "Make tests/test_login.py pass reliably",
    "task_type": "bugfix",
    "operation": "code_change",
    "target": {"repo": "https://github.com/acme/shop"},
}


@pytest.fixture
def new_task():
    """A payload for POST /api/v1/tasks with any fields replaced."""

    def build(**changes):
        return {**TASK, **changes}

    return build


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
    """On the embedded defaults the tests use HOL's own Redis: started here unless already running,
    and stopped at the end by whoever started it (as `./bin/hol run` does on Ctrl-C)."""
    from django.conf import settings

    from hol import embedded_redis

    started = embedded_redis.start_if_embedded()
    yield
    if started:
        embedded_redis.stop(settings.HOL_REDIS_SOCKET)


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
