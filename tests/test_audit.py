"""The audit log: entries in the transaction of their change, one gapless hash chain,
tampering detected at the right seq, checkpoints, the command, the API and the admin.

Runs on SQLite and PostgreSQL. On PostgreSQL the tampering bypasses the append-only trigger the
way a superuser would (session_replication_role = replica)."""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import timedelta

import pytest
from django.core.management import execute_from_command_line
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from audit import selectors
from audit.actions import AuditAction
from audit.chain import GENESIS_HASH, canonical_bytes, chained_fields
from audit.models import AuditCheckpoint, AuditEntry, AuditVerification
from audit.services import (
    _background_sealer,
    audit_checkpoint_record,
    audit_record,
    audit_seal_pending,
    audit_verify_record,
)
from audit.tasks import record_checkpoint, verify_chain
from chat.services import chat_message_post
from hol.actors import SYSTEM
from hol.errors import PermissionDenied
from tasks import services as task_services
from tasks.models import Worker
from tests.factories import client_for, signed_in

pytestmark = pytest.mark.django_db
TABLE = AuditEntry._meta.db_table


def register_workers(actor, count: int) -> list[Worker]:
    return [task_services.worker_register(actor=actor, name=f"worker-{i}") for i in range(count)]


def sealed_chain(actor, count: int) -> list[AuditEntry]:
    """`count` real audit entries (worker registrations), sealed; returned in seq order."""
    register_workers(actor, count)
    audit_seal_pending()
    return list(AuditEntry.objects.order_by("seq"))


def tamper(sql: str, params: list | tuple = ()) -> None:
    """Change the table behind HOL's back, as a database superuser would (trigger bypassed)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = origin")


def verify_exit_code(capsys) -> tuple[int, str, str]:
    """Run `manage.py verify_audit` as the command line does; return (exit code, stdout, stderr)."""
    try:
        execute_from_command_line(["manage.py", "verify_audit"])
        code = 0
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def first_bad_seq_by_selector(capsys, client) -> int | None:
    return selectors.audit_verify().first_bad_seq


def first_bad_seq_by_command(capsys, client) -> int | None:
    code, _, err = verify_exit_code(capsys)
    if code == 0:
        return None
    assert code == 1, err
    return int(re.search(r"broken at seq (\d+)", err).group(1))


def first_bad_seq_by_api(capsys, client) -> int | None:
    response = client.get("/api/v1/audit/verify")
    assert response.status_code == 200
    return response.json()["first_bad_seq"]


# Each tampering case is checked through every door a person verifies by.
VERIFIERS = [first_bad_seq_by_selector, first_bad_seq_by_command, first_bad_seq_by_api]


@pytest.fixture(params=VERIFIERS, ids=["selector", "command", "api"])
def first_bad_seq(request, capsys, as_alice):
    return lambda: request.param(capsys, as_alice)


def rewrite(seq: int, *, actor: str, rehash: bool) -> None:
    """Rewrite entry `seq`'s actor in its column and in its canonical text, consistently, so the
    two agree; with `rehash` also store the new text's hash."""
    stored = AuditEntry.objects.get(seq=seq)
    fields = json.loads(stored.canonical)
    fields["actor"] = actor
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(text.encode()).hexdigest() if rehash else stored.hash
    tamper(f"UPDATE {TABLE} SET actor = %s, canonical = %s, hash = %s WHERE seq = %s", [actor, text, digest, seq])


# --- the chain ------------------------------------------------------------------------------------


