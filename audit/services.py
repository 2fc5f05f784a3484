"""Every write of the audit log: recording entries, sealing them into the hash chain, checkpoints.

An entry is INSERTed in the transaction of its change, without chain fields, so audited
transactions never wait on one another; right after commit the sequencer (`audit_seal_pending`)
gives pending entries the next gapless `seq`, links them and hashes them under one lock. `seq` is
therefore sealing order, which may differ from `timestamp` order by a transaction's length.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from audit.actions import AuditAction
from audit.chain import (
    CHAINED_FIELDS,
    GENESIS_HASH,
    canonical_bytes,
    chained_fields,
    checkpoint_signature,
    entry_hash,
    format_timestamp,
    normalise,
)
from audit.models import AuditCheckpoint, AuditEntry, AuditVerification
from audit.selectors import audit_verify, ensure_audit_reader
from hol.actors import Actor, actor_label, actor_type, is_system, require_actor
from hol.changes import state_changed

log = logging.getLogger(__name__)

# pg_advisory lock key of the chain: "holaudit" in ASCII.
CHAIN_LOCK_KEY = int.from_bytes(b"holaudit", "big")
SEAL_BATCH = 2000
# How many batches one post-commit kick seals before leaving the rest to the next kick or Beat,
# so a request never pays for more than its share under sustained load.
KICK_MAX_BATCHES = 5


def audit_record(
    *,
    actor: Any,
    action: AuditAction,
    target: models.Model,
    details: dict | None = None,
    task_id: Any = None,
    phase: str = "",
) -> AuditEntry:
    """Record one state change. Must run inside the transaction that makes the change.

    `actor` is a user, or `SYSTEM` for HOL itself (Beat, Celery). `action` is an `AuditAction`
    (a string that is not one fails here); the component is the target's app. `details`
    is stored without floats (they become strings; see audit.chain.normalise). The entry joins
    the hash chain right after the transaction commits.
    """
    conn = transaction.get_connection()
    if not conn.in_atomic_block:
        raise RuntimeError("audit_record must be called inside the transaction of the change it records")
    action = AuditAction(action)
    entry = AuditEntry.objects.create(
        component=target._meta.app_label,
        action=action.value,
        actor=actor_label(actor),
        actor_type=actor_type(actor),
        phase=phase,
        target_type=target._meta.model_name,
        target_id=str(target.pk),
        task_id=task_id,
        timestamp=timezone.now(),
        details=normalise(details or {}),
    )
    audit_seal_after_commit()
    return entry


def audit_seal_after_commit() -> None:
    """Kick the sealer once the current transaction commits (at once outside one). audit_record
    calls it; so does SQL that writes pending entries itself (the work queue's functions)."""
    conn = transaction.get_connection()
    # One kick per transaction, however many entries it records.
    if not any(func is _seal_after_commit for _, func, _ in conn.run_on_commit):
        transaction.on_commit(_seal_after_commit, robust=True)


def _seal_after_commit() -> None:
    # Every audited commit passes here once: the moment to tell open dashboards.
    state_changed()
    # A process that dies between its commit and this kick leaves its entries pending for Beat's
    # checkpoint task, which runs the same sequencer: pending for at most one Beat interval.
    if settings.HOL_AUDIT_SEAL_DELAY_SECONDS > 0:
        _background_sealer.kick()
    else:
        audit_seal_pending(wait=False, max_batches=KICK_MAX_BATCHES)


class _BackgroundSealer:
    """One daemon thread per process that seals in batches, off the request path.

    Sealing right after every commit costs each audited transaction a second transaction (about
    eight round trips and a WAL flush): half of a claim+complete's time in bench/claim.py. A kick
    only sets an event; the thread waits HOL_AUDIT_SEAL_DELAY_SECONDS to gather what other
    commits bring, then seals everything pending in one go. Nothing is lost if the process dies
    first: the entries committed with their changes and the next kick anywhere, or Beat, seals
    them. The thread keeps its connection while kicks keep coming (reconnecting every round
    costs PostgreSQL a backend each time) and closes it after IDLE_CLOSE_SECONDS without one.
    """

    IDLE_CLOSE_SECONDS = 1.0

    def __init__(self) -> None:
        self._pid: int | None = None
        self._event = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def kick(self) -> None:
        if self._pid != os.getpid():  # first kick in this process (or in a forked child)
            with self._start_lock:
                if self._pid != os.getpid():
                    self._event, self._stopping = threading.Event(), False
                    self._thread = threading.Thread(target=self._run, name="hol-audit-sealer", daemon=True)
                    self._thread.start()
                    atexit.register(self._seal_at_exit)
                    self._pid = os.getpid()
        self._event.set()

    def stop(self) -> None:
        """End the thread (closing its connection) after a last round; the next kick restarts it."""
        thread = self._thread
        if thread is None or self._pid != os.getpid():
            return
        self._stopping = True
        self._event.set()
        thread.join(timeout=10)
        self._pid = self._thread = None

    def _run(self) -> None:
        try:
            while True:
                if not self._event.wait(timeout=self.IDLE_CLOSE_SECONDS):
                    connection.close()
                    self._event.wait()
                time.sleep(settings.HOL_AUDIT_SEAL_DELAY_SECONDS)
                self._event.clear()
                try:
                    audit_seal_pending(wait=False)
                except Exception:
                    log.exception("audit sealing failed; the next kick or Beat retries")
                    connection.close()
                if self._stopping:
                    return
        finally:
            connection.close()

    def _seal_at_exit(self) -> None:
        # A short-lived process (a management command) must not leave its entries to Beat.
        if self._event.is_set():
            audit_seal_pending(wait=False)


_background_sealer = _BackgroundSealer()


def audit_seal_pending(*, wait: bool = True, max_batches: int | None = None) -> int:
    """The sequencer: seal every pending entry into the chain; return how many it sealed.

    With `wait=False` it gives up at once when another process holds the chain lock. Nothing is
    stranded by that: whoever holds the lock looks for pending entries again after releasing
    it, and an entry whose writer found the lock busy committed before that try, so the look
    sees it and the holder (or whoever takes the lock next) seals it.
    """
    sealed = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        with _chain_lock(wait=wait) as held:
            if not held:
                break
            with transaction.atomic():
                count = _seal_batch()
        sealed += count
        batches += 1
        if count < SEAL_BATCH and not _pending_exists():
            break
    return sealed


def _pending_exists() -> bool:
    # Not .exists(): PostgreSQL answers that with an index-only scan, which visits the heap for
    # every index entry of an entry sealed since the last VACUUM (sealing leaves one behind) and
    # never marks them dead. Reading a column makes it a plain index scan, which marks them, so
    # the next look skips them.
    return AuditEntry.objects.filter(seq__isnull=True).order_by("id").values_list("timestamp").first() is not None


@contextmanager
def _chain_lock(*, wait: bool) -> Iterator[bool]:
    """Hold the chain lock; with wait=False yield False at once when another process holds it.

    PostgreSQL: an advisory lock, session-level outside a transaction (the post-commit kick,
    Beat), so a busy lock costs one round trip; transaction-level inside one (released with
    it). SQLite: the IMMEDIATE transaction of the batch is the lock.
    """
    if connection.vendor != "postgresql":
        yield True
        return
    scope = "_xact" if connection.in_atomic_block else ""
    with connection.cursor() as cursor:
        if wait:
            cursor.execute(f"SELECT pg_advisory{scope}_lock(%s)", [CHAIN_LOCK_KEY])
            held = True
        else:
            cursor.execute(f"SELECT pg_try_advisory{scope}_lock(%s)", [CHAIN_LOCK_KEY])
            held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held and not scope:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [CHAIN_LOCK_KEY])
            except Exception:
                # A session lock must never outlive us on a reused connection: drop the session.
                connection.close()
                raise


