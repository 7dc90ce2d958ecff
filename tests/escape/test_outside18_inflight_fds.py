"""Outside review (18th): a cell that keeps fds in flight makes other sandboxes' start fail (ETOOMANYREFS).

Seen under load as a flaky ``ConfinementError: worker setup: OSError: [Errno
109] Too many references: cannot splice`` that passed on rerun.

Cause: the kernel refuses ``SCM_RIGHTS`` (``unix_attach_fds`` ->
``too_many_unix_fds``) once ``user->unix_inflight`` (fds sent and not yet
received, counted per *real uid* over every process of it) exceeds the
sender's soft ``RLIMIT_NOFILE``, unless the sender has CAP_SYS_RESOURCE or
CAP_SYS_ADMIN in the initial user namespace. The worker sends its seccomp
listener with its hello; it used to do so after the rlimits step had set
its file limit (128 at STRICT) and the capabilities were gone. Every
NAMESPACE sandbox of a root host runs as host uid 65534 (so do CHROOT and
the containers); BASIC on a root host runs as uid 0 without capabilities.

Attack: a STRICT cell sends 253 copies of one fd over a socketpair it never
reads (allowed while the uid's count is at most its own limit, so it
reaches 253 in one message and then gets ETOOMANYREFS itself) and keeps
the pair open. Judged from the host: a second, independent sandbox of the
same backend and level starts and runs a call.

Before the fix: the second start failed with the error above (NAMESPACE and
BASIC, as root), or, for CONTAINER (uid 65534, the runtime's nofile ulimit),
with "the worker did not say hello in time". Fixed: the worker lowers
RLIMIT_NOFILE only after its hello was sent (``confinement/rlimits.py``
leaves it in ``ChildState.file_limit``; ``worker/loop.serve`` sets it; the
container has no nofile ulimit and its bootstrap does the same), with the
soft limit raised to the inherited hard one until then; no untrusted code
runs before it is lowered, as the end of the test checks.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.zygote_backend import POOLS
from glsandbox_kernel.exceptions import BackendUnavailableError

pytestmark = pytest.mark.timeout(180)

#: Fills the uid's in-flight count as far as this sandbox's own file limit lets it,
#: in the worker and in a forked child, and keeps the pairs open (module globals).
HOLD = r"""
import errno, os, socket
_held = []
def _fill():
    sent = 0
    for _ in range(8):
        a, b = socket.socketpair()
        _held.append((a, b))
        try:
            while True:
                socket.send_fds(a, [b"x"], [b.fileno()] * 253)
                sent += 253
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                return sent, errno.errorcode.get(exc.errno)
    return sent, None
_sent = _fill()
_said_r, _said_w = os.pipe()
_hold_r, _hold_w = os.pipe()  # _hold_w stays open in the worker: the child blocks until the sandbox ends
if os.fork() == 0:  # a second process of the sandbox tries too (refused: the uid is past the limit)
    os.write(_said_w, str(_fill()[0]).encode())
    os.read(_hold_r, 1)
    os._exit(0)
print("held", *_sent, os.read(_said_r, 16).decode(), flush=True)
"""


def _strict(isolation: IsolationType) -> OSSandbox:
    return OSSandbox(create_config_by_level("strict", isolation_type=isolation))


@pytest.fixture
def no_warm_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every start makes a new worker now (a pooled one said hello before the cell ran)."""
    monkeypatch.setenv("GLSANDBOX_CONTAINER_POOL", "0")
    POOLS.set_size(0)
    yield
    POOLS.set_size(None)


@pytest.mark.parametrize("isolation", [IsolationType.NAMESPACE, IsolationType.BASIC, IsolationType.CONTAINER])
def test_inflight_fds_do_not_break_other_sandbox_start(isolation: IsolationType, no_warm_pool: None) -> None:
    holder = _strict(isolation)
    try:
        holder.__enter__()
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    try:
        texts: list[str] = []
        result = holder.run_cell(HOLD, on_output=lambda msg: texts.append(str(msg.get("text", ""))))
        assert result.status == "ok", result
        said = "".join(texts).split()
        # 253 in flight, more than the uid may have at the sandbox's limit: refused after that
        assert said == ["held", "253", "ETOOMANYREFS", "0"], said
        with _strict(isolation) as other:
            assert other.execute(sum, [1, 2]) == 3
        # The holder's file limit is still its own: lowered after its hello, before the cell.
        files = holder.config.limits.max_open_files
        assert holder.execute(_file_limit) == (files, files)
    finally:
        holder.__exit__(None, None, None)


def _file_limit() -> tuple[int, int]:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)
