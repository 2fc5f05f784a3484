"""Approvals under attack: what an agent (or a curious person) tried, and what they got.

Each test plays one attempt through the door an attacker would use (the HTTP API, the webhook,
`/metrics`), and where the rule lives in a service, also through a second door (the service
directly, or `manage.py approvals`) so that it holds on every path."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone

from approvals import services as approval_services
from approvals.models import ApprovalDecision, ApprovalRequest
from audit.models import AuditEntry
from hol.errors import BadRequest, Conflict, PermissionDenied
from tasks import services as task_services
from tasks.models import AgentSession, Task, WorkOrder
from tests.factories import claim_work, client_for, make_user, register_worker, signed_in, submit_task

MEDIUM = {"action_type": "file", "operation": "write", "environment": "dev"}
HIGH = {"action_type": "deployment", "operation": "deploy", "environment": "production", "details": {"ref": "v1.2"}}


@pytest.fixture(autouse=True)
def _github_repos_allowed(settings):
    settings.HOL_ALLOWED_REPO_PREFIXES = ["https://github.com/acme/"]


def ask(client, action: dict, **extra):
    return client.post("/api/v1/approvals", {**action, **extra}, format="json")


@pytest.fixture
def work_of_008(as_agent_008) -> dict:
    """agent_008's task, its worker, the work order that worker holds, and its session."""
    task_id = submit_task(as_agent_008)
    worker_id = register_worker(as_agent_008, "008-laptop")
    work_order_id = claim_work(as_agent_008, task_id, worker_id)
    AgentSession.objects.create(session_id="cc-008", worker_id=worker_id, last_activity_at=timezone.now())
    return {"task_id": task_id, "worker_id": worker_id, "work_order_id": work_order_id}


@pytest.fixture
def work_of_007(as_agent_007) -> dict:
    task_id = submit_task(as_agent_007)
    worker_id = register_worker(as_agent_007, "007-laptop")
    work_order_id = claim_work(as_agent_007, task_id, worker_id)
    return {"task_id": task_id, "worker_id": worker_id, "work_order_id": work_order_id}


# --- linking other agents' work -------------------------------------------------------------------


def test_agent_linking_another_agents_task_gets_403(as_agent_007, work_of_008):
    response = ask(as_agent_007, MEDIUM, task_id=work_of_008["task_id"])
    assert (response.status_code, response.json()["code"]) == (403, "not_your_task")
    assert not ApprovalRequest.objects.exists()


def test_agent_linking_another_agents_work_order_gets_403(as_agent_007, work_of_008):
    response = ask(as_agent_007, MEDIUM, work_order_id=work_of_008["work_order_id"])
    assert (response.status_code, response.json()["code"]) == (403, "not_your_work_order")
    assert not ApprovalRequest.objects.exists()


def test_agent_linking_another_agents_session_by_its_session_id_gets_403(as_agent_007, work_of_008):
    response = ask(as_agent_007, MEDIUM, session_id="cc-008")
    assert (response.status_code, response.json()["code"]) == (403, "not_your_session")


def test_agent_linking_another_agents_session_by_hol_id_gets_403(as_agent_007, work_of_008):
    session = AgentSession.objects.get(session_id="cc-008")
    response = ask(as_agent_007, MEDIUM, session_id=str(session.pk))
    assert (response.status_code, response.json()["code"]) == (403, "not_your_session")


def test_person_without_a_role_linking_an_agents_task_gets_403(nina_no_role, work_of_008):
    response = ask(client_for(nina_no_role), MEDIUM, task_id=work_of_008["task_id"])
    assert (response.status_code, response.json()["code"]) == (403, "not_your_task")
    assert not ApprovalRequest.objects.exists()


def test_person_without_a_role_linking_through_the_service_is_refused_too(nina_no_role, work_of_008):
    with pytest.raises(PermissionDenied) as refused:
        approval_services.approval_request_create(actor=nina_no_role, action=MEDIUM, task_id=work_of_008["task_id"])
    assert refused.value.code == "not_your_task"


def test_person_without_a_role_may_link_a_task_they_submitted(nina_no_role):
    as_nina = client_for(nina_no_role)
    task_id = submit_task(as_nina)
    response = ask(as_nina, MEDIUM, task_id=task_id)
    assert response.status_code == 201, response.content
    assert response.json()["task"] == task_id


