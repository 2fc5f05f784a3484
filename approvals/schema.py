"""OpenAPI for the one approvals endpoint drf-spectacular cannot see: the async long-poll read
(`approvals.wait_api.approval_detail` is a plain Django async view, not a DRF view)."""

from __future__ import annotations

from typing import Any


def add_approval_long_poll(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: document GET /api/v1/approvals/{id}/?wait=N."""
    result.setdefault("paths", {})["/api/v1/approvals/{id}/"] = {
        "get": {
            "operationId": "v1_approvals_retrieve",
            "summary": "Read an approval request, optionally waiting while it is pending",
            "description": (
                "Answers at once when the request is decided (approved, rejected, expired, cancelled) "
                "or when `wait` is 0; otherwise waits until it is decided or `wait` seconds pass "
                "(capped by HOL_APPROVAL_WAIT_MAX_SECONDS) and answers it as it is then. A waiting "
                "agent holds no server thread and no database connection. Treat `expired` as not "
                "approved."
            ),
            "tags": ["v1"],
            "parameters": [
                {"in": "path", "name": "id", "required": True, "schema": {"type": "string", "format": "uuid"}},
                {
                    "in": "query",
                    "name": "wait",
                    "required": False,
                    "schema": {"type": "number", "minimum": 0},
                    "description": "seconds to wait while the request is pending",
                },
            ],
            "security": [{"jwtAuth": []}, {"cookieAuth": []}],
            "responses": {
                "200": {
                    "description": "the request",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApprovalRequest"}}},
                },
                "400": {"description": "`wait` is not a number of seconds ≥ 0"},
                "401": {"description": "no or invalid credentials"},
                "404": {"description": "no such request, or another agent's"},
            },
        }
    }
    return result
