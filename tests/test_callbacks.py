"""Task callbacks: a final task's outcome POSTed, signed, to its callback_url by Celery after the
commit. A real HTTP server in a thread receives them (its host allowlisted, as plain http on
127.0.0.1 needs); Celery runs eagerly here, and once with a real worker process."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from audit.models import AuditEntry
from tasks import callbacks
from tasks.models import Task
from tests.factories import client_for, task_payload
from tests.waiting import eventually, wait_for_status


class Receiver(BaseHTTPRequestHandler):
    """Answers each POST with the next scripted (status, headers) and records what came."""

    script: list[tuple[int, dict[str, str]]] = []
    received: list[dict] = []
    connections: list[str] = []

    def setup(self):
        Receiver.connections.append(self.client_address[0])
        super().setup()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status, headers = Receiver.script.pop(0) if Receiver.script else (200, {})
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(b"x" * 10_000)  # more than HOL reads

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver(settings):
    Receiver.script, Receiver.received, Receiver.connections = [], [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.HOL_CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.HOL_CALLBACK_BACKOFF_SECONDS = 0
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def create(client, callback_url: str, **changes) -> dict:
    response = client.post("/api/v1/tasks", task_payload(callback_url=callback_url, **changes), format="json")
    assert response.status_code == 201, response.content
    return response.json()


def cancel_and_send(client, task_id: str, capture) -> None:
    """Cancel the task (a final state) and run what its commit dispatches."""
    with capture(execute=True):
        response = client.patch(f"/api/v1/tasks/{task_id}", {"status": "cancelled"}, format="json")
        assert response.status_code == 200, response.content


def callback_audit(task_id: str) -> list[tuple[str, dict]]:
    entries = AuditEntry.objects.filter(task_id=task_id, action__startswith="task.callback").order_by("id")
    return [(entry.action, entry.details) for entry in entries]


# --- delivery -------------------------------------------------------------------------------------


def test_completed_task_posts_its_signed_outcome_after_commit(
    receiver, celery_eager, settings, as_agent_007, worker_007, django_capture_on_commit_callbacks
):
    task = create(as_agent_007, f"{receiver}/hook?team=core")
    as_agent_007.post("/api/v1/queue/enqueue", {"task_id": task["id"]}, format="json")
    claimed = as_agent_007.post("/api/v1/queue/claim", {"worker_id": worker_007}, format="json").json()
    with django_capture_on_commit_callbacks(execute=True):
        done = as_agent_007.post(
            "/api/v1/queue/complete", {"work_order_id": claimed["id"], "output": "all green"}, format="json"
        )
        assert done.status_code == 200
        assert Receiver.received == []  # nothing leaves before the commit
    [delivery] = Receiver.received
    assert delivery["path"] == "/hook?team=core"
    signature = delivery["headers"]["X-HOL-Signature"]
    assert callbacks.verify(settings.HOL_CALLBACK_SECRET, delivery["body"], signature)
    assert not callbacks.verify("another secret", delivery["body"], signature)
    body = json.loads(delivery["body"])
    assert (body["task_id"], body["status"], body["output"]) == (task["id"], "completed", "all green")
    assert body["finished_at"] == Task.objects.get(pk=task["id"]).completed_at.isoformat()
    assert delivery["headers"]["X-HOL-Timestamp"] == body["sent_at"]
    assert callback_audit(task["id"]) == [
        ("task.callback_sent", {"status": "completed", "attempt": 1, "http_status": 200})
    ]


def test_a_task_without_callback_url_sends_nothing(
    receiver, celery_eager, as_agent_007, django_capture_on_commit_callbacks
):
    task = as_agent_007.post("/api/v1/tasks", task_payload(), format="json").json()
    cancel_and_send(as_agent_007, task["id"], django_capture_on_commit_callbacks)
    assert Receiver.connections == []


def test_callback_is_retried_after_a_500(receiver, celery_eager, as_agent_007, django_capture_on_commit_callbacks):
    Receiver.script = [(500, {}), (200, {})]
    task = create(as_agent_007, f"{receiver}/hook")
    cancel_and_send(as_agent_007, task["id"], django_capture_on_commit_callbacks)
    assert len(Receiver.received) == 2
    first, second = (json.loads(delivery["body"]) for delivery in Receiver.received)
    # The retry is the same delivery: a receiver that already has it can tell.
    assert first["delivery_id"] == second["delivery_id"]
    assert callback_audit(task["id"]) == [
        ("task.callback_sent", {"status": "cancelled", "attempt": 2, "http_status": 200})
    ]


def test_callback_gives_up_after_its_attempts_audited(
    receiver, celery_eager, settings, as_agent_007, django_capture_on_commit_callbacks
):
    settings.HOL_CALLBACK_MAX_ATTEMPTS = 3
    Receiver.script = [(503, {})] * 5
    task = create(as_agent_007, f"{receiver}/hook")
    cancel_and_send(as_agent_007, task["id"], django_capture_on_commit_callbacks)
    assert len(Receiver.received) == 3
    assert callback_audit(task["id"]) == [
        ("task.callback_failed", {"status": "cancelled", "attempt": 3, "http_status": 503, "error": "answered 503"})
    ]


def test_a_4xx_is_not_retried(receiver, celery_eager, as_agent_007, django_capture_on_commit_callbacks):
    Receiver.script = [(404, {})]
    task = create(as_agent_007, f"{receiver}/hook")
    cancel_and_send(as_agent_007, task["id"], django_capture_on_commit_callbacks)
    assert len(Receiver.received) == 1
    assert callback_audit(task["id"])[0][0] == "task.callback_failed"


def test_a_redirect_is_not_followed(receiver, celery_eager, as_agent_007, django_capture_on_commit_callbacks):
    Receiver.script = [(302, {"Location": f"{receiver}/elsewhere"}), (200, {})]
    task = create(as_agent_007, f"{receiver}/hook")
    cancel_and_send(as_agent_007, task["id"], django_capture_on_commit_callbacks)
    assert [delivery["path"] for delivery in Receiver.received] == ["/hook"]
    [(action, details)] = callback_audit(task["id"])
    assert (action, details["http_status"], details["error"]) == (
        "task.callback_failed",
        302,
        "answered 302: redirects are not followed",
    )


def test_an_unreachable_receiver_is_retried_then_failed(
    celery_eager, settings, as_agent_007, django_capture_on_commit_callbacks
):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.HOL_CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.HOL_CALLBACK_BACKOFF_SECONDS = 0
    settings.HOL_CALLBACK_MAX_ATTEMPTS = 2
    task = create(as_agent_007, f"http://127.0.0.1:{port}/hook")
    cancel_and_send(as_agent_007, task["id"], django_capture_on_commit_callbacks)
    [(action, details)] = callback_audit(task["id"])
    assert (action, details["attempt"], details["error"]) == (
        "task.callback_failed",
        2,
        "no answer: ConnectionRefusedError",
    )


# --- what URLs are allowed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://127.0.0.1/hook", "private, loopback or link-local"),
        ("https://[::1]/hook", "private, loopback or link-local"),
        ("https://[::ffff:10.0.0.1]/hook", "private, loopback or link-local"),
        ("https://169.254.169.254/latest/meta-data", "private, loopback or link-local"),
        ("https://10.1.2.3/hook", "private, loopback or link-local"),
        ("https://0.0.0.0/hook", "private, loopback or link-local"),
        ("https://[64:ff9b::a00:5]:8443/x", "private, loopback or link-local"),
        ("https://[2002:a9fe:a9fe::1]/x", "private, loopback or link-local"),
        ("https://[::a9fe:a9fe]/x", "private, loopback or link-local"),
        ("https://[fec0::1]/x", "private, loopback or link-local"),
        ("https://hooks.example.com/é", "ASCII"),
        ("https://localhost/hook", "this machine"),
        ("https://api.localhost/hook", "this machine"),
        ("http://hooks.example.com/hook", "must be https"),
        ("ftp://hooks.example.com/hook", "must be https"),
        ("https://user:secret@hooks.example.com/hook", "credentials"),
        ("https:///hook", "no host"),
        ("https://hooks.example.com/a b", "spaces or control characters"),
        ("https://hooks.example.com:99999/", "not a valid URL"),
        ("https://hooks.example.com/" + "a" * 2048, "no more than 2048"),
    ],
)
def test_intake_refuses_callback_urls_into_the_network_or_with_credentials(as_agent_007, url, why):
    response = as_agent_007.post("/api/v1/tasks", task_payload(callback_url=url), format="json")
    assert response.status_code == 400, response.content
    assert why in response.json()["message"]
    assert not Task.objects.exists()


def test_intake_accepts_https_and_an_allowlisted_plain_http_host(as_agent_007, settings):
    settings.HOL_CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]
    assert create(as_agent_007, "https://hooks.example.com/hol")["callback_url"] == "https://hooks.example.com/hol"
    assert create(as_agent_007, "http://127.0.0.1:8080/hol")["callback_url"] == "http://127.0.0.1:8080/hol"


def test_a_name_resolving_to_loopback_is_refused_at_send_time(
    receiver, celery_eager, settings, monkeypatch, as_agent_007, django_capture_on_commit_callbacks
):
    """A public-looking name whose DNS answer is this machine: intake cannot tell, sending must.
    DNS is the one part faked (no resolver answers for example.com here); the connection that
    would follow is real and must never happen."""
    settings.HOL_CALLBACK_ALLOWED_HOSTS = []
    port = int(receiver.rsplit(":", 1)[1])
    task = create(as_agent_007, f"https://hooks.example.com:{port}/hook")
    real_getaddrinfo = socket.getaddrinfo

    def rebinding_dns(host, *args, **kwargs):
        if host == "hooks.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    cancel_and_send(as_agent_007, task["id"], django_capture_on_commit_callbacks)
    assert Receiver.connections == []
    [(action, details)] = callback_audit(task["id"])
    assert (action, details["attempt"]) == ("task.callback_failed", 1)
    assert details["error"].startswith("refused: the callback host resolves to a private")


def test_a_host_taken_off_the_allowlist_is_refused_at_send_time(
    receiver, celery_eager, settings, as_agent_007, django_capture_on_commit_callbacks
):
    task = create(as_agent_007, f"{receiver}/hook")
    settings.HOL_CALLBACK_ALLOWED_HOSTS = []
    cancel_and_send(as_agent_007, task["id"], django_capture_on_commit_callbacks)
    assert Receiver.connections == []
    assert callback_audit(task["id"])[0][0] == "task.callback_failed"


# --- a real Celery worker -------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.slow
def test_a_real_worker_runs_the_task_and_posts_the_signed_callback(
    receiver, start_worker, agent_scripts, alice_developer
):
    secret = "callback-secret-of-this-test"
    start_worker(extra_env={"HOL_CALLBACK_ALLOWED_HOSTS": "127.0.0.1", "HOL_CALLBACK_SECRET": secret})
    alice = client_for(alice_developer)
    payload = task_payload(callback_url=f"{receiver}/hook", assigned_to=alice_developer.username)
    task_id = alice.post("/api/v1/tasks", payload, format="json").json()["id"]
    # The agent's script exists before its work order does: no attempt can start without it.
    (agent_scripts / f"{task_id}.py").write_text("print('shipped it')\n")
    assert alice.post("/api/v1/queue/enqueue", {"task_id": task_id}, format="json").status_code == 201
    task = Task.objects.get(pk=task_id)
    wait_for_status(task, Task.Status.COMPLETED)
    eventually(lambda: len(Receiver.received) == 1, what="the callback")
    [delivery] = Receiver.received
    assert callbacks.verify(secret, delivery["body"], delivery["headers"]["X-HOL-Signature"])
    body = json.loads(delivery["body"])
    assert (body["task_id"], body["status"]) == (task_id, "completed")
    assert "shipped it" in body["output"]
    eventually(lambda: callback_audit(task_id) != [], what="the audit entry")
    assert callback_audit(task_id)[0][0] == "task.callback_sent"
