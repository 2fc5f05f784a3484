"""`manage.py approvals`: the operators' workflow commands, on the same services and rules."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from approvals.models import ApprovalRequest
from approvals.services import approval_request_create
from tests.factories import HIGH_ACTION, MEDIUM_ACTION


def run(*args: str) -> str:
    out = StringIO()
    call_command("approvals", *args, stdout=out)
    return out.getvalue()


def test_list_pending_shows_requests_soonest_to_expire_first(agent_007, bob_tech_lead):
    later = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    sooner = approval_request_create(actor=agent_007, action=HIGH_ACTION)
    ApprovalRequest.objects.filter(pk=sooner.pk).update(expires_at=timezone.now() + timedelta(minutes=5))
    lines = run("list-pending").splitlines()
    assert [line.split()[0] for line in lines] == [str(sooner.pk), str(later.pk)]
    assert "role=tech_lead" in lines[0] and "to=bob_tech_lead" in lines[0]


def test_list_pending_as_a_user_shows_only_what_they_may_decide(agent_007, alice_developer, bob_tech_lead):
    approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    assert run("list-pending", "--as", "alice_developer").strip() == "no pending requests"
    assert len(run("list-pending", "--as", "bob_tech_lead").splitlines()) == 1


def test_approve_as_an_approver(agent_007, bob_tech_lead):
    request = approval_request_create(actor=agent_007, action=HIGH_ACTION)
    assert run("approve", str(request.pk), "--as", "bob_tech_lead", "-j", "tests green").strip() == (
        f"{request.pk}: approved (1/1)"
    )
    request.refresh_from_db()
    assert (request.status, request.approval_justification) == ("approved", "tests green")


def test_the_command_enforces_the_same_rules(agent_007, alice_developer, bob_tech_lead):
    request = approval_request_create(actor=agent_007, action=HIGH_ACTION)
    with pytest.raises(CommandError, match="justification_required"):
        run("approve", str(request.pk), "--as", "bob_tech_lead")
    with pytest.raises(CommandError, match="role_cannot_decide"):
        run("approve", str(request.pk), "--as", "alice_developer", "-j", "why not")
    with pytest.raises(CommandError, match="agents_cannot_decide"):
        run("reject", str(request.pk), "--as", "agent_007")
    with pytest.raises(CommandError, match="no user 'nobody'"):
        run("reject", str(request.pk), "--as", "nobody")
    request.refresh_from_db()
    assert request.status == "pending"


def test_reject_then_status_shows_the_decision(agent_007, bob_tech_lead):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    run("reject", str(request.pk), "--as", "bob_tech_lead", "-j", "not now")
    status = json.loads(run("status", str(request.pk)))
    assert (status["status"], status["rejection_reason"], status["approver"]) == (
        "rejected",
        "not now",
        "bob_tech_lead",
    )
    assert [decision["decision"] for decision in status["decisions"]] == ["reject"]


def test_status_of_an_unknown_request_fails(db):
    with pytest.raises(CommandError, match="not found"):
        run("status", "not-a-uuid")


def test_clean_expired_expires_overdue_requests(agent_007):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    ApprovalRequest.objects.filter(pk=request.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert run("clean-expired").strip() == "expired: 1"
    request.refresh_from_db()
    assert request.status == "expired"


def test_status_of_a_workflow_counts_lists_the_timeline_and_the_rejection_reasons(agent_007, bob_tech_lead):
    deploy = approval_request_create(actor=agent_007, action=HIGH_ACTION, workflow_id="release-42")
    migrate = approval_request_create(actor=agent_007, action=MEDIUM_ACTION, workflow_id="release-42")
    approval_request_create(actor=agent_007, action=MEDIUM_ACTION, workflow_id="another-workflow")
    run("approve", str(deploy.pk), "--as", "bob_tech_lead", "-j", "tests green")
    run("reject", str(migrate.pk), "--as", "bob_tech_lead", "--reason", "no down-migration")
    lines = run("status", "--workflow", "release-42").splitlines()
    assert lines[0] == "workflow release-42: 2 approval request(s)"
    assert lines[1] == "by status: pending=0, approved=1, rejected=1, expired=0, cancelled=0"
    timeline = [line.split()[1:3] for line in lines[3:7]]
    assert timeline == [
        [str(deploy.pk)[:8], "approval.requested"],
        [str(migrate.pk)[:8], "approval.requested"],
        [str(deploy.pk)[:8], "approval.approved"],
        [str(migrate.pk)[:8], "approval.rejected"],
    ]
    assert lines[7:] == ["rejections:", f"  {str(migrate.pk)[:8]}  file/write: no down-migration"]


def test_status_of_a_task_reports_its_requests_and_expires_overdue_ones(agent_007, bob_tech_lead):
    from tasks.models import Task

    task = Task.objects.create(
        title="t", objective="o", target_repo="https://github.com/acme/shop", created_by=agent_007
    )
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION, task_id=task.pk)
    approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    ApprovalRequest.objects.filter(pk=request.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    lines = run("status", "--task", str(task.pk)).splitlines()
    assert lines[0] == f"task {task.pk}: 1 approval request(s)"
    assert lines[1] == "by status: pending=0, approved=0, rejected=0, expired=1, cancelled=0"
    assert [line.split()[2] for line in lines[3:]] == ["approval.requested", "approval.expired"]
    assert lines[-1].endswith("by system")


def test_status_needs_a_request_a_workflow_or_a_task(db):
    with pytest.raises(CommandError):
        run("status")
