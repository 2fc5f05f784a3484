"""Approvers racing on PostgreSQL: real processes deciding the same request at the same moment.

Each approver is a long-lived child process (Django set up, connected, user loaded) that decides
on a line from stdin, so both start a round within microseconds of each other; the row lock in
the decision service must turn every round into exactly one outcome."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connection

from approvals.models import ApprovalRequest
from approvals.services import approval_decide, approval_request_create
from audit.models import AuditEntry
from tests.factories import HIGH_ACTION, make_user
from tests.processes import DJANGO_CHILD, ROUNDS, database_url, race, start_child

CRITICAL = {"action_type": "database", "operation": "drop", "environment": "production"}


def decision_entries(request: ApprovalRequest) -> list[str]:
    return list(
        AuditEntry.objects.filter(
            target_id=str(request.pk),
            action__in=["approval.approved", "approval.rejected", "approval.approval_recorded"],
        ).values_list("action", flat=True)
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_approvers_deciding_at_once_end_with_one_outcome_and_one_audit_entry(
    approver_processes, agent_007, bob_tech_lead, erin_tech_lead
):
    bob, erin = approver_processes("bob_tech_lead"), approver_processes("erin_tech_lead")
    assert [bob.stdout.readline().strip(), erin.stdout.readline().strip()] == ["ready", "ready"]
    for round_number in range(ROUNDS):
        request = approval_request_create(actor=agent_007, action=HIGH_ACTION)
        second = "reject" if round_number % 2 else "approve"
        results = race([bob, erin], [f"{request.pk} approve", f"{request.pk} {second}"])
        request.refresh_from_db()
        winners = [result for result in results if result["ok"]]
        assert len(winners) == 1, results
        assert [result["code"] for result in results if not result["ok"]] == ["not_pending"]
        assert request.status == winners[0]["status"]
        assert request.decisions.count() == 1
        assert len(decision_entries(request)) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_reject_racing_the_second_approval_of_a_critical_request_never_ends_approved_with_a_reject(
    approver_processes, agent_007, carol_devops, dave_devops, frank_devops
):
    dave, frank = approver_processes("dave_devops"), approver_processes("frank_devops")
    assert [dave.stdout.readline().strip(), frank.stdout.readline().strip()] == ["ready", "ready"]
    outcomes = set()
    for _ in range(ROUNDS):
        request = approval_request_create(actor=agent_007, action=CRITICAL)
        approval_decide(actor=carol_devops, request_id=request.pk, decision="approve", justification="first")
        results = race([dave, frank], [f"{request.pk} approve", f"{request.pk} reject"])
        request.refresh_from_db()
        assert sum(result["ok"] for result in results) == 1, results
        decisions = sorted(request.decisions.values_list("decision", flat=True))
        if request.status == "approved":
            assert decisions == ["approve", "approve"]
            assert results[1] == {"ok": False, "code": "not_pending"}
        else:
            assert request.status == "rejected"
            assert decisions == ["approve", "reject"]
            assert results[0] == {"ok": False, "code": "not_pending"}
        assert len(decision_entries(request)) == 2  # carol's, and the one winner's
        outcomes.add(request.status)
    assert outcomes <= {"approved", "rejected"}


REQUESTER = (
    DJANGO_CHILD
    + r"""
from approvals.services import approval_request_create
sys.stdin.readline()
request = approval_request_create(actor=user, action={"action_type": "file", "operation": "write"})
print(request.assigned_to.username if request.assigned_to else "-", flush=True)
"""
)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_requests_made_at_once_never_overfill_an_approver(tmp_path, bob_tech_lead, erin_tech_lead, carol_devops):
    import yaml
    from django.conf import settings

    document = yaml.safe_load(Path(settings.HOL_APPROVAL_POLICIES_FILE).read_text())
    document["roles"]["tech_lead"]["max_pending"] = 1
    policies = tmp_path / "policies.yaml"
    policies.write_text(yaml.safe_dump(document))
    agents = [make_user(f"agent_{n}", "agent").username for n in range(4)]
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "HOL_APPROVAL_POLICIES_FILE": str(policies),
    }
    children = [start_child(REQUESTER, agent, env) for agent in agents]
    assert [child.stdout.readline().strip() for child in children] == ["ready"] * 4
    for child in children:
        child.stdin.write("go\n")
    for child in children:
        child.stdin.flush()
    assignees = sorted(child.stdout.readline().strip() for child in children)
    for child in children:
        child.wait(10)
    assert assignees == ["bob_tech_lead", "carol_devops", "carol_devops", "erin_tech_lead"]
    assert ApprovalRequest.objects.filter(assigned_role="devops_engineer", escalation_level=1).count() == 2


def read_overdue(request_id: str, start, results) -> None:
    """Child process: a reader arriving at the same moment as the others."""
    import traceback

    from django.db import connections

    try:
        from approvals.services import approval_expire_if_overdue

        start.wait(timeout=30)
        results.put((approval_expire_if_overdue(request_id=request_id), None))
    except BaseException:
        results.put((None, traceback.format_exc()))
    finally:
        connections.close_all()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_readers_of_an_overdue_request_at_once_expire_it_once(bob_tech_lead):
    from datetime import timedelta

    from django.utils import timezone

    from tests.processes import run_forked

    agent = make_user("agent_reader", "agent")
    request = approval_request_create(actor=agent, action={"action_type": "file", "operation": "write"})
    ApprovalRequest.objects.filter(pk=request.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    reports = run_forked(read_overdue, [(str(request.pk),)] * 4, timeout=60)
    assert [error for _, error in reports if error] == []
    assert sorted(expired for expired, _ in reports) == [False, False, False, True]
    assert ApprovalRequest.objects.get(pk=request.pk).status == "expired"
    assert AuditEntry.objects.filter(target_id=str(request.pk), action="approval.expired").count() == 1