def test_person_with_a_role_may_link_any_task(as_alice, work_of_008):
    response = ask(as_alice, MEDIUM, task_id=work_of_008["task_id"])
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("field", ["task_id", "work_order_id", "session_id"])
def test_probing_unknown_ids_gets_the_same_403_as_someone_elses(as_agent_007, work_of_008, field):
    """An id that names nothing and one naming another agent's work answer alike, so the
    answers do not tell which ids exist."""
    session = AgentSession.objects.get(session_id="cc-008")
    theirs = {**work_of_008, "session_id": str(session.pk)}[field]
    someone_elses = ask(as_agent_007, MEDIUM, **{field: theirs})
    unknown = ask(as_agent_007, MEDIUM, **{field: str(uuid.uuid4())})
    assert someone_elses.status_code == unknown.status_code == 403
    assert someone_elses.json() == unknown.json()
    assert not ApprovalRequest.objects.exists()


def test_person_without_a_role_probing_task_ids_cannot_tell_unknown_from_existing(nina_no_role, work_of_008):
    as_nina = client_for(nina_no_role)
    existing = ask(as_nina, MEDIUM, task_id=work_of_008["task_id"])
    unknown = ask(as_nina, MEDIUM, task_id=str(uuid.uuid4()))
    assert (existing.status_code, existing.json()) == (unknown.status_code, unknown.json())


def test_agent_linking_its_own_task_work_order_and_session_is_accepted(as_agent_007, work_of_007):
    AgentSession.objects.create(
        session_id="cc-007", worker_id=work_of_007["worker_id"], last_activity_at=timezone.now()
    )
    response = ask(
        as_agent_007,
        MEDIUM,
        task_id=work_of_007["task_id"],
        work_order_id=work_of_007["work_order_id"],
        session_id="cc-007",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["task"], body["work_order"]) == (work_of_007["task_id"], work_of_007["work_order_id"])
    assert body["agent_session"] == str(AgentSession.objects.get(session_id="cc-007").pk)


def test_agent_pairing_its_work_order_with_another_task_gets_400(as_agent_007, work_of_007):
    other_task = submit_task(as_agent_007)
    response = ask(as_agent_007, MEDIUM, task_id=other_task, work_order_id=work_of_007["work_order_id"])
    assert (response.status_code, response.json()["code"]) == (400, "links_disagree")


# --- using an approval after losing the work -------------------------------------------------------


def approved_for_work_order(as_agent_007, work: dict, approver) -> str:
    response = ask(as_agent_007, HIGH, work_order_id=work["work_order_id"])
    assert response.status_code == 201, response.content
    request_id = response.json()["id"]
    decided = client_for(approver).post(
        f"/api/v1/approvals/{request_id}/approve", {"justification": "release window"}, format="json"
    )
    assert decided.json()["status"] == "approved"
    return request_id


def test_agent_consuming_an_approval_after_its_work_order_was_requeued_gets_409(
    as_agent_007, work_of_007, bob_tech_lead
):
    request_id = approved_for_work_order(as_agent_007, work_of_007, bob_tech_lead)
    WorkOrder.objects.filter(pk=work_of_007["work_order_id"]).update(lease_expires_at=timezone.now())
    assert task_services.work_orders_requeue_lapsed(now=timezone.now() + timedelta(seconds=1)) == 1
    response = as_agent_007.post(f"/api/v1/approvals/{request_id}/consume", HIGH, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "work_order_not_held")
    assert ApprovalRequest.objects.get(pk=request_id).consumed_at is None


def test_agent_consuming_an_approval_while_still_holding_its_work_order_succeeds(
    as_agent_007, work_of_007, bob_tech_lead
):
    request_id = approved_for_work_order(as_agent_007, work_of_007, bob_tech_lead)
    response = as_agent_007.post(f"/api/v1/approvals/{request_id}/consume", HIGH, format="json")
    assert response.status_code == 200, response.content


