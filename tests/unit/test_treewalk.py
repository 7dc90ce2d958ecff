"""The scan for secrets and doors takes entry types from the directory listing (d_type) and still finds
everything a full ``lstat`` walk finds: sockets, FIFOs, device nodes and masked names deep in a tree."""

from __future__ import annotations

import fnmatch
import os
import socket
import stat
from pathlib import Path

import pytest

from glsandbox_kernel import FilesystemConfig, IsolationType, create_config_by_level
from glsandbox_kernel.exceptions import SandboxConfigError
from glsandbox_kernel.project import container_masks, find_masked, project_layout
from glsandbox_kernel.treewalk import TreeWalk, is_masked, mask_matcher
from glsandbox_kernel.written_files import WriteTracker

PATTERNS = create_config_by_level("moderate").filesystem.masked_names


def _listing_gives_types(folder: Path) -> bool:
    """Whether this filesystem fills d_type: a DirEntry then knows a file's type after the file is gone."""
    probe = folder / "probe"
    probe.write_text("")
    with os.scandir(folder) as it:
        entries = [e for e in it if e.name == "probe"]
    probe.unlink()
    return entries[0].is_file(follow_symlinks=False)


def _lstat_walk(root: str) -> list[tuple[str, str]]:
    """The reference: every entry lstat()-ed, symlinks never followed, masked folders not entered."""
    found, todo = [], [root]
    while todo:
        folder = todo.pop()
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            door = stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            masked = not stat.S_ISLNK(mode) and any(fnmatch.fnmatchcase(name, p) for p in PATTERNS)
            if door or masked:
                found.append((path, "dir" if stat.S_ISDIR(mode) else "file"))
            if stat.S_ISDIR(mode) and not masked:
                todo.append(path)
    return sorted(found)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, list[str]]:
    """A tree with doors and masked names five folders down, among plain files, and symlinks to them."""
    if not _listing_gives_types(tmp_path):
        pytest.skip(f"{tmp_path}'s filesystem gives no d_type: this test is about the listing's types")
    deep = tmp_path / "root" / "a" / "b" / "c" / "d"
    deep.mkdir(parents=True)
    for i in range(50):
        (deep / f"f{i}.csv").write_text("x")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(deep / "agent.sock"))
    sock.close()
    os.mkfifo(deep / "pipe")
    doors = [str(deep / "agent.sock"), str(deep / "pipe")]
    if os.geteuid() == 0:
        os.mknod(deep / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        os.mknod(deep / "disk", stat.S_IFBLK | 0o600, os.makedev(7, 0))
        doors += [str(deep / "null"), str(deep / "disk")]
    (deep / ".env").write_text("SECRET=1")
    (deep / "id_rsa").write_text("key")
    (deep / ".ssh").mkdir()
    (deep / ".ssh" / "inner.sock").write_text("never entered")
    (deep / "link-to-sock").symlink_to(deep / "agent.sock")  # a symlink: not a door, not followed
    (deep / "server.key").symlink_to(deep / "f0.csv")  # a masked name on a symlink: resolved inside
    (tmp_path / "root" / "loop").symlink_to(tmp_path / "root")
    return tmp_path / "root", doors


def test_doors_and_masked_names_deep_in_a_tree_are_found_with_d_type_known(tree: tuple[Path, list[str]]) -> None:
    root, doors = tree
    found = find_masked(str(root), PATTERNS)
    assert found == _lstat_walk(str(root))
    deep = root / "a" / "b" / "c" / "d"
    assert {p for p, _ in found} == {*doors, str(deep / ".env"), str(deep / "id_rsa"), str(deep / ".ssh")}
    assert (str(deep / ".ssh"), "dir") in found and (str(deep / "pipe"), "file") in found


def test_the_walk_types_entries_as_lstat_does_and_keeps_its_budget(tree: tuple[Path, list[str]]) -> None:
    root, _ = tree
    for entry, kind in TreeWalk([str(root)], 10_000, lambda e: True):
        assert kind == stat.S_IFMT(os.lstat(entry.path).st_mode), entry.path
    walk = TreeWalk([str(root)], 5, lambda e: True)
    assert len(list(walk)) == 5 and not walk.complete
    with pytest.raises(SandboxConfigError, match="more than 20 files"):
        find_masked(str(root), PATTERNS, budget=20)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a folder of mode 000")
def test_an_unreadable_folder_is_passed_over(tmp_path: Path) -> None:
    (tmp_path / "shut").mkdir()
    (tmp_path / "shut" / ".env").write_text("x")
    (tmp_path / ".env").write_text("x")
    os.chmod(tmp_path / "shut", 0)
    try:
        assert find_masked(str(tmp_path), PATTERNS) == [(str(tmp_path / ".env"), "file")]
    finally:
        os.chmod(tmp_path / "shut", 0o755)


def test_the_write_tracker_stamps_regular_files_only(tree: tuple[Path, list[str]]) -> None:
    root, _ = tree
    deep = root / "a" / "b" / "c" / "d"
    files = WriteTracker((str(root),), PATTERNS).snapshot().files
    assert set(files) == {str(deep / f"f{i}.csv") for i in range(50)}
    st = os.lstat(deep / "f0.csv")
    assert files[str(deep / "f0.csv")] == (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def test_the_matcher_is_fnmatchcase_of_each_pattern_for_literal_and_wildcard_names() -> None:
    names = [
        ".env",
        ".env.x",
        ".git",
        ".gitx",
        "id_",
        "a.pem",
        ".ssh",
        ".SSH",
        "jupyter_runtime",
        "x",
        "[a]",
        "a",
        "abc",
        "a.key",
    ]
    for patterns in (PATTERNS, (".git",), ("[a]", "*.key"), ("a?c",), ()):
        for name in names:
            assert is_masked(name, patterns) == any(fnmatch.fnmatchcase(name, p) for p in patterns), (name, patterns)
    assert mask_matcher(PATTERNS) is mask_matcher(tuple(PATTERNS))


def test_a_container_start_takes_the_kernels_check_of_the_same_folder_once(tmp_path: Path) -> None:
    (tmp_path / "sandbox-output").mkdir()
    (tmp_path / ".env").write_text("x")
    fs = FilesystemConfig(project_dir=str(tmp_path), project_access="read")
    cfg = create_config_by_level("moderate", isolation_type=IsolationType.CONTAINER, filesystem=fs)
    assert project_layout(cfg, keep=True).masked[0] == (str(tmp_path / ".env"), "file")
    (tmp_path / "id_rsa").write_text("x")  # after the kernel's check: the start just after takes its walk, once
    assert container_masks(cfg) == ([(str(tmp_path / ".env"), "file")], None)
    assert container_masks(cfg)[0] == [(str(tmp_path / ".env"), "file"), (str(tmp_path / "id_rsa"), "file")]


def test_the_first_start_in_a_folder_takes_the_kernels_walk_and_walks_the_output_folder_it_made(
    tmp_path: Path,
) -> None:
    (tmp_path / ".env").write_text("x")
    fs = FilesystemConfig(project_dir=str(tmp_path), project_access="read")
    cfg = create_config_by_level("moderate", isolation_type=IsolationType.NAMESPACE, filesystem=fs)
    assert project_layout(cfg, keep=True).output_dir is None  # no output folder yet: the start makes it
    (tmp_path / "id_rsa").write_text("x")  # after the kernel's check: the start just after takes its walk, once
    layout = project_layout(cfg, create_output=True)
    assert layout.output_dir == str(tmp_path / "sandbox-output") and layout.output_dir in layout.writable
    assert [p for p, _ in layout.masked] == [str(tmp_path / ".env")]
    again = project_layout(cfg, create_output=True)
    assert [p for p, _ in again.masked] == [str(tmp_path / ".env"), str(tmp_path / "id_rsa")]
