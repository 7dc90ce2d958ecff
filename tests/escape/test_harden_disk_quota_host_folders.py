"""Harden: ``disk_quota_bytes`` did not bound the host folders a sandbox writes (``sandbox-output/``).

The quota sized only the sandbox's scratch (its private ``/tmp`` and working
folder: a tmpfs). ``sandbox-output/`` of a read-only project (BASIC,
NAMESPACE), a writable project (CONTAINER, GVISOR) and ``writable_paths`` are the
host's own filesystem, bound in or granted by Landlock: with a quota of 8 MiB
a MODERATE sandbox wrote 64 MiB there in 256 KiB files, and the host's disk
took all of it (RLIMIT_FSIZE bounds one file, not how many); measured again
with this test's 32 MiB quota: 128 MiB on every backend.

Expected, judged from the host: writing far past the quota in many files
fails inside (the call ends with ``SandboxCrashedError(reason="disk_quota")``:
the host's guard, :mod:`glsandbox_kernel.disk_guard`, killed the sandbox), and
the folder holds at most the quota plus :data:`SLACK`: what the sandbox
writes between crossing the quota and the kill, the guard thread's wake-up
(measured with an 8 MiB quota at load 3.9 on 2 cores, 16 runs of buffered
256 KiB files on BASIC and NAMESPACE: 0.25-3 MiB past the quota, 1 MiB on
CONTAINER, whose processes take longer to die). Not held to it: GVISOR, where
the guard counts and kills the same way but the sentry went on writing
19-31 MiB past a 32 MiB quota after the guard saw it cross (load 8 on 2 cores).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import cloudpickle
import pytest

from glsandbox_kernel import (
    FilesystemConfig,
    IsolationType,
    OSSandbox,
    OSSandboxConfig,
    SandboxCrashedError,
    create_config_by_level,
)

from .test_outside5_common import NOBODY, need

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.timeout(300)]

MiB = 1 << 20
QUOTA = 32 * MiB
#: What may reach the host past the quota: the writes between crossing it and the kill.
SLACK = 8 * MiB


def fill(folder: str, total: int, chunk: int, sync: bool) -> int:
    """SANDBOX side: write ``total`` bytes into ``folder`` in files of ``chunk`` bytes (``sync``: fsync each)."""
    import os

    data = b"x" * chunk
    n = 0
    while n * chunk < total:
        with open(f"{folder}/part-{n:05d}.bin", "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        n += 1
    return n


def _on_disk(folder: Path) -> int:
    """HOST side: the disk blocks of every file below ``folder``."""
    return sum(os.lstat(os.path.join(r, f)).st_blocks * 512 for r, _, files in os.walk(folder) for f in files)


def _project(tmp_path: Path, backend: str) -> tuple[Path, str]:
    """HOST side: ``(output folder, project_access)``: the folder the sandbox writes into, as the backend shows it."""
    os.chmod(tmp_path, 0o755)
    project = tmp_path / "project"
    project.mkdir()
    out = project / "sandbox-output"
    out.mkdir()
    if os.geteuid() == 0 and backend != "basic":  # BASIC keeps the host's uid (without CAP_DAC_OVERRIDE)
        os.chown(project, NOBODY, NOBODY)
        os.chown(out, NOBODY, NOBODY)
    # CONTAINER and GVISOR hide a read-only project's output folder: there the project itself is the writable folder.
    return out, "write" if backend in ("container", "gvisor") else "read"


def quota_config(tmp_path: Path, backend: str) -> tuple[OSSandboxConfig, Path, str]:
    """HOST side: a MODERATE config of a :data:`QUOTA` disk quota, its output folder on the host and inside."""
    need(backend)
    out, access = _project(tmp_path, backend)
    fs = FilesystemConfig(project_dir=str(out.parent), project_access=access)
    cfg = create_config_by_level("moderate", isolation_type=IsolationType(backend), filesystem=fs)
    cfg = cfg.replace(limits=dataclasses.replace(cfg.limits, disk_quota_bytes=QUOTA))
    return cfg, out, str(out) if backend in ("basic", "namespace") else "/work/project/sandbox-output"


@pytest.mark.parametrize("sync", [False, True], ids=["buffered", "fsync"])
@pytest.mark.parametrize("backend", ["basic", "namespace", "container"])
def test_writing_past_the_disk_quota_into_host_folders_fails_and_the_host_keeps_the_quota(
    tmp_path: Path, backend: str, sync: bool
) -> None:
    cfg, out, inside = quota_config(tmp_path, backend)
    with OSSandbox(cfg) as sb:
        got = _fill(sb, inside, 4 * QUOTA, sync)
        first = _on_disk(out)
        # The session's budget, not one worker's: the fresh worker after the kill may not add another quota.
        again = _fill(sb, inside, 4 * QUOTA, sync)
    written = _on_disk(out)
    assert first <= QUOTA + SLACK, f"the host's {out} holds {first / MiB:.2f} MiB, quota {QUOTA / MiB} MiB ({got!r})"
    assert isinstance(got, SandboxCrashedError) and got.reason == "disk_quota", got
    assert written <= QUOTA + SLACK, f"after a second call the host's {out} holds {written / MiB:.2f} MiB ({again!r})"
    assert isinstance(again, SandboxCrashedError) and again.reason == "disk_quota", again


def _fill(sb: OSSandbox, inside: str, total: int, sync: bool) -> object:
    """HOST side: run :func:`fill` in ``sb`` (256 KiB files); what it returned, or the error it raised."""
    try:
        return sb.execute(fill, inside, total, 256 * 1024, sync)
    except SandboxCrashedError as exc:
        return exc
