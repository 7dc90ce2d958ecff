"""The worker loads the host's cloudpickled functions without importing cloudpickle (worker/unpickle_lite.py).

Each load runs in a fresh interpreter, where nothing has imported cloudpickle.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import cloudpickle

G = 10


def plain(x: int) -> int:
    return x


def closure(x: float, y: int = 2, *, z: int = 3) -> object:
    """doc"""
    k = math.sqrt(x)
    return lambda: k + y + z + G


def factorial(n: int) -> int:
    return 1 if n <= 1 else n * factorial(n - 1)


class Thing:
    def value(self) -> int:
        return 7


def uses_class() -> int:
    return Thing().value()


LOAD = """
import json, sys
from glsandbox_kernel.worker import unpickle_lite
data = bytes.fromhex(sys.argv[1])
fn = unpickle_lite.loads(data)
before = "cloudpickle" in sys.modules
out = fn(*json.loads(sys.argv[2]))
out = out() if callable(out) else out
print(json.dumps({"result": out, "cloudpickle": before, "name": fn.__name__, "doc": fn.__doc__,
                  "defaults": fn.__defaults__, "kwdefaults": fn.__kwdefaults__}))
"""


def load_fresh(fn: object, *args: object) -> dict[str, object]:
    """``fn`` pickled by value (as the host sends a notebook's function), loaded and called in a fresh python."""
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        data = cloudpickle.dumps(fn)
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    proc = subprocess.run(
        [sys.executable, "-c", LOAD, data.hex(), json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_functions_load_without_cloudpickle() -> None:
    assert load_fresh(plain, 5) == {
        "result": 5,
        "cloudpickle": False,
        "name": "plain",
        "doc": None,
        "defaults": None,
        "kwdefaults": None,
    }
    got = load_fresh(closure, 4)
    assert got["result"] == closure(4)() and got["cloudpickle"] is False  # type: ignore[operator]
    assert (got["doc"], got["defaults"], got["kwdefaults"]) == ("doc", [2], {"z": 3})
    assert load_fresh(factorial, 5)["result"] == 120


def test_a_class_by_value_imports_cloudpickle() -> None:
    got = load_fresh(uses_class)
    assert got["result"] == 7 and got["cloudpickle"] is True
