"""The claim is atomic under real concurrency: OS processes racing on PostgreSQL (SKIP LOCKED)."""

from __future__ import annotations

import random
import traceback
from datetime import timedelta
from itertools import pairwise

import pytest
from django.db import connections
from django.utils import timezone

from audit.models import AuditEntry
from tasks.models import PRIORITY_RANK, Execution, Task, Worker, WorkOrder
from tests.processes import run_forked

CLAIMERS = 8
WORK_ORDERS = 2000
JOIN_TIMEOUT_SECONDS = 120


def race(user_id: int, worker_id: str, complete: bool, start, results) -> None:
    """Child process: claim through the service until it answers None (completing each claim when
    `complete`), then report every claim as (id, priority, output)."""
    try:
        from django.contrib.auth import get_user_model

        from tasks.services import work_order_claim, work_order_complete

        actor = get_user_model().objects.get(pk=user_id)
        start.wait(timeout=JOIN_TIMEOUT_SECONDS)
        claims = []
        while (work_order := work_order_claim(actor=actor, worker_id=worker_id)) is not None:
            if complete:
                work_order = work_order_complete(actor=actor, work_order_id=work_order.pk, output=worker_id)
            claims.append((str(work_order.pk), work_order.priority, work_order.status))
        results.put((worker_id, claims, None))
    except BaseException:
        results.put((worker_id, [], traceback.format_exc()))
    finally:
        connections.close_all()


def queue_of_mixed_priorities(count: int) -> dict[str, int]:
    """`count` queued work orders (one task each) of random priority; returns id → enqueue order."""
    ranks = list(PRIORITY_RANK.values())
    rng = random.Random(20261125)
    now = timezone.now()
    tasks = Task.objects.bulk_create(
        Task(title=f"race {i}", objective="race", target_repo="https://github.com/acme/shop") for i in range(count)
    )
    work_orders = WorkOrder.objects.bulk_create(
        WorkOrder(
            task=task,
            priority=rng.choice(ranks),
            # Distinct enqueue times define "oldest first" within a priority.
            enqueued_at=now - timedelta(seconds=count) + timedelta(seconds=i),
            available_at=now - timedelta(seconds=1),
        )
        for i, task in enumerate(tasks)
    )
    return {str(work_order.pk): i for i, work_order in enumerate(work_orders)}


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_claimers_take_every_work_order_exactly_once_in_priority_order(agent_007):
    enqueue_order = queue_of_mixed_priorities(WORK_ORDERS)
    workers = [Worker.objects.create(name=f"racer-{i}", user=agent_007) for i in range(CLAIMERS)]
    assert set(WorkOrder.objects.values_list("priority", flat=True)) == set(PRIORITY_RANK.values())

    reports = run_forked(
        race, [(agent_007.pk, str(worker.pk), False) for worker in workers], timeout=JOIN_TIMEOUT_SECONDS
    )
    errors = [error for _, _, error in reports if error]
    assert not errors, errors[0]

    claimed_ids = [work_order_id for _, claims, _ in reports for work_order_id, _, _ in claims]
    assert len(claimed_ids) == WORK_ORDERS, "every work order claimed, none lost"
    assert len(set(claimed_ids)) == WORK_ORDERS, "no work order claimed twice"
    assert set(claimed_ids) == set(enqueue_order)
    assert not WorkOrder.objects.filter(status=WorkOrder.Status.QUEUED).exists()

    holder = {str(pk): str(worker_id) for pk, worker_id in WorkOrder.objects.values_list("pk", "worker_id")}
    for worker_id, claims, _ in reports:
        assert claims, f"claimer {worker_id} got nothing: the race did not happen"
        assert {holder[work_order_id] for work_order_id, _, _ in claims} == {worker_id}
        # Highest priority first, then oldest: each claimer's sequence only ever goes down that order.
        keys = [(-priority, enqueue_order[wo]) for wo, priority, _ in claims]
        assert keys == sorted(keys), f"claimer {worker_id} took work out of priority order"
        priorities = [priority for _, priority, _ in claims]
        assert priorities == sorted(priorities, reverse=True)

    assert Execution.objects.filter(attempt=1).count() == WORK_ORDERS
    assert AuditEntry.objects.filter(action="work_order.claimed").count() == WORK_ORDERS


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_claim_and_complete_finish_every_work_order_exactly_once_with_its_records(agent_007):
    count = WORK_ORDERS // 2
    queue_of_mixed_priorities(count)
    workers = [Worker.objects.create(name=f"finisher-{i}", user=agent_007) for i in range(CLAIMERS)]

    reports = run_forked(
        race, [(agent_007.pk, str(worker.pk), True) for worker in workers], timeout=JOIN_TIMEOUT_SECONDS
    )
    errors = [error for _, _, error in reports if error]
    assert not errors, errors[0]

    done = [work_order_id for _, claims, _ in reports for work_order_id, _, _ in claims]
    assert len(done) == len(set(done)) == count
    assert {status for _, claims, _ in reports for _, _, status in claims} == {WorkOrder.Status.COMPLETED}
    assert WorkOrder.objects.filter(status=WorkOrder.Status.COMPLETED).count() == count
    assert Execution.objects.filter(status=Execution.Status.COMPLETED, attempt=1).count() == count
    assert Execution.objects.count() == count
    assert Task.objects.filter(status=Task.Status.COMPLETED).count() == count
    # Each execution names the worker that completed its order (the output is that worker's id).
    for worker_id, claims, _ in reports:
        ids = [work_order_id for work_order_id, _, _ in claims]
        outputs = set(Execution.objects.filter(work_order_id__in=ids).values_list("output", flat=True))
        assert outputs <= {worker_id}
    for action in ("work_order.claimed", "work_order.completed"):
        assert AuditEntry.objects.filter(action=action).count() == count
    assert set(Worker.objects.values_list("status", flat=True)) == {Worker.Status.IDLE}
    # Every worker went idle → busy → idle as often as its status changed, audited each time.
    for worker in workers:
        changes = list(
            AuditEntry.objects.filter(action="worker.status_changed", target_id=str(worker.pk))
            .order_by("id")
            .values_list("details", flat=True)
        )
        assert changes, f"worker {worker.pk} never changed status: the race did not happen"
        assert changes[0] == {"from": "idle", "to": "busy"}
        assert all(a["to"] == b["from"] for a, b in pairwise(changes))
        assert changes[-1] == {"from": "busy", "to": "idle"}


