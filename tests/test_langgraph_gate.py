"""The LangGraph approval gate: real graphs (the langgraph package, a MemorySaver checkpointer)
against HOL served by a real daphne, with a tech lead deciding through the API."""

from __future__ import annotations

import operator
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, TypedDict

import httpx
import pytest
from langgraph.checkpoint.memory import MemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from hol_agent import HolClient, HolUnreachable
from hol_agent.langgraph import approval_gate, resume_approvals
from tests.live import manage, token_for

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db


class Flow(TypedDict, total=False):
    path: str
    log: Annotated[list[str], operator.add]
    approval: dict


def write(path: str) -> dict:
    """Writing a file: medium risk, so a tech lead decides."""
    return {"action_type": "file", "resource_type": "file", "operation": "write", "details": {"path": path}}


def read(path: str) -> dict:
    """Reading a file: low risk, approved by HOL at once."""
    return {"action_type": "file", "resource_type": "file", "operation": "read", "details": {"path": path}}


def one_gate_graph(hol: HolClient, *, action=lambda state: write(state["path"]), wait: float = 0):
    builder = StateGraph(Flow)
    builder.add_node("gate", approval_gate(hol, action, wait=wait, result_key="approval"))
    builder.add_node("execute", lambda state: {"log": [f"wrote {state['path']}"]})
    builder.add_node("rejected", lambda state: {"log": [f"left {state['path']} alone"]})
    builder.add_edge(START, "gate")
    builder.add_edge("execute", END)
    builder.add_edge("rejected", END)
    return builder.compile(checkpointer=MemorySaver())


def branch(hol: HolClient, name: str):
    """One branch of a parallel graph: its own gate, execute and rejected nodes."""
    builder = StateGraph(Flow)
    builder.add_node("gate", approval_gate(hol, write(f"/srv/{name}.py")))
    builder.add_node("execute", lambda state: {"log": [f"{name} executed"]})
    builder.add_node("rejected", lambda state: {"log": [f"{name} rejected"]})
    builder.add_edge(START, "gate")
    return builder.compile()


def two_branch_graph(hol: HolClient):
    builder = StateGraph(Flow)
    builder.add_node("branch_a", branch(hol, "a"))
    builder.add_node("branch_b", branch(hol, "b"))
    builder.add_edge(START, "branch_a")
    builder.add_edge(START, "branch_b")
    return builder.compile(checkpointer=MemorySaver())


# Signing in costs a password hash; these tests are quick, so one token lasts the module (as the
# tech lead's session does).
@pytest.fixture(scope="module")
def hol(base_url, accounts) -> HolClient:
    return HolClient(api_url=base_url, token=token_for(base_url, "demo_agent", accounts))


@pytest.fixture
def thread() -> dict:
    return {"configurable": {"thread_id": f"test-{uuid.uuid4()}"}}


def requests_of(http: httpx.Client, thread: dict) -> list[dict]:
    response = http.get("/api/v1/approvals", params={"thread_id": thread["configurable"]["thread_id"]})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def approve(http: httpx.Client, request_id: str) -> None:
    response = http.post(f"/api/v1/approvals/{request_id}/approve", json={})
    assert response.status_code == 200, response.text


def reject(http: httpx.Client, request_id: str, reason: str) -> None:
    response = http.post(f"/api/v1/approvals/{request_id}/reject", json={"justification": reason})
    assert response.status_code == 200, response.text


def test_first_run_pauses_the_graph_with_one_pending_request(hol, tech_lead, thread):
    result = one_gate_graph(hol).invoke({"path": "/srv/app.py"}, thread)
    [paused] = result["__interrupt__"]
    [request] = requests_of(tech_lead, thread)
    assert paused.value["approval_request_id"] == request["id"]
    assert (paused.value["status"], request["status"]) == ("pending", "pending")
    assert request["action_details"] == {"path": "/srv/app.py"}
    assert result.get("log", []) == []


def test_running_the_graph_again_before_a_decision_keeps_the_one_request_and_pauses_again(hol, tech_lead, thread):
    graph = one_gate_graph(hol)
    first = graph.invoke({"path": "/srv/app.py"}, thread)
    graph.invoke(resume_approvals(first["__interrupt__"]), thread)
    again = graph.invoke(None, thread)
    [request] = requests_of(tech_lead, thread)
    assert again["__interrupt__"][0].value["approval_request_id"] == request["id"]
    assert request["status"] == "pending"
    assert graph.get_state(thread).next == ("gate",)


