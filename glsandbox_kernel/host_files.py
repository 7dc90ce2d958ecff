"""Files the host writes into folders a sandbox may write (host side).

``glsandbox run`` writes the executed notebook beside the notebook; ``report``
and ``attest`` write beside it too. At LENIENT that folder is the sandbox's
to write, so the name may be a symlink or a FIFO the sandbox planted there
while it ran. :func:`replace_file` writes a new file next to it and renames
it over the name: a planted link is replaced, never followed. The folder
itself could be swapped for a link to another folder while the sandbox
ran: :func:`pin_folder` takes its identity before the run, and
:func:`replace_file` refuses a folder that is no longer that one.
Who calls: :mod:`.notebook.run`, :mod:`.notebook.report`, :mod:`.notebook.attest`,
:mod:`.notebook.cluster`.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat

#: ``(st_dev, st_ino)`` of a folder, taken by :func:`pin_folder`.
FolderId = tuple[int, int]


def pin_folder(path: str | os.PathLike[str]) -> FolderId | None:
    """The identity of the folder ``path`` (a file to be written) goes in, or None if it is missing yet."""
    try:
        st = os.stat(os.path.dirname(os.path.abspath(os.fspath(path))))
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def replace_file(path: str | os.PathLike[str], data: str | bytes, *, folder: FolderId | None = None) -> None:
    """Write ``data`` (str as UTF-8) to ``path`` as a new file renamed over it.

    A regular file already there keeps its permission bits; anything else at
    ``path`` (a symlink, a FIFO) is replaced, not opened. ``folder``: what
    :func:`pin_folder` said before the sandbox ran; a folder that is now
    another one (a planted symlink) is refused. Raises OSError (e.g.
    IsADirectoryError) with the file's name; no temporary file is left behind.
    """
    path = os.fspath(path)
    parent, name = os.path.split(os.path.abspath(path))
    body = data.encode("utf-8") if isinstance(data, str) else data
    dirfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        st = os.fstat(dirfd)
        if folder is not None and (st.st_dev, st.st_ino) != folder:
            raise OSError(errno.ESTALE, "the folder was replaced while the notebook ran (a symlink?)", parent)
        mode = 0o666  # less the umask, as open(path, "w") makes it
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISREG(st.st_mode):
                mode = stat.S_IMODE(st.st_mode)
        tmp = f".{name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dirfd)
        try:
            if mode != 0o666:
                os.fchmod(fd, mode)
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            try:
                os.unlink(tmp, dir_fd=dirfd)
            except OSError:
                pass
            raise
    finally:
        os.close(dirfd)
