"""Interrupts bound to the operation they target, and lookups that never cost the worker (real workers, BASIC).

An interrupt names its operation (a call, a cell): one that comes before the
operation's request went out still applies to it (the request is not sent), one
that comes while the worker is still reading it is held there until the user
code starts, and one for an operation that ended reaches nothing. A completion
or inspection that takes too long is abandoned; the worker and its state stay.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, OSSandboxConfig, SandboxTimeoutError


def basic(**kw: Any) -> OSSandboxConfig:
    return OSSandboxConfig(isolation_type=IsolationType.BASIC, **kw)


def wait_for_mark(pid: int) -> None:
    """Until the worker ``pid`` ignores SIGUSR2 (its sign that it reached the point the test waits for)."""
    while True:  # a bound on a loaded host would only make the test flaky: no deadline
        status = Path(f"/proc/{pid}/status").read_text()
        ignored = next(line for line in status.splitlines() if line.startswith("SigIgn:"))
        if int(ignored.split()[1], 16) & (1 << (signal.SIGUSR2 - 1)):
            return
        time.sleep(0.01)


MARK = "import signal; signal.signal(signal.SIGUSR2, signal.SIG_IGN)"


class SlowToUnpickle:
    """An argument whose unpickling in the worker (before the user code starts) marks the worker,
    then takes a while: the host's interrupt comes while the worker reads the request."""

    def __reduce__(self) -> Any:
        return (exec, (f"{MARK}; import time; time.sleep(1.0)",))


def test_an_interrupt_named_before_the_call_starts_stops_it_unsent_and_the_state_is_kept() -> None:
    def spin() -> None:
        while True:
            sum(range(1000))

    with OSSandbox(basic()) as box:
        pid = box.execute(os.getpid)
        assert box.interrupt(box.session.next_operation) is True
        with pytest.raises(KeyboardInterrupt, match="before it started"):
            box.execute(spin)
        assert box.execute(os.getpid) == pid  # the same worker: nothing was killed
        assert box.execute(lambda: 7) == 7  # and the interrupt was used up


def test_an_interrupt_while_a_cell_is_being_prepared_applies_to_that_cell() -> None:
    with OSSandbox(basic()) as box:
        box.run_cell("kept = 'yes'")
        # on_start is the kernel's own start-of-cell hook: the cell is not sent yet
        r = box.run_cell("import time\ntime.sleep(2)\n'finished'", on_start=box.interrupt)
        assert r.status == "error" and r.error_name == "KeyboardInterrupt" and not r.state_lost
        r = box.run_cell("kept")
        assert r.outputs[-1]["data"]["text/plain"] == "'yes'"
        ahead = box.session.next_operation  # named before it starts (by a caller that queued it)
        assert box.interrupt(ahead) is True
        r = box.run_cell("'not run'")
        assert r.status == "error" and r.error_name == "KeyboardInterrupt"
        assert box.run_cell("kept").outputs[-1]["data"]["text/plain"] == "'yes'"


def test_an_interrupt_while_the_worker_reads_the_request_reaches_its_user_code() -> None:
    def spin(_slow: None) -> None:
        while True:
            sum(range(1000))

    with OSSandbox(basic(interrupt_grace_seconds=5.0)) as box:
        pid = box.execute(os.getpid)

        def interrupt_while_reading() -> None:
            wait_for_mark(pid)
            box.interrupt()

        threading.Thread(target=interrupt_while_reading, daemon=True).start()
        with pytest.raises(KeyboardInterrupt) as info:
            box.execute(spin, SlowToUnpickle())
        # The worker held the SIGINT that came while it unpickled, and the code stopped at once:
        # not dropped (then the code would spin until the grace period killed the worker).
        assert "state is lost" not in str(info.value)
        assert box.execute(os.getpid) == pid


def test_a_late_interrupt_for_an_ended_call_does_not_reach_the_next_one() -> None:
    def second() -> str:
        import signal
        import time

        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        time.sleep(1.0)
        return "finished"

    with OSSandbox(basic()) as box:
        pid = box.execute(os.getpid)
        first = box.session.next_operation
        assert box.execute(lambda: 1) == 1
        answers: list[object] = []

        def late() -> None:
            wait_for_mark(pid)
            answers.append(box.interrupt(first))

        thread = threading.Thread(target=late, daemon=True)
        thread.start()
        assert box.execute(second) == "finished"
        thread.join()
        assert answers == [False]
        assert box.interrupt() is False  # and with nothing running, an interrupt is for nothing


def test_a_completion_past_its_timeout_is_abandoned_and_the_worker_and_state_are_kept() -> None:
    with OSSandbox(basic()) as box:
        box.run_cell(
            "import time\n"
            "class Slow:\n"
            "    def __dir__(self):\n"
            "        time.sleep(4)\n"
            "        return ['attribute']\n"
            "slow = Slow()\n"
            "kept = 'yes'"
        )
        pid = box.execute(os.getpid)
        with pytest.raises(SandboxTimeoutError, match="abandoned"):
            box.request({"type": "complete", "code": "slow.", "cursor_pos": 5}, "complete_reply", timeout=1.0)
        r = box.run_cell("kept")  # waits for the worker to finish the lookup; its late reply is dropped
        assert r.status == "ok" and not r.state_lost
        assert r.outputs[-1]["data"]["text/plain"] == "'yes'"
        assert box.execute(os.getpid) == pid
        for _ in range(5):  # a loaded host may abandon this one too: each late reply is dropped as well
            try:
                reply = box.request({"type": "complete", "code": "kep", "cursor_pos": 3}, "complete_reply")
                break
            except SandboxTimeoutError:
                continue
        assert reply["matches"] == ["kept"]  # its own reply, not the abandoned one's


def test_a_completion_cursor_past_the_code_neither_kills_the_worker_nor_loses_the_state() -> None:
    # A frontend counting UTF-16 units (or any bad client) can send a cursor past the code's end:
    # IPython's completer then raised in the worker, which died with the session's state.
    with OSSandbox(basic()) as box:
        box.run_cell("kept = 'yes'")
        pid = box.execute(os.getpid)
        # (the worker's first completion imports the completer: a loaded host may take long)
        reply = box.request({"type": "complete", "code": "kep", "cursor_pos": 9}, "complete_reply", timeout=120)
        assert reply["matches"] == ["kept"]
        reply = box.request({"type": "inspect", "code": "kept", "cursor_pos": 99, "detail_level": 0}, "inspect_reply")
        assert reply["found"] is True
        assert box.execute(os.getpid) == pid
        assert box.run_cell("kept").outputs[-1]["data"]["text/plain"] == "'yes'"
