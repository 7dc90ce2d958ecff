"""Files the host writes where a sandbox could have planted a symlink or a FIFO."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from glsandbox_kernel.audit.sinks import JsonlFileSink
from glsandbox_kernel.host_files import replace_file


def test_replace_file_replaces_a_planted_symlink_and_fifo_and_keeps_a_files_mode(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("host file\n")
    link = tmp_path / "out.ipynb"
    link.symlink_to(victim)
    replace_file(link, "notebook")
    assert victim.read_text() == "host file\n"
    assert not link.is_symlink() and link.read_text() == "notebook"
    fifo = tmp_path / "report.html"
    os.mkfifo(fifo)
    replace_file(fifo, b"<html>")  # would block for ever if it opened the FIFO
    assert fifo.read_bytes() == b"<html>"
    plain = tmp_path / "kept.json"
    plain.write_text("old")
    plain.chmod(0o640)
    replace_file(plain, "new")
    assert plain.read_text() == "new" and plain.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.json", "out.ipynb", "report.html", "victim"]
    with pytest.raises(IsADirectoryError):
        replace_file(tmp_path, "x")


def test_the_audit_log_refuses_a_planted_symlink_or_fifo(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("host file\n")
    (tmp_path / "audit.jsonl").symlink_to(victim)
    with pytest.raises(OSError, match="symlink"):
        JsonlFileSink(tmp_path / "audit.jsonl")
    os.mkfifo(tmp_path / "fifo.jsonl")
    with pytest.raises(OSError, match="not a regular file"):
        JsonlFileSink(tmp_path / "fifo.jsonl")
    assert victim.read_text() == "host file\n"


def test_replace_file_refuses_a_folder_swapped_for_a_symlink(tmp_path: Path) -> None:
    from glsandbox_kernel.host_files import pin_folder

    sub, elsewhere = tmp_path / "sub", tmp_path / "elsewhere"
    sub.mkdir()
    elsewhere.mkdir()
    pinned = pin_folder(sub / "out.ipynb")
    sub.rename(tmp_path / "sub.orig")
    sub.symlink_to(elsewhere)
    with pytest.raises(OSError, match="replaced"):
        replace_file(sub / "out.ipynb", "x", folder=pinned)
    assert list(elsewhere.iterdir()) == []
