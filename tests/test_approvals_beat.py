"""Expiry and expiry warnings by the Beat task functions, assignment with max-pending across
approvers and escalation when nobody has room, and delivery to email, a real webhook receiver and
the Redis channel long-polling agents wait on."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
import yaml
from django.conf import settings
from django.core import mail
from django.utils import timezone

from approvals import tasks as approval_tasks
from approvals.models import ApprovalRequest
from approvals.services import approval_decide, approval_request_create, channel_name, unsealed_body
from audit.models import AuditEntry
from notifications.models import Notification
from tests.factories import HIGH_ACTION, MEDIUM_ACTION


def overdue(request: ApprovalRequest, seconds: float = 1) -> None:
    ApprovalRequest.objects.filter(pk=request.pk).update(expires_at=timezone.now() - timedelta(seconds=seconds))


def test_beat_expires_overdue_pending_requests_once(agent_007, bob_tech_lead):
    late = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    on_time = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    overdue(late)
    assert approval_tasks.expire_overdue_approvals() == 1
    assert approval_tasks.expire_overdue_approvals() == 0
    late.refresh_from_db()
    on_time.refresh_from_db()
    assert (late.status, on_time.status) == ("expired", "pending")
    assert (
        AuditEntry.objects.filter(action="approval.expired", target_id=str(late.pk), actor_type="system").count() == 1
    )
    assert Notification.objects.filter(user=agent_007, kind="approval.expired").count() == 1
    assert Notification.objects.filter(user=bob_tech_lead, kind="approval.expired").count() == 1


def test_beat_does_not_expire_decided_requests(agent_007, bob_tech_lead):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    approval_decide(actor=bob_tech_lead, request_id=request.pk, decision="approve")
    overdue(request)
    assert approval_tasks.expire_overdue_approvals() == 0
    request.refresh_from_db()
    assert request.status == "approved"


def test_beat_warns_approvers_once_about_requests_about_to_expire(agent_007, bob_tech_lead, settings):
    settings.HOL_APPROVAL_EXPIRY_WARNING_SECONDS = 300
    soon = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    ApprovalRequest.objects.filter(pk=soon.pk).update(expires_at=timezone.now() + timedelta(seconds=120))
    assert approval_tasks.warn_expiring_approvals() == 1
    assert approval_tasks.warn_expiring_approvals() == 0
    warnings = Notification.objects.filter(user=bob_tech_lead, kind="approval.expiring")
    assert [note.message for note in warnings] == [
        f"medium risk approval request {str(soon.pk)[:8]} (file write) expires in about 2 min"
    ]


@pytest.fixture
def tight_policy(tmp_path, settings):
    """Tech leads may hold one pending request each."""
    document = yaml.safe_load(Path(settings.HOL_APPROVAL_POLICIES_FILE).read_text())
    document["roles"]["tech_lead"]["max_pending"] = 1
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump(document))
    settings.HOL_APPROVAL_POLICIES_FILE = path


def test_assignment_spreads_over_approvers_and_escalates_when_everyone_is_full(
    tight_policy, agent_007, bob_tech_lead, erin_tech_lead, carol_devops
):
    first, second, third = (approval_request_create(actor=agent_007, action=MEDIUM_ACTION) for _ in range(3))
    assert (first.assigned_to, first.assigned_role, first.escalation_level) == (bob_tech_lead, "tech_lead", 0)
    assert (second.assigned_to, second.assigned_role, second.escalation_level) == (erin_tech_lead, "tech_lead", 0)
    assert (third.assigned_to, third.assigned_role, third.escalation_level) == (carol_devops, "devops_engineer", 1)
    assert Notification.objects.filter(user=carol_devops, kind="approval.escalated").count() == 1
    escalations = AuditEntry.objects.filter(action="approval.escalated", target_id=str(third.pk))
    assert [entry.details["reason"] for entry in escalations] == ["no approver with room"]


def test_a_decided_request_frees_its_approver_for_the_next_one(tight_policy, agent_007, bob_tech_lead):
    first = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    approval_decide(actor=bob_tech_lead, request_id=first.pk, decision="approve")
    second = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    assert (second.assigned_to, second.escalation_level) == (bob_tech_lead, 0)


def test_the_assigned_approver_and_eligible_roles_hold_the_object_permission(agent_007, alice_developer, bob_tech_lead):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    assert bob_tech_lead.has_perm("approvals.decide_approvalrequest", request)
    assert not alice_developer.has_perm("approvals.decide_approvalrequest", request)
    assert not agent_007.has_perm("approvals.decide_approvalrequest", request)


class Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append({"content_type": self.headers["Content-Type"], "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(settings, celery_eager):
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.HOL_APPROVAL_WEBHOOK_URL = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield Receiver.received
    server.shutdown()
    server.server_close()


def test_high_risk_requests_reach_the_webhook_and_email_after_commit(
    webhook, agent_007, bob_tech_lead, django_capture_on_commit_callbacks
):
    bob_tech_lead.email = "bob@example.com"
    bob_tech_lead.save()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        request = approval_request_create(actor=agent_007, action=HIGH_ACTION)
    assert webhook == [] and mail.outbox == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()
    assert len(webhook) == 1
    assert webhook[0]["content_type"] == "application/json"
    assert (
        webhook[0]["body"]["text"]
        == f"high risk approval request {str(request.pk)[:8]} (file delete dev) needs your decision"
    )
    assert webhook[0]["body"]["approval"]["id"] == str(request.pk)
    assert [message.to for message in mail.outbox] == [["bob@example.com"]]


def test_medium_risk_goes_to_email_but_not_the_webhook(
    webhook, agent_007, bob_tech_lead, django_capture_on_commit_callbacks
):
    bob_tech_lead.email = "bob@example.com"
    bob_tech_lead.save()
    with django_capture_on_commit_callbacks(execute=True):
        approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    assert webhook == []
    assert len(mail.outbox) == 1


def test_a_webhook_that_is_down_does_not_fail_the_request(
    settings, celery_eager, agent_007, bob_tech_lead, django_capture_on_commit_callbacks
):
    settings.HOL_APPROVAL_WEBHOOK_URL = "http://127.0.0.1:9/nothing-listens-here"
    with django_capture_on_commit_callbacks(execute=True):
        request = approval_request_create(actor=agent_007, action=HIGH_ACTION)
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"


def test_a_decision_is_published_to_the_requests_channel_after_commit(
    agent_007, bob_tech_lead, django_capture_on_commit_callbacks
):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    client = redis.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel_name(request.pk))
    pubsub.get_message(timeout=1)
    with django_capture_on_commit_callbacks(execute=True):
        approval_decide(actor=bob_tech_lead, request_id=request.pk, decision="reject", justification="no")
    message = pubsub.get_message(timeout=2)
    pubsub.close()
    client.close()
    assert message is not None
    published = json.loads(message["data"])
    # Someone waits (this subscriber), so the decided request rides along, sealed.
    assert published["status"] == "rejected"
    assert json.loads(published["body"])["rejection_reason"] == "no"
    assert unsealed_body(request.pk, message["data"]) == published["body"]