def test_sealed_entries_form_a_gapless_chain_from_genesis(agent_007):
    entries = sealed_chain(agent_007, 5)
    assert [entry.seq for entry in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    assert [entry.prev_hash for entry in entries[1:]] == [entry.hash for entry in entries[:-1]]
    for entry in entries:
        assert hashlib.sha256(entry.canonical.encode()).hexdigest() == entry.hash
    result = selectors.audit_verify()
    assert (result.ok, result.count, result.head_seq, result.head_hash) == (True, 5, 5, entries[-1].hash)


def test_hashed_text_holds_every_field_with_sorted_keys_and_microsecond_utc(agent_007):
    (entry,) = sealed_chain(agent_007, 1)
    fields = json.loads(entry.canonical)
    assert list(fields) == sorted(fields)
    assert fields == {
        "seq": 1,
        "prev_hash": GENESIS_HASH,
        "component": "tasks",
        "action": "worker.registered",
        "actor": "agent_007",
        "actor_type": "agent",
        "phase": "",
        "target_type": "worker",
        "target_id": entry.target_id,
        "task_id": None,
        "timestamp": entry.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "details": {"name": "worker-0"},
    }
    # Anyone can rebuild the bytes with the standard library.
    assert entry.canonical == json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_floats_and_other_non_json_values_in_details_are_stored_as_text(agent_007):
    worker = Worker.objects.create(name="w", user=agent_007)
    with transaction.atomic():
        entry = audit_record(
            actor=agent_007,
            action="worker.status_changed",
            target=worker,
            details={"score": 0.1, "big": 2**70, "nested": [1.5, {"when": timezone.now() - timedelta(days=1)}]},
        )
    entry.refresh_from_db()
    assert entry.details["score"] == "0.1"
    assert entry.details["big"] == str(2**70)
    assert entry.details["nested"][0] == "1.5"
    audit_seal_pending()
    assert selectors.audit_verify().ok


def test_canonical_bytes_match_the_standard_library_for_awkward_strings():
    fields = {"b": 'quote " backslash \\ control \x01\x1f del \x7f', "a": "é ✓ \u2028 😀", "c": [1, None, True]}
    expected = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical_bytes(fields) == expected


def test_audit_record_refuses_to_run_outside_a_transaction(agent_007):
    worker = Worker.objects.create(name="w", user=agent_007)
    # pytest-django's test transaction would hide the mistake; leave it for this one call.
    connection.in_atomic_block, was = False, connection.in_atomic_block
    try:
        with pytest.raises(RuntimeError, match="inside the transaction"):
            audit_record(actor=agent_007, action="worker.status_changed", target=worker)
    finally:
        connection.in_atomic_block = was


def test_entry_is_sealed_as_soon_as_its_transaction_commits(agent_007, django_capture_on_commit_callbacks, settings):
    settings.HOL_AUDIT_SEAL_DELAY_SECONDS = 0  # inline sealing
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        task_services.worker_register(actor=agent_007, name="w1")
    assert len(callbacks) == 1
    entry = AuditEntry.objects.get(action="worker.registered")
    assert entry.seq == 1 and entry.hash


def test_one_transaction_kicks_the_sequencer_once_however_many_entries(
    agent_007, django_capture_on_commit_callbacks, settings
):
    settings.HOL_AUDIT_SEAL_DELAY_SECONDS = 0  # inline sealing
    worker = Worker.objects.create(name="w", user=agent_007)
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        for _ in range(3):
            audit_record(actor=agent_007, action="worker.status_changed", target=worker)
    assert len(callbacks) == 1
    assert sorted(AuditEntry.objects.values_list("seq", flat=True)) == [1, 2, 3]


def test_a_service_that_fails_after_its_change_leaves_no_audit_entry(agent_007):
    with pytest.raises(RuntimeError, match="after the change"), transaction.atomic():
        task_services.worker_register(actor=agent_007, name="doomed")
        assert AuditEntry.objects.filter(action="worker.registered").exists()
        raise RuntimeError("failure after the change")
    assert not Worker.objects.filter(name="doomed").exists()
    assert not AuditEntry.objects.exists()


def test_tasks_services_record_actor_action_and_target(agent_007):
    (worker,) = register_workers(agent_007, 1)
    task, _ = task_services.task_create(
        actor=agent_007, payload={"objective": "Fix it", "target": {"repo": "https://github.com/acme/shop"}}
    )
    work_order = task_services.work_order_enqueue(actor=agent_007, task_id=task.pk)
    task_services.work_order_claim(actor=agent_007, worker_id=worker.pk)
    rows = list(
        AuditEntry.objects.order_by("id").values_list("actor", "actor_type", "action", "target_type", "task_id")
    )
    assert rows == [
        ("agent_007", "agent", "worker.registered", "worker", None),
        ("agent_007", "agent", "task.created", "task", task.pk),
        ("agent_007", "agent", "work_order.enqueued", "workorder", task.pk),
        ("agent_007", "agent", "worker.status_changed", "worker", None),
        ("agent_007", "agent", "work_order.claimed", "workorder", task.pk),
    ]
    assert AuditEntry.objects.get(action="work_order.enqueued").target_id == str(work_order.pk)


def test_system_actions_are_recorded_as_the_system(agent_007):
    worker = Worker.objects.create(name="w", user=agent_007)
    with transaction.atomic():
        audit_record(actor=SYSTEM, action="worker.offline", target=worker, details={"reason": "silent"})
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.actor_type) == ("system", "system")


