"""Step: the worker process's own settings (environment, umask, working directory, import path).

Host side: :func:`scrubbed_env` (the worker's environment: allowlisted host
variables plus safe defaults) and :func:`plan_step`. Child side:
:func:`apply_child` replaces the environment, sets the umask and, on the
host's filesystem, changes to the private working directory (a mounts step
leaves the worker there already). ``sys_path`` is the project folder when it
is shown (the zygote's child puts it in front once the plan is applied);
functions from modules outside the environment travel by value instead.
"""

from __future__ import annotations

import dataclasses
import os

from ..config import OSSandboxConfig
from ._common import ChildState, ConfinementError, PlanContext


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProcessSection:
    """The process section: the environment replaces the inherited one."""

    env: dict[str, str]
    umask: int = 0o077
    cwd: str
    chdir: bool
    sys_path: tuple[str, ...] = ()


def scrubbed_env(config: OSSandboxConfig, workdir: str) -> dict[str, str]:
    """HOST side: the worker's environment: allowlisted host variables plus safe defaults."""
    env = {k: os.environ[k] for k in config.whitelist.allowed_env_vars if k in os.environ}
    env.update(
        {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": workdir,
            "TMPDIR": workdir,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "MPLCONFIGDIR": os.path.join(workdir, ".matplotlib"),
            "IPYTHONDIR": os.path.join(workdir, ".ipython"),
            "GLSANDBOX": "1",
            # One BLAS/OpenMP thread: per-thread buffers would otherwise eat the
            # memory limit (OpenBLAS reserves ~227 MiB of address space at import).
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
    )
    # The worker's font probe (worker/fontprobe.py): matplotlib's fc-list is refused before its fork
    # where no program may start, instead of reaching the supervisor as an exec violation.
    if config.new_programs_allowed:
        env["GLSANDBOX_NEW_PROGRAMS"] = "allowed"
    else:
        listed = any(os.path.basename(p) == "fc-list" for p in config.whitelist.allowed_executables)
        env["GLSANDBOX_NEW_PROGRAMS"] = "listed" if listed else "denied"
    env.update(dict(config.whitelist.env))
    return env


def plan_step(ctx: PlanContext) -> ProcessSection:
    """HOST side: scrubbed environment, cwd (the project folder, else the private workdir), umask 077.

    The import path: the template's (the Python environment) plus the project
    folder when it is shown, first, as ``python -m`` puts the working
    directory; never the host's ``sys.path`` (see :mod:`glsandbox_kernel.project`).
    """
    from ..project import layout_for

    layout = layout_for(ctx)
    env = scrubbed_env(ctx.config, ctx.workdir)
    net = ctx.config.network
    env["GLSANDBOX_NETWORK"] = f"network: {net.mode}" + (
        f", allowed hosts {', '.join(net.allowed_hosts)}" if net.allowed_hosts else ""
    )
    return ProcessSection(
        env=env,
        cwd=layout.cwd or ctx.workdir,
        chdir=ctx.profile.root == "host",
        sys_path=(layout.workdir,) if layout.workdir else (),
    )


def apply_child(section: ProcessSection | None, state: ChildState) -> None:
    """CHILD side: environment (replaced), umask, working directory (without a root of its own)."""
    if section is None:
        return
    os.environ.clear()
    os.environ.update(section.env)
    os.umask(section.umask)
    if section.chdir and section.cwd:
        try:
            os.chdir(section.cwd)
        except OSError as exc:
            raise ConfinementError("process", f"chdir({section.cwd!r})", exc.errno) from exc
