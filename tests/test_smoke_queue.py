from __future__ import annotations

import pytest


@pytest.mark.django_db
def test_agent_runs_the_whole_loop(as_agent_007, new_task):
    task = as_agent_007.post("/api/v1/tasks", new_task(), format="json")
    assert task.status_code == 201, task.content
    worker = as_agent_007.post("/api/v1/workers", {"name": "w1"}, format="json").json()
    enq = as_agent_007.post("/api/v1/queue/enqueue", {"task_id": task.json()["id"]}, format="json")
    assert enq.status_code == 201, enq.content
    claim = as_agent_007.post("/api/v1/queue/claim", {"worker_id": worker["id"]}, format="json")
    assert claim.status_code == 200, claim.content
    assert claim.json()["task"]["id"] == task.json()["id"]
    done = as_agent_007.post(
        "/api/v1/queue/complete", {"work_order_id": claim.json()["id"], "output": "ok"}, format="json"
    )
    assert done.status_code == 200, done.content
    assert as_agent_007.get(f"/api/v1/tasks/{task.json()['id']}").json()["status"] == "completed"
    assert as_agent_007.post("/api/v1/queue/claim", {"worker_id": worker["id"]}, format="json").status_code == 204
    status = as_agent_007.get("/api/v1/queue/status").json()
    assert status["completed"] == 1 and status["workers"]["idle"] == 1
