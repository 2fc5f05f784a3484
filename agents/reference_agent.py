"""The bundled reference agent: a real code-change run with no language model. What to change
comes from the task's `inputs` (a plan: file edits, a test command); the agent

1. reads its task through HOL's API and checks the target repository against the allowed roots;
2. clones it into `work/` inside its trace folder, on a new branch `hol/<task id prefix>`;
3. posts the plan as a question and waits for a person to approve or reject it;
4. applies the edits, streaming each diff (`code_change` events);
5. runs the test command under a time limit, streaming the results as a table (`test_result`);
6. verifies, commits on the branch and writes `changes.patch` in the trace folder;
7. asks HOL's approval before pushing the branch to the repository it came from and, for a
   repository on a configured forge (agents/forge.py), opens its pull request;
8. completes its work order with a summary (or fails it, for good, saying why).

Only the standard library, git (as a subprocess) and the bundled `hol_agent` client are used.
The input schema is in the README ("The reference agent").
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository's hol_agent importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.forge import Destination, ForgeError, destination_of, open_pull_request
from hol_agent import HolClient, HolError, HolUnreachable

PLAN_KEYS = {"edits", "test_command", "test_timeout_seconds", "commit_message", "push"}
EDIT_KEYS = {"path", "find", "replace", "content"}
MAX_EDITS = 50
MAX_PATH_CHARS = 300
MAX_TEXT_BYTES = 256 * 1024  # each find, replace and content
MAX_FILE_BYTES = 1024 * 1024  # a file the agent edits, before and after the edit
MAX_TEST_WORDS = 50
MAX_TEST_WORD_CHARS = 1000
DEFAULT_TEST_TIMEOUT_SECONDS = 300
MAX_TEST_TIMEOUT_SECONDS = 3600
MAX_COMMIT_MESSAGE_CHARS = 4000
MAX_DIFF_CHARS = 48 * 1024  # one diff event stays well under the chat's limits
MAX_TEST_ROWS = 500
MAX_TEST_NAME_CHARS = 300
MAX_LISTED_FILES = 100  # files a test run left behind, as reported
OUTPUT_TAIL_CHARS = 4000
SNIPPET_CHARS = 80
# What the repository's test command inherits: none of HOL's variables (its token stays here).
TEST_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME")
GIT_IDENTITY = ("HOL reference agent", "reference-agent@hol.invalid")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RunFailed(Exception):
    """The run cannot go on; the message is the work order's failure reason."""


# --- the plan ---


@dataclass(frozen=True)
class Edit:
    path: str
    find: str | None
    replace: str
    content: str | None

    def describe(self) -> str:
        if self.content is not None:
            return f"write {self.path} ({len(self.content.encode())} bytes)"
        return f"in {self.path}, replace {_snippet(self.find or '')} with {_snippet(self.replace)}"


@dataclass(frozen=True)
class Plan:
    edits: tuple[Edit, ...]
    test_command: tuple[str, ...]
    test_timeout_seconds: int
    commit_message: str
    push: bool


def _snippet(text: str) -> str:
    text = text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "…"
    return repr(text)