def test_hol_posting_to_a_chat_is_recorded_as_the_system_with_no_sender(agent_007):
    task, _ = task_services.task_create(
        actor=agent_007, payload={"objective": "Fix it", "target": {"repo": "https://github.com/acme/shop"}}
    )
    message = chat_message_post(actor=SYSTEM, task_id=task.pk, content="work order requeued")
    assert (message.sender, message.sender_type) == (None, "system")
    entry = AuditEntry.objects.get(action=AuditAction.CHAT_MESSAGE_POSTED)
    assert (entry.actor, entry.actor_type, entry.task_id) == ("system", "system", task.pk)


def test_posting_to_a_chat_without_an_actor_is_refused(agent_007):
    task, _ = task_services.task_create(
        actor=agent_007, payload={"objective": "Fix it", "target": {"repo": "https://github.com/acme/shop"}}
    )
    with pytest.raises(TypeError, match="actor is required"):
        chat_message_post(actor=None, task_id=task.pk, content="who am I")
    assert not AuditEntry.objects.filter(action=AuditAction.CHAT_MESSAGE_POSTED).exists()


def test_verification_reports_entries_not_yet_sealed(agent_007):
    sealed_chain(agent_007, 2)
    register_workers(agent_007, 3)
    result = selectors.audit_verify()
    assert result.ok and result.count == 2
    assert result.pending == 3
    assert result.oldest_pending_seconds is not None and result.oldest_pending_seconds >= 0


# --- tampering ------------------------------------------------------------------------------------


def test_altered_detail_is_detected_at_its_seq(agent_007):
    sealed_chain(agent_007, 5)
    tamper(f"UPDATE {TABLE} SET details = %s WHERE seq = 3", ['{"name": "someone-else"}'])
    result = selectors.audit_verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "altered" in result.problem


def test_entry_rewritten_consistently_but_keeping_its_hash_is_reported_at_its_seq(agent_007, first_bad_seq):
    sealed_chain(agent_007, 5)
    rewrite(2, actor="mallory", rehash=False)
    # Columns and text agree and every link still holds: only the text's own hash gives it away.
    assert AuditEntry.objects.get(seq=3).prev_hash == AuditEntry.objects.get(seq=2).hash
    assert first_bad_seq() == 2


def test_entry_rewritten_with_a_recomputed_hash_is_reported_where_the_link_breaks(agent_007, first_bad_seq):
    sealed_chain(agent_007, 5)
    rewrite(2, actor="mallory", rehash=True)
    assert first_bad_seq() == 2


def test_deleted_entry_is_detected_at_its_seq(agent_007):
    sealed_chain(agent_007, 5)
    tamper(f"DELETE FROM {TABLE} WHERE seq = 3")
    result = selectors.audit_verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "missing" in result.problem


def test_deleted_entry_with_later_seqs_renumbered_is_detected_at_its_seq(agent_007):
    sealed_chain(agent_007, 5)
    tamper(f"DELETE FROM {TABLE} WHERE seq = 3")
    tamper(f"UPDATE {TABLE} SET seq = seq - 1 WHERE seq > 3")
    result = selectors.audit_verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)


