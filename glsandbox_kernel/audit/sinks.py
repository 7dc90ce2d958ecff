"""Where sealed audit records go: a JSONL file, the logging module, memory (host side).

:class:`~glsandbox_kernel.audit.log.AuditLog` calls ``write(record)`` on every
sink after sealing a record; sinks run on the trusted host and never see the
worker. A sink must not mutate the record it is given.

:class:`JsonlFileSink` is the durable one: append-only, one exclusive
``flock`` per record, ``fsync`` after every line, so a crash of the host or
of the worker loses nothing written before it. When it is an audit log's
first sink it also holds the hash chain: :meth:`JsonlFileSink.append_chained`
reads the file's tail and appends under the same lock, so several processes
appending to one file extend one chain instead of forking it.
"""

from __future__ import annotations

import abc
import errno
import fcntl
import json
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from .records import GENESIS_HASH, canonical_json

logger = logging.getLogger(__name__)

_TAIL_CHUNK = 64 * 1024

#: ``seal(next_seq, prev_hash) -> (record, line)``; see :meth:`JsonlFileSink.append_chained`.
SealFunction = Callable[[int, str], tuple[dict[str, Any], bytes]]
#: ``seal(body, next_seq, prev_hash) -> (record, line)``; see :meth:`JsonlFileSink.append_batch`.
BatchSeal = Callable[[Any, int, str], tuple[dict[str, Any], bytes]]


@runtime_checkable
class AuditSink(Protocol):
    """What :class:`AuditLog` writes sealed records to (host side)."""

    def write(self, record: dict[str, Any]) -> None:
        """Store one sealed record. Called by ``AuditLog.emit``; must not mutate it."""

    def close(self) -> None:
        """Release resources. Called by ``AuditLog.close``; must be idempotent."""