def _text(value: Any, what: str, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise RunFailed(f"{what} must be a string")
    if not allow_empty and not value:
        raise RunFailed(f"{what} must not be empty")
    if "\x00" in value:
        raise RunFailed(f"{what} must not contain the NUL character")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        raise RunFailed(f"{what} is larger than {MAX_TEXT_BYTES // 1024} KiB")
    return value


def check_relative_path(value: Any, what: str) -> str:
    """A path relative to the repository that cannot leave it by its spelling: no absolute path,
    no `..`, nothing inside `.git`. Symlinks are checked against the checkout (`inside_repo`)."""
    if not isinstance(value, str) or not value:
        raise RunFailed(f"{what} must be a non-empty string")
    if len(value) > MAX_PATH_CHARS:
        raise RunFailed(f"{what} is longer than {MAX_PATH_CHARS} characters")
    if _CONTROL.search(value) or "\\" in value:
        raise RunFailed(f"{what} must not contain control characters or backslashes")
    path = PurePosixPath(value)
    if path.is_absolute():
        raise RunFailed(f"{what} {value!r} must be relative to the repository")
    if ".." in path.parts:
        raise RunFailed(f"{what} {value!r} escapes the repository ('..')")
    if any(part.lower() == ".git" for part in path.parts):
        raise RunFailed(f"{what} {value!r} points into .git")
    if not path.parts or path.parts == (".",):
        raise RunFailed(f"{what} {value!r} names no file")
    return path.as_posix()


def parse_plan(inputs: Any, *, objective: str, task_id: str) -> Plan:
    """The task's inputs as a plan, or RunFailed naming what is wrong with them."""
    if not isinstance(inputs, dict) or "edits" not in inputs:
        raise RunFailed("the task's inputs hold no plan: the reference agent needs inputs.edits (see the README)")
    unknown = sorted(set(inputs) - PLAN_KEYS)
    if unknown:
        raise RunFailed(f"unknown keys in the task's inputs: {', '.join(unknown)}")
    raw_edits = inputs["edits"]
    if not isinstance(raw_edits, list) or not raw_edits:
        raise RunFailed("inputs.edits must be a non-empty list")
    if len(raw_edits) > MAX_EDITS:
        raise RunFailed(f"inputs.edits has more than {MAX_EDITS} edits")
    edits = []
    for number, raw in enumerate(raw_edits, start=1):
        what = f"edit {number}"
        if not isinstance(raw, dict):
            raise RunFailed(f"{what} must be an object")
        unknown = sorted(set(raw) - EDIT_KEYS)
        if unknown:
            raise RunFailed(f"{what} has unknown keys: {', '.join(unknown)}")
        path = check_relative_path(raw.get("path"), f"{what}: path")
        if ("content" in raw) == ("find" in raw):
            raise RunFailed(f"{what} needs either content (write the file) or find and replace")
        if "content" in raw:
            if "replace" in raw:
                raise RunFailed(f"{what}: replace goes with find, not with content")
            edits.append(Edit(path, None, "", _text(raw["content"], f"{what}: content")))
        else:
            if "replace" not in raw:
                raise RunFailed(f"{what}: find needs a replace")
            find = _text(raw["find"], f"{what}: find", allow_empty=False)
            edits.append(Edit(path, find, _text(raw["replace"], f"{what}: replace"), None))
    command = inputs.get("test_command", [])
    if not isinstance(command, list) or not all(isinstance(word, str) for word in command):
        raise RunFailed("inputs.test_command must be a list of strings (argv, no shell)")
    if len(command) > MAX_TEST_WORDS or any(len(word) > MAX_TEST_WORD_CHARS or "\x00" in word for word in command):
        raise RunFailed(f"inputs.test_command is limited to {MAX_TEST_WORDS} words of {MAX_TEST_WORD_CHARS} characters")
    timeout = inputs.get("test_timeout_seconds", DEFAULT_TEST_TIMEOUT_SECONDS)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= MAX_TEST_TIMEOUT_SECONDS:
        raise RunFailed(f"inputs.test_timeout_seconds must be an integer from 1 to {MAX_TEST_TIMEOUT_SECONDS}")
    default_message = f"{(objective.strip().splitlines() or ['HOL change'])[0][:72]}\n\nHOL task {task_id}"
    message = inputs.get("commit_message") or default_message
    if not isinstance(message, str) or len(message) > MAX_COMMIT_MESSAGE_CHARS or "\x00" in message:
        raise RunFailed(f"inputs.commit_message must be a string of at most {MAX_COMMIT_MESSAGE_CHARS} characters")
    push = inputs.get("push", True)
    if not isinstance(push, bool):
        raise RunFailed("inputs.push must be true or false")
    return Plan(tuple(edits), tuple(command), timeout, message, push)


# --- the repository ---


def allowed_prefixes() -> list[str]:
    return [p.strip() for p in os.environ.get("HOL_ALLOWED_REPO_PREFIXES", "").split(",") if p.strip()]


def resolve_source(repo: str, *, prefixes: list[str], allow_network: bool) -> str:
    """Where to clone from. A local path must resolve (symlinks followed) under an allowed root
    that is itself a local path; a remote one must be https and the task must allow the network.
    No allowed prefixes denies everything."""
    local = repo.startswith("/")  # a path, exactly as written; a URL, in any case
    if not any(repo.startswith(p) if local else repo.lower().startswith(p.lower()) for p in prefixes):
        raise RunFailed(f"repository {repo!r} is not under an allowed prefix (HOL_ALLOWED_REPO_PREFIXES)")
    if repo.startswith("/"):
        path = Path(repo).resolve()
        roots = [Path(prefix).resolve() for prefix in prefixes if prefix.startswith("/")]
        if not any(path == root or path.is_relative_to(root) for root in roots):
            raise RunFailed(f"repository {repo!r} resolves to {path}, outside every allowed root")
        if not path.is_dir():
            raise RunFailed(f"no repository at {path}")
        return str(path)
    if repo.startswith("https://"):
        if not allow_network:
            raise RunFailed("cloning a remote repository needs the task's allow_network constraint")
        return repo
    raise RunFailed(f"repository {repo!r}: the reference agent clones local paths and https:// URLs only")


def git_env() -> dict[str, str]:
    env = {name: os.environ[name] for name in TEST_ENV if name in os.environ}
    # No system or user configuration (hooks, credential helpers, aliases) shapes what git does.
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0")
    return env


def git(*args: str, cwd: Path, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    command = ["git", "-c", "core.hooksPath=/dev/null", "-c", "protocol.ext.allow=never", *args]
    try:
        result = subprocess.run(
            command, cwd=cwd, env={**git_env(), **(env or {})}, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise RunFailed(f"git {args[0]} took longer than {timeout:.0f}s") from None
    if result.returncode != 0:
        raise RunFailed(f"git {args[0]} failed: {result.stderr.strip()[-1000:]}")
    return result.stdout


def checkout(source: str, ref: str, *, work: Path, branch: str, timeout: float, env: dict[str, str]) -> str:
    """Clone `source` into `work` and start `branch` at `ref`; returns the base commit."""
    if ref.startswith("-") or ".." in ref or _CONTROL.search(ref):
        raise RunFailed(f"target ref {ref!r} is not a plain ref")
    git(
        "clone",
        "--quiet",
        "--no-hardlinks",
        "--no-checkout",
        "--",
        source,
        str(work),
        cwd=work.parent,
        timeout=timeout,
        env=env,
    )
    for candidate in (f"refs/remotes/origin/{ref}", f"refs/tags/{ref}", ref):
        try:
            base = git("rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}", cwd=work).strip()
        except RunFailed:
            continue
        git("checkout", "--quiet", "-b", branch, base, cwd=work)
        return base
    raise RunFailed(f"ref {ref!r} not found in {source}")


def inside_repo(repo: Path, relative: str) -> Path:
    """`relative` in the checkout, refused when a symlink on the way leads out of it (or into
    .git) or the file itself is a symlink."""
    target = repo / relative
    resolved = target.resolve()
    root = repo.resolve()
    if not resolved.is_relative_to(root) or resolved.relative_to(root).parts[:1] == (".git",):
        raise RunFailed(f"path {relative!r} escapes the repository through a symlink")
    if target.is_symlink():
        raise RunFailed(f"path {relative!r} is a symlink; the agent edits files only")
    return target


# --- editing ---


def apply_edit(repo: Path, edit: Edit) -> tuple[str, str]:
    """Apply one edit; returns the text before (empty for a new file) and after."""
    target = inside_repo(repo, edit.path)
    before = ""
    if target.exists():
        if not target.is_file():
            raise RunFailed(f"{edit.path} is not a regular file")
        if target.stat().st_size > MAX_FILE_BYTES:
            raise RunFailed(f"{edit.path} is larger than {MAX_FILE_BYTES // 1024} KiB")
        try:
            before = target.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise RunFailed(f"{edit.path} is not UTF-8 text") from None
    if edit.find is not None:
        if not target.exists():
            raise RunFailed(f"{edit.path} does not exist, so nothing in it can be replaced")
        count = before.count(edit.find)
        if count != 1:
            raise RunFailed(f"{edit.path}: the text to find occurs {count} times; it must occur exactly once")
        after = before.replace(edit.find, edit.replace, 1)
    else:
        after = edit.content or ""
    if len(after.encode()) > MAX_FILE_BYTES:
        raise RunFailed(f"{edit.path} would grow beyond {MAX_FILE_BYTES // 1024} KiB")
    target.parent.mkdir(parents=True, exist_ok=True)
    inside_repo(repo, edit.path)  # the directories just made cannot be links, but the check is cheap
    target.write_bytes(after.encode())
    return before, after


def unified_diff(path: str, before: str, after: str, *, new_file: bool) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile="/dev/null" if new_file else f"a/{path}",
        tofile=f"b/{path}",
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


# --- testing ---


@dataclass
class TestRun:
    command: list[str]
    exit_code: int | None
    timed_out: bool
    duration_seconds: float
    tests: list[dict]
    output_tail: str

    @property
    def passed(self) -> bool:
        return not self.timed_out and self.exit_code == 0

    def counts(self) -> dict[str, int]:
        return {k: sum(1 for t in self.tests if t["status"] == k) for k in ("passed", "failed", "skipped")}


_UNITTEST_LINE = re.compile(
    r"^(\w+) \(([\w.]+)\)(?:\s.*)? \.\.\. (ok|FAIL|ERROR|skipped|expected failure|unexpected success)", re.M
)
_PYTEST_LINE = re.compile(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)", re.M)
_OUTCOMES = {
    "ok": "passed",
    "expected failure": "passed",
    "PASSED": "passed",
    "XFAIL": "passed",
    "skipped": "skipped",
    "SKIPPED": "skipped",
}


def parse_test_output(output: str) -> list[dict]:
    """One row per test from `python -m unittest -v` or `pytest -v` output; empty when neither."""
    rows = []
    for method, where, outcome in _UNITTEST_LINE.findall(output):
        name = where if where.endswith(f".{method}") else f"{where}.{method}"
        rows.append({"name": name[:MAX_TEST_NAME_CHARS], "status": _OUTCOMES.get(outcome, "failed")})
    for name, outcome in _PYTEST_LINE.findall(output):
        rows.append({"name": name[:MAX_TEST_NAME_CHARS], "status": _OUTCOMES.get(outcome, "failed")})
    return rows[:MAX_TEST_ROWS]


def run_tests(command: list[str], *, cwd: Path, timeout: float, output_file: Path) -> TestRun:
    """Run the test command in its own process group with none of HOL's environment; the group
    is killed at the time limit. Its output goes to `output_file` (not memory: it may be large)."""
    argv = list(command)
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable  # the interpreter this agent runs on, as HOL_AGENT_COMMAND does
    env = {name: os.environ[name] for name in TEST_ENV if name in os.environ}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # keep the checkout clean of caches
    started = time.monotonic()
    timed_out = False
    with output_file.open("wb") as out:
        try:
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            raise RunFailed(f"the test command could not start: {error}") from None
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # also whatever the tests left running
        process.wait()
    duration = round(time.monotonic() - started, 3)
    with output_file.open("rb") as out:
        out.seek(max(0, output_file.stat().st_size - 4 * MAX_FILE_BYTES))
        output = out.read().decode("utf-8", "replace")
    tests = parse_test_output(output)
    if not tests:
        outcome = "passed" if process.returncode == 0 and not timed_out else "failed"
        tests = [{"name": " ".join(command), "status": outcome, "duration": duration}]
    return TestRun(list(command), process.returncode, timed_out, duration, tests, output[-OUTPUT_TAIL_CHARS:])


# --- the run ---


class ReferenceAgent:
    def __init__(self, client: HolClient, *, trace_dir: Path) -> None:
        self.client = client
        self.trace_dir = trace_dir
        self.started = time.monotonic()
        self.deadline = self.started + 900.0

    def remaining(self) -> float:
        return max(1.0, self.deadline - time.monotonic())

    def say(self, event_type: str, content: str, *, stage: str, data: dict | None = None) -> dict:
        print(f"[{stage}] {content.splitlines()[0] if content else event_type}", flush=True)
        return self.client.event(event_type, content=content, stage=stage, data=data)

    def run(self) -> str:
        task = self.client.task()
        task_id = str(task["id"])
        constraints = task.get("constraints") or {}
        self.deadline = self.started + float(constraints.get("time_budget_seconds") or 900)
        target = task.get("target") or {}
        repo, ref, subdir = str(target.get("repo", "")), str(target.get("ref") or "main"), target.get("path") or ""
        self.say(
            "status",
            f"Objective: {str(task['objective'])[:4000]}",
            stage="intent_extraction",
            data={"repo": repo, "ref": ref},
        )

        plan = parse_plan(task.get("inputs"), objective=str(task["objective"]), task_id=task_id)
        source = resolve_source(
            repo, prefixes=allowed_prefixes(), allow_network=constraints.get("allow_network") is True
        )
        test_dir = check_relative_path(subdir, "target.path") if subdir else ""

        branch = f"hol/{task_id[:8]}"
        work = self.trace_dir / "work"
        if work.exists():
            raise RunFailed(f"{work} already exists; a run starts from a fresh trace folder")
        destination = destination_of(source)
        base = checkout(
            source, ref, work=work, branch=branch, timeout=self.remaining(), env=destination.git_environment
        )
        self.say(
            "status",
            f"Checked out {repo} @ {ref} ({base[:12]}) on branch {branch}",
            stage="impact_analysis",
            data={"branch": branch, "base": base, "work_dir": str(work)},
        )
        for edit in plan.edits:
            inside_repo(work, edit.path)  # refuse a symlinked escape before anyone is asked

        self.ask_plan(plan, repo=repo, ref=ref, branch=branch)

        changed: list[str] = []
        for edit in plan.edits:
            existed = (work / edit.path).exists()
            before, after = apply_edit(work, edit)
            diff = unified_diff(edit.path, before, after, new_file=not existed)
            truncated = len(diff) > MAX_DIFF_CHARS
            if edit.path not in changed and before != after:
                changed.append(edit.path)
            self.say(
                "code_change",
                f"Edited {edit.path}" if existed else f"Created {edit.path}",
                stage="editing",
                data={"path": edit.path, "diff": diff[:MAX_DIFF_CHARS], "truncated": truncated},
            )

        tests = None
        if plan.test_command:
            cwd = inside_repo(work, test_dir) if test_dir else work
            timeout = min(plan.test_timeout_seconds, self.remaining())
            self.say("status", f"Running {' '.join(plan.test_command)} (limit {timeout:.0f}s)", stage="testing")
            tests = run_tests(
                list(plan.test_command), cwd=cwd, timeout=timeout, output_file=self.trace_dir / "tests.log"
            )
            counts = tests.counts()
            verdict = (
                "timed out" if tests.timed_out else ("passed" if tests.passed else f"failed (exit {tests.exit_code})")
            )
            self.say(
                "test_result",
                f"Tests {verdict}: " + ", ".join(f"{v} {k}" for k, v in counts.items()),
                stage="testing",
                data={
                    **counts,
                    "tests": tests.tests,
                    "command": tests.command,
                    "exit_code": tests.exit_code,
                    "timed_out": tests.timed_out,
                    "duration_seconds": tests.duration_seconds,
                    "output_tail": tests.output_tail,
                },
            )
        else:
            self.say("status", "No test command in the plan: tests not run", stage="testing")

        patch = self.trace_dir / "changes.patch"
        if changed:
            git("add", "--", *changed, cwd=work)
        if tests is not None and not tests.passed:
            patch.write_text(git("diff", "--cached", base, cwd=work), encoding="utf-8")
            raise RunFailed(f"the tests {verdict}; nothing was committed; the uncommitted patch is {patch}")
        commit = self.verify_and_commit(plan, work=work, base=base, changed=changed, patch=patch)
        push_note, pr_note, pr_url = self.publish(
            plan,
            work=work,
            repo=repo,
            ref=ref,
            task_id=task_id,
            branch=branch,
            commit=commit,
            files=changed,
            destination=destination,
        )
        tests_note = "tests: not run" if tests is None else f"tests: passed ({tests.counts()['passed']} passed)"
        summary = "\n".join(
            [
                f"Branch {branch} at {commit[:12]} (base {base[:12]}) changes {len(changed)} file(s): "
                + ", ".join(changed),
                tests_note,
                f"patch: {patch}",
                push_note,
                pr_note,
            ]
        )
        self.say(
            "summary",
            summary,
            stage="pr_creation",
            data={
                "branch": branch,
                "commit": commit,
                "base": base,
                "files": changed,
                "patch": str(patch),
                "work_dir": str(work),
                "push": push_note,
                "pull_request": pr_url,
            },
        )
        return summary

    def ask_plan(self, plan: Plan, *, repo: str, ref: str, branch: str) -> None:
        """Post the plan as a question and wait for a person's decision: only an explicit
        approval goes on; anything else, or no answer within the time budget, stops the run."""
        steps = [f"{number}. {edit.describe()}" for number, edit in enumerate(plan.edits, start=1)]
        tests = " ".join(plan.test_command) or "none"
        text = "\n".join(
            [
                f"Plan for {repo} @ {ref}, on branch {branch}:",
                *steps,
                f"Tests: {tests} (limit {plan.test_timeout_seconds}s)",
                "Then: commit on the branch" + (", and push it once HOL approves the push." if plan.push else "."),
                "Approve or reject this plan.",
            ]
        )[:60000]
        data = {
            "kind": "plan",
            "plan": {
                "branch": branch,
                "edits": [
                    {"path": e.path, "mode": "write" if e.content is not None else "replace"} for e in plan.edits
                ],
                "test_command": list(plan.test_command),
                "test_timeout_seconds": plan.test_timeout_seconds,
                "push": plan.push,
            },
        }
        print("[planning] plan posted; waiting for a decision", flush=True)
        question = self.client.event("message", content=text, stage="planning", data=data, message_type="request")
        reply = self.client.wait_reply(question["id"], wait=self.remaining())
        if reply is None:
            raise RunFailed("nobody approved the plan within the time budget")
        decision = (reply.get("data") or {}).get("decision") if isinstance(reply.get("data"), dict) else None
        answer = str(reply.get("content", "")).strip()
        who = reply.get("sender") or "a person"
        if decision == "approve" or (decision is None and answer.lower() in ("approve", "approved", "yes")):
            self.say("status", f"Plan approved by {who}", stage="planning", data={"decision": "approve"})
            return
        raise RunFailed(f"plan rejected by {who}: {answer or 'no reason given'}")

    def verify_and_commit(self, plan: Plan, *, work: Path, base: str, changed: list[str], patch: Path) -> str:
        staged = [line for line in git("diff", "--cached", "--name-only", cwd=work).splitlines() if line]
        if not staged:
            raise RunFailed("the edits changed nothing")
        unexpected = sorted(set(staged) - set(changed))
        if unexpected:
            raise RunFailed(f"files outside the plan are staged: {', '.join(unexpected)}")
        stray = [
            line
            for line in git("status", "--porcelain", "--untracked-files=all", cwd=work).splitlines()
            if line[:1] == " " or line.startswith("??")
        ]
        checks = {"files_changed": staged, "left_uncommitted": [line[3:] for line in stray[:MAX_LISTED_FILES]]}
        self.say("status", f"Verified: {len(staged)} file(s) changed as planned", stage="verification", data=checks)
        name, email = GIT_IDENTITY
        git(
            "-c",
            f"user.name={name}",
            "-c",
            f"user.email={email}",
            "commit",
            "--quiet",
            "-m",
            plan.commit_message,
            cwd=work,
        )
        commit = git("rev-parse", "HEAD", cwd=work).strip()
        patch.write_text(git("format-patch", "--stdout", f"{base}..{commit}", cwd=work), encoding="utf-8")
        return commit

    def publish(
        self,
        plan: Plan,
        *,
        work: Path,
        repo: str,
        ref: str,
        task_id: str,
        branch: str,
        commit: str,
        files: list[str],
        destination: Destination,
    ) -> tuple[str, str, str | None]:
        """Push the branch to the repository it came from once HOL approves that action and, for
        a repository on the configured forge, open its pull request. Returns the push note, the
        pull-request note and the pull request's URL."""
        repository = destination.repository
        if not plan.push:
            return "push: not asked for (inputs.push is false)", "pull request: skipped (no push asked for)", None
        if destination.refusal:  # a remote that is not on a configured forge: nothing can be pushed
            why = destination.refusal
            return f"push: skipped ({why})", f"pull request: skipped ({why})", None
        outcome = self.client.approve(
            action_type="git",
            resource_type="repository",
            operation="push",
            details={
                "repository": repo,
                "branch": branch,
                "commit": commit,
                "files": files,
                "pull_request": bool(repository),
            },
            impact=f"pushes branch {branch} ({len(files)} file(s) changed) to {repo}"
            + (" and opens a pull request" if repository else ""),
            wait=self.remaining(),
        )
        level = outcome.request.get("risk_level", "?")
        if not outcome.approved:
            self.say(
                "status",
                f"Push not approved ({outcome.status}): {outcome.reason}",
                stage="pr_creation",
                data={"approval": outcome.request.get("id"), "status": outcome.status},
            )
            note = f"push: not approved ({outcome.status}: {outcome.reason}); the branch stays in {work}"
            return note, "pull request: skipped (the push was not approved)", None
        git(
            "push",
            "--quiet",
            "origin",
            f"refs/heads/{branch}:refs/heads/{branch}",
            cwd=work,
            timeout=self.remaining(),
            env=destination.git_environment,
        )
        self.say(
            "status",
            f"Pushed {branch} to {repo} ({level} risk, approved)",
            stage="pr_creation",
            data={"approval": outcome.request.get("id"), "branch": branch, "commit": commit},
        )
        push_note = f"push: {branch} pushed to {repo} (approval {outcome.request.get('id')}, {level} risk)"
        if not repository:
            return push_note, "pull request: skipped (a local repository has no forge)", None
        title = plan.commit_message.splitlines()[0] if plan.commit_message.strip() else f"HOL task {task_id}"
        body = f"{plan.commit_message}\n\nMade by HOL's reference agent for task {task_id}."
        try:
            pull = open_pull_request(
                destination.forge,
                repository,
                head=branch,
                base=ref,
                title=title,
                body=body,
                timeout=min(30.0, self.remaining()),
            )
        except ForgeError as error:
            self.say("error", f"Pull request not opened: {error}", stage="pr_creation", data={"reason": str(error)})
            return push_note, f"pull request: not opened ({error}); the branch is pushed", None
        url = pull["html_url"]
        self.say(
            "status",
            f"Opened pull request {url}",
            stage="pr_creation",
            data={"pull_request": url, "number": pull.get("number")},
        )
        return push_note, f"pull request: {url}", url


def settle(call: Any, *, attempts: int = 3) -> Any:
    """Complete or fail the work order, again after a moment if HOL could not answer (a busy
    database may pick the call as a deadlock victim): the outcome must reach HOL."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except HolUnreachable:
            if attempt == attempts:
                raise
            time.sleep(attempt)
    return None


def main() -> int:
    if shutil.which("git") is None:
        print("reference agent: git is not installed", file=sys.stderr, flush=True)
        return 1
    client = HolClient()
    trace_dir = Path(os.environ.get("HOL_TRACE_DIR") or Path.cwd()).resolve()
    agent = ReferenceAgent(client, trace_dir=trace_dir)
    try:
        summary = agent.run()
        settle(lambda: client.complete(output=summary))
    except RunFailed as failure:
        reason = str(failure)
        print(f"reference agent: {reason}", file=sys.stderr, flush=True)
        with contextlib.suppress(HolError):
            client.event("error", content=reason, stage="", data={"reason": reason})
        try:
            # A plan or an input that is wrong stays wrong: no retry.
            settle(lambda: client.fail(error=reason, retryable=False))
        except HolError as error:
            print(f"reference agent: could not fail the work order: {error}", file=sys.stderr, flush=True)
        return 1
    except HolUnreachable as error:
        print(f"reference agent: {error}", file=sys.stderr, flush=True)
        return 2
    except HolError as error:  # HOL refused a call: the run fails, and may be retried
        print(f"reference agent: {error}", file=sys.stderr, flush=True)
        return 1
    print("reference agent: finished", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
