"""Approval requests through the API: creation with risk, the authorisation
matrix, justification, distinct approvers, expiry, escalation, cancel and consume."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.utils import timezone

from approvals.models import ApprovalDecision, ApprovalRequest
from audit.models import AuditEntry
from notifications.models import Notification
from tasks.models import AgentSession, Worker
from tests.factories import client_for, make_user

LOW = {"action_type": "file", "operation": "read", "environment": "dev"}
MEDIUM = {"action_type": "file", "operation": "write", "environment": "dev"}
HIGH = {"action_type": "deployment", "operation": "deploy", "environment": "production", "details": {"ref": "v1.2"}}
CRITICAL = {"action_type": "database", "operation": "drop", "environment": "production", "details": {"table": "users"}}
ACTIONS = {"low": LOW, "medium": MEDIUM, "high": HIGH, "critical": CRITICAL}


def ask(client, action: dict, **extra) -> dict:
    response = client.post("/api/v1/approvals", {**action, **extra}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def audit_actions(request_id) -> list[str]:
    return list(
        AuditEntry.objects.filter(target_type="approvalrequest", target_id=str(request_id))
        .order_by("id")
        .values_list("action", flat=True)
    )


# --- creation -------------------------------------------------------------------------------------


def test_request_answers_201_with_the_assessment_and_the_deadline(as_agent_007):
    before = timezone.now()
    body = ask(as_agent_007, CRITICAL, workflow_id="wf-1", thread_id="t-1", checkpoint_id="c-1")
    assert body["status"] == "pending"
    assert body["risk_level"] == "critical"
    assert body["risk_score"] >= 90
    assert {factor["name"] for factor in body["risk_factors"]} >= {"database_operation", "production_delete"}
    assert body["required_approvals"] == 2
    assert body["require_justification"] is True
    expires = timezone.datetime.fromisoformat(body["expires_at"])
    assert timedelta(minutes=119) < expires - before <= timedelta(minutes=121)
    assert (body["workflow_id"], body["thread_id"], body["checkpoint_id"]) == ("wf-1", "t-1", "c-1")
    assert body["assigned_role"] == "devops_engineer"


def test_low_risk_comes_back_already_approved_by_the_system(as_agent_007):
    body = ask(as_agent_007, LOW)
    assert body["status"] == "approved"
    assert body["approver"] is None
    assert body["approver_role"] == "system"
    assert audit_actions(body["id"]) == ["approval.requested", "approval.auto_approved"]


def test_medium_request_is_assigned_to_the_most_junior_role_that_may_decide(
    as_agent_007, alice_developer, bob_tech_lead
):
    body = ask(as_agent_007, MEDIUM)
    assert (body["assigned_role"], body["assigned_to"]) == ("tech_lead", "bob_tech_lead")
    assert Notification.objects.filter(user=bob_tech_lead, kind="approval.assigned").count() == 1


def test_request_without_action_type_is_a_400(as_agent_007):
    response = as_agent_007.post("/api/v1/approvals", {"operation": "delete"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_oversized_details_are_refused(as_agent_007):
    response = as_agent_007.post(
        "/api/v1/approvals", {**MEDIUM, "details": {"blob": "x" * (256 * 1024)}}, format="json"
    )
    assert response.status_code == 400


def test_risk_assess_answers_the_assessment_from_query_parameters(as_agent_007):
    response = as_agent_007.get(
        "/api/v1/risk/assess", {"action_type": "database", "operation": "delete", "environment": "production"}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["risk_level"], body["required_approvals"], body["require_role"]) == ("critical", 2, "devops_engineer")
    assert not ApprovalRequest.objects.exists()


def test_risk_assess_reads_details_as_json_and_extra_parameters_as_details(as_agent_007):
    response = as_agent_007.get(
        "/api/v1/risk/assess",
        {"action_type": "file", "operation": "read", "details": '{"security_findings": ["x"]}', "estimated_cost": "5"},
    )
    assert response.json()["risk_level"] == "high"
    bad = as_agent_007.get("/api/v1/risk/assess", {"action_type": "file", "details": "{nope"})
    assert bad.status_code == 400


def test_agents_list_only_their_own_requests_people_see_all(as_agent_007, as_agent_008, bob_tech_lead):
    mine = ask(as_agent_007, MEDIUM)
    ask(as_agent_008, HIGH)
    assert [row["id"] for row in as_agent_007.get("/api/v1/approvals").json()["results"]] == [mine["id"]]
    everyone = client_for(bob_tech_lead).get("/api/v1/approvals", {"risk_level": "high"}).json()["results"]
    assert [row["risk_level"] for row in everyone] == ["high"]
    assert as_agent_008.get(f"/api/v1/approvals/{mine['id']}").status_code == 404


# --- the authorisation matrix (API) -----------------------------------------------------------------

ROLE_CAN = {
    "developer": {"low"},
    "tech_lead": {"low", "medium", "high"},
    "devops_engineer": {"low", "medium", "high", "critical"},
    "agent": set(),
}


@pytest.mark.parametrize("decision", ["approve", "reject"])
@pytest.mark.parametrize("level", ["low", "medium", "high", "critical"])
@pytest.mark.parametrize("role", ["developer", "tech_lead", "devops_engineer", "agent"])
def test_authorisation_matrix_through_the_api(low_needs_people, as_agent_007, role, level, decision):
    request = ask(as_agent_007, ACTIONS[level])
    decider = make_user(f"decider_{role}", role, is_staff=role != "agent")
    response = client_for(decider).post(
        f"/api/v1/approvals/{request['id']}/{decision}", {"justification": "checked the plan"}, format="json"
    )
    row = ApprovalRequest.objects.get(pk=request["id"])
    if level not in ROLE_CAN[role]:
        assert response.status_code == 403, response.content
        expected_code = {"agent": "agents_cannot_decide"}.get(role, "role_cannot_decide")
        if level == "critical" and role == "tech_lead":
            expected_code = "role_cannot_decide"
        assert response.json()["code"] == expected_code
        assert row.status == "pending" and not row.decisions.exists()
        return
    assert response.status_code == 200, response.content
    if decision == "reject":
        assert row.status == "rejected" and row.approver == decider
    elif level == "critical":
        assert row.status == "pending" and response.json()["approvals_count"] == 1
    else:
        assert row.status == "approved" and row.approver_role == role


def test_critical_needs_a_devops_engineer_even_for_a_role_whose_levels_include_it(
    tmp_path, settings, as_agent_007, bob_tech_lead
):
    document = yaml.safe_load(Path(settings.HOL_APPROVAL_POLICIES_FILE).read_text())
    document["roles"]["tech_lead"]["may_approve"].append("critical")
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump(document))
    settings.HOL_APPROVAL_POLICIES_FILE = path
    request = ask(as_agent_007, CRITICAL)
    response = client_for(bob_tech_lead).post(
        f"/api/v1/approvals/{request['id']}/approve", {"justification": "x"}, format="json"
    )
    assert response.status_code == 403
    assert response.json() == {
        "code": "role_required",
        "message": "critical requests must be decided by a devops_engineer",
    }


def test_nobody_approves_their_own_request(bob_tech_lead):
    as_bob = client_for(bob_tech_lead)
    request = ask(as_bob, MEDIUM)
    response = as_bob.post(f"/api/v1/approvals/{request['id']}/approve", {}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "self_approval"


def test_nobody_approves_a_request_their_worker_made(bob_tech_lead):
    worker = Worker.objects.create(name="bob-laptop", user=bob_tech_lead, last_heartbeat_at=timezone.now())
    session = AgentSession.objects.create(session_id="cc-1", worker=worker, last_activity_at=timezone.now())
    request = ask(client_for(bob_tech_lead), MEDIUM, session_id="cc-1")
    assert request["agent_session"] == str(session.pk)
    response = client_for(bob_tech_lead).post(f"/api/v1/approvals/{request['id']}/approve", {}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "self_approval"


def test_approving_high_risk_without_justification_is_a_400_with_a_clear_message(as_agent_007, bob_tech_lead):
    request = ask(as_agent_007, HIGH)
    response = client_for(bob_tech_lead).post(f"/api/v1/approvals/{request['id']}/approve", {}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "code": "justification_required",
        "message": "a justification is required to approve a high risk request",
    }
    assert ApprovalRequest.objects.get(pk=request["id"]).status == "pending"


def test_medium_risk_is_approved_without_justification(as_agent_007, bob_tech_lead):
    request = ask(as_agent_007, MEDIUM)
    response = client_for(bob_tech_lead).post(f"/api/v1/approvals/{request['id']}/approve", {}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "approved"


def test_critical_needs_two_distinct_approvers(as_agent_007, carol_devops, dave_devops):
    request = ask(as_agent_007, CRITICAL)
    as_carol = client_for(carol_devops)
    first = as_carol.post(
        f"/api/v1/approvals/{request['id']}/approve", {"justification": "backup taken"}, format="json"
    )
    assert first.json()["status"] == "pending"
    again = as_carol.post(f"/api/v1/approvals/{request['id']}/approve", {"justification": "really"}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "already_decided"
    second = client_for(dave_devops).post(
        f"/api/v1/approvals/{request['id']}/approve", {"justification": "verified backup"}, format="json"
    )
    assert second.status_code == 200
    body = second.json()
    assert (body["status"], body["approver"], body["approvals_count"]) == ("approved", "dave_devops", 2)
    assert audit_actions(request["id"]) == ["approval.requested", "approval.approval_recorded", "approval.approved"]


def test_one_reject_rejects_a_critical_request_already_approved_once(as_agent_007, carol_devops, dave_devops):
    request = ask(as_agent_007, CRITICAL)
    client_for(carol_devops).post(f"/api/v1/approvals/{request['id']}/approve", {"justification": "ok"}, format="json")
    response = client_for(dave_devops).post(
        f"/api/v1/approvals/{request['id']}/reject", {"justification": "no backup"}, format="json"
    )
    assert response.json()["status"] == "rejected"
    assert response.json()["rejection_reason"] == "no backup"


def test_deciding_a_decided_request_is_a_409_and_changes_nothing(as_agent_007, bob_tech_lead, carol_devops):
    request = ask(as_agent_007, MEDIUM)
    client_for(bob_tech_lead).post(f"/api/v1/approvals/{request['id']}/reject", {"reason": "no"}, format="json")
    response = client_for(carol_devops).post(f"/api/v1/approvals/{request['id']}/approve", {}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "not_pending"
    row = ApprovalRequest.objects.get(pk=request["id"])
    assert (row.status, row.decisions.count()) == ("rejected", 1)


def test_deciding_after_expiry_is_a_409_even_before_beat_ran(as_agent_007, bob_tech_lead):
    request = ask(as_agent_007, MEDIUM)
    ApprovalRequest.objects.filter(pk=request["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client_for(bob_tech_lead).post(f"/api/v1/approvals/{request['id']}/approve", {}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "expired"
    assert not ApprovalDecision.objects.exists()


def test_an_unknown_request_is_a_404(bob_tech_lead):
    response = client_for(bob_tech_lead).post(
        "/api/v1/approvals/00000000-0000-0000-0000-000000000000/approve", {}, format="json"
    )
    assert response.status_code == 404


def test_every_decision_notifies_the_requester(as_agent_007, agent_007, bob_tech_lead):
    request = ask(as_agent_007, MEDIUM)
    client_for(bob_tech_lead).post(f"/api/v1/approvals/{request['id']}/approve", {}, format="json")
    notes = Notification.objects.filter(user=agent_007, kind="approval.decided")
    assert [note.message for note in notes] == [
        f"medium risk approval request {request['id'][:8]} (file write dev) was approved by bob_tech_lead"
    ]


# --- escalation, cancel, consume --------------------------------------------------------------------


def test_escalate_moves_the_request_up_one_role(as_agent_007, bob_tech_lead, carol_devops):
    request = ask(as_agent_007, MEDIUM)
    response = client_for(bob_tech_lead).post(
        f"/api/v1/approvals/{request['id']}/escalate", {"justification": "prod-adjacent"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["assigned_role"], body["assigned_to"], body["escalation_level"]) == (
        "devops_engineer",
        "carol_devops",
        1,
    )
    assert Notification.objects.filter(user=carol_devops, kind="approval.escalated").exists()
    top = client_for(carol_devops).post(f"/api/v1/approvals/{request['id']}/escalate", {}, format="json")
    assert top.status_code == 409
    assert top.json()["code"] == "cannot_escalate"


def test_agents_cannot_escalate(as_agent_007, as_agent_008):
    request = ask(as_agent_007, MEDIUM)
    assert as_agent_008.post(f"/api/v1/approvals/{request['id']}/escalate", {}, format="json").status_code == 403


def test_the_requester_may_cancel_a_pending_request_others_may_not(as_agent_007, as_agent_008):
    request = ask(as_agent_007, MEDIUM)
    assert as_agent_008.post(f"/api/v1/approvals/{request['id']}/cancel", {}, format="json").status_code == 403
    response = as_agent_007.post(f"/api/v1/approvals/{request['id']}/cancel", {"reason": "plan changed"}, format="json")
    assert response.json()["status"] == "cancelled"
    again = as_agent_007.post(f"/api/v1/approvals/{request['id']}/cancel", {}, format="json")
    assert again.status_code == 409


def approved_high(as_agent_007, approver) -> dict:
    request = ask(as_agent_007, HIGH)
    client_for(approver).post(f"/api/v1/approvals/{request['id']}/approve", {"justification": "ok"}, format="json")
    return request


def test_an_approval_is_consumed_once_for_the_same_action(as_agent_007, bob_tech_lead):
    request = approved_high(as_agent_007, bob_tech_lead)
    reordered = {
        "environment": "Production",
        "operation": "deploy",
        "action_type": "deployment",
        "details": {"ref": "v1.2"},
    }
    first = as_agent_007.post(f"/api/v1/approvals/{request['id']}/consume", reordered, format="json")
    assert first.status_code == 200, first.content
    assert first.json()["consumed_at"] is not None
    second = as_agent_007.post(f"/api/v1/approvals/{request['id']}/consume", HIGH, format="json")
    assert second.status_code == 409
    assert second.json()["code"] == "already_used"
    assert audit_actions(request["id"])[-1] == "approval.consumed"


def test_consuming_with_a_changed_action_is_refused(as_agent_007, bob_tech_lead):
    request = approved_high(as_agent_007, bob_tech_lead)
    changed = {**HIGH, "details": {"ref": "v1.3"}}
    response = as_agent_007.post(f"/api/v1/approvals/{request['id']}/consume", changed, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "action_mismatch"
    assert ApprovalRequest.objects.get(pk=request["id"]).consumed_at is None


def test_consuming_a_pending_or_someone_elses_approval_is_refused(as_agent_007, as_agent_008, bob_tech_lead):
    pending = ask(as_agent_007, HIGH)
    response = as_agent_007.post(f"/api/v1/approvals/{pending['id']}/consume", HIGH, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "not_approved")
    approved = approved_high(as_agent_007, bob_tech_lead)
    assert as_agent_008.post(f"/api/v1/approvals/{approved['id']}/consume", HIGH, format="json").status_code == 403


def test_consuming_after_the_window_closed_is_refused(as_agent_007, bob_tech_lead):
    request = approved_high(as_agent_007, bob_tech_lead)
    ApprovalRequest.objects.filter(pk=request["id"]).update(consume_by=timezone.now() - timedelta(seconds=1))
    response = as_agent_007.post(f"/api/v1/approvals/{request['id']}/consume", HIGH, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "expired")


def test_an_auto_approved_low_request_can_be_consumed(as_agent_007):
    request = ask(as_agent_007, LOW)
    assert as_agent_007.post(f"/api/v1/approvals/{request['id']}/consume", LOW, format="json").status_code == 200


def test_metrics_expose_requests_by_risk_level_and_time_to_decision(as_agent_007, bob_tech_lead, client):
    client.force_login(bob_tech_lead)
    ask(as_agent_007, LOW)
    request = ask(as_agent_007, MEDIUM)
    client_for(bob_tech_lead).post(f"/api/v1/approvals/{request['id']}/approve", {}, format="json")
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'hol_approval_requests_total{risk_level="low"} 1.0' in text
    assert 'hol_approval_requests_total{risk_level="medium"} 1.0' in text
    assert 'hol_approval_decision_seconds_count{risk_level="medium"} 1.0' in text
    assert 'hol_approval_decision_seconds_bucket{le="10.0",risk_level="medium"} 1.0' in text
    assert 'hol_queue_depth{priority="high"}' in text
    assert "hol_work_order_claims_total" in text


def test_settings_name_the_shipped_rule_files():
    assert Path(settings.HOL_RISK_RULES_FILE).name == "risk-assessment-rules.yaml"
    assert Path(settings.HOL_APPROVAL_POLICIES_FILE).name == "approval-policies.yaml"


def test_a_malformed_policy_file_is_refused_at_start_up_naming_file_and_problem(tmp_path, settings):
    from django.apps import apps
    from django.core.exceptions import ImproperlyConfigured

    document = yaml.safe_load(Path(settings.HOL_APPROVAL_POLICIES_FILE).read_text())
    document["roles"]["developer"]["escalates_to"] = "manager"
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump(document))
    settings.HOL_APPROVAL_POLICIES_FILE = path
    with pytest.raises(ImproperlyConfigured) as error:
        apps.get_app_config("approvals").ready()
    assert str(error.value) == f"{path}: role 'developer' escalates to unknown role 'manager'"


def test_the_openapi_schema_documents_the_long_poll_read(as_agent_007):
    schema = as_agent_007.get("/api/schema/", {"format": "json"}).json()
    read = schema["paths"]["/api/v1/approvals/{id}/"]["get"]
    assert [parameter["name"] for parameter in read["parameters"]] == ["id", "wait"]
    assert read["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ApprovalRequest"
    }
    assert "ApprovalRequest" in schema["components"]["schemas"]
    assert "/api/v1/approvals/{id}/consume/" in schema["paths"]