def test_agent_waiting_on_an_approval_for_its_work_order_keeps_its_lease(as_agent_007, work_of_007, settings):
    settings.HOL_APPROVAL_WAIT_HEARTBEAT_SECONDS = 0.2
    request_id = ask(as_agent_007, HIGH, work_order_id=work_of_007["work_order_id"]).json()["id"]
    nearly_lapsed = timezone.now() + timedelta(seconds=1)
    WorkOrder.objects.filter(pk=work_of_007["work_order_id"]).update(lease_expires_at=nearly_lapsed)
    response = as_agent_007.get(f"/api/v1/approvals/{request_id}", {"wait": 1})
    assert response.json()["status"] == "pending"
    lease = WorkOrder.objects.get(pk=work_of_007["work_order_id"]).lease_expires_at
    assert lease >= nearly_lapsed + timedelta(seconds=settings.HOL_LEASE_SECONDS - 5)


def test_agent_waiting_on_an_approval_does_not_extend_another_workers_lease(as_agent_007, work_of_008, agent_008):
    request = approval_services.approval_request_create(
        actor=agent_008, action=HIGH, work_order_id=work_of_008["work_order_id"]
    )
    before = timezone.now() + timedelta(seconds=1)
    WorkOrder.objects.filter(pk=work_of_008["work_order_id"]).update(lease_expires_at=before)
    response = as_agent_007.get(f"/api/v1/approvals/{request.pk}", {"wait": 0.3})
    assert response.status_code == 404
    assert WorkOrder.objects.get(pk=work_of_008["work_order_id"]).lease_expires_at == before


# --- rejecting without saying why ------------------------------------------------------------------


def test_approver_rejecting_without_a_reason_over_http_gets_400(as_agent_007, bob_tech_lead):
    request_id = ask(as_agent_007, MEDIUM).json()["id"]
    response = client_for(bob_tech_lead).post(f"/api/v1/approvals/{request_id}/reject", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "reason_required")
    assert ApprovalRequest.objects.get(pk=request_id).status == "pending"
    assert not ApprovalDecision.objects.exists()


def test_operator_rejecting_without_a_reason_from_the_command_is_refused(agent_007, bob_tech_lead):
    request = approval_services.approval_request_create(actor=agent_007, action=MEDIUM)
    with pytest.raises(CommandError, match="reason_required"):
        call_command("approvals", "reject", str(request.pk), "--as", "bob_tech_lead")
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"


def test_rejecting_with_only_whitespace_through_the_service_is_refused(agent_007, bob_tech_lead):
    request = approval_services.approval_request_create(actor=agent_007, action=MEDIUM)
    with pytest.raises(BadRequest) as refused:
        approval_services.approval_decide(
            actor=bob_tech_lead, request_id=request.pk, decision="reject", justification="  "
        )
    assert refused.value.code == "reason_required"


def test_operator_rejecting_with_a_reason_from_the_command_records_it(agent_007, bob_tech_lead):
    request = approval_services.approval_request_create(actor=agent_007, action=MEDIUM)
    call_command("approvals", "reject", str(request.pk), "--as", "bob_tech_lead", "--reason", "no rollback plan")
    assert ApprovalRequest.objects.get(pk=request.pk).rejection_reason == "no rollback plan"


# --- an account that is both an agent and an approver -----------------------------------------------


@pytest.fixture
def double_agent(db):
    """A service account someone also put in the tech_lead group."""
    account = make_user("double_agent", "agent")
    account.groups.add(Group.objects.get_or_create(name="tech_lead")[0])
    return account


def test_agent_account_that_is_also_a_tech_lead_cannot_approve(as_agent_008, double_agent, bob_tech_lead):
    request_id = ask(as_agent_008, MEDIUM).json()["id"]
    response = client_for(double_agent).post(f"/api/v1/approvals/{request_id}/approve", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "agents_cannot_decide")
    assert ApprovalRequest.objects.get(pk=request_id).status == "pending"
    assert not ApprovalDecision.objects.exists()


def test_agent_account_that_is_also_a_tech_lead_is_never_assigned(agent_008, double_agent, bob_tech_lead):
    request = approval_services.approval_request_create(actor=agent_008, action=MEDIUM)
    assert request.assigned_to == bob_tech_lead


def test_agent_account_that_is_also_a_tech_lead_cannot_reject_through_the_command(agent_008, double_agent):
    request = approval_services.approval_request_create(actor=agent_008, action=MEDIUM)
    with pytest.raises(CommandError, match="agents_cannot_decide"):
        call_command("approvals", "reject", str(request.pk), "--as", "double_agent", "--reason", "mine now")
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"


# --- rewriting a decision in the admin -----------------------------------------------------------------


