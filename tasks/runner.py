"""How a Celery worker carries out a work order: claim it through the queue service, run the agent
command in its own process group under limits, stream its output to the task's chat, and report
the outcome through the queue service. State changes go through services; this module manages the
agent process and decides what to ask of them."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from hol import run_scope
from hol.errors import DomainError
from hol.redact import redact
from tasks import services as task_services
from tasks.agent_process import ROOT, AgentOutcome, agent_command, run_agent
from tasks.agent_user import AgentUser, AgentUserError, agent_user, hand_over
from tasks.models import Execution, Worker, WorkOrder
from tasks.run_output import OutputStreamer
from tasks.services.runs import celery_account_ensure, celery_worker_ensure, run_start

log = logging.getLogger(__name__)

# Environment an agent inherits from the worker; everything else (database URL, secret key,
# broker) stays out of its reach.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL")
OUTPUT_TAIL_CHARS = 16 * 1024


# --- one run of a claimed work order ---


@dataclass
class CeleryIdentity:
    account: Any
    worker_id: UUID


_identity: dict[int, CeleryIdentity] = {}


def celery_identity() -> CeleryIdentity:
    """This process's account and Worker row (one Worker per process; made on first use, and
    again if the row was removed)."""
    pid = os.getpid()
    known = _identity.get(pid)
    if known is None or not Worker.objects.filter(pk=known.worker_id).exists():
        hostname = socket.gethostname()
        account = celery_account_ensure(hostname=hostname)
        worker = celery_worker_ensure(account=account, name=f"celery {hostname} pid {pid}")
        _identity[pid] = CeleryIdentity(account=account, worker_id=worker.pk)
        if os.geteuid() == 0 and not settings.HOL_AGENT_USER:
            log.warning("agents run as root: set HOL_AGENT_USER so they cannot read HOL's keys")
    return _identity[pid]


def agent_token(account: Any, *, work_order: WorkOrder, lifetime_seconds: float) -> str:
    """A token for the agent, valid for the length of its run and limited to its task and work
    order (see hol.run_scope): the service account behind it holds other runs' work too."""
    token = AccessToken.for_user(account)
    token.set_exp(lifetime=timedelta(seconds=lifetime_seconds))
    token[run_scope.CLAIM] = run_scope.RunScope(task_id=work_order.task_id, work_order_id=work_order.pk).as_claim()
    return str(token)


def agent_env(
    *, token: str, work_order: WorkOrder, session_id: str, trace_dir: Path, user: AgentUser | None = None
) -> dict[str, str]:
    env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    if user is not None:  # its own account: its trace folder is its home
        env.update(HOME=str(trace_dir), USER=user.name, LOGNAME=user.name)
    env.update({name: os.environ[name] for name in settings.HOL_AGENT_ENV_PASSTHROUGH if name in os.environ})
    env.update(
        HOL_API_URL=settings.HOL_API_URL,
        HOL_TOKEN=token,
        HOL_TASK_ID=str(work_order.task_id),
        HOL_WORK_ORDER_ID=str(work_order.pk),
        HOL_SESSION_ID=session_id,
        HOL_TRACE_DIR=str(trace_dir),
        # The reference agent checks the repository it clones against the same roots as intake.
        HOL_ALLOWED_REPO_PREFIXES=",".join(settings.HOL_ALLOWED_REPO_PREFIXES),
        PYTHONPATH=str(ROOT),  # the bundled hol_agent client
        PYTHONUNBUFFERED="1",  # lines reach the task page as they are printed
    )
    return env


# An agent may report its own outcome over the API before it exits; its run is then left to end
# by itself (the time budget still bounds it) instead of being killed as if it were cancelled.
_SETTLED_BY_HOLDER = (*WorkOrder.HELD, WorkOrder.Status.COMPLETED, WorkOrder.Status.FAILED)


