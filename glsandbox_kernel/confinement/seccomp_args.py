"""The seccomp policy's argument rules for other processes (pure, either side).

:mod:`.seccomp` emits these into both outputs of one policy: the BPF program
(:func:`bpf_rules`, zygote backends and the container's bootstrap) and the
OCI profile (:func:`oci_rules`, the container runtimes), so the two cannot drift.

``own_pid_only`` (a sandbox without its own pid namespace: BASIC): the
calls that change *another* process by pid (:data:`OWN_PID_ONLY`) are allowed
only for pid 0, the caller itself. The filter cannot know the caller's own
pid, nor tell its children from the host's processes of the same uid (the
kernel or magic host, the Jupyter server, the user's shell), so any other pid,
and the process-group and user forms of setpriority/ioprio_set, are denied
(recorded by the supervisor where it runs). A child is tuned by its own calls,
or inherits the caller's settings at fork.
"""

from __future__ import annotations

from typing import Any

PRIO_PROCESS = 0
IOPRIO_WHO_PROCESS = 1

#: Syscall -> the ``(argument, value)`` pairs it is allowed with under ``own_pid_only``
#: (any other value of one of them: denied). The pid is ``pid_t``: its low 32 bits.
OWN_PID_ONLY: dict[str, tuple[tuple[int, int], ...]] = {
    "prlimit64": ((0, 0),),
    "setpriority": ((0, PRIO_PROCESS), (1, 0)),
    "sched_setaffinity": ((0, 0),),
    "sched_setscheduler": ((0, 0),),
    "sched_setparam": ((0, 0),),
    "sched_setattr": ((0, 0),),
    "ioprio_set": ((0, IOPRIO_WHO_PROCESS), (1, 0)),
    "migrate_pages": ((0, 0),),
    "get_robust_list": ((0, 0),),
}

Instruction = tuple[int, int, int, int]

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_RET_K = 0x06
_ALLOW = 0x7FFF0000


def _arg(i: int) -> Instruction:
    """Load ``seccomp_data.args[i]``, its low 32 bits (little endian)."""
    return (_LD_W_ABS, 0, 0, 16 + 8 * i)


def bpf_rules(table: dict[str, int], *, own_pid_only: bool, other_pid: int) -> list[Instruction]:
    """The BPF instructions of the rules (``table``: name -> number on the filter's arch).

    ``other_pid``: the action for a call on another process. Each block ends in a return for its
    syscall.
    """
    prog: list[Instruction] = []
    if own_pid_only:
        for name, checks in OWN_PID_ONLY.items():
            nr = table.get(name)
            if nr is None:
                continue
            k = len(checks)
            body: list[Instruction] = []
            for i, (arg, value) in enumerate(checks):  # a value that differs jumps to the denial
                body += [_arg(arg), (_JEQ_K, 0, 2 * k - 2 * i - 1, value)]
            body += [(_RET_K, 0, 0, _ALLOW), (_RET_K, 0, 0, other_pid)]
            prog += [(_JEQ_K, 0, len(body), nr), *body]
    return prog


def oci_rules(*, own_pid_only: bool, errno_ret: int) -> list[dict[str, Any]]:
    """The same rules for an OCI/Docker profile (a rule's conditions must all hold: one rule per
    argument that may differ)."""
    rules: list[dict[str, Any]] = []
    if own_pid_only:
        for name, checks in OWN_PID_ONLY.items():
            for arg, value in checks:
                rules.append(
                    {
                        "names": [name],
                        "action": "SCMP_ACT_ERRNO",
                        "errnoRet": errno_ret,
                        "args": [{"index": arg, "value": value, "op": "SCMP_CMP_NE"}],
                    }
                )
    return rules
