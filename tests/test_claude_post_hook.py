"""Claude Code's PostToolUse hook against HOL served by a real daphne: what ran is reported, and a
risky action that no consumed approval covered is flagged (audit entry, red stream event,
notification) once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from tests.live import another_daphne, token_for

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db


def post_call(tool_name: str, tool_input: dict, *, tool_use_id: str, session_id: str, event: str = "PostToolUse"):
    """What Claude Code writes to a PostToolUse hook's stdin."""
    responses = {
        "Bash": {"stdout": "", "stderr": "", "interrupted": False, "isImage": False},
        "Write": {"type": "create", "filePath": tool_input.get("file_path"), "content": tool_input.get("content")},
        "Edit": {"filePath": tool_input.get("file_path"), "oldString": "a", "newString": "b", "structuredPatch": []},
    }
    return json.dumps(
        {
            "session_id": session_id,
            "transcript_path": "/tmp/transcript.jsonl",
            "cwd": "/work/shop",
            "permission_mode": "default",
            "hook_event_name": event,
            "tool_name": tool_name,
            "tool_input": tool_input,
            "tool_response": responses.get(tool_name, {}),
            "tool_use_id": tool_use_id,
        }
    )


def pre_call(tool_name: str, tool_input: dict, *, session_id: str) -> str:
    return json.dumps(
        {
            "session_id": session_id,
            "cwd": "/work/shop",
            "hook_event_name": "PreToolUse",
            "tool_name": tool_name,
            "tool_input": tool_input,
            "tool_use_id": "toolu_pre",
        }
    )


def hook(command: str, call: str, env: dict, **options) -> subprocess.Popen:
    clean = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "hol_agent", command],
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


def post_hook(call: str, env: dict) -> tuple[str, str]:
    """Run the PostToolUse hook to its end: (stdout, stderr); it always exits 0."""
    process = hook("post-hook", call, env)
    assert process.wait(timeout=40) == 0, process.stderr.read()
    return process.stdout.read(), process.stderr.read()


def ids() -> tuple[str, str]:
    """A fresh Claude session id and tool use id (each test its own)."""
    return f"claude-{uuid.uuid4()}", f"toolu_{uuid.uuid4().hex}"


@pytest.fixture
def task_id(agent, new_task) -> str:
    """A task of the demo agent that demo_tech_lead is responsible for."""
    http, _ = agent
    response = http.post("/api/v1/tasks", json=new_task(assigned_to="demo_tech_lead"))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def flags(http: httpx.Client, task_id: str) -> list[dict]:
    response = http.get("/api/v1/chat/messages", params={"task": task_id})
    assert response.status_code == 200, response.text
    return [message for message in response.json() if message["event_type"] == "unapproved_action"]


def audit(http: httpx.Client, action: str, task_id: str) -> list[dict]:
    response = http.get("/api/v1/audit", params={"action": action, "task": task_id, "page_size": 100})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def bypass_notices(http: httpx.Client, marker: str) -> list[dict]:
    response = http.get("/api/v1/notifications", params={"page_size": 100})
    assert response.status_code == 200, response.text
    body = response.json()
    rows = body["results"] if isinstance(body, dict) else body
    return [row for row in rows if row["kind"] == "approval.bypassed" and marker in row["message"]]


def test_a_risky_command_run_without_approval_is_flagged(agent, tech_lead, task_id):
    _, env = agent
    session, tool_use = ids()
    command = f"rm -rf build-{tool_use}"
    out, _ = post_hook(
        post_call("Bash", {"command": command}, tool_use_id=tool_use, session_id=session),
        {**env, "HOL_TASK_ID": task_id},
    )
    assert "ran without one" in json.loads(out)["hookSpecificOutput"]["additionalContext"]
    [flag] = flags(tech_lead, task_id)
    assert (flag["sender_type"], flag["data"]["what"], flag["data"]["tool_name"]) == ("system", command, "Bash")
    [entry] = audit(tech_lead, "approval.bypassed", task_id)
    assert (entry["actor"], entry["details"]["tool_use_id"]) == ("demo_agent", tool_use)
    [notice] = bypass_notices(tech_lead, command)
    assert notice["level"] == "error"
    assert notice["link"] == f"/tasks/{task_id}/#message-{flag['id']}"


def test_a_write_approved_and_consumed_before_it_ran_is_not_flagged(agent, tech_lead, task_id):
    _, env = agent
    session, tool_use = ids()
    write = {"file_path": f"/work/shop/{tool_use}.py", "content": "print(1)\n"}
    env = {**env, "HOL_TASK_ID": task_id}
    gate = hook("hook", pre_call("Write", write, session_id=session), {**env, "HOL_HOOK_WAIT_SECONDS": "30"})
    [request] = _pending_for(tech_lead, write["file_path"])
    assert tech_lead.post(f"/api/v1/approvals/{request['id']}/approve", json={}).status_code == 200
    assert gate.wait(timeout=40) == 0
    assert json.loads(gate.stdout.read())["hookSpecificOutput"]["permissionDecision"] == "allow"

    out, err = post_hook(post_call("Write", write, tool_use_id=tool_use, session_id=session), env)
    assert (out, err) == ("", "")
    assert flags(tech_lead, task_id) == []
    assert audit(tech_lead, "approval.bypassed", task_id) == []
    [executed] = audit(tech_lead, "approval.executed", task_id)
    assert (executed["target_id"], executed["details"]["tool_use_id"]) == (request["id"], tool_use)


