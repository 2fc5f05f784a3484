"""hol_agent: the client agents use to work with HOL over its HTTP API (standard library only).

Inside a run started by HOL, everything comes from the environment: HOL_API_URL, HOL_TOKEN,
HOL_TASK_ID, HOL_WORK_ORDER_ID (and HOL_SESSION_ID). `python -m hol_agent --help` lists the
commands; `HolClient` is the same thing for Python agents.
"""

from hol_agent.client import (
    ApprovalOutcome,
    HolClient,
    HolError,
    HolHttpError,
    HolUnreachable,
)

__all__ = ["ApprovalOutcome", "HolClient", "HolError", "HolHttpError", "HolUnreachable"]