def test_resuming_with_a_made_up_approval_does_not_get_past_the_gate(hol, tech_lead, thread):
    graph = one_gate_graph(hol)
    [paused] = graph.invoke({"path": "/srv/app.py"}, thread)["__interrupt__"]
    result = graph.invoke(Command(resume={paused.id: {"status": "approved"}}), thread)
    assert "__interrupt__" in result
    assert result.get("log", []) == []
    assert requests_of(tech_lead, thread)[0]["status"] == "pending"


def test_an_approval_resumes_the_graph_into_execute_and_uses_the_approval(hol, tech_lead, thread):
    graph = one_gate_graph(hol)
    paused = graph.invoke({"path": "/srv/app.py"}, thread)["__interrupt__"]
    approve(tech_lead, paused[0].value["approval_request_id"])
    result = graph.invoke(resume_approvals(paused), thread)
    assert result["log"] == ["wrote /srv/app.py"]
    assert "__interrupt__" not in result
    assert (result["approval"]["status"], result["approval"]["approved"]) == ("approved", True)
    [request] = requests_of(tech_lead, thread)
    assert request["consumed_at"] is not None


def test_replaying_an_approved_step_asks_again_instead_of_reusing_the_used_approval(hol, tech_lead, thread):
    graph = one_gate_graph(hol)
    paused = graph.invoke({"path": "/srv/app.py"}, thread)["__interrupt__"]
    approve(tech_lead, paused[0].value["approval_request_id"])
    graph.invoke(resume_approvals(paused), thread)
    [before_gate] = [s for s in graph.get_state_history(thread) if s.next == ("gate",)]
    replay = graph.invoke(None, before_gate.config)
    assert "__interrupt__" in replay
    assert [r["status"] for r in requests_of(tech_lead, thread)] == ["pending", "approved"]


class LosesOneConsumeAnswer(HolClient):
    """HOL uses the approval, but its answer is lost on the way back once (the connection drops)."""

    lost = False

    def approval_consume(self, request_id, *, action):
        answer = super().approval_consume(request_id, action=action)
        if not self.lost:
            self.lost = True
            raise HolUnreachable("connection reset")
        return answer


def test_a_gate_run_again_after_its_use_of_the_approval_went_unanswered_asks_again(hol, tech_lead, thread):
    flaky = LosesOneConsumeAnswer(api_url=hol.api_url, token=hol.token)
    graph = one_gate_graph(flaky)
    paused = graph.invoke({"path": "/srv/app.py"}, thread)["__interrupt__"]
    approve(tech_lead, paused[0].value["approval_request_id"])
    with pytest.raises(HolUnreachable):
        graph.invoke(resume_approvals(paused), thread)
    again = graph.invoke(None, thread)
    assert again.get("log", []) == []
    [asked_again] = again["__interrupt__"]
    newest, used = requests_of(tech_lead, thread)
    assert (newest["status"], used["status"], used["consumed_at"] is not None) == ("pending", "approved", True)
    assert asked_again.value["approval_request_id"] == newest["id"]


def test_a_rejection_resumes_the_graph_into_rejected_with_the_reason(hol, tech_lead, thread):
    graph = one_gate_graph(hol)
    paused = graph.invoke({"path": "/srv/app.py"}, thread)["__interrupt__"]
    reject(tech_lead, paused[0].value["approval_request_id"], "not on a Friday")
    result = graph.invoke(resume_approvals(paused), thread)
    assert result["log"] == ["left /srv/app.py alone"]
    assert result["approval"] | {"request_id": None} == {
        "request_id": None,
        "status": "rejected",
        "approved": False,
        "reason": "not on a Friday",
        "risk_level": "medium",
    }
    assert len(requests_of(tech_lead, thread)) == 1


def test_an_expired_request_resumes_the_graph_into_rejected(hol, tech_lead, thread, live_env):
    graph = one_gate_graph(hol)
    paused = graph.invoke({"path": "/srv/app.py"}, thread)["__interrupt__"]
    request_id = paused[0].value["approval_request_id"]
    backdate = (
        "from approvals.models import ApprovalRequest; from django.utils import timezone; "
        f"ApprovalRequest.objects.filter(pk='{request_id}').update(expires_at=timezone.now())"
    )
    manage(live_env, "shell", "-c", backdate)
    result = graph.invoke(resume_approvals(paused), thread)
    assert result["log"] == ["left /srv/app.py alone"]
    assert result["approval"]["status"] == "expired"
    assert [r["status"] for r in requests_of(tech_lead, thread)] == ["expired"]


