"""A zygote template that timestamps each confinement step (benchmarks only, never the library).

Run by :mod:`bench_oneshot_steps` in place of ``python -m glsandbox_kernel.zygote``:
it wraps the template's fork, the child's entry and every step of
:data:`glsandbox_kernel.confinement.STEPS` with ``time.monotonic()`` marks
(one clock for every process of the machine), and hands them to the host in
the hello's report (``report["trace"]``). The worker inherits the marks its
ancestors made before each fork, so the chain P1 -> init -> worker is covered.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from glsandbox_kernel import confinement, zygote
from glsandbox_kernel.protocol import FrameChannel

MARKS: list[tuple[str, int, float]] = []


def mark(label: str) -> None:
    MARKS.append((label, os.getpid(), time.monotonic()))


def _traced(name: str, apply: Any) -> Any:
    def run(section: Any, state: Any) -> None:
        mark(name + "<")
        try:
            apply(section, state)
        finally:
            mark(name + ">")

    return run


def install() -> None:
    confinement.STEPS = tuple(
        confinement.Step(st.name, st.plan, _traced(f"{i:02d} {st.name}", st.apply))
        for i, st in enumerate(confinement.STEPS)
    )
    apply_plan = confinement.apply_child_plan

    def apply(plan: Any) -> Any:
        mark("plan checked")
        result = apply_plan(plan)
        mark("steps done")
        result.report["trace"] = [list(m) for m in MARKS]
        return result

    confinement.apply_child_plan = apply
    spawn, child_main = zygote._spawn, zygote._child_main

    def traced_spawn(*args: Any) -> int:
        mark("template forks")
        return spawn(*args)

    def traced_child_main(*args: Any) -> None:
        mark("child runs")
        child_main(*args)

    zygote._spawn = traced_spawn
    zygote._child_main = traced_child_main
    recv = FrameChannel.recv_with_fds

    def traced_recv(self: FrameChannel, *args: Any, **kwargs: Any) -> Any:
        out = recv(self, *args, **kwargs)
        MARKS.clear()
        mark("template got request")
        return out

    FrameChannel.recv_with_fds = traced_recv  # type: ignore[method-assign]


if __name__ == "__main__":
    install()
    zygote.template_main(int(sys.argv[1]))
