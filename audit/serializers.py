from __future__ import annotations

from rest_framework import serializers

from audit.chain import CHAINED_FIELDS
from audit.models import AuditEntry


class AuditEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = ["id", "seq", *CHAINED_FIELDS, "prev_hash", "hash"]
        read_only_fields = fields


class AuditQuerySerializer(serializers.Serializer):
    """GET /api/v1/audit filters. `target` is `<type>:<id>` (e.g. `workorder:<uuid>`) or a type."""

    task = serializers.UUIDField(required=False)
    target = serializers.CharField(required=False, max_length=130)
    actor = serializers.CharField(required=False, max_length=150)
    action = serializers.CharField(required=False, max_length=80)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)

    def validate(self, attrs: dict) -> dict:
        target = attrs.pop("target", "")
        if target:
            target_type, _, target_id = target.partition(":")
            attrs["target_type"] = target_type
            if target_id:
                attrs["target_id"] = target_id
        if "task" in attrs:
            attrs["task_id"] = attrs.pop("task")
        if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError("since must be before until")
        return attrs


class VerificationSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    count = serializers.IntegerField()
    head_seq = serializers.IntegerField()
    head_hash = serializers.CharField()
    first_bad_seq = serializers.IntegerField(allow_null=True)
    problem = serializers.CharField()
    checkpoint = serializers.DictField(allow_null=True)
    pending = serializers.IntegerField(help_text="entries recorded but not yet sealed into the chain")
    oldest_pending_seconds = serializers.FloatField(allow_null=True)
    notes = serializers.ListField(child=serializers.CharField())
