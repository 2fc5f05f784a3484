"""Claude Code's PreToolUse hook: risky tool calls (shell commands, file writes and edits) are sent
through HOL for approval, and the hook answers Claude Code with allow or deny.

Claude Code runs the hook with the call as JSON on stdin (`session_id`, `cwd`, `hook_event_name`,
`tool_name`, `tool_input`, `tool_use_id`) and reads the decision from stdout. The hook fails closed:
HOL unreachable, a malformed call, or no decision within HOL_HOOK_WAIT_SECONDS all deny, the last
with a reason telling the agent to try again later (the request stays pending, and asking again
for the same action finds it). The hook's own timeout in Claude Code's settings must exceed the
wait, or Claude Code gives up on the hook first (see agents/claude-settings.json).
"""

from __future__ import annotations

import json
import os
import sys
from typing import TextIO

from hol_agent.client import HolClient, HolError, HolUnreachable

# Claude Code gives the hook 600 s (agents/claude-settings.json). The wait plus the request and
# consume round trips (30 s each at most) and the last poll's slack must end well before that, or
# the timed-out hook would let the tool run.
DEFAULT_WAIT_SECONDS = 480.0
FILE_TOOLS = {"Write": "write", "Edit": "write", "MultiEdit": "write", "NotebookEdit": "write"}


def action_for(tool_name: str, tool_input: dict, cwd: str) -> dict | None:
    """The HOL action a tool call amounts to, or None for tools HOL does not gate."""
    if tool_name == "Bash":
        return {
            "action_type": "command",
            "resource_type": "shell",
            "operation": "execute",
            "details": {"command": str(tool_input.get("command", "")), "cwd": cwd},
        }
    if tool_name in FILE_TOOLS:
        path = tool_input.get("file_path") or tool_input.get("notebook_path") or ""
        return {
            "action_type": "file",
            "resource_type": "file",
            "operation": FILE_TOOLS[tool_name],
            "details": {"path": str(path), "tool": tool_name},
        }
    return None


def decision(permission: str, reason: str) -> dict:
    return {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": permission,
            "permissionDecisionReason": reason,
        }
    }


def decide(call: dict, client: HolClient, *, wait: float, environment: str = "") -> dict | None:
    """The hook's answer for one tool call (None: not a gated tool, Claude Code decides as usual)."""
    tool_input = call.get("tool_input") if isinstance(call.get("tool_input"), dict) else {}
    action = action_for(str(call.get("tool_name", "")), tool_input, str(call.get("cwd", "")))
    if action is None:
        return None
    try:
        outcome = client.approve(
            **action,
            environment=environment,
            wait=wait,
            impact=f"Claude Code {call.get('tool_name')} call",
            thread_id=str(call.get("session_id", ""))[:200],
        )
    except HolUnreachable as error:
        return decision("deny", f"HOL cannot be reached, so risky actions are denied: {error}")
    except HolError as error:
        return decision("deny", f"HOL refused the approval request: {error}")
    request_id = outcome.request.get("id", "")
    if outcome.approved:
        return decision("allow", f"approved in HOL (request {request_id})")
    if outcome.status == "pending":
        return decision(
            "deny",
            f"waiting for a human to approve this in HOL (request {request_id}); try the same action again later",
        )
    return decision("deny", f"HOL did not approve this ({outcome.status}): {outcome.reason}")


def main(stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """Always a decision on stdout and exit 0: Claude Code lets a tool run when a hook fails any
    other way, so every failure, expected or not, becomes a deny (fail closed)."""
    try:
        return _answer(stdin, stdout)
    except BaseException as error:  # whatever went wrong, the tool must not run
        json.dump(decision("deny", f"HOL hook failed, so the action is denied: {type(error).__name__}"), stdout)
        return 0


def _answer(stdin: TextIO, stdout: TextIO) -> int:
    try:
        call = json.load(stdin)
        if not isinstance(call, dict):
            raise ValueError("the hook input is not a JSON object")
    except ValueError as error:
        json.dump(decision("deny", f"HOL hook could not read the tool call: {error}"), stdout)
        return 0
    try:
        client = HolClient(session_id=str(call.get("session_id", "")))
    except HolError as error:
        json.dump(decision("deny", f"HOL hook is misconfigured: {error}"), stdout)
        return 0
    wait = float(os.environ.get("HOL_HOOK_WAIT_SECONDS", DEFAULT_WAIT_SECONDS))
    answer = decide(call, client, wait=wait, environment=os.environ.get("HOL_ENVIRONMENT", ""))
    if answer is not None:
        json.dump(answer, stdout)
    return 0
