"""The cgroup section of a child plan (a leaf module: both sides import it)."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True, kw_only=True)
class CgroupSection:
    """The cgroup section of a child plan: the cgroup the host made, or why there is none.

    ``attach_by="child"``: the child writes its pid to ``procs`` first thing;
    ``"host"``: the host moves the sandbox's processes (the child only
    reports). Disabled with ``unavailable``: the host's reason, copied into
    the report.
    """

    enabled: bool = True
    version: int = 0
    name: str = ""
    procs: tuple[str, ...] = ()
    attach_by: Literal["child", "host"] = "child"
    unavailable: str = ""
