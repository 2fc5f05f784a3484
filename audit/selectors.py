"""Reads of the audit log: listing entries (staff only) and verifying the chain."""

from __future__ import annotations

import hmac
from collections.abc import Generator, Iterable
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import orjson
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from audit.chain import (
    CHAINED_FIELDS,
    GENESIS_HASH,
    canonical_bytes,
    chained_fields,
    checkpoint_signature,
    entry_hash,
    format_timestamp,
)
from audit.models import AuditCheckpoint, AuditEntry, AuditVerification
from hol.actors import is_agent
from hol.errors import PermissionDenied

VERIFY_CHUNK = 5000


def ensure_audit_reader(user: AbstractBaseUser | None) -> None:
    """The audit log is for staff (humans); agents never read it, whatever their flags."""
    if user is None or not user.is_authenticated or not user.is_staff or is_agent(user):
        raise PermissionDenied("the audit log is for staff only")


def audit_entries(
    *,
    user: AbstractBaseUser | None,
    task_id: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEntry]:
    """Entries newest first, filtered; `action` ending in `.` or `*` matches a prefix
    (`work_order.` → every work order action)."""
    ensure_audit_reader(user)
    entries = AuditEntry.objects.order_by("-timestamp", "-id")
    if task_id:
        entries = entries.filter(task_id=task_id)
    if target_type:
        entries = entries.filter(target_type=target_type)
    if target_id:
        entries = entries.filter(target_id=target_id)
    if actor:
        entries = entries.filter(actor=actor)
    if action:
        if action.endswith(("*", ".")):
            entries = entries.filter(action__startswith=action.rstrip("*"))
        else:
            entries = entries.filter(action=action)
    if since:
        entries = entries.filter(timestamp__gte=since)
    if until:
        entries = entries.filter(timestamp__lt=until)
    return entries


def audit_latest_verification(*, user: AbstractBaseUser | None) -> AuditVerification | None:
    """The newest stored verification run (`audit.services.audit_verify_record`), if any."""
    ensure_audit_reader(user)
    return AuditVerification.objects.order_by("-started_at", "-id").first()


@dataclass
class Verification:
    """What verification found. `first_bad_seq` is None when the chain is intact."""

    ok: bool = True
    count: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    first_bad_seq: int | None = None
    problem: str = ""
    checkpoint: dict[str, Any] | None = None
    pending: int = 0
    oldest_pending_seconds: float | None = None
    notes: list[str] = field(default_factory=list)

    def fail(self, seq: int, problem: str) -> Verification:
        self.ok, self.first_bad_seq, self.problem = False, seq, problem
        return self

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def audit_verify() -> Verification:
    """Walk the sealed chain in seq order and check, for every entry: seq follows its predecessor
    (no gap), the readable columns say what the stored canonical text says, SHA-256 of that text
    is the stored hash, and prev_hash is the predecessor's hash. Then check the chain against the
    latest checkpoint (its HMAC, and the hash at its seq), so a removed tail is caught too.

    Rows are streamed (a server-side cursor on PostgreSQL), never loaded as model instances.
    """
    result = Verification()
    # Read before the chain: a checkpoint signed later could name entries sealed after our read.
    checkpoint = AuditCheckpoint.objects.order_by("-seq", "-id").first()
    rows = _rows_postgresql() if connection.vendor == "postgresql" else _rows_portable()
    # closing(): a chain that breaks early must end the stream before the connection is used again.
    with closing(rows):
        _check_chain(result, rows, checkpoint)
    if result.ok:
        _check_checkpoint(result, checkpoint)
    _report_pending(result)
    return result


def _check_chain(result: Verification, rows: Iterable[tuple], checkpoint: AuditCheckpoint | None) -> None:
    expected_seq, last_hash, last_prev = 1, GENESIS_HASH, None
    for seq, prev_hash, stored_hash, stored_text, columns_match in rows:
        if seq != expected_seq:
            result.fail(expected_seq, f"entry {expected_seq} is missing (the next entry is {seq})")
            return
        if prev_hash == last_prev:
            result.fail(seq - 1, f"entries {seq - 1} and {seq} name the same predecessor: one was inserted")
            return
        if not columns_match:
            result.fail(seq, f"entry {seq} was altered: its columns differ from the text that was hashed")
            return
        if entry_hash(stored_text) != stored_hash:
            result.fail(seq, f"entry {seq} was altered: its hash does not match its text")
            return
        if prev_hash != last_hash:
            result.fail(seq - 1, f"entry {seq - 1} was altered: entry {seq} recorded a different hash for it")
            return
        if checkpoint is not None and seq == checkpoint.seq and stored_hash != checkpoint.hash:
            result.fail(seq, f"entry {seq} differs from the signed checkpoint: the chain was rewritten")
            return
        expected_seq, last_hash, last_prev = seq + 1, stored_hash, prev_hash
    result.count = expected_seq - 1
    result.head_seq, result.head_hash = result.count, last_hash


