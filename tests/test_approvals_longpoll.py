"""GET /api/v1/approvals/{id}?wait=N: the async long-poll.

The first group runs in-process (Django's test client drives the async view). The second serves
the view from a real daphne process and decides from yet another process; it is marked postgres
because the subprocesses must share the test database, and pytest-django's SQLite test database
is in-memory, visible to this process only."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import closing, suppress
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone
from rest_framework_simplejwt.tokens import RefreshToken

from approvals.models import ApprovalRequest
from approvals.services import (
    approval_cancel,
    approval_decide,
    approval_request_create,
    channel_name,
    unsealed_body,
)
from approvals.services.notify import seal
from hol.launcher import listening_socket
from tasks.models import Worker, WorkOrder
from tests.factories import MEDIUM_ACTION
from tests.live import daphne_process
from tests.processes import database_url
from tests.waiting import eventually, wait_until_subscribed

ROOT = Path(__file__).resolve().parent.parent


# --- in-process -----------------------------------------------------------------------------------


def test_wait_on_a_decided_request_returns_at_once(as_agent_007, agent_007, bob_tech_lead):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    approval_decide(actor=bob_tech_lead, request_id=request.pk, decision="approve")
    started = time.monotonic()
    response = as_agent_007.get(f"/api/v1/approvals/{request.pk}", {"wait": 30})
    assert time.monotonic() - started < 1
    assert response.status_code == 200
    assert response.json()["status"] == "approved"


def test_wait_on_a_pending_request_returns_pending_after_n_seconds(as_agent_007, agent_007):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    started = time.monotonic()
    response = as_agent_007.get(f"/api/v1/approvals/{request.pk}", {"wait": 1})
    elapsed = time.monotonic() - started
    assert 0.95 <= elapsed < 2
    assert response.json()["status"] == "pending"


def test_wait_is_capped_by_the_setting(as_agent_007, agent_007, settings):
    settings.HOL_APPROVAL_WAIT_MAX_SECONDS = 1
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    started = time.monotonic()
    response = as_agent_007.get(f"/api/v1/approvals/{request.pk}", {"wait": 600})
    assert time.monotonic() - started < 2
    assert response.json()["status"] == "pending"


def test_a_request_reaching_its_deadline_during_the_wait_answers_expired(as_agent_007, agent_007):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    ApprovalRequest.objects.filter(pk=request.pk).update(expires_at=timezone.now() + timedelta(seconds=0.5))
    started = time.monotonic()
    response = as_agent_007.get(f"/api/v1/approvals/{request.pk}", {"wait": 10})
    assert time.monotonic() - started < 3
    assert response.json()["status"] == "expired"


def test_an_error_during_the_wait_answers_the_last_read_not_a_broken_200(as_agent_007, agent_007, monkeypatch, caplog):
    # Streamed, the answer is a 200 from the first read on: a database error in a later read
    # must still end it with a body (the last one read), and be logged.
    from django.db import OperationalError

    import approvals.wait_api

    def database_gone(actor, pk):
        raise OperationalError("the database restarted")

    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    ApprovalRequest.objects.filter(pk=request.pk).update(expires_at=timezone.now() + timedelta(seconds=0.3))
    monkeypatch.setattr(approvals.wait_api, "_read", database_gone)  # the re-read at the deadline fails
    response = as_agent_007.get(f"/api/v1/approvals/{request.pk}", {"wait": 10})
    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    assert "the wait ended on an error" in caplog.text


def test_read_without_wait_answers_the_request(as_agent_007, agent_007):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    response = as_agent_007.get(f"/api/v1/approvals/{request.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["status"], body["risk_level"]) == (str(request.pk), "pending", "medium")


@pytest.mark.parametrize("wait", ["soon", "-1", "nan"])
def test_a_wait_that_is_not_a_number_of_seconds_is_a_400(as_agent_007, agent_007, wait):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    response = as_agent_007.get(f"/api/v1/approvals/{request.pk}", {"wait": wait})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_reading_needs_authentication(agent_007, client):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    response = client.get(f"/api/v1/approvals/{request.pk}")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    bad = client.get(f"/api/v1/approvals/{request.pk}", HTTP_AUTHORIZATION="Bearer not-a-token")
    assert bad.status_code == 401
    assert bad.json()["code"] == "token_not_valid"


def test_an_agent_cannot_read_another_agents_request(as_agent_008, agent_007):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    assert as_agent_008.get(f"/api/v1/approvals/{request.pk}").status_code == 404


def test_a_signed_in_person_reads_with_the_session(agent_007, bob_tech_lead, client):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    client.force_login(bob_tech_lead)
    assert client.get(f"/api/v1/approvals/{request.pk}").json()["assigned_to"] == "bob_tech_lead"


def test_only_get_is_served_on_a_request(as_agent_007, agent_007):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    assert as_agent_007.delete(f"/api/v1/approvals/{request.pk}").status_code == 405


def test_waiting_keeps_the_lease_of_the_work_order_the_request_names(as_agent_007, agent_007, new_task, settings):
    task_id = as_agent_007.post("/api/v1/tasks", new_task(), format="json").json()["id"]
    worker_id = as_agent_007.post("/api/v1/workers", {"name": "007-laptop"}, format="json").json()["id"]
    as_agent_007.post("/api/v1/queue/enqueue", {"task_id": task_id}, format="json")
    work_order_id = as_agent_007.post("/api/v1/queue/claim", {"worker_id": worker_id}, format="json").json()["id"]
    request = approval_request_create(
        actor=agent_007, action=MEDIUM_ACTION, task_id=task_id, work_order_id=work_order_id
    )
    almost_lapsed = timezone.now() + timedelta(seconds=1)
    WorkOrder.objects.filter(pk=work_order_id).update(lease_expires_at=almost_lapsed)
    settings.HOL_LEASE_SECONDS = 60
    settings.HOL_APPROVAL_WAIT_HEARTBEAT_SECONDS = 0.5
    response = as_agent_007.get(f"/api/v1/approvals/{request.pk}", {"wait": 1.5})
    assert response.json()["status"] == "pending"
    lease = WorkOrder.objects.get(pk=work_order_id).lease_expires_at
    assert lease >= almost_lapsed + timedelta(seconds=59)


def publish_once_subscribed(channel: str, message: dict) -> threading.Thread:
    """Publish `message` on `channel` from a thread, once the waiter has subscribed."""

    def run() -> None:
        wait_until_subscribed(settings.REDIS_URL, [channel])
        with closing(redis.Redis.from_url(settings.REDIS_URL)) as publisher:
            publisher.publish(channel, json.dumps(message))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_sealed_decision_in_the_wake_up_message_is_the_answer(as_agent_007, agent_007):
    # The waiter answers with the body the message carries, so it reads no row: here the row
    # still says pending, and the answer is the message's.
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    body = json.dumps({"id": str(request.pk), "status": "approved", "from": "the message"})
    thread = publish_once_subscribed(
        channel_name(request.pk), {"status": "approved", "body": body, "seal": seal(request.pk, body)}
    )
    started = time.monotonic()
    response = as_agent_007.get(f"/api/v1/approvals/{request.pk}", {"wait": 10})
    thread.join(10)
    assert time.monotonic() - started < 5
    assert response.status_code == 200
    assert response.json() == json.loads(body)


@pytest.mark.parametrize(
    "forged",
    [
        pytest.param(lambda pk, body: "0" * 64, id="seal-of-nobody"),
        pytest.param(lambda pk, body: seal(uuid.uuid4(), body), id="seal-of-another-request"),
        pytest.param(lambda pk, body: None, id="no-seal"),
    ],
)
def test_a_decision_in_the_message_without_its_seal_is_ignored(as_agent_007, agent_007, forged):
    # Whoever can publish on HOL's Redis cannot approve: the waiter reads the row instead.
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    body = json.dumps({"id": str(request.pk), "status": "approved"})
    thread = publish_once_subscribed(
        channel_name(request.pk), {"status": "approved", "body": body, "seal": forged(request.pk, body)}
    )
    response = as_agent_007.get(f"/api/v1/approvals/{request.pk}", {"wait": 2})
    thread.join(10)
    assert response.json()["status"] == "pending"
    assert response.json()["id"] == str(request.pk)


@pytest.mark.django_db(transaction=True)
def test_the_deciders_answer_is_the_body_the_waiters_get(agent_007, as_agent_007, bob_tech_lead, client):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    channel = channel_name(request.pk)
    with closing(redis.Redis.from_url(settings.REDIS_URL)) as listener, closing(listener.pubsub()) as waiting:
        waiting.subscribe(channel)  # someone waits, so the decision is published with its body
        client.force_login(bob_tech_lead)
        decided = client.post(f"/api/v1/approvals/{request.pk}/approve", {"justification": "ok"}, "application/json")
        messages = [waiting.get_message(timeout=5) for _ in range(2)]
    published = json.loads(next(m for m in messages if m and m["type"] == "message")["data"])
    assert decided.status_code == 200
    assert decided.json()["status"] == "approved"
    assert decided.json() == json.loads(published["body"]) == as_agent_007.get(f"/api/v1/approvals/{request.pk}").json()
    assert unsealed_body(request.pk, json.dumps(published).encode()) == published["body"]


# --- a real daphne, a decision from another process ------------------------------------------------


@pytest.fixture(scope="module")
def hol_env(django_db_setup, django_db_blocker) -> dict[str, str]:
    """The environment that points a subprocess at this test run's database."""
    return {**os.environ, "DATABASE_URL": database_url(connection.settings_dict)}


