"""Atomic file writes: bytes, ``.npy`` arrays, JSON, and streams for other writers (HDF5).

Every file is written to a temporary name in the same folder and then moved
over the target with :func:`os.replace`, which is atomic on POSIX and
Windows: a crash or kill at any moment leaves either the previous complete
file or the new complete file, never a truncated one.

Temporary names are ``.<file>.<pid>-<host>.<random>.tmp``: they carry the
writer's process id and host, so :func:`remove_stale_temporaries` removes only
temporaries whose writer is gone and never those of a live run.

Files are created with mode ``0o666`` less the process umask (what
:func:`open` gives), so every output file of a run has the same mode.

A write that fails (full disk, exceeded quota, I/O error) raises
:class:`OutputWriteError`, an :class:`OSError` naming the file; the previous
file is untouched and the temporary is removed.  :func:`atomic_stream` serves
writers that take a file object and must not see the error themselves: HDF5
crashes (segmentation fault in its close) when a write fails under it, so the
stream records the first error, accepts the rest silently and raises once the
writer is done.
"""
from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import socket
import time
from contextlib import contextmanager

import numpy as np

__all__ = ["OutputWriteError", "atomic_write_bytes", "atomic_path", "atomic_stream", "save_npy_atomic",
           "write_json_atomic", "remove_stale_temporaries", "check_free_space", "host_tag", "pid_alive",
           "process_start", "STALE_AFTER_S"]

#: Temporaries that do not name a live writer on this host (another host, an older pypty) are removed only when
#: untouched for this long (s).
STALE_AFTER_S = 3600.0
_TMP = re.compile(r"^\.(?P<base>.+)\.(?P<pid>\d+)-(?P<host>[A-Za-z0-9-]*)\.(?P<token>[0-9a-f]{8})\.tmp$")
_LEGACY_TMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # tempfile.mkstemp names of pypty <= the claim change


class OutputWriteError(OSError):
    """An output file could not be written (full disk, quota, I/O error); the previous file is intact.

    ``errno`` is that of the failure, ``filename`` the file that was to be
    written; the message names the file and says that nothing was replaced.
    """

    def __init__(self, path, code, reason):
        super().__init__(code, reason, path)
        self.message = (f"cannot write '{path}': {reason}; nothing was replaced (the previous file, if any, is "
                        f"intact) and no temporary file was left")

    def __str__(self):
        return self.message

    def __reduce__(self):
        return type(self), (self.filename, self.errno, self.strerror)


def _write_error(path, exc) -> OutputWriteError:
    if isinstance(exc, OutputWriteError):
        return exc
    code = getattr(exc, "errno", None) or errno.EIO
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return OutputWriteError(path, code, reason)


def host_tag() -> str:
    """This host's name as it appears in temporary names and folder claims (letters, digits and '-')."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def process_start(pid: int):
    """Start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), or None where unknown."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int, start=None) -> bool:
    """True when process ``pid`` runs on this host (and, when ``start`` is given and known, started then)."""
    pid = int(pid)
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    if os.name == "nt":
        return True  # os.kill would terminate the process there: cannot tell, assume alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    except OSError:
        return True  # cannot tell: assume alive
    if start is not None:
        now = process_start(pid)
        if now is not None and now != start:
            return False  # the id was reused by a later process
    return True


def check_free_space(path: str, nbytes: int) -> None:
    """Raise :class:`OutputWriteError` (ENOSPC) when the filesystem of ``path`` has less than ``nbytes`` free.

    Quotas are not seen here; a write that exceeds one still fails cleanly
    (see the module docstring).
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if nbytes > free:
        raise OutputWriteError(path, errno.ENOSPC, f"No space left on device (about {_size(nbytes)} needed, "
                                                   f"{_size(free)} free)")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def _create_tmp(path: str):
    """Create a new temporary next to ``path`` (mode 0o666 less the umask); returns (fd, tmp path)."""
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f".{base}.{os.getpid()}-{host_tag()}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise _write_error(path, exc) from exc
    raise OutputWriteError(path, errno.EEXIST, "no free temporary name")


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def _fsync_dir(folder: str) -> None:
    """Make a rename durable (POSIX); silently skipped where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic(path: str, write, nbytes: int = 0):
    check_free_space(path, nbytes)
    fd, tmp = _create_tmp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        _discard(tmp)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from exc
        raise
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


@contextmanager
def atomic_path(path: str):
    """Yield a temporary path next to ``path``; on success fsync it and move it over ``path``.

    For writers that need a file name rather than a file object: the writer
    must have closed the file when the ``with`` block ends.  On an exception
    (or KeyboardInterrupt) the temporary file is removed and ``path`` is
    untouched.  HDF5 must not write through a path (a failing write crashes
    its close): use :func:`atomic_stream`.
    """
    fd, tmp = _create_tmp(path)
    os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        _discard(tmp)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from exc
        raise