def test_forged_entry_inserted_into_the_chain_is_detected_at_its_seq(agent_007):
    entries = sealed_chain(agent_007, 5)
    # The forger links a well-formed entry to seq 2 and shifts the later entries up by one.
    tamper(f"UPDATE {TABLE} SET seq = seq + 100 WHERE seq > 2")
    tamper(f"UPDATE {TABLE} SET seq = seq - 99 WHERE seq > 100")
    forged = chained_fields(
        3, entries[1].hash, ["tasks", "task.created", "mallory", "human", "", "task", "x", None, timezone.now(), {}]
    )
    text = canonical_bytes(forged).decode()
    insert = (
        f"INSERT INTO {TABLE} (component, action, actor, actor_type, phase, target_type, target_id, task_id, "
        "timestamp, details, seq, prev_hash, hash, canonical) "
        "VALUES ('tasks', 'task.created', 'mallory', 'human', '', 'task', 'x', NULL, %s, '{}', 3, %s, %s, %s)"
    )
    params = [forged["timestamp"], entries[1].hash, hashlib.sha256(text.encode()).hexdigest(), text]
    # Two sealed entries may not name the same predecessor: the forger must drop that index first.
    with pytest.raises(IntegrityError), transaction.atomic():
        tamper(insert, params)
    tamper("DROP INDEX audit_entry_one_successor")
    tamper(insert, params)
    assert AuditEntry.objects.filter(seq__isnull=False).count() == 6
    result = selectors.audit_verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "inserted" in result.problem


def test_truncated_tail_is_reported_against_the_signed_checkpoint(agent_007, first_bad_seq):
    sealed_chain(agent_007, 5)
    checkpoint = audit_checkpoint_record()
    assert checkpoint is not None and checkpoint.seq == 5
    tamper(f"DELETE FROM {TABLE} WHERE seq >= 4")
    assert first_bad_seq() == 4


def test_truncated_tail_is_explained_as_entries_missing_before_the_checkpoint(agent_007):
    sealed_chain(agent_007, 5)
    audit_checkpoint_record()
    tamper(f"DELETE FROM {TABLE} WHERE seq >= 4")
    assert "checkpoint" in selectors.audit_verify().problem


def test_truncated_tail_without_a_checkpoint_goes_unnoticed_and_says_so(agent_007):
    sealed_chain(agent_007, 5)
    tamper(f"DELETE FROM {TABLE} WHERE seq >= 4")
    result = selectors.audit_verify()
    assert result.ok and result.count == 3
    assert any("no checkpoint" in note for note in result.notes)


def test_checkpoint_not_signed_with_the_key_fails_verification(agent_007, settings):
    sealed_chain(agent_007, 2)
    settings.HOL_AUDIT_CHECKPOINT_KEY = "an attacker's key"
    audit_checkpoint_record()
    settings.HOL_AUDIT_CHECKPOINT_KEY = "the server's key"
    result = selectors.audit_verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert "signed" in result.problem


# --- checkpoints (Beat) ---------------------------------------------------------------------------


def test_beat_checkpoint_seals_pending_entries_then_signs_the_head(agent_007):
    register_workers(agent_007, 3)
    assert record_checkpoint() == 3
    checkpoint = AuditCheckpoint.objects.get()
    assert (checkpoint.seq, checkpoint.hash) == (3, AuditEntry.objects.get(seq=3).hash)
    assert not AuditEntry.objects.filter(seq__isnull=True).exists()
    result = selectors.audit_verify()
    assert result.ok and result.checkpoint["seq"] == 3


def test_beat_records_no_checkpoint_when_the_head_has_not_moved(agent_007):
    sealed_chain(agent_007, 2)
    assert record_checkpoint() == 2
    assert record_checkpoint() is None
    assert AuditCheckpoint.objects.count() == 1


def test_install_schedule_installs_the_checkpoint_task(capsys):
    from django.core.management import call_command
    from django_celery_beat.models import PeriodicTask

    call_command("install_schedule")
    assert PeriodicTask.objects.filter(task="audit.tasks.record_checkpoint", enabled=True).exists()


