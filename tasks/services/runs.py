"""Runs of work orders by Celery workers: their agent identity, the start of a run (session and
trace folder recorded on the execution)."""

from __future__ import annotations

import re
from pathlib import Path
from uuid import UUID

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction

from audit.actions import AuditAction
from audit.services import audit_record
from hol.actors import AGENT_GROUP, SYSTEM
from hol.errors import Conflict
from tasks.models import Execution, Worker
from tasks.services.queue import work_order_start
from tasks.services.sessions import session_open
from tasks.services.workers import worker_register

User = AbstractBaseUser

SERVICE_ACCOUNT_PREFIX = "hol-celery@"


def service_account_name(hostname: str) -> str:
    """The account Celery workers of one host act as; usernames allow letters, digits and @.+-_."""
    return (SERVICE_ACCOUNT_PREFIX + re.sub(r"[^\w.@+-]", "-", hostname))[:150]


def celery_account_ensure(*, hostname: str) -> User:
    """The agent service account of this host's Celery workers, created on first use (audited as
    HOL's own act). It has no usable password: it only ever acts through the worker process and
    the short-lived tokens the worker gives its agents."""
    username = service_account_name(hostname)
    with transaction.atomic():
        account, created = get_user_model().objects.get_or_create(username=username)
        if created:
            account.set_unusable_password()
            account.save(update_fields=["password"])
            account.groups.add(Group.objects.get_or_create(name=AGENT_GROUP)[0])
            audit_record(
                actor=SYSTEM,
                action=AuditAction.SERVICE_ACCOUNT_CREATED,
                target=account,
                details={"username": username, "role": AGENT_GROUP},
            )
    return account


def celery_worker_ensure(*, account: User, name: str) -> Worker:
    """The Worker row one Celery process claims as: one per process, so one process's heartbeats
    never keep alive the work of a sibling that died."""
    worker = Worker.objects.filter(user=account, name=name).first()
    return worker or worker_register(actor=account, name=name)


def run_start(*, actor: User, work_order_id: UUID, worker_id: UUID, trace_root: Path) -> Execution:
    """The holder starts running a claimed work order (claimed → running): a session is opened
    for the run and the execution records it and its trace folder, <root>/<task>/<attempt>/."""
    with transaction.atomic():
        # Started only by its holder: the actor's worker holds the order, so the actor owns
        # that worker and sees the task, all that session_create would check again.
        work_order = work_order_start(actor=actor, work_order_id=work_order_id)
        if str(work_order.worker_id) != str(worker_id):
            raise Conflict("the work order is held by another of your workers", code="not_holder")
        execution = Execution.objects.select_for_update().get(work_order=work_order, status=Execution.Status.RUNNING)
        session = session_open(
            actor=actor,
            session_id=f"hol-run-{work_order.pk}-{execution.attempt}",
            worker=work_order.worker,
            task_id=work_order.task_id,
        )
        execution.agent_session = session
        execution.trace_path = str(trace_root / str(work_order.task_id) / str(execution.attempt))
        execution.save(update_fields=["agent_session", "trace_path"])
        audit_record(
            actor=actor,
            action=AuditAction.EXECUTION_STARTED,
            target=execution,
            task_id=work_order.task_id,
            details={"attempt": execution.attempt, "session": session.session_id, "trace_path": execution.trace_path},
        )
    return execution
