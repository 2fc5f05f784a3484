"""Audit chain throughput and verification speed on PostgreSQL (a benchmark, not a test).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.audit

creates its own database (hol_bench_audit, dropped and recreated), migrates it, and measures:

  append   8 processes, 20,000 audited changes in all, each its own transaction:
           (a) anchor  the same AuditEntry rows INSERTed through the ORM, no chain (no sequencer);
           (b) chain   audit.services.audit_record (INSERT + post-commit sequencer kick), timed
                       until every entry is sealed into the chain (any entry a kick left pending
                       is sealed by one more sequencer run, as Beat would, inside the timing);
           append_ratio = (b) appends/s / (a) appends/s. Also, for context: raw psycopg INSERTs.
  verify   100,000 sealed entries: `manage.py verify_audit` (call_command) vs the anchor, one
           process streaming the same canonical texts from the database (the same psycopg
           stream) and hashing them with hashlib.sha256; verify_ratio = anchor s / verify s.
           Also, for context: hashlib over the same bytes already in memory.

The chain is checked (verify_audit succeeds, seq gapless) after every phase. The last line
printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

from bench._common import fresh_database

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "hol_bench_audit"
WRITERS = 8


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def release_connections_before_fork() -> None:
    from django.db import connections

    connections.close_all()
    for conn in connections.all(initialized_only=True):
        if conn.settings_dict.get("OPTIONS", {}).get("pool"):
            conn.close_pool()


def details_for(i: int) -> dict:
    return {"worker": str(uuid.UUID(int=i)), "attempt": i % 4, "lease_expires_at": "2026-11-25T17:24:30.123456Z"}


# --- the writers (forked children) ----------------------------------------------------------------


def write_chain(worker_id: str, user_id: int, count: int) -> Iterator[None]:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from audit.services import audit_record
    from tasks.models import Worker

    actor, worker = get_user_model().objects.get(pk=user_id), Worker.objects.get(pk=worker_id)
    yield  # setup done; timed from here
    for i in range(count):
        with transaction.atomic():
            audit_record(actor=actor, action="work_order.claimed", target=worker, details=details_for(i))


def write_plain_orm(worker_id: str, user_id: int, count: int) -> Iterator[None]:
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from audit.chain import normalise
    from audit.models import AuditEntry
    from hol.actors import actor_label, actor_type
    from tasks.models import Worker

    actor, worker = get_user_model().objects.get(pk=user_id), Worker.objects.get(pk=worker_id)
    yield
    for i in range(count):
        with transaction.atomic():
            AuditEntry.objects.create(
                component="tasks",
                action="work_order.claimed",
                actor=actor_label(actor),
                actor_type=actor_type(actor),
                target_type="worker",
                target_id=str(worker.pk),
                timestamp=timezone.now(),
                details=normalise(details_for(i)),
            )


def write_plain_raw(worker_id: str, user_id: int, count: int) -> Iterator[None]:
    from datetime import UTC, datetime

    conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    yield
    for i in range(count):
        conn.execute(
            "INSERT INTO audit_auditentry (component, action, actor, actor_type, phase, target_type, target_id, "
            "timestamp, details, prev_hash, hash, canonical) VALUES ('tasks', 'work_order.claimed', 'bench_agent', "
            "'agent', '', 'worker', %s, %s, %s, '', '', '')",
            [worker_id, datetime.now(UTC), json.dumps(details_for(i))],
        )
    conn.close()


WRITERS_BY_NAME = {"chain": write_chain, "plain_orm": write_plain_orm, "plain_raw": write_plain_raw}


def _child(name: str, args: tuple, barrier, results) -> None:
    from django.db import connections

    try:
        steps = WRITERS_BY_NAME[name](*args)
        next(steps)
        barrier.wait(timeout=120)
        started = time.perf_counter()
        for _ in steps:
            pass
        results.put((started, time.perf_counter(), None))
    except BaseException:
        barrier.abort()
        results.put((0.0, 0.0, traceback.format_exc()))
    finally:
        connections.close_all()


def run_writers(name: str, workers: list, user_id: int, per_writer: int) -> tuple[float, float]:
    """Fork one writer per worker; return (first start, last finish) in perf_counter time."""
    release_connections_before_fork()
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(len(workers)), context.Queue()
    procs = [
        context.Process(target=_child, args=(name, (str(w.pk), user_id, per_writer), barrier, results)) for w in workers
    ]
    try:
        for proc in procs:
            proc.start()
        rows = [results.get(timeout=900) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
    errors = [error for *_, error in rows if error]
    if errors:
        raise RuntimeError(f"a writer failed:\n{errors[0]}")
    return min(row[0] for row in rows), max(row[1] for row in rows)


def truncate_audit() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        # TRUNCATE fires no row triggers: the benchmark's own reset between phases.
        cursor.execute("TRUNCATE audit_auditentry, audit_auditcheckpoint RESTART IDENTITY")
        cursor.execute("VACUUM ANALYZE audit_auditentry")


def check_chain(expected: int) -> None:
    from django.core.management import call_command

    out = io.StringIO()
    call_command("verify_audit", stdout=out, stderr=io.StringIO())
    if f"{expected} entries" not in out.getvalue():
        raise RuntimeError(f"verify_audit: {out.getvalue()!r}, expected {expected} entries")


# --- phases ---------------------------------------------------------------------------------------


def append_phase(name: str, workers: list, user_id: int, total: int) -> dict:
    from audit.models import AuditEntry
    from audit.services import audit_seal_pending

    truncate_audit()
    started, writers_done = run_writers(name, workers, user_id, total // len(workers))
    figures: dict = {}
    if name == "chain":
        figures["pending_when_writers_done"] = AuditEntry.objects.filter(seq__isnull=True).count()
        audit_seal_pending()  # what Beat would do for entries a kick left at its batch cap
        finished = time.perf_counter()
        figures["seal_tail_seconds"] = round(finished - writers_done, 3)
        check_chain(total)
    else:
        finished = writers_done
        if AuditEntry.objects.count() != total:
            raise RuntimeError("plain inserts lost rows")
    seconds = finished - started
    figures.update(seconds=round(seconds, 3), per_second=round(total / seconds, 1))
    log(f"{name:10s} {total} appends in {seconds:.2f}s = {total / seconds:.0f}/s {figures}")
    return figures


def verify_phase(count: int, repeats: int) -> dict:
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from audit.chain import normalise
    from audit.models import AuditEntry
    from audit.selectors import _PG_ROWS
    from audit.services import audit_seal_pending

    truncate_audit()
    now = timezone.now()
    AuditEntry.objects.bulk_create(
        (
            AuditEntry(
                component="tasks",
                action="work_order.claimed",
                actor="bench_agent",
                actor_type="agent",
                target_type="workorder",
                target_id=str(uuid.UUID(int=i)),
                task_id=uuid.UUID(int=i + 1),
                timestamp=now,
                details=normalise(details_for(i)),
            )
            for i in range(count)
        ),
        batch_size=5000,
    )
    started = time.perf_counter()
    audit_seal_pending()
    seal_seconds = time.perf_counter() - started
    log(f"sealed {count} entries in {seal_seconds:.2f}s (one sequencer, {count / seal_seconds:.0f}/s)")
    check_chain(count)

    def verify() -> None:
        out = io.StringIO()
        call_command("verify_audit", stdout=out, stderr=io.StringIO())
        assert f"{count} entries" in out.getvalue()

    def anchor() -> None:
        connection.ensure_connection()
        with connection.connection.cursor() as cursor:
            sql = f"SELECT canonical FROM {AuditEntry._meta.db_table} WHERE seq IS NOT NULL ORDER BY seq"
            for (text,) in cursor.stream(sql, size=5000):
                hashlib.sha256(text.encode()).hexdigest()

    texts = [text.encode() for text in AuditEntry.objects.order_by("seq").values_list("canonical", flat=True)]

    def in_memory() -> None:
        for data in texts:
            hashlib.sha256(data).hexdigest()

    def best(function) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            function()
            times.append(time.perf_counter() - started)
        return min(times)

    verify_s, anchor_s, memory_s = best(verify), best(anchor), best(in_memory)
    assert "canonical" in _PG_ROWS  # the verifier reads the same column the anchor does
    log(f"verify_audit {verify_s:.3f}s, anchor (stream + sha256) {anchor_s:.3f}s, in-memory sha256 {memory_s:.3f}s")
    return {
        "entries": count,
        "seal_seconds": round(seal_seconds, 3),
        "verify_seconds": round(verify_s, 3),
        "anchor_stream_hash_seconds": round(anchor_s, 3),
        "anchor_in_memory_hash_seconds": round(memory_s, 3),
        "verify_ratio": round(anchor_s / verify_s, 3),
        "verify_ratio_vs_in_memory_hash": round(memory_s / verify_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=20_000)
    parser.add_argument("--verify-entries", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="append and verify runs; the best is kept")
    args = parser.parse_args()
    base_url = os.environ.get("DATABASE_URL")
    if not base_url or not base_url.startswith("postgres"):
        sys.exit("set DATABASE_URL to a PostgreSQL server (the benchmark creates its own database there)")
    os.environ["DATABASE_URL"] = fresh_database(base_url, DB_NAME)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hol.settings")
    sys.path.insert(0, str(ROOT))
    import django

    from hol import datadir

    datadir.prepare()  # the data dir's keys, as manage.py makes them
    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from tasks.models import Worker

    user = get_user_model().objects.create_user("bench_agent")
    user.groups.add(Group.objects.get_or_create(name="agent")[0])
    workers = [Worker.objects.create(name=f"bench-{i}", user=user) for i in range(WRITERS)]

    runs: dict[str, list[dict]] = {"plain_orm": [], "chain": [], "plain_raw": []}
    for _ in range(args.repeats):
        for name in ("plain_orm", "chain", "plain_raw"):
            runs[name].append(append_phase(name, workers, user.pk, args.appends))
    best = {name: max(results, key=lambda r: r["per_second"]) for name, results in runs.items()}
    append = {
        "writers": WRITERS,
        "appends": args.appends,
        "anchor_plain_orm_per_second": best["plain_orm"]["per_second"],
        "chain_per_second": best["chain"]["per_second"],
        "chain_pending_when_writers_done": best["chain"]["pending_when_writers_done"],
        "chain_seal_tail_seconds": best["chain"]["seal_tail_seconds"],
        "plain_raw_psycopg_per_second": best["plain_raw"]["per_second"],
        "append_ratio": round(best["chain"]["per_second"] / best["plain_orm"]["per_second"], 3),
        "append_ratio_vs_raw_psycopg": round(best["chain"]["per_second"] / best["plain_raw"]["per_second"], 3),
        "runs": runs,
    }
    verify = verify_phase(args.verify_entries, args.repeats)
    print(json.dumps({"benchmark": "audit", "cpus": os.cpu_count(), "append": append, "verify": verify}))


if __name__ == "__main__":
    main()