# --- stored verification runs (Beat, the audit page) ------------------------------------------------


def test_beat_verification_stores_an_intact_run_as_the_system(agent_007):
    entries = sealed_chain(agent_007, 3)
    assert verify_chain() == {"ok": True, "count": 3, "head_seq": 3, "first_bad_seq": None}
    run = AuditVerification.objects.get()
    assert (run.ok, run.count, run.head_seq, run.head_hash, run.run_by) == (True, 3, 3, entries[-1].hash, "system")
    assert run.duration_seconds >= 0


def test_stored_run_of_a_broken_chain_names_the_first_bad_seq(agent_007, alice_developer):
    sealed_chain(agent_007, 4)
    tamper(f"DELETE FROM {TABLE} WHERE seq = 3")
    run = audit_verify_record(actor=alice_developer)
    assert (run.ok, run.first_bad_seq, run.run_by) == (False, 3, "alice_developer")
    assert "missing" in run.problem


def test_latest_verification_is_the_newest_run(alice_developer):
    earlier = audit_verify_record(actor=SYSTEM, now=timezone.now() - timedelta(hours=1))
    latest = audit_verify_record(actor=SYSTEM)
    assert earlier.pk != latest.pk
    assert selectors.audit_latest_verification(user=alice_developer) == latest


def test_agent_may_neither_run_nor_read_a_stored_verification(agent_007):
    with pytest.raises(PermissionDenied):
        audit_verify_record(actor=agent_007)
    with pytest.raises(PermissionDenied):
        selectors.audit_latest_verification(user=agent_007)
    assert not AuditVerification.objects.exists()


# --- manage.py verify_audit -----------------------------------------------------------------------


def test_verify_audit_exits_0_with_count_and_head_hash_when_intact(agent_007, capsys):
    entries = sealed_chain(agent_007, 3)
    code, out, _ = verify_exit_code(capsys)
    assert code == 0
    assert "3 entries" in out and entries[-1].hash in out


def test_verify_audit_exits_1_naming_the_first_bad_seq(agent_007, capsys):
    sealed_chain(agent_007, 4)
    tamper(f"UPDATE {TABLE} SET action = 'worker.deregistered' WHERE seq = 2")
    code, _, err = verify_exit_code(capsys)
    assert code == 1
    assert "broken at seq 2" in err


# --- API ------------------------------------------------------------------------------------------


def test_staff_lists_entries_filtered_by_task_target_actor_action_and_time(agent_007, as_alice):
    (worker,) = register_workers(agent_007, 1)
    task, _ = task_services.task_create(
        actor=agent_007, payload={"objective": "Fix it", "target": {"repo": "https://github.com/acme/shop"}}
    )
    audit_seal_pending()
    every = as_alice.get("/api/v1/audit").json()
    assert every["count"] == 2
    assert [row["action"] for row in as_alice.get(f"/api/v1/audit?task={task.pk}").json()["results"]] == [
        "task.created"
    ]
    by_target = as_alice.get(f"/api/v1/audit?target=worker:{worker.pk}").json()["results"]
    assert [row["action"] for row in by_target] == ["worker.registered"]
    assert by_target[0]["seq"] == 1 and by_target[0]["hash"]
    assert as_alice.get("/api/v1/audit?actor=agent_007").json()["count"] == 2
    assert as_alice.get("/api/v1/audit?actor=nobody").json()["count"] == 0
    assert as_alice.get("/api/v1/audit?action=task.").json()["count"] == 1
    later = (timezone.now() + timedelta(minutes=1)).isoformat()
    assert as_alice.get("/api/v1/audit", {"since": later}).json()["count"] == 0
    assert as_alice.get("/api/v1/audit", {"until": later}).json()["count"] == 2


def test_audit_list_rejects_a_malformed_filter_with_400(as_alice):
    response = as_alice.get("/api/v1/audit?task=not-a-uuid")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


@pytest.mark.parametrize("path", ["/api/v1/audit", "/api/v1/audit/verify"])
def test_agent_gets_403_from_the_audit_endpoints(as_agent_007, path):
    response = as_agent_007.get(path)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


