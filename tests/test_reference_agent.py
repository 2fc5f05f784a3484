"""The bundled reference agent: its plan checks and edits against real git repositories, and whole
runs carried out by a real Celery worker talking to a real daphne over HOL's API (PostgreSQL, so
that both processes serve the test database)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.db import connection

from agents import reference_agent
from agents.reference_agent import Edit, RunFailed, apply_edit, check_relative_path, parse_plan
from approvals.models import ApprovalRequest
from approvals.services import approval_decide
from chat.models import ChatMessage
from hol.celery import app as celery_app
from tasks import services as task_services
from tasks.models import Execution, Task, WorkOrder
from tests.factories import signed_in
from tests.live import start_celery_worker, stop_worker
from tests.waiting import eventually, wait_for_status

CALC = "def add(a, b):\n    return a - b\n"
TEST_CALC = """import unittest

from calc import add


class AddTest(unittest.TestCase):
    def test_adds(self):
        self.assertEqual(add(2, 3), 5)

    def test_adds_zero(self):
        self.assertEqual(add(5, 0), 5)


if __name__ == "__main__":
    unittest.main()
"""
FIX = {
    "edits": [
        {"path": "calc.py", "find": "return a - b", "replace": "return a + b"},
        {"path": "docs/CHANGES.md", "content": "add() adds.\n"},
    ],
    "test_command": ["python", "-m", "unittest", "-v"],
    "test_timeout_seconds": 60,
}


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return result.stdout


@pytest.fixture
def repos_root():
    """A directory for the test's repositories; intake lower-cases repository names, so its
    path must be lower case (mkdtemp's random part is)."""
    root = Path(tempfile.mkdtemp(prefix="hol-repos-")).resolve()
    assert str(root) == str(root).lower()
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def calc_repo(repos_root) -> Path:
    """A repository whose add() subtracts, with unit tests that say so."""
    repo = repos_root / "calc"
    repo.mkdir()
    git("init", "--quiet", "-b", "main", cwd=repo)
    (repo / "calc.py").write_text(CALC)
    (repo / "test_calc.py").write_text(TEST_CALC)
    git("add", ".", cwd=repo)
    git("-c", "user.name=Alice", "-c", "user.email=alice@example.com", "commit", "--quiet", "-m", "calc", cwd=repo)
    return repo


# --- the plan and the edits (no HOL needed) ---


@pytest.mark.parametrize("path", ["../outside.txt", "a/../../b", "/etc/passwd", ".git/config", "src/.GIT/hooks/x", ""])
def test_edit_path_that_leaves_the_repository_is_refused(path):
    with pytest.raises(RunFailed):
        check_relative_path(path, "path")


def test_plan_is_refused_without_edits_or_with_unknown_keys():
    with pytest.raises(RunFailed, match=r"inputs\.edits"):
        parse_plan({}, objective="x", task_id="t")
    with pytest.raises(RunFailed, match=r"unknown keys.*tests"):
        parse_plan({"edits": [{"path": "a", "content": ""}], "tests": []}, objective="x", task_id="t")
    with pytest.raises(RunFailed, match="either content"):
        parse_plan({"edits": [{"path": "a", "content": "x", "find": "y"}]}, objective="x", task_id="t")


def test_plan_bounds_sizes_and_test_command():
    huge = "x" * (reference_agent.MAX_TEXT_BYTES + 1)
    with pytest.raises(RunFailed, match="larger than"):
        parse_plan({"edits": [{"path": "a", "content": huge}]}, objective="x", task_id="t")
    with pytest.raises(RunFailed, match="test_command"):
        parse_plan({"edits": [{"path": "a", "content": ""}], "test_command": "make test"}, objective="x", task_id="t")
    too_many = [{"path": f"f{n}", "content": ""} for n in range(reference_agent.MAX_EDITS + 1)]
    with pytest.raises(RunFailed, match="more than"):
        parse_plan({"edits": too_many}, objective="x", task_id="t")


def test_edit_through_a_symlink_out_of_the_repository_is_refused(calc_repo, repos_root):
    outside = repos_root / "outside"
    outside.mkdir()
    (calc_repo / "link").symlink_to(outside)
    with pytest.raises(RunFailed, match="escapes the repository"):
        apply_edit(calc_repo, Edit("link/evil.txt", None, "", "owned"))
    assert not (outside / "evil.txt").exists()


def test_find_must_match_exactly_once(calc_repo):
    with pytest.raises(RunFailed, match="occurs 0 times"):
        apply_edit(calc_repo, Edit("calc.py", "return a * b", "x", None))
    assert (calc_repo / "calc.py").read_text() == CALC


def test_unittest_output_becomes_one_row_per_test(calc_repo, tmp_path):
    run = reference_agent.run_tests(
        [sys.executable, "-m", "unittest", "-v"], cwd=calc_repo, timeout=60, output_file=tmp_path / "out.log"
    )
    assert not run.passed
    assert {row["name"]: row["status"] for row in run.tests} == {
        "test_calc.AddTest.test_adds": "failed",
        "test_calc.AddTest.test_adds_zero": "passed",
    }


def test_test_command_gets_no_hol_token_and_is_killed_at_its_limit(calc_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("HOL_TOKEN", "secret-token")
    script = "import os, time; print('token', os.environ.get('HOL_TOKEN')); time.sleep(30)"
    run = reference_agent.run_tests(
        [sys.executable, "-u", "-c", script], cwd=calc_repo, timeout=1, output_file=tmp_path / "out.log"
    )
    assert run.timed_out and not run.passed
    assert "token None" in run.output_tail


def test_repository_outside_the_allowed_roots_is_refused(calc_repo, repos_root, tmp_path):
    escape = repos_root / "escape"
    escape.symlink_to(tmp_path)
    with pytest.raises(RunFailed, match="outside every allowed root"):
        reference_agent.resolve_source(str(escape), prefixes=[f"{repos_root}/"], allow_network=False)
    with pytest.raises(RunFailed, match="not under an allowed prefix"):
        reference_agent.resolve_source(str(calc_repo), prefixes=[], allow_network=False)
    with pytest.raises(RunFailed, match="allow_network"):
        reference_agent.resolve_source(
            "https://github.com/acme/shop", prefixes=["https://github.com/"], allow_network=False
        )
    assert reference_agent.resolve_source(str(calc_repo), prefixes=[f"{repos_root}/"], allow_network=False) == str(
        calc_repo
    )


def test_a_local_path_is_taken_as_written_case_and_git_suffix_included(tmp_path):
    """Linux paths are case-sensitive and a bare repository's `.git` is part of its name."""
    root = tmp_path / "Repos"
    bare = root / "App.git"
    bare.mkdir(parents=True)
    assert reference_agent.resolve_source(str(bare), prefixes=[f"{root}/"], allow_network=False) == str(bare)
    with pytest.raises(RunFailed, match="not under an allowed prefix"):  # another directory than the one allowed
        reference_agent.resolve_source(str(bare), prefixes=[f"{str(root).lower()}/"], allow_network=False)
    assert reference_agent.resolve_source(
        "https://github.com/acme/shop", prefixes=["https://GitHub.com/"], allow_network=True
    ) == ("https://github.com/acme/shop")


# --- the plan buttons on the task page ---


def _plan_question(task: Task, agent) -> ChatMessage:
    from chat.services import chat_message_post

    return chat_message_post(
        actor=agent, task_id=task.pk, content="Plan: fix add()", message_type="request", data={"kind": "plan"}
    )


@pytest.fixture
def held_task(alice_developer, agent_007):
    task, _ = task_services.task_create(
        actor=alice_developer,
        payload={"title": "Fix add", "objective": "add() must add", "target": {"repo": "https://github.com/acme/calc"}},
    )
    worker = task_services.worker_register(actor=agent_007, name="w")
    task_services.work_order_enqueue(actor=alice_developer, task_id=task.pk)
    task_services.work_order_claim(actor=agent_007, worker_id=worker.pk)
    return task


def test_task_page_shows_plan_buttons_for_a_pending_plan(held_task, agent_007, bob_tech_lead):
    _plan_question(held_task, agent_007)
    page = signed_in(bob_tech_lead).get(f"/tasks/{held_task.pk}/").content.decode()
    assert "Approve plan" in page and "Reject plan" in page


def test_rejecting_a_plan_from_the_page_needs_a_reason(held_task, agent_007, bob_tech_lead):
    plan = _plan_question(held_task, agent_007)
    browser = signed_in(bob_tech_lead)
    browser.post(f"/tasks/{held_task.pk}/answer", {"parent_id": plan.pk, "decision": "reject", "message": ""})
    assert not ChatMessage.objects.filter(parent=plan).exists()
    browser.post(f"/tasks/{held_task.pk}/answer", {"parent_id": plan.pk, "decision": "reject", "message": "too risky"})
    answer = ChatMessage.objects.get(parent=plan)
    assert (answer.sender, answer.data, answer.content) == (
        bob_tech_lead,
        {"decision": "reject"},
        "Plan rejected: too risky",
    )


# --- whole runs: a real Celery worker, a real daphne, a real repository ---


@pytest.fixture
def reference_worker(transactional_db, live_env, daphne_url, repos_root, tmp_path_factory):
    """A `celery -A hol worker` with the default agent command (the reference agent), reaching the
    API at the test's daphne; both share the data dir, so the daphne accepts the worker's agent
    tokens, and the repositories under `repos_root` are allowed."""
    if connection.vendor != "postgresql":
        pytest.skip("a separate worker process needs the shared PostgreSQL test database")
    env = {key: value for key, value in live_env.items() if key != "HOL_AGENT_COMMAND"}
    env.update(
        HOL_TRACE_ROOT=str(tmp_path_factory.mktemp("traces")),
        HOL_API_URL=daphne_url,
        HOL_ALLOWED_REPO_PREFIXES=f"{repos_root}/",
        HOL_LEASE_SECONDS="5",
        HOL_AGENT_POLL_SECONDS="0.2",
        HOL_AGENT_KILL_GRACE_SECONDS="1",
        HOL_AUDIT_SEAL_DELAY_SECONDS="0",
        HOL_LOG_LEVEL="INFO",
    )
    celery_app.control.purge()
    process = start_celery_worker(env, tmp_path_factory.mktemp("celery-log") / "worker.log", concurrency=1)
    yield process
    stop_worker(process)


@pytest.fixture
def submit_change(reference_worker, settings, repos_root, alice_developer):
    settings.HOL_ALLOWED_REPO_PREFIXES = [f"{repos_root}/"]

    def submit(repo: Path, inputs: dict) -> Task:
        task, _ = task_services.task_create(
            actor=alice_developer,
            payload={
                "title": "Fix add()",
                "objective": "add() must add",
                "target": {"repo": str(repo), "ref": "main"},
                "constraints": {"time_budget_seconds": 180},
                "inputs": inputs,
                "assigned_to": alice_developer.username,
            },
        )
        task_services.work_order_enqueue(actor=alice_developer, task_id=task.pk, max_retries=0)
        return task

    return submit


def events(task: Task, event_type: str) -> list[ChatMessage]:
    return list(ChatMessage.objects.filter(task=task, event_type=event_type))


def wait_for_plan(task: Task) -> ChatMessage:
    question = ChatMessage.objects.filter(task=task, message_type="request", data__kind="plan")
    eventually(question.exists, what="the plan to be posted")
    return question.get()


def branches(repo: Path) -> list[str]:
    return git("branch", "--format=%(refname:short)", cwd=repo).split()


@pytest.mark.postgres
@pytest.mark.slow
def test_reference_agent_plans_edits_tests_and_pushes_after_approvals(submit_change, calc_repo, bob_tech_lead):
    task = submit_change(calc_repo, FIX)
    plan = wait_for_plan(task)
    assert "calc.py" in plan.content and "python -m unittest -v" in plan.content
    assert not events(task, "code_change")  # nothing is edited before a person approves
    browser = signed_in(bob_tech_lead)
    browser.post(f"/tasks/{task.pk}/answer", {"parent_id": plan.pk, "decision": "approve", "message": "go"})

    push = ApprovalRequest.objects.filter(task=task, action_type="git", operation="push")
    eventually(push.exists, what="the push approval request")
    assert push.get().status == "pending"
    assert push.get().action_details["branch"] == f"hol/{str(task.pk)[:8]}"
    approval_decide(actor=bob_tech_lead, request_id=push.get().pk, decision="approve", justification="tests pass")

    assert wait_for_status(task, Task.Status.COMPLETED, Task.Status.FAILED) == Task.Status.COMPLETED
    branch = f"hol/{str(task.pk)[:8]}"
    assert branch in branches(calc_repo)
    assert git("show", f"{branch}:calc.py", cwd=calc_repo) == "def add(a, b):\n    return a + b\n"
    assert git("show", f"{branch}:docs/CHANGES.md", cwd=calc_repo) == "add() adds.\n"
    assert git("show", "main:calc.py", cwd=calc_repo) == CALC  # main is left alone
    assert git("log", "-1", "--format=%an", branch, cwd=calc_repo).strip() == "HOL reference agent"

    diffs = {m.data["path"]: m.data["diff"] for m in events(task, "code_change")}
    assert "-    return a - b\n+    return a + b" in diffs["calc.py"]
    assert "+add() adds." in diffs["docs/CHANGES.md"]
    (result,) = events(task, "test_result")
    assert (result.data["passed"], result.data["failed"]) == (2, 0)
    assert {row["name"] for row in result.data["tests"]} == {
        "test_calc.AddTest.test_adds",
        "test_calc.AddTest.test_adds_zero",
    }
    (summary,) = events(task, "summary")
    assert summary.data["branch"] == branch
    assert "pull request: skipped (a local repository has no forge)" in summary.content
    assert summary.data["pull_request"] is None

    trace = Path(Execution.objects.get(task=task).trace_path)
    patch = (trace / "changes.patch").read_text()
    assert "+    return a + b" in patch and "Subject: [PATCH] add() must add" in patch
    assert git("rev-parse", branch, cwd=trace / "work") == git("rev-parse", branch, cwd=calc_repo)
    assert "OK" in (trace / "tests.log").read_text()
    # The agent completes its work order itself; the run records its end just after.
    eventually((trace / "result.json").exists, seconds=10, what="the run to record its end")
    assert json.loads((trace / "result.json").read_text())["exit_code"] == 0
    assert "[editing] Edited calc.py" in (trace / "output.log").read_text()
    assert branch in Execution.objects.get(task=task).output


@pytest.mark.postgres
@pytest.mark.slow
def test_rejected_push_keeps_the_commit_in_the_trace_folder_only(submit_change, calc_repo, bob_tech_lead):
    task = submit_change(calc_repo, FIX)
    plan = wait_for_plan(task)
    signed_in(bob_tech_lead).post(f"/tasks/{task.pk}/answer", {"parent_id": plan.pk, "decision": "approve"})
    push = ApprovalRequest.objects.filter(task=task, action_type="git", operation="push")
    eventually(push.exists, what="the push approval request")
    approval_decide(actor=bob_tech_lead, request_id=push.get().pk, decision="reject", justification="not yet")

    assert wait_for_status(task, Task.Status.COMPLETED, Task.Status.FAILED) == Task.Status.COMPLETED
    assert branches(calc_repo) == ["main"]
    (summary,) = events(task, "summary")
    assert "push: not approved (rejected: not yet)" in summary.content
    work = Path(Execution.objects.get(task=task).trace_path) / "work"
    assert git("show", f"hol/{str(task.pk)[:8]}:calc.py", cwd=work) == "def add(a, b):\n    return a + b\n"


@pytest.mark.postgres
@pytest.mark.slow
def test_failing_tests_fail_the_run_and_keep_the_uncommitted_patch(submit_change, calc_repo, bob_tech_lead):
    wrong = {**FIX, "edits": [{"path": "calc.py", "find": "return a - b", "replace": "return a * b"}]}
    task = submit_change(calc_repo, wrong)
    plan = wait_for_plan(task)
    signed_in(bob_tech_lead).post(f"/tasks/{task.pk}/answer", {"parent_id": plan.pk, "decision": "approve"})

    assert wait_for_status(task, Task.Status.COMPLETED, Task.Status.FAILED) == Task.Status.FAILED
    assert "the tests failed (exit 1); nothing was committed" in WorkOrder.objects.get(task=task).last_error
    (result,) = events(task, "test_result")
    assert result.data["failed"] == 2
    assert not ApprovalRequest.objects.filter(task=task).exists()
    assert branches(calc_repo) == ["main"]
    trace = Path(Execution.objects.get(task=task).trace_path)
    assert "+    return a * b" in (trace / "changes.patch").read_text()
    assert git("rev-parse", "HEAD", cwd=trace / "work") == git("rev-parse", "main", cwd=calc_repo)


@pytest.mark.postgres
@pytest.mark.slow
def test_rejected_plan_fails_the_run_without_editing(submit_change, calc_repo, bob_tech_lead):
    task = submit_change(calc_repo, FIX)
    plan = wait_for_plan(task)
    signed_in(bob_tech_lead).post(
        f"/tasks/{task.pk}/answer", {"parent_id": plan.pk, "decision": "reject", "message": "not this way"}
    )
    assert wait_for_status(task, Task.Status.COMPLETED, Task.Status.FAILED) == Task.Status.FAILED
    work_order = WorkOrder.objects.get(task=task)
    assert "plan rejected by bob_tech_lead: Plan rejected: not this way" in work_order.last_error
    assert work_order.retry_count == 0
    assert not events(task, "code_change")
    assert not ApprovalRequest.objects.filter(task=task).exists()
    assert branches(calc_repo) == ["main"]
    work = Path(Execution.objects.get(task=task).trace_path) / "work"
    assert (work / "calc.py").read_text() == CALC
    assert git("status", "--porcelain", cwd=work) == ""


@pytest.mark.postgres
@pytest.mark.slow
def test_edit_path_escaping_the_repository_is_refused_before_any_plan(submit_change, calc_repo, repos_root):
    inputs = {"edits": [{"path": "../pwned.txt", "content": "owned"}]}
    task = submit_change(calc_repo, inputs)
    assert wait_for_status(task, Task.Status.COMPLETED, Task.Status.FAILED) == Task.Status.FAILED
    assert "escapes the repository" in WorkOrder.objects.get(task=task).last_error
    assert not ChatMessage.objects.filter(task=task, message_type="request").exists()
    (error,) = events(task, "error")
    assert "../pwned.txt" in error.content
    assert not (repos_root / "pwned.txt").exists()


@pytest.mark.postgres
@pytest.mark.slow
def test_cancelling_while_the_plan_waits_stops_the_agent(submit_change, calc_repo, alice_developer):
    task = submit_change(calc_repo, FIX)
    wait_for_plan(task)
    task_services.task_update(actor=alice_developer, task_id=task.pk, changes={"status": "cancelled"})
    result = Execution.objects.filter(task=task)
    eventually(
        lambda: result.exists() and (Path(result.get().trace_path) / "result.json").exists(), what="the run to end"
    )
    assert json.loads((Path(result.get().trace_path) / "result.json").read_text())["ended"] == "stopped"
    assert not events(task, "code_change")
    assert branches(calc_repo) == ["main"]
