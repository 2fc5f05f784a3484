"""Claude Code's PostToolUse hook: after a shell command, a file write or an edit ran, tell HOL
what ran, so HOL can flag a risky action that no approval covered (an agent or subagent that went
around the PreToolUse gate).

Claude Code runs the hook with the call as JSON on stdin (`session_id`, `cwd`, `hook_event_name`
"PostToolUse", or "PostToolUseFailure" for a call that failed, `tool_name`, `tool_input`,
`tool_response`, `tool_use_id`). The action is built exactly as the PreToolUse hook builds it, so
HOL finds the approval that hook used by its action hash. The tool's output is never sent (it may
hold secrets); only whether the call succeeded.

The action already ran, so this hook can only report: it always exits 0. When HOL cannot be
reached or refuses the report, it says so in one line on stderr (Claude Code shows it to the user)
and Claude carries on. When HOL flags the action, the hook tells Claude so through
`additionalContext`, so the agent learns to ask first.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import TextIO

from hol_agent.claude_hook import action_for
from hol_agent.client import HolClient, HolError, HolUnreachable

POST_EVENTS = ("PostToolUse", "PostToolUseFailure")
# HOL refuses action details over 256 KiB, and so would have refused to approve them: a larger
# command or path is sent shortened, with its digest, and can only be flagged.
MAX_DETAILS_BYTES = 200 * 1024
PREVIEW_CHARS = 4000
# A report is one small request; Claude waits for the hook, so it must not hang on HOL.
REPORT_TIMEOUT_SECONDS = 10.0


def bounded(details: dict) -> dict:
    """The details as the PreToolUse hook sent them, unless they are too large to have been
    approved: then a preview and the SHA-256 of what ran."""
    encoded = json.dumps(details, sort_keys=True).encode()
    if len(encoded) <= MAX_DETAILS_BYTES:
        return details
    shortened = {key: value[:PREVIEW_CHARS] if isinstance(value, str) else value for key, value in details.items()}
    return {**shortened, "truncated": True, "sha256": hashlib.sha256(encoded).hexdigest()}


def report(call: dict, client: HolClient, *, environment: str = "", stderr: TextIO = sys.stderr) -> dict | None:
    """Report one tool call to HOL; the hook's output for Claude Code (None: nothing to say)."""
    event = str(call.get("hook_event_name") or "PostToolUse")
    if event not in POST_EVENTS:
        print(f"HOL post hook: ignoring a {event[:40]} event (it reports PostToolUse)", file=stderr)
        return None
    tool_name = str(call.get("tool_name", ""))
    tool_input = call.get("tool_input") if isinstance(call.get("tool_input"), dict) else {}
    action = action_for(tool_name, tool_input, str(call.get("cwd", "")))
    if action is None:
        return None
    tool_use_id = str(call.get("tool_use_id") or "")[:200]
    if not tool_use_id:
        print("HOL post hook: the call has no tool_use_id, so it was not reported to HOL", file=stderr)
        return None
    action = {**action, "environment": environment, "details": bounded(action["details"])}
    try:
        answer = client.report_executed(
            action=action,
            tool_use_id=tool_use_id,
            tool_name=tool_name,
            outcome="failed" if event == "PostToolUseFailure" else "succeeded",
            thread_id=str(call.get("session_id", ""))[:200],
        )
    except HolUnreachable as error:
        print(f"HOL post hook: HOL cannot be reached, so this {tool_name} call was not reported: {error}", file=stderr)
        return None
    except HolError as error:
        print(f"HOL post hook: HOL refused the report of this {tool_name} call: {error}", file=stderr)
        return None
    if not (isinstance(answer, dict) and answer.get("flagged")):
        return None
    return {
        "hookSpecificOutput": {
            "hookEventName": event,
            "additionalContext": (
                f"HOL: this {tool_name} call needed a human's approval ({answer.get('risk_level')} risk) and ran "
                "without one. It has been reported to the people responsible for this task. Ask for approval "
                "before risky actions."
            ),
        }
    }


def main(stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    """Exit 0 whatever happens: the action already ran, and a failing hook must not break Claude."""
    try:
        try:
            call = json.load(stdin)
        except ValueError as error:
            print(f"HOL post hook: could not read the tool call: {error}", file=stderr)
            return 0
        if not isinstance(call, dict):
            print("HOL post hook: the hook input is not a JSON object", file=stderr)
            return 0
        client = HolClient(session_id=str(call.get("session_id", "")), timeout=REPORT_TIMEOUT_SECONDS)
        answer = report(call, client, environment=os.environ.get("HOL_ENVIRONMENT", ""), stderr=stderr)
        if answer is not None:
            json.dump(answer, stdout)
    except Exception as error:  # never break Claude over a report
        print(f"HOL post hook failed, so this call was not reported: {type(error).__name__}: {error}", file=stderr)
    return 0