def _still_held(identity: CeleryIdentity, work_order_id: UUID) -> bool:
    """Heartbeat (extends the lease) and tell whether the work order is still this worker's: held,
    or settled while it held it."""
    try:
        task_services.worker_heartbeat(actor=identity.account, worker_id=identity.worker_id)
    except DomainError:
        log.exception("heartbeat of worker %s failed", identity.worker_id)
    except DatabaseError:
        # E.g. a deadlock victim against the agent settling its own work order over the API: the
        # lease is long enough for the next poll to heartbeat again; the run must not die of it.
        log.warning("heartbeat of worker %s failed; trying again at the next poll", identity.worker_id, exc_info=True)
    mine = WorkOrder.objects.filter(pk=work_order_id, worker_id=identity.worker_id)
    return mine.filter(status__in=_SETTLED_BY_HOLDER).exists()


def run_claimed(identity: CeleryIdentity, work_order: WorkOrder) -> AgentOutcome | None:
    """Carry out one work order this worker has just claimed, and report how it ended (None
    when it was cancelled before it could start)."""
    try:
        execution = run_start(
            actor=identity.account,
            work_order_id=work_order.pk,
            worker_id=identity.worker_id,
            trace_root=settings.HOL_TRACE_ROOT,
        )
    except DomainError as error:
        log.info("work order %s did not start: %s", work_order.pk, error)
        return None
    trace_dir = Path(execution.trace_path)
    trace_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        user = agent_user()
        if user is not None:
            hand_over(trace_dir, user)
    except (AgentUserError, OSError) as error:
        outcome = AgentOutcome(
            ended="exited", exit_code=None, reason=f"agent could not start: {error}", duration_seconds=0
        )
        _report(identity, work_order=work_order, execution=execution, outcome=outcome, secrets=[])
        return outcome
    task = work_order.task
    session_id = execution.agent_session.session_id
    budget = float(task.time_budget_seconds)
    token = agent_token(identity.account, work_order=work_order, lifetime_seconds=budget + 120)
    # The values handed to the agent are redacted wherever it prints them.
    secrets = [token, *(os.environ.get(name, "") for name in settings.HOL_AGENT_ENV_PASSTHROUGH)]
    streamer = OutputStreamer(
        actor=identity.account, task_id=task.pk, session_id=session_id, trace_dir=trace_dir, secrets=secrets
    )
    started_at = timezone.now()
    try:
        outcome = run_agent(
            agent_command(),
            env=agent_env(token=token, work_order=work_order, session_id=session_id, trace_dir=trace_dir, user=user),
            cwd=trace_dir,
            time_budget_seconds=budget,
            on_lines=streamer,
            keep_going=lambda: _still_held(identity, work_order.pk),
            poll_seconds=settings.HOL_AGENT_POLL_SECONDS,
            cpu_seconds=settings.HOL_AGENT_CPU_SECONDS,
            memory_mb=settings.HOL_AGENT_MEMORY_MB,
            kill_grace_seconds=settings.HOL_AGENT_KILL_GRACE_SECONDS,
            user=user,
        )
    except OSError as error:  # the command could not start at all
        outcome = AgentOutcome(
            ended="exited", exit_code=None, reason=f"agent could not start: {error}", duration_seconds=0.0
        )
    finally:
        streamer.close()
    _write_result(trace_dir, work_order=work_order, execution=execution, outcome=outcome, started_at=started_at)
    _report(identity, work_order=work_order, execution=execution, outcome=outcome, secrets=secrets)
    return outcome


def _write_result(
    trace_dir: Path, *, work_order: WorkOrder, execution: Execution, outcome: AgentOutcome, started_at: Any
) -> None:
    result = {
        "task_id": str(work_order.task_id),
        "work_order_id": str(work_order.pk),
        "attempt": execution.attempt,
        "ended": outcome.ended,
        "exit_code": outcome.exit_code,
        "reason": outcome.reason,
        "started_at": started_at.isoformat(),
        "finished_at": timezone.now().isoformat(),
        "duration_seconds": outcome.duration_seconds,
    }
    # The folder may be the agent's own: a link it left under this name must not redirect the write.
    path = trace_dir / "result.json"
    try:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(json.dumps(result, indent=2) + "\n")
    except OSError:
        log.warning("could not write %s (the run's outcome is reported all the same)", path, exc_info=True)