def _seal_batch() -> int:
    head = AuditEntry.objects.filter(seq__isnull=False).order_by("-seq").values_list("seq", "hash").first()
    seq, prev_hash = head if head else (0, GENESIS_HASH)
    pending = AuditEntry.objects.filter(seq__isnull=True).order_by("id").values_list("id", *CHAINED_FIELDS)
    updates = []
    for entry_id, *values in pending[:SEAL_BATCH]:
        seq += 1
        canonical = canonical_bytes(chained_fields(seq, prev_hash, values))
        digest = entry_hash(canonical)
        updates.append((seq, prev_hash, digest, canonical.decode(), entry_id))
        prev_hash = digest
    if updates:
        _write_seals(updates)
    return len(updates)


def _write_seals(updates: list[tuple[int, str, str, str, int]]) -> None:
    table = connection.ops.quote_name(AuditEntry._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One statement for the whole batch (row-at-a-time pays per-statement overhead), its rows
            # passed as one JSON text (psycopg's text-array quoting is slow for these strings).
            rows = [
                {"seq": seq, "prev_hash": prev, "hash": digest, "canonical": text, "id": entry_id}
                for seq, prev, digest, text, entry_id in updates
            ]
            cursor.execute(
                f"UPDATE {table} AS entry SET seq = v.seq, prev_hash = v.prev_hash, hash = v.hash, "
                "canonical = v.canonical FROM json_to_recordset(%s::json) "
                "AS v(seq bigint, prev_hash text, hash text, canonical text, id bigint) "
                "WHERE entry.id = v.id AND entry.seq IS NULL",
                [orjson.dumps(rows).decode()],
            )
            written = cursor.rowcount
        else:
            cursor.executemany(
                f"UPDATE {table} SET seq = %s, prev_hash = %s, hash = %s, canonical = %s WHERE id = %s AND seq IS NULL",
                updates,
            )
            written = cursor.rowcount
    if written != len(updates):
        raise RuntimeError(f"sealed {written} of {len(updates)} audit entries; the batch is rolled back")


def audit_checkpoint_record() -> AuditCheckpoint | None:
    """Seal what is pending, then sign the chain head (seq + hash) into a checkpoint.

    Nothing is recorded when the chain is empty or the head has not moved since the last
    checkpoint. Checkpoints are machinery of the log itself and are not audited (an entry per
    checkpoint would move the head it just signed).
    """
    audit_seal_pending()
    with transaction.atomic():
        # No chain lock needed: sealed entries never change, so any head we read is one to sign.
        head = AuditEntry.objects.filter(seq__isnull=False).order_by("-seq").values_list("seq", "hash").first()
        if head is None:
            return None
        latest = AuditCheckpoint.objects.order_by("-seq", "-id").first()
        if latest is not None and latest.seq == head[0] and latest.hash == head[1]:
            return None
        now = timezone.now()
        return AuditCheckpoint.objects.create(
            seq=head[0],
            hash=head[1],
            created_at=now,
            signature=checkpoint_signature(seq=head[0], head_hash=head[1], created_at=format_timestamp(now)),
        )


def audit_verify_record(*, actor: Actor, now: datetime | None = None) -> AuditVerification:
    """Verify the whole chain and keep the result: count, head, ok, first bad seq, duration.

    HOL itself (Beat) and people who may read the audit log run it; agents never do. Runs are
    not audited: like checkpoints they are the log checking itself, and a scheduled run writing
    an entry each time would fill the log with its own bookkeeping.
    """
    if not is_system(require_actor(actor)):
        ensure_audit_reader(actor)
    started_at = now or timezone.now()
    clock = time.monotonic()
    result = audit_verify()
    return AuditVerification.objects.create(
        started_at=started_at,
        duration_seconds=round(time.monotonic() - clock, 3),
        run_by=actor_label(actor),
        ok=result.ok,
        count=result.count,
        head_seq=result.head_seq,
        head_hash=result.head_hash,
        first_bad_seq=result.first_bad_seq,
        problem=result.problem,
        pending=result.pending,
    )
