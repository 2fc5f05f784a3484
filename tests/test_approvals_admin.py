"""The approvers' admin: the pending list, and approve/reject/escalate actions with a justification
page, which call the same services as the API (the same authorisation matrix holds)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.utils import timezone

from approvals.models import ApprovalRequest
from approvals.services import approval_decide, approval_request_create
from tests.factories import make_user, signed_in

CHANGELIST = "/admin/approvals/approvalrequest/"
ACTIONS = {
    "low": {"action_type": "file", "operation": "read"},
    "medium": {"action_type": "file", "operation": "write"},
    "high": {"action_type": "file", "operation": "delete"},
    "critical": {"action_type": "secrets", "operation": "rotate"},
}
ROLE_CAN = {
    "developer": {"low"},
    "tech_lead": {"low", "medium", "high"},
    "devops_engineer": {"low", "medium", "high", "critical"},
    "agent": set(),
}


def run_action(client: Client, action: str, request: ApprovalRequest, justification: str = "looked at it"):
    return client.post(
        CHANGELIST,
        {"action": action, ACTION_CHECKBOX_NAME: [str(request.pk)], "confirm": "yes", "justification": justification},
        follow=True,
    )


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]] if response.context else []


@pytest.mark.parametrize("decision", ["approve", "reject"])
@pytest.mark.parametrize("level", ["low", "medium", "high", "critical"])
@pytest.mark.parametrize("role", ["developer", "tech_lead", "devops_engineer", "agent"])
def test_authorisation_matrix_through_the_admin_action(low_needs_people, agent_007, role, level, decision):
    request = approval_request_create(actor=agent_007, action=ACTIONS[level])
    decider = make_user(f"decider_{role}", role, is_staff=True)
    response = run_action(signed_in(decider), f"{decision}_selected", request)
    request.refresh_from_db()
    if level not in ROLE_CAN[role]:
        assert request.status == "pending" and not request.decisions.exists()
        if role != "agent":  # an agent is offered no decide action at all
            assert any("may not decide" in message for message in messages_of(response))
        return
    if decision == "reject":
        assert request.status == "rejected"
    elif level == "critical":
        assert (request.status, request.decisions.count()) == ("pending", 1)
    else:
        assert request.status == "approved" and request.approver == decider


def test_the_action_first_asks_for_a_justification(agent_007, bob_tech_lead):
    request = approval_request_create(actor=agent_007, action=ACTIONS["high"])
    response = signed_in(bob_tech_lead).post(
        CHANGELIST, {"action": "approve_selected", ACTION_CHECKBOX_NAME: [str(request.pk)]}
    )
    assert response.status_code == 200
    assert b'name="justification"' in response.content
    assert b"Approve approval requests" in response.content
    request.refresh_from_db()
    assert request.status == "pending"


def test_approving_high_risk_without_justification_in_the_admin_is_refused(agent_007, bob_tech_lead):
    request = approval_request_create(actor=agent_007, action=ACTIONS["high"])
    response = run_action(signed_in(bob_tech_lead), "approve_selected", request, justification="")
    request.refresh_from_db()
    assert request.status == "pending"
    assert any("a justification is required to approve a high risk request" in m for m in messages_of(response))


def test_self_approval_is_refused_in_the_admin(bob_tech_lead):
    request = approval_request_create(actor=bob_tech_lead, action=ACTIONS["medium"])
    response = run_action(signed_in(bob_tech_lead), "approve_selected", request)
    request.refresh_from_db()
    assert request.status == "pending"
    assert any("they (or their worker) made" in message for message in messages_of(response))


def test_the_same_person_cannot_approve_a_critical_request_twice_in_the_admin(agent_007, carol_devops):
    request = approval_request_create(actor=agent_007, action=ACTIONS["critical"])
    client = signed_in(carol_devops)
    run_action(client, "approve_selected", request)
    response = run_action(client, "approve_selected", request)
    request.refresh_from_db()
    assert (request.status, request.decisions.count()) == ("pending", 1)
    assert any("you already decided this request" in message for message in messages_of(response))


def test_deciding_after_expiry_is_refused_in_the_admin(agent_007, bob_tech_lead):
    request = approval_request_create(actor=agent_007, action=ACTIONS["medium"])
    ApprovalRequest.objects.filter(pk=request.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = run_action(signed_in(bob_tech_lead), "approve_selected", request)
    request.refresh_from_db()
    assert request.status == "pending"
    assert any("expired" in message for message in messages_of(response))


def test_escalate_in_the_admin_moves_the_request_up(agent_007, bob_tech_lead, carol_devops):
    request = approval_request_create(actor=agent_007, action=ACTIONS["medium"])
    run_action(signed_in(bob_tech_lead), "escalate_selected", request, justification="over my head")
    request.refresh_from_db()
    assert (request.assigned_role, request.assigned_to, request.escalation_level) == (
        "devops_engineer",
        carol_devops,
        1,
    )


def test_the_pending_list_shows_risk_time_left_and_assigned_role(agent_007, bob_tech_lead):
    approval_request_create(actor=agent_007, action=ACTIONS["high"])
    approval_decide(
        actor=bob_tech_lead,
        request_id=approval_request_create(actor=agent_007, action=ACTIONS["medium"]).pk,
        decision="approve",
    )
    response = signed_in(bob_tech_lead).get(CHANGELIST, {"status__exact": "pending"})
    assert response.status_code == 200
    rows = list(response.context["cl"].result_list)
    assert [row.risk_level for row in rows] == ["high"]
    page = response.content.decode()
    assert "tech_lead" in page and "59 min" in page and "file delete" in page


def test_the_admin_shows_people_requests_waiting_on_them(agent_007, alice_developer, bob_tech_lead):
    approval_request_create(actor=agent_007, action=ACTIONS["medium"])
    mine = signed_in(bob_tech_lead).get(CHANGELIST, {"waiting": "me"})
    assert len(mine.context["cl"].result_list) == 1
    not_alices = signed_in(alice_developer).get(CHANGELIST, {"waiting": "me"})
    assert len(not_alices.context["cl"].result_list) == 0


def test_approvers_cannot_edit_or_delete_requests_in_the_admin(agent_007, bob_tech_lead):
    request = approval_request_create(actor=agent_007, action=ACTIONS["medium"])
    client = signed_in(bob_tech_lead)
    client.post(f"{CHANGELIST}{request.pk}/change/", {"status": "approved"})
    assert client.post(f"{CHANGELIST}{request.pk}/delete/", {"post": "yes"}).status_code == 403
    request.refresh_from_db()
    assert request.status == "pending"
