"""The kernel's CommGate keeps a bounded set of sandbox comm ids (outside review 5, finding 2).

Host side, the real class: ids past the length bound and opens past the count bound are refused,
a close from either side forgets its id, and a replaced worker's ids are forgotten.
"""

from __future__ import annotations

from glsandbox_kernel.kernel.relay import MAX_COMM_ID, MAX_COMMS, CommGate


def _gate() -> CommGate:
    return CommGate(lambda comm_id: comm_id == "kernel-own")


def test_close_forgets_the_id() -> None:
    gate = _gate()
    assert gate.refuse("comm_open", "a") is None
    assert gate.refuse("comm_msg", "a") is None
    assert gate.refuse("comm_close", "a") is None
    assert gate.refuse("comm_msg", "a") is not None  # closed: no longer the sandbox's
    gate.frontend_opened("b")
    gate.frontend_closed("b")
    assert gate.refuse("comm_msg", "b") is not None


def test_long_ids_and_too_many_opens_are_refused() -> None:
    gate = _gate()
    assert "longer" in (gate.refuse("comm_open", "x" * (MAX_COMM_ID + 1)) or "")
    gate.frontend_opened("y" * (MAX_COMM_ID + 1))
    assert gate.refuse("comm_msg", "y" * (MAX_COMM_ID + 1)) is not None
    for i in range(MAX_COMMS):
        assert gate.refuse("comm_open", str(i)) is None
    assert "open comms" in (gate.refuse("comm_open", "one-more") or "")
    assert gate.refuse("comm_close", "0") is None
    assert gate.refuse("comm_open", "one-more") is None  # a close made room


def test_a_replaced_worker_forgets_its_ids() -> None:
    gate = _gate()
    gate.worker(("session", 1))
    assert gate.refuse("comm_open", "a") is None
    gate.worker(("session", 1))
    assert gate.refuse("comm_msg", "a") is None  # same worker: kept
    gate.worker(("session", 2))
    assert gate.refuse("comm_msg", "a") is not None
    assert gate.refuse("comm_msg", "kernel-own") == "a comm of the kernel itself"