@pytest.fixture(scope="module")
def daphne(hol_env):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL)")
    with daphne_process(hol_env) as served:
        yield served


@pytest.fixture(scope="module")
def daphne_url(daphne) -> str:
    return daphne[0]


def bearer(user) -> dict[str, str]:
    return {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"}


def wait_in_thread(url: str, headers: dict, results: dict) -> threading.Thread:
    def run() -> None:
        started = time.monotonic()
        response = httpx.get(url, headers=headers, timeout=60)
        results.update(status=response.status_code, body=response.json(), returned=time.monotonic(), started=started)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_waiting_agent_returns_within_a_second_of_a_decision_in_another_process(
    daphne_url, hol_env, agent_007, carol_devops
):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    results: dict = {}
    thread = wait_in_thread(f"{daphne_url}/api/v1/approvals/{request.pk}?wait=30", bearer(agent_007), results)
    wait_until_subscribed(settings.REDIS_URL, [channel_name(request.pk)])
    assert not results
    decider = subprocess.Popen(
        [sys.executable, "manage.py", "approvals", "approve", str(request.pk), "--as", "carol_devops"],
        cwd=ROOT,
        env=hol_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = decider.stdout.readline()
    decided = time.monotonic()
    decider.wait(30)
    thread.join(30)
    assert line.strip() == f"{request.pk}: approved (1/1)"
    assert results["status"] == 200
    assert results["body"]["status"] == "approved"
    assert results["returned"] - decided < 1.0
    assert results["returned"] - results["started"] < 25


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_waiting_agent_gets_pending_after_n_seconds_from_daphne(daphne_url, agent_007):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    started = time.monotonic()
    response = httpx.get(f"{daphne_url}/api/v1/approvals/{request.pk}?wait=2", headers=bearer(agent_007), timeout=30)
    elapsed = time.monotonic() - started
    assert response.json()["status"] == "pending"
    assert 1.9 <= elapsed < 4


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_waiting_agents_do_not_slow_other_api_calls(daphne_url, agent_007):
    requests = [approval_request_create(actor=agent_007, action=MEDIUM_ACTION) for _ in range(50)]
    headers = bearer(agent_007)
    channels = [channel_name(request.pk) for request in requests]

    async def other_call_times(client: httpx.AsyncClient) -> list[float]:
        times = []
        for _ in range(20):
            started = time.monotonic()
            response = await client.get("/api/v1/queue/status")
            assert response.status_code == 200
            times.append(time.monotonic() - started)
        return times

    def database_connections_of_others() -> int:
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                return cursor.fetchone()[0]
        finally:
            connection.close()  # this thread's own connection

    async def scenario() -> tuple[list[float], list[float], int, list[int]]:
        async with httpx.AsyncClient(base_url=daphne_url, headers=headers, timeout=60) as client:
            connections_before = await asyncio.to_thread(database_connections_of_others)
            waiters = [
                asyncio.create_task(client.get(f"/api/v1/approvals/{request.pk}", params={"wait": 6}))
                for request in requests
            ]
            await asyncio.to_thread(wait_until_subscribed, settings.REDIS_URL, channels)
            # Each waiter subscribes, then queues for one of the process's read slots, which are
            # handed out in turn: a read sent now is answered only once all 50 first reads began.
            assert (await client.get(f"/api/v1/approvals/{requests[0].pk}")).json()["status"] == "pending"
            # The last of them may still be finishing on a busy machine: give them a moment.
            settle_by = time.monotonic() + 2.5
            while True:
                connections_held = await asyncio.to_thread(database_connections_of_others) - connections_before
                if connections_held < 10 or time.monotonic() > settle_by:
                    break
                await asyncio.sleep(0.1)
            beside_waiters = await other_call_times(client)
            # Served while every agent still waits (their waits run 6 s): waiting blocks nobody.
            still_waiting = sum(not waiter.done() for waiter in waiters)
            answers = await asyncio.gather(*waiters)
            return beside_waiters, still_waiting, connections_held, [answer.status_code for answer in answers]

    beside_waiters, still_waiting, connections_held, statuses = asyncio.run(scenario())
    assert statuses == [200] * 50
    assert len(beside_waiters) == 20
    assert still_waiting == 50
    assert connections_held < 10  # waiting agents hold no database connection (a holding wait: +50)


# --- many waiters, one Redis subscription; no Redis, still answered --------------------------------


def redis_connections_of(pid: int, redis_url: str) -> int:
    """Connections Redis's CLIENT LIST shows from process `pid` (matched by the TCP ports the
    process holds, read from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    local_ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and fields[9] in inodes:  # 01: established
                local_ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    with closing(redis.Redis.from_url(redis_url)) as client:
        return sum(int(entry["addr"].rsplit(":", 1)[1]) in local_ports for entry in client.client_list())


def fewest_threads(pid: int, *, below: int, seconds: float) -> int:
    """The fewest threads process `pid` had, sampled until it has fewer than `below` or the time
    is up."""
    fewest, deadline = 10**6, time.monotonic() + seconds
    while fewest >= below and time.monotonic() < deadline:
        fewest = min(fewest, len(os.listdir(f"/proc/{pid}/task")))
        time.sleep(0.1)
    return fewest


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_hundred_waiters_share_a_few_redis_connections_and_hold_no_threads(daphne, agent_007):
    url, process = daphne
    if not settings.REDIS_URL.startswith("redis://"):
        pytest.skip("counts Redis connections over TCP (set REDIS_URL)")
    requests = [approval_request_create(actor=agent_007, action=MEDIUM_ACTION) for _ in range(200)]
    channels = [channel_name(request.pk) for request in requests]
    headers = bearer(agent_007)

    async def scenario() -> tuple[int, int, list[tuple[int, str]]]:
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as client:
            waiters = [
                asyncio.create_task(client.get(f"/api/v1/approvals/{request.pk}", params={"wait": 30}))
                for request in requests
            ]
            await asyncio.to_thread(wait_until_subscribed, settings.REDIS_URL, channels)
            held = await asyncio.to_thread(redis_connections_of, process.pid, settings.REDIS_URL)
            # Subscribed comes before each waiter's first read; once read, it waits with no thread.
            threads = await asyncio.to_thread(fewest_threads, process.pid, below=40, seconds=20)
            assert not any(waiter.done() for waiter in waiters)
            for request in requests:
                await asyncio.to_thread(approval_cancel, actor=agent_007, request_id=request.pk, reason="done")
            answers = await asyncio.gather(*waiters)
            return held, threads, [(answer.status_code, answer.json()["status"]) for answer in answers]

    held, threads, answers = asyncio.run(scenario())
    assert answers == [(200, "cancelled")] * 200
    assert held <= 4  # one connection per waiter would be 200
    assert threads < 40  # no idle thread per waiter (asgiref keeps one per request unless let go)
    # Woken, the waiters answered on the threads they share (no thread started per answer, none
    # left behind), and each let its channel go.
    assert len(list(Path(f"/proc/{process.pid}/task").iterdir())) < 40
    unsubscribed(channels)


def unsubscribed(channels: list[str]) -> None:
    with closing(redis.Redis.from_url(settings.REDIS_URL)) as watcher:
        eventually(
            lambda: not any(count for _, count in watcher.pubsub_numsub(*channels)),
            seconds=10,
            what="the waiters' channels to be unsubscribed",
        )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_waited_answer_passes_through_the_middleware_like_any_other(daphne_url, agent_007):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    answers: list[httpx.Response] = []
    url = f"{daphne_url}/api/v1/approvals/{request.pk}?wait=30"
    thread = threading.Thread(target=lambda: answers.append(httpx.get(url, headers=bearer(agent_007), timeout=30)))
    thread.start()
    wait_until_subscribed(settings.REDIS_URL, [channel_name(request.pk)])
    approval_cancel(actor=agent_007, request_id=request.pk, reason="done")
    thread.join(30)
    (answer,) = answers
    assert answer.status_code == 200
    assert answer.json()["status"] == "cancelled"
    assert answer.headers["content-type"] == "application/json"
    # The head went through the middleware when the wait began; the body came with the decision.
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_agent_that_leaves_during_its_wait_lets_its_channel_go(daphne_url, agent_007):
    request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
    channel = channel_name(request.pk)
    host, port = daphne_url.removeprefix("http://").rsplit(":", 1)
    token = bearer(agent_007)["Authorization"]
    with closing(socket.create_connection((host, int(port)), timeout=10)) as agent:
        agent.sendall(
            f"GET /api/v1/approvals/{request.pk}?wait=60 HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: {token}\r\n\r\n".encode()
        )
        wait_until_subscribed(settings.REDIS_URL, [channel])
    # The agent hung up 60 s early: its wait ends and nothing stays subscribed for it.
    unsubscribed([channel])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_with_redis_down_a_waiting_agent_gets_the_decision_within_seconds(hol_env, agent_007, carol_devops, claimed):
    # The request names the work order agent_007's worker holds: the wait heartbeats that worker
    # as soon as it has read the request, which is how the test sees the agent waiting.
    held = WorkOrder.objects.select_related("worker").get(pk=claimed)
    request = approval_request_create(
        actor=agent_007, action=MEDIUM_ACTION, task_id=held.task_id, work_order_id=held.pk
    )
    # Nothing listens on the discard port: this daphne's Redis is down for its whole life.
    with daphne_process({**hol_env, "REDIS_URL": "redis://127.0.0.1:9/0"}) as (url, _):
        results: dict = {}
        thread = wait_in_thread(f"{url}/api/v1/approvals/{request.pk}?wait=20", bearer(agent_007), results)
        eventually(
            lambda: Worker.objects.get(pk=held.worker_id).last_heartbeat_at > held.worker.last_heartbeat_at,
            seconds=30,
            what="the agent to be waiting",
        )
        assert not results
        approval_decide(actor=carol_devops, request_id=request.pk, decision="approve")
        decided = time.monotonic()
        thread.join(30)
    assert results["status"] == 200
    assert results["body"]["status"] == "approved"
    assert results["returned"] - decided < 4.0


@pytest.fixture
def own_redis(tmp_path):
    """A Redis server of this test's own, which the test may stop (SIGSTOP) to make it hang."""
    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with closing(redis.Redis.from_url(url)) as client:
                    client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield url, server
    finally:
        server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait(10)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_with_redis_hung_a_waiting_agent_gets_the_decision_within_seconds(hol_env, own_redis, agent_007, carol_devops):
    redis_url, redis_server = own_redis
    with daphne_process({**hol_env, "REDIS_URL": redis_url}) as (url, _):
        request = approval_request_create(actor=agent_007, action=MEDIUM_ACTION)
        results: dict = {}
        thread = wait_in_thread(f"{url}/api/v1/approvals/{request.pk}?wait=30", bearer(agent_007), results)
        wait_until_subscribed(redis_url, [channel_name(request.pk)])
        redis_server.send_signal(signal.SIGSTOP)  # connections stay open; nothing answers
        approval_decide(actor=carol_devops, request_id=request.pk, decision="approve")
        decided = time.monotonic()
        thread.join(40)
    assert results["status"] == 200
    assert results["body"]["status"] == "approved"
    assert results["returned"] - decided < 8.0
