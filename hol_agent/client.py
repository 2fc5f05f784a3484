"""The HTTP client: one method per thing an agent does with HOL."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

# A long-poll asks the server to wait at most this long per request; the client loops for longer.
LONG_POLL_SECONDS = 30
REQUEST_SLACK_SECONDS = 15
CLAIM_RETRY_SECONDS = 1.0


class HolError(Exception):
    """Anything that went wrong talking to HOL."""


class HolUnreachable(HolError):
    """HOL could not be reached (connection refused, DNS, timeout, or a server error)."""


class HolHttpError(HolError):
    """HOL answered with a client error: `status`, and the body's stable `code` and `message`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass
class ApprovalOutcome:
    """`approved` is True only when the request was approved and consumed for this action."""

    approved: bool
    status: str
    request: dict[str, Any]
    reason: str = ""


class HolClient:
    def __init__(
        self,
        *,
        api_url: str | None = None,
        token: str | None = None,
        task_id: str | None = None,
        work_order_id: str | None = None,
        session_id: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.api_url = (api_url or os.environ.get("HOL_API_URL") or "http://127.0.0.1:8000").rstrip("/")
        self.token = token if token is not None else os.environ.get("HOL_TOKEN", "")
        self.task_id = task_id or os.environ.get("HOL_TASK_ID") or None
        self.work_order_id = work_order_id or os.environ.get("HOL_WORK_ORDER_ID") or None
        self.session_id = session_id or os.environ.get("HOL_SESSION_ID") or ""
        self.timeout = timeout
        if urllib.parse.urlsplit(self.api_url).scheme not in ("http", "https"):
            raise HolError(f"HOL_API_URL must be an http(s) URL, not {self.api_url!r}")

    # --- transport ---

    def request(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        *,
        query: dict | None = None,
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        """One API call: (status, parsed JSON body or None). 4xx raise HolHttpError; connection
        failures and 5xx raise HolUnreachable."""
        url = f"{self.api_url}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - scheme checked
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:  # noqa: S310
                return response.status, _parse(response.read())
        except urllib.error.HTTPError as error:
            payload = _parse(error.read()) or {}
            if error.code >= 500:
                raise HolUnreachable(f"HOL answered {error.code} for {method} {path}") from None
            code = payload.get("code", "error") if isinstance(payload, dict) else "error"
            message = payload.get("message", str(payload)) if isinstance(payload, dict) else str(payload)
            raise HolHttpError(error.code, code, message) from None
        except OSError as error:  # URLError, refused connections and timeouts are all OSErrors
            raise HolUnreachable(f"cannot reach HOL at {self.api_url}: {error}") from None

    def _need(self, value: str | None, name: str) -> str:
        if not value:
            raise HolError(f"{name} is not set")
        return value

    # --- the queue ---

    def claim(self, *, worker_id: str, wait: float = 0) -> dict | None:
        """Take the next work order for `worker_id`, waiting up to `wait` seconds; None if none.
        The server is asked to long-poll; one that answers at once is asked again each second."""
        deadline = time.monotonic() + wait
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            body: dict[str, Any] = {"worker_id": worker_id}
            if remaining:
                body["wait"] = min(remaining, LONG_POLL_SECONDS)
            status, payload = self.request(
                "POST", "/api/v1/queue/claim", body, timeout=self.timeout + body.get("wait", 0)
            )
            if status != 204:
                self.work_order_id = payload["id"]
                return payload
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(CLAIM_RETRY_SECONDS, remaining))

    def complete(self, *, output: str = "") -> dict:
        work_order_id = self._need(self.work_order_id, "HOL_WORK_ORDER_ID")
        return self.request("POST", "/api/v1/queue/complete", {"work_order_id": work_order_id, "output": output})[1]

    def fail(self, *, error: str, retryable: bool = True) -> dict:
        work_order_id = self._need(self.work_order_id, "HOL_WORK_ORDER_ID")
        body = {"work_order_id": work_order_id, "error": error, "retryable": retryable}
        return self.request("POST", "/api/v1/queue/fail", body)[1]

    # --- the task's chat and event stream ---

    def event(
        self,
        event_type: str,
        *,
        content: str = "",
        data: dict | None = None,
        stage: str = "",
        message_type: str = "status",
    ) -> dict:
        body: dict[str, Any] = {
            "task_id": self._need(self.task_id, "HOL_TASK_ID"),
            "message_type": message_type,
            "event_type": event_type,
            "content": content,
            "data": data or {},
        }
        if stage:
            body["stage"] = stage
        if self.session_id:
            body["session_id"] = self.session_id
        return self.request("POST", "/api/v1/chat/messages", body)[1]

    def log(self, text: str, *, stage: str = "") -> dict:
        return self.event("log", content=text, stage=stage)

    def ask(self, question: str, *, wait: float = 3600, stage: str = "") -> str | None:
        """Post a question to the task's humans and wait up to `wait` seconds for the answer
        (None if nobody answered in time)."""
        message = self.event("message", content=question, stage=stage, message_type="request")
        reply = self.wait_reply(message["id"], wait=wait)
        return None if reply is None else str(reply.get("content", ""))

    def wait_reply(self, message_id: int, *, wait: float = 3600) -> dict | None:
        """The first human answer to the question `message_id` (the whole message, `data`
        included), waiting up to `wait` seconds; None if nobody answered in time."""
        deadline = time.monotonic() + wait
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            poll = min(remaining, LONG_POLL_SECONDS)
            status, reply = self.request(
                "GET",
                f"/api/v1/chat/messages/{message_id}/reply",
                query={"wait": int(poll) or 1},
                timeout=poll + REQUEST_SLACK_SECONDS,
            )
            # The body is {"question_id", "answered", "reply": the answering message or null}.
            if status == 200 and isinstance(reply, dict) and reply.get("answered") and reply.get("reply"):
                return reply["reply"]

    # --- the task ---

    def task(self) -> dict:
        """The task this run works on: objective, target {repo, ref, path}, inputs, constraints."""
        task_id = self._need(self.task_id, "HOL_TASK_ID")
        return self.request("GET", f"/api/v1/tasks/{urllib.parse.quote(task_id, safe='')}")[1]

    # --- approvals ---

    def approval_ask(
        self,
        *,
        action: dict[str, Any],
        impact: str = "",
        workflow_id: str = "",
        thread_id: str = "",
        checkpoint_id: str = "",
    ) -> dict:
        """Open an approval request for `action` (action_type, resource_type, operation,
        environment, details) without waiting. Asking again for the same action from the same work
        order, session or thread returns the request still open for it, never a second one."""
        body: dict[str, Any] = {
            **action_fields(action),
            "action_impact": impact,
            "workflow_id": workflow_id,
            "thread_id": thread_id,
            "checkpoint_id": checkpoint_id,
        }
        if self.task_id:
            body["task_id"] = self.task_id
        if self.work_order_id:
            body["work_order_id"] = self.work_order_id
        return self.request("POST", "/api/v1/approvals", body)[1]

    def approval_get(self, request_id: str) -> dict:
        return self.request("GET", f"/api/v1/approvals/{urllib.parse.quote(str(request_id))}")[1]

    def approval_wait(self, request: dict, *, wait: float) -> dict:
        """`request` (a request as HOL returned it) once it is decided, or as it stands after
        `wait` seconds of long-polling if nobody decided in time."""
        deadline = time.monotonic() + wait
        while request["status"] == "pending":
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return request
            poll = min(remaining, LONG_POLL_SECONDS)
            _, request = self.request(
                "GET",
                f"/api/v1/approvals/{urllib.parse.quote(str(request['id']))}",
                query={"wait": int(poll) or 1},
                timeout=poll + REQUEST_SLACK_SECONDS,
            )
        return request

    def approval_find(self, *, thread_id: str, checkpoint_id: str) -> dict | None:
        """The newest request of this account opened at `checkpoint_id` of workflow thread
        `thread_id`, whatever its status; None if there is none."""
        query = {"thread_id": thread_id, "checkpoint_id": checkpoint_id, "limit": 1}
        _, page = self.request("GET", "/api/v1/approvals", query=query)
        results = page.get("results", []) if isinstance(page, dict) else []
        return results[0] if results else None

    def approval_consume(self, request_id: str, *, action: dict[str, Any]) -> dict:
        """Use an approved request for exactly `action`, once; a 409 HolHttpError otherwise."""
        path = f"/api/v1/approvals/{urllib.parse.quote(str(request_id))}/consume"
        return self.request("POST", path, action_fields(action))[1]

    def approve(
        self,
        *,
        action_type: str,
        resource_type: str = "",
        operation: str = "",
        environment: str = "",
        details: dict | None = None,
        wait: float = 3600,
        impact: str = "",
        thread_id: str = "",
    ) -> ApprovalOutcome:
        """Ask for approval of one action and wait up to `wait` seconds for the decision. An
        approved request is consumed for exactly this action before `approved` is True."""
        action = {
            "action_type": action_type,
            "resource_type": resource_type,
            "operation": operation,
            "environment": environment,
            "details": details or {},
        }
        request = self.approval_ask(action=action, impact=impact, thread_id=thread_id)
        request = self.approval_wait(request, wait=wait)
        if request["status"] == "pending":
            return ApprovalOutcome(False, "pending", request, "no decision yet; the request stays pending")
        if request["status"] != "approved":
            reason = request.get("rejection_reason") or request["status"]
            return ApprovalOutcome(False, request["status"], request, reason)
        try:
            request = self.approval_consume(request["id"], action=action)
        except HolHttpError as error:
            return ApprovalOutcome(False, "not_consumed", request, error.message)
        return ApprovalOutcome(True, "approved", request)

    def report_executed(
        self,
        *,
        action: dict[str, Any],
        tool_use_id: str,
        tool_name: str = "",
        outcome: str = "succeeded",
        thread_id: str = "",
    ) -> dict:
        """Tell HOL an action ran (`action` as `approve` takes it). The answer says whether the
        action needed approval (`risky`) and whether it ran without one (`flagged`)."""
        body: dict[str, Any] = {
            **action,
            "tool_use_id": tool_use_id,
            "tool_name": tool_name,
            "outcome": outcome,
            "thread_id": thread_id,
        }
        if self.task_id:
            body["task_id"] = self.task_id
        if self.work_order_id:
            body["work_order_id"] = self.work_order_id
        return self.request("POST", "/api/v1/approvals/executed", body)[1]


ACTION_FIELDS = ("action_type", "resource_type", "operation", "environment", "details")


def action_fields(action: dict[str, Any]) -> dict[str, Any]:
    """The action as HOL's API takes it: every field present, nothing else (an unknown key is a
    mistake the caller should hear about, not something HOL silently drops)."""
    unknown = set(action) - set(ACTION_FIELDS)
    if unknown:
        raise HolError(f"unknown action fields: {', '.join(sorted(unknown))}; expected {', '.join(ACTION_FIELDS)}")
    if not action.get("action_type"):
        raise HolError("an action needs an action_type")
    return {
        "action_type": action["action_type"],
        "resource_type": action.get("resource_type") or "",
        "operation": action.get("operation") or "",
        "environment": action.get("environment") or "",
        "details": action.get("details") or {},
    }


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {"code": "error", "message": raw[:500].decode("utf-8", "replace")}
