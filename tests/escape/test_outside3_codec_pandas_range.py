"""Outside review (4th): a pandas range past 64 bits escapes the codec as a bare OverflowError, unaudited.

Attack (after the pandas row check of review 3): the sandboxed function
returns ``pd.RangeIndex(0, 2**64)`` (or a frame/Series on such an index).
The worker encodes it without trouble (a range is three ints). On the host,
``codec_arrays.decode_pandas`` builds the index and calls ``len(index)`` for
the new row check; ``len`` of a range past ``sys.maxsize`` raises
``OverflowError``, which that function does not catch (it maps only KeyError,
TypeError, ValueError) and which is raised outside ``codec._dec``'s own
``except``. So the host caller gets a plain ``OverflowError`` instead of
``SandboxSecurityError``, and the call leaves no audit record at all (a
refused Fraction, by contrast, is a SandboxSecurityError and an
``execution_error`` record).

Judged from the host: ``OSSandbox.execute`` of that function raises a
``SandboxError`` subclass (measured: OverflowError, not a SandboxError) and
the audit trail holds a record of the call (measured: only ``session_start``).

Fix (suggested): ``codec_arrays.py`` (``decode_pandas``): catch
``OverflowError`` (and ArithmeticError) with the others, or check the range's
length with ``range(...)`` arithmetic bounded by the budget before ``len``;
``sandbox.py``/``session.py``: map any decode failure to SandboxSecurityError.
"""

from __future__ import annotations

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.registry import backends
from glsandbox_kernel.exceptions import SandboxError

pytest.importorskip("pandas")
OK, WHY = backends()["namespace"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"namespace: {WHY}"), pytest.mark.timeout(120)]


def hostile_range() -> object:
    import pandas as pd

    return pd.RangeIndex(0, 2**64)


def test_a_huge_pandas_range_is_a_refused_and_audited_value() -> None:
    cfg = create_config_by_level("moderate", isolation_type=IsolationType.NAMESPACE)
    with OSSandbox(cfg) as sb:
        try:
            sb.execute(hostile_range)
            raised: BaseException | None = None
        except Exception as exc:  # noqa: BLE001 - which class is the point
            raised = exc
        events = [r.get("event_type") for r in sb.audit_records]
    assert isinstance(raised, SandboxError), (
        f"the hostile value surfaced on the host as {type(raised).__name__}: {raised} (not a SandboxError)"
    )
    assert len(events) > 1, f"the refused call left no audit record: {events}"
