"""What an attacker tried against tasks, workers and sessions, and what they got.

Each test is one attempt, made the way an outsider or a rogue agent would make it: through the
API (or the admin), with its own credentials, against someone else's objects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from audit.models import AuditEntry
from notifications.models import Notification
from tasks.models import AgentSession, Task, Worker, WorkOrder
from tests.factories import client_for, make_user

ROOT = Path(__file__).resolve().parent.parent
KIB = 1024


@pytest.fixture
def vera_viewer(db):
    """Staff with view permissions on the queue models and nothing else."""
    user = get_user_model().objects.create_user(username="vera_viewer", password="pw-vera_viewer", is_staff=True)
    codenames = ["view_task", "view_worker", "view_agentsession", "view_workorder", "view_execution"]
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="tasks", codename__in=codenames))
    return user


@pytest.fixture
def task_of_007(as_agent_007, new_task) -> str:
    response = as_agent_007.post("/api/v1/tasks", new_task(), format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def post_task(client, payload):
    return client.post("/api/v1/tasks", payload, format="json")


def listed(client) -> set[str]:
    response = client.get("/api/v1/tasks")
    assert response.status_code == 200, response.content
    return {task["id"] for task in response.json()["results"]}


# --- managing someone else's task ------------------------------------------------------------------


def test_account_without_a_role_cannot_cancel_an_agents_task(nina_no_role, task_of_007):
    response = client_for(nina_no_role).patch(f"/api/v1/tasks/{task_of_007}", {"status": "cancelled"}, format="json")
    assert response.status_code == 403
    assert Task.objects.get(pk=task_of_007).status == Task.Status.QUEUED


def test_account_without_a_role_cannot_enqueue_an_agents_task(nina_no_role, task_of_007):
    response = client_for(nina_no_role).post("/api/v1/queue/enqueue", {"task_id": task_of_007}, format="json")
    assert response.status_code == 403
    assert not WorkOrder.objects.exists()


def test_view_only_staff_cannot_cancel_an_agents_task_through_the_api(vera_viewer, task_of_007):
    response = client_for(vera_viewer).patch(f"/api/v1/tasks/{task_of_007}", {"status": "cancelled"}, format="json")
    assert response.status_code == 403
    assert Task.objects.get(pk=task_of_007).status == Task.Status.QUEUED


def test_account_given_the_change_task_permission_may_cancel_an_agents_task(nina_no_role, task_of_007):
    nina_no_role.user_permissions.add(Permission.objects.get(content_type__app_label="tasks", codename="change_task"))
    response = client_for(nina_no_role).patch(f"/api/v1/tasks/{task_of_007}", {"status": "cancelled"}, format="json")
    assert response.status_code == 200
    assert Task.objects.get(pk=task_of_007).status == Task.Status.CANCELLED


def test_devops_engineer_may_cancel_an_agents_task(carol_devops, task_of_007):
    response = client_for(carol_devops).patch(f"/api/v1/tasks/{task_of_007}", {"status": "cancelled"}, format="json")
    assert response.status_code == 200


def test_agent_in_a_manager_group_still_cannot_cancel_another_agents_task(agent_008, task_of_007):
    agent_008.groups.add(Group.objects.get_or_create(name="tech_lead")[0])
    response = client_for(agent_008).patch(f"/api/v1/tasks/{task_of_007}", {"status": "cancelled"}, format="json")
    assert response.status_code == 403


# --- the admin's actions ---------------------------------------------------------------------------


def run_action(client, model_name: str, action: str, pk) -> None:
    client.post(reverse(f"admin:tasks_{model_name}_changelist"), {"action": action, "_selected_action": [str(pk)]})


def offered_actions(client, model_name: str) -> set[str]:
    response = client.get(reverse(f"admin:tasks_{model_name}_changelist"))
    assert response.status_code == 200
    action_form = response.context["action_form"]  # None when no action is left to offer
    return set() if action_form is None else {name for name, _ in action_form.fields["action"].choices}


def test_view_only_staff_is_not_offered_the_task_actions(client, vera_viewer, task_of_007):
    client.force_login(vera_viewer)
    assert not offered_actions(client, "task") & {"cancel_tasks", "enqueue_tasks"}


def test_staff_developer_is_not_offered_the_task_actions(client, alice_developer, task_of_007):
    """A developer may not manage an agent's task through the API; the admin agrees."""
    client.force_login(alice_developer)
    assert not offered_actions(client, "task") & {"cancel_tasks", "enqueue_tasks"}


