"""The dashboard's figures, read for the page and for `/ws/dashboard/` alike: a handful of
grouped, indexed queries, never a count over a whole large table."""

from __future__ import annotations

from typing import Any

from approvals.selectors import approvals_decidable_by
from chat.selectors import questions_waiting
from tasks.models import AgentSession
from tasks.selectors import queue_status


def dashboard_snapshot(*, actor: Any) -> dict[str, Any]:
    status = queue_status(completed=False)
    sessions = (
        AgentSession.objects.filter(status=AgentSession.Status.ACTIVE)
        .select_related("task", "worker")
        .order_by("-last_activity_at")[:20]
    )
    questions = questions_waiting(limit=20)
    return {
        "workers": status["workers"],
        "depth": status["depth"],
        "claimed": status["claimed"],
        "running": status["running"],
        "failed": status["failed"],
        "sessions": [
            {
                "session_id": session.session_id,
                "worker": session.worker.name,
                "task_id": str(session.task_id) if session.task_id else None,
                "task_title": session.task.title if session.task_id else None,
                "last_activity_at": session.last_activity_at.isoformat(),
            }
            for session in sessions
        ],
        "questions": [
            {
                "id": question.pk,
                "task_id": str(question.task_id),
                "task_title": question.task.title,
                "content": question.content[:200],
                "created_at": question.created_at.isoformat(),
            }
            for question in questions
        ],
        "approvals_waiting": approvals_decidable_by(actor=actor).count(),
    }
