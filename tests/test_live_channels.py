"""Chat and WebSockets through a real daphne (started as `./bin/hol run` starts it): a message an
agent posts over HTTP reaches WebSocket subscribers, and an agent long-polling its question gets
the human's answer within a second."""

from __future__ import annotations

import json
import threading
import time
from contextlib import closing

import httpx
import pytest
from websockets.sync.client import connect

from tests.test_live_server import AGENT_PASSWORD, base_url, demo_agent, live_env  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(120)


def signed_in(base: str, username: str) -> httpx.Client:
    http = httpx.Client(base_url=base, timeout=10)
    token = http.post("/api/v1/auth/token", json={"username": username, "password": AGENT_PASSWORD})
    assert token.status_code == 200, token.text
    http.headers["Authorization"] = f"Bearer {token.json()['access']}"
    return http


@pytest.fixture
def agent_task(base_url, demo_agent, new_task):  # noqa: F811 - fixtures imported above
    with closing(signed_in(base_url, demo_agent)) as agent:
        task = agent.post("/api/v1/tasks", json=new_task(assigned_to="demo_tech_lead"))
        assert task.status_code == 201, task.text
        yield agent, task.json()


def ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://") + path


def test_a_message_posted_over_http_reaches_a_websocket_subscriber(base_url, agent_task):  # noqa: F811
    agent, task = agent_task
    token = agent.headers["Authorization"].removeprefix("Bearer ")
    with connect(ws_url(base_url, f"/ws/tasks/{task['id']}/"), subprotocols=["hol.v1", f"hol.jwt.{token}"]) as ws:
        assert ws.subprotocol == "hol.v1"
        posted = agent.post("/api/v1/chat/messages", json={"task_id": task["id"], "content": "editing models.py"})
        assert posted.status_code == 201, posted.text
        event = json.loads(ws.recv(timeout=10))
    assert event["type"] == "chat.message"
    assert (event["message"]["id"], event["message"]["content"]) == (posted.json()["id"], "editing models.py")


def test_a_person_with_a_ticket_receives_the_stream(base_url, agent_task):  # noqa: F811
    agent, task = agent_task
    with closing(signed_in(base_url, "demo_tech_lead")) as lead:
        ticket = lead.post("/api/v1/ws/ticket").json()["ticket"]
    with connect(ws_url(base_url, f"/ws/tasks/{task['id']}/?ticket={ticket}")) as ws:
        posted = agent.post("/api/v1/chat/messages", json={"task_id": task["id"], "content": "step 2"})
        event = json.loads(ws.recv(timeout=10))
    assert event["message"]["id"] == posted.json()["id"]


def test_a_waiting_agent_gets_the_answer_within_a_second(base_url, agent_task):  # noqa: F811
    agent, task = agent_task
    question = agent.post(
        "/api/v1/chat/messages", json={"task_id": task["id"], "message_type": "request", "content": "Which DB?"}
    ).json()
    results: dict = {}

    def wait() -> None:
        response = agent.get(f"/api/v1/chat/messages/{question['id']}/reply", params={"wait": 30}, timeout=60)
        results.update(body=response.json(), returned=time.monotonic())

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(1.0)  # the agent is waiting
    assert not results
    with closing(signed_in(base_url, "demo_tech_lead")) as lead:
        answered = lead.post(
            "/api/v1/chat/messages",
            json={"task_id": task["id"], "message_type": "response", "content": "PostgreSQL",
                  "parent_message_id": question["id"]},
        )  # fmt: skip
        sent = time.monotonic()
    waiter.join(30)
    assert answered.status_code == 201, answered.text
    assert results["body"]["answered"] is True
    assert results["body"]["reply"]["content"] == "PostgreSQL"
    assert results["returned"] - sent < 1.0
