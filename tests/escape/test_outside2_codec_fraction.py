"""Outside review (3rd): a Fraction from the sandbox costs the host quadratic CPU, past every decode budget.

Attack: the sandboxed function returns ``Fraction(a, b, _normalize=False)``
with two large odd ints (made in microseconds inside the sandbox, no gcd
there). The host's restricted decoder rebuilds it with
``fractions.Fraction(num, den)``, whose normalisation runs ``math.gcd`` on
the two ints: quadratic in their size, one C call that holds the GIL and
never reaches the decoder's budget check (:meth:`codec._Reader.check` runs
between objects only). Measured: two 200 kB ints cost the host ~4 s of CPU,
4x the size ~16x the CPU; a 64 MiB frame (the default cap) would hold the
kernel's GIL for hours (no heartbeat, no interrupt, no control channel).

Judged from the host: with ``execution_timeout`` 1 s (the call's decode
deadline), ``execute`` costs the host process at most a few seconds of CPU.

Fix (suggested): ``codec.py`` tag ``r``: refuse numerators/denominators
above a bound (e.g. 64 kbit) or build with ``_normalize=False`` after a
bounded coprimality check; the same for any decoder step that is not linear.
"""

from __future__ import annotations

import resource
import sys

import cloudpickle

from glsandbox_kernel import OSSandbox, create_config_by_level

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def attack_fraction(n_bytes: int) -> object:
    """SANDBOX side: a Fraction of two large odd ints, built without the gcd."""
    import fractions
    import os

    a = int.from_bytes(b"\x7f" + os.urandom(n_bytes - 1), "big") | 1
    b = int.from_bytes(b"\x7e" + os.urandom(n_bytes - 1), "big") | 1
    return fractions.Fraction(a, b, _normalize=False)


def _host_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # this process's threads, not the worker
    return usage.ru_utime + usage.ru_stime


def test_a_sandbox_fraction_cannot_spend_host_cpu_past_the_call_deadline() -> None:
    cfg = create_config_by_level("strict", execution_timeout=1.0)
    with OSSandbox(cfg) as sb:
        sb.execute(int, 1)  # the worker is up: what follows is the decode
        before = _host_cpu()
        try:
            sb.execute(attack_fraction, 200_000)
        except Exception:  # noqa: BLE001 - a refusal is the fix; the cost is what counts
            pass
        spent = _host_cpu() - before
    assert spent < 2.5, (
        f"decoding one sandbox Fraction took {spent:.1f} s of host CPU (call deadline 1 s): "
        "math.gcd runs inside the decoder, quadratic and past the budget"
    )
