"""The hol_agent client and CLI against HOL served by a real daphne (see test_live_server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
# The tests only talk to daphne, but the test database must exist for it to serve.
pytestmark = pytest.mark.django_db


def hol_agent(*args: str, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    # Only what an agent's run gets: the CLI needs no Django, settings or database.
    clean = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "hol_agent", *args], env=clean, capture_output=True, text=True, timeout=timeout
    )


def start_hol_agent(*args: str, env: dict) -> subprocess.Popen:
    clean = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "hol_agent", *args], env=clean, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture
def enqueued(agent, new_task):
    """A worker of the demo agent and one enqueued task: (worker id, task id). The task is
    cancelled afterwards, so no test finds another's work on the queue."""
    http, _ = agent
    worker = http.post("/api/v1/workers", json={"name": "cli-laptop"})
    assert worker.status_code == 201, worker.text
    task = http.post("/api/v1/tasks", json=new_task())
    assert task.status_code == 201, task.text
    assert http.post("/api/v1/queue/enqueue", json={"task_id": task.json()["id"]}).status_code == 201
    yield worker.json()["id"], task.json()["id"]
    http.patch(f"/api/v1/tasks/{task.json()['id']}", json={"status": "cancelled"})


def test_claim_prints_the_claimed_work_order(agent, enqueued):
    _, env = agent
    worker_id, task_id = enqueued
    result = hol_agent("claim", "--worker-id", worker_id, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["task"]["id"] == task_id


def test_claim_exits_1_when_nothing_is_queued(agent, enqueued):
    _, env = agent
    worker_id, _ = enqueued
    assert hol_agent("claim", "--worker-id", worker_id, env=env).returncode == 0
    assert hol_agent("claim", "--worker-id", worker_id, env=env).returncode == 1


def test_claim_with_wait_takes_work_enqueued_while_it_waits(agent, enqueued, new_task):
    http, env = agent
    worker_id, _ = enqueued
    assert hol_agent("claim", "--worker-id", worker_id, env=env).returncode == 0  # the queue is empty now
    waiting = start_hol_agent("claim", "--worker-id", worker_id, "--wait", "30", env=env)
    task = http.post("/api/v1/tasks", json=new_task(title="Arrives while the agent waits")).json()
    assert http.post("/api/v1/queue/enqueue", json={"task_id": task["id"]}).status_code == 201
    assert waiting.wait(timeout=40) == 0, waiting.stderr.read()
    assert json.loads(waiting.stdout.read())["task"]["id"] == task["id"]


def test_complete_finishes_the_work_order_named_by_the_environment(agent, enqueued):
    http, env = agent
    worker_id, task_id = enqueued
    work_order = json.loads(hol_agent("claim", "--worker-id", worker_id, env=env).stdout)
    result = hol_agent("complete", "--output", "all good", env={**env, "HOL_WORK_ORDER_ID": work_order["id"]})
    assert result.returncode == 0, result.stderr
    assert http.get(f"/api/v1/tasks/{task_id}").json()["status"] == "completed"


def test_fail_without_retry_fails_the_task_for_good(agent, enqueued):
    http, env = agent
    worker_id, task_id = enqueued
    work_order = json.loads(hol_agent("claim", "--worker-id", worker_id, env=env).stdout)
    result = hol_agent(
        "fail", "--error", "tests broke", "--no-retry", env={**env, "HOL_WORK_ORDER_ID": work_order["id"]}
    )
    assert result.returncode == 0, result.stderr
    assert http.get(f"/api/v1/tasks/{task_id}").json()["status"] == "failed"


def test_complete_of_a_work_order_not_held_exits_1(agent, enqueued):
    _, env = agent
    result = hol_agent("complete", env={**env, "HOL_WORK_ORDER_ID": "00000000-0000-0000-0000-000000000000"})
    assert result.returncode == 1
    assert "404" in result.stderr


def stream(http: httpx.Client, task_id: str) -> list[dict]:
    response = http.get("/api/v1/chat/messages", params={"task": task_id})
    assert response.status_code == 200, response.text
    return response.json()


def test_log_streams_a_line_to_the_task(agent, enqueued):
    http, env = agent
    _, task_id = enqueued
    result = hol_agent("log", "compiling shop", "--stage", "editing", env={**env, "HOL_TASK_ID": task_id})
    assert result.returncode == 0, result.stderr
    [line] = [m for m in stream(http, task_id) if m["content"] == "compiling shop"]
    assert (line["event_type"], line["stage"], line["sender_type"]) == ("log", "editing", "worker")


def test_event_posts_its_type_and_data_to_the_task(agent, enqueued):
    http, env = agent
    _, task_id = enqueued
    data = '{"passed": 12, "failed": 0}'
    result = hol_agent("event", "--type", "test_result", "--data", data, env={**env, "HOL_TASK_ID": task_id})
    assert result.returncode == 0, result.stderr
    [event] = [m for m in stream(http, task_id) if m["event_type"] == "test_result"]
    assert event["data"] == {"passed": 12, "failed": 0}


def test_event_of_an_unknown_type_is_refused_with_exit_1(agent, enqueued):
    _, env = agent
    _, task_id = enqueued
    result = hol_agent("event", "--type", "rm -rf", env={**env, "HOL_TASK_ID": task_id})
    assert result.returncode == 1


def test_log_to_a_task_the_agent_may_not_see_exits_1(agent, tech_lead, new_task):
    _, env = agent
    theirs = tech_lead.post("/api/v1/tasks", json=new_task())
    assert theirs.status_code == 201, theirs.text
    result = hol_agent("log", "sneaking in", env={**env, "HOL_TASK_ID": theirs.json()["id"]})
    assert result.returncode == 1
    assert "403" in result.stderr


def test_ask_waits_for_a_tech_leads_answer_and_prints_it(agent, tech_lead, enqueued):
    _, env = agent
    _, task_id = enqueued
    asking = start_hol_agent("ask", "Which database should the migration target?", env={**env, "HOL_TASK_ID": task_id})
    deadline = time.monotonic() + 20
    while not (questions := [m for m in stream(tech_lead, task_id) if m["message_type"] == "request"]):
        assert time.monotonic() < deadline, "the question never appeared"
        time.sleep(0.1)
    answer = {
        "task_id": task_id,
        "message_type": "response",
        "event_type": "message",
        "content": "staging first",
        "parent_message_id": questions[0]["id"],
    }
    assert tech_lead.post("/api/v1/chat/messages", json=answer).status_code == 201
    assert asking.wait(timeout=30) == 0, asking.stderr.read()
    assert asking.stdout.read().strip() == "staging first"


def test_ask_exits_3_when_nobody_answers_in_time(agent, enqueued):
    _, env = agent
    _, task_id = enqueued
    result = hol_agent("ask", "anyone?", "--wait", "1", env={**env, "HOL_TASK_ID": task_id})
    assert result.returncode == 3
    assert "no answer yet" in result.stderr


def test_demo_agent_posts_a_status_event_per_stage(agent, enqueued):
    http, env = agent
    _, task_id = enqueued
    result = subprocess.run(
        [sys.executable, str(ROOT / "agents" / "demo_agent.py")],
        env={"PATH": os.environ["PATH"], **env, "HOL_TASK_ID": task_id},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "could not post" not in result.stderr
    stages = [m["stage"] for m in stream(http, task_id) if m["event_type"] == "status"]
    assert stages == ["intent_extraction", "planning", "editing", "testing", "verification"]


def test_approve_of_a_low_risk_action_is_approved_and_consumed(agent):
    http, env = agent
    result = hol_agent("approve", "--action-type", "file", "--resource-type", "file", "--operation", "read", env=env)
    assert result.returncode == 0, result.stderr
    request_id = json.loads(result.stdout)["id"]
    assert http.get(f"/api/v1/approvals/{request_id}").json()["consumed_at"] is not None


def pending_request(http: httpx.Client, marker: str) -> dict:
    """The pending request whose details carry `marker` (each test marks its own)."""
    return pending_where(http, lambda details: details.get("test") == marker)


MEDIUM_RISK = ("approve", "--action-type", "file", "--resource-type", "file", "--operation", "write")


def test_approve_waits_for_a_human_approval_and_exits_0(agent, tech_lead):
    _, env = agent
    waiting = start_hol_agent(*MEDIUM_RISK, "--details", '{"test": "approved"}', env=env)
    request = pending_request(tech_lead, "approved")
    assert tech_lead.post(f"/api/v1/approvals/{request['id']}/approve", json={}).status_code == 200
    assert waiting.wait(timeout=30) == 0, waiting.stderr.read()


def test_approve_exits_1_when_a_human_rejects(agent, tech_lead):
    _, env = agent
    waiting = start_hol_agent(*MEDIUM_RISK, "--details", '{"test": "rejected"}', env=env)
    request = pending_request(tech_lead, "rejected")
    rejected = tech_lead.post(f"/api/v1/approvals/{request['id']}/reject", json={"justification": "not today"})
    assert rejected.status_code == 200, rejected.text
    assert waiting.wait(timeout=30) == 1
    assert "not today" in waiting.stdout.read()


def test_approve_exits_3_and_leaves_the_request_pending_when_nobody_decides_in_time(agent, tech_lead):
    http, env = agent
    result = hol_agent(*MEDIUM_RISK, "--wait", "1", env=env)
    assert result.returncode == 3
    request_id = json.loads(result.stdout)["id"]
    assert tech_lead.get(f"/api/v1/approvals/{request_id}").json()["status"] == "pending"
    http.post(f"/api/v1/approvals/{request_id}/cancel", json={"reason": "test over"})


def test_approve_exits_2_when_hol_cannot_be_reached():
    result = hol_agent(*MEDIUM_RISK, env={"HOL_API_URL": "http://127.0.0.1:9", "HOL_TOKEN": "x"})
    assert result.returncode == 2
    assert "cannot reach HOL" in result.stderr


def test_requests_without_a_valid_token_are_refused_with_exit_1(base_url, enqueued):
    worker_id, _ = enqueued
    result = hol_agent("claim", "--worker-id", worker_id, env={"HOL_API_URL": base_url, "HOL_TOKEN": "forged"})
    assert result.returncode == 1
    assert "401" in result.stderr


def test_demo_agent_walks_its_stages_and_exits_0_even_without_hol():
    result = subprocess.run(
        [sys.executable, str(ROOT / "agents" / "demo_agent.py")],
        env={"PATH": os.environ["PATH"], "HOL_API_URL": "http://127.0.0.1:9", "HOL_TASK_ID": "t"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "[verification] done" in result.stdout


# --- the Claude Code PreToolUse hook ---


def claude_call(tool_name: str, tool_input: dict) -> str:
    """What Claude Code writes to a PreToolUse hook's stdin."""
    return json.dumps(
        {
            "session_id": "0b9a7c1e-claude-session",
            "transcript_path": "/tmp/transcript.jsonl",
            "cwd": "/work/shop",
            "hook_event_name": "PreToolUse",
            "tool_name": tool_name,
            "tool_input": tool_input,
            "tool_use_id": "toolu_01ABC",
        }
    )


def run_hook(call: str, env: dict, **options) -> subprocess.Popen:
    clean = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "hol_agent", "hook"],
        env=clean,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **options,
    )
    process.stdin.write(call)
    process.stdin.close()
    return process


def hook_answer(process: subprocess.Popen) -> dict:
    assert process.wait(timeout=40) == 0, process.stderr.read()
    return json.loads(process.stdout.read())["hookSpecificOutput"]


def test_hook_denies_risky_calls_when_hol_cannot_be_reached():
    hook = run_hook(claude_call("Bash", {"command": "rm -rf build"}), {"HOL_API_URL": "http://127.0.0.1:9"})
    answer = hook_answer(hook)
    assert (answer["hookEventName"], answer["permissionDecision"]) == ("PreToolUse", "deny")
    assert "cannot be reached" in answer["permissionDecisionReason"]


def test_hook_leaves_tools_it_does_not_gate_to_claude_code():
    hook = run_hook(claude_call("Read", {"file_path": "/work/shop/README.md"}), {"HOL_API_URL": "http://127.0.0.1:9"})
    assert hook.wait(timeout=40) == 0
    assert hook.stdout.read() == ""


def test_hook_denies_when_it_fails_in_a_way_nobody_foresaw():
    hook = run_hook(
        claude_call("Bash", {"command": "rm -rf build"}),
        {"HOL_API_URL": "http://127.0.0.1:9", "HOL_HOOK_WAIT_SECONDS": "not a number"},
    )
    answer = hook_answer(hook)
    assert answer["permissionDecision"] == "deny"
    assert "HOL hook failed" in answer["permissionDecisionReason"]


def test_hook_denies_input_it_cannot_read():
    answer = hook_answer(run_hook("not json", {"HOL_API_URL": "http://127.0.0.1:9"}))
    assert answer["permissionDecision"] == "deny"


def test_hook_allows_a_write_once_a_human_approves_it(agent, tech_lead):
    _, env = agent
    call = claude_call("Write", {"file_path": "/work/shop/hook-approved.py", "content": "print(1)\n"})
    hook = run_hook(call, {**env, "HOL_HOOK_WAIT_SECONDS": "30"})
    request = pending_path_request(tech_lead, "/work/shop/hook-approved.py")
    assert tech_lead.post(f"/api/v1/approvals/{request['id']}/approve", json={}).status_code == 200
    assert hook_answer(hook)["permissionDecision"] == "allow"


def test_hook_denies_a_command_a_human_rejects_with_the_reason(agent, tech_lead):
    _, env = agent
    hook = run_hook(claude_call("Bash", {"command": "git push --force"}), {**env, "HOL_HOOK_WAIT_SECONDS": "30"})
    request = pending_command_request(tech_lead, "git push --force")
    rejected = tech_lead.post(f"/api/v1/approvals/{request['id']}/reject", json={"justification": "no force pushes"})
    assert rejected.status_code == 200, rejected.text
    answer = hook_answer(hook)
    assert answer["permissionDecision"] == "deny"
    assert "no force pushes" in answer["permissionDecisionReason"]


def test_hook_denies_with_try_again_when_nobody_decides_within_its_wait(agent, tech_lead):
    http, env = agent
    call = claude_call("Edit", {"file_path": "/work/shop/slow.py", "old_string": "a", "new_string": "b"})
    answer = hook_answer(run_hook(call, {**env, "HOL_HOOK_WAIT_SECONDS": "1"}))
    assert answer["permissionDecision"] == "deny"
    assert "try the same action again later" in answer["permissionDecisionReason"]
    request = pending_path_request(tech_lead, "/work/shop/slow.py")
    assert request["status"] == "pending"
    http.post(f"/api/v1/approvals/{request['id']}/cancel", json={"reason": "test over"})


def test_hook_asked_twice_for_the_same_call_opens_one_request_and_the_retry_after_approval_allows(agent, tech_lead):
    _, env = agent
    call = claude_call("Bash", {"command": "make deploy-twice"})
    for _ in range(2):
        answer = hook_answer(run_hook(call, {**env, "HOL_HOOK_WAIT_SECONDS": "1"}))
        assert answer["permissionDecision"] == "deny"
    mine = [
        request
        for request in tech_lead.get("/api/v1/approvals", params={"page_size": 100}).json()["results"]
        if request["action_details"].get("command") == "make deploy-twice"
    ]
    assert len(mine) == 1
    assert tech_lead.post(f"/api/v1/approvals/{mine[0]['id']}/approve", json={}).status_code == 200
    assert hook_answer(run_hook(call, {**env, "HOL_HOOK_WAIT_SECONDS": "5"}))["permissionDecision"] == "allow"


def pending_where(http: httpx.Client, matches: Callable[[dict], bool]) -> dict:
    deadline = time.monotonic() + 20
    while True:
        pending = http.get("/api/v1/approvals", params={"status": "pending"}).json()["results"]
        mine = [request for request in pending if matches(request["action_details"])]
        if mine:
            return mine[0]
        assert time.monotonic() < deadline, "the approval request never appeared"
        time.sleep(0.1)


def pending_path_request(http: httpx.Client, path: str) -> dict:
    return pending_where(http, lambda details: details.get("path") == path)


def pending_command_request(http: httpx.Client, command: str) -> dict:
    return pending_where(http, lambda details: details.get("command") == command)


# --- Claude Code as the agent (agents/claude_agent.py), with a stand-in for the `claude` binary ---

FAKE_CLAUDE = """#!{python}
import json, os, sys
with open(os.environ["FAKE_CLAUDE_OUT"], "w") as out:
    json.dump({{"argv": sys.argv[1:], "cwd": os.getcwd(), "pythonpath": os.environ.get("PYTHONPATH", ""),
               "token": bool(os.environ.get("HOL_TOKEN"))}}, out)
print("claude: working on it")
sys.exit(int(os.environ.get("FAKE_CLAUDE_EXIT", "0")))
"""


def run_claude_agent(env: dict, tmp_path: Path, **extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    fake = tmp_path / "claude"
    fake.write_text(FAKE_CLAUDE.format(python=sys.executable))
    fake.chmod(0o755)
    out = tmp_path / "claude.json"
    clean = {"PATH": os.environ["PATH"], "CLAUDE_BIN": str(fake), "FAKE_CLAUDE_OUT": str(out), **env, **extra}
    command = [sys.executable, str(ROOT / "agents" / "claude_agent.py")]
    result = subprocess.run(command, env=clean, capture_output=True, text=True, timeout=60)
    return result, json.loads(out.read_text()) if out.exists() else {}


def test_the_claude_agent_runs_claude_headless_on_the_task_with_hols_hooks(agent, new_task, tmp_path):
    http, env = agent
    task = http.post("/api/v1/tasks", json=new_task(objective="Make the login test pass")).json()
    result, seen = run_claude_agent({**env, "HOL_TASK_ID": task["id"]}, tmp_path, CLAUDE_WORKDIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "claude: working on it" in result.stdout
    assert seen["argv"][0] == "-p" and "Make the login test pass" in seen["argv"][1]
    assert seen["argv"][2:4] == ["--settings", str(ROOT / "agents" / "claude-settings.json")]
    assert seen["cwd"] == str(tmp_path)
    assert str(ROOT) in seen["pythonpath"].split(os.pathsep), "the hooks' `python -m hol_agent` must import"
    assert seen["token"], "the hooks need the run's token"


def test_the_claude_agents_exit_code_is_claudes(agent, new_task, tmp_path):
    http, env = agent
    task = http.post("/api/v1/tasks", json=new_task()).json()
    result, _ = run_claude_agent({**env, "HOL_TASK_ID": task["id"]}, tmp_path, FAKE_CLAUDE_EXIT="3")
    assert result.returncode == 3


def test_the_claude_agent_says_when_claude_is_missing(agent, new_task, tmp_path):
    http, env = agent
    task = http.post("/api/v1/tasks", json=new_task()).json()
    result, _ = run_claude_agent({**env, "HOL_TASK_ID": task["id"]}, tmp_path, CLAUDE_BIN=str(tmp_path / "nope"))
    assert result.returncode == 127
    assert "cannot start" in result.stderr
