"""The operating-system account an agent runs as (HOL_AGENT_USER). Run as the worker's own
account, an agent could read what the worker can: the data dir's signing key, the worker's
environment in /proc, and with them sign a token for anyone. Under its own account it reaches
only its trace folder, which is handed to it for the length of the run."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings


class AgentUserError(Exception):
    """The agent cannot run as the configured account; the message says why."""


@dataclass(frozen=True)
class AgentUser:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def agent_user() -> AgentUser | None:
    """The account of HOL_AGENT_USER, or None when agents run as the worker's account."""
    name = settings.HOL_AGENT_USER
    if not name:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise AgentUserError(f"HOL_AGENT_USER {name!r} is not an account on this host") from None
    if entry.pw_uid == 0:
        raise AgentUserError("HOL_AGENT_USER must not be root")
    if entry.pw_uid == os.geteuid():
        raise AgentUserError(f"HOL_AGENT_USER {name!r} is the worker's own account: it would see the worker's secrets")
    groups = (entry.pw_gid, *(group.gr_gid for group in grp.getgrall() if name in group.gr_mem))
    return AgentUser(name=name, uid=entry.pw_uid, gid=entry.pw_gid, groups=tuple(dict.fromkeys(groups)))


def _enterable(path: Path, user: AgentUser) -> bool:
    info = path.stat()
    if info.st_uid == user.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in user.groups:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def hand_over(trace_dir: Path, user: AgentUser) -> None:
    """Give the run's trace folder to the agent's account (private to it) and make sure the
    account can reach it: the task's folder above is made enterable, not listable; a folder
    further up that the account cannot enter (HOL_DATA_DIR is private) is a setup error."""
    task_dir = trace_dir.parent
    task_dir.chmod(0o711)
    for folder in reversed(task_dir.parent.resolve().parents):
        if not _enterable(folder, user):
            raise AgentUserError(
                f"the agent account {user.name!r} cannot enter {folder} on the way to HOL_TRACE_ROOT; "
                "set HOL_TRACE_ROOT to a folder it can reach (outside HOL_DATA_DIR)"
            )
    trace_root = task_dir.parent
    if not _enterable(trace_root, user):
        trace_root.chmod(trace_root.stat().st_mode | stat.S_IXOTH)
    os.chown(trace_dir, user.uid, user.gid)
    trace_dir.chmod(0o700)
