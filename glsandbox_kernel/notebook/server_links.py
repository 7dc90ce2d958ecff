"""Jupyter server extension, second half: reads, renames, copies and deletes never follow a planted link.

Who calls: :func:`.presave._load_jupyter_server_extension` installs
:func:`guard_contents` on the server's contents manager at start-up; it runs
in the server (unsandboxed, as the user), never in a kernel or the sandbox.

At LENIENT a sandboxed cell can write the project folder, so it can plant a
symbolic link there (``key.txt -> ~/.ssh/id_rsa``, ``data -> /etc``). The
saves are guarded in :mod:`.presave`; without this module the server would
still, through its contents REST API and ``/files/``, hand the link's host
target to the browser (GET of a file or notebook, a folder listing through a
linked folder), move a host file into the project or a project file into a
host folder (PATCH rename through a linked folder, or onto a link), copy a
host file into the project (POST ``copy_from`` of a link, or of a folder
holding one), and delete a host file (DELETE below a linked folder).

Each of these now walks the path from the server's root without following
links and refuses (HTTP 403, "… is a symbolic link a sandboxed cell may have
planted; not read, nothing sent") a path with a symbolic link below the root.
A listing still shows a link's name (a ``content=0`` model is allowed for the
last component), and a link itself may be deleted. The file reader the
contents manager uses (``open``) is replaced with one that opens the last
component with ``O_NOFOLLOW`` in the folder it holds open, so a link swapped
in after the check is refused, never read through; :func:`guard_files` serves
``/files/`` through it. The walk opens folders with ``O_PATH`` (search
permission only) and fails closed (:func:`held`); the deletes, renames and
copies themselves are done on the folders it holds by :mod:`.server_ops`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import os
import stat
from collections.abc import Callable, Iterator
from typing import IO, Any, NoReturn

from tornado.web import HTTPError

# -- the walk from the server root, shared with the writers of .presave --------------------------

# O_PATH: a folder needs only search permission to be walked (a cell may make one execute-only, 0o111)
_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


SAVED = "not saved, nothing overwritten"


def _refuse(rel: str, why: str, action: str = SAVED) -> NoReturn:
    raise HTTPError(403, f"glsandbox: {why}; {action} ({rel})")


def _parts_below(root: str, os_path: str) -> list[str] | None:
    """The components of ``os_path`` below ``root``; None when it is not below it."""
    rel = os.path.relpath(os.path.abspath(os_path), os.path.abspath(root))
    parts = rel.split(os.sep)
    return None if rel == os.curdir or os.pardir in parts else parts


def _open_parent(root: str, os_path: str, action: str = SAVED) -> tuple[int, str, str] | None:
    """``(fd of os_path's directory, name, path below root)``, walked from ``root`` without following links.

    None when ``os_path`` is not below ``root`` (the caller falls back to jupyter_server's own way).
    """
    parts = _parts_below(root, os_path)
    if parts is None:
        return None
    rel = os.sep.join(parts)
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)  # the root itself is the server's choice
    try:
        for index, part in enumerate(parts[:-1]):
            try:
                sub = os.open(part, _DIR, dir_fd=fd)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                where = os.sep.join(parts[: index + 1])
                if stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                    _refuse(rel, f"{where} is a symbolic link a sandboxed cell may have planted", action)
                _refuse(rel, f"{where} is not a directory", action)
            os.close(fd)
            fd = sub
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1], rel


READ = "not read, nothing sent"
RENAMED = "not renamed, nothing moved"
COPIED = "not copied"
DELETED = "not deleted"
PLANTED = "is a symbolic link a sandboxed cell may have planted"


def held(root: str, os_path: str, action: str) -> tuple[int, str, str] | None:
    """:func:`_open_parent`, failing closed: a missing folder is a 404, any other error of the walk a 403.

    Nothing below a folder the server could not check is acted on (an execute-only
    or unreadable folder, a folder swapped while walked, ...).
    """
    try:
        return _open_parent(root, os_path, action)
    except FileNotFoundError:
        raise HTTPError(404, f"glsandbox: a folder of the path does not exist; {action}") from None
    except OSError as e:
        rel = os.path.relpath(os_path, root)
        _refuse(rel, f"a folder of {rel} could not be checked for links ({e.strerror})", action)


def lstat_in(dir_fd: int, name: str, rel: str, action: str) -> os.stat_result | None:
    """The lstat of ``name`` in ``dir_fd``; None when absent, a 403 on any other error."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as e:
        _refuse(rel, f"{rel} could not be checked for links ({e.strerror})", action)


def open_in(dir_fd: int, name: str, rel: str, action: str) -> int:
    """``name`` in ``dir_fd`` opened for reading with ``O_NOFOLLOW``; a link (swapped in after a check) is a 403."""
    try:
        return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            _refuse(rel, f"{rel} {PLANTED}", action)
        raise


def check_path(root: str, os_path: str, action: str, last: bool = True, folder_ok: bool = False) -> None:
    """Refuse (HTTP 403) ``os_path`` when a component below ``root`` is a symbolic link.

    ``last`` False: the last component may be a link (deleting or listing the link itself).
    A missing last component, or a path outside the root, is left to jupyter_server (its 404);
    a missing folder above it is a 404 (``folder_ok``: nothing to check, a checkpoint's
    folder not made yet), any other error while checking a 403 (:func:`held`).
    """
    try:
        found = held(root, os_path, action)
    except HTTPError as e:
        if folder_ok and e.status_code == 404:
            return
        raise
    if found is None:
        return
    dir_fd, name, rel = found
    try:
        if last:
            st = lstat_in(dir_fd, name, rel, action)
            if st is not None and stat.S_ISLNK(st.st_mode):
                _refuse(rel, f"{rel} {PLANTED}", action)
    finally:
        os.close(dir_fd)


def check_tree(root: str, os_path: str, action: str) -> None:
    """:func:`check_path`, and no symbolic link anywhere inside the folder ``os_path`` (a folder copy follows them)."""
    check_path(root, os_path, action)
    if _parts_below(root, os_path) is None or not os.path.isdir(os_path):
        return
    for folder, dirs, files in os.walk(os_path):  # does not follow links
        for name in dirs + files:
            full = os.path.join(folder, name)
            if os.path.islink(full):
                rel = os.path.relpath(full, root)
                _refuse(rel, f"{rel} {PLANTED}", action)


def _guarded(orig: Callable[..., Any], check: Callable[..., None]) -> Callable[..., Any]:
    """``orig`` (sync or async) preceded by ``check`` with the same arguments."""
    if inspect.iscoroutinefunction(orig):

        async def guarded_async(*args: Any, **kwargs: Any) -> Any:
            check(*args, **kwargs)
            return await orig(*args, **kwargs)

        return functools.wraps(orig)(guarded_async)

    def guarded(*args: Any, **kwargs: Any) -> Any:
        check(*args, **kwargs)
        return orig(*args, **kwargs)

    return functools.wraps(orig)(guarded)


class _Paths:
    """The checks run before the contents manager's get, rename_file, copy and delete_file (server side)."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.open_ = manager.open

    def root(self) -> str:
        return os.path.abspath(str(self.manager.root_dir))

    def os_path(self, path: str) -> str:
        return str(self.manager._get_os_path(str(path).strip("/")))

    def checkpoint(self, path: str) -> str | None:
        """The file checkpoint's os path of API ``path``, or None (no file checkpoints)."""
        cp_dir = getattr(getattr(self.manager, "checkpoints", None), "checkpoint_dir", None)
        if not isinstance(cp_dir, str):
            return None
        os_path = self.os_path(path)
        base, ext = os.path.splitext(os.path.basename(os_path))
        return os.path.join(os.path.dirname(os_path), cp_dir, f"{base}-checkpoint{ext}")

    def get(
        self, path: str, content: bool = True, type: Any = None, format: Any = None, require_hash: bool = False
    ) -> None:
        check_path(self.root(), self.os_path(path), READ, last=bool(content or require_hash))

    def rename_file(self, old_path: str, new_path: str) -> None:
        for path in (old_path, new_path):
            check_path(self.root(), self.os_path(path), RENAMED)
            cp = self.checkpoint(path)
            if cp is not None:
                check_path(self.root(), cp, RENAMED, folder_ok=True)

    def copy(self, from_path: str, to_path: str | None = None) -> None:
        check_tree(self.root(), self.os_path(from_path), COPIED)
        if to_path is not None:
            check_path(self.root(), self.os_path(to_path), COPIED)

    def delete_file(self, path: str) -> None:
        check_path(self.root(), self.os_path(path), DELETED, last=False)
        cp = self.checkpoint(path)
        if cp is not None:
            check_path(self.root(), cp, DELETED, last=False, folder_ok=True)

    @contextlib.contextmanager
    def open(self, os_path: str, *args: Any, **kwargs: Any) -> Iterator[IO[Any]]:
        """Replaces the file manager's ``open`` (what ``_read_file`` reads with): no link below the root."""
        mode = str(args[0] if args else kwargs.get("mode", "r"))
        if set(mode) - set("rbt") or _parts_below(self.root(), os_path) is None:
            with self.open_(os_path, *args, **kwargs) as f:
                yield f
            return
        with self.manager.perm_to_403(os_path):
            found = _open_parent(self.root(), os_path, READ)
            assert found is not None
            dir_fd, name, rel = found
            try:
                fd = open_in(dir_fd, name, rel, READ)
            finally:
                os.close(dir_fd)
            with os.fdopen(fd, *args, **kwargs) as f:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    _refuse(rel, f"{rel} is not a regular file", READ)
                yield f


def guard_contents(manager: Any) -> list[str]:
    """Put the link checks before ``manager``'s reads, renames, copies and deletes; returns what was guarded.

    A contents manager that is not jupyter_server's file manager is left as it is.
    """
    from jupyter_server.services.contents.fileio import FileManagerMixin

    if not isinstance(manager, FileManagerMixin):
        return []
    paths = _Paths(manager)
    manager.open = paths.open  # type: ignore[method-assign]
    done = ["reads"]
    for name in ("get", "rename_file", "copy", "delete_file"):
        orig = getattr(manager, name, None)
        if orig is not None:
            setattr(manager, name, _guarded(orig, getattr(paths, name)))
            done.append({"get": "gets", "rename_file": "renames", "copy": "copies", "delete_file": "deletes"}[name])
    return done


def guard_files(serverapp: Any) -> bool:
    """Serve ``/files/`` through the guarded contents manager (``cm.get``, hence the reader above).

    jupyter_server's default for a file contents manager is a tornado ``StaticFileHandler``:
    it refuses only a link whose resolved target leaves the root, and opens the path
    string after checking it. Its handlers are built before extensions load, so the
    handler is added here (``add_handlers`` rules are matched before the server's own).
    """
    from jupyter_server.files.handlers import FilesHandler
    from jupyter_server.services.contents.fileio import FileManagerMixin
    from jupyter_server.utils import url_path_join

    manager: Any = serverapp.contents_manager
    if not isinstance(serverapp.contents_manager, FileManagerMixin):
        return False
    manager.files_handler_class = FilesHandler
    manager.files_handler_params = {"path": str(manager.root_dir)}
    pattern = url_path_join(serverapp.base_url, r"/files/(.*)")
    serverapp.web_app.add_handlers(".*$", [(pattern, FilesHandler, {"path": str(manager.root_dir)})])
    return True


__all__ = ["check_path", "check_tree", "guard_contents", "guard_files", "held", "lstat_in", "open_in"]
