"""The bundled demo agent: what a Celery worker runs for a work order when HOL_AGENT_COMMAND is
unset. It walks through the stages of a code-change run, printing each (HOL streams its output to
the task page) and posting a status event per stage through hol_agent, then exits 0 so the work
order completes. It changes no code; it shows the loop and is the template for a real agent.

Any step that cannot reach HOL is reported on stderr and the run goes on: the run's own exit code
is what completes or fails the work order.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's hol_agent importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hol_agent import HolClient, HolError

STAGES = ("intent_extraction", "planning", "editing", "testing", "verification")


def main() -> int:
    client = HolClient()
    print(f"demo agent: task {client.task_id}, work order {client.work_order_id}", flush=True)
    for stage in STAGES:
        print(f"[{stage}] done", flush=True)
        try:
            client.event("status", content=f"{stage} done", stage=stage, data={"stage": stage})
        except HolError as error:
            print(f"demo agent: could not post the {stage} event: {error}", file=sys.stderr, flush=True)
    print("demo agent: finished", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
