import uuid

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0003_agent_session_consume_by"),
        ("tasks", "0004_pages_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ExecutedAction",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("tool_use_id", models.CharField(max_length=200)),
                ("tool_name", models.CharField(blank=True, default="", max_length=100)),
                ("thread_id", models.CharField(blank=True, default="", max_length=200)),
                ("action_type", models.CharField(max_length=100)),
                ("resource_type", models.CharField(blank=True, default="", max_length=100)),
                ("operation", models.CharField(blank=True, default="", max_length=100)),
                ("environment", models.CharField(blank=True, default="", max_length=100)),
                ("action_details", models.JSONField(blank=True, default=dict)),
                ("action_hash", models.CharField(max_length=64)),
                (
                    "risk_level",
                    models.CharField(
                        choices=[("low", "Low"), ("medium", "Medium"), ("high", "High"), ("critical", "Critical")],
                        max_length=10,
                    ),
                ),
                (
                    "outcome",
                    models.CharField(
                        choices=[("succeeded", "Succeeded"), ("failed", "Failed")], default="succeeded", max_length=10
                    ),
                ),
                ("flagged", models.BooleanField(default=False)),
                ("reported_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "agent_session",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="executed_actions",
                        to="tasks.agentsession",
                    ),
                ),
                (
                    "approval",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="execution",
                        to="approvals.approvalrequest",
                    ),
                ),
                (
                    "reported_by",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL
                    ),
                ),
                (
                    "task",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="executed_actions",
                        to="tasks.task",
                    ),
                ),
                (
                    "work_order",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="executed_actions",
                        to="tasks.workorder",
                    ),
                ),
            ],
            options={
                "ordering": ["-reported_at"],
                "indexes": [models.Index(fields=["task", "flagged"], name="approvals_e_task_id_7c0993_idx")],
                "constraints": [
                    models.UniqueConstraint(fields=("reported_by", "tool_use_id"), name="one_report_per_tool_use")
                ],
            },
        ),
    ]