def test_one_approval_covers_one_run_the_second_run_is_flagged(agent, tech_lead, task_id):
    _, env = agent
    session, _ = ids()
    edit = {"file_path": f"/work/shop/{uuid.uuid4().hex}.py", "old_string": "a", "new_string": "b"}
    env = {**env, "HOL_TASK_ID": task_id}
    gate = hook("hook", pre_call("Edit", edit, session_id=session), {**env, "HOL_HOOK_WAIT_SECONDS": "30"})
    [request] = _pending_for(tech_lead, edit["file_path"])
    assert tech_lead.post(f"/api/v1/approvals/{request['id']}/approve", json={}).status_code == 200
    assert gate.wait(timeout=40) == 0
    first, second = ids()[1], ids()[1]
    assert post_hook(post_call("Edit", edit, tool_use_id=first, session_id=session), env)[0] == ""
    assert post_hook(post_call("Edit", edit, tool_use_id=second, session_id=session), env)[0] != ""
    [flag] = flags(tech_lead, task_id)
    assert flag["data"]["tool_use_id"] == second


def test_an_action_the_rules_let_run_is_neither_kept_nor_flagged(agent, tech_lead, task_id, live_env, tmp_path):
    _, env = agent
    rules = yaml.safe_load((ROOT / "approvals/config/risk-assessment-rules.yaml").read_text())
    rules["base"].append({"name": "shell", "types": ["command"], "by": "operation", "levels": {"execute": "low"}})
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    session, tool_use = ids()
    with another_daphne({**live_env, "HOL_RISK_RULES_FILE": str(tmp_path / "rules.yaml")}) as lenient:
        call = post_call("Bash", {"command": "ls -la"}, tool_use_id=tool_use, session_id=session)
        assert post_hook(call, {**env, "HOL_API_URL": lenient, "HOL_TASK_ID": task_id}) == ("", "")
        body = {"action_type": "command", "resource_type": "shell", "operation": "execute", "tool_use_id": tool_use}
        auth = {"Authorization": f"Bearer {env['HOL_TOKEN']}"}
        answer = httpx.post(f"{lenient}/api/v1/approvals/executed", json=body, headers=auth).json()
    assert (answer["risky"], answer["flagged"], answer["id"], answer["risk_level"]) == (False, False, None, "low")
    assert flags(tech_lead, task_id) == []


def test_the_same_tool_use_reported_twice_is_flagged_once(agent, tech_lead, task_id):
    _, env = agent
    session, tool_use = ids()
    edit = {"file_path": f"/work/shop/{tool_use}.py", "old_string": "a", "new_string": "b"}
    call = post_call("Edit", edit, tool_use_id=tool_use, session_id=session)
    for _ in range(2):
        out, _ = post_hook(call, {**env, "HOL_TASK_ID": task_id})
        assert json.loads(out)["hookSpecificOutput"]["hookEventName"] == "PostToolUse"
    assert len(flags(tech_lead, task_id)) == 1
    assert len(audit(tech_lead, "approval.bypassed", task_id)) == 1
    assert len(bypass_notices(tech_lead, edit["file_path"])) == 1


def test_a_failed_call_is_reported_as_failed(agent, tech_lead, task_id):
    _, env = agent
    session, tool_use = ids()
    call = json.loads(post_call("Bash", {"command": "make deploy"}, tool_use_id=tool_use, session_id=session))
    call = {**call, "hook_event_name": "PostToolUseFailure", "error": "exit 2"}
    del call["tool_response"]
    out, _ = post_hook(json.dumps(call), {**env, "HOL_TASK_ID": task_id})
    assert json.loads(out)["hookSpecificOutput"]["hookEventName"] == "PostToolUseFailure"
    [flag] = flags(tech_lead, task_id)
    assert flag["data"]["outcome"] == "failed"


def test_a_tool_use_reported_again_with_another_action_is_a_conflict(agent, task_id):
    http, _ = agent
    _, tool_use = ids()
    body = {"action_type": "command", "operation": "execute", "details": {"command": "ls"}, "tool_use_id": tool_use}
    assert http.post("/api/v1/approvals/executed", json={**body, "task_id": task_id}).status_code == 201
    changed = {**body, "details": {"command": "rm -rf /"}, "task_id": task_id}
    response = http.post("/api/v1/approvals/executed", json=changed)
    assert (response.status_code, response.json()["code"]) == (409, "report_mismatch")


