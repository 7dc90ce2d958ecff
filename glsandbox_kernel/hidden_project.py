"""HOST side: why a CONTAINER or GVISOR sandbox shows no project folder, as a notice for the analyst.

A container's binds cannot hide single names inside a folder, so a project folder that holds a masked
name (``.git``, ``.env``, ``signing.key``) is not shown at all (:func:`.backends.container.settings._user_binds`). Without
a word, every ``pd.read_csv("emissions.csv")`` then fails with ``FileNotFoundError``; the kernel's
first cell and ``glsandbox exec`` say why and what to do instead.
"""

from __future__ import annotations

import logging
import os

from .config import IsolationType, OSSandboxConfig
from .exceptions import SandboxConfigError

log = logging.getLogger("glsandbox.container")

#: project folder (real path) -> the notice of the last container settings made for it ("" when shown)
_hidden: dict[str, str] = {}


def note_hidden(project: str, secrets: list[tuple[str, str]]) -> None:
    """Record (and log) that ``project`` is not shown because it holds ``secrets`` (masked entries)."""
    _hidden[os.path.realpath(project)] = text = _notice(project, secrets) if secrets else ""
    if text:
        log.warning("container: %s", text)


def _notice(project: str, secrets: list[tuple[str, str]]) -> str:
    names = [os.path.relpath(p, os.path.realpath(project)) for p, _ in secrets[:5]]
    more = f" and {len(secrets) - 5} more" if len(secrets) > 5 else ""
    return (
        f"the project folder {project} is not shown to the sandbox: it holds {', '.join(names)}{more} (masked "
        "names), which the container backend cannot hide inside a shown folder; move them out of the project "
        "folder, or use isolation namespace, which shows the folder with them hidden"
    )


def hidden_project_notice(config: OSSandboxConfig) -> str | None:
    """Why a CONTAINER/GVISOR sandbox of ``config`` shows no project folder, or None (shown, or not asked)."""
    fs = config.filesystem
    if config.isolation_type not in (IsolationType.CONTAINER, IsolationType.GVISOR):
        return None
    if not fs.project_dir or config.project_access == "none":
        return None
    real = os.path.realpath(fs.project_dir)
    if real not in _hidden:  # no container settings made for it in this process yet: check it now
        from .project import container_masks

        try:
            note_hidden(fs.project_dir, container_masks(config)[0])
        except (SandboxConfigError, OSError):
            return None
    return _hidden[real] or None
