"""The work queue: enqueue, claim order, leases and retries, holders."""

from __future__ import annotations

import importlib
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audit.actions import AuditAction
from audit.models import AuditEntry
from audit.selectors import audit_verify
from audit.services import audit_seal_pending
from hol.actors import SYSTEM
from hol.errors import Conflict, PermissionDenied
from notifications.models import Notification
from tasks import services as task_services
from tasks.models import Execution, Task, Worker, WorkOrder
from tasks.services import queue as queue_services
from tasks.tasks import requeue_lapsed_work


@pytest.fixture
def make_task(as_agent_007, new_task):
    def make(**changes) -> str:
        response = as_agent_007.post("/api/v1/tasks", new_task(**changes), format="json")
        assert response.status_code == 201, response.content
        return response.json()["id"]

    return make


def enqueue(client, task_id: str, **extra):
    return client.post("/api/v1/queue/enqueue", {"task_id": task_id, **extra}, format="json")


def claim(client, worker_id: str):
    return client.post("/api/v1/queue/claim", {"worker_id": worker_id}, format="json")


def complete(client, work_order_id: str, output: str = "done"):
    return client.post("/api/v1/queue/complete", {"work_order_id": work_order_id, "output": output}, format="json")


def fail(client, work_order_id: str, error: str = "tests failed", **extra):
    return client.post("/api/v1/queue/fail", {"work_order_id": work_order_id, "error": error, **extra}, format="json")


# --- enqueue --------------------------------------------------------------------------------------


def test_enqueue_creates_a_queued_work_order_with_the_task_priority(as_agent_007, make_task):
    response = enqueue(as_agent_007, make_task(priority="high"))
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "queued"
    assert response.json()["priority"] == "high"
    assert response.json()["retry_count"] == 0


def test_enqueue_accepts_a_priority_and_max_retries_override(as_agent_007, make_task):
    response = enqueue(as_agent_007, make_task(priority="low"), priority="high", max_retries=7)
    assert (response.json()["priority"], response.json()["max_retries"]) == ("high", 7)


def test_enqueue_records_work_order_enqueued_in_the_audit_log(as_agent_007, make_task):
    work_order_id = enqueue(as_agent_007, make_task()).json()["id"]
    assert AuditEntry.objects.filter(action="work_order.enqueued", target_id=work_order_id, actor="agent_007").exists()


def test_enqueueing_a_task_twice_is_409(as_agent_007, make_task):
    task_id = make_task()
    enqueue(as_agent_007, task_id)
    response = enqueue(as_agent_007, task_id)
    assert response.status_code == 409
    assert response.json()["code"] == "already_enqueued"
    assert WorkOrder.objects.filter(task_id=task_id).count() == 1


def test_enqueueing_a_completed_task_is_409(as_agent_007, make_task, worker_007):
    task_id = make_task()
    enqueue(as_agent_007, task_id)
    complete(as_agent_007, claim(as_agent_007, worker_007).json()["id"])
    assert enqueue(as_agent_007, task_id).status_code == 409


def test_enqueueing_an_unknown_task_is_404(as_agent_007):
    assert enqueue(as_agent_007, "00000000-0000-0000-0000-000000000000").status_code == 404


def test_agent_cannot_enqueue_another_agents_task(as_agent_008, make_task):
    assert enqueue(as_agent_008, make_task()).status_code == 403


# --- claim ----------------------------------------------------------------------------------------


def test_claim_returns_204_when_queue_empty(as_agent_007, worker_007):
    response = claim(as_agent_007, worker_007)
    assert response.status_code == 204
    assert response.content == b""


def test_claim_takes_highest_priority_first_then_oldest(as_agent_007, make_task, worker_007):
    for title, priority in [("low", "low"), ("high-old", "high"), ("normal", "normal"), ("high-new", "high")]:
        enqueue(as_agent_007, make_task(priority=priority, title=title))
    claimed_names = []
    while (response := claim(as_agent_007, worker_007)).status_code == 200:
        claimed_names.append(response.json()["task"]["title"])
    assert claimed_names == ["high-old", "high-new", "normal", "low"]


