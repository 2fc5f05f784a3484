"""Tasks whose declared action is high or critical risk wait for approval at intake: the task is
approval_pending with an approval request in its submitter's name; approval queues and enqueues
it once, rejection, expiry or withdrawal cancel it. Through the API, the services and the pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals.models import ApprovalRequest
from approvals.services import approval_decide, approvals_expire_overdue
from audit.models import AuditEntry
from hol.errors import Conflict
from notifications.models import Notification
from tasks import services as task_services
from tasks.models import Task, WorkOrder
from tests.factories import client_for, signed_in, task_payload
from tests.processes import ROUNDS, race

DEPLOY_PRODUCTION = {"action_type": "deployment", "operation": "deploy", "environment": "production"}
DROP_TABLE = {"action_type": "database", "operation": "drop", "environment": "production"}
WRITE_FILE = {"action_type": "file", "operation": "write"}


def submit(client, action: dict | None = None, **changes) -> dict:
    payload = task_payload(**changes) if action is None else task_payload(action=action, **changes)
    response = client.post("/api/v1/tasks", payload, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def task_actions(task_id) -> list[str]:
    return list(
        AuditEntry.objects.filter(target_type="task", target_id=str(task_id))
        .order_by("id")
        .values_list("action", flat=True)
    )


def approve(user, request_id, justification="checked the rollout plan"):
    return client_for(user).post(
        f"/api/v1/approvals/{request_id}/approve", {"justification": justification}, format="json"
    )


# --- intake ---------------------------------------------------------------------------------------


def test_high_risk_task_waits_for_approval_with_a_request_linked_to_it(as_agent_007, agent_007):
    body = submit(as_agent_007, DEPLOY_PRODUCTION, enqueue=True)
    assert body["status"] == "approval_pending"
    request = ApprovalRequest.objects.get(pk=body["approval_request"])
    assert (request.task_id, request.requested_by, request.risk_level, request.status) == (
        Task.objects.get(pk=body["id"]).pk,
        agent_007,
        "high",
        "pending",
    )
    assert not WorkOrder.objects.filter(task_id=body["id"]).exists()


def test_medium_risk_task_is_queued_and_enqueued_as_before(as_agent_007):
    body = submit(as_agent_007, WRITE_FILE, enqueue=True)
    assert (body["status"], body["approval_request"]) == ("queued", None)
    assert WorkOrder.objects.filter(task_id=body["id"], status="queued").count() == 1
    assert not ApprovalRequest.objects.exists()


def test_task_without_a_declared_action_is_not_gated(as_agent_007):
    assert submit(as_agent_007)["status"] == "queued"


def test_enqueue_while_approval_pending_is_a_409_with_its_own_code(as_agent_007):
    body = submit(as_agent_007, DEPLOY_PRODUCTION)
    response = as_agent_007.post("/api/v1/queue/enqueue", {"task_id": body["id"]}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "approval_pending"
    assert not WorkOrder.objects.exists()


def test_a_malformed_action_is_a_400_and_creates_nothing(as_agent_007):
    response = as_agent_007.post("/api/v1/tasks", task_payload(action={"operation": "deploy"}), format="json")
    assert response.status_code == 400
    assert not Task.objects.exists()


# --- who decides ----------------------------------------------------------------------------------


def test_the_submitting_agent_cannot_approve_its_own_task(as_agent_007):
    body = submit(as_agent_007, DEPLOY_PRODUCTION)
    response = as_agent_007.post(
        f"/api/v1/approvals/{body['approval_request']}/approve", {"justification": "trust me"}, format="json"
    )
    assert response.status_code == 403
    assert Task.objects.get(pk=body["id"]).status == "approval_pending"


def test_a_person_cannot_approve_the_task_they_submitted(bob_tech_lead):
    body = submit(client_for(bob_tech_lead), DEPLOY_PRODUCTION)
    response = approve(bob_tech_lead, body["approval_request"])
    assert response.status_code == 403
    assert response.json()["code"] == "self_approval"


# --- approval -------------------------------------------------------------------------------------


def test_approval_queues_and_enqueues_the_task_once_audited(as_agent_007, bob_tech_lead):
    body = submit(as_agent_007, DEPLOY_PRODUCTION)
    assert approve(bob_tech_lead, body["approval_request"]).status_code == 200
    task = Task.objects.get(pk=body["id"])
    assert task.status == "queued"
    assert WorkOrder.objects.filter(task=task, status="queued").count() == 1
    assert task_actions(task.pk) == ["task.created", "task.approved"]
    approved = AuditEntry.objects.get(action="task.approved")
    assert (approved.actor, approved.details["approval_request"]) == ("system", body["approval_request"])
    assert AuditEntry.objects.filter(action="work_order.enqueued", task_id=task.pk).count() == 1


def test_critical_task_needs_both_approvals_before_it_is_enqueued(as_agent_007, carol_devops, dave_devops):
    body = submit(as_agent_007, DROP_TABLE)
    assert approve(carol_devops, body["approval_request"]).status_code == 200
    assert Task.objects.get(pk=body["id"]).status == "approval_pending"
    assert not WorkOrder.objects.exists()
    assert approve(dave_devops, body["approval_request"]).status_code == 200
    assert Task.objects.get(pk=body["id"]).status == "queued"
    assert WorkOrder.objects.count() == 1


def test_another_approval_linked_to_the_task_does_not_release_it(as_agent_007, alice_developer, erin_tech_lead):
    """An agent cannot free its gated task by linking a lesser request to it and getting that
    one approved: only the intake request settles the task."""
    body = submit(as_agent_007, DEPLOY_PRODUCTION)
    side = as_agent_007.post("/api/v1/approvals", {**WRITE_FILE, "task_id": body["id"]}, format="json").json()
    response = client_for(erin_tech_lead).post(f"/api/v1/approvals/{side['id']}/approve", {}, format="json")
    assert response.status_code == 200
    assert Task.objects.get(pk=body["id"]).status == "approval_pending"
    assert not WorkOrder.objects.exists()


# --- rejection, expiry, withdrawal ----------------------------------------------------------------


def test_rejection_cancels_the_task_with_the_reason_and_tells_its_owner(as_agent_007, bob_tech_lead, alice_developer):
    body = submit(as_agent_007, DEPLOY_PRODUCTION, assigned_to="alice_developer")
    response = client_for(bob_tech_lead).post(
        f"/api/v1/approvals/{body['approval_request']}/reject", {"justification": "freeze week"}, format="json"
    )
    assert response.status_code == 200
    task = Task.objects.get(pk=body["id"])
    assert (task.status, task.completed_at is not None) == ("cancelled", True)
    assert not WorkOrder.objects.exists()
    cancelled = AuditEntry.objects.get(action="task.cancelled", target_id=str(task.pk))
    assert cancelled.details["reason"] == "its approval request was rejected: freeze week"
    note = Notification.objects.get(user=alice_developer, kind="task.cancelled")
    assert note.message == f"{task.title}: cancelled: its approval request was rejected: freeze week"
    again = as_agent_007.post("/api/v1/queue/enqueue", {"task_id": body["id"]}, format="json")
    assert again.status_code == 409


def test_expiry_cancels_the_waiting_task(as_agent_007):
    body = submit(as_agent_007, DEPLOY_PRODUCTION)
    ApprovalRequest.objects.filter(pk=body["approval_request"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert approvals_expire_overdue() == 1
    assert Task.objects.get(pk=body["id"]).status == "cancelled"
    assert AuditEntry.objects.get(action="task.cancelled").details["approval_status"] == "expired"


def test_withdrawing_the_request_cancels_the_task(as_agent_007):
    body = submit(as_agent_007, DEPLOY_PRODUCTION)
    response = as_agent_007.post(f"/api/v1/approvals/{body['approval_request']}/cancel", {}, format="json")
    assert response.status_code == 200
    assert Task.objects.get(pk=body["id"]).status == "cancelled"


def test_a_tech_lead_cancelling_a_waiting_task_withdraws_its_request(as_agent_007, bob_tech_lead, erin_tech_lead):
    body = submit(as_agent_007, DEPLOY_PRODUCTION)
    response = client_for(bob_tech_lead).patch(f"/api/v1/tasks/{body['id']}", {"status": "cancelled"}, format="json")
    assert response.status_code == 200
    request = ApprovalRequest.objects.get(pk=body["approval_request"])
    assert (request.status, request.rejection_reason) == ("cancelled", "the task was cancelled")
    late = approve(erin_tech_lead, request.pk)
    assert late.status_code == 409
    assert not WorkOrder.objects.exists()


# --- services -------------------------------------------------------------------------------------


def test_service_approval_enqueues_and_a_second_decision_changes_nothing(agent_007, bob_tech_lead, carol_devops):
    task, _ = task_services.task_create(actor=agent_007, payload=task_payload(action=DEPLOY_PRODUCTION))
    approval_decide(actor=bob_tech_lead, request_id=task.intake_approval_id, decision="approve", justification="ok")
    with pytest.raises(Conflict) as refused:
        approval_decide(actor=carol_devops, request_id=task.intake_approval_id, decision="approve", justification="ok")
    assert refused.value.code == "not_pending"
    assert WorkOrder.objects.filter(task=task).count() == 1
    assert AuditEntry.objects.filter(action="task.approved").count() == 1


# --- pages ----------------------------------------------------------------------------------------


def test_pages_show_the_waiting_status_and_the_inbox_lists_the_request(as_agent_007, bob_tech_lead):
    body = submit(as_agent_007, DEPLOY_PRODUCTION)
    browser = signed_in(bob_tech_lead)
    listing = browser.get("/tasks/").content.decode()
    assert '<span class="badge s-approval_pending">Approval Pending</span>' in listing
    detail = browser.get(f"/tasks/{body['id']}/").content.decode()
    assert 'id="task-status">Approval Pending</span>' in detail
    assert "Waiting for its approval request to be approved." in detail
    inbox = browser.get("/approvals/").content.decode()
    assert f'id="approval-{body["approval_request"]}"' in inbox
    assert f'href="/tasks/{body["id"]}/"' in inbox


# --- two approvers racing (PostgreSQL, real processes) --------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_approvers_racing_enqueue_the_task_exactly_once(
    approver_processes, agent_007, bob_tech_lead, erin_tech_lead
):
    bob, erin = approver_processes("bob_tech_lead"), approver_processes("erin_tech_lead")
    assert [bob.stdout.readline().strip(), erin.stdout.readline().strip()] == ["ready", "ready"]
    for _ in range(ROUNDS):
        task, _ = task_services.task_create(actor=agent_007, payload=task_payload(action=DEPLOY_PRODUCTION))
        request_id = task.intake_approval_id
        results = race([bob, erin], [f"{request_id} approve", f"{request_id} approve"])
        assert sorted(result["ok"] for result in results) == [False, True], results
        task.refresh_from_db()
        assert task.status == "queued"
        assert WorkOrder.objects.filter(task=task).count() == 1
        assert AuditEntry.objects.filter(action="task.approved", target_id=str(task.pk)).count() == 1
