"""Attacks through the real surfaces, asserted from the host side (issue 11).

Each test runs the attack as a user of that surface would meet it: the
``%%sandbox`` magic in a stock ``python3`` IPython kernel over
jupyter_client, a real ``glsandbox`` kernel over ZMQ, or the library, on the
BASIC and NAMESPACE backends (a backend this host lacks is skipped with the
reason from ``available()``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from glsandbox_kernel.backends.registry import backends

from .conftest import wait_gone
from .jupyter_fixtures import Kernel, descendants, stderr_of, stdout_of


def _backend(name: str) -> Any:
    ok, reason = backends()[name].available()
    return pytest.param(name, marks=() if ok else pytest.mark.skip(reason=f"{name}: {reason}"))


BACKENDS = [_backend("basic"), _backend("namespace")]


@pytest.fixture(scope="module")
def ipykernel() -> Iterator[Kernel]:
    """A stock python3 IPython kernel with the magic loaded; its sandbox tree is gone after."""
    k = Kernel("python3")
    tree: list[int] = []
    try:
        reply, _ = k.execute("%load_ext glsandbox_kernel")
        assert reply["status"] == "ok", reply
        yield k
        tree = descendants(k.pid)
    finally:
        k.shutdown()
    assert not wait_gone(tree, timeout=15)


def _stop_sessions(k: Kernel) -> None:
    reply, _ = k.execute("%sandbox stop")
    assert reply["status"] == "ok"


# -- 1. --out writes exactly the names asked for; --in sends exactly the named data ------------------------

_OUT_ATTACK = """\
%%sandbox strict --isolation {backend} --out totals
import glsandbox_kernel.magics.sandbox_side as s
_orig = s.sandbox_side_get_names
s.sandbox_side_get_names = lambda n: {{**_orig(n), {extra}}}
totals = {{"co2": 1.0}}
"""


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "extra",
    ['"budget_approved": True', '"print": 1', "1: 2", '"totals": 1, "__builtins__": {}'],
    ids=["flag", "builtin", "int-key", "builtins"],
)
def test_out_cannot_write_other_host_names(ipykernel: Kernel, backend: str, extra: str) -> None:
    k = ipykernel
    try:
        reply, _ = k.execute("budget_approved = False\ntotals = 'host'")
        assert reply["status"] == "ok"
        reply, outputs = k.execute(_OUT_ATTACK.format(backend=backend, extra=extra))
        assert reply["status"] == "error" and reply["ename"] == "SandboxSecurityError", reply
        assert "nothing was copied" in reply["evalue"]
        reply, outputs = k.execute(
            "print(budget_approved, totals, print is __builtins__.print, 1 in globals(), type(__builtins__).__name__)"
        )
        assert reply["status"] == "ok", reply
        assert stdout_of(outputs) == "False host True False module\n", stderr_of(outputs)
        # The refusal is in the session's audit chain, written by the host.
        reply, outputs = k.execute("%sandbox audit")
        assert "hash chain verified" in stdout_of(outputs) and "violation" in stdout_of(outputs)
        # An honest --out in the same session still works (the sandbox's helper was replaced only
        # in that worker's module; a fresh session gets a fresh one).
        _stop_sessions(k)
        reply, outputs = k.execute(f"%%sandbox strict --isolation {backend} --out totals\ntotals = {{'co2': 2.5}}")
        assert reply["status"] == "ok", reply
        reply, outputs = k.execute("print(totals)")
        assert stdout_of(outputs) == "{'co2': 2.5}\n"
    finally:
        _stop_sessions(k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_reply_that_is_not_the_values_is_refused(ipykernel: Kernel, backend: str) -> None:
    k = ipykernel
    try:
        k.execute("totals = 'host'")
        code = (
            f"%%sandbox strict --isolation {backend} --out totals\n"
            "import glsandbox_kernel.magics.sandbox_side as s\n"
            "s.sandbox_side_get_names = lambda n: [('smuggled', True)]\n"
            "totals = 1"
        )
        reply, _ = k.execute(code)
        assert reply["status"] == "error" and reply["ename"] == "SandboxSecurityError", reply
        reply, outputs = k.execute("print(totals, 'smuggled' in globals())")
        assert stdout_of(outputs) == "host False\n"
    finally:
        _stop_sessions(k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_in_sends_only_the_named_data(ipykernel: Kernel, backend: str) -> None:
    """cloudpickle would send a host function with the globals it uses: --in takes data only."""
    k = ipykernel
    try:
        reply, _ = k.execute(
            "host_secret = 'hunter2'\ndef report():\n    return host_secret\nclass Box:\n    token = host_secret\n"
            "box = Box()\nrows = [1, 2, 3]"
        )
        assert reply["status"] == "ok"
        reply, _ = k.execute(f"%%sandbox strict --isolation {backend} --name keep\nkept = 7")
        assert reply["status"] == "ok", reply
        for name in ("report", "box", "Box"):
            reply, outputs = k.execute(f"%%sandbox strict --isolation {backend} --name keep --in {name}\n1")
            assert reply["status"] == "error" and reply["ename"] == "UsageError", reply
            assert "cannot be copied into the sandbox" in reply["evalue"]
        # Nothing went in, and the session (its state) was not touched by the failed cells.
        code = (
            f"%%sandbox strict --isolation {backend} --name keep --in rows\n"
            "import gc\n"
            "print(kept, rows, [n for n in ('report', 'box', 'Box', 'host_secret') if n in globals()],\n"
            "      any(isinstance(o, str) and 'hunter2' in o for o in gc.get_objects()))"
        )
        reply, outputs = k.execute(code)
        assert reply["status"] == "ok", reply
        assert stdout_of(outputs) == "7 [1, 2, 3] [] False\n", stderr_of(outputs)
    finally:
        _stop_sessions(k)


def test_failed_option_leaves_the_session_alone(ipykernel: Kernel) -> None:
    """A usage error (an unavailable backend) must not close the named session and its state."""
    missing = [n for n, cls in sorted(backends().items()) if not cls.available()[0]]
    if not missing:
        pytest.skip("every registered backend is available here, so none fails to start")
    k = ipykernel
    try:
        reply, _ = k.execute("%%sandbox --name keep\nstate = 41")
        assert reply["status"] == "ok", reply
        pids = descendants(k.pid)
        reply, outputs = k.execute(f"%%sandbox --isolation {missing[0]} --name keep\nstate = 0")
        assert reply["status"] == "error" and reply["ename"] == "UsageError", reply
        assert "unavailable" in reply["evalue"]
        reply, outputs = k.execute("%%sandbox --name keep\nprint(state + 1)")
        assert reply["status"] == "ok", reply
        assert stdout_of(outputs) == "42\n", stderr_of(outputs)
        assert "state is lost" not in stderr_of(outputs)
        assert set(pids) <= set(descendants(k.pid))  # the same worker
    finally:
        _stop_sessions(k)
