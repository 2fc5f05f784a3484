"""Telling open dashboards that HOL's state changed. After every audited commit (so after every
change a service makes) a process sends at most one message per PUSH_SECONDS to the dashboard's
group, and each dashboard then reads its figures once, instead of every open dashboard re-reading
them on a timer whether anything changed or not."""

from __future__ import annotations

import os
import threading

from hol import layer

DASHBOARD_GROUP = "hol.dashboard"
PUSH_SECONDS = 0.25  # changes within this window reach the dashboards as one message

_lock = threading.Lock()
_scheduled = False


def _forget_in_child() -> None:
    # A forked process has no copy of the parent's timer thread: start afresh.
    global _scheduled
    _scheduled = False


os.register_at_fork(after_in_child=_forget_in_child)


def state_changed() -> None:
    """Something committed: schedule one push for this window (a busy queue sends 4 a second per
    process, not one per change)."""
    global _scheduled
    with _lock:
        if _scheduled:
            return
        _scheduled = True
    timer = threading.Timer(PUSH_SECONDS, _push)
    timer.daemon = True
    timer.start()


def _push() -> None:
    global _scheduled
    with _lock:
        _scheduled = False
    # A lost push costs little: dashboards still re-read on their slow timer.
    layer.group_send(DASHBOARD_GROUP, {"type": "dashboard.changed"})
