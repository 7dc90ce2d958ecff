"""Outside review: sandboxed code raises ``SystemExit`` / ``KeyboardInterrupt`` in the host caller.

Attack: a sandboxed function raises ``SystemExit("...")`` or
``KeyboardInterrupt``. ``results.exception_from_reply`` maps a "builtin"
error name to ``getattr(builtins, ename)`` for any ``BaseException``
subclass, so the host's ``sandbox.execute(fn)`` raises a real
``SystemExit``/``KeyboardInterrupt`` in the host process. Those pass through
the ``except Exception`` that every caller of untrusted code writes: the
sandbox ends the host program (``glsandbox exec``, a service, a Dask task
loop of ``distributed/``) or fakes the user's Ctrl-C. Measured here: both
escaped ``except Exception``; the session stayed usable.

Judged from the host: whatever the sandboxed code raises, ``execute``
raises an ``Exception`` (the builtin class only when it is an ``Exception``
subclass; otherwise ``SandboxRemoteError`` naming it).

Fix (suggested): ``results.py``, ``exception_from_reply``: ``issubclass(cls,
Exception)`` instead of ``BaseException``.
"""

from __future__ import annotations

import sys

import cloudpickle
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.registry import backends

cloudpickle.register_pickle_by_value(sys.modules[__name__])

OK, WHY = backends()["basic"].available()
pytestmark = pytest.mark.skipif(not OK, reason=f"basic: {WHY}")


def attack_raise(name: str) -> None:
    """SANDBOX side: raise the named BaseException subclass."""
    import builtins

    raise getattr(builtins, name)("the sandbox says: host, stop now")


@pytest.mark.parametrize("name", ["SystemExit", "KeyboardInterrupt", "GeneratorExit"])
def test_sandbox_cannot_raise_a_base_exception_in_the_host(name: str) -> None:
    cfg = create_config_by_level("strict", isolation_type=IsolationType.BASIC)
    with OSSandbox(cfg) as sb:
        try:
            sb.execute(attack_raise, name)
        except Exception as exc:  # noqa: BLE001 - what a careful caller of untrusted code catches
            assert name in f"{type(exc).__name__} {exc}"
        except BaseException as exc:  # noqa: BLE001 - the attack: it got past except Exception
            pytest.fail(f"the sandbox raised {type(exc).__name__} in the host, past 'except Exception'")
        else:
            pytest.fail("the sandboxed exception was not raised at all")
