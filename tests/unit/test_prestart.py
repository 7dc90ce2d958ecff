"""The kernel's early sandbox starts only once the kernel started, or a request needs it (host side).

:class:`~glsandbox_kernel.kernel.prestart.EarlySandbox` must not import or build the sandbox beside
ipykernel's start (it would share the GIL and delay "ready"), must start as soon as the kernel
needs its sandbox (:func:`take_sandbox`), and must not start at all when the kernel will not take it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from glsandbox_kernel.kernel import prestart


class _Box:
    """An unstarted sandbox stand-in: records start and close."""

    def __init__(self) -> None:
        self.started = False
        self.closed = False

    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True

    def request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> list[_Box]:
    """A new GO event and EARLY list (module state of one kernel process); the boxes made."""
    monkeypatch.setattr(prestart, "GO", threading.Event())
    monkeypatch.setattr(prestart, "EARLY", [])
    return []


def _early(made: list[_Box], options: dict[str, object]) -> prestart.EarlySandbox:
    def make() -> _Box:
        made.append(_Box())
        return made[-1]

    early = prestart.EarlySandbox(options, make)
    prestart.EARLY.append(early)
    return early


def test_nothing_is_built_before_go_and_it_starts_after(fresh: list[_Box]) -> None:
    early = _early(fresh, {"level": "moderate"})
    time.sleep(0.1)
    assert fresh == [] and early.thread.is_alive()
    prestart.go()  # SandboxKernel.start: ipykernel's set-up is done
    early.thread.join(5)
    assert len(fresh) == 1 and fresh[0].started
    assert prestart.take_sandbox({"level": "moderate"}) is fresh[0]


def test_a_cell_that_needs_the_sandbox_does_not_wait_for_the_timeout(fresh: list[_Box]) -> None:
    _early(fresh, {"level": "moderate"})
    t0 = time.monotonic()
    box = prestart.take_sandbox({"level": "moderate"})
    assert box is fresh[0] and box.started
    assert time.monotonic() - t0 < prestart.GO_TIMEOUT


def test_one_the_kernel_will_not_take_is_never_built(fresh: list[_Box]) -> None:
    """Other options (or shutdown: ``take_sandbox({})``) before it began: no worker, no side effects."""
    _early(fresh, {"level": "moderate"})
    assert prestart.take_sandbox({"level": "strict"}) is None
    assert fresh == []


def test_without_any_request_it_starts_after_the_timeout(fresh: list[_Box], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prestart, "GO_TIMEOUT", 0.05)
    early = _early(fresh, {})
    early.thread.join(5)
    assert len(fresh) == 1 and fresh[0].started
