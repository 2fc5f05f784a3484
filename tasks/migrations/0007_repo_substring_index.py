"""A trigram index for the task list's repository filter (a substring: `target_repo__icontains`,
which PostgreSQL runs as `UPPER(target_repo::text) LIKE UPPER('%…%')`; a b-tree cannot serve it, so
without this index the filter reads every task). PostgreSQL only, and only where the pg_trgm
extension is available; elsewhere nothing is done and the filter scans as before."""

from django.db import migrations

INDEX = "tasks_task_repo_trgm"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
        if cursor.fetchone() is None:
            return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    # The expression must be the one Django's icontains writes, or the planner will not use it.
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON tasks_task USING gin (UPPER(target_repo::text) gin_trgm_ops)"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("tasks", "0006_complete_tells_callback")]

    operations = [migrations.RunPython(create_index, drop_index, elidable=False)]
