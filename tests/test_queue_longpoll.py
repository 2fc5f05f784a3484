"""POST /api/v1/queue/claim with `wait`: an empty queue is waited on, not polled, and work queued
meanwhile (or a backed-off work order coming due) is handed out at once."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from tasks import services as task_services
from tasks.claim_wait import _waiter_key
from tasks.models import Worker, WorkOrder
from tests.factories import TASK, client_for
from tests.waiting import wait_until_key_exists

pytestmark = pytest.mark.django_db(transaction=True)


def claim_in_thread(client, body: dict, results: dict) -> threading.Thread:
    def claim() -> None:
        started = time.monotonic()
        response = client.post("/api/v1/queue/claim", body, format="json")
        results.update(response=response, elapsed=time.monotonic() - started)

    thread = threading.Thread(target=claim)
    thread.start()
    return thread


def wait_until_waiting(worker_id: str) -> None:
    """Until the worker's claim has found the queue empty and waits: it is registered as waiting
    (after subscribing to the queue's wake-ups, so work queued from now on wakes it)."""
    wait_until_key_exists(settings.REDIS_URL, _waiter_key(worker_id))


def enqueue(agent) -> WorkOrder:
    task, _ = task_services.task_create(actor=agent, payload=TASK)
    return task_services.work_order_enqueue(actor=agent, task_id=task.pk)


def test_an_empty_queue_answers_204_after_the_wait(as_agent_007, worker_007):
    started = time.monotonic()
    response = as_agent_007.post("/api/v1/queue/claim", {"worker_id": worker_007, "wait": 1}, format="json")
    assert response.status_code == 204
    assert 0.95 <= time.monotonic() - started < 3


def test_without_wait_an_empty_queue_answers_at_once(as_agent_007, worker_007):
    started = time.monotonic()
    response = as_agent_007.post("/api/v1/queue/claim", {"worker_id": worker_007}, format="json")
    assert response.status_code == 204
    assert time.monotonic() - started < 1


def test_work_queued_during_the_wait_is_handed_out_at_once(agent_007, worker_007):
    results: dict = {}
    thread = claim_in_thread(client_for(agent_007), {"worker_id": worker_007, "wait": 20}, results)
    wait_until_waiting(worker_007)
    work_order = enqueue(agent_007)
    thread.join(timeout=25)
    assert results["response"].status_code == 200
    assert results["response"].json()["id"] == str(work_order.pk)
    assert results["elapsed"] < 3


def test_a_backed_off_work_order_is_handed_out_when_it_comes_due(agent_007, worker_007):
    work_order = enqueue(agent_007)
    WorkOrder.objects.filter(pk=work_order.pk).update(available_at=timezone.now() + timedelta(seconds=1))
    started = time.monotonic()
    response = client_for(agent_007).post("/api/v1/queue/claim", {"worker_id": worker_007, "wait": 20}, format="json")
    assert response.status_code == 200
    assert response.json()["id"] == str(work_order.pk)
    assert 0.9 <= time.monotonic() - started < 4


def test_the_wait_is_capped_by_the_setting(as_agent_007, worker_007, settings):
    settings.HOL_APPROVAL_WAIT_MAX_SECONDS = 1
    started = time.monotonic()
    response = as_agent_007.post("/api/v1/queue/claim", {"worker_id": worker_007, "wait": 600}, format="json")
    assert response.status_code == 204
    assert time.monotonic() - started < 3


def test_waiting_heartbeats_the_worker(as_agent_007, worker_007, settings):
    settings.HOL_APPROVAL_WAIT_HEARTBEAT_SECONDS = 0.3
    before = Worker.objects.get(pk=worker_007).last_heartbeat_at
    as_agent_007.post("/api/v1/queue/claim", {"worker_id": worker_007, "wait": 1.5}, format="json")
    assert Worker.objects.get(pk=worker_007).last_heartbeat_at > before


def test_an_agent_cannot_wait_as_another_agents_worker(as_agent_008, worker_007):
    response = as_agent_008.post("/api/v1/queue/claim", {"worker_id": worker_007, "wait": 5}, format="json")
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"worker_id": "nope"}, "invalid"),
        ({"wait": 1}, "invalid"),
        ({"worker_id": "00000000-0000-0000-0000-000000000000", "wait": -1}, "invalid"),
        ({"worker_id": "00000000-0000-0000-0000-000000000000", "wait": "soon"}, "invalid"),
    ],
)
def test_a_bad_claim_is_a_400(as_agent_007, body, code):
    response = as_agent_007.post("/api/v1/queue/claim", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == code


def test_a_body_that_is_not_json_is_a_400(as_agent_007):
    response = as_agent_007.post("/api/v1/queue/claim", "{not json", content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, "parse_error")


def test_claiming_needs_authentication(client):
    response = client.post("/api/v1/queue/claim", {"worker_id": "x"}, content_type="application/json")
    assert response.status_code == 401


def test_only_post_is_served(as_agent_007):
    assert as_agent_007.get("/api/v1/queue/claim").status_code == 405


def test_a_signed_in_session_needs_the_csrf_token(agent_007, worker_007):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(agent_007)
    response = browser.post("/api/v1/queue/claim", {"worker_id": worker_007}, content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (403, "csrf_failed")


def test_one_worker_waits_in_one_claim_at_a_time(agent_007, worker_007):
    results: dict = {}
    thread = claim_in_thread(client_for(agent_007), {"worker_id": worker_007, "wait": 3}, results)
    wait_until_waiting(worker_007)
    second = client_for(agent_007).post("/api/v1/queue/claim", {"worker_id": worker_007, "wait": 3}, format="json")
    assert (second.status_code, second.json()["code"]) == (409, "already_waiting")
    thread.join(timeout=10)
    assert results["response"].status_code == 204
    # Once that wait ended, the worker may wait again.
    again = client_for(agent_007).post("/api/v1/queue/claim", {"worker_id": worker_007, "wait": 0.5}, format="json")
    assert again.status_code == 204


def test_a_session_with_another_authorization_scheme_still_needs_the_csrf_token(agent_007, worker_007):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(agent_007)
    response = browser.post(
        "/api/v1/queue/claim",
        {"worker_id": worker_007},
        content_type="application/json",
        headers={"Authorization": "Basic eDp5"},
    )
    assert (response.status_code, response.json()["code"]) == (403, "csrf_failed")
