"""Workers (register, heartbeat, deregister, silence) and agent sessions with their keep-alive policy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from notifications.models import Notification
from tasks.models import AgentSession, Task, Worker, WorkOrder
from tasks.services import sessions_terminate_stale, workers_mark_silent_offline
from tasks.tasks import requeue_lapsed_work, terminate_stale_sessions
from tests.factories import client_for


def heartbeat(client, worker_id: str, **body):
    return client.post(f"/api/v1/workers/{worker_id}/heartbeat", body, format="json")


def open_session(client, worker_id: str, session_id: str = "claude-abc123", **extra):
    return client.post("/api/v1/sessions", {"session_id": session_id, "worker_id": worker_id, **extra}, format="json")


# --- workers --------------------------------------------------------------------------------------


def test_register_creates_an_idle_worker_owned_by_the_caller(as_agent_007):
    response = as_agent_007.post("/api/v1/workers", {"name": "ci-runner-1"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["user"], body["status"]) == ("ci-runner-1", "agent_007", "idle")
    assert body["last_heartbeat_at"] is not None


def test_register_records_worker_registered_in_the_audit_log(as_agent_007, worker_007):
    assert AuditEntry.objects.filter(action="worker.registered", target_id=worker_007, actor="agent_007").exists()


def test_register_without_a_name_is_400(as_agent_007):
    assert as_agent_007.post("/api/v1/workers", {}, format="json").status_code == 400


def test_agent_reads_its_own_worker(as_agent_007, worker_007):
    response = as_agent_007.get(f"/api/v1/workers/{worker_007}")
    assert response.status_code == 200
    assert response.json()["name"] == "007-laptop"


def test_worker_list_filters_by_status(as_agent_007, worker_007, claimed):
    idle = as_agent_007.post("/api/v1/workers", {"name": "spare"}, format="json").json()["id"]
    busy = [w["id"] for w in as_agent_007.get("/api/v1/workers?status=busy").json()["results"]]
    spare = [w["id"] for w in as_agent_007.get("/api/v1/workers?status=idle").json()["results"]]
    assert (busy, spare) == ([worker_007], [idle])


def test_heartbeat_records_the_time(as_agent_007, worker_007):
    before = timezone.now()
    response = heartbeat(as_agent_007, worker_007)
    assert response.status_code == 200
    assert Worker.objects.get(pk=worker_007).last_heartbeat_at >= before


def test_heartbeat_sets_the_reported_status_and_audits_the_change(as_agent_007, worker_007):
    assert heartbeat(as_agent_007, worker_007, status="waiting").json()["status"] == "waiting"
    entry = AuditEntry.objects.get(action="worker.status_changed", target_id=worker_007, actor="agent_007")
    assert entry.details == {"from": "idle", "to": "waiting"}


def test_heartbeat_cannot_claim_to_be_offline(as_agent_007, worker_007):
    assert heartbeat(as_agent_007, worker_007, status="offline").status_code == 400


def test_heartbeat_of_an_unknown_worker_is_404(as_agent_007):
    assert heartbeat(as_agent_007, "00000000-0000-0000-0000-000000000000").status_code == 404


@pytest.mark.parametrize("method", ["heartbeat", "deregister"])
def test_malformed_worker_id_is_404(as_agent_007, method):
    if method == "heartbeat":
        response = heartbeat(as_agent_007, "not-a-uuid")
    else:
        response = as_agent_007.delete("/api/v1/workers/not-a-uuid")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_deregister_takes_the_worker_offline(as_agent_007, worker_007):
    response = as_agent_007.delete(f"/api/v1/workers/{worker_007}")
    assert response.status_code == 200
    assert response.json()["status"] == "offline"
    assert AuditEntry.objects.filter(action="worker.deregistered", target_id=worker_007, actor="agent_007").exists()


def test_deregister_requeues_the_work_the_worker_held(as_agent_007, worker_007, claimed):
    as_agent_007.delete(f"/api/v1/workers/{worker_007}")
    work_order = WorkOrder.objects.get(pk=claimed)
    assert (work_order.status, work_order.retry_count, work_order.worker_id) == ("queued", 1, None)


def test_tech_lead_may_deregister_an_agents_worker(bob_tech_lead, worker_007):
    assert client_for(bob_tech_lead).delete(f"/api/v1/workers/{worker_007}").status_code == 200
    assert AuditEntry.objects.filter(action="worker.deregistered", target_id=worker_007, actor="bob_tech_lead").exists()


def test_staff_developer_without_the_permission_may_not_deregister_an_agents_worker(as_alice, worker_007):
    assert as_alice.delete(f"/api/v1/workers/{worker_007}").status_code == 403
    assert Worker.objects.get(pk=worker_007).status == Worker.Status.IDLE


def test_deregistering_audits_the_status_change(as_agent_007, worker_007, claimed):
    as_agent_007.delete(f"/api/v1/workers/{worker_007}")
    entry = AuditEntry.objects.get(action="worker.deregistered", target_id=worker_007)
    assert entry.details == {"from": "busy", "to": "offline", "reason": "worker deregistered"}


def test_silent_worker_goes_offline_and_its_work_is_requeued(as_agent_007, worker_007, claimed, settings):
    settings.HOL_WORKER_TIMEOUT_SECONDS = 0
    result = requeue_lapsed_work()
    assert result["workers_offline"] == 1
    assert Worker.objects.get(pk=worker_007).status == Worker.Status.OFFLINE
    work_order = WorkOrder.objects.get(pk=claimed)
    assert (work_order.status, work_order.retry_count) == ("queued", 1)
    assert AuditEntry.objects.filter(action="worker.offline", target_id=worker_007, actor="system").exists()


def test_going_offline_for_silence_audits_the_status_change(as_agent_007, worker_007, settings):
    settings.HOL_WORKER_TIMEOUT_SECONDS = 60
    assert workers_mark_silent_offline(now=timezone.now() + timedelta(seconds=61)) == 1
    entry = AuditEntry.objects.get(action="worker.offline", target_id=worker_007, actor="system")
    assert entry.details == {"from": "idle", "to": "offline", "reason": "heartbeat lapsed"}


def test_offline_worker_coming_back_audits_the_status_change(as_agent_007, worker_007):
    as_agent_007.delete(f"/api/v1/workers/{worker_007}")
    heartbeat(as_agent_007, worker_007)
    entry = AuditEntry.objects.get(action="worker.status_changed", target_id=worker_007)
    assert (entry.details, entry.actor) == ({"from": "offline", "to": "idle"}, "agent_007")


def test_worker_that_heartbeats_stays_online(as_agent_007, worker_007, settings):
    settings.HOL_WORKER_TIMEOUT_SECONDS = 60
    heartbeat(as_agent_007, worker_007)
    assert requeue_lapsed_work()["workers_offline"] == 0
    assert Worker.objects.get(pk=worker_007).status == Worker.Status.IDLE


def test_offline_worker_comes_back_idle_on_heartbeat(as_agent_007, worker_007):
    as_agent_007.delete(f"/api/v1/workers/{worker_007}")
    assert heartbeat(as_agent_007, worker_007).json()["status"] == "idle"


def test_offline_worker_is_not_marked_offline_twice(as_agent_007, worker_007, settings):
    settings.HOL_WORKER_TIMEOUT_SECONDS = 0
    requeue_lapsed_work()
    assert requeue_lapsed_work()["workers_offline"] == 0
    assert AuditEntry.objects.filter(action="worker.offline", target_id=worker_007).count() == 1


# --- sessions -------------------------------------------------------------------------------------


def test_create_session_maps_an_agent_session_id_to_a_worker(as_agent_007, worker_007, new_task):
    task_id = as_agent_007.post("/api/v1/tasks", new_task(), format="json").json()["id"]
    response = open_session(as_agent_007, worker_007, task_id=task_id)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["session_id"], body["worker"], body["task"], body["status"]) == (
        "claude-abc123",
        worker_007,
        task_id,
        "active",
    )
    assert AuditEntry.objects.filter(action="session.created", target_id=body["id"], actor="agent_007").exists()


def test_duplicate_session_id_is_409(as_agent_007, worker_007):
    open_session(as_agent_007, worker_007)
    response = open_session(as_agent_007, worker_007)
    assert response.status_code == 409
    assert response.json()["code"] == "session_exists"
    assert AgentSession.objects.count() == 1


def test_session_for_an_unknown_task_is_404(as_agent_007, worker_007):
    assert open_session(as_agent_007, worker_007, task_id="00000000-0000-0000-0000-000000000000").status_code == 404


def test_sessions_are_listed_and_filtered_by_status(as_agent_007, worker_007):
    open_session(as_agent_007, worker_007, "claude-1")
    open_session(as_agent_007, worker_007, "claude-2")
    as_agent_007.delete("/api/v1/sessions/claude-2")
    all_ids = {s["session_id"] for s in as_agent_007.get("/api/v1/sessions").json()["results"]}
    active = [s["session_id"] for s in as_agent_007.get("/api/v1/sessions?status=active").json()["results"]]
    assert (all_ids, active) == ({"claude-1", "claude-2"}, ["claude-1"])


def test_session_is_read_by_its_hol_id(as_agent_007, worker_007):
    pk = open_session(as_agent_007, worker_007).json()["id"]
    response = as_agent_007.get(f"/api/v1/sessions/{pk}")
    assert response.status_code == 200
    assert response.json()["session_id"] == "claude-abc123"


def test_session_is_read_by_the_agents_session_id(as_agent_007, worker_007):
    pk = open_session(as_agent_007, worker_007).json()["id"]
    response = as_agent_007.get("/api/v1/sessions/claude-abc123")
    assert response.status_code == 200
    assert response.json()["id"] == pk


def test_unknown_session_is_404(as_agent_007):
    assert as_agent_007.get("/api/v1/sessions/claude-nope").status_code == 404


def test_session_heartbeat_records_activity(as_agent_007, worker_007):
    open_session(as_agent_007, worker_007)
    before = timezone.now()
    response = as_agent_007.post("/api/v1/sessions/claude-abc123/heartbeat")
    assert response.status_code == 200
    assert AgentSession.objects.get().last_activity_at >= before


def test_terminate_session_with_delete(as_agent_007, worker_007):
    pk = open_session(as_agent_007, worker_007).json()["id"]
    response = as_agent_007.delete(f"/api/v1/sessions/{pk}")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["termination_reason"]) == ("terminated", "terminated by agent")
    assert body["terminated_at"] is not None
    assert AuditEntry.objects.filter(action="session.terminated", target_id=pk, actor="agent_007").exists()


def test_terminate_session_keeps_the_given_reason(as_agent_007, worker_007):
    open_session(as_agent_007, worker_007)
    as_agent_007.delete("/api/v1/sessions/claude-abc123", {"reason": "user closed the terminal"}, format="json")
    assert AgentSession.objects.get().termination_reason == "user closed the terminal"


def test_heartbeat_of_a_terminated_session_is_409(as_agent_007, worker_007):
    open_session(as_agent_007, worker_007)
    as_agent_007.delete("/api/v1/sessions/claude-abc123")
    response = as_agent_007.post("/api/v1/sessions/claude-abc123/heartbeat")
    assert response.status_code == 409
    assert AgentSession.objects.get().status == AgentSession.Status.TERMINATED


def test_terminating_a_terminated_session_is_409(as_agent_007, worker_007):
    open_session(as_agent_007, worker_007)
    as_agent_007.delete("/api/v1/sessions/claude-abc123")
    assert as_agent_007.delete("/api/v1/sessions/claude-abc123").status_code == 409


def test_terminating_a_task_session_tells_the_tasks_assignee(as_agent_007, worker_007, new_task, alice_developer):
    task_id = as_agent_007.post("/api/v1/tasks", new_task(assigned_to="alice_developer"), format="json").json()["id"]
    open_session(as_agent_007, worker_007, task_id=task_id)
    as_agent_007.delete("/api/v1/sessions/claude-abc123")
    assert Notification.objects.filter(user=alice_developer, kind="session.terminated").count() == 1


# --- keep-alive policy ----------------------------------------------------------------------------


def test_idle_session_is_terminated_and_an_active_one_kept(as_agent_007, worker_007, settings):
    settings.HOL_SESSION_IDLE_SECONDS = 60
    open_session(as_agent_007, worker_007, "claude-quiet")
    open_session(as_agent_007, worker_007, "claude-busy")
    quiet_since = timezone.now() - timedelta(minutes=2)
    AgentSession.objects.filter(session_id="claude-quiet").update(last_activity_at=quiet_since)
    assert sessions_terminate_stale(now=timezone.now()) == 1
    quiet = AgentSession.objects.get(session_id="claude-quiet")
    assert (quiet.status, quiet.termination_reason) == ("terminated", "idle timeout")
    assert AgentSession.objects.get(session_id="claude-busy").status == AgentSession.Status.ACTIVE
    assert AuditEntry.objects.filter(action="session.terminated", target_id=str(quiet.pk), actor="system").exists()


def test_session_older_than_the_maximum_age_is_terminated_even_if_active(as_agent_007, worker_007, settings):
    settings.HOL_SESSION_MAX_AGE_SECONDS = 3600
    settings.HOL_SESSION_IDLE_SECONDS = 3600
    open_session(as_agent_007, worker_007)
    AgentSession.objects.update(created_at=timezone.now() - timedelta(hours=2))
    as_agent_007.post("/api/v1/sessions/claude-abc123/heartbeat")
    assert sessions_terminate_stale(now=timezone.now()) == 1
    session = AgentSession.objects.get()
    assert (session.status, session.termination_reason) == ("terminated", "maximum age reached")


def test_keep_alive_policy_runs_as_the_celery_beat_task(as_agent_007, worker_007, settings):
    open_session(as_agent_007, worker_007)
    AgentSession.objects.update(last_activity_at=timezone.now() - timedelta(hours=1))
    assert terminate_stale_sessions() == 1


def test_fresh_sessions_survive_the_keep_alive_policy(as_agent_007, worker_007):
    open_session(as_agent_007, worker_007)
    assert terminate_stale_sessions() == 0
    assert AgentSession.objects.get().status == AgentSession.Status.ACTIVE


def test_keep_alive_policy_leaves_terminated_sessions_alone(as_agent_007, worker_007, settings):
    open_session(as_agent_007, worker_007)
    as_agent_007.delete("/api/v1/sessions/claude-abc123")
    settings.HOL_SESSION_IDLE_SECONDS = 0
    settings.HOL_SESSION_MAX_AGE_SECONDS = 0
    assert terminate_stale_sessions() == 0
    assert AgentSession.objects.get().termination_reason == "terminated by agent"


def test_tech_lead_may_terminate_an_agents_session(bob_tech_lead, as_agent_007, worker_007):
    open_session(as_agent_007, worker_007)
    response = client_for(bob_tech_lead).delete("/api/v1/sessions/claude-abc123")
    assert response.status_code == 200
    assert AgentSession.objects.get().status == AgentSession.Status.TERMINATED


def test_staff_developer_without_the_permission_may_not_terminate_an_agents_session(
    alice_developer, as_agent_007, worker_007
):
    open_session(as_agent_007, worker_007)
    assert client_for(alice_developer).delete("/api/v1/sessions/claude-abc123").status_code == 403
    assert AgentSession.objects.get().status == AgentSession.Status.ACTIVE


def test_deregistered_workers_task_goes_back_to_queued_after_back_off(as_agent_007, worker_007, claimed):
    as_agent_007.delete(f"/api/v1/workers/{worker_007}")
    task = Task.objects.get(work_orders__pk=claimed)
    assert task.status == Task.Status.QUEUED
    assert WorkOrder.objects.get(pk=claimed).available_at > timezone.now()