class ClosesOnExit(abc.ABC):
    """``with x:`` closes ``x`` at the end (the file sink, the audit log); subclasses define ``close``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the object holds (idempotent)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class JsonlFileSink(ClosesOnExit):
    """Append-only JSON Lines file, fsync'd per record (host side).

    The file (and its parent directory, if missing) is created with mode
    ``0o600`` and opened with ``O_APPEND``. Every write takes an exclusive
    ``fcntl.flock`` for the duration of write + ``fsync``; other processes
    using this class on the same path serialise on it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_NOFOLLOW, O_NONBLOCK and the check below: the file may sit in a folder a sandbox
        # writes, which could have put a symlink (to a file of the host's) or a FIFO at its name.
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            self._fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            try:
                self._fd = os.open(self.path, flags)
            except OSError as exc:
                raise OSError(
                    exc.errno, f"cannot append to the audit log: {exc.strerror} (a symlink?)", str(path)
                ) from exc
            if not stat.S_ISREG(os.fstat(self._fd).st_mode):
                os.close(self._fd)
                raise OSError(errno.EINVAL, "the audit log is not a regular file", str(path)) from None
        else:
            _fsync_dir(self.path.parent)
        os.set_blocking(self._fd, True)
        self._mutex = threading.RLock()
        # Size of the file right after our last locked read or append, and the
        # chain tail (next seq, prev hash) it held then; None = unknown.
        self._known_size: int | None = None
        self._tail: tuple[int, str] | None = None
        self._unterminated = False  # the file ends in an unfinished line

    # -- chain support (used by AuditLog when this is its first sink) -------

    def tail(self) -> tuple[int, str]:
        """``(next_seq, prev_hash)`` continuing the chain already in the file.

        Called by ``AuditLog.__init__``. ``(0, GENESIS_HASH)`` for an empty file.
        Raises ``ValueError`` if the file holds lines that are not audit records.
        """
        with self._locked():
            next_seq, prev_hash, _ = self._current_tail()
            return next_seq, prev_hash

    def append_chained(self, seal: SealFunction) -> tuple[dict[str, Any], bytes]:
        """Read the tail, seal the next record and append it (fsync'd), all under the lock."""
        return self.append_batch([None], lambda _body, seq, prev: seal(seq, prev), sync=True)[0]

    def append_batch(self, bodies: list[Any], seal: BatchSeal, *, sync: bool) -> list[tuple[dict[str, Any], bytes]]:
        """Seal ``bodies`` in order onto the file's chain and append them in one write, under the lock.

        Called by ``AuditLog`` (group commit). ``seal(body, seq, prev_hash)``
        returns the sealed record and its line (ending in ``\\n``); the tail is
        re-read only when the file size differs from what this sink last saw,
        i.e. when another writer appended in between. ``sync``: fsync now;
        otherwise the records are written (a SIGKILL of this process loses
        nothing) and :meth:`sync` makes them durable later.
        """
        with self._locked():
            next_seq, prev_hash, needs_newline = self._current_tail()
            sealed = []
            for body in bodies:
                record, line = seal(body, next_seq, prev_hash)
                next_seq, prev_hash = int(record["seq"]) + 1, str(record["record_hash"])
                sealed.append((record, line))
            data = b"".join(line for _, line in sealed)
            self._append(b"\n" + data if needs_newline else data, sync=sync)
            self._tail = (next_seq, prev_hash)
            return sealed

    def sync(self) -> None:
        """fsync what was appended without it (group commit: one fsync for the batch)."""
        with self._mutex:
            if self._fd >= 0:
                os.fsync(self._fd)

    # -- AuditSink -----------------------------------------------------------

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line and fsync (mirror use, no chain logic)."""
        line = canonical_json(record) + b"\n"
        with self._locked():
            before = os.fstat(self._fd).st_size
            in_sync = before == self._known_size
            if not in_sync and before and os.pread(self._fd, 1, before - 1) != b"\n":
                line = b"\n" + line  # terminate a line left unfinished by a crash
            self._known_size = before
            self._append(line)
            seq, record_hash = record.get("seq"), record.get("record_hash")
            if in_sync and isinstance(seq, int) and isinstance(record_hash, str):
                self._tail = (seq + 1, record_hash)
            else:
                self._known_size = None
                self._tail = None

    def close(self) -> None:
        """Close the file descriptor; idempotent."""
        with self._mutex:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __repr__(self) -> str:
        return f"JsonlFileSink({str(self.path)!r})"

    # -- internals (all called with the lock held) ---------------------------

    def _locked(self) -> _FileLock:
        if self._fd < 0:
            raise ValueError(f"audit sink for {self.path} is closed")
        return _FileLock(self._fd, self._mutex)

    def _append(self, data: bytes, *, sync: bool = True) -> None:
        view = memoryview(data)
        size = self._known_size
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if sync:
            os.fsync(self._fd)
        # O_APPEND under the flock: the file grew by exactly our bytes when we knew its size
        self._known_size = size + len(data) if size is not None else os.fstat(self._fd).st_size
        self._unterminated = False

    def _current_tail(self) -> tuple[int, str, bool]:
        """``(next_seq, prev_hash, needs_newline)``, re-read if the file changed."""
        size = os.fstat(self._fd).st_size
        if self._tail is not None and size == self._known_size:
            return self._tail[0], self._tail[1], self._unterminated
        next_seq, prev_hash, needs_newline = self._read_tail(size)
        self._known_size = size
        self._tail = (next_seq, prev_hash)
        self._unterminated = needs_newline
        return next_seq, prev_hash, needs_newline

    def _read_tail(self, size: int) -> tuple[int, str, bool]:
        if size == 0:
            return 0, GENESIS_HASH, False
        last = os.pread(self._fd, 1, size - 1)
        needs_newline = last != b"\n"
        skipped = 0
        for lineno_from_end, raw in enumerate(self._lines_backwards(size), start=1):
            if lineno_from_end == 1 and needs_newline:
                continue  # an unfinished line left by a crash mid-write
            if not raw.strip():
                skipped += 1
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                skipped += 1
                continue
            seq = obj.get("seq") if isinstance(obj, dict) else None
            record_hash = obj.get("record_hash") if isinstance(obj, dict) else None
            if not isinstance(seq, int) or not isinstance(record_hash, str):
                raise _not_an_audit_log(
                    self.path,
                    "its last record has no integer 'seq' and string 'record_hash'",
                )
            if skipped or needs_newline:
                logger.warning(
                    "audit log %s ends with %d damaged line(s); continuing the chain "
                    "after seq %d (verification will report the damage)",
                    self.path,
                    skipped + needs_newline,
                    seq,
                )
            return seq + 1, record_hash, needs_newline
        if skipped:
            raise _not_an_audit_log(self.path, "no line is JSON")
        return 0, GENESIS_HASH, needs_newline

    def _lines_backwards(self, size: int) -> Iterator[bytes]:
        """The file's lines, last first, read in chunks from the end."""
        end = size
        if os.pread(self._fd, 1, size - 1) == b"\n":
            end -= 1
        pending = b""
        pos = end
        while pos > 0:
            start = max(0, pos - _TAIL_CHUNK)
            pending = os.pread(self._fd, pos - start, start) + pending
            pos = start
            parts = pending.split(b"\n")
            pending = parts[0]
            yield from reversed(parts[1:])
        yield pending


