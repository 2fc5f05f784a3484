"""The canonical form of an audit entry, its hash and the checkpoint signature: pure functions,
no database.

An entry's hash is SHA-256 over one canonical JSON text of every chained field plus `seq` and
`prev_hash`: keys sorted, no insignificant whitespace, UTF-8, timestamps as fixed-width microsecond
UTC (`2026-11-25T17:24:30.123456Z`), no floats anywhere (a float's text is not the same in every
language and database, so `normalise` turns floats into strings before they are ever stored).
The text is stored next to the hash (`AuditEntry.canonical`) and verification hashes exactly that
text, so a database that re-orders or re-spaces JSON (PostgreSQL's jsonb) cannot break the chain;
verification separately checks that the readable columns still say what the text says.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from django.conf import settings

GENESIS_HASH = "0" * 64
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# The fields of AuditEntry that are hashed, besides seq and prev_hash.
CHAINED_FIELDS = (
    "component",
    "action",
    "actor",
    "actor_type",
    "phase",
    "target_type",
    "target_id",
    "task_id",
    "timestamp",
    "details",
)


def format_timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def normalise(value: Any) -> Any:
    """`value` as plain JSON with no floats: floats, Decimals, UUIDs and datetimes become strings,
    tuples lists, dict keys strings (sorted, so every backend stores the same order)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        # Beyond 64 bits JSON parsers disagree (many read a float); keep such numbers as text.
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, float):
        # repr is the shortest text that round-trips; nan/inf have no JSON form at all.
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(key): normalise(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [normalise(item) for item in value]
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, (Decimal, UUID, date)):
        return str(value)
    raise TypeError(f"audit details cannot hold a {type(value).__name__}")


def canonical_bytes(fields: dict[str, Any]) -> bytes:
    """The canonical UTF-8 JSON of an entry given as {field: value} with `seq` and `prev_hash`.

    Byte for byte what `json.dumps(fields, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)` gives for normalised values (so anyone can reproduce it); orjson only
    because it is several times faster, which sealing and verification feel.
    """
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def chained_fields(seq: int, prev_hash: str, values: Any) -> dict[str, Any]:
    """{field: canonical value} of one entry, from its column values in CHAINED_FIELDS order as
    the database returns them (timestamp a datetime, task_id a UUID or None)."""
    fields = dict(zip(CHAINED_FIELDS, values, strict=True))
    fields["seq"], fields["prev_hash"] = seq, prev_hash
    fields["timestamp"] = format_timestamp(fields["timestamp"])
    if fields["task_id"] is not None:
        fields["task_id"] = str(fields["task_id"])
    return fields


def entry_hash(canonical: bytes) -> str:
    return hashlib.sha256(canonical).hexdigest()


def checkpoint_signature(*, seq: int, head_hash: str, created_at: str) -> str:
    """HMAC-SHA256 of a chain head under the checkpoint key, which lives outside the database."""
    message = f"hol-audit-checkpoint:{seq}:{head_hash}:{created_at}".encode()
    return hmac.new(settings.HOL_AUDIT_CHECKPOINT_KEY.encode(), message, hashlib.sha256).hexdigest()
