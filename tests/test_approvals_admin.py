"""The approvers' admin: the pending list, a request's own page with its decision buttons, and the
bulk approve/reject/escalate actions, all calling the same services as the API (the same
authorisation matrix holds)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from approvals.models import ApprovalRequest
from approvals.services import approval_decide, approval_request_create
from approvals.wording import duration_in_words
from audit.models import AuditEntry
from tasks import services as task_services
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
    assert (request.status, request.decisions.exists()) == ("expired", False)
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


# --- a request's own page ----------------------------------------------------------------------------


@pytest.fixture
def claimed_work(agent_007, settings):
    """A task claimed by agent_007's worker: the work order and execution an approval concerns."""
    task, _ = task_services.task_create(
        actor=agent_007,
        payload={
            "title": "Drop the legacy sessions table",
            "objective": "Remove the sessions_old table now that nothing reads it",
            "target": {"repo": "https://github.com/acme/shop"},
        },
    )
    worker = task_services.worker_register(actor=agent_007, name="007-laptop")
    task_services.work_order_enqueue(actor=agent_007, task_id=task.pk)
    work_order = task_services.work_order_claim(actor=agent_007, worker_id=worker.pk)
    return task, work_order


def page_of(request: ApprovalRequest) -> str:
    return reverse("admin:approvals_approvalrequest_change", args=[request.pk])


def decide_on_page(client: Client, request: ApprovalRequest, decision: str, text: str = "checked the plan"):
    url = reverse("admin:approvals_approvalrequest_decide", args=[request.pk])
    return client.post(url, {"decision": decision, "text": text}, follow=True)


def test_tech_lead_approves_a_high_request_on_its_page(agent_007, bob_tech_lead):
    request = approval_request_create(actor=agent_007, action=ACTIONS["high"])
    client = signed_in(bob_tech_lead)
    assert b'value="approve"' in client.get(page_of(request)).content
    response = decide_on_page(client, request, "approve", "backup verified")
    request.refresh_from_db()
    assert (request.status, request.approver, request.approval_justification) == (
        "approved",
        bob_tech_lead,
        "backup verified",
    )
    assert AuditEntry.objects.filter(action="approval.approved", target_id=str(request.pk)).count() == 1
    assert "The request is approved." in messages_of(response)


def test_critical_request_shows_one_of_two_after_the_first_devops_engineer(agent_007, carol_devops, dave_devops):
    request = approval_request_create(actor=agent_007, action=ACTIONS["critical"])
    decide_on_page(signed_in(carol_devops), request, "approve")
    page = signed_in(dave_devops).get(page_of(request)).content.decode()
    assert "1 of 2 approvals" in page
    assert "approved by carol_devops (devops_engineer)" in page
    assert 'value="approve"' in page


def test_the_second_devops_engineer_approves_a_critical_request(agent_007, carol_devops, dave_devops):
    request = approval_request_create(actor=agent_007, action=ACTIONS["critical"])
    decide_on_page(signed_in(carol_devops), request, "approve")
    decide_on_page(signed_in(dave_devops), request, "approve")
    request.refresh_from_db()
    assert (request.status, request.approver, request.decisions.count()) == ("approved", dave_devops, 2)


def test_the_first_approver_of_a_critical_request_is_offered_no_second_vote(agent_007, carol_devops):
    request = approval_request_create(actor=agent_007, action=ACTIONS["critical"])
    client = signed_in(carol_devops)
    decide_on_page(client, request, "approve")
    page = client.get(page_of(request)).content.decode()
    assert 'value="approve"' not in page
    assert "You approved this request; another approver must decide." in page


def test_developer_sees_no_approve_button_on_a_high_request(agent_007, alice_developer):
    request = approval_request_create(actor=agent_007, action=ACTIONS["high"])
    response = signed_in(alice_developer).get(page_of(request))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'value="approve"' not in page and 'value="reject"' not in page
    assert "high requests are decided by a tech_lead or devops_engineer" in page


def test_a_forged_decision_by_a_developer_on_a_high_request_is_refused(agent_007, alice_developer):
    request = approval_request_create(actor=agent_007, action=ACTIONS["high"])
    response = decide_on_page(signed_in(alice_developer), request, "approve")
    request.refresh_from_db()
    assert request.status == "pending" and not request.decisions.exists()
    assert any("may not decide high requests" in message for message in messages_of(response))


