from django.db import migrations, models


def approved_windows_move_to_consume_by(apps, schema_editor):
    # Until now an approved request's expires_at held the end of its window to be used.
    ApprovalRequest = apps.get_model("approvals", "ApprovalRequest")
    ApprovalRequest.objects.filter(status="approved", consume_by__isnull=True).update(consume_by=models.F("expires_at"))


class Migration(migrations.Migration):
    dependencies = [("approvals", "0002_approval_requests")]

    operations = [
        migrations.RenameField(model_name="approvalrequest", old_name="session", new_name="agent_session"),
        migrations.AddField(
            model_name="approvalrequest",
            name="consume_by",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(approved_windows_move_to_consume_by, migrations.RunPython.noop),
    ]
