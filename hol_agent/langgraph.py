"""An approval gate for LangGraph agents: a node that asks HOL before a risky step and pauses the
graph until a human decides. Import it explicitly (`from hol_agent.langgraph import approval_gate`);
it needs the `langgraph` package, the rest of hol_agent does not.

    builder.add_node("gate", approval_gate(HolClient(), action=lambda state: {...}))
    builder.add_node("execute", ...)
    builder.add_node("rejected", ...)
    graph = builder.compile(checkpointer=MemorySaver())

The first run of the gate asks HOL and, unless the action is approved at once, calls LangGraph's
`interrupt()` with the request. LangGraph runs an interrupted node again from the top when the
graph is resumed; the gate then finds the request it opened at this step (by the thread id and the
step's checkpoint namespace, which stay the same across resumes), never asking a second time, and
reads the decision from HOL: approved is consumed and goes to `on_approved`; rejected, expired or
cancelled goes to `on_rejected`; still pending pauses the graph again. What the graph was resumed
with is ignored: only HOL's answer decides.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from langgraph.config import get_config
from langgraph.types import Command, Interrupt, interrupt

from hol_agent.client import HolClient, HolHttpError, action_fields

INTERRUPT_KIND = "hol_approval"
# HOL keeps thread and checkpoint ids up to this length; longer ones are stored as their digest.
ID_MAX_LENGTH = 200
DECIDED_AGAINST = ("rejected", "expired", "cancelled")

Action = Mapping[str, Any] | Callable[[Any], Mapping[str, Any]]


def approval_gate(
    client: HolClient | Callable[[], HolClient],
    action: Action,
    *,
    on_approved: str = "execute",
    on_rejected: str = "rejected",
    wait: float = 0,
    impact: str | Callable[[Any], str] = "",
    result_key: str | None = None,
) -> Callable[[Any], Command]:
    """A LangGraph node that lets the graph go on to `on_approved` only once a human approved
    `action` in HOL (a dict, or a function of the state returning one: action_type,
    resource_type, operation, environment, details), and to `on_rejected` otherwise.

    `client` is a HolClient or a function making one when the node runs. Each run of the node
    waits up to `wait` seconds for a decision before it pauses the graph; running out of time is
    never a decision. With `result_key`, the node also writes what HOL said to that state key:
    {"request_id", "status", "approved", "reason", "risk_level"}. The graph needs a checkpointer
    and a `thread_id`, as every graph that interrupts does. When HOL cannot be reached the node
    raises HolUnreachable and goes nowhere; running the graph again retries it."""

    def gate(state: Any) -> Command:
        hol = client if isinstance(client, HolClient) else client()
        wanted = action_fields(dict(action(state) if callable(action) else action))
        step = _step()
        request = hol.approval_find(**step)
        # A used approval authorised one run of this step; running it again (its result was lost,
        # or the graph replays it) needs a new one.
        if request is None or request.get("consumed_at"):
            request = hol.approval_ask(action=wanted, impact=impact(state) if callable(impact) else impact, **step)
        request = hol.approval_wait(request, wait=wait)
        # On a resume LangGraph answers the interrupts this run already passed at once; the first
        # one not yet answered pauses the graph again.
        while request["status"] == "pending":
            interrupt(_pending(request, wanted))
            request = hol.approval_get(request["id"])
        return _route(hol, request, wanted, on_approved=on_approved, on_rejected=on_rejected, result_key=result_key)

    return gate


def resume_approvals(interrupts: Iterable[Interrupt]) -> Command:
    """A Command resuming every approval gate among `interrupts` (`result["__interrupt__"]`, or
    `graph.get_state(config).interrupts`); other interrupts stay pending. Each resumed gate reads
    its decision from HOL again and pauses once more if there is none yet, so resuming early is
    harmless."""
    return Command(resume={item.id: item.value["approval_request_id"] for item in interrupts if is_approval(item)})


def is_approval(item: Interrupt) -> bool:
    return isinstance(item.value, dict) and item.value.get("kind") == INTERRUPT_KIND


def _step() -> dict[str, str]:
    """Where in which run of the graph this node is: the thread, and the checkpoint namespace of
    the running task (node name and task id), which a resume of the task keeps and any other run
    of the node does not."""
    configurable = get_config().get("configurable", {})
    thread_id, namespace = str(configurable.get("thread_id") or ""), str(configurable.get("checkpoint_ns") or "")
    if not thread_id or not namespace:
        raise RuntimeError(
            "approval_gate runs inside a graph compiled with a checkpointer and invoked with a thread_id"
        )
    return {"thread_id": _fit(thread_id), "checkpoint_id": _fit(namespace)}


def _fit(value: str) -> str:
    if len(value) <= ID_MAX_LENGTH:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def _pending(request: dict, action: dict) -> dict:
    return {
        "kind": INTERRUPT_KIND,
        "approval_request_id": request["id"],
        "status": request["status"],
        "risk_level": request.get("risk_level"),
        "assigned_role": request.get("assigned_role"),
        "expires_at": request.get("expires_at"),
        "action": action,
    }


def _route(
    hol: HolClient, request: dict, action: dict, *, on_approved: str, on_rejected: str, result_key: str | None
) -> Command:
    status, reason = request["status"], ""
    if status == "approved":
        try:
            request = hol.approval_consume(request["id"], action=action)
        except HolHttpError as error:  # used already, its window passed, or the work order was lost
            status, reason = "not_consumed", error.message
    elif status in DECIDED_AGAINST:
        reason = request.get("rejection_reason") or status
    else:
        raise RuntimeError(f"HOL answered an approval status this gate does not know: {status!r}")
    approved = status == "approved"
    update = {}
    if result_key:
        update[result_key] = {
            "request_id": request["id"],
            "status": status,
            "approved": approved,
            "reason": reason,
            "risk_level": request.get("risk_level"),
        }
    return Command(update=update, goto=on_approved if approved else on_rejected)