def test_claim_returns_the_work_order_with_its_task_and_a_lease(as_agent_007, make_task, worker_007, settings):
    task_id = make_task()
    enqueue(as_agent_007, task_id)
    before = timezone.now()
    body = claim(as_agent_007, worker_007).json()
    work_order = WorkOrder.objects.get(pk=body["id"])
    assert body["task"]["id"] == task_id
    assert body["status"] == "claimed"
    assert body["worker"] == worker_007
    assert work_order.lease_expires_at >= before + timedelta(seconds=settings.HOL_LEASE_SECONDS)


def test_claim_puts_the_task_in_progress_and_opens_an_execution(as_agent_007, claimed, worker_007):
    work_order = WorkOrder.objects.select_related("task").get(pk=claimed)
    assert work_order.task.status == Task.Status.IN_PROGRESS
    execution = Execution.objects.get(work_order=work_order)
    assert (execution.attempt, execution.status, str(execution.worker_id)) == (1, "running", worker_007)


def test_claim_records_work_order_claimed_in_the_audit_log(claimed):
    assert AuditEntry.objects.filter(action="work_order.claimed", target_id=claimed, actor="agent_007").exists()


def test_claimed_work_order_is_not_handed_out_again(as_agent_007, as_agent_008, claimed, worker_008):
    assert claim(as_agent_008, worker_008).status_code == 204


def test_claim_with_an_unknown_worker_is_404(as_agent_007):
    assert claim(as_agent_007, "00000000-0000-0000-0000-000000000000").status_code == 404


