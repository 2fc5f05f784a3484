"""Each page reads a small, fixed number of queries however much data there is: no query per row
shown (N+1). Every page is rendered with a little data, then with ten times as much, and must not
read one query more (bench/pages.py measures the same pages against a large database)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from approvals.services import approval_request_create
from chat.services import chat_message_post
from notifications.services import notification_create
from tasks.services import task_create, work_order_claim
from tests.factories import TASK

MEDIUM = {"action_type": "file", "operation": "write"}
# A generous ceiling: the point is that the count does not grow with the data.
MOST_QUERIES = 16


@pytest.fixture
def bob_client(client, bob_tech_lead):
    client.force_login(bob_tech_lead)
    return client


def add_tasks(count: int, *, agent, lead, worker_id) -> list:
    """`count` tasks, each with a stream (an answered question, an open one, a log line), an
    approval request waiting on a tech lead and a notification for the lead; one is claimed."""
    tasks = []
    for i in range(count):
        task, _ = task_create(actor=agent, payload={**TASK, "title": f"Task {i}"})
        add_stream(task, agent=agent, lead=lead)
        notification_create(user=lead, kind="question", message=f"question {i}")
        tasks.append(task)
    work_order_claim(actor=agent, worker_id=worker_id)
    return tasks


def add_stream(task, *, agent, lead) -> None:
    answered = chat_message_post(actor=agent, task_id=task.pk, content="Which DB?", message_type="request")
    chat_message_post(actor=lead, task_id=task.pk, content="PostgreSQL", message_type="response", parent_id=answered.pk)
    chat_message_post(actor=agent, task_id=task.pk, content="Which port?", message_type="request")
    chat_message_post(actor=agent, task_id=task.pk, content="ran the tests", event_type="log")
    approval_request_create(actor=agent, action=MEDIUM, task_id=task.pk)


def queries_for(client, path: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200
    return len(captured)


@pytest.fixture
def grow(agent_007, bob_tech_lead, worker_007):
    def grow(count: int) -> list:
        return add_tasks(count, agent=agent_007, lead=bob_tech_lead, worker_id=worker_007)

    return grow


@pytest.mark.parametrize("path", ["/", "/tasks/", "/tasks/?status=queued&priority=normal", "/audit/"])
def test_a_page_reads_as_many_queries_with_ten_times_the_data(bob_client, grow, path, django_assert_max_num_queries):
    grow(3)
    queries_for(bob_client, path)  # warm caches (content types, the policy) the first render fills
    few = queries_for(bob_client, path)
    grow(27)
    with django_assert_max_num_queries(few):
        bob_client.get(path)
    assert few <= MOST_QUERIES


def test_the_task_page_reads_as_many_queries_with_ten_times_the_stream(
    bob_client, grow, agent_007, bob_tech_lead, django_assert_max_num_queries
):
    task = grow(3)[0]
    path = f"/tasks/{task.pk}/"
    queries_for(bob_client, path)
    few = queries_for(bob_client, path)
    for _ in range(9):
        add_stream(task, agent=agent_007, lead=bob_tech_lead)
    with django_assert_max_num_queries(few):
        response = bob_client.get(path)
    assert response.content.count(b'class="msg ') == 40
    assert few <= MOST_QUERIES


@pytest.mark.postgres
def test_the_repository_filter_is_served_by_the_trigram_index(bob_tech_lead):
    """The task list's repository filter is a substring; the trigram index (tasks 0007) answers
    the very expression Django writes for it, so the filter does not read every task."""
    from tasks.pages import TaskFilterForm, _filtered

    query = _filtered(bob_tech_lead, TaskFilterForm({"repo": "Acme/Shop"})).order_by()
    with connection.cursor() as cursor:
        # A near-empty table is cheaper to read whole, or along any other index: only a bitmap
        # scan stays open, and only an index whose condition is the filter can give it one.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
    plan = query.explain()
    assert "tasks_task_repo_trgm" in plan, plan
