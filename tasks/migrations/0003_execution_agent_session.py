from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tasks", "0002_queue_functions")]

    operations = [
        migrations.RenameField(model_name="execution", old_name="session", new_name="agent_session"),
        migrations.AlterField(
            model_name="agentsession",
            name="termination_reason",
            field=models.CharField(blank=True, default="", max_length=1024),
        ),
    ]
