"""The disk guard past its watch cap (``MAX_WATCHES``): folders without a watch are counted before a call returns.

A folder made inside a folder without a watch sends no event, and gets none itself (the cap is full); what
the sandbox writes there is found by re-reading the folders without a watch (periodically and at each
call's end). Judged from the host: the call fails with ``SandboxCrashedError(reason="disk_quota")``
(diskguard2: it returned, 160 MiB on the host under a 32 MiB quota). An honest sandbox with more folders
than the cap, under its quota, keeps its worker.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cloudpickle
import pytest

from glsandbox_kernel import SandboxCrashedError
from glsandbox_kernel.disk_guard import MAX_WATCHES

from .test_outside27_common import output_sandbox
from .test_outside28_disk_guard_watch_cap import _blocks, _run, fill_last, many_folders

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.timeout(300)]

MiB = 1 << 20


def fill_nested(folder: str, total: int) -> int:
    """SANDBOX side: a new folder inside the first one (which gave its watch away), ``total`` bytes in it."""
    import os

    os.mkdir(f"{folder}/d00000/d00000")
    return fill_last(f"{folder}/d00000", 1, total)


def honest_files(folder: str, count: int) -> int:
    """SANDBOX side: 1 MiB into each of ten folders spread over ``count`` (watched or not)."""
    for i in range(0, count, count // 10):
        with open(f"{folder}/d{i:05d}/part.bin", "wb") as fh:
            fh.write(b"y" * MiB)
    return 10


@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_writes_below_a_new_folder_without_a_watch_fail_the_call(tmp_path: Path, backend: str) -> None:
    count = MAX_WATCHES + 100
    out, sandbox = output_sandbox(tmp_path, backend, 32 * MiB)
    with sandbox as sb:
        assert _run(sb, many_folders, str(out), count) == count
        got = _run(sb, fill_nested, str(out), 160 * MiB)
        on_disk = _blocks(out)
    assert isinstance(got, SandboxCrashedError) and got.reason == "disk_quota", (
        f"{backend}: {on_disk / MiB:.1f} MiB in the host's {out} under a 32 MiB quota and the call returned {got!r}"
    )


@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_an_honest_sandbox_with_more_folders_than_watches_keeps_its_worker(tmp_path: Path, backend: str) -> None:
    count = 5000  # 19.5 MiB of folders, 10 MiB of files: under the quota
    out, sandbox = output_sandbox(tmp_path, backend, 64 * MiB)
    with sandbox as sb:
        assert _run(sb, many_folders, str(out), count) == count
        assert _run(sb, honest_files, str(out), count) == 10
        assert _run(sb, honest_files, str(out), count) == 10  # a second call: the worker still there
