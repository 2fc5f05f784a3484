"""On PostgreSQL, make the audit tables append-only in the database itself.

audit_auditentry: DELETE is refused; UPDATE is refused except the one transition the sequencer
makes (pending → sealed: seq, prev_hash, hash and canonical set once, nothing else touched).
audit_auditcheckpoint: UPDATE and DELETE are refused. A superuser can still bypass triggers
(session_replication_role = replica, DISABLE TRIGGER); verify_audit detects what they change.
SQLite has no such guard; verification is the same on both.
"""

from django.db import migrations

INSTALL = """
CREATE OR REPLACE FUNCTION audit_entry_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.seq IS NULL AND NEW.seq IS NOT NULL
       AND OLD.prev_hash = '' AND OLD.hash = '' AND OLD.canonical = ''
       AND (NEW.id, NEW.component, NEW.action, NEW.actor, NEW.actor_type, NEW.phase, NEW.target_type,
            NEW.target_id, NEW.task_id, NEW.timestamp, NEW.details)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.component, OLD.action, OLD.actor, OLD.actor_type, OLD.phase, OLD.target_type,
            OLD.target_id, OLD.task_id, OLD.timestamp, OLD.details)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit entries are append-only: % refused on entry %', TG_OP, OLD.id
        USING ERRCODE = 'restrict_violation';
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_auditentry
    FOR EACH ROW EXECUTE FUNCTION audit_entry_append_only();

CREATE OR REPLACE FUNCTION audit_checkpoint_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit checkpoints are append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON audit_auditcheckpoint
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_append_only();
"""

UNINSTALL = """
DROP TRIGGER IF EXISTS audit_checkpoint_append_only ON audit_auditcheckpoint;
DROP FUNCTION IF EXISTS audit_checkpoint_append_only();
DROP TRIGGER IF EXISTS audit_entry_append_only ON audit_auditentry;
DROP FUNCTION IF EXISTS audit_entry_append_only();
"""


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(INSTALL, params=None)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(UNINSTALL, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_chain")]

    operations = [migrations.RunPython(install, uninstall, elidable=False)]
