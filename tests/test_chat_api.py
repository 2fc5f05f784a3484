"""The chat API: agents post to and read their tasks' streams, ask questions and long-poll the
answer; people answer; notifications are listed and marked read; WebSocket tickets."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from audit.models import AuditEntry
from chat.models import ChatMessage
from chat.services import chat_message_post
from hol.actors import SYSTEM
from hol.ws_auth import _ticket_key
from notifications.models import Notification
from notifications.services import notification_create
from tasks.models import WorkOrder
from tests.factories import client_for, make_user


@pytest.fixture
def task_of_007(as_agent_007, new_task, bob_tech_lead) -> dict:
    response = as_agent_007.post("/api/v1/tasks", new_task(assigned_to="bob_tech_lead"), format="json")
    assert response.status_code == 201, response.content
    return response.json()


def post(client, task: dict, **fields):
    return client.post("/api/v1/chat/messages", {"task_id": task["id"], **fields}, format="json")


def test_agent_posts_a_log_line_to_its_own_task(as_agent_007, task_of_007):
    response = post(as_agent_007, task_of_007, content="running tests", event_type="log", stage="testing")
    assert response.status_code == 201
    body = response.json()
    assert (body["sender"], body["sender_type"], body["event_type"], body["stage"]) == (
        "agent_007",
        "worker",
        "log",
        "testing",
    )
    assert AuditEntry.objects.filter(action="chat.message_posted", target_id=str(body["id"])).exists()


def test_agent_cannot_post_to_another_agents_task(as_agent_008, task_of_007):
    response = post(as_agent_008, task_of_007, content="hello")
    assert response.status_code == 403
    assert not ChatMessage.objects.exists()


def test_agent_cannot_read_another_agents_task(as_agent_008, task_of_007):
    response = as_agent_008.get("/api/v1/chat/messages", {"task": task_of_007["id"]})
    assert response.status_code == 403


def test_a_person_without_a_role_cannot_read_a_stream(task_of_007):
    nobody = client_for(make_user("mallory", "visitors"))
    assert nobody.get("/api/v1/chat/messages", {"task": task_of_007["id"]}).status_code == 403


def test_listing_returns_only_messages_after_the_given_id_oldest_first(as_agent_007, task_of_007, bob_tech_lead):
    ids = [post(as_agent_007, task_of_007, content=f"line {n}").json()["id"] for n in range(4)]
    response = client_for(bob_tech_lead).get("/api/v1/chat/messages", {"task": task_of_007["id"], "after": ids[1]})
    assert response.status_code == 200
    assert [m["id"] for m in response.json()] == ids[2:]


def test_listing_an_unknown_task_is_a_404(as_agent_007):
    response = as_agent_007.get("/api/v1/chat/messages", {"task": "00000000-0000-0000-0000-000000000000"})
    assert response.status_code == 404


def test_content_over_64_kib_is_refused(as_agent_007, task_of_007):
    response = post(as_agent_007, task_of_007, content="x" * (64 * 1024 + 1))
    assert response.status_code == 400
    assert response.json()["code"] == "too_large"


def test_data_over_256_kib_is_refused(as_agent_007, task_of_007):
    response = post(as_agent_007, task_of_007, data={"diff": "x" * (256 * 1024)})
    assert response.status_code == 400
    assert response.json()["code"] == "too_large"


def test_an_unknown_event_type_is_a_400(as_agent_007, task_of_007):
    response = post(as_agent_007, task_of_007, event_type="shout")
    assert response.status_code == 400


def test_asking_a_question_notifies_the_tasks_assignee(as_agent_007, task_of_007, bob_tech_lead):
    question = post(as_agent_007, task_of_007, message_type="request", content="Which database?").json()
    notification = Notification.objects.get(user=bob_tech_lead)
    assert notification.kind == "question"
    assert "Which database?" in notification.message
    assert notification.link == f"/tasks/{task_of_007['id']}/#message-{question['id']}"


def test_a_question_on_an_unassigned_task_notifies_the_role_it_names(as_agent_007, new_task, bob_tech_lead):
    task = as_agent_007.post("/api/v1/tasks", new_task(metadata={"role": "tech_lead"}), format="json").json()
    post(as_agent_007, task, message_type="request", content="Merge now?")
    assert list(Notification.objects.values_list("user__username", "kind")) == [("bob_tech_lead", "question")]


def test_a_log_line_notifies_nobody(as_agent_007, task_of_007):
    post(as_agent_007, task_of_007, content="just a log")
    assert not Notification.objects.exists()


def test_reply_without_wait_says_unanswered(as_agent_007, task_of_007):
    question = post(as_agent_007, task_of_007, message_type="request", content="Which database?").json()
    response = as_agent_007.get(f"/api/v1/chat/messages/{question['id']}/reply")
    assert response.status_code == 200
    assert response.json() == {"question_id": question["id"], "answered": False, "reply": None}


def test_an_agent_cannot_answer_a_question_for_the_human(as_agent_007, task_of_007):
    question = post(as_agent_007, task_of_007, message_type="request", content="May I drop the table?").json()
    forged = post(as_agent_007, task_of_007, message_type="response", content="yes", parent_message_id=question["id"])
    assert (forged.status_code, forged.json()["code"]) == (403, "answers_are_human")
    reply = as_agent_007.get(f"/api/v1/chat/messages/{question['id']}/reply").json()
    assert reply["answered"] is False


def test_reply_returns_the_human_answer(as_agent_007, task_of_007, bob_tech_lead):
    question = post(as_agent_007, task_of_007, message_type="request", content="Which database?").json()
    answer = post(
        client_for(bob_tech_lead), task_of_007, message_type="response", content="PostgreSQL",
        parent_message_id=question["id"],
    )  # fmt: skip
    assert answer.status_code == 201
    started = time.monotonic()
    response = as_agent_007.get(f"/api/v1/chat/messages/{question['id']}/reply", {"wait": 30})
    assert time.monotonic() - started < 1
    body = response.json()
    assert body["answered"] is True
    assert (body["reply"]["content"], body["reply"]["sender"], body["reply"]["sender_type"]) == (
        "PostgreSQL",
        "bob_tech_lead",
        "human",
    )


def test_reply_wait_returns_unanswered_after_n_seconds(as_agent_007, task_of_007):
    question = post(as_agent_007, task_of_007, message_type="request", content="Which database?").json()
    started = time.monotonic()
    response = as_agent_007.get(f"/api/v1/chat/messages/{question['id']}/reply", {"wait": 1})
    assert 0.95 <= time.monotonic() - started < 2.5
    assert response.json()["answered"] is False


def test_reply_of_a_message_that_is_not_a_question_is_a_400(as_agent_007, task_of_007):
    message = post(as_agent_007, task_of_007, content="a log line").json()
    response = as_agent_007.get(f"/api/v1/chat/messages/{message['id']}/reply")
    assert response.status_code == 400
    assert response.json()["code"] == "not_a_question"


def test_another_agent_cannot_read_the_reply(as_agent_007, as_agent_008, task_of_007):
    question = post(as_agent_007, task_of_007, message_type="request", content="secret?").json()
    assert as_agent_008.get(f"/api/v1/chat/messages/{question['id']}/reply").status_code == 403


def test_reply_needs_authentication(as_agent_007, task_of_007, client):
    question = post(as_agent_007, task_of_007, message_type="request", content="q").json()
    assert client.get(f"/api/v1/chat/messages/{question['id']}/reply").status_code == 401


def test_answering_a_log_line_is_a_409(as_agent_007, task_of_007, bob_tech_lead):
    log_line = post(as_agent_007, task_of_007, content="a log line").json()
    response = post(
        client_for(bob_tech_lead), task_of_007, message_type="response", content="?", parent_message_id=log_line["id"]
    )
    assert response.status_code == 409


# --- notifications ----------------------------------------------------------------------------------


def test_notifications_list_only_my_own(bob_tech_lead, carol_devops):
    notification_create(user=bob_tech_lead, kind="question", message="for bob")
    notification_create(user=carol_devops, kind="question", message="for carol")
    response = client_for(bob_tech_lead).get("/api/v1/notifications")
    assert response.status_code == 200
    assert [n["message"] for n in response.json()["results"]] == ["for bob"]


def test_marking_my_notification_read(bob_tech_lead):
    notification = notification_create(user=bob_tech_lead, kind="question", message="for bob")
    response = client_for(bob_tech_lead).post(f"/api/v1/notifications/{notification.pk}/read")
    assert response.status_code == 200
    assert response.json()["is_read"] is True
    notification.refresh_from_db()
    assert notification.is_read


def test_marking_someone_elses_notification_is_a_404(bob_tech_lead, carol_devops):
    notification = notification_create(user=carol_devops, kind="question", message="for carol")
    assert client_for(bob_tech_lead).post(f"/api/v1/notifications/{notification.pk}/read").status_code == 404
    notification.refresh_from_db()
    assert not notification.is_read


# --- WebSocket tickets ------------------------------------------------------------------------------


def test_a_ticket_is_issued_for_the_caller_and_lives_30_seconds(as_agent_007, agent_007):
    response = as_agent_007.post("/api/v1/ws/ticket")
    assert response.status_code == 201
    key = _ticket_key(response.json()["ticket"])
    client = redis.Redis.from_url(settings.REDIS_URL)
    assert client.get(key) == str(agent_007.pk).encode()
    assert 0 < client.ttl(key) <= 30


def test_a_ticket_needs_authentication(client):
    assert client.post("/api/v1/ws/ticket").status_code == 401


def test_hol_itself_posts_as_system(task_of_007):
    message = chat_message_post(actor=SYSTEM, task_id=task_of_007["id"], content="HOL started the run")
    assert (message.sender_type, message.sender) == ("system", None)


def test_waiting_for_an_answer_keeps_the_lease_of_the_askers_work_order(as_agent_007, task_of_007, settings):
    worker_id = as_agent_007.post("/api/v1/workers", {"name": "007-laptop"}, format="json").json()["id"]
    as_agent_007.post("/api/v1/queue/enqueue", {"task_id": task_of_007["id"]}, format="json")
    work_order_id = as_agent_007.post("/api/v1/queue/claim", {"worker_id": worker_id}, format="json").json()["id"]
    question = post(as_agent_007, task_of_007, message_type="request", content="Which database?").json()
    almost_lapsed = timezone.now() + timedelta(seconds=1)
    WorkOrder.objects.filter(pk=work_order_id).update(lease_expires_at=almost_lapsed)
    settings.HOL_LEASE_SECONDS = 60
    settings.HOL_APPROVAL_WAIT_HEARTBEAT_SECONDS = 0.5
    response = as_agent_007.get(f"/api/v1/chat/messages/{question['id']}/reply", {"wait": 1.5})
    assert response.json()["answered"] is False
    assert WorkOrder.objects.get(pk=work_order_id).lease_expires_at >= almost_lapsed + timedelta(seconds=59)
