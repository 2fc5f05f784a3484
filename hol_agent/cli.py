"""`python -m hol_agent COMMAND`: the agent's side of HOL from a shell.

Exit codes: 0 done (for `approve`: approved and consumed); 1 refused (rejected, expired, nothing
to claim, an error answer from HOL); 2 HOL could not be reached; 3 `approve` or `ask` had no
decision or answer within --wait (the request stays pending; asking again later is safe).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from hol_agent.client import HolClient, HolError, HolHttpError, HolUnreachable

OK, REFUSED, UNREACHABLE, PENDING = 0, 1, 2, 3


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def cmd_claim(client: HolClient, args: argparse.Namespace) -> int:
    worker_id = args.worker_id or os.environ.get("HOL_WORKER_ID")
    if not worker_id:
        print("hol_agent: claim needs --worker-id or HOL_WORKER_ID", file=sys.stderr)
        return REFUSED
    work_order = client.claim(worker_id=worker_id, wait=args.wait)
    if work_order is None:
        print("hol_agent: nothing to claim", file=sys.stderr)
        return REFUSED
    _print(work_order)
    return OK


def cmd_complete(client: HolClient, args: argparse.Namespace) -> int:
    _print(client.complete(output=args.output))
    return OK


def cmd_fail(client: HolClient, args: argparse.Namespace) -> int:
    _print(client.fail(error=args.error, retryable=not args.no_retry))
    return OK


def cmd_log(client: HolClient, args: argparse.Namespace) -> int:
    client.log(args.text, stage=args.stage)
    return OK


def cmd_event(client: HolClient, args: argparse.Namespace) -> int:
    client.event(args.type, content=args.content, data=args.data, stage=args.stage)
    return OK


def cmd_ask(client: HolClient, args: argparse.Namespace) -> int:
    answer = client.ask(args.question, wait=args.wait, stage=args.stage)
    if answer is None:
        print("hol_agent: no answer yet", file=sys.stderr)
        return PENDING
    print(answer)
    return OK


def cmd_approve(client: HolClient, args: argparse.Namespace) -> int:
    try:
        outcome = client.approve(
            action_type=args.action_type,
            resource_type=args.resource_type,
            operation=args.operation,
            environment=args.environment,
            details=args.details,
            wait=args.wait,
            impact=args.impact,
        )
    except HolHttpError as error:
        print(f"hol_agent: approval refused: {error}", file=sys.stderr)
        return REFUSED
    print(json.dumps({"id": outcome.request.get("id"), "status": outcome.status, "reason": outcome.reason}))
    if outcome.approved:
        return OK
    return PENDING if outcome.status == "pending" else REFUSED


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="hol-agent", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = root.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Callable | None, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(handler=handler)
        return sub

    claim = command("claim", cmd_claim, "claim the next work order (prints it)")
    claim.add_argument("--worker-id", help="default: HOL_WORKER_ID")
    claim.add_argument("--wait", type=float, default=0, help="long-poll up to N seconds")

    complete = command("complete", cmd_complete, "complete HOL_WORK_ORDER_ID")
    complete.add_argument("--output", default="")

    fail = command("fail", cmd_fail, "fail HOL_WORK_ORDER_ID")
    fail.add_argument("--error", required=True)
    fail.add_argument("--no-retry", action="store_true", help="fail for good, no retry")

    log = command("log", cmd_log, "stream a log line to the task")
    log.add_argument("text")
    log.add_argument("--stage", default="")

    event = command("event", cmd_event, "post an event (status, code_change, test_result, ...)")
    event.add_argument("--type", required=True)
    event.add_argument("--data", type=_json_object, default={})
    event.add_argument("--content", default="")
    event.add_argument("--stage", default="")

    ask = command("ask", cmd_ask, "ask the task's humans a question and print the answer")
    ask.add_argument("question")
    ask.add_argument("--wait", type=float, default=3600)
    ask.add_argument("--stage", default="")

    approve = command("approve", cmd_approve, "ask for approval of an action and wait for the decision")
    approve.add_argument("--action-type", required=True)
    approve.add_argument("--resource-type", default="")
    approve.add_argument("--operation", default="")
    approve.add_argument("--environment", default="")
    approve.add_argument("--details", type=_json_object, default={})
    approve.add_argument("--impact", default="")
    approve.add_argument("--wait", type=float, default=3600, help="seconds to wait for a decision")
    command("hook", None, "Claude Code PreToolUse hook: JSON call on stdin, decision on stdout")
    command("post-hook", None, "Claude Code PostToolUse hook: reports the call that ran to HOL; always exits 0")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "hook":
        # The hook always answers with a decision on stdout (it denies on any failure); an exit
        # code of its own could let Claude Code run the tool anyway.
        from hol_agent.claude_hook import main as hook_main

        return hook_main()
    if args.command == "post-hook":
        # The action already ran: the report never fails the call (exit 0, a line on stderr).
        from hol_agent.claude_post_hook import main as post_hook_main

        return post_hook_main()
    try:
        client = HolClient()
        return args.handler(client, args)
    except HolUnreachable as error:
        print(f"hol_agent: {error}", file=sys.stderr)
        return UNREACHABLE
    except HolError as error:
        print(f"hol_agent: {error}", file=sys.stderr)
        return REFUSED
