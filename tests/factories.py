"""Builders the tests share: people, their clients, payloads. Plain functions, so a test, a
fixture or a forked child process can call them; `conftest.py` turns the personas into fixtures."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

# username → (role, staff). Humans are staff (they use the admin); agents are service accounts.
PERSONAS = {
    "alice_developer": ("developer", True),
    "bob_tech_lead": ("tech_lead", True),
    # A second tech lead: two people who may decide the same request, racing or taking turns.
    "erin_tech_lead": ("tech_lead", True),
    "carol_devops": ("devops_engineer", True),
    # A second devops engineer: a critical request needs two distinct approvers.
    "dave_devops": ("devops_engineer", True),
    # A third: two devops engineers racing to give a critical request its second decision.
    "frank_devops": ("devops_engineer", True),
    "agent_007": ("agent", False),
    "agent_008": ("agent", False),
}

TASK = {
    "title": "Fix the flaky login test",
    "objective": "Make tests/test_login.py pass reliably",
    "task_type": "bugfix",
    "operation": "code_change",
    "target": {"repo": "https://github.com/acme/shop"},
}

# Approval requests the tests make again and again: a medium-risk and a high-risk file action.
MEDIUM_ACTION = {"action_type": "file", "operation": "write"}
HIGH_ACTION = {"action_type": "file", "operation": "delete", "environment": "dev"}


def make_user(username: str, role: str, *, is_staff: bool = False):
    """An active account in the group `role`, its password `pw-<username>`."""
    user = get_user_model().objects.create_user(username=username, password="pw-" + username, is_staff=is_staff)
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def make_persona(username: str):
    role, is_staff = PERSONAS[username]
    return make_user(username, role, is_staff=is_staff)


def client_for(user) -> APIClient:
    """An API client carrying `user`'s access token (anonymous when `user` is None)."""
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


def signed_in(user) -> Client:
    """A browser-like client with `user` signed in (the admin, the pages)."""
    client = Client()
    client.force_login(user)
    return client


def task_payload(**changes: Any) -> dict[str, Any]:
    """A body for POST /api/v1/tasks with any fields replaced."""
    return {**TASK, **changes}


# --- over the API, as an agent does it ---


def submit_task(client, **changes: Any) -> str:
    """POST a task (TASK with `changes`); its id."""
    response = client.post("/api/v1/tasks", task_payload(**changes), format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def register_worker(client, name: str) -> str:
    response = client.post("/api/v1/workers", {"name": name}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def claim_work(client, task_id: str, worker_id: str) -> str:
    """Enqueue the task and claim it with the worker: the id of the work order the worker holds."""
    enqueued = client.post("/api/v1/queue/enqueue", {"task_id": task_id}, format="json")
    assert enqueued.status_code == 201, enqueued.content
    response = client.post("/api/v1/queue/claim", {"worker_id": worker_id}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["id"]