def _rows_portable() -> Generator[tuple[int, str, str, bytes, bool], None, None]:
    """(seq, prev_hash, hash, canonical bytes, columns match them) in seq order: the canonical
    text is rebuilt from the columns and compared byte for byte."""
    rows = (
        AuditEntry.objects.filter(seq__isnull=False)
        .order_by("seq")
        .values_list("seq", "prev_hash", "hash", "canonical", *CHAINED_FIELDS)
        .iterator(chunk_size=VERIFY_CHUNK)
    )
    for seq, prev_hash, stored_hash, stored_text, *values in rows:
        stored = stored_text.encode()
        yield seq, prev_hash, stored_hash, stored, canonical_bytes(chained_fields(seq, prev_hash, values)) == stored


# The same rows as _rows_portable, with PostgreSQL formatting the timestamp and task id as text
# (parsing them into Python objects only to format them again is most of the per-row cost).
_PG_ROWS = f"""
SELECT seq, prev_hash, hash, canonical, component, action, actor, actor_type, phase, target_type,
       target_id, task_id::text, to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), details
FROM {AuditEntry._meta.db_table} WHERE seq IS NOT NULL ORDER BY seq
"""


def _rows_postgresql() -> Generator[tuple[int, str, str, bytes, bool], None, None]:
    loads, dumps, sort_keys = orjson.loads, orjson.dumps, orjson.OPT_SORT_KEYS
    connection.ensure_connection()
    # psycopg's stream() in chunked-rows mode: the server keeps sending while Python hashes, and
    # memory holds one chunk (a server-side cursor would stop the server between FETCHes).
    with connection.connection.cursor() as cursor:
        stream = cursor.stream(_PG_ROWS, size=VERIFY_CHUNK)
        try:
            for (
                seq,
                prev_hash,
                stored_hash,
                stored_text,
                component,
                action,
                actor,
                kind,
                phase,
                target_type,
                target_id,
                task_id,
                timestamp,
                details,
            ) in stream:
                # The fields of audit.chain.chained_fields, spelled out: this loop is the hot path.
                fields = {
                    "component": component,
                    "action": action,
                    "actor": actor,
                    "actor_type": kind,
                    "phase": phase,
                    "target_type": target_type,
                    "target_id": target_id,
                    "task_id": task_id,
                    "timestamp": timestamp,
                    "details": loads(details),
                    "seq": seq,
                    "prev_hash": prev_hash,
                }
                stored = stored_text.encode()
                yield seq, prev_hash, stored_hash, stored, dumps(fields, option=sort_keys) == stored
        finally:
            # Stopped early (a bad entry): read the rest rather than let psycopg cancel the query,
            # which would abort the caller's transaction.
            for _ in stream:
                pass


def _check_checkpoint(result: Verification, checkpoint: AuditCheckpoint | None) -> None:
    if checkpoint is None:
        result.notes.append("no checkpoint yet: removal of the newest entries cannot be detected")
        return
    result.checkpoint = {"seq": checkpoint.seq, "hash": checkpoint.hash, "created_at": checkpoint.created_at}
    expected = checkpoint_signature(
        seq=checkpoint.seq, head_hash=checkpoint.hash, created_at=format_timestamp(checkpoint.created_at)
    )
    if not hmac.compare_digest(expected, checkpoint.signature):
        result.fail(checkpoint.seq, f"the checkpoint at seq {checkpoint.seq} is not signed with this server's key")
    elif result.head_seq < checkpoint.seq:
        result.fail(
            result.head_seq + 1,
            f"entries {result.head_seq + 1} to {checkpoint.seq} are missing (a checkpoint signed seq {checkpoint.seq})",
        )


def _report_pending(result: Verification) -> None:
    pending = AuditEntry.objects.filter(seq__isnull=True)
    result.pending = pending.count()
    if result.pending:
        oldest = pending.order_by("timestamp").values_list("timestamp", flat=True).first()
        result.oldest_pending_seconds = round((timezone.now() - oldest).total_seconds(), 3)
