"""A delete to the trash (jupyter_server's default) never moves a host file through a folder swapped for a link.

The server extension does the trash move itself, a ``renameat`` from the
folder its walk holds open into ``$XDG_DATA_HOME/Trash`` (send2trash's
layout), instead of jupyter_server's ``send2trash`` of the path string after
the check. A real ``jupyter server`` (both contents managers, ``HOME`` in the
test's folder) with a cell's swapping loop (``renameat2(RENAME_EXCHANGE)`` of
a project folder and a link to a host folder) running during the deletes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..escape.test_outside11_server_guard_race import _swapping
from ..jupyter_fixtures import jupyter_server
from .test_server_save_links import HOST_TEXT, MANAGERS, _call

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", params=sorted(MANAGERS))
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp(f"trash-{request.param}")
    (base / "root").mkdir()
    (base / "host").mkdir()
    env = {"GLSANDBOX_AUDIT_KEY": None, "HOME": str(base), "XDG_DATA_HOME": None}
    args = [*MANAGERS[request.param], "--FileContentsManager.delete_to_trash=True"]
    with jupyter_server(base, base / "root", env=env, args=args) as s:
        yield {**s, "host": base / "host", "trash": base / ".local" / "share" / "Trash"}


def test_a_delete_to_the_trash_moves_the_file_there(server: dict[str, Any]) -> None:
    proj = Path(server["root"]) / "t1"
    proj.mkdir()
    (proj / "old.txt").write_text("mine\n")
    status, reply = _call(server, "DELETE", "t1/old.txt")
    assert status == 204, (status, reply)
    trash = Path(server["trash"])
    assert not (proj / "old.txt").exists() and (trash / "files" / "old.txt").read_text() == "mine\n"
    assert f"Path={proj / 'old.txt'}" in (trash / "info" / "old.txt.trashinfo").read_text()


def test_a_delete_to_the_trash_keeps_a_host_file_through_a_folder_swapped_after_the_check(
    server: dict[str, Any],
) -> None:
    victim = Path(server["host"]) / "t2" / "victim.txt"
    replies: list[int] = []
    with _swapping(server, "t2") as alive:
        while len(replies) < 400 and victim.exists():
            alive()
            replies.append(_call(server, "DELETE", "t2/data/victim.txt")[0])
    assert victim.exists() and victim.read_text() == HOST_TEXT, f"host file moved to the trash; {Counter(replies)}"
    assert 204 in replies, Counter(replies)  # the project's own file was deleted in between
