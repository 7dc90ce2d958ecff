"""Whose str hash secret a zygote sandbox has: its template's, never the host's.

The host decodes what a sandbox sends into dicts and sets hashed with the
host's secret; a sandbox that knew that secret could search offline for
colliding keys. The template is exec'd (not forked from the host) with a
scrubbed environment, so it draws its own secret from the kernel's random
source even when the host runs with a fixed ``PYTHONHASHSEED``; every
sandbox forked from one template shares the template's secret (a fork
cannot re-key: the template's cached str hashes would no longer match), and
a new template (another interpreter, or a restart) draws a new one.
A container or gVisor worker is an interpreter of its own, with a secret of its
own. Real sandboxes from the real template and engine, no mocks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level, zygote

PROBE = "glsandbox hash-seed probe"


def _hash_state(probe: str) -> dict[str, Any]:
    """SANDBOX side: the worker's hash of ``probe`` and whether its hashes are randomised."""
    import sys as _sys

    return {"hash": hash(probe), "randomized": _sys.flags.hash_randomization, "bytes": hash(probe.encode())}


def _sandbox_state() -> dict[str, Any]:
    cfg = create_config_by_level("moderate", isolation_type=IsolationType.BASIC)
    with OSSandbox(cfg) as box:
        return box.execute(_hash_state, PROBE)  # type: ignore[no-any-return]


def _restart_template() -> None:
    """Kill the shared template; the next sandbox starts (and draws the secret of) a new one."""
    z = zygote.get_zygote(sys.executable)
    os.kill(z.proc.pid, signal.SIGKILL)
    z.proc.wait()
    assert zygote.get_zygote(sys.executable) is not z


def _hash_with_seed(seed: str) -> int:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", f"print(hash({PROBE!r}))"], env=env, capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_a_sandbox_hashes_strs_with_a_secret_other_than_the_hosts() -> None:
    state = _sandbox_state()
    assert state["randomized"] == 1
    assert state["hash"] != hash(PROBE)
    assert state["bytes"] != hash(PROBE.encode())


def test_a_host_with_a_fixed_seed_still_gives_its_template_a_random_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host run with ``PYTHONHASHSEED=0`` (a public secret) does not pass it on to a new template."""
    seeded = _hash_with_seed("0")
    assert seeded == _hash_with_seed("0")  # the fixed seed is reproducible: anyone can compute it
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    _restart_template()
    state = _sandbox_state()
    assert state["randomized"] == 1
    assert state["hash"] not in (seeded, hash(PROBE))


def test_sandboxes_of_different_templates_have_different_secrets() -> None:
    first = _sandbox_state()
    _restart_template()
    second = _sandbox_state()
    assert first["hash"] != second["hash"]
    assert hash(PROBE) not in (first["hash"], second["hash"])


@pytest.mark.parametrize("backend", ["container", "gvisor"])
def test_container_sandboxes_each_have_their_own_secret(backend: str) -> None:
    """A container's worker is its own exec'd interpreter: a secret per sandbox, none the host's."""
    from glsandbox_kernel.backends.registry import backends

    ok, why = backends()[backend].available()
    if not ok:
        pytest.skip(f"{backend}: {why}")
    cfg = create_config_by_level("moderate", isolation_type=IsolationType(backend))
    with OSSandbox(cfg) as one, OSSandbox(cfg) as two:
        a, b = one.execute(_hash_state, PROBE), two.execute(_hash_state, PROBE)
    assert a["randomized"] == b["randomized"] == 1
    assert a["hash"] != b["hash"]
    assert hash(PROBE) not in (a["hash"], b["hash"])
