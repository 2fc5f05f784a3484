"""`/healthz` and `/version` answer anyone, say whether each part works, and leak nothing."""

from __future__ import annotations

import re
import tomllib

import pytest
from django.conf import settings
from django.test import Client

from hol import health


@pytest.fixture(autouse=True)
def _fresh_celery_answer():
    health._celery_cache.clear()
    yield
    health._celery_cache.clear()


@pytest.mark.django_db
def test_healthz_answers_200_without_authentication_when_database_and_redis_work():
    response = Client().get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] == "ok"


@pytest.mark.django_db
def test_healthz_reports_celery_without_workers_but_stays_healthy():
    body = Client().get("/healthz").json()
    assert body["checks"]["celery"] == "no_workers"


@pytest.mark.django_db
def test_healthz_answers_503_when_redis_cannot_be_reached(settings):
    settings.REDIS_URL = "redis://127.0.0.1:9/0"
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] == "unavailable"
    assert response.json()["checks"]["celery"] == "unavailable"


@pytest.mark.django_db
def test_healthz_answers_503_when_the_database_cannot_be_reached(monkeypatch):
    def refuse():
        raise OSError("connection refused")

    monkeypatch.setattr(health.connection, "cursor", refuse)
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "unavailable"


@pytest.mark.django_db
def test_healthz_body_names_no_hosts_urls_or_error_texts(settings):
    settings.REDIS_URL = "redis://:hunter2@127.0.0.1:9/0"
    text = Client().get("/healthz").content.decode()
    assert "hunter2" not in text
    assert "127.0.0.1" not in text
    assert "redis://" not in text
    assert set(re.findall(r'"(\w+)"', text)) <= {
        "status",
        "checks",
        "database",
        "redis",
        "celery",
        "ok",
        "unavailable",
        "no_workers",
    }


@pytest.mark.django_db
def test_healthz_refuses_writes():
    assert Client().post("/healthz").status_code == 405


@pytest.mark.postgres
def test_healthz_reports_celery_ok_when_a_worker_answers_a_ping(start_worker):
    start_worker()
    body = Client().get("/healthz").json()
    assert body["checks"]["celery"] == "ok"


def test_version_reports_the_project_version_and_the_git_commit():
    with open(settings.BASE_DIR / "pyproject.toml", "rb") as f:
        expected = tomllib.load(f)["project"]["version"]
    response = Client().get("/version")
    assert response.status_code == 200
    assert response.json()["version"] == expected
    assert re.fullmatch(r"[0-9a-f]{40}", response.json()["commit"])
