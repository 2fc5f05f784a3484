"""A run's token (what a Celery worker gives the agent it starts) reaches its own task and work
order only, though the service account behind it holds another run's work too."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from approvals.models import ApprovalRequest
from chat.models import ChatMessage
from chat.services import chat_message_post
from hol.asgi import application
from hol.errors import PermissionDenied
from hol.run_scope import RunScope
from hol.ws_auth import JWT_PREFIX, SUBPROTOCOL
from tasks import services as task_services
from tasks.runner import agent_token
from tasks.services.runs import celery_account_ensure, celery_worker_ensure
from tests.factories import MEDIUM_ACTION, TASK

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def runs(agent_007):
    """Two work orders held by two Celery processes of one host (one service account)."""
    account = celery_account_ensure(hostname="scope-host")
    workers = [celery_worker_ensure(account=account, name=f"celery scope-host pid {n}") for n in (1, 2)]
    orders = []
    for worker, title in zip(workers, ("mine", "theirs"), strict=True):
        task, _ = task_services.task_create(actor=agent_007, payload={**TASK, "title": title})
        task_services.work_order_enqueue(actor=agent_007, task_id=task.pk)
        orders.append(task_services.work_order_claim(actor=account, worker_id=worker.pk))
    mine, theirs = orders
    assert {mine.task.title, theirs.task.title} == {"mine", "theirs"}
    return account, workers, mine, theirs


def run_client(account, work_order) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_token(account, work_order=work_order, lifetime_seconds=60)}")
    return client


def test_a_run_token_reads_its_own_task_only(runs):
    account, _, mine, theirs = runs
    client = run_client(account, mine)
    assert client.get(f"/api/v1/tasks/{mine.task_id}").status_code == 200
    assert client.get(f"/api/v1/tasks/{theirs.task_id}").status_code == 404
    assert [task["id"] for task in client.get("/api/v1/tasks").json()["results"]] == [str(mine.task_id)]


def test_a_run_token_posts_and_reads_only_its_own_tasks_stream(runs):
    account, _, mine, theirs = runs
    client = run_client(account, mine)
    posted = client.post("/api/v1/chat/messages", {"task_id": str(mine.task_id), "content": "hi"}, format="json")
    assert posted.status_code == 201
    refused = client.post("/api/v1/chat/messages", {"task_id": str(theirs.task_id), "content": "x"}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (403, "outside_run_scope")
    assert client.get(f"/api/v1/chat/messages?task={theirs.task_id}").status_code == 403
    assert not ChatMessage.objects.filter(task_id=theirs.task_id, content="x").exists()


def test_a_run_token_cannot_finish_another_runs_work_order(runs):
    account, _, mine, theirs = runs
    client = run_client(account, mine)
    for path, body in (
        ("/api/v1/queue/complete", {"work_order_id": str(theirs.pk), "output": "done"}),
        ("/api/v1/queue/fail", {"work_order_id": str(theirs.pk), "error": "sabotage"}),
    ):
        answer = client.post(path, body, format="json")
        assert (answer.status_code, answer.json()["code"]) == (403, "outside_run_scope"), path
    theirs.refresh_from_db()
    assert theirs.status == "claimed"
    done = client.post("/api/v1/queue/complete", {"work_order_id": str(mine.pk), "output": "ok"}, format="json")
    assert done.status_code == 200


def test_a_run_token_heartbeats_only_the_worker_running_it(runs):
    account, (own_worker, other_worker), mine, _ = runs
    client = run_client(account, mine)
    assert client.post(f"/api/v1/workers/{own_worker.pk}/heartbeat", {}, format="json").status_code == 200
    refused = client.post(f"/api/v1/workers/{other_worker.pk}/heartbeat", {}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (403, "outside_run_scope")


def test_a_run_tokens_approval_request_belongs_to_its_work_order(runs):
    account, _, mine, theirs = runs
    client = run_client(account, mine)
    asked = client.post("/api/v1/approvals", MEDIUM_ACTION, format="json")
    assert asked.status_code == 201
    assert asked.json()["work_order"] == str(mine.pk)
    linked = client.post("/api/v1/approvals", {**MEDIUM_ACTION, "work_order_id": str(theirs.pk)}, format="json")
    assert (linked.status_code, linked.json()["code"]) == (403, "outside_run_scope")
    # A request of the other run, by the same account, stays out of sight.
    other = run_client(account, theirs).post("/api/v1/approvals", MEDIUM_ACTION, format="json").json()
    assert client.get(f"/api/v1/approvals/{other['id']}").status_code == 404
    assert {row["id"] for row in client.get("/api/v1/approvals").json()["results"]} == {asked.json()["id"]}
    assert ApprovalRequest.objects.count() == 2


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/tasks"),
        ("post", "/api/v1/queue/claim"),
        ("post", "/api/v1/queue/enqueue"),
        ("get", "/api/v1/queue/status"),
        ("post", "/api/v1/workers"),
        ("get", "/api/v1/workers"),
        ("get", "/api/v1/notifications"),
        ("get", "/api/v1/audit"),
    ],
)
def test_a_run_token_may_not_call_what_a_run_does_not_need(runs, method, path):
    account, _, mine, _ = runs
    answer = getattr(run_client(account, mine), method)(path, {}, format="json")
    assert (answer.status_code, answer.json()["code"]) == (403, "outside_run_scope")


def test_the_accounts_own_token_is_not_limited(runs):
    """The limit comes from the claim, not the account: a plain token of the account (which HOL
    never hands out: the account has no password) reaches both runs."""
    account, _, _, theirs = runs
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(account)}")
    assert client.get(f"/api/v1/tasks/{theirs.task_id}").status_code == 200


def test_a_malformed_run_claim_is_refused(runs):
    account, _, mine, _ = runs
    token = AccessToken.for_user(account)
    token["hol_run"] = {"task": "not-a-uuid"}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get(f"/api/v1/tasks/{mine.task_id}").status_code == 401


def _socket_close(path: str, subprotocols: list[str]) -> int | None:
    async def scenario():
        comm = WebsocketCommunicator(application, path, subprotocols=subprotocols)
        connected, _ = await comm.connect()
        assert connected
        output = await comm.receive_output(timeout=5)
        await comm.disconnect()
        return output.get("code") if output["type"] == "websocket.close" else None

    return async_to_sync(scenario)()


def test_a_run_tokens_socket_reaches_its_own_task_only(runs):
    account, _, mine, theirs = runs
    token = agent_token(account, work_order=mine, lifetime_seconds=60)
    protocols = [SUBPROTOCOL, JWT_PREFIX + token]
    assert _socket_close(f"/ws/tasks/{theirs.task_id}/", protocols) == 4403
    assert _socket_close("/ws/notifications/", protocols) == 4403
    # Its own task's stream accepts it: the first frame is the replay of what is stored.
    chat_message_post(actor=account, task_id=mine.task_id, content="stored before")
    assert _socket_close(f"/ws/tasks/{mine.task_id}/?after=0", protocols) is None


def test_a_ticket_from_a_run_token_keeps_the_runs_limit(runs):
    account, _, mine, theirs = runs
    client = run_client(account, mine)
    ticket = client.post("/api/v1/ws/ticket", {}, format="json").json()["ticket"]
    assert _socket_close(f"/ws/tasks/{theirs.task_id}/?ticket={ticket}", [SUBPROTOCOL]) == 4403


def test_a_run_token_reports_what_ran_for_its_own_work_order_only(runs):
    account, _, mine, theirs = runs
    client = run_client(account, mine)
    report = {**MEDIUM_ACTION, "tool_use_id": "toolu_1", "tool_name": "Bash", "outcome": "succeeded"}
    assert client.post("/api/v1/approvals/executed", report, format="json").status_code in (200, 201)
    foreign = {**report, "tool_use_id": "toolu_2", "work_order_id": str(theirs.pk)}
    refused = client.post("/api/v1/approvals/executed", foreign, format="json")
    assert (refused.status_code, refused.json()["code"]) == (403, "outside_run_scope")


def test_a_run_token_neither_sees_nor_ends_another_runs_session(runs):
    account, workers, mine, theirs = runs
    own = task_services.session_create(
        actor=account, session_id="run-mine", worker_id=workers[0].pk, task_id=mine.task_id
    )
    other = task_services.session_create(
        actor=account, session_id="run-theirs", worker_id=workers[1].pk, task_id=theirs.task_id
    )
    client = run_client(account, mine)
    assert [s["session_id"] for s in client.get("/api/v1/sessions").json()["results"]] == [own.session_id]
    assert client.delete(f"/api/v1/sessions/{other.session_id}", {"reason": "x"}, format="json").status_code == 404
    other.refresh_from_db()
    assert other.status == "active"
    with pytest.raises(PermissionDenied):
        task_services.session_terminate(actor=scoped(account, mine), agent_session_pk=other.pk, reason="phishing text")


def test_a_run_token_cannot_cancel_or_consume_another_runs_request(runs):
    account, _, mine, theirs = runs
    other = run_client(account, theirs).post("/api/v1/approvals", MEDIUM_ACTION, format="json").json()
    client = run_client(account, mine)
    refused = client.post(f"/api/v1/approvals/{other['id']}/cancel", {"reason": "x"}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (403, "outside_run_scope")
    refused = client.post(f"/api/v1/approvals/{other['id']}/consume", MEDIUM_ACTION, format="json")
    assert (refused.status_code, refused.json()["code"]) == (403, "outside_run_scope")
    assert ApprovalRequest.objects.get(pk=other["id"]).status == "pending"


def scoped(account, work_order):
    """The account as a run's token presents it to the services."""
    account.hol_run_scope = RunScope(task_id=work_order.task_id, work_order_id=work_order.pk)
    return account
