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

from tests.live import another_daphne
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def second_url(live_env):
    with another_daphne(live_env) as url:
        yield url


@pytest.fixture
def url_without_redis(live_env):
    # Nothing listens on the discard port: this daphne's Redis is down for its whole life.
    with another_daphne({**live_env, "REDIS_URL": "redis://127.0.0.1:9/0"}) as url:
        yield url


def signed_in(base: str, username: str, passwords: dict[str, str]) -> httpx.Client:
    http = httpx.Client(base_url=base, timeout=10)
    token = http.post("/api/v1/auth/token", json={"username": username, "password": passwords[username]})
    assert token.status_code == 200, token.text
    http.headers["Authorization"] = f"Bearer {token.json()['access']}"
    return http


@pytest.fixture
def agent_task(daphne_url, demo_passwords, new_task):
    with closing(signed_in(daphne_url, "demo_agent", demo_passwords)) as agent:
        task = agent.post("/api/v1/tasks", json=new_task(assigned_to="demo_tech_lead"))
        assert task.status_code == 201, task.text
        yield agent, task.json()


def ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://") + path


def hold_the_work(agent: httpx.Client, task_id: str) -> str:
    """The agent's worker claims the task's work order; its id. An asker whose worker holds work
    is heartbeaten as soon as its wait for an answer begins: a test sees the wait by that."""
    worker_id = agent.post("/api/v1/workers", json={"name": "laptop"}).json()["id"]
    assert agent.post("/api/v1/queue/enqueue", json={"task_id": task_id}).status_code == 201
    claim = agent.post("/api/v1/queue/claim", json={"worker_id": worker_id})
    assert (claim.status_code, claim.json()["task"]["id"]) == (200, task_id), claim.text
    return worker_id


def last_heartbeat(agent: httpx.Client, worker_id: str) -> str:
    """Read on a connection of its own: the agent's client may be busy waiting."""
    with httpx.Client(base_url=agent.base_url, headers=agent.headers, timeout=10) as http:
        return http.get(f"/api/v1/workers/{worker_id}").json()["last_heartbeat_at"]


def test_a_message_posted_over_http_reaches_a_websocket_subscriber(daphne_url, agent_task):
    agent, task = agent_task
    token = agent.headers["Authorization"].removeprefix("Bearer ")
    with connect(ws_url(daphne_url, f"/ws/tasks/{task['id']}/"), subprotocols=["hol.v1", f"hol.jwt.{token}"]) as ws:
        assert ws.subprotocol == "hol.v1"
        posted = agent.post("/api/v1/chat/messages", json={"task_id": task["id"], "content": "editing models.py"})
        assert posted.status_code == 201, posted.text
        event = json.loads(ws.recv(timeout=10))
    assert event["type"] == "chat.message"
    assert (event["message"]["id"], event["message"]["content"]) == (posted.json()["id"], "editing models.py")


def test_a_person_with_a_ticket_receives_the_stream(daphne_url, agent_task, demo_passwords):
    agent, task = agent_task
    with closing(signed_in(daphne_url, "demo_tech_lead", demo_passwords)) as lead:
        ticket = lead.post("/api/v1/ws/ticket").json()["ticket"]
    with connect(ws_url(daphne_url, f"/ws/tasks/{task['id']}/?ticket={ticket}")) as ws:
        posted = agent.post("/api/v1/chat/messages", json={"task_id": task["id"], "content": "step 2"})
        event = json.loads(ws.recv(timeout=10))
    assert event["message"]["id"] == posted.json()["id"]


def test_a_waiting_agent_gets_the_answer_within_a_second(daphne_url, agent_task, demo_passwords):
    agent, task = agent_task
    worker_id = hold_the_work(agent, task["id"])
    question = agent.post(
        "/api/v1/chat/messages", json={"task_id": task["id"], "message_type": "request", "content": "Which DB?"}
    ).json()
    results: dict = {}

    def wait() -> None:
        response = agent.get(f"/api/v1/chat/messages/{question['id']}/reply", params={"wait": 30}, timeout=60)
        results.update(body=response.json(), returned=time.monotonic())

    heartbeat_before = last_heartbeat(agent, worker_id)
    waiter = threading.Thread(target=wait)
    waiter.start()
    eventually(lambda: last_heartbeat(agent, worker_id) != heartbeat_before, seconds=30, what="the agent to be waiting")
    assert not results
    with closing(signed_in(daphne_url, "demo_tech_lead", demo_passwords)) as lead:
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


def test_a_post_to_one_daphne_reaches_a_subscriber_of_another(daphne_url, second_url, agent_task):
    agent, task = agent_task
    token = agent.headers["Authorization"].removeprefix("Bearer ")
    with connect(ws_url(second_url, f"/ws/tasks/{task['id']}/"), subprotocols=["hol.v1", f"hol.jwt.{token}"]) as ws:
        posted = agent.post("/api/v1/chat/messages", json={"task_id": task["id"], "content": "from the first"})
        event = json.loads(ws.recv(timeout=10))
    assert posted.status_code == 201
    assert event["message"]["id"] == posted.json()["id"]


def test_with_redis_down_a_waiting_agent_gets_its_answer(daphne_url, url_without_redis, agent_task, demo_passwords):
    agent, task = agent_task
    worker_id = hold_the_work(agent, task["id"])
    question = agent.post(
        "/api/v1/chat/messages", json={"task_id": task["id"], "message_type": "request", "content": "Which DB?"}
    ).json()
    results: dict = {}

    def wait() -> None:
        response = httpx.get(
            f"{url_without_redis}/api/v1/chat/messages/{question['id']}/reply",
            params={"wait": 20}, headers={"Authorization": agent.headers["Authorization"]}, timeout=60,
        )  # fmt: skip
        results.update(status=response.status_code, body=response.json(), returned=time.monotonic())

    heartbeat_before = last_heartbeat(agent, worker_id)
    waiter = threading.Thread(target=wait)
    waiter.start()
    eventually(lambda: last_heartbeat(agent, worker_id) != heartbeat_before, seconds=30, what="the agent to be waiting")
    assert not results
    with closing(signed_in(daphne_url, "demo_tech_lead", demo_passwords)) as lead:
        lead.post(
            "/api/v1/chat/messages",
            json={"task_id": task["id"], "message_type": "response", "content": "PostgreSQL",
                  "parent_message_id": question["id"]},
        )  # fmt: skip
        answered = time.monotonic()
    waiter.join(30)
    assert results["status"] == 200
    assert results["body"]["reply"]["content"] == "PostgreSQL"
    assert results["returned"] - answered < 4.0