def test_superuser_cannot_add_edit_or_delete_requests_or_decisions_in_the_admin(admin_client, agent_007, bob_tech_lead):
    """Even an account holding every model permission: requests and decisions change only
    through the services, so the admin offers no form and refuses a forged post."""
    request = approval_services.approval_request_create(actor=agent_007, action=MEDIUM)
    approval_services.approval_decide(
        actor=bob_tech_lead, request_id=request.pk, decision="approve", justification="ok"
    )
    decision = ApprovalDecision.objects.get()
    page = f"/admin/approvals/approvalrequest/{request.pk}/"
    assert admin_client.get("/admin/approvals/approvalrequest/add/").status_code == 403
    assert 'name="decisions-0-justification"' not in admin_client.get(f"{page}change/").content.decode()
    forged = {
        "status": "rejected",
        "decisions-TOTAL_FORMS": "2",
        "decisions-INITIAL_FORMS": "1",
        "decisions-0-id": str(decision.pk),
        "decisions-0-justification": "rewritten",
        "decisions-0-DELETE": "on",
        "decisions-1-approver": str(bob_tech_lead.pk),
        "decisions-1-decision": "reject",
    }
    assert admin_client.post(f"{page}change/", forged).status_code == 403
    assert admin_client.post(f"{page}delete/", {"post": "yes"}).status_code == 403
    assert ApprovalRequest.objects.get(pk=request.pk).status == "approved"
    assert list(ApprovalDecision.objects.values_list("pk", "justification")) == [(decision.pk, "ok")]


# --- an overdue request read before Beat ran -------------------------------------------------------


