"""What the zygote template prepares for its children: forks without Python's fork hooks, the seccomp program.

The zygote template without pre-imports forks its children without
``PyOS_BeforeFork``/``AfterFork`` (threading's hook alone wrote ~0.5 MiB of
each idle worker's pages). Real sandboxes from the real template: the
worker knows it was forked that way, and threads, thread pools, logging,
``random`` and forks of its own work as after ``os.fork()``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, OSSandboxConfig
from glsandbox_kernel.confinement.namespaces import userns_available

needs_userns = pytest.mark.skipif(not userns_available()[0], reason=f"no user namespaces: {userns_available()[1]}")


def _python_state() -> dict[str, Any]:
    """SANDBOX side: what Python's fork hooks would have reset, exercised."""
    import concurrent.futures
    import logging
    import random
    import threading

    from glsandbox_kernel.confinement import namespaces

    seen: list[str] = []
    worker = threading.Thread(target=lambda: seen.append(threading.current_thread().name), name="user-thread")
    worker.start()
    worker.join(30)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        squares = sorted(pool.map(lambda x: x * x, range(4)))
    logging.getLogger("glsandbox-test").warning("logged from the sandbox")
    r, w = os.pipe()
    pid = os.fork()  # the worker's own fork runs the hooks as usual
    if pid == 0:
        os.write(w, threading.current_thread().name.encode())
        os._exit(0)
    os.close(w)
    child_thread = os.read(r, 64).decode()
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return {
        "fork_hooks": namespaces.fork_hooks,
        "main": threading.current_thread() is threading.main_thread(),
        "seen": seen,
        "squares": squares,
        "child_thread": child_thread,
        "child_status": status,
        "random": random.random(),
    }


@needs_userns
@pytest.mark.namespace
def test_a_worker_forked_without_hooks_runs_threads_logging_random_and_forks() -> None:
    config = OSSandboxConfig(isolation_type=IsolationType.NAMESPACE)
    with OSSandbox(config) as one, OSSandbox(config) as two:
        a, b = one.execute(_python_state), two.execute(_python_state)
    for state in (a, b):
        assert state["fork_hooks"] is False  # the template imported nothing with hooks of its own
        assert state["main"] is True
        assert state["seen"] == ["user-thread"]
        assert state["squares"] == [0, 1, 4, 9]
        assert state["child_thread"] == "MainThread" and state["child_status"] == 0
    assert a["random"] != b["random"]  # each worker seeds its own generator


def test_the_packed_seccomp_program_is_the_built_one_and_kept_only_for_an_equal_policy() -> None:
    """The template packs its first plan's program once; a child with another policy builds its own."""
    import struct

    from glsandbox_kernel.confinement import seccomp

    plain = seccomp.SeccompPolicy(notify=False)
    strict = seccomp.SeccompPolicy(notify=False, deny_exec=True)
    assert seccomp.packed_filter(plain) == b"".join(struct.pack("=HBBI", *i) for i in seccomp.build_filter(plain))
    assert seccomp.packed_filter(seccomp.SeccompPolicy(notify=False)) is seccomp.packed_filter(plain)  # kept
    other = seccomp.packed_filter(strict)
    assert other != seccomp.packed_filter(plain)
    assert other == b"".join(struct.pack("=HBBI", *i) for i in seccomp.build_filter(strict))
