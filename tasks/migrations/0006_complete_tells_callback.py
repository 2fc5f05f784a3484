"""hol_work_order_complete also tells whether the task names a callback_url (`fact` = 'callback'
on success), so completing needs no second statement to decide whether to send one. Only the two
lines that read the task and answer change; the rest of the function is 0002's."""

from importlib import import_module

from django.db import migrations

_base = import_module("tasks.migrations.0002_queue_functions")
ORIGINAL = _base.INSTALL[_base.INSTALL.index("CREATE OR REPLACE FUNCTION hol_work_order_complete") :]
CHANGES = [
    ("    v_kind text;\n", "    v_kind text;\n    v_callback boolean;\n"),
    (
        "SELECT t.status INTO v_task_status FROM tasks_task t",
        "SELECT t.status, t.callback_url <> '' INTO v_task_status, v_callback FROM tasks_task t",
    ),
    (
        "RETURN QUERY SELECT 'ok', NULL::text, v_order;",
        "RETURN QUERY SELECT 'ok', CASE WHEN v_callback THEN 'callback' END, v_order;",
    ),
]


def _changed(sql: str) -> str:
    for old, new in CHANGES:
        assert sql.count(old) == 1, old
        sql = sql.replace(old, new)
    return sql


class Migration(migrations.Migration):
    dependencies = [("tasks", "0005_approval_gate_callback_url")]

    operations = [
        migrations.RunPython(_base.on_postgresql(_changed(ORIGINAL)), _base.on_postgresql(ORIGINAL), elidable=False)
    ]