def test_agent_reading_an_overdue_request_sees_expired_and_it_is_audited_once(as_agent_007):
    request_id = ask(as_agent_007, MEDIUM).json()["id"]
    ApprovalRequest.objects.filter(pk=request_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    first = as_agent_007.get(f"/api/v1/approvals/{request_id}")
    second = as_agent_007.get(f"/api/v1/approvals/{request_id}")
    listed = as_agent_007.get("/api/v1/approvals")
    assert [first.json()["status"], second.json()["status"]] == ["expired", "expired"]
    assert [row["status"] for row in listed.json()["results"]] == ["expired"]
    expired = AuditEntry.objects.filter(target_id=request_id, action="approval.expired")
    assert [(entry.actor, entry.actor_type) for entry in expired] == [("system", "system")]


def test_overdue_request_listed_by_an_approver_shows_expired(as_agent_007, bob_tech_lead):
    request_id = ask(as_agent_007, MEDIUM).json()["id"]
    ApprovalRequest.objects.filter(pk=request_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    listed = client_for(bob_tech_lead).get("/api/v1/approvals", {"status": "pending"})
    assert listed.json()["results"] == []
    assert ApprovalRequest.objects.get(pk=request_id).status == "expired"


def overdue_request(agent, **links) -> ApprovalRequest:
    request = approval_services.approval_request_create(actor=agent, action=MEDIUM, **links)
    ApprovalRequest.objects.filter(pk=request.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    return request


def expired_once(request: ApprovalRequest) -> bool:
    """The request is expired, and HOL recorded that once."""
    entries = AuditEntry.objects.filter(target_id=str(request.pk), action="approval.expired")
    return ApprovalRequest.objects.get(pk=request.pk).status == "expired" and entries.count() == 1


def test_approver_opening_the_inbox_is_not_shown_an_overdue_request(agent_007, bob_tech_lead):
    request = overdue_request(agent_007)
    browser = signed_in(bob_tech_lead)
    pages = [browser.get("/approvals/").content.decode() for _ in range(2)]
    assert all(f'id="approval-{request.pk}"' not in page for page in pages)
    assert expired_once(request)


def test_approver_on_the_dashboard_is_not_told_an_overdue_request_waits(agent_007, bob_tech_lead):
    request = overdue_request(agent_007)
    response = signed_in(bob_tech_lead).get("/")
    assert '<b data-key="approvals_waiting">0</b>' in response.content.decode()
    assert list(response.context["waiting_on_me"]) == []
    assert expired_once(request)


def test_approver_on_the_task_page_sees_its_overdue_request_expired(agent_007, bob_tech_lead, new_task):
    task, _ = task_services.task_create(actor=agent_007, payload=new_task())
    request = overdue_request(agent_007, task_id=task.pk)
    page = signed_in(bob_tech_lead).get(f"/tasks/{task.pk}/").content.decode()
    assert '<span class="badge s-expired">expired</span>' in page
    assert '<span class="badge s-pending">' not in page
    assert expired_once(request)


def test_approver_listing_requests_in_the_admin_sees_an_overdue_one_expired(agent_007, bob_tech_lead):
    request = overdue_request(agent_007)
    browser = signed_in(bob_tech_lead)
    pages = [browser.get("/admin/approvals/approvalrequest/").content.decode() for _ in range(2)]
    assert all('hol-status-expired">expired<' in page and "hol-status-pending" not in page for page in pages)
    assert all("overdue" not in page for page in pages)
    assert expired_once(request)


def test_approver_opening_an_overdue_requests_admin_page_sees_it_expired_with_no_buttons(agent_007, bob_tech_lead):
    request = overdue_request(agent_007)
    response = signed_in(bob_tech_lead).get(f"/admin/approvals/approvalrequest/{request.pk}/change/")
    page = response.content.decode()
    assert response.context["hol_may_decide"] is False
    assert "Expired without a decision." in page
    assert 'value="approve"' not in page
    assert expired_once(request)


def test_operator_listing_pending_requests_with_the_command_is_not_shown_an_overdue_one(agent_007):
    request = overdue_request(agent_007)
    out = StringIO()
    call_command("approvals", "list-pending", stdout=out)
    assert out.getvalue().strip() == "no pending requests"
    assert expired_once(request)


def test_expiring_on_read_twice_expires_once(agent_007):
    request = approval_services.approval_request_create(actor=agent_007, action=MEDIUM)
    later = request.expires_at + timedelta(seconds=1)
    assert approval_services.approval_expire_if_overdue(request_id=request.pk, now=later) is True
    assert approval_services.approval_expire_if_overdue(request_id=request.pk, now=later) is False
    assert approval_services.approvals_expire_overdue(now=later) == 0
    assert AuditEntry.objects.filter(target_id=str(request.pk), action="approval.expired").count() == 1


# --- the decision deadline and the window to act are two things ------------------------------------


def test_agent_may_use_an_approval_after_the_decision_deadline_within_consume_by(as_agent_007, bob_tech_lead):
    request_id = ask(as_agent_007, HIGH).json()["id"]
    client_for(bob_tech_lead).post(f"/api/v1/approvals/{request_id}/approve", {"justification": "ok"}, format="json")
    ApprovalRequest.objects.filter(pk=request_id).update(expires_at=timezone.now() - timedelta(minutes=1))
    response = as_agent_007.post(f"/api/v1/approvals/{request_id}/consume", HIGH, format="json")
    assert response.status_code == 200, response.content


def test_agent_using_an_approval_after_consume_by_gets_409(agent_007, bob_tech_lead):
    request = approval_services.approval_request_create(actor=agent_007, action=HIGH)
    approved = approval_services.approval_decide(
        actor=bob_tech_lead, request_id=request.pk, decision="approve", justification="ok"
    )
    with pytest.raises(Conflict) as refused:
        approval_services.approval_consume(
            actor=agent_007, request_id=request.pk, action=HIGH, now=approved.consume_by + timedelta(seconds=1)
        )
    assert refused.value.code == "expired"


# --- one approval, one action ------------------------------------------------------------------------


def test_agent_consuming_twice_through_the_service_gets_409_the_second_time(agent_007, bob_tech_lead):
    request = approval_services.approval_request_create(actor=agent_007, action=HIGH)
    approval_services.approval_decide(
        actor=bob_tech_lead, request_id=request.pk, decision="approve", justification="ok"
    )
    approval_services.approval_consume(actor=agent_007, request_id=request.pk, action=HIGH)
    with pytest.raises(Conflict) as refused:
        approval_services.approval_consume(actor=agent_007, request_id=request.pk, action=HIGH)
    assert refused.value.code == "already_used"


def test_agent_consuming_for_another_ref_through_the_service_gets_409(agent_007, bob_tech_lead):
    request = approval_services.approval_request_create(actor=agent_007, action=HIGH)
    approval_services.approval_decide(
        actor=bob_tech_lead, request_id=request.pk, decision="approve", justification="ok"
    )
    with pytest.raises(Conflict) as refused:
        approval_services.approval_consume(
            actor=agent_007, request_id=request.pk, action={**HIGH, "details": {"ref": "v9.9"}}
        )
    assert refused.value.code == "action_mismatch"
    assert ApprovalRequest.objects.get(pk=request.pk).consumed_at is None


# --- flooding the approvers ----------------------------------------------------------------------------


def test_agent_asking_faster_than_the_rate_gets_429_with_retry_after(as_agent_007, settings):
    settings.HOL_APPROVAL_RATE_PER_MINUTE = 2
    statuses = [ask(as_agent_007, MEDIUM).status_code for _ in range(2)]
    refused = ask(as_agent_007, MEDIUM)
    assert statuses == [201, 201]
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert int(refused["Retry-After"]) > 0
    assert ApprovalRequest.objects.count() == 2


def test_one_agents_flood_does_not_block_another_agent(as_agent_007, as_agent_008, settings):
    settings.HOL_APPROVAL_RATE_PER_MINUTE = 1
    ask(as_agent_007, MEDIUM)
    assert ask(as_agent_007, MEDIUM).status_code == 429
    assert ask(as_agent_008, MEDIUM).status_code == 201


def test_asks_counted_in_one_process_count_in_every_other(as_agent_007, agent_007, settings):
    """The count lives in Redis, which every web process shares: another process's throttle (a
    fresh cache connection reading the same Redis) sees the asks this one counted."""
    from django.core.cache.backends.redis import RedisCache
    from rest_framework.test import APIRequestFactory

    from approvals.throttles import ApprovalRequestThrottle

    settings.HOL_APPROVAL_RATE_PER_MINUTE = 2
    for _ in range(2):
        assert ask(as_agent_007, MEDIUM).status_code == 201
    other_process = ApprovalRequestThrottle()
    other_process.cache = RedisCache(settings.CACHES["default"]["LOCATION"], settings.CACHES["default"])
    request = APIRequestFactory().post("/api/v1/approvals")
    request.user = agent_007
    assert other_process.allow_request(request, view=None) is False


def submit_risky_task(client, new_task, **changes):
    return client.post("/api/v1/tasks", new_task(action=HIGH, **changes), format="json")


def test_agent_submitting_high_risk_tasks_faster_than_the_rate_gets_429_with_retry_after(
    as_agent_007, new_task, settings
):
    """Each such task opens an approval request that notifies approvers: it counts as an ask."""
    settings.HOL_APPROVAL_RATE_PER_MINUTE = 2
    statuses = [submit_risky_task(as_agent_007, new_task).status_code for _ in range(2)]
    refused = submit_risky_task(as_agent_007, new_task)
    assert statuses == [201, 201]
    assert refused.status_code == 429
    assert set(refused.json()) == {"code", "message"}
    assert refused.json()["code"] == "throttled"
    assert int(refused["Retry-After"]) > 0
    assert (Task.objects.count(), ApprovalRequest.objects.count()) == (2, 2)


def test_high_risk_tasks_and_direct_asks_share_one_rate(as_agent_007, new_task, settings):
    settings.HOL_APPROVAL_RATE_PER_MINUTE = 2
    assert ask(as_agent_007, MEDIUM).status_code == 201
    assert submit_risky_task(as_agent_007, new_task).status_code == 201
    assert ask(as_agent_007, MEDIUM).status_code == 429
    assert submit_risky_task(as_agent_007, new_task).status_code == 429
    assert ApprovalRequest.objects.count() == 2


def test_tasks_that_open_no_approval_request_are_not_counted(as_agent_007, new_task, settings):
    settings.HOL_APPROVAL_RATE_PER_MINUTE = 1
    for _ in range(3):
        assert as_agent_007.post("/api/v1/tasks", new_task(action=MEDIUM), format="json").status_code == 201
    assert submit_risky_task(as_agent_007, new_task).status_code == 201


def test_replaying_a_high_risk_tasks_idempotency_key_is_not_counted(as_agent_007, new_task, settings):
    settings.HOL_APPROVAL_RATE_PER_MINUTE = 1
    assert submit_risky_task(as_agent_007, new_task, idempotency_key="deploy-1").status_code == 201
    assert submit_risky_task(as_agent_007, new_task, idempotency_key="deploy-1").status_code == 200
    assert submit_risky_task(as_agent_007, new_task, idempotency_key="deploy-2").status_code == 429


def test_reading_approvals_is_not_counted_against_the_rate(as_agent_007, settings):
    settings.HOL_APPROVAL_RATE_PER_MINUTE = 1
    for _ in range(3):
        assert as_agent_007.get("/api/v1/approvals").status_code == 200
    assert ask(as_agent_007, MEDIUM).status_code == 201


# --- scraping /metrics ---------------------------------------------------------------------------------


def test_anonymous_scrape_of_metrics_gets_401(client, settings):
    settings.HOL_METRICS_TOKEN = "s3cret-metrics-token"
    response = client.get("/metrics")
    assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")


def test_scrape_with_a_wrong_token_gets_403(client, settings):
    settings.HOL_METRICS_TOKEN = "s3cret-metrics-token"
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics-tokem")
    assert response.status_code == 403


def test_scrape_with_any_token_when_none_is_configured_gets_403(client, settings):
    settings.HOL_METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 403


def test_agent_presenting_its_jwt_at_metrics_gets_403(agent_007, client, settings):
    from rest_framework_simplejwt.tokens import RefreshToken

    settings.HOL_METRICS_TOKEN = "s3cret-metrics-token"
    token = RefreshToken.for_user(agent_007).access_token
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 403


def test_signed_in_non_staff_person_at_metrics_gets_403(db, client, settings):
    settings.HOL_METRICS_TOKEN = ""
    client.force_login(make_user("eve_developer", "developer"))
    assert client.get("/metrics").status_code == 403


def test_scraper_with_the_token_reads_metrics(db, client, settings):
    settings.HOL_METRICS_TOKEN = "s3cret-metrics-token"
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token")
    assert response.status_code == 200
    assert "hol_approval_requests_total" in response.content.decode()


def test_staff_session_reads_metrics_without_a_token(client, bob_tech_lead, settings):
    settings.HOL_METRICS_TOKEN = ""
    client.force_login(bob_tech_lead)
    assert client.get("/metrics").status_code == 200


# --- Slack markup and the webhook's secret URL -------------------------------------------------------------


@pytest.fixture
def webhook(settings, celery_eager, monkeypatch):
    """Record what would be POSTed to the webhook, at the secret URL a Slack app hands out."""
    import json
    import urllib.request

    settings.HOL_APPROVAL_WEBHOOK_URL = "https://hooks.slack.example/services/T000/B000/XXXXSECRET"
    posted: list[dict] = []

    class Answer:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return b"ok"

    def urlopen(request, timeout):
        posted.append(json.loads(request.data))
        return Answer()

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return posted


def test_agent_smuggling_slack_markup_into_the_action_reaches_slack_inert(
    as_agent_007, bob_tech_lead, webhook, django_capture_on_commit_callbacks
):
    action = {
        "action_type": "secrets",
        "operation": "read <!channel>",
        "environment": "dev <https://evil.example|click here> & more",
    }
    with django_capture_on_commit_callbacks(execute=True):
        assert ask(as_agent_007, action).status_code == 201
    text = webhook[0]["text"]
    assert "<!channel>" not in text and "<https://" not in text
    assert "read &lt;!channel&gt;" in text
    assert "dev &lt;https://evil.example|click here&gt; &amp; more" in text


def test_a_failing_webhook_logs_only_scheme_and_host(
    as_agent_007, bob_tech_lead, settings, celery_eager, caplog, django_capture_on_commit_callbacks
):
    settings.HOL_APPROVAL_WEBHOOK_URL = "http://127.0.0.1:9/services/T000/B000/XXXXSECRET"
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        assert ask(as_agent_007, HIGH).status_code == 201
    logged = "\n".join(record.getMessage() + str(record.exc_info or "") for record in caplog.records)
    assert "approval webhook POST to http://127.0.0.1 failed" in logged
    assert "XXXXSECRET" not in logged and "/services/" not in logged


def test_notices_leave_only_after_commit_through_the_celery_task(
    agent_007, bob_tech_lead, webhook, django_capture_on_commit_callbacks
):
    bob_tech_lead.email = "bob@example.com"
    bob_tech_lead.save()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        approval_services.approval_request_create(actor=agent_007, action=HIGH)
    assert (webhook, mail.outbox) == ([], [])
    for callback in callbacks:
        callback()
    assert len(webhook) == 1
    assert [message.to for message in mail.outbox] == [["bob@example.com"]]
