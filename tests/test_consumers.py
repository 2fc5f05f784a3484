"""The WebSockets (/ws/tasks/{id}/, /ws/notifications/, /ws/dashboard/) through HOL's whole ASGI
stack (origin guard, session and agent auth) on the Redis channel layer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections
from django.test import Client
from rest_framework_simplejwt.tokens import RefreshToken

from chat.selectors import reply_to
from chat.services import chat_message_post
from hol.asgi import application
from notifications.services import notification_create
from tasks.services import task_create
from tests.factories import TASK

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://localhost")


@pytest.fixture(autouse=True)
def _fresh_channel_prefix(settings):
    """Each test on its own channel-layer prefix, so nothing of another run leaks in."""
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {
        "default": {**settings.CHANNEL_LAYERS["default"], "CONFIG": {
            **settings.CHANNEL_LAYERS["default"]["CONFIG"], "prefix": f"h5test{id(object())}"}}
    }  # fmt: skip
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def jwt(user) -> str:
    return str(RefreshToken.for_user(user).access_token)


def session_headers(user) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    return [ORIGIN, (b"cookie", cookie.encode())]


def communicator(path: str, *, headers=None, subprotocols=None) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, path, headers=headers or [], subprotocols=subprotocols)


async def off_loop(work) -> Any:
    """Run database work in a thread, as another process would, and close that thread's
    connection after (a leftover would keep the test database from being dropped)."""

    def work_then_close() -> Any:
        try:
            return work()
        finally:
            connections.close_all()

    return await asyncio.get_running_loop().run_in_executor(None, work_then_close)


def run(scenario, *args: Any) -> Any:
    return async_to_sync(scenario)(*args)


async def receive_all(comm: WebsocketCommunicator, n: int, timeout: float = 5) -> list[dict]:
    return [await comm.receive_json_from(timeout=timeout) for _ in range(n)]


async def closed_with(comm: WebsocketCommunicator) -> int:
    connected, _ = await comm.connect()
    assert connected
    output = await comm.receive_output(timeout=5)
    assert output["type"] == "websocket.close"
    return output["code"]


@pytest.fixture
def task(agent_007, bob_tech_lead):
    created, _ = task_create(actor=agent_007, payload={**TASK, "assigned_to": bob_tech_lead.username})
    return created


def test_an_unauthenticated_socket_is_closed_4401(task):
    assert run(closed_with, communicator(f"/ws/tasks/{task.pk}/", headers=[ORIGIN])) == 4401


def test_a_bad_jwt_is_closed_4401(task):
    comm = communicator(f"/ws/tasks/{task.pk}/", subprotocols=["hol.v1", "hol.jwt.not-a-token"])
    assert run(closed_with, comm) == 4401


def test_an_agent_without_access_to_the_task_is_closed_4403(task, agent_008):
    comm = communicator(f"/ws/tasks/{task.pk}/", subprotocols=["hol.v1", f"hol.jwt.{jwt(agent_008)}"])
    assert run(closed_with, comm) == 4403


def test_a_foreign_origin_is_refused_even_with_a_session(task, bob_tech_lead):
    headers = [(b"origin", b"http://evil.example"), *session_headers(bob_tech_lead)[1:]]

    async def scenario():
        connected, _ = await communicator(f"/ws/tasks/{task.pk}/", headers=headers).connect()
        return connected

    assert run(scenario) is False


def test_an_agent_connects_with_the_jwt_subprotocol_and_gets_hol_v1(task, agent_007):
    token = jwt(agent_007)

    async def scenario():
        comm = communicator(f"/ws/tasks/{task.pk}/", subprotocols=["hol.v1", f"hol.jwt.{token}"])
        connected, subprotocol = await comm.connect()
        await comm.disconnect()
        return connected, subprotocol

    assert run(scenario) == (True, "hol.v1")


def test_a_person_receives_a_message_posted_after_connecting(task, agent_007, bob_tech_lead):
    headers = session_headers(bob_tech_lead)

    async def scenario():
        # No `after`: what is stored between the accept and joining the group still arrives.
        comm = communicator(f"/ws/tasks/{task.pk}/", headers=headers)
        assert (await comm.connect())[0]
        await off_loop(
            lambda: chat_message_post(actor=agent_007, task_id=task.pk, content="<b>tests pass</b>", event_type="log")
        )
        event = await comm.receive_json_from(timeout=5)
        await comm.disconnect()
        return event

    event = run(scenario)
    assert event["type"] == "chat.message"
    assert (event["message"]["content"], event["message"]["sender"]) == ("<b>tests pass</b>", "agent_007")


def test_reconnecting_with_after_replays_only_what_was_missed_each_once(task, agent_007, bob_tech_lead):
    ids = [chat_message_post(actor=agent_007, task_id=task.pk, content=f"line {n}").pk for n in range(5)]

    headers = session_headers(bob_tech_lead)

    async def scenario():
        comm = communicator(f"/ws/tasks/{task.pk}/?after={ids[1]}", headers=headers)
        assert (await comm.connect())[0]
        events = await receive_all(comm, 3)
        assert await comm.receive_nothing(timeout=0.3)
        await comm.disconnect()
        return [event["message"]["id"] for event in events]

    assert run(scenario) == ids[2:]


def test_connecting_without_after_replays_nothing(task, agent_007, bob_tech_lead):
    chat_message_post(actor=agent_007, task_id=task.pk, content="old news")
    headers = session_headers(bob_tech_lead)

    async def scenario():
        comm = communicator(f"/ws/tasks/{task.pk}/", headers=headers)
        assert (await comm.connect())[0]
        quiet = await comm.receive_nothing(timeout=0.3)
        await comm.disconnect()
        return quiet

    assert run(scenario) is True


def test_a_ticket_opens_one_socket_once(task, agent_007):
    from hol.ws_auth import ticket_issue

    ticket = ticket_issue(user=agent_007)

    async def scenario():
        first = communicator(f"/ws/tasks/{task.pk}/?ticket={ticket}")
        connected, _ = await first.connect()
        assert connected
        assert await first.receive_nothing(timeout=0.3)
        await first.disconnect()
        return await closed_with(communicator(f"/ws/tasks/{task.pk}/?ticket={ticket}"))

    assert run(scenario) == 4401


def test_an_agent_without_origin_cannot_use_a_session_cookie(task, bob_tech_lead):
    headers = session_headers(bob_tech_lead)[1:]  # the cookie, no Origin: not a browser
    assert run(closed_with, communicator(f"/ws/tasks/{task.pk}/", headers=headers)) == 4401


def test_a_human_response_over_the_socket_answers_the_question(task, agent_007, bob_tech_lead):
    question = chat_message_post(actor=agent_007, task_id=task.pk, content="Which DB?", message_type="request")

    headers = session_headers(bob_tech_lead)

    async def scenario():
        comm = communicator(f"/ws/tasks/{task.pk}/?after={question.pk}", headers=headers)
        assert (await comm.connect())[0]
        await comm.send_json_to({"type": "human_response", "parent_id": question.pk, "message": "PostgreSQL"})
        event = await comm.receive_json_from(timeout=5)
        await comm.disconnect()
        return event["message"]

    message = run(scenario)
    assert (message["message_type"], message["parent_message_id"], message["content"], message["sender"]) == (
        "response",
        question.pk,
        "PostgreSQL",
        "bob_tech_lead",
    )


def test_an_agent_sending_a_human_response_gets_an_error_event(task, agent_007):
    question = chat_message_post(actor=agent_007, task_id=task.pk, content="Deploy?", message_type="request")
    token = jwt(agent_007)

    async def scenario():
        path = f"/ws/tasks/{task.pk}/?after={question.pk}"
        comm = communicator(path, subprotocols=["hol.v1", f"hol.jwt.{token}"])
        assert (await comm.connect())[0]
        await comm.send_json_to({"type": "human_response", "parent_id": question.pk, "message": "yes"})
        event = await comm.receive_json_from(timeout=5)
        await comm.disconnect()
        return event

    event = run(scenario)
    assert (event["type"], event["code"]) == ("error", "answers_are_human")
    assert reply_to(question_id=question.pk) is None


def test_answering_something_that_is_not_a_question_gets_an_error_event(task, agent_007, bob_tech_lead):
    log_line = chat_message_post(actor=agent_007, task_id=task.pk, content="a log line")

    headers = session_headers(bob_tech_lead)

    async def scenario():
        comm = communicator(f"/ws/tasks/{task.pk}/?after={log_line.pk}", headers=headers)
        assert (await comm.connect())[0]
        await comm.send_json_to({"type": "human_response", "parent_id": log_line.pk, "message": "?"})
        event = await comm.receive_json_from(timeout=5)
        await comm.disconnect()
        return event

    assert run(scenario) == {"type": "error", "code": "not_a_question", "message": "only a question can be answered"}


def test_the_notification_socket_pushes_the_unread_count(bob_tech_lead):
    headers = session_headers(bob_tech_lead)

    async def scenario():
        comm = communicator("/ws/notifications/", headers=headers)
        assert (await comm.connect())[0]
        first = await comm.receive_json_from(timeout=5)
        await off_loop(lambda: notification_create(user=bob_tech_lead, kind="question", message="Which DB?"))
        pushed = await comm.receive_json_from(timeout=5)
        await comm.disconnect()
        return first, pushed

    first, pushed = run(scenario)
    assert first == {"type": "notification", "unread": 0}
    assert pushed["unread"] == 1
    assert pushed["notification"]["message"] == "Which DB?"


def test_the_dashboard_refuses_agents(agent_007):
    comm = communicator("/ws/dashboard/", subprotocols=["hol.v1", f"hol.jwt.{jwt(agent_007)}"])
    assert run(closed_with, comm) == 4403


def test_the_dashboard_refuses_a_person_without_a_role(task):
    from django.contrib.auth import get_user_model

    nobody = get_user_model().objects.create_user(username="nina_no_role", password="pw-nina")
    headers = session_headers(nobody)
    assert run(closed_with, communicator("/ws/dashboard/", headers=headers)) == 4403


def test_the_dashboard_sends_a_snapshot_then_activity(task, agent_007, bob_tech_lead):
    headers = session_headers(bob_tech_lead)

    async def scenario():
        comm = communicator("/ws/dashboard/", headers=headers)
        assert (await comm.connect())[0]
        snapshot = await comm.receive_json_from(timeout=5)
        await off_loop(
            lambda: chat_message_post(actor=agent_007, task_id=task.pk, content="Which DB?", message_type="request")
        )
        # Fresh snapshots may come in between: every commit also tells the dashboards to re-read.
        event = await comm.receive_json_from(timeout=5)
        while event["type"] == "dashboard.snapshot":
            event = await comm.receive_json_from(timeout=5)
        await comm.disconnect()
        return snapshot, event

    snapshot, activity = run(scenario)
    assert snapshot["type"] == "dashboard.snapshot"
    assert set(snapshot["snapshot"]["workers"]) == {"idle", "busy", "waiting", "error", "offline"}
    assert activity["type"] == "dashboard.activity"
    assert activity["activity"]["task_title"] == task.title


def test_the_dashboard_shows_a_change_pushed_by_a_service_long_before_its_slow_re_read(task, agent_007, bob_tech_lead):
    from notifications.consumers import DASHBOARD_REFRESH_SECONDS
    from tasks.services import worker_register

    headers = session_headers(bob_tech_lead)

    async def scenario():
        comm = communicator("/ws/dashboard/", headers=headers)
        assert (await comm.connect())[0]
        before = (await comm.receive_json_from(timeout=5))["snapshot"]["workers"]["idle"]
        started = asyncio.get_running_loop().time()
        await off_loop(lambda: worker_register(actor=agent_007, name="laptop"))
        while True:
            event = await comm.receive_json_from(timeout=3)
            if event["type"] == "dashboard.snapshot":
                break
        waited = asyncio.get_running_loop().time() - started
        await comm.disconnect()
        return before, event["snapshot"]["workers"]["idle"], waited

    before, after, waited = run(scenario)
    assert after == before + 1
    assert waited < DASHBOARD_REFRESH_SECONDS / 3


@pytest.mark.slow
def test_a_burst_past_the_channel_capacity_reaches_every_subscriber_whole(task, agent_007, bob_tech_lead, settings):
    """channels-redis drops silently past a channel's capacity; 300 events to 20 subscribers
    whose channels hold 50 and that read only after the burst must still all arrive, in order."""
    from channels.layers import channel_layers

    layer = settings.CHANNEL_LAYERS["default"]
    settings.CHANNEL_LAYERS = {"default": {**layer, "CONFIG": {**layer["CONFIG"], "capacity": 50}}}
    channel_layers.backends.clear()
    headers = session_headers(bob_tech_lead)
    count = 300

    async def scenario():
        comms = [communicator(f"/ws/tasks/{task.pk}/?after=0", headers=headers) for _ in range(20)]
        for comm in comms:
            assert (await comm.connect())[0]

        def burst():
            for n in range(count):
                chat_message_post(actor=agent_007, task_id=task.pk, content=f"line {n}")

        await off_loop(burst)
        received = []
        for comm in comms:
            events = await receive_all(comm, count, timeout=20)
            received.append([event["message"]["content"] for event in events])
            await comm.disconnect()
        return received

    expected = [f"line {n}" for n in range(count)]
    assert all(contents == expected for contents in run(scenario))
