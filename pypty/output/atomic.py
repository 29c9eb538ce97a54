"""Atomic file writes: bytes, ``.npy`` arrays, JSON, and a temporary path for other writers (HDF5).

Every file is written to a temporary name in the same folder and then moved
over the target with :func:`os.replace`, which is atomic on POSIX and
Windows: a crash or kill at any moment leaves either the previous complete
file or the new complete file, never a truncated one.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_path", "save_npy_atomic", "write_json_atomic", "remove_stale_temporaries"]

def _atomic(path: str, write):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def atomic_path(path: str):
    """Yield a temporary path next to ``path``; on success fsync it and move it over ``path``.

    For writers that need a file name rather than a file object (e.g.
    ``h5py.File(tmp, "w")``): the writer must have closed the file when the
    ``with`` block ends.  On an exception (or KeyboardInterrupt) the
    temporary file is removed and ``path`` is untouched.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, then rename)."""
    _atomic(path, lambda fh: fh.write(data))


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
    _atomic(path, lambda fh: np.save(fh, arr, allow_pickle=False))


def write_json_atomic(path: str, obj) -> None:
    """Write a JSON-serialisable object atomically, indented."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


def remove_stale_temporaries(folder: str) -> list:
    """Delete temporary files left in ``folder`` by atomic writes that were killed mid-write.

    Only names of the form ``.<file>.<random>.tmp`` (the pattern of this
    module's writers) directly inside ``folder`` are removed; call it before a
    run starts writing there (pypty refuses two runs in one folder).

    Returns the removed file names.
    """
    removed = []
    if not folder or not os.path.isdir(folder):
        return removed
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3 and os.path.isfile(path):
            os.unlink(path)
            removed.append(name)
    return removed