def test_running_out_of_wait_pauses_the_graph_and_is_no_decision(hol, tech_lead, thread):
    started = time.monotonic()
    result = one_gate_graph(hol, wait=1).invoke({"path": "/srv/app.py"}, thread)
    assert time.monotonic() - started >= 1
    assert "__interrupt__" in result
    assert result.get("log", []) == []
    assert requests_of(tech_lead, thread)[0]["status"] == "pending"


def test_a_decision_made_while_the_gate_waits_goes_on_without_pausing(hol, tech_lead, thread):
    def approve_once_asked():
        deadline = time.monotonic() + 10
        while not (asked := requests_of(tech_lead, thread)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if asked:
            approve(tech_lead, asked[0]["id"])

    human = threading.Thread(target=approve_once_asked)
    human.start()
    result = one_gate_graph(hol, wait=15).invoke({"path": "/srv/app.py"}, thread)
    human.join()
    assert "__interrupt__" not in result
    assert result["log"] == ["wrote /srv/app.py"]


def test_a_low_risk_action_is_approved_by_hol_and_runs_without_pausing(hol, tech_lead, thread):
    result = one_gate_graph(hol, action=lambda state: read(state["path"])).invoke({"path": "/srv/app.py"}, thread)
    assert result["log"] == ["wrote /srv/app.py"]
    [request] = requests_of(tech_lead, thread)
    assert request["consumed_at"] is not None


def test_parallel_gates_ask_separately_and_each_branch_resumes_on_its_own_decision(hol, tech_lead, thread):
    graph = two_branch_graph(hol)
    paused = graph.invoke({"log": []}, thread)["__interrupt__"]
    asked = {r["action_details"]["path"]: r["id"] for r in requests_of(tech_lead, thread)}
    assert set(asked) == {"/srv/a.py", "/srv/b.py"}
    assert {item.value["approval_request_id"] for item in paused} == set(asked.values())

    approve(tech_lead, asked["/srv/a.py"])
    halfway = graph.invoke(resume_approvals(paused), thread)
    assert halfway["log"] == ["a executed"]
    [still_paused] = halfway["__interrupt__"]
    assert still_paused.value["approval_request_id"] == asked["/srv/b.py"]

    reject(tech_lead, asked["/srv/b.py"], "b stays as it is")
    done = graph.invoke(resume_approvals(halfway["__interrupt__"]), thread)
    assert done["log"] == ["a executed", "b rejected"]
    assert "__interrupt__" not in done
    assert len(requests_of(tech_lead, thread)) == 2


def test_parallel_gates_in_one_graph_route_each_to_its_own_node(hol, tech_lead, thread):
    builder = StateGraph(Flow)
    for name in ("a", "b"):
        builder.add_node(f"gate_{name}", approval_gate(hol, write(f"/srv/{name}.py"), on_approved=f"execute_{name}"))
        builder.add_node(f"execute_{name}", lambda state, name=name: {"log": [f"{name} executed"]})
        builder.add_edge(START, f"gate_{name}")
    builder.add_node("rejected", lambda state: {"log": ["rejected"]})
    graph = builder.compile(checkpointer=MemorySaver())
    paused = graph.invoke({"log": []}, thread)["__interrupt__"]
    asked = {r["action_details"]["path"]: r["id"] for r in requests_of(tech_lead, thread)}
    approve(tech_lead, asked["/srv/a.py"])
    halfway = graph.invoke(resume_approvals(paused), thread)
    [still_paused] = halfway["__interrupt__"]
    assert still_paused.value["approval_request_id"] == asked["/srv/b.py"]
    consumed = {r["action_details"]["path"]: r["consumed_at"] is not None for r in requests_of(tech_lead, thread)}
    assert consumed == {"/srv/a.py": True, "/srv/b.py": False}
    reject(tech_lead, asked["/srv/b.py"], "no")
    done = graph.invoke(resume_approvals(halfway["__interrupt__"]), thread)
    assert sorted(done["log"]) == ["a executed", "rejected"]
    assert len(requests_of(tech_lead, thread)) == 2


def test_importing_hol_agent_loads_neither_langgraph_nor_django():
    check = "import sys, hol_agent; assert not {'langgraph', 'django'} & set(sys.modules), sorted(sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", check],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
