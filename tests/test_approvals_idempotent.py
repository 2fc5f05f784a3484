"""Asking again is idempotent: the same work order (or session, or thread) asking for the same
action gets its open request back, never a second one for people to decide."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from approvals.models import ApprovalRequest
from tasks.models import AgentSession
from tests.factories import claim_work, register_worker, submit_task

MEDIUM = {"action_type": "file", "operation": "write", "environment": "dev", "details": {"path": "a.py"}}
LOW = {"action_type": "file", "operation": "read", "environment": "dev", "details": {"path": "a.py"}}


@pytest.fixture(autouse=True)
def _github_repos_allowed(settings):
    settings.HOL_ALLOWED_REPO_PREFIXES = ["https://github.com/acme/"]


@pytest.fixture
def held(as_agent_007, bob_tech_lead) -> dict:
    """agent_007's task, the work order its worker holds, and a session of that worker."""
    task_id = submit_task(as_agent_007)
    worker_id = register_worker(as_agent_007, "007-laptop")
    work_order_id = claim_work(as_agent_007, task_id, worker_id)
    AgentSession.objects.create(session_id="cc-007", worker_id=worker_id, last_activity_at=timezone.now())
    return {"task_id": task_id, "work_order_id": work_order_id}


def ask(client, action: dict, **links):
    return client.post("/api/v1/approvals", {**action, **links}, format="json")


def test_same_work_order_asking_the_same_action_gets_the_pending_request_back(as_agent_007, held):
    first = ask(as_agent_007, MEDIUM, work_order_id=held["work_order_id"])
    again = ask(as_agent_007, MEDIUM, work_order_id=held["work_order_id"])
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert ApprovalRequest.objects.count() == 1


def test_an_approved_request_not_yet_used_is_returned_approved(as_agent_007, held, bob_tech_lead):
    from tests.factories import client_for

    first = ask(as_agent_007, MEDIUM, work_order_id=held["work_order_id"]).json()
    assert (
        client_for(bob_tech_lead).post(f"/api/v1/approvals/{first['id']}/approve", {}, format="json").status_code == 200
    )
    again = ask(as_agent_007, MEDIUM, work_order_id=held["work_order_id"])
    assert again.status_code == 200
    assert (again.json()["id"], again.json()["status"]) == (first["id"], "approved")


def test_a_used_approval_is_not_returned_and_a_new_request_is_opened(as_agent_007, held):
    first = ask(as_agent_007, LOW, work_order_id=held["work_order_id"]).json()
    action = {key: LOW[key] for key in ("action_type", "operation", "environment", "details")}
    consumed = as_agent_007.post(f"/api/v1/approvals/{first['id']}/consume", action, format="json")
    assert consumed.status_code == 200, consumed.content
    again = ask(as_agent_007, LOW, work_order_id=held["work_order_id"])
    assert again.status_code == 201
    assert again.json()["id"] != first["id"]


def test_a_different_action_opens_its_own_request(as_agent_007, held):
    first = ask(as_agent_007, MEDIUM, work_order_id=held["work_order_id"])
    other = ask(as_agent_007, {**MEDIUM, "details": {"path": "b.py"}}, work_order_id=held["work_order_id"])
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]


def test_an_overdue_pending_request_is_not_returned(as_agent_007, held):
    first = ask(as_agent_007, MEDIUM, work_order_id=held["work_order_id"]).json()
    ApprovalRequest.objects.filter(pk=first["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    again = ask(as_agent_007, MEDIUM, work_order_id=held["work_order_id"])
    assert again.status_code == 201
    assert again.json()["id"] != first["id"]


def test_a_rejected_request_is_not_returned(as_agent_007, held, bob_tech_lead):
    from tests.factories import client_for

    first = ask(as_agent_007, MEDIUM, work_order_id=held["work_order_id"]).json()
    rejected = client_for(bob_tech_lead).post(
        f"/api/v1/approvals/{first['id']}/reject", {"justification": "no"}, format="json"
    )
    assert rejected.status_code == 200
    assert ask(as_agent_007, MEDIUM, work_order_id=held["work_order_id"]).status_code == 201


def test_same_session_without_a_work_order_gets_the_same_request(as_agent_007, held):
    first = ask(as_agent_007, MEDIUM, session_id="cc-007")
    again = ask(as_agent_007, MEDIUM, session_id="cc-007")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


def test_same_thread_of_the_same_asker_gets_the_same_request(as_agent_007, bob_tech_lead):
    first = ask(as_agent_007, MEDIUM, thread_id="claude-session-1")
    again = ask(as_agent_007, MEDIUM, thread_id="claude-session-1")
    other_thread = ask(as_agent_007, MEDIUM, thread_id="claude-session-2")
    assert (first.status_code, again.status_code, other_thread.status_code) == (201, 200, 201)
    assert again.json()["id"] == first.json()["id"]


def test_another_agent_on_the_same_thread_does_not_get_the_first_agents_request(
    as_agent_007, as_agent_008, bob_tech_lead
):
    first = ask(as_agent_007, MEDIUM, thread_id="shared-thread")
    theirs = ask(as_agent_008, MEDIUM, thread_id="shared-thread")
    assert theirs.status_code == 201
    assert theirs.json()["id"] != first.json()["id"]


def test_without_work_order_session_or_thread_each_ask_opens_a_request(as_agent_007, bob_tech_lead):
    assert ask(as_agent_007, MEDIUM).status_code == 201
    assert ask(as_agent_007, MEDIUM).status_code == 201
    assert ApprovalRequest.objects.count() == 2


# --- two identical asks at the same moment, on PostgreSQL ---


def ask_in_child(username: str, work_order_id: str, start, results) -> None:
    """Child process: one of two agents' calls arriving at once, through the HTTP API."""
    import traceback

    from django.db import connections

    from tests.factories import client_for

    try:
        client = client_for(get_user_model().objects.get(username=username))
        start.wait(timeout=30)
        response = client.post("/api/v1/approvals", {**MEDIUM, "work_order_id": work_order_id}, format="json")
        results.put((response.status_code, response.json().get("id"), None))
    except BaseException:
        results.put((None, None, traceback.format_exc()))
    finally:
        connections.close_all()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_identical_asks_at_the_same_moment_open_one_request(as_agent_007, held, monkeypatch):
    import time

    from approvals.services import requests
    from tests.processes import run_forked

    # Routing runs between the look-up and the insert; slowed down (in the forked children too),
    # it holds every ask inside that window, so without the lock each would open its own.
    routed = requests.assign

    def slow_assign(*args, **kwargs):
        time.sleep(0.3)
        return routed(*args, **kwargs)

    monkeypatch.setattr(requests, "assign", slow_assign)

    for _ in range(3):
        ApprovalRequest.objects.all().delete()
        reports = run_forked(ask_in_child, [("agent_007", held["work_order_id"])] * 4, timeout=60)
        assert [error for _, _, error in reports if error] == []
        assert sorted(code for code, _, _ in reports) == [200, 200, 200, 201]
        assert len({request_id for _, request_id, _ in reports}) == 1
        assert ApprovalRequest.objects.count() == 1