def test_staff_tech_lead_is_offered_the_task_actions_and_cancels_a_task(client, bob_tech_lead, task_of_007):
    """The API lets a tech lead manage any task; the admin offers the same person the same."""
    client.force_login(bob_tech_lead)
    assert {"cancel_tasks", "enqueue_tasks"} <= offered_actions(client, "task")
    run_action(client, "task", "cancel_tasks", task_of_007)
    assert Task.objects.get(pk=task_of_007).status == Task.Status.CANCELLED
    cancelled = AuditEntry.objects.get(action="task.cancelled", target_id=task_of_007)
    assert cancelled.actor == "bob_tech_lead"


def test_staff_devops_engineer_terminates_an_agents_session_in_the_admin(client, carol_devops, as_agent_007):
    worker_id = as_agent_007.post("/api/v1/workers", {"name": "007-laptop"}, format="json").json()["id"]
    as_agent_007.post("/api/v1/sessions", {"session_id": "claude-1", "worker_id": worker_id}, format="json")
    client.force_login(carol_devops)
    assert "terminate_sessions" in offered_actions(client, "agentsession")
    run_action(client, "agentsession", "terminate_sessions", AgentSession.objects.get().pk)
    assert AgentSession.objects.get().status == AgentSession.Status.TERMINATED


def test_view_only_staff_posting_the_cancel_action_changes_nothing(client, vera_viewer, task_of_007):
    client.force_login(vera_viewer)
    run_action(client, "task", "cancel_tasks", task_of_007)
    assert Task.objects.get(pk=task_of_007).status == Task.Status.QUEUED
    assert not AuditEntry.objects.filter(action="task.cancelled").exists()


def test_view_only_staff_posting_the_deregister_action_changes_nothing(client, vera_viewer, as_agent_007):
    worker_id = as_agent_007.post("/api/v1/workers", {"name": "007-laptop"}, format="json").json()["id"]
    client.force_login(vera_viewer)
    run_action(client, "worker", "deregister_workers", worker_id)
    assert Worker.objects.get(pk=worker_id).status == Worker.Status.IDLE


def test_view_only_staff_posting_the_terminate_action_changes_nothing(client, vera_viewer, as_agent_007):
    worker_id = as_agent_007.post("/api/v1/workers", {"name": "007-laptop"}, format="json").json()["id"]
    as_agent_007.post("/api/v1/sessions", {"session_id": "claude-1", "worker_id": worker_id}, format="json")
    client.force_login(vera_viewer)
    run_action(client, "agentsession", "terminate_sessions", AgentSession.objects.get().pk)
    assert AgentSession.objects.get().status == AgentSession.Status.ACTIVE


# --- reading tasks (inputs may hold credentials) ----------------------------------------------------


def test_agent_does_not_see_another_agents_task_in_the_list(as_agent_008, task_of_007):
    assert task_of_007 not in listed(as_agent_008)


def test_agent_reading_another_agents_task_gets_404(as_agent_008, task_of_007):
    assert as_agent_008.get(f"/api/v1/tasks/{task_of_007}").status_code == 404


def test_agent_sees_a_task_its_worker_held_even_after_it_was_requeued(as_agent_007, as_agent_008, task_of_007):
    as_agent_007.post("/api/v1/queue/enqueue", {"task_id": task_of_007}, format="json")
    worker_id = as_agent_008.post("/api/v1/workers", {"name": "008-box"}, format="json").json()["id"]
    as_agent_008.post("/api/v1/queue/claim", {"worker_id": worker_id}, format="json")
    as_agent_008.delete(f"/api/v1/workers/{worker_id}")  # what it held goes back to the queue
    assert WorkOrder.objects.get().worker_id is None
    assert as_agent_008.get(f"/api/v1/tasks/{task_of_007}").status_code == 200


def test_account_without_a_role_sees_no_tasks(nina_no_role, task_of_007):
    client = client_for(nina_no_role)
    assert listed(client) == set()
    assert client.get(f"/api/v1/tasks/{task_of_007}").status_code == 404


def test_account_without_a_role_sees_the_tasks_it_submitted_itself(nina_no_role, task_of_007, new_task):
    client = client_for(nina_no_role)
    own = post_task(client, new_task()).json()["id"]
    assert listed(client) == {own}


