"""The warm call's host-side shortcuts give what the general paths give (HOST side, no sandbox needed).

``call_message`` pickles plain scalar arguments with the C pickler, ``call_provenance`` keeps the hash
state after a repeated function, and the per-call /proc reading parses ``status`` with one ``find`` per
field: each is checked here against the general path it stands in for.
"""

from __future__ import annotations

import os
import pickle

import cloudpickle

from glsandbox_kernel import procfs
from glsandbox_kernel.pickling import call_message, call_provenance, sha256_parts


def _double(x: int) -> int:
    return 2 * x


def test_plain_arguments_are_the_bytes_cloudpickle_writes() -> None:
    args = (1, -(2**70), 1.5, "é", b"\x00raw", True, None)
    msg, _fn, arg_bytes = call_message(_double, args, {})
    assert arg_bytes == cloudpickle.dumps((args, {}), protocol=5)
    assert pickle.loads(msg["args"]) == (args, {})
    assert "buffers" not in msg


def test_arguments_that_need_cloudpickle_still_get_it() -> None:
    msg, _fn, _args = call_message(_double, (lambda y: y + 1,), {"k": 2})
    (fn,), kwargs = pickle.loads(msg["args"])
    assert fn(1) == 2 and kwargs == {"k": 2}
    empty, _fn, no_args = call_message(_double, (), {})
    assert no_args == b"" and empty["args"] == b""


def test_provenance_is_the_hash_of_the_three_parts() -> None:
    config = b'{"config": 1}'
    fn_a, fn_b = cloudpickle.dumps(_double), b"other function"
    for fn, arg in [(fn_a, b"1"), (fn_a, b"2"), (fn_b, b"1"), (fn_a, b""), (bytes(fn_a), b"1")]:
        assert call_provenance(fn, arg, config) == sha256_parts(fn, arg, config)
    assert call_provenance(fn_a, b"1", config) != call_provenance(fn_a, b"2", config)


def test_status_fields_parse_as_the_general_reader_does() -> None:
    with open("/proc/self/status", "rb") as fh:
        status = fh.read()
    for name in ("VmHWM", "RssFile", "VmRSS"):
        assert procfs._status_kb(status, b"\n" + name.encode() + b":") == procfs.parse_kb(
            procfs.status_field(status, name)
        )
    assert procfs._status_kb(status, b"\nNoSuchField:") is None
    assert procfs._status_kb(b"x\nVmHWM:\tgarbage kB\n", b"\nVmHWM:") is None
    reading = procfs.ProcessReader(os.getpid()).reading()
    assert reading is not None and reading.hwm is not None and reading.hwm >= reading.stat.rss_bytes // 2


def test_stat_with_parentheses_in_the_name() -> None:
    fields = " ".join(str(n) for n in range(4, 53))
    st = procfs.parse_stat(f"42 (a) b) S {fields}".encode())
    assert st is not None and st.state == "S" and st.ppid == 4
    assert st.cpu_ticks == 14 + 15 + 16 + 17 and st.start_ticks == 22 and st.rss_pages == 24
    assert procfs.parse_stat(b"no parenthesis here") is None
