"""The audit log on PostgreSQL: the append-only trigger, and one chain under concurrent writers
(real OS processes, each entry in its own committed transaction, sealed by the post-commit kicks)."""

from __future__ import annotations

import traceback

import pytest
from django.db import IntegrityError, connection, connections, transaction

from audit import selectors
from audit.models import AuditCheckpoint, AuditEntry
from audit.services import audit_checkpoint_record, audit_seal_pending
from hol.actors import SYSTEM
from tasks import services as task_services
from tasks.models import Worker
from tests.processes import run_forked

pytestmark = pytest.mark.postgres
TABLE = AuditEntry._meta.db_table
WRITERS = 8
ENTRIES_PER_WRITER = 1000
JOIN_TIMEOUT_SECONDS = 240


def refused(sql: str, params: list | tuple = ()) -> bool:
    """True when the database refuses `sql` (run in a savepoint so the test can go on)."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
    except IntegrityError as error:
        assert "append-only" in str(error)
        return True
    return False


@pytest.mark.django_db
def test_trigger_refuses_changing_or_deleting_a_sealed_entry(agent_007):
    task_services.worker_register(actor=agent_007, name="w1")
    audit_seal_pending()
    assert refused(f"UPDATE {TABLE} SET details = '{{}}' WHERE seq = 1")
    assert refused(f"UPDATE {TABLE} SET seq = NULL, prev_hash = '', hash = '', canonical = '' WHERE seq = 1")
    assert refused(f"UPDATE {TABLE} SET hash = repeat('0', 64) WHERE seq = 1")
    assert refused(f"DELETE FROM {TABLE} WHERE seq = 1")
    assert selectors.audit_verify().ok


@pytest.mark.django_db
def test_trigger_refuses_changing_or_deleting_a_pending_entry(agent_007):
    task_services.worker_register(actor=agent_007, name="w1")
    assert refused(f"UPDATE {TABLE} SET actor = 'mallory' WHERE seq IS NULL")
    assert refused(f"DELETE FROM {TABLE} WHERE seq IS NULL")
    # Sealing that also rewrites a column is not the allowed transition either.
    assert refused(
        f"UPDATE {TABLE} SET seq = 1, prev_hash = 'a', hash = 'b', canonical = 'c', actor = 'mallory' WHERE seq IS NULL"
    )
    assert audit_seal_pending() == 1


@pytest.mark.django_db
def test_trigger_refuses_changing_or_deleting_a_checkpoint(agent_007):
    task_services.worker_register(actor=agent_007, name="w1")
    audit_checkpoint_record()
    assert AuditCheckpoint.objects.count() == 1
    assert refused(f"UPDATE {AuditCheckpoint._meta.db_table} SET seq = 0")
    assert refused(f"DELETE FROM {AuditCheckpoint._meta.db_table}")


def append_entries(user_id: int, worker_id: str, count: int, start, results) -> None:
    """Child process: `count` audited changes, each its own transaction (as the services do)."""
    try:
        from django.contrib.auth import get_user_model

        from audit.services import audit_record

        actor = get_user_model().objects.get(pk=user_id)
        worker = Worker.objects.get(pk=worker_id)
        start.wait(timeout=JOIN_TIMEOUT_SECONDS)
        for i in range(count):
            with transaction.atomic():
                audit_record(actor=actor, action="worker.status_changed", target=worker, details={"n": i})
        results.put((worker_id, None))
    except BaseException:
        results.put((worker_id, traceback.format_exc()))
    finally:
        connections.close_all()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_build_one_gapless_chain(agent_007):
    workers = [Worker.objects.create(name=f"writer-{i}", user=agent_007) for i in range(WRITERS)]
    reports = run_forked(
        append_entries,
        [(agent_007.pk, str(worker.pk), ENTRIES_PER_WRITER) for worker in workers],
        timeout=JOIN_TIMEOUT_SECONDS,
    )
    assert [error for _, error in reports if error] == []

    # The post-commit kicks seal nearly everything; what a kick left at its batch cap is Beat's.
    left_pending = AuditEntry.objects.filter(seq__isnull=True).count()
    audit_seal_pending()
    total = WRITERS * ENTRIES_PER_WRITER
    seqs = list(AuditEntry.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, total + 1)), f"{left_pending} were pending after the writers"
    prev_hashes = AuditEntry.objects.values_list("prev_hash", flat=True)
    assert len(set(prev_hashes)) == total
    for worker in workers:
        assert AuditEntry.objects.filter(target_id=str(worker.pk)).count() == ENTRIES_PER_WRITER
    result = selectors.audit_verify()
    assert (result.ok, result.count, result.pending) == (True, total, 0)


@pytest.mark.django_db
def test_fast_postgres_verification_agrees_with_the_portable_one_on_awkward_entries(agent_007):
    from audit.selectors import _rows_portable, _rows_postgresql
    from audit.services import audit_record

    worker = Worker.objects.create(name="w", user=agent_007)
    awkward = [
        {},
        {"text": 'quote " backslash \\ tab \t newline \n control \x01 del \x7f', "unicode": "é ✓ \u2028 😀"},
        {"nested": {"b": [1, None, True, {"z": -(2**63)}], "a": 2**64 - 1}, "score": 0.5},
        {"keys": {"10": 1, "9": 2, "a b": 3, "é": 4}},
    ]
    with transaction.atomic():
        for i, details in enumerate(awkward):
            audit_record(actor=agent_007, action="worker.status_changed", target=worker, details=details, task_id=None)
            audit_record(
                actor=SYSTEM,
                action="worker.status_changed",
                target=worker,
                details=details,
                task_id=worker.pk,
                phase=f"p{i}",
            )
    audit_seal_pending()
    fast, portable = list(_rows_postgresql()), list(_rows_portable())
    assert len(fast) == 2 * len(awkward)
    assert fast == portable
    assert all(match for *_, match in fast)


@pytest.mark.django_db
def test_change_made_with_the_trigger_disabled_is_still_detected(agent_007):
    for i in range(3):
        task_services.worker_register(actor=agent_007, name=f"w{i}")
    audit_seal_pending()
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER audit_entry_append_only")
        cursor.execute(f"""UPDATE {TABLE} SET details = '{{"name": "w9"}}' WHERE seq = 2""")
        cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER audit_entry_append_only")
    result = selectors.audit_verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)