def test_account_without_a_role_sees_no_sessions_or_workers(nina_no_role, as_agent_007):
    worker_id = as_agent_007.post("/api/v1/workers", {"name": "007-laptop"}, format="json").json()["id"]
    as_agent_007.post("/api/v1/sessions", {"session_id": "claude-1", "worker_id": worker_id}, format="json")
    client = client_for(nina_no_role)
    assert client.get("/api/v1/sessions").json()["results"] == []
    assert client.get("/api/v1/workers").json()["results"] == []


def test_person_with_a_role_sees_every_task(as_alice, task_of_007):
    assert listed(as_alice) == {task_of_007}


def test_view_only_staff_sees_every_task(vera_viewer, task_of_007):
    assert listed(client_for(vera_viewer)) == {task_of_007}


# --- who asked, and who answers -----------------------------------------------------------------------


def test_agent_claiming_to_be_a_human_requester_is_recorded_as_itself(as_agent_007, agent_007, new_task):
    response = post_task(as_agent_007, new_task(requested_by={"kind": "human", "id": "1", "label": "alice (CTO)"}))
    assert response.status_code == 201, response.content
    assert response.json()["requested_by"] == {"kind": "agent", "id": str(agent_007.pk), "label": "alice (CTO)"}


@pytest.fixture
def ivan_inactive(db):
    """A tech lead who left the company."""
    user = make_user("ivan_inactive", "tech_lead")
    user.is_active = False
    user.save(update_fields=["is_active"])
    return user


@pytest.mark.parametrize("who", ["nobody_here", "agent_008", "ivan_inactive", "nina_no_role"])
def test_assigning_anyone_but_an_active_person_with_a_role_gets_one_identical_400(
    as_agent_007, agent_008, ivan_inactive, nina_no_role, new_task, who
):
    response = post_task(as_agent_007, new_task(assigned_to=who))
    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid_assignee",
        "message": "assigned_to must be the username of an active person with a role",
    }
    assert not Task.objects.exists()


def test_assigning_a_person_with_a_role_works(as_agent_007, alice_developer, new_task):
    response = post_task(as_agent_007, new_task(assigned_to="alice_developer"))
    assert response.status_code == 201, response.content
    assert response.json()["assigned_to"] == "alice_developer"


# --- sizes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("description", "x" * (256 * KIB + 1)),
        ("inputs", {"blob": "x" * (900 * KIB)}),
        ("metadata", {"blob": "x" * (256 * KIB)}),
        ("objective", "x" * (256 * KIB + 1)),
    ],
)
def test_oversized_task_fields_are_refused_as_too_large(as_agent_007, new_task, field, value):
    response = post_task(as_agent_007, new_task(**{field: value}))
    assert response.status_code == 400
    assert response.json()["code"] == "too_large"
    assert not Task.objects.exists()


def test_inputs_just_under_the_limit_are_accepted(as_agent_007, new_task):
    inputs = {"blob": "x" * (256 * KIB - 20)}
    assert post_task(as_agent_007, new_task(inputs=inputs)).status_code == 201