def _not_an_audit_log(path: Path, why: str) -> ValueError:
    return ValueError(f"{path} is not a glsandbox audit log: {why}")


class _FileLock:
    """Thread mutex + exclusive ``flock`` on one fd, as a context manager."""

    def __init__(self, fd: int, mutex: threading.RLock) -> None:
        self._fd = fd
        self._mutex = mutex

    def __enter__(self) -> None:
        self._mutex.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._mutex.release()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()


def _fsync_dir(directory: Path) -> None:
    """Make a newly created file's directory entry durable (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems refuse fsync on directories
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


class LoggingSink:
    """One INFO line per record on ``logger_name`` (host side)."""

    def __init__(self, logger_name: str = "glsandbox.audit") -> None:
        self.logger = logging.getLogger(logger_name)

    def write(self, record: dict[str, Any]) -> None:
        """Log event type, seq, session prefix, isolation and provenance prefix."""
        if not self.logger.isEnabledFor(logging.INFO):
            return
        violations = record.get("violations") or []
        self.logger.info(
            "audit %s seq=%s session=%s isolation=%s level=%s provenance=%s violations=%d",
            record.get("event_type"),
            record.get("seq"),
            str(record.get("session_id") or "-")[:8],
            record.get("isolation_type"),
            record.get("security_level"),
            str(record.get("provenance_hash") or "-")[:12],
            len(violations) if isinstance(violations, list) else 0,
        )

    def close(self) -> None:
        """Nothing to release."""


class MemorySink:
    """Keeps copies of the records in ``records`` (host side; tests, notebooks).

    Given the sealed line (:func:`write_all`), it keeps the bytes and decodes
    them when ``records`` is read: no copy on the caller's path. The lines
    stay readable as written (:meth:`lines`; the Dask plugin ships them).
    """

    def __init__(self) -> None:
        self._records: list[dict[str, Any]] = []
        self._lines: list[bytes] = []

    @property
    def records(self) -> list[dict[str, Any]]:
        """Independent copies of every record written, oldest first."""
        done = len(self._records)
        if len(self._lines) > done:
            self._records.extend(json.loads(line) for line in self._lines[done:])
        return self._records

    def lines(self, start: int = 0) -> list[bytes]:
        """The sealed lines from the ``start``-th record on, as written (JSON, newline-terminated)."""
        return self._lines[start:]

    def write(self, record: dict[str, Any]) -> None:
        """Append an independent copy of ``record``."""
        self.write_line(record, canonical_json(record))

    def write_line(self, record: dict[str, Any], line: bytes) -> None:
        """Keep ``line``, the sealed encoding of ``record`` (decoded when read)."""
        self._lines.append(line)

    def close(self) -> None:
        """Nothing to release; the records stay readable."""


def write_all(sinks: Sequence[AuditSink], record: dict[str, Any], line: bytes | None = None) -> None:
    """Write ``record`` to every sink (``write_line`` where a sink has it and the line is known).

    A failing sink is logged; the others are still written, then the first error is raised.
    """
    first_error: BaseException | None = None
    for sink in sinks:
        try:
            write_line = getattr(sink, "write_line", None) if line is not None else None
            if write_line is not None:
                write_line(record, line)
            else:
                sink.write(record)
        except Exception as exc:
            logger.exception("audit sink %r failed to write seq %s", sink, record.get("seq"))
            first_error = first_error or exc
    if first_error is not None:
        raise first_error


def close_all(sinks: Sequence[AuditSink]) -> None:
    """Close every sink; a failing one is logged, the first error raised after the rest closed."""
    first_error: BaseException | None = None
    for sink in sinks:
        try:
            sink.close()
        except Exception as exc:
            logger.exception("audit sink %r failed to close", sink)
            first_error = first_error or exc
    if first_error is not None:
        raise first_error