def test_a_view_only_staff_user_is_offered_no_decision_action(agent_007):
    request = approval_request_create(actor=agent_007, action=ACTIONS["medium"])
    viewer = make_user("victor_viewer", "auditors", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_approvalrequest"))
    response = signed_in(viewer).get(CHANGELIST)
    assert response.status_code == 200
    assert "approve_selected" not in response.content.decode()
    assert str(request.pk)[:8] in response.content.decode()


def test_a_view_only_staff_user_cannot_run_the_approve_action(agent_007):
    request = approval_request_create(actor=agent_007, action=ACTIONS["medium"])
    viewer = make_user("victor_viewer", "auditors", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_approvalrequest"))
    run_action(signed_in(viewer), "approve_selected", request)
    request.refresh_from_db()
    assert request.status == "pending" and not request.decisions.exists()


def test_a_view_only_staff_user_cannot_post_a_decision_on_the_page(agent_007):
    request = approval_request_create(actor=agent_007, action=ACTIONS["medium"])
    viewer = make_user("victor_viewer", "auditors", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_approvalrequest"))
    url = reverse("admin:approvals_approvalrequest_decide", args=[request.pk])
    assert signed_in(viewer).post(url, {"decision": "approve", "text": "x"}).status_code == 403
    request.refresh_from_db()
    assert request.status == "pending"


def test_rejecting_on_the_page_needs_a_reason(agent_007, bob_tech_lead):
    request = approval_request_create(actor=agent_007, action=ACTIONS["high"])
    response = decide_on_page(signed_in(bob_tech_lead), request, "reject", "   ")
    request.refresh_from_db()
    assert request.status == "pending" and not request.decisions.exists()
    assert "A reason is required to reject a request." in messages_of(response)


def test_rejecting_on_the_page_with_a_reason_records_it(agent_007, bob_tech_lead):
    request = approval_request_create(actor=agent_007, action=ACTIONS["high"])
    decide_on_page(signed_in(bob_tech_lead), request, "reject", "no backup of that folder")
    request.refresh_from_db()
    assert (request.status, request.rejection_reason) == ("rejected", "no backup of that folder")


def test_rejecting_in_bulk_needs_a_reason(agent_007, bob_tech_lead):
    request = approval_request_create(actor=agent_007, action=ACTIONS["medium"])
    response = run_action(signed_in(bob_tech_lead), "reject_selected", request, justification="")
    request.refresh_from_db()
    assert request.status == "pending" and not request.decisions.exists()
    assert "A reason is required to reject a request." in response.content.decode()


def test_escalate_on_the_page_hands_the_request_to_devops(agent_007, bob_tech_lead, carol_devops):
    request = approval_request_create(actor=agent_007, action=ACTIONS["medium"])
    response = decide_on_page(signed_in(bob_tech_lead), request, "escalate", "touches billing")
    request.refresh_from_db()
    assert (request.assigned_role, request.assigned_to, request.escalation_level) == (
        "devops_engineer",
        carol_devops,
        1,
    )
    assert "Escalated to devops_engineer (carol_devops)." in messages_of(response)


@pytest.mark.parametrize(
    ("left", "words"),
    [
        (timedelta(hours=1, minutes=59, seconds=34.827639), "1 h 59 min"),
        (timedelta(minutes=59, seconds=59), "59 min"),
        (timedelta(hours=2), "2 h"),
        (timedelta(seconds=40), "under 1 min"),
        (timedelta(days=1, hours=3, minutes=5), "1 d 3 h"),
    ],
)
def test_time_left_is_written_in_words(left, words):
    assert duration_in_words(left) == words


def test_the_request_page_shows_time_left_in_words(agent_007, carol_devops):
    request = approval_request_create(actor=agent_007, action=ACTIONS["critical"])  # 120 minutes to decide
    page = signed_in(carol_devops).get(page_of(request)).content.decode()
    assert "1 h 59 min left" in page
    assert "1:59:" not in page


def test_the_list_shows_progress_and_time_left_in_words(agent_007, carol_devops):
    approval_request_create(actor=agent_007, action=ACTIONS["critical"])
    page = signed_in(carol_devops).get(CHANGELIST).content.decode()
    assert "0 of 2 approvals" in page and "1 h 59 min" in page


def test_the_request_page_shows_the_task_and_the_work_order_by_its_own_id(agent_007, bob_tech_lead, claimed_work):
    task, work_order = claimed_work
    request = approval_request_create(
        actor=agent_007, action=ACTIONS["high"], task_id=task.pk, work_order_id=work_order.pk
    )
    page = signed_in(bob_tech_lead).get(page_of(request)).content.decode()
    work_order_url = reverse("admin:tasks_workorder_change", args=[work_order.pk])
    assert f'<a href="{work_order_url}">{work_order.pk}</a>' in page
    assert "Remove the sessions_old table now that nothing reads it" in page
    assert "https://github.com/acme/shop @ main" in page


def test_action_details_are_pretty_printed_and_escaped(agent_007, bob_tech_lead):
    action = {**ACTIONS["high"], "details": {"path": "/srv/<script>alert(1)</script>", "files": 3}}
    request = approval_request_create(actor=agent_007, action=action)
    page = signed_in(bob_tech_lead).get(page_of(request)).content.decode()
    assert '<pre class="hol-json">{\n  &quot;files&quot;: 3,' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page


def test_risk_factors_are_a_readable_list(agent_007, bob_tech_lead):
    request = approval_request_create(actor=agent_007, action=ACTIONS["high"])
    factor = request.risk_factors[0]
    page = signed_in(bob_tech_lead).get(page_of(request)).content.decode()
    assert f"<li><strong>{escape(factor['name'])}</strong>: {escape(factor['why'])}</li>" in page


@pytest.mark.parametrize("persona", ["alice_developer", "bob_tech_lead", "carol_devops"])
def test_role_groups_can_view_what_an_approval_concerns(request, persona, agent_007, claimed_work):
    task, work_order = claimed_work
    client = signed_in(request.getfixturevalue(persona))
    pages = [
        reverse("admin:tasks_task_change", args=[task.pk]),
        reverse("admin:tasks_workorder_change", args=[work_order.pk]),
        reverse("admin:tasks_execution_change", args=[work_order.executions.get().pk]),
        reverse("admin:audit_auditentry_changelist") + f"?task_id={task.pk}",
    ]
    assert [client.get(url).status_code for url in pages] == [200, 200, 200, 200]


def test_agents_get_no_view_permission_on_tasks_in_the_admin(agent_007):
    assert not agent_007.has_perm("tasks.view_task")


def test_the_admin_is_titled_hol(bob_tech_lead):
    page = signed_in(bob_tech_lead).get("/admin/").content.decode()
    assert "<title>Human Operations Layer | HOL admin</title>" in page
    assert ">HOL</a>" in page


def test_the_audit_trail_link_lists_the_requests_entries(agent_007, bob_tech_lead):
    request = approval_request_create(actor=agent_007, action=ACTIONS["high"])
    other = approval_request_create(actor=agent_007, action=ACTIONS["medium"])
    client = signed_in(bob_tech_lead)
    page = client.get(page_of(request)).content.decode()
    url = reverse("admin:audit_auditentry_changelist") + f"?target_type=approvalrequest&amp;target_id={request.pk}"
    assert f'href="{url}"' in page
    trail = client.get(url.replace("&amp;", "&"))
    assert {entry.target_id for entry in trail.context["cl"].result_list} == {str(request.pk)}
    assert str(other.pk) not in trail.content.decode()


def test_a_role_added_to_the_policy_gets_the_view_permissions(tmp_path, settings, db):
    from approvals.roles import grant_role_view_permissions

    document = yaml.safe_load(Path(settings.HOL_APPROVAL_POLICIES_FILE).read_text())
    document["roles"]["sre"] = {"may_approve": ["low"], "escalates_to": None, "max_pending": 5}
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump(document))
    settings.HOL_APPROVAL_POLICIES_FILE = path
    grant_role_view_permissions()
    sam = make_user("sam_sre", "sre", is_staff=True)
    assert all(sam.has_perm(p) for p in ("tasks.view_task", "tasks.view_workorder", "audit.view_auditentry"))


def test_an_overdue_request_page_says_expired_and_offers_no_time(agent_007, bob_tech_lead):
    request = approval_request_create(actor=agent_007, action=ACTIONS["high"])
    ApprovalRequest.objects.filter(pk=request.pk).update(expires_at=timezone.now() - timedelta(minutes=5))
    page = signed_in(bob_tech_lead).get(page_of(request)).content.decode()
    assert '<span class="hol-badge hol-status-expired">expired</span>' in page
    assert 'data-testid="time-left"' not in page


def test_the_requester_is_told_someone_else_must_decide(bob_tech_lead):
    request = approval_request_create(actor=bob_tech_lead, action=ACTIONS["medium"])
    page = signed_in(bob_tech_lead).get(page_of(request)).content.decode()
    assert 'value="approve"' not in page
    assert "You made this request; someone else must decide it." in page


def test_a_decision_on_an_unknown_request_is_404(bob_tech_lead):
    url = reverse("admin:approvals_approvalrequest_decide", args=["not-a-uuid"])
    assert signed_in(bob_tech_lead).post(url, {"decision": "approve", "text": "x"}).status_code == 404
