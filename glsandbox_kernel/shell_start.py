"""A fresh worker's IPython shell, built before its first cell and outside that cell's timeout (host side).

The worker imports IPython and builds its shell lazily, on the first shell request (function calls
never need it). That takes a second or more on a loaded host, and when it happened inside the first
cell's request it ran on that cell's clock: a user's short cell timeout (a 1.5 s ``execution_timeout``)
fired during our start-up, and after a timeout the restarted worker's first cell failed the same way.
The timeout covers the cell, as it covers a function call and never the worker's start-up, so
:meth:`OSSandbox.run_cell` first asks a fresh worker a quick ``is_complete`` (the kernel's own
start-up asks it too) under the worker start-up timeout, then sends the cell on its own clock.
When that request fails (the worker crashed or hung while starting) its outcome is the cell's.
"""

from __future__ import annotations

from .results import CallOutcome
from .session import HELLO_TIMEOUT, Session


def start_shell(session: Session, started_generation: int) -> CallOutcome | None:
    """Build the shell of a worker that has none yet; None when the running worker has it already."""
    if session.alive and session.generation == started_generation:
        return None
    msg = {"type": "is_complete", "code": ""}
    return session.request(msg, timeout=HELLO_TIMEOUT, reply_types=("is_complete_reply",))


def carry_over(start: CallOutcome | None, cell: CallOutcome) -> CallOutcome:
    """The cell's outcome, with what its start-up request found: lost state, setup time, violations."""
    if start is None:
        return cell
    if start.state_lost or start.metrics.state_lost:
        cell.state_lost = cell.metrics.state_lost = True
    if cell.metrics.setup_time is None:
        cell.metrics.setup_time = start.metrics.setup_time
    if start.violations:
        cell.violations[:0] = start.violations
    return cell
