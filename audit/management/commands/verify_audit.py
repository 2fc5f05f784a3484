"""Verify the audit chain: exit 0 printing the entry count and head hash when intact, exit 1 naming
the first bad seq when an entry was altered, removed or inserted, or the tail was cut."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder

from audit.selectors import audit_verify


class Command(BaseCommand):
    help = "Verify the hash-chained audit log against its canonical texts and the latest signed checkpoint."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="print the result as one JSON object")

    def handle(self, *args, **options) -> None:
        result = audit_verify()
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), cls=DjangoJSONEncoder))
        elif result.ok:
            self.stdout.write(f"audit chain intact: {result.count} entries, head seq {result.head_seq}")
            self.stdout.write(f"head hash {result.head_hash}")
        if result.pending:
            self.stderr.write(
                f"{result.pending} entries not yet sealed into the chain, oldest {result.oldest_pending_seconds} s"
            )
        for note in result.notes:
            self.stderr.write(note)
        if not result.ok:
            raise CommandError(f"audit chain broken at seq {result.first_bad_seq}: {result.problem}", returncode=1)
