"""Outside review (10th): a pandas index of tuples is a hash-collision flood the codec's check never sees.

Attack: the sandboxed function returns a ``pandas.Series`` whose object index
holds ``N`` tuples ``(1 + k * (2**61 - 1), 0)``: distinct ints that all hash
to 1 (CPython's int hash is the value modulo ``2**61 - 1``, no secret, so
the sandbox needs no host secret). The worker encodes the index as a list of
tuples; the host's ``codec_arrays.decode_pandas`` rebuilds it with
``pd.Index(values)``, which makes a ``MultiIndex`` and factorizes its first
level in pandas' object hash table: every member lands in one probe chain,
quadratic, in C, with the GIL held. ``codec._check_hashes`` (at most
``MAX_SAME_HASH`` = 32 members per hash value) runs for sets and dict keys
only, and the decoding deadline is checked between objects, never inside
the pandas call.

Measured on the host (``codec.decode`` of the frame, load 8-10): 5 000
tuples (a 184 KB frame) 2.3 s; 20 000 (739 KB) 38.9 s of host CPU, then
"decoding it ran past its time budget", whose allowance for that frame is
about 13 s. Quadratic: 50 000 tuples (under 2 MB) is minutes of a frozen
host kernel (every thread waits for the GIL: heartbeat, relay, interrupts),
whatever the call's timeout. Severity: medium (host DoS from any level,
STRICT included, through a return value or ``%%sandbox --out``).

Judged from the host: a value whose index has more than ``MAX_SAME_HASH``
members of one hash value is refused with ``SandboxSecurityError`` as a
hash-collision flood, as a set or a dict's keys are, before pandas builds
anything (no timing in the assertion: 5 000 such members are a flood).

Fix (suggested): ``codec_arrays.decode_pandas`` / ``_host_array``: run
``_check_hashes`` over an object index's values (and each level of a list of
tuples) before ``pd.Index``; or refuse tuple (MultiIndex) indexes with object
levels from the sandbox.
"""

from __future__ import annotations

import sys

import cloudpickle
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.registry import backends
from glsandbox_kernel.exceptions import SandboxSecurityError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pd = pytest.importorskip("pandas")
OK, WHY = backends()["namespace"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"namespace: {WHY}"), pytest.mark.timeout(300)]

N = 5000


def colliding_series(n: int) -> object:
    """SANDBOX side: a Series on an object index of ``n`` tuples whose first members share one hash."""
    import numpy as np
    import pandas as pd

    m = 2**61 - 1
    keys = [(1 + k * m, 0) for k in range(n)]
    return pd.Series(np.zeros(n), index=pd.Index(keys, tupleize_cols=False, dtype=object))


def test_colliding_index_is_refused_as_a_flood() -> None:
    assert len({hash(1 + k * (2**61 - 1)) for k in range(N)}) == 1  # one hash value, no secret needed
    cfg = create_config_by_level("strict", isolation_type=IsolationType.NAMESPACE)
    with OSSandbox(cfg) as sb:
        try:
            value = sb.execute(colliding_series, N)
        except SandboxSecurityError as exc:
            assert "hash" in str(exc).lower() or "budget" in str(exc).lower(), exc
            return
    raise AssertionError(
        f"the host built a {type(value).__name__} whose index holds {N} members of one hash value "
        f"(index type {type(getattr(value, 'index', None)).__name__}): a hash-collision flood the codec accepted"
    )