def test_claim_without_worker_id_is_400(as_agent_007):
    response = as_agent_007.post("/api/v1/queue/claim", {}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


# --- complete / fail: only the holder ------------------------------------------------------------


def test_holder_completes_its_work_order_and_the_task(as_agent_007, claimed):
    response = complete(as_agent_007, claimed, output="all green")
    assert response.status_code == 200, response.content
    work_order = WorkOrder.objects.select_related("task").get(pk=claimed)
    assert work_order.status == WorkOrder.Status.COMPLETED
    assert work_order.task.status == Task.Status.COMPLETED
    assert work_order.task.completed_at is not None
    execution = Execution.objects.get(work_order=work_order)
    assert (execution.status, execution.output, execution.exit_code) == ("completed", "all green", 0)


def test_complete_records_work_order_completed_in_the_audit_log(as_agent_007, claimed):
    complete(as_agent_007, claimed)
    assert AuditEntry.objects.filter(action="work_order.completed", target_id=claimed, actor="agent_007").exists()


def test_completing_a_work_order_nobody_holds_is_409(as_agent_007, make_task):
    work_order_id = enqueue(as_agent_007, make_task()).json()["id"]
    response = complete(as_agent_007, work_order_id)
    assert response.status_code == 409
    assert response.json()["code"] == "not_held"
    assert WorkOrder.objects.get(pk=work_order_id).status == WorkOrder.Status.QUEUED


def test_completing_a_completed_work_order_again_is_409(as_agent_007, claimed):
    complete(as_agent_007, claimed)
    assert complete(as_agent_007, claimed).status_code == 409


def test_failing_a_completed_work_order_is_409(as_agent_007, claimed):
    complete(as_agent_007, claimed)
    assert fail(as_agent_007, claimed).status_code == 409
    assert WorkOrder.objects.get(pk=claimed).status == WorkOrder.Status.COMPLETED


def test_another_agent_completing_a_held_work_order_is_403(as_agent_008, claimed):
    response = complete(as_agent_008, claimed)
    assert response.status_code == 403
    assert WorkOrder.objects.get(pk=claimed).status == WorkOrder.Status.CLAIMED


def test_completing_an_unknown_work_order_is_404(as_agent_007):
    assert complete(as_agent_007, "00000000-0000-0000-0000-000000000000").status_code == 404


def test_retryable_failure_requeues_with_retry_count_and_back_off(as_agent_007, claimed, settings):
    settings.HOL_RETRY_BACKOFF_SECONDS = 30
    before = timezone.now()
    response = fail(as_agent_007, claimed, error="pytest exited 1")
    assert response.status_code == 200, response.content
    work_order = WorkOrder.objects.select_related("task").get(pk=claimed)
    assert (work_order.status, work_order.retry_count, work_order.worker_id) == ("queued", 1, None)
    assert work_order.available_at >= before + timedelta(seconds=30)
    assert work_order.last_error == "pytest exited 1"
    assert work_order.task.status == Task.Status.QUEUED
    assert Execution.objects.get(work_order=work_order).status == Execution.Status.FAILED


def test_non_retryable_failure_fails_for_good(as_agent_007, claimed):
    response = fail(as_agent_007, claimed, error="repo is archived", retryable=False)
    assert response.status_code == 200
    work_order = WorkOrder.objects.select_related("task").get(pk=claimed)
    assert (work_order.status, work_order.retry_count) == ("failed", 0)
    assert work_order.task.status == Task.Status.FAILED
    assert AuditEntry.objects.filter(action="work_order.failed", target_id=claimed, actor="agent_007").exists()


def test_failed_task_may_be_enqueued_again(as_agent_007, claimed):
    fail(as_agent_007, claimed, retryable=False)
    task_id = str(WorkOrder.objects.get(pk=claimed).task_id)
    assert enqueue(as_agent_007, task_id).status_code == 201
    assert Task.objects.get(pk=task_id).status == Task.Status.QUEUED


def test_holder_reports_running_and_may_still_complete(as_agent_007, agent_007, claimed):
    task_services.work_order_start(actor=agent_007, work_order_id=claimed)
    assert WorkOrder.objects.get(pk=claimed).status == WorkOrder.Status.RUNNING
    assert AuditEntry.objects.filter(action="work_order.started", target_id=claimed, actor="agent_007").exists()
    assert complete(as_agent_007, claimed).status_code == 200


def test_another_agent_cannot_report_running(agent_008, claimed):
    with pytest.raises(PermissionDenied):
        task_services.work_order_start(actor=agent_008, work_order_id=claimed)
    assert WorkOrder.objects.get(pk=claimed).status == WorkOrder.Status.CLAIMED


# --- worker status follows what it holds ----------------------------------------------------------


def test_worker_is_busy_while_holding_and_idle_after_completing(as_agent_007, claimed, worker_007):
    assert as_agent_007.get(f"/api/v1/workers/{worker_007}").json()["status"] == "busy"
    complete(as_agent_007, claimed)
    assert as_agent_007.get(f"/api/v1/workers/{worker_007}").json()["status"] == "idle"


def test_worker_is_idle_again_after_failing_its_work(as_agent_007, claimed, worker_007):
    fail(as_agent_007, claimed)
    assert Worker.objects.get(pk=worker_007).status == Worker.Status.IDLE


def test_claim_audits_the_worker_going_busy(as_agent_007, claimed, worker_007):
    change = AuditEntry.objects.get(action="worker.status_changed", target_id=worker_007)
    assert (change.actor, change.actor_type, change.target_type) == ("agent_007", "agent", "worker")
    assert change.details == {"from": "idle", "to": "busy"}


def test_complete_audits_the_worker_going_idle(as_agent_007, claimed, worker_007):
    complete(as_agent_007, claimed)
    changes = AuditEntry.objects.filter(action="worker.status_changed", target_id=worker_007).order_by("id")
    assert [entry.details for entry in changes] == [{"from": "idle", "to": "busy"}, {"from": "busy", "to": "idle"}]


def test_worker_already_busy_claims_more_without_a_status_change_entry(as_agent_007, make_task, claimed, worker_007):
    enqueue(as_agent_007, make_task())
    assert claim(as_agent_007, worker_007).status_code == 200
    assert AuditEntry.objects.filter(action="worker.status_changed", target_id=worker_007).count() == 1


def test_worker_holding_more_work_stays_busy_after_completing_one(as_agent_007, make_task, claimed, worker_007):
    enqueue(as_agent_007, make_task())
    claim(as_agent_007, worker_007)
    complete(as_agent_007, claimed)
    assert Worker.objects.get(pk=worker_007).status == Worker.Status.BUSY
    assert AuditEntry.objects.filter(action="worker.status_changed", target_id=worker_007).count() == 1


@pytest.mark.django_db(transaction=True)
def test_offline_worker_that_claims_is_idle_again_and_the_entry_is_sealed(as_agent_007, worker_007):
    Worker.objects.filter(pk=worker_007).update(status=Worker.Status.OFFLINE)
    assert claim(as_agent_007, worker_007).status_code == 204
    assert Worker.objects.get(pk=worker_007).status == Worker.Status.IDLE
    change = AuditEntry.objects.get(action="worker.status_changed", target_id=worker_007)
    assert change.details == {"from": "offline", "to": "idle"}
    assert change.seq is not None


def test_claim_with_nothing_to_claim_audits_no_status_change(as_agent_007, worker_007):
    claim(as_agent_007, worker_007)
    assert not AuditEntry.objects.filter(action="worker.status_changed").exists()


def test_claim_of_work_whose_task_is_not_queued_is_409_and_claims_nothing(as_agent_007, make_task, worker_007):
    task_id = make_task()
    work_order_id = enqueue(as_agent_007, task_id).json()["id"]
    Task.objects.filter(pk=task_id).update(status=Task.Status.COMPLETED)  # a task out of step with its work
    response = claim(as_agent_007, worker_007)
    assert (response.status_code, response.json()["code"]) == (409, "invalid_transition")
    assert "task is completed" in response.json()["message"]
    assert WorkOrder.objects.get(pk=work_order_id).status == WorkOrder.Status.QUEUED
    assert not Execution.objects.exists()
    assert Worker.objects.get(pk=worker_007).status == Worker.Status.IDLE


def test_completing_work_whose_task_is_not_in_progress_is_409_and_changes_nothing(as_agent_007, claimed):
    task_id = WorkOrder.objects.get(pk=claimed).task_id
    Task.objects.filter(pk=task_id).update(status=Task.Status.CANCELLED)
    response = complete(as_agent_007, claimed)
    assert (response.status_code, response.json()["code"]) == (409, "invalid_transition")
    assert WorkOrder.objects.get(pk=claimed).status == WorkOrder.Status.CLAIMED
    assert Execution.objects.get(work_order_id=claimed).status == Execution.Status.RUNNING


def test_task_status_change_from_an_unexpected_status_raises_conflict(agent_007, make_task):
    task_id = make_task()
    with pytest.raises(Conflict, match="task is queued"):
        queue_services._set_task_status(
            task_id=task_id, status=Task.Status.COMPLETED, from_statuses=(Task.Status.IN_PROGRESS,)
        )
    assert Task.objects.get(pk=task_id).status == Task.Status.QUEUED


def test_system_may_complete_held_work_and_is_audited_as_system(claimed):
    work_order = task_services.work_order_complete(actor=SYSTEM, work_order_id=claimed, output="closed by HOL")
    assert work_order.status == WorkOrder.Status.COMPLETED
    entry = AuditEntry.objects.get(action="work_order.completed", target_id=claimed)
    assert (entry.actor, entry.actor_type) == ("system", "system")


def test_claim_takes_its_time_from_now(agent_007, as_agent_007, make_task, worker_007, settings):
    enqueue(as_agent_007, make_task())
    moment = timezone.now() + timedelta(days=1)
    work_order = task_services.work_order_claim(actor=agent_007, worker_id=worker_007, now=moment)
    assert work_order.claimed_at == moment
    assert work_order.lease_expires_at == moment + timedelta(seconds=settings.HOL_LEASE_SECONDS)
    assert Execution.objects.get(work_order=work_order).started_at == moment


def test_claim_and_complete_audit_entries_seal_into_a_valid_chain(as_agent_007, claimed):
    complete(as_agent_007, claimed)
    audit_seal_pending()
    result = audit_verify()
    assert (result.ok, result.pending) == (True, 0)
    claimed_entry = AuditEntry.objects.get(action="work_order.claimed", target_id=claimed)
    assert (claimed_entry.component, claimed_entry.target_type, claimed_entry.phase) == ("tasks", "workorder", "")
    assert claimed_entry.details == {"attempt": 1, "worker": str(WorkOrder.objects.get(pk=claimed).worker_id)}


def test_queue_functions_write_only_named_audit_actions():
    install = importlib.import_module("tasks.migrations.0002_queue_functions").INSTALL
    written = set(re.findall(r"'((?:work_order|worker)\.[a-z_]+)'", install))
    assert written == {"work_order.claimed", "work_order.completed", "worker.status_changed"}
    assert written <= {action.value for action in AuditAction}


# --- leases: expiry, back-off, retries, heartbeats ------------------------------------------------


def test_lapsed_lease_requeues_the_work_order_with_retry_count_and_back_off(
    as_agent_007, make_task, worker_007, settings
):
    settings.HOL_LEASE_SECONDS = 0
    settings.HOL_RETRY_BACKOFF_SECONDS = 20
    enqueue(as_agent_007, make_task())
    work_order_id = claim(as_agent_007, worker_007).json()["id"]
    before = timezone.now()
    assert requeue_lapsed_work()["work_orders_requeued"] == 1
    work_order = WorkOrder.objects.select_related("task").get(pk=work_order_id)
    assert (work_order.status, work_order.retry_count, work_order.worker_id) == ("queued", 1, None)
    assert work_order.available_at >= before + timedelta(seconds=20)
    assert "lease expired" in work_order.last_error
    assert work_order.task.status == Task.Status.QUEUED
    assert AuditEntry.objects.filter(action="work_order.requeued", target_id=work_order_id, actor="system").exists()


def test_requeued_work_is_not_claimable_during_back_off(
    as_agent_007, as_agent_008, make_task, worker_007, worker_008, settings
):
    settings.HOL_LEASE_SECONDS = 0
    settings.HOL_RETRY_BACKOFF_SECONDS = 60
    enqueue(as_agent_007, make_task())
    claim(as_agent_007, worker_007)
    requeue_lapsed_work()
    assert claim(as_agent_008, worker_008).status_code == 204


def test_requeued_work_is_claimed_by_another_worker_once_back_off_ends(
    as_agent_007, agent_008, make_task, worker_007, worker_008, settings
):
    settings.HOL_LEASE_SECONDS = 0
    settings.HOL_RETRY_BACKOFF_SECONDS = 30
    enqueue(as_agent_007, make_task())
    work_order_id = claim(as_agent_007, worker_007).json()["id"]
    requeue_lapsed_work()
    available_at = WorkOrder.objects.get(pk=work_order_id).available_at
    work_order = task_services.work_order_claim(actor=agent_008, worker_id=worker_008, now=available_at)
    assert (str(work_order.pk), str(work_order.worker_id), work_order.retry_count) == (work_order_id, worker_008, 1)
    attempts = sorted(Execution.objects.filter(work_order_id=work_order_id).values_list("attempt", "status"))
    assert attempts == [(1, "failed"), (2, "running")]


def test_previous_holder_cannot_complete_after_its_lease_lapsed(as_agent_007, make_task, worker_007, settings):
    settings.HOL_LEASE_SECONDS = 0
    enqueue(as_agent_007, make_task())
    work_order_id = claim(as_agent_007, worker_007).json()["id"]
    requeue_lapsed_work()
    assert complete(as_agent_007, work_order_id).status_code == 409
    assert WorkOrder.objects.get(pk=work_order_id).status == WorkOrder.Status.QUEUED


def test_back_off_doubles_with_each_retry_up_to_the_cap(settings):
    settings.HOL_RETRY_BACKOFF_SECONDS = 10
    settings.HOL_RETRY_BACKOFF_MAX_SECONDS = 35
    assert [task_services.backoff_seconds(n) for n in (1, 2, 3, 4)] == [10, 20, 35, 35]


def test_second_lapse_waits_twice_as_long(as_agent_007, make_task, worker_007, settings):
    settings.HOL_LEASE_SECONDS = 0
    settings.HOL_RETRY_BACKOFF_SECONDS = 0
    enqueue(as_agent_007, make_task())
    work_order_id = claim(as_agent_007, worker_007).json()["id"]
    requeue_lapsed_work()
    claim(as_agent_007, worker_007)
    settings.HOL_RETRY_BACKOFF_SECONDS = 50
    before = timezone.now()
    requeue_lapsed_work()
    work_order = WorkOrder.objects.get(pk=work_order_id)
    assert work_order.retry_count == 2
    assert before + timedelta(seconds=100) <= work_order.available_at <= timezone.now() + timedelta(seconds=100)


def test_lapsed_lease_with_retries_spent_fails_for_good_and_tells_the_assignee(
    as_agent_007, make_task, worker_007, alice_developer, settings
):
    settings.HOL_LEASE_SECONDS = 0
    task_id = make_task(assigned_to="alice_developer")
    enqueue(as_agent_007, task_id, max_retries=0)
    work_order_id = claim(as_agent_007, worker_007).json()["id"]
    requeue_lapsed_work()
    work_order = WorkOrder.objects.select_related("task").get(pk=work_order_id)
    assert (work_order.status, work_order.retry_count) == ("failed", 0)
    assert work_order.task.status == Task.Status.FAILED
    notification = Notification.objects.get(user=alice_developer, kind="work_order.failed")
    assert notification.level == "error"
    assert task_id in notification.link
    assert AuditEntry.objects.filter(
        action="notification.created", target_id=str(notification.pk), actor="system"
    ).exists()
    assert AuditEntry.objects.filter(action="work_order.failed", target_id=work_order_id, actor="system").exists()


def test_work_order_fails_after_max_retries_lapses(as_agent_007, make_task, worker_007, settings):
    settings.HOL_LEASE_SECONDS = 0
    settings.HOL_RETRY_BACKOFF_SECONDS = 0
    enqueue(as_agent_007, make_task(), max_retries=2)
    statuses = []
    for _ in range(3):
        work_order_id = claim(as_agent_007, worker_007).json()["id"]
        requeue_lapsed_work()
        work_order = WorkOrder.objects.get(pk=work_order_id)
        statuses.append((work_order.status, work_order.retry_count))
    assert statuses == [("queued", 1), ("queued", 2), ("failed", 2)]
    assert claim(as_agent_007, worker_007).status_code == 204


def test_heartbeat_extends_the_lease(as_agent_007, make_task, worker_007, settings):
    settings.HOL_LEASE_SECONDS = 0
    enqueue(as_agent_007, make_task())
    work_order_id = claim(as_agent_007, worker_007).json()["id"]
    settings.HOL_LEASE_SECONDS = 60
    before = timezone.now()
    assert as_agent_007.post(f"/api/v1/workers/{worker_007}/heartbeat", {}, format="json").status_code == 200
    assert WorkOrder.objects.get(pk=work_order_id).lease_expires_at >= before + timedelta(seconds=60)
    assert requeue_lapsed_work()["work_orders_requeued"] == 0
    assert WorkOrder.objects.get(pk=work_order_id).status == WorkOrder.Status.CLAIMED


def test_beat_requeues_a_lease_that_lapsed_by_the_time_it_is_given(claimed, settings):
    later = timezone.now() + timedelta(seconds=settings.HOL_LEASE_SECONDS + 1)
    assert task_services.work_orders_requeue_lapsed(now=later) == 1
    work_order = WorkOrder.objects.get(pk=claimed)
    assert (work_order.status, work_order.retry_count) == ("queued", 1)
    assert AuditEntry.objects.filter(action="work_order.requeued", target_id=claimed, actor="system").exists()


def test_live_lease_is_left_alone_by_beat(claimed):
    assert requeue_lapsed_work() == {"workers_offline": 0, "work_orders_requeued": 0}
    assert WorkOrder.objects.get(pk=claimed).status == WorkOrder.Status.CLAIMED


# --- queue status ---------------------------------------------------------------------------------


def test_queue_status_counts_depth_per_priority_held_work_and_workers(as_agent_007, make_task, worker_007):
    for priority in ("high", "high", "low"):
        enqueue(as_agent_007, make_task(priority=priority))
    claim(as_agent_007, worker_007)
    status = as_agent_007.get("/api/v1/queue/status")
    assert status.status_code == 200
    assert status.json() == {
        "depth": {"high": 1, "normal": 0, "low": 1},
        "queued": 2,
        "claimed": 1,
        "running": 0,
        "completed": 0,
        "failed": 0,
        "workers": {"idle": 0, "busy": 1, "waiting": 0, "error": 0, "offline": 0},
    }


def test_queue_status_counts_completed_and_failed(as_agent_007, make_task, worker_007):
    for _ in range(2):
        enqueue(as_agent_007, make_task())
    complete(as_agent_007, claim(as_agent_007, worker_007).json()["id"])
    fail(as_agent_007, claim(as_agent_007, worker_007).json()["id"], retryable=False)
    status = as_agent_007.get("/api/v1/queue/status").json()
    assert (status["queued"], status["completed"], status["failed"]) == (0, 1, 1)
    assert status["workers"]["idle"] == 1


def test_queue_status_requires_authentication(db):
    assert APIClient().get("/api/v1/queue/status").status_code == 401


def test_a_held_work_order_without_its_running_execution_is_refused_not_passed_over(
    as_agent_007, worker_007, make_task
):
    enqueue(as_agent_007, make_task())
    work_order_id = claim(as_agent_007, worker_007).json()["id"]
    Execution.objects.filter(work_order_id=work_order_id).delete()  # a row lost by hand
    response = fail(as_agent_007, work_order_id)
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "invalid_transition"
    assert WorkOrder.objects.get(pk=work_order_id).status == "claimed"
