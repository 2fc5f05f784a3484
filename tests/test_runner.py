"""Celery workers carry out work orders: the agent process under limits, and a real
`celery -A hol worker` against the test database on PostgreSQL and Redis."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from chat.models import ChatMessage
from hol.redact import REDACTED, redact
from notifications.models import Notification
from tasks import services as task_services
from tasks.agent_process import run_agent
from tasks.agent_user import AgentUser, AgentUserError, agent_user, hand_over
from tasks.models import Execution, Task, WorkOrder
from tasks.tasks import requeue_lapsed_work
from tests.waiting import eventually, wait_for_status


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is not running.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    return True


# --- redaction ---


@pytest.mark.parametrize(
    "secret",
    [
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "AKIAABCDEFGHIJKLMNOP",
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        "xoxb-123456789012-abcdefghij",
    ],
)
def test_redact_removes_credential_shaped_tokens(secret):
    assert redact(f"using {secret} now") == f"using {REDACTED} now"


def test_redact_removes_values_of_secret_named_assignments():
    assert redact("DB_PASSWORD=hunter22 api_key: 'abcd1234'") == f"DB_PASSWORD={REDACTED} api_key: '{REDACTED}'"


def test_redact_removes_passwords_in_urls():
    assert (
        redact("cloning https://bob:s3cret@git.example.com/repo") == f"cloning https://{REDACTED}@git.example.com/repo"
    )


def test_redact_removes_known_secret_values_anywhere():
    assert redact("the value is q8Zp1x9LmN2 here", secrets=["q8Zp1x9LmN2"]) == f"the value is {REDACTED} here"


def test_redact_leaves_ordinary_log_lines_alone():
    line = "tests: 42 passed, 0 failed in 3.2s; see tokens.py line 12"
    assert redact(line) == line


# --- the agent process ---


def run_python(code: str, tmp_path: Path, **options) -> tuple:
    batches: list = []
    defaults = {
        "env": {"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1"},
        "cwd": tmp_path,
        "time_budget_seconds": 30,
        "on_lines": batches.append,
        "keep_going": lambda: True,
        "poll_seconds": 0.1,
        "kill_grace_seconds": 0.5,
    }
    outcome = run_agent([sys.executable, "-c", textwrap.dedent(code)], **{**defaults, **options})
    return outcome, [line for batch in batches for line in batch]


def test_agent_lines_arrive_in_order_with_their_stream(tmp_path):
    outcome, lines = run_python(
        """
        import sys
        print("one"); print("two"); print("oops", file=sys.stderr)
        """,
        tmp_path,
    )
    assert (outcome.ended, outcome.exit_code) == ("exited", 0)
    assert [line for line in lines if line[0] == "stdout"] == [("stdout", "one"), ("stdout", "two")]
    assert ("stderr", "oops") in lines


def test_agent_non_zero_exit_is_reported_with_its_code(tmp_path):
    outcome, _ = run_python("raise SystemExit(7)", tmp_path)
    assert (outcome.ended, outcome.exit_code, outcome.reason) == ("exited", 7, "agent exited with code 7")


def test_time_budget_kills_the_agents_whole_process_group(tmp_path):
    code = f"""
        import subprocess, time
        child = subprocess.Popen(["sleep", "300"])
        open({str(tmp_path / "child.pid")!r}, "w").write(str(child.pid))
        time.sleep(300)
    """
    outcome, _ = run_python(code, tmp_path, time_budget_seconds=1.5)
    assert outcome.ended == "timed_out"
    assert "time budget" in outcome.reason
    grandchild = int((tmp_path / "child.pid").read_text())
    eventually(lambda: not alive(grandchild), seconds=5, what="the agent's child to die")


def test_agent_is_stopped_within_a_poll_when_told_to_stop(tmp_path):
    started = time.monotonic()
    outcome, _ = run_python("import time; time.sleep(300)", tmp_path, keep_going=lambda: time.monotonic() - started < 1)
    assert outcome.ended == "stopped"
    assert time.monotonic() - started < 5


def test_cpu_time_limit_stops_a_spinning_agent(tmp_path):
    outcome, _ = run_python("while True: pass", tmp_path, cpu_seconds=1)
    assert outcome.ended == "exited"
    assert "CPU time limit" in outcome.reason


def test_memory_limit_stops_an_agent_that_allocates_too_much(tmp_path):
    outcome, lines = run_python("x = bytearray(600 * 1024 * 1024)", tmp_path, memory_mb=300)
    assert outcome.exit_code != 0
    assert any("MemoryError" in line for _, line in lines)


# --- a real Celery worker (PostgreSQL: the worker process serves the test database) ---


@pytest.fixture
def celery_worker(start_worker) -> subprocess.Popen:
    return start_worker()


@pytest.fixture
def make_task(agent_scripts, alice_developer):
    """Create a task whose agent runs `script`, and enqueue it (dispatched to Celery on commit)."""

    def build(script: str, *, max_retries: int = 3, time_budget_seconds: int = 60) -> Task:
        task, _ = task_services.task_create(
            actor=alice_developer,
            payload={
                "title": "Run the agent",
                "objective": "Exercise the Celery runner",
                "target": {"repo": "https://github.com/acme/shop"},
                "assigned_to": alice_developer.username,
            },
        )
        # Intake refuses budgets under 30 s; the tests need seconds, so the row is edited.
        Task.objects.filter(pk=task.pk).update(time_budget_seconds=time_budget_seconds)
        (agent_scripts / f"{task.pk}.py").write_text(textwrap.dedent(script))
        task_services.work_order_enqueue(actor=alice_developer, task_id=task.pk, max_retries=max_retries)
        return task

    return build


@pytest.fixture
def submit(celery_worker, make_task):
    """`make_task` with a Celery worker running."""
    return make_task


@pytest.mark.postgres
@pytest.mark.slow
def test_celery_worker_runs_the_agent_and_completes_the_task(submit):
    task = submit(
        """
        import sys
        print("hello from the agent")
        print("GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789")
        print("a warning", file=sys.stderr)
        """
    )
    wait_for_status(task, Task.Status.COMPLETED)
    execution = Execution.objects.get(task=task)
    assert (execution.status, execution.exit_code, execution.attempt) == ("completed", 0, 1)
    logs = "\n".join(ChatMessage.objects.filter(task=task, event_type="log").values_list("content", flat=True))
    assert "hello from the agent" in logs
    assert "a warning" in logs
    assert "ghp_" not in logs
    assert f"GITHUB_TOKEN={REDACTED}" in logs


@pytest.mark.postgres
@pytest.mark.slow
def test_agent_printing_its_own_token_has_it_redacted(submit):
    task = submit('import os; print("my token is", os.environ["HOL_TOKEN"])')
    wait_for_status(task, Task.Status.COMPLETED)
    logs = "\n".join(ChatMessage.objects.filter(task=task, event_type="log").values_list("content", flat=True))
    assert logs == f"my token is {REDACTED}"


@pytest.mark.postgres
@pytest.mark.slow
def test_celery_run_records_its_session_and_trace_folder(submit):
    task = submit('print("traced")')
    wait_for_status(task, Task.Status.COMPLETED)
    execution = Execution.objects.select_related("agent_session").get(task=task)
    trace = Path(execution.trace_path)
    assert trace.parts[-2:] == (str(task.pk), "1")
    assert "traced" in (trace / "output.log").read_text()
    events = [json.loads(line) for line in (trace / "events.jsonl").read_text().splitlines()]
    assert {"type": "log", "stream": "stdout", "content": "traced"}.items() <= events[0].items()
    assert json.loads((trace / "result.json").read_text())["exit_code"] == 0
    assert execution.agent_session is not None
    assert execution.agent_session.status == "terminated"


@pytest.mark.postgres
@pytest.mark.slow
def test_agent_gets_run_environment_and_not_the_workers_database_url(submit, agent_scripts):
    seen = agent_scripts / "seen-env.json"
    task = submit(
        f"""
        import json, os
        json.dump(dict(os.environ), open({str(seen)!r}, "w"))
        """
    )
    wait_for_status(task, Task.Status.COMPLETED)
    env = json.loads(seen.read_text())
    work_order = WorkOrder.objects.get(task=task)
    assert env["HOL_TASK_ID"] == str(task.pk)
    assert env["HOL_WORK_ORDER_ID"] == str(work_order.pk)
    assert env["HOL_TOKEN"].startswith("eyJ")
    assert env["HOL_API_URL"].startswith("http")
    assert "DATABASE_URL" not in env


@pytest.mark.postgres
@pytest.mark.slow
def test_failing_agent_is_retried_then_fails_for_good(submit):
    task = submit("raise SystemExit(3)", max_retries=1)
    wait_for_status(task, Task.Status.FAILED)
    attempts = list(Execution.objects.filter(task=task).order_by("attempt").values_list("attempt", "exit_code"))
    assert attempts == [(1, 3), (2, 3)]
    work_order = WorkOrder.objects.get(task=task)
    assert (work_order.status, work_order.retry_count) == ("failed", 1)
    assert "exited with code 3" in work_order.last_error


@pytest.mark.postgres
@pytest.mark.slow
def test_owner_is_notified_when_the_agent_fails_for_good(submit, alice_developer):
    task = submit("raise SystemExit(3)", max_retries=0)
    wait_for_status(task, Task.Status.FAILED)
    assert Notification.objects.filter(user=alice_developer, kind="work_order.failed").count() == 1


@pytest.mark.postgres
@pytest.mark.slow
def test_time_budget_overrun_fails_the_work_order_with_the_reason(submit):
    task = submit("import time; time.sleep(300)", time_budget_seconds=2)
    wait_for_status(task, Task.Status.FAILED)
    work_order = WorkOrder.objects.get(task=task)
    assert "time budget of 2s exceeded" in work_order.last_error
    assert work_order.retry_count == 0  # an overrun is not retried


@pytest.mark.postgres
@pytest.mark.slow
def test_cancelling_the_task_kills_its_running_agent(submit, agent_scripts, alice_developer):
    pid_file = agent_scripts / "cancel.pid"
    task = submit(
        f"""
        import os, time
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(300)
        """
    )
    eventually(lambda: pid_file.exists() and pid_file.read_text(), what="the agent to start")
    agent_pid = int(pid_file.read_text())
    task_services.task_update(actor=alice_developer, task_id=task.pk, changes={"status": "cancelled"})
    eventually(lambda: not alive(agent_pid), seconds=5, what="the agent to be killed")
    result = Path(Execution.objects.get(task=task).trace_path) / "result.json"
    eventually(result.exists, seconds=5, what="the run to record its end")
    assert json.loads(result.read_text())["ended"] == "stopped"
    assert WorkOrder.objects.get(task=task).status == "cancelled"


@pytest.mark.postgres
@pytest.mark.slow
def test_killed_celery_process_has_its_work_redelivered_and_completed_once(submit, agent_scripts):
    first = agent_scripts / "first-run.json"
    task = submit(
        f"""
        import json, os, time
        if not os.path.exists({str(first)!r}):
            json.dump({{"pid": os.getpid(), "ppid": os.getppid()}}, open({str(first)!r}, "w"))
            time.sleep(300)
        print("second run finished")
        """
    )
    eventually(lambda: first.exists() and first.read_text(), what="the first run to start")
    started = json.loads(first.read_text())
    os.kill(started["ppid"], signal.SIGKILL)  # the Celery process running the task
    wait_for_status(task, Task.Status.COMPLETED)
    assert not alive(started["pid"])
    executions = list(Execution.objects.filter(task=task).order_by("attempt").values_list("attempt", "status"))
    assert executions == [(1, "failed"), (2, "completed")]
    completed = AuditEntry.objects.filter(task_id=task.pk, action="work_order.completed")
    assert completed.count() == 1


@pytest.mark.postgres
@pytest.mark.slow
def test_two_celery_processes_run_two_work_orders_at_once(submit, agent_scripts):
    # Each agent waits for the other to have started: both finish only if they run together.
    script = """
        import os, sys, time
        mine, other = {mine!r}, {other!r}
        open(mine, "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists(other):
            if time.monotonic() > deadline:
                sys.exit(1)
            time.sleep(0.05)
    """
    a, b = str(agent_scripts / "a.started"), str(agent_scripts / "b.started")
    first = submit(script.format(mine=a, other=b), max_retries=0)
    second = submit(script.format(mine=b, other=a), max_retries=0)
    wait_for_status(first, Task.Status.COMPLETED)
    wait_for_status(second, Task.Status.COMPLETED)


@pytest.mark.postgres
@pytest.mark.slow
def test_running_agent_keeps_its_work_orders_lease_alive(submit, agent_scripts, alice_developer):
    pid_file = agent_scripts / "lease.pid"
    task = submit(
        f"""
        import os, time
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(300)
        """
    )
    eventually(lambda: pid_file.exists() and pid_file.read_text(), what="the agent to start")
    first_lease = WorkOrder.objects.get(task=task).lease_expires_at
    # Real time must pass here: once the lease seen as the agent started has run out (the
    # worker's leases last 3 s), only the heartbeats of the running agent can have kept it.
    eventually(lambda: timezone.now() > first_lease, seconds=10, what="the first lease to run out")
    work_order = WorkOrder.objects.get(task=task)
    assert work_order.status == "running"
    assert work_order.lease_expires_at > timezone.now()
    assert Execution.objects.filter(task=task).count() == 1
    task_services.task_update(actor=alice_developer, task_id=task.pk, changes={"status": "cancelled"})


@pytest.mark.postgres
@pytest.mark.slow
def test_empty_agent_command_runs_the_bundled_demo_agent(start_worker, make_task):
    start_worker(agent_command="")
    task = make_task("")
    wait_for_status(task, Task.Status.COMPLETED)
    logs = "\n".join(ChatMessage.objects.filter(task=task, event_type="log").values_list("content", flat=True))
    assert "[verification] done" in logs


@pytest.mark.postgres
@pytest.mark.slow
def test_work_of_a_killed_celery_worker_is_completed_once_by_another(start_worker, make_task, agent_scripts):
    first_run = agent_scripts / "first-worker.json"
    doomed = start_worker()
    task = make_task(
        f"""
        import json, os, time
        if not os.path.exists({str(first_run)!r}):
            json.dump({{"pid": os.getpid()}}, open({str(first_run)!r}, "w"))
            time.sleep(300)
        print("finished by the second worker")
        """
    )
    eventually(lambda: first_run.exists() and first_run.read_text(), what="the first run to start")
    os.killpg(doomed.pid, signal.SIGKILL)  # the whole worker: main process and pool
    doomed.wait()
    start_worker()
    work_order = WorkOrder.objects.get(task=task)
    eventually(lambda: WorkOrder.objects.get(pk=work_order.pk).lease_expires_at < timezone.now(), what="the lease")
    requeue_lapsed_work()  # what Beat runs every few seconds
    wait_for_status(task, Task.Status.COMPLETED)
    assert not alive(json.loads(first_run.read_text())["pid"])
    executions = list(Execution.objects.filter(task=task).order_by("attempt").values_list("attempt", "status"))
    assert executions == [(1, "failed"), (2, "completed")]
    assert AuditEntry.objects.filter(task_id=task.pk, action="work_order.completed").count() == 1


# --- the agent's own account (HOL_AGENT_USER) ---

AGENT_ACCOUNT = "hol-agent-test"
SYSTEM_PYTHON = "/usr/bin/python3"  # the test interpreter may live where another account cannot go


@pytest.fixture(scope="module")
def agent_account():
    if os.geteuid() != 0 or not shutil.which("useradd"):
        pytest.skip("running an agent as another account needs root")
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(AGENT_ACCOUNT)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", AGENT_ACCOUNT], check=True
    )
    return pwd.getpwnam(AGENT_ACCOUNT)


@pytest.fixture
def open_folders():
    """Folders outside pytest's private tmp tree, so only their own modes decide who enters."""
    made: list[Path] = []

    def make(prefix: str, mode: int) -> Path:
        path = Path(tempfile.mkdtemp(prefix=prefix))
        path.chmod(mode)
        made.append(path)
        return path

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


AGENT_PROBE = """\
import os, sys
print("uid", os.getuid())
for path in sys.argv[1:]:
    path = f"/proc/{os.getppid()}/environ" if path == "PARENT_ENV" else path
    try:
        open(path, "rb").read()
        print("READ", path)
    except OSError as error:
        print("denied", type(error).__name__, path)
open(os.path.join(os.environ["HOME"], "note.txt"), "w").write("mine")
# A trap for the worker, which writes result.json here after the run, as root.
os.symlink(sys.argv[1], os.path.join(os.environ["HOME"], "result.json"))
print("home is the trace folder:", os.environ["HOME"] == os.environ["HOL_TRACE_DIR"])
"""


@pytest.mark.postgres
@pytest.mark.slow
def test_agent_under_its_own_account_cannot_read_hols_keys_or_the_workers_environment(
    start_worker, make_task, agent_account, open_folders
):
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip(f"needs {SYSTEM_PYTHON}")
    data_dir = open_folders("hol-data-", 0o700)
    trace_root = open_folders("hol-traces-", 0o711)
    probe = trace_root / "probe.py"
    probe.write_text(AGENT_PROBE)
    probe.chmod(0o644)
    secret_key, checkpoint_key = data_dir / "secret-key", data_dir / "audit-checkpoint-key"
    start_worker(
        agent_command=f"{SYSTEM_PYTHON} {probe} {secret_key} {checkpoint_key} PARENT_ENV",
        extra_env={"HOL_AGENT_USER": AGENT_ACCOUNT, "HOL_TRACE_ROOT": str(trace_root), "HOL_DATA_DIR": str(data_dir)},
    )
    task = make_task("")
    wait_for_status(task, Task.Status.COMPLETED)
    logs = "\n".join(ChatMessage.objects.filter(task=task, event_type="log").values_list("content", flat=True))
    assert secret_key.exists() and checkpoint_key.exists()  # the worker made them, and may read them
    assert f"uid {agent_account.pw_uid}" in logs
    assert "READ" not in logs
    assert f"denied PermissionError {secret_key}" in logs
    assert f"denied PermissionError {checkpoint_key}" in logs
    assert "denied PermissionError /proc/" in logs
    assert "home is the trace folder: True" in logs
    trace = Path(Execution.objects.get(task=task).trace_path)
    assert trace.stat().st_uid == agent_account.pw_uid
    assert json.loads((trace / "result.json").read_text())["exit_code"] == 0  # written in place of the link
    assert not (trace / "result.json").is_symlink()
    assert "exit_code" not in secret_key.read_text()
    assert (trace / "note.txt").read_text() == "mine"
    assert "uid" in (trace / "output.log").read_text()


def test_a_trace_root_the_agent_account_cannot_reach_is_refused_with_a_reason(agent_account, open_folders):
    private = open_folders("hol-data-", 0o700)
    trace_dir = private / "traces" / "task" / "1"
    trace_dir.mkdir(parents=True)
    user = AgentUser(name=AGENT_ACCOUNT, uid=agent_account.pw_uid, gid=agent_account.pw_gid, groups=())
    with pytest.raises(AgentUserError, match="HOL_TRACE_ROOT"):
        hand_over(trace_dir, user)


def test_the_agent_account_may_not_be_root_nor_an_unknown_name(settings):
    settings.HOL_AGENT_USER = "root"
    with pytest.raises(AgentUserError, match="root"):
        agent_user()
    settings.HOL_AGENT_USER = "no-such-account-here"
    with pytest.raises(AgentUserError, match="not an account"):
        agent_user()
