"""Outside review (17th): the light program loader loads a 65537-instruction program as 1 instruction.

Severity: low (robustness of the fail-closed path; not reachable from the sandbox today: the
host builds the program and ``build_filter`` refuses more than 4096 instructions). The
container's bootstrap now loads whatever program the spec carries through
``confinement/seccomp_load.load_program``, whose only checks are the arch and a whole number of
8-byte instructions. The count goes into ``struct sock_fprog.len``, a ``c_ushort``: ctypes
truncates it silently, so a program of ``65536 + k`` instructions is handed to the kernel as its
first ``k`` instructions, which the kernel may accept.

Attack: a program whose first instruction is ``ret ALLOW`` followed by 65536 ``ret KILL``s (a
malformed, over-long program the kernel itself would refuse: BPF_MAXINSNS is 4096).

What the host saw: ``load_program`` returned (the child then ran with an allow-everything
filter) instead of refusing; the report would say 65537 instructions.

Expected: a program past the kernel's 4096 instructions (or the c_ushort range) is refused
with ConfinementError before the call, so the bootstrap exits SETUP_FAILED (fail closed).
"""

from __future__ import annotations

import os
import struct

import pytest

from glsandbox_kernel.linux import MACHINE, prctl

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux only")

BPF_RET_K = 0x06
RET_ALLOW = 0x7FFF0000
RET_KILL = 0x80000000
PR_SET_NO_NEW_PRIVS = 38


def test_an_over_long_program_is_refused_not_truncated() -> None:
    raw = struct.pack("=HBBI", BPF_RET_K, 0, 0, RET_ALLOW) + struct.pack("=HBBI", BPF_RET_K, 0, 0, RET_KILL) * 65536
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the filter stays in this child only
        os.close(read)
        verdict = b"?"
        try:
            from glsandbox_kernel.confinement.seccomp_load import load_program

            prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            load_program(raw, arch=MACHINE, listener=False)
            verdict = b"loaded"
        except Exception:  # noqa: BLE001 - the refusal is the expected outcome
            verdict = b"refused"
        finally:
            os.write(write, verdict)
            os._exit(0)
    os.close(write)
    got = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert got == b"refused", f"a {len(raw) // 8}-instruction program was {got.decode()} (as its first instruction)"