def _report(
    identity: CeleryIdentity, *, work_order: WorkOrder, execution: Execution, outcome: AgentOutcome, secrets: list[str]
) -> None:
    tail = redact("\n".join(outcome.tail), secrets=secrets)[-OUTPUT_TAIL_CHARS:]
    # The session ends first, so whoever sees the work order settled sees the whole run settled;
    # its owner is told once the outcome is recorded.
    session = None
    with contextlib.suppress(DomainError):
        session = task_services.session_terminate(
            actor=identity.account,
            agent_session_pk=execution.agent_session_id,
            reason=f"run {outcome.ended}",
            tell_owner=False,
        )
    try:
        if outcome.ended == "exited" and outcome.exit_code == 0:
            task_services.work_order_complete(actor=identity.account, work_order_id=work_order.pk, output=tail)
        elif outcome.ended != "stopped":
            error = f"{outcome.reason}\n{tail[-4000:]}".strip()
            task_services.work_order_fail(
                actor=identity.account,
                work_order_id=work_order.pk,
                error=error,
                # A budget overrun would only overrun again; other failures may be transient.
                retryable=outcome.ended != "timed_out",
                exit_code=outcome.exit_code,
            )
    except DomainError as error:
        # The agent reported the outcome itself, or the work order was cancelled meanwhile.
        log.info("work order %s was already settled: %s", work_order.pk, error)
    if session is not None:
        task_services.session_tell_owner(session=session)


# --- what a Celery message asks for ---


def carry_out(work_order_id: UUID) -> float | None:
    """Bring a dispatched work order to an end. Returns None when this message has nothing more
    to do (the order finished, failed for good or was cancelled), or the seconds after which to
    look again (it waits for its back-off, or another live worker holds it).

    Safe to deliver twice: a finished order is left alone, a held one is left to its holder while
    the holder's lease is alive. A lease that lapsed means the holder died (a killed worker); the
    order is requeued through the queue service and claimed again."""
    identity = celery_identity()
    while True:
        work_order = WorkOrder.objects.filter(pk=work_order_id).first()
        if work_order is None or work_order.status not in WorkOrder.ACTIVE:
            return None
        now = timezone.now()
        if work_order.status in WorkOrder.HELD:
            if work_order.lease_expires_at and work_order.lease_expires_at > now:
                # Its holder runs it (another process may have taken it as its best work). This
                # process takes whatever else waits meanwhile, or an order whose own message
                # that holder consumed would idle until the holder is free.
                other = task_services.work_order_claim(actor=identity.account, worker_id=identity.worker_id)
                if other is not None:
                    run_claimed(identity, _with_task(other))
                    continue
                return min((work_order.lease_expires_at - now).total_seconds() + 0.5, 60.0)
            task_services.work_orders_requeue_lapsed(now=now)
            continue
        if work_order.available_at > now:
            return (work_order.available_at - now).total_seconds() + 0.05
        claimed = task_services.work_order_claim(actor=identity.account, worker_id=identity.worker_id)
        if claimed is None:
            return settings.HOL_AGENT_POLL_SECONDS
        # The queue hands out its best work, which may be another order; this one is looked at
        # again afterwards, and the other order's own message finds it finished.
        run_claimed(identity, _with_task(claimed))


def _with_task(work_order: WorkOrder) -> WorkOrder:
    # The claim usually hands its task along (PostgreSQL's claim statement returns both).
    if WorkOrder.task.is_cached(work_order):
        return work_order
    return WorkOrder.objects.select_related("task").get(pk=work_order.pk)


def lapsed_work_order_ids() -> list[UUID]:
    """Held work orders whose lease has run out: their holders stopped heartbeating."""
    return list(
        WorkOrder.objects.filter(status__in=WorkOrder.HELD, lease_expires_at__lt=timezone.now()).values_list(
            "pk", flat=True
        )
    )


def dispatch_requeued(work_order_ids: list[UUID]) -> None:
    """Send a run for each of these work orders that is back on the queue. A duplicate of a
    message still with the broker is harmless: a run finds the order held or finished."""
    if not settings.HOL_RUN_WORK_IN_CELERY or not work_order_ids:
        return
    from tasks.tasks import run_work_order  # the Celery module imports this one

    queued = WorkOrder.objects.filter(pk__in=work_order_ids, status=WorkOrder.Status.QUEUED)
    for work_order_id, available_at in queued.values_list("pk", "available_at"):
        run_work_order.apply_async((str(work_order_id),), eta=available_at)