class _GuardedFile:
    """Seekable binary file object for writers that must never see a write error (see :func:`atomic_stream`).

    The first failing write, truncate or flush is recorded in ``error``; from
    then on writes only advance the position (reads of what was not written
    give zeros), so the writer finishes and closes normally.
    """

    def __init__(self, fd):
        self._fd = fd
        self._fh = os.fdopen(fd, "r+b", buffering=0)
        self.error = None
        self._pos = 0
        self._size = 0

    # the methods HDF5's file-object driver calls
    def seek(self, offset, whence=0):
        if whence == 0:
            self._pos = int(offset)
        elif whence == 1:
            self._pos += int(offset)
        else:
            self._pos = self._size + int(offset)
        return self._pos

    def tell(self):
        return self._pos

    def write(self, data):
        view = memoryview(data).cast("B")
        n = len(view)
        if self.error is None and self._fh is not None:
            try:
                self._fh.seek(self._pos)
                while len(view):
                    k = self._fh.write(view)
                    if not k:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    view = view[k:]
            except OSError as exc:
                self.error = exc
        self._pos += n
        self._size = max(self._size, self._pos)
        return n

    def readinto(self, buf):
        view = memoryview(buf).cast("B")
        want = min(len(view), max(0, self._size - self._pos))
        got = 0
        if self.error is None and self._fh is not None:
            try:
                self._fh.seek(self._pos)
                got = self._fh.readinto(view[:want]) or 0
            except OSError as exc:
                self.error = exc
                got = 0
        if got < want:
            view[got:want] = bytes(want - got)
        self._pos += want
        return want

    def read(self, size=-1):
        size = max(0, self._size - self._pos) if size is None or size < 0 else size
        buf = bytearray(size)
        n = self.readinto(buf)
        return bytes(buf[:n])

    def truncate(self, size=None):
        size = self._pos if size is None else int(size)
        if self.error is None and self._fh is not None:
            try:
                self._fh.truncate(size)
            except OSError as exc:
                self.error = exc
        self._size = size
        return size

    def flush(self):
        if self.error is None and self._fh is not None:
            try:
                self._fh.flush()
            except OSError as exc:
                self.error = exc

    def readable(self):
        return True

    def writable(self):
        return True

    def seekable(self):
        return True

    # used by atomic_stream
    def _finish(self):
        """fsync and close; raises the recorded (or a new) error."""
        if self.error is not None:
            raise self.error
        try:
            os.fsync(self._fh.fileno())
        finally:
            self._close()

    def _close(self):
        if self._fh is not None:
            fh, self._fh = self._fh, None
            try:
                fh.close()
            except OSError as exc:
                if self.error is None:
                    self.error = exc


@contextmanager
def atomic_stream(path: str, expected_bytes: int = 0):
    """Yield a seekable binary file object writing a temporary next to ``path``; on success move it over ``path``.

    The object never raises on a failed write (see :class:`_GuardedFile`):
    the error is raised as :class:`OutputWriteError` after the ``with`` block,
    once the writer (e.g. ``h5py.File(fh, "w")``) has closed; the temporary is
    then removed and ``path`` is untouched.  ``expected_bytes``: the size
    checked against the free space before anything is written.
    """
    check_free_space(path, expected_bytes)
    fd, tmp = _create_tmp(path)
    fh = _GuardedFile(fd)
    try:
        yield fh
        fh._finish()
        if fh.error is not None:
            raise fh.error
        os.replace(tmp, path)
    except BaseException as exc:
        fh._close()
        _discard(tmp)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        if fh.error is not None:  # the writer may have failed because of it (e.g. HDF5 reading back zeros)
            raise _write_error(path, fh.error) from fh.error
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from exc
        raise
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, then rename)."""
    _atomic(path, lambda fh: fh.write(data), len(data))


def save_npy_atomic(path: str, array) -> None:
    """Save a NumPy array as ``.npy`` atomically.

    Parameters
    ----------
    path : str
        Target file (should end in ``.npy``; no suffix is added).
    array : array_like
        Saved with :func:`numpy.save` (``allow_pickle=False``).
    """
    arr = np.asarray(array)
    _atomic(path, lambda fh: np.save(fh, arr, allow_pickle=False), arr.nbytes + 4096)


def write_json_atomic(path: str, obj) -> None:
    """Write a JSON-serialisable object atomically, indented."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


def _writer_gone(name: str, path: str, now: float) -> bool:
    m = _TMP.match(name)
    if m is not None and m.group("host") == host_tag():
        return not pid_alive(int(m.group("pid")))
    if m is None and not _LEGACY_TMP.match(name):
        return False  # not a temporary of these writers
    try:  # another host, or an older pypty: gone when untouched for a long time
        return now - os.stat(path).st_mtime > STALE_AFTER_S
    except OSError:
        return False


def remove_stale_temporaries(folder: str, depth: int = 2) -> list:
    """Delete temporary files left in ``folder`` by atomic writes whose writer is gone.

    Only names of the form of this module's temporaries are considered
    (``.<file>.<pid>-<host>.<random>.tmp``): those of a process on this host
    that no longer runs are removed; those of a live process (another run
    writing there, or this one) are kept; those of another host, or unnamed
    ones of older pypty versions, are removed when untouched for
    :data:`STALE_AFTER_S`.  Subfolders (``figures``, ``tiff``,
    ``checkpoints/epoch_NNNN``) are searched down to ``depth`` levels.

    Returns the removed paths, relative to ``folder``.
    """
    removed = []
    if not folder or not os.path.isdir(folder):
        return removed
    now = time.time()
    for root, dirs, files in os.walk(folder):
        rel = os.path.relpath(root, folder)
        level = 0 if rel == "." else rel.count(os.sep) + 1
        if level >= depth:
            dirs[:] = []
        for name in files:
            if not (name.startswith(".") and name.endswith(".tmp")):
                continue
            path = os.path.join(root, name)
            if os.path.isfile(path) and _writer_gone(name, path, now):
                try:
                    os.unlink(path)
                except OSError:
                    continue
                removed.append(os.path.normpath(os.path.join(rel, name)))
    return removed