def test_oversized_description_in_a_patch_is_refused_as_too_large(as_agent_007, task_of_007):
    response = as_agent_007.patch(f"/api/v1/tasks/{task_of_007}", {"description": "x" * (256 * KIB + 1)}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "too_large"


# --- what reaches git ---------------------------------------------------------------------------------


DANGEROUS_REFS = ["../../etc/passwd", "main/../../x", "--upload-pack=touch /tmp/pwned", "a\nb", "a..b"]


@pytest.mark.parametrize("ref", DANGEROUS_REFS)
def test_dangerous_ref_is_refused_with_invalid_ref(as_agent_007, new_task, ref):
    response = post_task(as_agent_007, new_task(target={"repo": "https://github.com/acme/shop", "ref": ref}))
    assert response.status_code == 422
    assert response.json()["code"] == "INVALID_REF"
    assert not Task.objects.exists()


def test_a_ref_with_a_nul_character_is_refused_by_the_api_and_by_the_gate(as_agent_007, new_task):
    from hol.errors import ValidationFailed
    from tasks.intake import check_intake

    target = {"repo": "https://github.com/acme/shop", "ref": "main\x00"}
    assert post_task(as_agent_007, new_task(target=target)).status_code == 400
    with pytest.raises(ValidationFailed) as refused:
        check_intake({"target": target}, allowed_repo_prefixes=["https://github.com/"])
    assert refused.value.code == "INVALID_REF"
    assert not Task.objects.exists()


@pytest.mark.parametrize("path", ["../secrets", "src/../../x", "src\\..\\..\\x", "-rf", "a\x1bb", "/etc/passwd"])
def test_dangerous_path_is_refused_with_invalid_path(as_agent_007, new_task, path):
    response = post_task(as_agent_007, new_task(target={"repo": "https://github.com/acme/shop", "path": path}))
    assert response.status_code == 422
    assert response.json()["code"] == "INVALID_PATH"


def test_ordinary_ref_and_path_with_dots_are_accepted(as_agent_007, new_task):
    target = {"repo": "https://github.com/acme/shop", "ref": "release/v1.2", "path": "docs/.github/x..y"}
    response = post_task(as_agent_007, new_task(target=target))
    assert response.status_code == 201, response.content


# --- which repositories -------------------------------------------------------------------------------


def test_with_no_allowed_prefixes_every_repo_is_refused_and_the_message_names_the_setting(
    as_agent_007, new_task, settings
):
    settings.HOL_ALLOWED_REPO_PREFIXES = []
    response = post_task(as_agent_007, new_task())
    assert response.status_code == 422
    assert response.json()["code"] == "REPO_NOT_ALLOWED"
    assert "HOL_ALLOWED_REPO_PREFIXES" in response.json()["message"]


@pytest.mark.parametrize(
    "repo",
    [
        "https://github.com/acme/../evil/shop",
        "https://github.com/acme/%2E%2E/evil/shop",
        "https://github.com/acme/shop\nx",
    ],
)
def test_repo_that_climbs_out_of_its_allowed_prefix_is_refused(as_agent_007, new_task, settings, repo):
    settings.HOL_ALLOWED_REPO_PREFIXES = ["https://github.com/acme/"]
    response = post_task(as_agent_007, new_task(target={"repo": repo}))
    assert response.status_code == 422
    assert response.json()["code"] == "REPO_NOT_ALLOWED"


def test_hol_started_without_allowed_prefixes_allows_no_repository():
    env = {key: value for key, value in os.environ.items() if key != "HOL_ALLOWED_REPO_PREFIXES"}
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"  # reading settings must not start an embedded Redis
    code = "import hol.settings as s, json; print(json.dumps(s.HOL_ALLOWED_REPO_PREFIXES))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


# --- sessions -----------------------------------------------------------------------------------------


@pytest.fixture
def worker_008(as_agent_008) -> str:
    return as_agent_008.post("/api/v1/workers", {"name": "008-box"}, format="json").json()["id"]


def test_agent_cannot_open_a_session_on_another_agents_task(as_agent_008, worker_008, task_of_007):
    response = as_agent_008.post(
        "/api/v1/sessions",
        {"session_id": "claude-sneaky", "worker_id": worker_008, "task_id": task_of_007},
        format="json",
    )
    assert response.status_code == 403
    assert not AgentSession.objects.exists()


@pytest.fixture
def session_of_008(as_agent_008, worker_008) -> str:
    as_agent_008.post("/api/v1/sessions", {"session_id": "claude-008", "worker_id": worker_008}, format="json")
    return "claude-008"


def test_a_termination_reason_over_1_kib_is_refused_with_400(as_agent_008, session_of_008):
    response = as_agent_008.delete(f"/api/v1/sessions/{session_of_008}", {"reason": "x" * 1025}, format="json")
    assert response.status_code == 400
    assert AgentSession.objects.get().status == AgentSession.Status.ACTIVE


def test_a_termination_reason_of_1_kib_of_multibyte_text_over_1_kib_in_bytes_is_refused(as_agent_008, session_of_008):
    response = as_agent_008.delete(f"/api/v1/sessions/{session_of_008}", {"reason": "é" * 600}, format="json")
    assert response.status_code == 400


def test_a_termination_reason_that_is_a_json_object_is_refused_not_stored(as_agent_008, session_of_008):
    response = as_agent_008.delete(f"/api/v1/sessions/{session_of_008}", {"reason": {"a": 1}}, format="json")
    assert response.status_code == 400
    assert AgentSession.objects.get().termination_reason == ""
    assert not Notification.objects.exists()


# --- the benchmark's floor is not a production endpoint --------------------------------------------------


def test_ping_is_not_served(as_agent_007):
    assert as_agent_007.post("/api/v1/ping").status_code == 404