def heartbeat_until_done(user_id: int, worker_id: str, role: str, start, results) -> None:
    """Child process: `finisher` claims and completes every queued work order; `heartbeater`
    heartbeats the same worker as fast as it can meanwhile (the Celery runner does so while its
    agent finishes), until the finisher is done."""
    try:
        from django.contrib.auth import get_user_model

        from tasks.services import work_order_claim, work_order_complete, worker_heartbeat

        actor = get_user_model().objects.get(pk=user_id)
        start.wait(timeout=JOIN_TIMEOUT_SECONDS)
        done = 0
        if role == "finisher":
            while (work_order := work_order_claim(actor=actor, worker_id=worker_id)) is not None:
                work_order_complete(actor=actor, work_order_id=work_order.pk, output="")
                done += 1
            WorkOrder.objects.filter(pk=WorkOrder.objects.values("pk")[:1]).update(last_error="finished")
        else:
            while not WorkOrder.objects.filter(last_error="finished").exists():
                worker_heartbeat(actor=actor, worker_id=worker_id)
                done += 1
        results.put((role, done, None))
    except BaseException:
        results.put((role, 0, traceback.format_exc()))
    finally:
        connections.close_all()


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_heartbeats_beside_completions_of_the_same_worker_never_deadlock(agent_007):
    count = 300
    queue_of_mixed_priorities(count)
    worker = Worker.objects.create(name="runner", user=agent_007)
    reports = run_forked(
        heartbeat_until_done,
        [(agent_007.pk, str(worker.pk), role) for role in ("finisher", "heartbeater", "heartbeater")],
        timeout=JOIN_TIMEOUT_SECONDS,
    )
    errors = [error for _, _, error in reports if error]
    assert not errors, errors[0]
    done = {role: n for role, n, _ in reports if role == "finisher"}
    assert done == {"finisher": count}
    assert sum(n for role, n, _ in reports if role == "heartbeater") > 0
    assert WorkOrder.objects.filter(status=WorkOrder.Status.COMPLETED).count() == count
