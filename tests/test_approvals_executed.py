"""Who hears of an action that ran without approval when the task names nobody responsible, or
when there is no task at all. (The hook end to end, against daphne: test_claude_post_hook.py.)"""

from __future__ import annotations

from approvals.models import ExecutedAction
from approvals.services import approval_execution_report
from audit.models import AuditEntry
from chat.models import ChatMessage
from notifications.models import Notification
from tasks.services import task_create
from tests.factories import MEDIUM_ACTION, TASK


def report(actor, **links) -> ExecutedAction:
    executed, created, _ = approval_execution_report(
        actor=actor,
        tool_use_id="toolu_1",
        tool_name="Write",
        action={**MEDIUM_ACTION, "details": {"path": "/x"}},
        **links,
    )
    assert created
    return executed


def test_a_flag_on_a_task_nobody_is_responsible_for_reaches_the_role_that_could_have_approved(
    agent_007, bob_tech_lead, alice_developer
):
    task, _ = task_create(actor=agent_007, payload=TASK)
    executed = report(agent_007, task_id=task.pk)
    assert executed.flagged
    notified = set(Notification.objects.filter(kind="approval.bypassed").values_list("user__username", flat=True))
    assert notified == {"bob_tech_lead"}  # medium risk: tech leads decide it, developers do not
    assert ChatMessage.objects.filter(task=task, event_type="unapproved_action").count() == 1


def test_a_flag_without_a_task_is_audited_and_told_to_the_role_without_a_stream_event(agent_007, bob_tech_lead):
    executed = report(agent_007)
    entry = AuditEntry.objects.get(action="approval.bypassed")
    assert (entry.target_id, entry.actor, entry.task_id) == (str(executed.pk), "agent_007", None)
    assert Notification.objects.get(kind="approval.bypassed").user == bob_tech_lead
    assert not ChatMessage.objects.filter(event_type="unapproved_action").exists()


def test_operators_see_flagged_runs_in_the_admin(admin_client, agent_007):
    report(agent_007)
    response = admin_client.get("/admin/approvals/executedaction/", {"flagged__exact": "1"})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1
    assert b"/x" in response.content


def test_reports_beyond_the_rate_are_refused_with_429(as_agent_007, monkeypatch):
    from approvals.throttles import ExecutedReportThrottle

    monkeypatch.setattr(ExecutedReportThrottle, "rate", "2/min")
    body = {"action_type": "file", "operation": "read", "details": {"path": "/x"}}
    codes = [
        as_agent_007.post("/api/v1/approvals/executed", {**body, "tool_use_id": f"t{n}"}, format="json").status_code
        for n in range(3)
    ]
    assert codes == [200, 200, 429]
