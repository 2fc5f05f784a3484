"""On PostgreSQL, claim and complete each run as one statement: a PL/pgSQL function per operation.

tasks.services.queue calls them (SQLite runs the same rules through the ORM, under the same
tests). One round trip instead of sixteen is what lets the queue keep up with a plain
`SKIP LOCKED` loop; the functions' plans are cached per connection, so PostgreSQL does not plan
six statements per call either.

Each function checks before it changes anything and, when it refuses, changes nothing and returns
an `outcome` with the facts the service needs to raise the same error the ORM path raises
(ensure_worker_owner, ensure_holder, ensure_transition); the allowed statuses come from the
service's transition tables as arguments. An audit entry is written exactly as
audit.services.audit_record writes one (pending, sealed after commit); the worker's
idle → busy → idle changes are audited as worker.status_changed when the status really changes.
`p_actor_id` is NULL for HOL itself (SYSTEM); `p_actor_type` is NULL for a user, whose type
(agent or human, by membership of the group `p_agent_group`) is read here, as hol.actors does.
"""

from django.db import migrations

INSTALL = """
CREATE OR REPLACE FUNCTION hol_actor_type(p_actor_id integer, p_actor_type text, p_agent_group text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_actor_type IS NOT NULL THEN
        RETURN p_actor_type;
    END IF;
    IF EXISTS (SELECT 1 FROM auth_user_groups ug JOIN auth_group g ON g.id = ug.group_id
               WHERE ug.user_id = p_actor_id AND g.name = p_agent_group) THEN
        RETURN 'agent';
    END IF;
    RETURN 'human';
END
$$;

-- PL/pgSQL rather than SQL: its plans are cached for the connection, a SQL function's are not.
CREATE OR REPLACE FUNCTION hol_audit_pending(
    p_action text, p_actor text, p_actor_type text, p_target_type text, p_target_id text,
    p_task_id uuid, p_now timestamptz, p_details jsonb
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_auditentry (component, action, actor, actor_type, phase, target_type, target_id,
                                  task_id, timestamp, details, seq, prev_hash, hash, canonical)
    VALUES ('tasks', p_action, p_actor, p_actor_type, '', p_target_type, p_target_id,
            p_task_id, p_now, p_details, NULL, '', '', '');
END
$$;

CREATE OR REPLACE FUNCTION hol_work_order_claim(
    p_worker_id uuid, p_actor_id integer, p_actor text, p_actor_type text, p_agent_group text,
    p_now timestamptz, p_lease_expires_at timestamptz, p_task_from text[]
) RETURNS TABLE (outcome text, fact text, work_order tasks_workorder, task tasks_task)
LANGUAGE plpgsql AS $$
DECLARE
    v_worker tasks_worker;
    v_order tasks_workorder;
    v_task tasks_task;
    v_task_status text;
    v_worker_status text;
    v_kind text;
BEGIN
    SELECT * INTO v_worker FROM tasks_worker w WHERE w.id = p_worker_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'worker_not_found', NULL::text, NULL::tasks_workorder, NULL::tasks_task;
        RETURN;
    END IF;
    IF p_actor_id IS NOT NULL AND v_worker.user_id <> p_actor_id THEN
        RETURN QUERY SELECT 'refused', v_worker.user_id::text, NULL::tasks_workorder, NULL::tasks_task;
        RETURN;
    END IF;
    -- Highest priority, then oldest; rows other claimers hold are skipped, never waited for.
    SELECT * INTO v_order FROM tasks_workorder q
        WHERE q.status = 'queued' AND q.available_at <= p_now
        ORDER BY q.priority DESC, q.enqueued_at ASC LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED;
    IF FOUND THEN
        SELECT t.status INTO v_task_status FROM tasks_task t WHERE t.id = v_order.task_id FOR NO KEY UPDATE;
        IF NOT (v_task_status = ANY (p_task_from)) THEN
            RETURN QUERY SELECT 'task_refused', v_task_status, v_order, NULL::tasks_task;
            RETURN;
        END IF;
        v_worker_status := 'busy';
    ELSIF v_worker.status = 'offline' THEN
        v_worker_status := 'idle';
    ELSE
        v_worker_status := v_worker.status;
    END IF;
    v_kind := hol_actor_type(p_actor_id, p_actor_type, p_agent_group);
    IF v_worker_status <> v_worker.status THEN
        UPDATE tasks_worker SET status = v_worker_status, last_heartbeat_at = p_now, updated_at = p_now
            WHERE id = p_worker_id;
        PERFORM hol_audit_pending('worker.status_changed', p_actor, v_kind, 'worker', p_worker_id::text, NULL,
                                  p_now, jsonb_build_object('from', v_worker.status, 'to', v_worker_status));
    ELSE
        UPDATE tasks_worker SET last_heartbeat_at = p_now WHERE id = p_worker_id;
    END IF;
    IF v_order.id IS NULL THEN
        -- The fact says whether an entry was written (so the caller kicks the sealer only then).
        RETURN QUERY SELECT 'empty', CASE WHEN v_worker_status <> v_worker.status THEN 'audited' END,
                            NULL::tasks_workorder, NULL::tasks_task;
        RETURN;
    END IF;
    UPDATE tasks_workorder SET status = 'claimed', worker_id = p_worker_id, claimed_at = p_now,
                               lease_expires_at = p_lease_expires_at
        WHERE id = v_order.id RETURNING * INTO v_order;
    INSERT INTO tasks_execution (id, task_id, work_order_id, worker_id, attempt, status, started_at, output,
                                 trace_path)
        VALUES (gen_random_uuid(), v_order.task_id, v_order.id, p_worker_id, v_order.retry_count + 1, 'running',
                p_now, '', '');
    UPDATE tasks_task SET status = 'in_progress', updated_at = p_now WHERE id = v_order.task_id
        RETURNING * INTO v_task;
    PERFORM hol_audit_pending('work_order.claimed', p_actor, v_kind, 'workorder', v_order.id::text, v_order.task_id,
                              p_now, jsonb_build_object('attempt', v_order.retry_count + 1,
                                                        'worker', p_worker_id::text));
    RETURN QUERY SELECT 'ok', NULL::text, v_order, v_task;
END
$$;

CREATE OR REPLACE FUNCTION hol_work_order_complete(
    p_work_order_id uuid, p_actor_id integer, p_actor text, p_actor_type text, p_agent_group text,
    p_now timestamptz, p_output text, p_from text[], p_held text[], p_task_from text[]
) RETURNS TABLE (outcome text, fact text, work_order tasks_workorder)
LANGUAGE plpgsql AS $$
DECLARE
    v_order tasks_workorder;
    v_holder integer;
    v_task_status text;
    v_kind text;
BEGIN
    SELECT * INTO v_order FROM tasks_workorder wo WHERE wo.id = p_work_order_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', NULL::text, NULL::tasks_workorder;
        RETURN;
    END IF;
    SELECT w.user_id INTO v_holder FROM tasks_worker w WHERE w.id = v_order.worker_id;
    -- Only the holder's account (or HOL itself) may finish it, and only from a status that allows it.
    IF (v_order.worker_id IS NOT NULL AND p_actor_id IS NOT NULL AND v_holder <> p_actor_id)
       OR NOT (v_order.status = ANY (p_from)) THEN
        RETURN QUERY SELECT 'refused', v_holder::text, v_order;
        RETURN;
    END IF;
    SELECT t.status INTO v_task_status FROM tasks_task t WHERE t.id = v_order.task_id FOR NO KEY UPDATE;
    IF NOT (v_task_status = ANY (p_task_from)) THEN
        RETURN QUERY SELECT 'task_refused', v_task_status, v_order;
        RETURN;
    END IF;
    v_kind := hol_actor_type(p_actor_id, p_actor_type, p_agent_group);
    UPDATE tasks_workorder SET status = 'completed', completed_at = p_now, lease_expires_at = NULL
        WHERE id = v_order.id RETURNING * INTO v_order;
    UPDATE tasks_execution SET status = 'completed', completed_at = p_now, output = p_output, exit_code = 0
        WHERE work_order_id = v_order.id AND status = 'running';
    UPDATE tasks_task SET status = 'completed', completed_at = p_now, updated_at = p_now WHERE id = v_order.task_id;
    IF v_order.worker_id IS NOT NULL THEN
        -- A worker holding nothing more goes back to idle.
        UPDATE tasks_worker w SET status = 'idle', updated_at = p_now
            WHERE w.id = v_order.worker_id AND w.status = 'busy'
              AND NOT EXISTS (SELECT 1 FROM tasks_workorder h WHERE h.worker_id = w.id AND h.status = ANY (p_held));
        IF FOUND THEN
            PERFORM hol_audit_pending('worker.status_changed', p_actor, v_kind, 'worker', v_order.worker_id::text,
                                      NULL, p_now, jsonb_build_object('from', 'busy', 'to', 'idle'));
        END IF;
    END IF;
    PERFORM hol_audit_pending('work_order.completed', p_actor, v_kind, 'workorder', v_order.id::text,
                              v_order.task_id, p_now, '{}'::jsonb);
    RETURN QUERY SELECT 'ok', NULL::text, v_order;
END
$$;
"""

UNINSTALL = """
DROP FUNCTION IF EXISTS hol_work_order_complete(uuid, integer, text, text, text, timestamptz, text, text[], text[], text[]);
DROP FUNCTION IF EXISTS hol_work_order_claim(uuid, integer, text, text, text, timestamptz, timestamptz, text[]);
DROP FUNCTION IF EXISTS hol_audit_pending(text, text, text, text, text, uuid, timestamptz, jsonb);
DROP FUNCTION IF EXISTS hol_actor_type(integer, text, text);
"""


def on_postgresql(sql: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0001_initial"),
        ("audit", "0003_append_only_trigger"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(on_postgresql(INSTALL), on_postgresql(UNINSTALL), elidable=False)]