@pytest.mark.parametrize("path", ["/api/v1/audit", "/api/v1/audit/verify"])
def test_agent_flagged_staff_gets_403_from_the_audit_endpoints(agent_007, path):
    agent_007.is_staff = agent_007.is_superuser = True
    agent_007.save(update_fields=["is_staff", "is_superuser"])
    response = client_for(agent_007).get(path)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_staff_who_is_not_an_agent_reads_the_audit_endpoints(as_alice):
    assert as_alice.get("/api/v1/audit").status_code == 200
    assert as_alice.get("/api/v1/audit/verify").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/audit", "/api/v1/audit/verify"])
def test_anonymous_caller_gets_401_from_the_audit_endpoints(client, path):
    assert client.get(path).status_code == 401


def test_verify_endpoint_gives_the_commands_answer(agent_007, as_alice):
    entries = sealed_chain(agent_007, 3)
    intact = as_alice.get("/api/v1/audit/verify").json()
    assert (intact["ok"], intact["count"], intact["head_hash"]) == (True, 3, entries[-1].hash)
    tamper(f"DELETE FROM {TABLE} WHERE seq = 2")
    broken = as_alice.get("/api/v1/audit/verify").json()
    assert (broken["ok"], broken["first_bad_seq"]) == (False, 2)


# --- admin ----------------------------------------------------------------------------------------


def test_admin_shows_entries_but_not_even_a_superuser_may_change_them(agent_007, admin_client):
    (entry,) = sealed_chain(agent_007, 1)
    assert admin_client.get("/admin/audit/auditentry/").status_code == 200
    assert admin_client.get(f"/admin/audit/auditentry/{entry.pk}/change/").status_code == 200  # a read-only view
    assert admin_client.post(f"/admin/audit/auditentry/{entry.pk}/change/", {"action": "x"}).status_code == 403
    assert admin_client.post(f"/admin/audit/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.get("/admin/audit/auditentry/add/").status_code == 403
    assert AuditEntry.objects.get().action == "worker.registered"


def test_admin_verification_page_shows_the_result_to_staff(agent_007, admin_client):
    sealed_chain(agent_007, 2)
    page = admin_client.get("/admin/audit/auditentry/verify/")
    assert page.status_code == 200
    assert b"Intact." in page.content and b"2 entries" in page.content
    tamper(f"UPDATE {TABLE} SET actor = 'mallory' WHERE seq = 1")
    assert b"Broken at seq 1" in admin_client.get("/admin/audit/auditentry/verify/").content


ADMIN_AUDIT_PAGES = [
    "/admin/audit/auditentry/",
    "/admin/audit/auditcheckpoint/",
    "/admin/audit/auditverification/",
    "/admin/audit/auditentry/verify/",
]


@pytest.mark.parametrize("page", ADMIN_AUDIT_PAGES)
def test_admin_refuses_the_audit_log_to_an_agent_flagged_superuser(agent_007, page):
    agent_007.is_staff = agent_007.is_superuser = True
    agent_007.save(update_fields=["is_staff", "is_superuser"])
    assert signed_in(agent_007).get(page).status_code == 403


def test_admin_action_filter_offers_every_audit_action_even_before_it_happens(admin_client):
    html = admin_client.get("/admin/audit/auditentry/").content.decode()
    assert [action for action in AuditAction if f"?action={action.value}" not in html] == []


@pytest.mark.django_db(transaction=True)
def test_background_sealer_seals_committed_entries_shortly_after_commit(agent_007, settings):
    settings.HOL_AUDIT_SEAL_DELAY_SECONDS = 0.05
    try:
        for n in range(3):
            task_services.worker_register(actor=agent_007, name=f"w{n}")
        deadline = time.monotonic() + 10
        while AuditEntry.objects.filter(seq__isnull=True).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        _background_sealer.stop()
    assert sorted(AuditEntry.objects.values_list("seq", flat=True)) == [1, 2, 3]
    assert selectors.audit_verify().ok