def test_a_huge_command_is_reported_shortened_and_flagged(agent, tech_lead, task_id):
    _, env = agent
    session, tool_use = ids()
    command = "echo " + "x" * 300_000
    out, err = post_hook(
        post_call("Bash", {"command": command}, tool_use_id=tool_use, session_id=session),
        {**env, "HOL_TASK_ID": task_id},
    )
    assert out and not err
    [flag] = flags(tech_lead, task_id)
    assert flag["data"]["what"].startswith("echo xxx")
    assert len(flag["data"]["what"]) < 5000


@pytest.fixture
def other_agent(base_url, live_env) -> httpx.Client:
    """A second agent account, made as an operator would, with a worker and a session of its own."""
    name = f"agent_{uuid.uuid4().hex[:8]}"
    made = subprocess.run(
        [sys.executable, "manage.py", "hol_user", "add", name, "--role", "agent"],
        cwd=ROOT,
        env=live_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    password = re.search(r"password \(shown once\): (\S+)", made.stdout).group(1)
    token = token_for(base_url, name, {name: password})
    with httpx.Client(base_url=base_url, timeout=10, headers={"Authorization": f"Bearer {token}"}) as http:
        yield http


def test_reporting_from_another_agents_session_is_refused(agent, other_agent):
    http, env = agent
    worker = other_agent.post("/api/v1/workers", json={"name": "theirs"}).json()
    session = f"claude-{uuid.uuid4()}"
    registered = other_agent.post("/api/v1/sessions", json={"session_id": session, "worker_id": worker["id"]})
    assert registered.status_code == 201, registered.text
    call = post_call("Bash", {"command": "rm -rf theirs"}, tool_use_id=ids()[1], session_id=session)
    out, err = post_hook(call, env)
    assert out == ""
    assert "403" in err and "not_your_session" in err
    body = {"action_type": "command", "operation": "execute", "tool_use_id": "toolu_x", "thread_id": session}
    assert http.post("/api/v1/approvals/executed", json=body).status_code == 403


def test_reporting_into_another_agents_task_is_refused(agent, other_agent, new_task):
    _, env = agent
    theirs = other_agent.post("/api/v1/tasks", json=new_task()).json()["id"]
    call = post_call("Bash", {"command": "rm -rf theirs"}, tool_use_id=ids()[1], session_id=ids()[0])
    out, err = post_hook(call, {**env, "HOL_TASK_ID": theirs})
    assert (out, "403" in err) == ("", True)
    assert flags(other_agent, theirs) == []


def test_only_agent_accounts_report_what_they_ran(tech_lead):
    body = {"action_type": "command", "operation": "execute", "tool_use_id": "toolu_person"}
    response = tech_lead.post("/api/v1/approvals/executed", json=body)
    assert (response.status_code, response.json()["code"]) == (403, "agents_only")


def test_report_fields_are_bounded(agent):
    http, _ = agent
    body = {"action_type": "command", "operation": "execute", "tool_use_id": "t" * 201}
    assert http.post("/api/v1/approvals/executed", json=body).status_code == 400
    huge = {**body, "tool_use_id": "toolu_big", "details": {"command": "x" * 300_000}}
    assert http.post("/api/v1/approvals/executed", json=huge).status_code == 400


def test_agents_cannot_post_the_flag_themselves(agent, task_id):
    http, _ = agent
    forged = {"task_id": task_id, "event_type": "unapproved_action", "content": "all fine", "data": {"what": "x"}}
    response = http.post("/api/v1/chat/messages", json=forged)
    assert (response.status_code, response.json()["code"]) == (403, "reserved_event_type")


def test_the_post_hook_exits_0_with_a_line_on_stderr_when_hol_is_down():
    call = post_call("Bash", {"command": "rm -rf build"}, tool_use_id="toolu_down", session_id="s")
    out, err = post_hook(call, {"HOL_API_URL": "http://127.0.0.1:9", "HOL_TOKEN": "x"})
    assert out == ""
    assert "HOL cannot be reached" in err
    assert len(err.strip().splitlines()) == 1


def test_the_post_hook_exits_0_on_input_it_cannot_read():
    out, err = post_hook("not json", {"HOL_API_URL": "http://127.0.0.1:9"})
    assert out == "" and "could not read" in err


def _pending_for(http: httpx.Client, path: str) -> list[dict]:
    """The pending request for the file `path`, once the PreToolUse hook has opened it."""
    deadline = time.monotonic() + 20
    while True:
        pending = http.get("/api/v1/approvals", params={"status": "pending", "page_size": 100}).json()["results"]
        mine = [request for request in pending if request["action_details"].get("path") == path]
        if mine:
            return mine
        assert time.monotonic() < deadline, "the approval request never appeared"
        time.sleep(0.1)
