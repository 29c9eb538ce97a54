"""Loading and on-the-fly preprocessing of 4D-STEM diffraction data.

A :class:`PatternSource` wraps the measured patterns (an array, a ``.npy``
file or the ``data`` dataset of an ``.h5`` file) and hands out preprocessed
batches.  Preprocessing order, applied per pattern (units: detector px):

1. ``data_bin``: sum over ``bin x bin`` blocks (the detector size must be
   divisible by ``bin``);
2. ``flip_ky``: ky -> -ky about the zero-frequency row K//2 (for odd K a plain
   reversal of the rows; for even K row 0, the Nyquist row, stays in place);
3. ``data_shift_vector`` (dy, dx): shift the patterns by that many px (linear
   interpolation for fractional values, zeros shifted in);
4. ``data_pad``: ``pad`` zero pixels on every side;
5. ``data_multiplier``: multiply the counts.

Patterns are stored with zero frequency at pixel (K//2, K//2) (as
``fftshift`` puts it); batches are returned in FFT order (zero frequency at
[0, 0]) to match the model without per-evaluation shifts.

Preprocessing runs once per source (per run): the first request builds a
preprocessed host copy of all patterns (in memory, or in a temporary file
when it would take more than :data:`pypty.data.memory.HOST_COPY_FRACTION` of
the available host memory), and every batch is then a row gather from it.
``preprocess`` works pattern by pattern, so the copy holds the same bits as
preprocessing each batch on the fly (as earlier versions did).  In a
distributed run (:mod:`pypty.distributed`) a rank's source holds only its
shard of the patterns (``PatternSource(rows=(start, stop))``): it checks,
preprocesses and keeps only those rows; indices stay global.

Opening checks only the header first (rank, dtype, the number of patterns
against ``positions``, the preprocessed pattern's size, the caller's size
checks), then scans the values once (NaN/inf, negative counts, whether an
integer ``force_dataset_dtype`` holds them exactly).  An HDF5 ``data``
dataset kept in other files (external link, external storage, virtual
dataset) is refused unless ``allow_external_hdf5`` (:func:`hdf5_dataset`).
Every error is a :class:`DataError` (or, for a parameter that does not fit
the data, a ``PyptyParameterError``) naming ``data_path`` or the parameter.

:class:`DeviceBatches` is the run's ``get_data``: batches on the compute
device, from the whole dataset kept there (``load_one_by_one=False`` on a
GPU, when it fits) or streamed from the host copy through pinned buffers,
the next batch's copy overlapping the current batch's compute on a second
CUDA stream (CuPy).
"""
from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import scipy.ndimage

from . import memory as _memory

__all__ = ["DataError", "Preprocessing", "PatternSource", "SignalSource", "preprocess", "open_measurements",
           "hdf5_dataset", "DeviceBatches", "make_get_data"]

#: Bytes of patterns preprocessed at a time when the host copy is built.
BUILD_CHUNK_BYTES = 2 * 2**20  # small blocks: temporaries stay in cache and are reused (measured faster than 64 MiB)


class DataError(ValueError):
    """Raised for unusable diffraction data (rank, NaN/inf, negative counts, size)."""


@dataclass(frozen=True)
class Preprocessing:
    """On-the-fly preprocessing settings (see module docstring for the order)."""

    multiplier: float = 1.0
    pad: int = 0
    bin: int = 1
    flip_ky: bool = False
    shift: tuple = (0.0, 0.0)


def preprocess(patterns: np.ndarray, prep: Preprocessing, dtype=np.float64) -> np.ndarray:
    """Apply :class:`Preprocessing` to a stack of patterns.

    Parameters
    ----------
    patterns : ndarray, shape (B, Ky, Kx), any real dtype
        Zero frequency at (Ky//2, Kx//2).
    prep : Preprocessing
    dtype : float dtype of the result

    Returns
    -------
    ndarray, ``dtype``, shape (B, Ky/bin + 2 pad, Kx/bin + 2 pad), same centring.

    Raises
    ------
    DataError
        Detector size not divisible by ``bin``.
    """
    out = np.asarray(patterns, dtype=dtype)
    b = int(prep.bin)
    if b > 1:
        n, ky, kx = out.shape
        if ky % b or kx % b:
            raise DataError(f"data_bin={b} does not divide the detector size {ky}x{kx}")
        out = out.reshape(n, ky // b, b, kx // b, b).sum(axis=(2, 4))
    if prep.flip_ky:
        k = out.shape[1]
        out = out[:, (2 * (k // 2) - np.arange(k)) % k, :]
    dy, dx = (float(v) for v in prep.shift)
    if dy or dx:
        # "grid-constant": zeros beyond the frame take part in the interpolation
        # ("constant" would zero every output pixel whose source lies partly
        # outside, losing the counts of edge pixels shifted inwards)
        order = 0 if (float(dy).is_integer() and float(dx).is_integer()) else 1
        out = scipy.ndimage.shift(out, (0, dy, dx), order=order, mode="grid-constant", cval=0.0)
    p = int(prep.pad)
    if p:
        out = np.pad(out, ((0, 0), (p, p), (p, p)))
    if prep.multiplier != 1:
        out = out * prep.multiplier
    return np.ascontiguousarray(out, dtype=dtype)


def _link_to_other_file(h5, path, depth=0):
    """The first ``h5py.ExternalLink`` met while resolving ``path`` in ``h5`` (soft links followed), or None."""
    import h5py

    if depth > 32:
        raise DataError(f"{h5.filename!r}: more than 32 nested soft links while resolving {path!r}")
    cur = ""
    for part in (s for s in str(path).split("/") if s):
        full = cur + "/" + part
        link = h5.get(full, getlink=True)
        if link is None:
            return None
        if isinstance(link, h5py.ExternalLink):
            return link
        if isinstance(link, h5py.SoftLink):
            target = link.path if link.path.startswith("/") else (cur or "") + "/" + link.path
            ext = _link_to_other_file(h5, target, depth + 1)
            if ext is not None:
                return ext
        cur = full
    return None


def hdf5_dataset(h5, name, origin, what="data_path", allow_external=False, error=DataError):
    """The dataset ``name`` of the open HDF5 file ``h5``, refusing data kept in other files.

    HDF5 can make a dataset read other local files: an external link (also
    behind soft links), external raw storage (``dset.external``) or a
    virtual dataset whose sources lie in other files.  These are refused
    unless ``allow_external`` (the parameter ``allow_external_hdf5``) is
    True, before any such file is opened (links) or read (storage, virtual
    sources).

    Parameters
    ----------
    h5 : h5py.File
    name : str
        Path of the dataset inside the file.
    origin : str
        The file's path, for messages.
    what : str
        The parameter or argument that names the file (messages start with it).
    allow_external : bool
    error : exception class
        Raised for every problem (:class:`DataError` by default).

    Returns
    -------
    h5py.Dataset
    """
    import h5py

    hint = ("; pypty reads only data stored in the file itself unless allow_external_hdf5=True "
            "(or copy the data into the file)")
    try:
        if not allow_external:
            ext = _link_to_other_file(h5, name)
            if ext is not None:
                raise error(f"{what} {origin!r}: {name!r} leads through an external link to {ext.path!r} in "
                            f"the file {ext.filename!r}" + hint)
        obj = h5.get(name)
    except (OSError, KeyError, RuntimeError, ValueError) as exc:  # a broken link, an unreadable object header
        if isinstance(exc, error):
            raise
        raise error(f"{what} {origin!r}: cannot open {name!r}: {exc}") from exc
    if obj is None:
        found = []
        try:
            h5.visititems(lambda k, v: found.append(k) if isinstance(v, h5py.Dataset) else None)
        except (OSError, KeyError, RuntimeError):  # pragma: no cover - a damaged file: list what was found
            pass
        raise error(f"{what} {origin!r} has no dataset {name!r} (datasets found: {found[:20]}"
                    f"{' ...' if len(found) > 20 else ''})")
    if not isinstance(obj, h5py.Dataset):
        raise error(f"{what} {origin!r}: {name!r} is a {type(obj).__name__}, not a dataset")
    if allow_external:
        return obj
    if os.path.realpath(obj.file.filename) != os.path.realpath(h5.filename):  # any other route to another file
        raise error(f"{what} {origin!r}: {name!r} is stored in the file {obj.file.filename!r}" + hint)
    if obj.external:
        files = sorted({str(e[0]) for e in obj.external})
        raise error(f"{what} {origin!r}: dataset {name!r} keeps its values in external raw files {files}" + hint)
    if obj.is_virtual:
        files = sorted({str(v.file_name) for v in obj.virtual_sources() if str(v.file_name) != "."})
        if files:
            raise error(f"{what} {origin!r}: dataset {name!r} is a virtual dataset reading the files {files}"
                        + hint)
    return obj


def open_measurements(path: str, allow_external_hdf5: bool = False):
    """Open a measurement file: ``(array-like, h5py.File or None)``.

    ``.npy`` files are memory-mapped (no HDF5 handle); ``.h5``/``.hdf5``/``.hdf``
    files return their ``data`` dataset and the open file, which the caller
    must close.  Nothing but the header (the shape and dtype) is read here.

    Parameters
    ----------
    path : str
    allow_external_hdf5 : bool
        Accept a ``data`` dataset that reads other files (external link,
        external storage, virtual dataset with sources in other files); see
        :func:`hdf5_dataset`.

    Raises
    ------
    DataError
        Missing file, a folder, unreadable ``.npy``/HDF5, no ``data``
        dataset, data kept in other files, unknown extension; every message
        starts with ``data_path`` and the path.
    """
    if not os.path.exists(path):
        raise DataError(f"data_path {path!r} does not exist")
    if os.path.isdir(path):
        raise DataError(f"data_path {path!r} is a folder; give the .h5 or .npy file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False), None
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"data_path {path!r} is not a readable .npy file: {exc}") from exc
    if ext in (".h5", ".hdf5", ".hdf"):
        import h5py

        try:
            h5 = h5py.File(path, "r")
        except OSError as exc:
            raise DataError(f"data_path {path!r} is not a readable HDF5 file: {exc}") from exc
        try:
            return hdf5_dataset(h5, "data", path, "data_path", allow_external_hdf5), h5
        except BaseException:
            h5.close()
            raise
    raise DataError(f"data_path {path!r}: unsupported extension {ext!r}; use .h5/.hdf5 or .npy")


def _what(origin):
    """How messages name the data: ``data_path '<file>'`` or the ``dataset`` array."""
    return "the 'dataset' array" if origin == "array" else f"data_path {origin!r}"


def _param_error(name, msg):
    from ..parameters.errors import parameter_error  # imported late: pypty.parameters imports the model

    return parameter_error(name, msg)


def _declared_count(shape, rank):
    """Patterns (or signals) a dataset of ``shape`` declares: N of (N, ...) or scan_y * scan_x of a 4D stack."""
    if rank == 3 and len(shape) == 4:
        return int(shape[0]) * int(shape[1])
    if len(shape) == rank:
        return int(shape[0])
    return None  # wrong rank: refused by the rank check, with the shape


def _check_declared(raw, origin, expected_n, rank):
    """Compare the number of patterns the header declares with ``expected_n`` (rows of 'positions'), before reading."""
    if expected_n is None:
        return
    n = _declared_count(tuple(raw.shape), rank)
    if n is not None and n != int(expected_n):
        raise _param_error("positions", f"expected shape ({n}, 2) (one (y, x) per pattern), got ({int(expected_n)}, "
                                        f"2): {_what(origin)} declares {n} patterns (shape {tuple(raw.shape)}); "
                                        f"checked before any pattern is read")


def _check_pattern_size(det_shape, prep, dtype):
    """The preprocessed pattern shape (Y, X); refuses a ``data_bin`` that does not divide the detector and a
    pattern that would not fit in host memory (huge ``data_pad`` or detector)."""
    ky, kx = (int(v) for v in det_shape[-2:])
    b, pad = max(int(prep.bin), 1), int(prep.pad)
    if ky % b or kx % b:
        raise DataError(f"data_bin={b} does not divide the detector size {ky}x{kx}")
    shape = (ky // b + 2 * pad, kx // b + 2 * pad)
    need = 3 * shape[0] * shape[1] * max(8, np.dtype(dtype).itemsize)  # float64 work, the padded copy, the cast
    avail = _memory.host_memory_bytes()
    if need <= avail:
        return shape
    if pad and 3 * (ky // b) * (kx // b) * 8 <= avail:
        raise _param_error("data_pad", f"{pad} px make every preprocessed pattern {shape[0]} x {shape[1]} px; "
                                       f"preprocessing one takes about {need / 2**30:.3g} GiB, more than the "
                                       f"{avail / 2**30:.3g} GiB of available host memory")
    raise DataError(f"patterns of {ky} x {kx} px (after data_bin {b}: {shape[0]} x {shape[1]} px): preprocessing one "
                    f"takes about {need / 2**30:.3g} GiB, more than the {avail / 2**30:.3g} GiB of available "
                    f"host memory")


def _check_dtype_settings(dtype, prep):
    """An integer ``force_dataset_dtype`` holds exact counts only without a fractional scale or shift."""
    if dtype.kind not in "biu":
        return
    m = float(prep.multiplier)
    if not m.is_integer():
        raise _param_error("force_dataset_dtype", f"{dtype} cannot hold the counts scaled by data_multiplier {m:g} "
                                                  f"(not whole numbers; the cast would truncate them): use a float "
                                                  f"dtype such as float32, or None")
    if not all(float(v).is_integer() for v in prep.shift):
        raise _param_error("force_dataset_dtype", f"{dtype} cannot hold patterns shifted by data_shift_vector "
                                                  f"{tuple(float(v) for v in prep.shift)} (interpolated counts are "
                                                  f"not whole numbers; the cast would truncate them): use a float "
                                                  f"dtype such as float32, or None")


def _read_rows(raw, start, stop, origin):
    """``raw[start:stop]`` as an array; read errors name the file and the patterns."""
    try:
        return np.asarray(raw[start:stop])
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        stop = min(stop, int(raw.shape[0]))
        raise DataError(f"{_what(origin)}: cannot read patterns {start}..{stop - 1}: {exc}") from exc


class _DtypeFit:
    """Whether the data, after data_bin and data_multiplier, fit ``force_dataset_dtype`` exactly (fed chunk by chunk)."""

    def __init__(self, dtype, raw_dtype):
        self.dtype = np.dtype(dtype)
        self.integral = self.dtype.kind in "biu"
        self.need_whole = self.integral and np.dtype(raw_dtype).kind not in "biu"
        # ranges worth a look: integers, and float16 (65504); float32 holds 3e38
        self.active = self.integral or (self.dtype.kind == "f" and self.dtype.itemsize <= 2)
        self.vmax = 0.0
        self.n_frac = 0
        self.first_frac = None

    def add(self, block, start):
        if not self.active:
            return
        if block.size:
            self.vmax = max(self.vmax, float(np.max(block)))
        if self.need_whole:
            frac = block != np.floor(block)
            k = int(np.count_nonzero(frac))
            if k and self.first_frac is None:
                i = int(np.flatnonzero(frac.reshape(len(block), -1).any(axis=1))[0])
                self.first_frac = (start + i, float(block[i][frac[i]].ravel()[0]))
            self.n_frac += k

    def check(self, origin, prep):
        dt = self.dtype
        if not self.active:
            return
        if self.n_frac:
            i, v = self.first_frac
            raise DataError(f"force_dataset_dtype {dt}: {self.n_frac} values of {_what(origin)} are not whole numbers "
                            f"(the first in pattern {i}: {v!r}); the cast to an integer dtype would truncate them. "
                            f"Use a float dtype such as float32, or None, or round the data first")
        top = self.vmax * int(prep.bin) ** 2 * float(prep.multiplier)
        if dt.kind == "b":
            limit = 1
        elif self.integral:
            limit = int(np.iinfo(dt).max)
        elif dt.kind == "f":
            limit = float(np.finfo(dt).max)
        else:
            return
        if top > limit:
            raise DataError(f"force_dataset_dtype {dt}: {_what(origin)} reaches {self.vmax:g} counts per pixel "
                            f"({top:g} after data_bin {int(prep.bin)} and data_multiplier {float(prep.multiplier):g}), "
                            f"more than {dt} holds ({limit:g}); the values would "
                            f"{'wrap around' if self.integral else 'become inf'}. Use a wider dtype or None")


class _Source:
    """Common part of the sources: the HDF5 handle and its closing."""

    _h5 = None

    def close(self):
        """Close the underlying HDF5 file, if any."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None


class PatternSource(_Source):
    """Measured diffraction patterns with validation and batched access.

    Parameters
    ----------
    data_path : str
        ``.h5``/``.hdf5`` (dataset ``data`` of shape (N, Ky, Kx)) or ``.npy``
        (3D (N, Ky, Kx) or 4D (scan_y, scan_x, Ky, Kx)).  Ignored if
        ``dataset`` is given.
    dataset : ndarray or None
        Patterns in memory, 3D or 4D as above (never modified).
    prep : Preprocessing
    dtype : float dtype for the returned batches
    load_one_by_one : bool
        True: the preprocessed host copy is built at the first request
        (:meth:`batch`, :meth:`mean_pattern`, ...).  False: it is built now.
        Either way the patterns are preprocessed once; on a GPU the flag
        decides whether the whole dataset is also held in device memory
        (see :func:`make_get_data`).
    scan_size : (int, int) or None
        If given, must satisfy scan_y * scan_x == N.
    check_chunk : int
        Patterns per chunk when scanning the data for NaN/inf/negative values.
    host_copy : {"auto", "memory", "file"}
        Where the preprocessed copy lives: "auto" keeps it in memory when it
        takes at most :data:`pypty.data.memory.HOST_COPY_FRACTION` of the
        available host memory, else in a temporary ``.npy`` file (unlinked at
        once, memory-mapped; its disk space is freed with the source).
    tmp_dir : str or None
        Folder of that file (None: the system's temporary folder).
    expected_n : int or None
        Number of patterns the caller expects (the rows of ``positions``);
        checked against the declared shape before any pattern is read.
    allow_external_hdf5 : bool
        Accept an HDF5 ``data`` dataset kept in other files (see
        :func:`hdf5_dataset`).
    check_header : callable or None
        ``check_header(n, pattern_shape)`` (patterns, preprocessed (Y, X)),
        called once the header is checked and before any pattern is read:
        the caller's size checks (:func:`pypty.model.limits.check_sizes`).
    rows : (int, int) or None
        ``(start, stop)``: hold only the patterns ``start <= i < stop`` (the
        shard of one rank of a distributed run, :mod:`pypty.distributed`):
        only they are scanned for bad values, preprocessed and kept in the
        host copy; indices stay global (``batch(idx)`` takes indices into
        all N patterns).  A request for patterns outside the shard (e.g. the
        patterns figure of rank 0) reads and preprocesses them on the fly
        (counted in :attr:`foreign_reads`).  None: all patterns.

    Attributes
    ----------
    n : int
        Number of patterns in the data (all of them, also with ``rows``).
    row_offset, n_local : int
        First held pattern and number of held patterns (0 and N without ``rows``).
    foreign_reads : int
        Patterns read on the fly from outside ``rows``.
    preprocessed_rows : int
        Patterns passed through :func:`preprocess` so far (N once the copy
        is built, plus the one pattern that sizes the output at construction).
    copy_location : str or None
        "memory" or "file" once the copy is built.

    Raises
    ------
    DataError
        Missing file, wrong rank, empty data, NaN/inf, negative counts
        (with their number), scan size mismatch, no data given, values an
        integer (or float16) ``dtype`` cannot hold exactly (not whole
        numbers, or larger than its range after ``data_bin`` and
        ``data_multiplier``), a file that cannot be read.
    PyptyParameterError
        ``expected_n`` differs from the declared number of patterns
        (parameter 'positions'); one preprocessed pattern would not fit in
        memory (parameter 'data_pad'); an integer ``dtype`` with a
        fractional ``data_multiplier`` or ``data_shift_vector`` (parameter
        'force_dataset_dtype').
    """

    def __init__(self, data_path="", dataset=None, prep=Preprocessing(), dtype=np.float64,
                 load_one_by_one=True, scan_size=None, check_chunk=256, host_copy="auto", tmp_dir=None,
                 expected_n=None, allow_external_hdf5=False, check_header=None, rows=None):
        if host_copy not in ("auto", "memory", "file"):
            raise ValueError(f"host_copy must be 'auto', 'memory' or 'file', got {host_copy!r}")
        self.prep = prep
        self.dtype = np.dtype(dtype)
        self._host_copy = host_copy
        self._tmp_dir = tmp_dir
        self.preprocessed_rows = 0
        self.copy_location = None
        self._check_header = check_header
        self._rows = None if rows is None else (int(rows[0]), int(rows[1]))
        self.foreign_reads = 0
        if dataset is not None:
            raw = np.asarray(dataset)
            self.origin = "array"
        elif data_path:
            raw, self._h5 = open_measurements(str(data_path), allow_external_hdf5)
            self.origin = str(data_path)
        else:
            raise DataError("no data: set 'data_path' (an .h5 or .npy file) or 'dataset' (an array)")
        try:
            _check_declared(raw, self.origin, expected_n, 3)
            self._init_checked(raw, scan_size, check_chunk, load_one_by_one)
        except BaseException:
            self.close()  # do not leave the HDF5 file open behind an error
            raise

    def _init_checked(self, raw, scan_size, check_chunk, load_one_by_one):
        prep = self.prep
        if raw.ndim == 4:
            if scan_size is not None and tuple(scan_size) != tuple(raw.shape[:2]):
                raise DataError(f"scan_size {tuple(scan_size)} does not match the 4D data's scan shape "
                                f"{tuple(raw.shape[:2])}")
            scan_size = tuple(raw.shape[:2])
            if not isinstance(raw, np.ndarray):
                raise DataError(f"the 'data' dataset of {self.origin!r} must be 3D (N, ky, kx), got shape "
                                f"{tuple(raw.shape)}")
            raw = raw.reshape((-1,) + raw.shape[2:])
        if raw.ndim != 3:
            raise DataError(f"diffraction data ({_what(self.origin)}) must be 3D (N, ky, kx) or 4D "
                            f"(scan_y, scan_x, ky, kx); "
                            f"got shape {tuple(raw.shape)}")
        if not (np.issubdtype(raw.dtype, np.number) and not np.issubdtype(raw.dtype, np.complexfloating)):
            raise DataError(f"diffraction data ({_what(self.origin)}) must be real numbers, got dtype {raw.dtype}")
        if min(raw.shape) < 1:
            raise DataError(f"{_what(self.origin)} holds no patterns: shape {tuple(raw.shape)}")
        self.n = int(raw.shape[0])
        if scan_size is not None and int(scan_size[0]) * int(scan_size[1]) != self.n:
            raise DataError(f"scan_size {tuple(scan_size)} gives {int(scan_size[0]) * int(scan_size[1])} "
                            f"positions but the data holds {self.n} patterns")
        self.scan_size = None if scan_size is None else (int(scan_size[0]), int(scan_size[1]))
        self.raw = raw
        start, stop = (0, self.n) if self._rows is None else self._rows
        if not 0 <= start <= stop <= self.n:
            raise ValueError(f"rows {self._rows} is not a range of the {self.n} patterns")
        self.row_offset, self.n_local = start, stop - start
        shape = _check_pattern_size(raw.shape[1:], prep, self.dtype)
        _check_dtype_settings(self.dtype, prep)
        if self._check_header is not None:
            self._check_header(self.n, shape)
        self._check_values(check_chunk)
        first = min(self.row_offset, self.n - 1)
        sample = preprocess(np.asarray(raw[first:first + 1]), prep, self.dtype)
        self.preprocessed_rows += 1
        self.pattern_shape = tuple(sample.shape[1:])
        self._memory = None
        if not load_one_by_one:
            self._build_copy()
        self._mean_total = None

    def _raw_rows(self, idx):
        idx = np.asarray(idx)
        order = np.argsort(idx)
        srt = idx[order]
        if isinstance(self.raw, np.ndarray):
            rows = self.raw[srt]
        else:  # h5py wants increasing, unique indices
            uniq, inv = np.unique(srt, return_inverse=True)
            rows = self.raw[uniq][inv]
        out = np.empty_like(rows)
        out[order] = rows
        return out

    def _check_values(self, chunk):
        n_neg = n_bad = 0
        first_bad = None
        fit = _DtypeFit(self.dtype, self.raw.dtype)
        end = self.row_offset + self.n_local
        for start in range(self.row_offset, end, chunk):
            block = _read_rows(self.raw, start, min(start + chunk, end), self.origin)
            bad = int(np.count_nonzero(~np.isfinite(block)))
            if bad and first_bad is None:
                first_bad = (start, start + len(block) - 1)
            n_bad += bad
            n_neg += int(np.count_nonzero(block < 0))
            if not bad:
                fit.add(block, start)
        if n_bad:
            raise DataError(f"diffraction data contain {n_bad} NaN or inf values "
                            f"(first in patterns {first_bad[0]}..{first_bad[1]})")
        if n_neg:
            raise DataError(f"diffraction data contain {n_neg} negative values; counts must be >= 0 "
                            f"(subtract the dark reference and clip at 0 first)")
        fit.check(self.origin, self.prep)

    # ------------------------------------------------------------------ access
    def _read(self, idx):
        """Preprocess the raw patterns ``idx`` now (FFT order); the per-batch path of earlier versions."""
        return self._prep_rows(self._raw_rows(idx))

    def _prep_rows(self, rows):
        self.preprocessed_rows += len(rows)
        return np.fft.ifftshift(preprocess(rows, self.prep, self.dtype), axes=(1, 2))

    @property
    def nbytes(self) -> int:
        """Bytes of the preprocessed (held) patterns (n_local x Y x X x itemsize)."""
        return int(self.n_local * int(np.prod(self.pattern_shape)) * self.dtype.itemsize)

    def _build_copy(self):
        """Preprocess all patterns once, chunk by chunk, into the host copy."""
        shape = (self.n_local,) + tuple(self.pattern_shape)
        where = self._host_copy
        if where == "auto":
            where = "memory" if _memory.host_copy_fits(self.nbytes) else "file"
        if where == "memory":
            out = np.empty(shape, dtype=self.dtype)
        else:
            fd, path = tempfile.mkstemp(prefix="pypty-preprocessed-", suffix=".npy", dir=self._tmp_dir)
            os.close(fd)
            try:
                out = np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype, shape=shape)
            finally:
                try:  # the mapping keeps the data; the name is not needed (nothing left behind on a crash)
                    os.unlink(path)
                except OSError:  # pragma: no cover - platforms that cannot unlink an open file
                    pass
        raw_bytes = int(np.prod(self.raw.shape[1:])) * 8 + int(np.prod(self.pattern_shape)) * 8
        rows = max(1, BUILD_CHUNK_BYTES // max(raw_bytes, 1))
        o = self.row_offset
        for start in range(0, self.n_local, rows):
            stop = min(start + rows, self.n_local)
            out[start:stop] = self._prep_rows(np.asarray(self.raw[o + start:o + stop]))
        if isinstance(out, np.memmap):
            out.flush()
        self._memory = out
        self.copy_location = where

    def preprocessed(self) -> np.ndarray:
        """The preprocessed host copy (n_local, Y, X) of the held patterns, FFT order, built at the first call;
        do not modify (row ``i`` is pattern ``row_offset + i``)."""
        if self._memory is None:
            self._build_copy()
        return self._memory

    def batch(self, idx):
        """Preprocessed patterns for scan indices ``idx``, FFT order.

        Returns ndarray, ``dtype``, shape (len(idx), Y, X) (a new array).
        """
        local = self._local(idx)
        if local is None:
            return self._foreign(idx)
        return self.preprocessed()[local]

    def batch_into(self, idx, out):
        """Write :meth:`batch` ``(idx)`` into ``out`` (a host array of that shape and dtype, e.g. pinned)."""
        local = self._local(idx)
        if local is None:
            out[...] = self._foreign(idx)
            return out
        np.take(self.preprocessed(), local, axis=0, out=out)
        return out

    def _local(self, idx):
        """Rows of the host copy for global indices ``idx``, or None when some lie outside the held rows."""
        idx = np.asarray(idx)
        if self._rows is None:
            return idx
        local = idx - self.row_offset
        if local.size and (local.min() < 0 or local.max() >= self.n_local):
            return None
        return local

    def _foreign(self, idx):
        """Patterns ``idx`` (some outside the held rows) read from the data and preprocessed now."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"pattern indices must be in [0, {self.n - 1}], got {idx.min()}..{idx.max()}")
        self.foreign_reads += int(idx.size)
        return self._read(idx)

    def pattern_sum(self, chunk=256):
        """Sum of the held preprocessed patterns (Y, X), float64, centred (fftshift order).

        For a distributed mean: the ranks' sums add up to N times the mean
        pattern (:meth:`mean_pattern` of all patterns).
        """
        acc = np.zeros(self.pattern_shape)
        held = self.preprocessed()
        for s in range(0, self.n_local, chunk):
            acc += np.sum(held[s:s + chunk], axis=0, dtype=np.float64)
        return np.fft.fftshift(acc)

    def mean_total_counts(self, idx=None, chunk=256):
        """Mean over patterns ``idx`` (default: the held ones) of the total (preprocessed) counts per pattern."""
        idx = np.arange(self.row_offset, self.row_offset + self.n_local) if idx is None else np.asarray(idx)
        tot = 0.0
        for s in range(0, len(idx), chunk):
            tot += float(np.sum(self.batch(idx[s:s + chunk]), dtype=np.float64))
        return tot / max(len(idx), 1)

    def mean_pattern(self, idx=None, chunk=256):
        """Mean preprocessed pattern (Y, X) of patterns ``idx`` (default: the held ones), float64, centred."""
        idx = np.arange(self.row_offset, self.row_offset + self.n_local) if idx is None else np.asarray(idx)
        acc = np.zeros(self.pattern_shape)
        for s in range(0, len(idx), chunk):
            acc += np.sum(self.batch(idx[s:s + chunk]), axis=0, dtype=np.float64)
        return np.fft.fftshift(acc / max(len(idx), 1))


class SignalSource(_Source):
    """Compressed measurements: virtual-detector signals (N, M) for ``lsq_compressed``.

    Parameters
    ----------
    data_path : str
        ``.h5`` (dataset ``data`` of shape (N, M)) or ``.npy`` (N, M); used
        when ``dataset`` is None.
    dataset : ndarray (N, M) or None
        Signals in memory (never modified).
    dtype : float dtype of the returned batches
    expected_n : int or None
        Number of measurements the caller expects (rows of ``positions``),
        checked before the signals are read.
    allow_external_hdf5 : bool
        See :func:`hdf5_dataset`.

    Raises
    ------
    DataError
        Missing file or dataset, wrong rank, not real numbers, non-finite
        values, more signals than host memory holds, a file that cannot be read.
    PyptyParameterError
        ``expected_n`` differs from the declared number (parameter 'positions').
    """

    def __init__(self, data_path="", dataset=None, dtype=np.float64, expected_n=None, allow_external_hdf5=False):
        if dataset is not None:
            raw, self.origin = np.asarray(dataset), "array"
        elif data_path:
            self.origin = str(data_path)
            raw, self._h5 = open_measurements(str(data_path), allow_external_hdf5)
        else:
            raise DataError("no data: set 'data_path' (an .h5 or .npy file) or 'dataset' (an array)")
        try:
            if raw.ndim != 2:
                raise DataError(f"compressed data (algorithm 'lsq_compressed', {_what(self.origin)}) must be 2D "
                                f"(N, n_masks); got shape {tuple(raw.shape)}")
            _check_declared(raw, self.origin, expected_n, 2)
            if not (np.issubdtype(raw.dtype, np.number) and not np.issubdtype(raw.dtype, np.complexfloating)):
                raise DataError(f"compressed data of {_what(self.origin)} must be real numbers, got dtype {raw.dtype}")
            if min(raw.shape) < 1:
                raise DataError(f"{_what(self.origin)} holds no signals: shape {tuple(raw.shape)}")
            need = int(np.prod(raw.shape, dtype=np.float64)) * max(np.dtype(dtype).itemsize, raw.dtype.itemsize)
            avail = _memory.host_memory_bytes()
            if need > avail:
                raise DataError(f"{_what(self.origin)}: the compressed data {tuple(raw.shape)} take about "
                                f"{need / 2**30:.3g} GiB, more than the {avail / 2**30:.3g} GiB of available host memory")
            self.signals = np.asarray(_read_rows(raw, 0, int(raw.shape[0]), self.origin), dtype=dtype)
        finally:
            self.close()
        if not np.all(np.isfinite(self.signals)):
            raise DataError(f"compressed data contain {int(np.count_nonzero(~np.isfinite(self.signals)))} "
                            f"NaN or inf values")
        self.n = int(self.signals.shape[0])
        self.n_signals = int(self.signals.shape[1])

    def batch(self, idx):
        """Signals (len(idx), M) for measurement indices ``idx``."""
        return self.signals[np.asarray(idx)]

    def preprocessed(self) -> np.ndarray:
        """All signals (N, M) (held in memory from the start); do not modify."""
        return self.signals

    def batch_into(self, idx, out):
        """Write :meth:`batch` ``(idx)`` into ``out``."""
        np.take(self.signals, np.asarray(idx), axis=0, out=out)
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of the signals."""
        return int(self.signals.nbytes)


# ============================================================================ device side
class DeviceBatches:
    """``get_data(idx)`` of a run: preprocessed batches of a source on the compute device.

    Parameters
    ----------
    bk : pypty.backend.Backend
    source : PatternSource or SignalSource
    keep_on_device : bool
        GPU only: hold the whole preprocessed dataset in device memory (one
        transfer per run) and gather batches there.  Ignored on the CPU,
        where the host copy is the device copy.
    prefetch : bool
        GPU streaming only: copy the batch expected next on a second CUDA
        stream while the current one is computed (see below).

    Calling it with an int index array (NumPy, B) returns a device array
    (B, Y, X) (or (B, M) signals), a new array each time (the caller may
    keep or modify it).

    Paths
    -----
    * NumPy backend: a row gather from the source's host copy.
    * CuPy, ``keep_on_device``: a row gather on the device; the device copy
      of each distinct index array is kept (at most :attr:`MAX_CACHED`), so
      index arrays cross to the device once per run, not once per batch.
    * CuPy, streaming (``load_one_by_one=True``): the rows are gathered on
      the host into one of two pinned (page-locked) staging buffers and
      copied asynchronously.  The order of the requests is learned: after
      serving batch ``a``, the batch that followed ``a`` the last time is
      gathered and its copy started on a second stream; the next request,
      if it is that batch, only makes the compute stream wait for the copy.
      The copy waits for the work queued on the compute stream when it is
      started (so that a device block the memory pool hands out again is no
      longer read), i.e. it overlaps the rest of the current batch (its
      backward pass and the next forward pass), not its forward pass.  A
      wrong guess costs one synchronous copy; the values served are the
      same either way.
    """

    #: Most remembered index arrays (device copies, successor table).
    MAX_CACHED = 4096

    def __init__(self, bk, source, keep_on_device=False, prefetch=True):
        self.bk = bk
        self.source = source
        self.on_device = bool(keep_on_device) and bool(getattr(bk, "is_gpu", False))
        self.prefetch = bool(prefetch)
        self.transfers = 0  # host -> device copies of batches (streaming path), for tests and logs
        self.prefetch_hits = 0
        self._dev = None
        self._dev_idx = OrderedDict()
        self._next = OrderedDict()  # key of a batch -> index array of the batch requested after it
        self._last_key = None
        self._pending = None  # (key, device array, event) of a prefetched batch
        self._stage = [None, None]  # pinned staging buffers (CuPy)
        self._stage_event = [None, None]
        self._slot = 0
        self._stream = None
        if self.on_device:
            self._dev = bk.asarray(source.preprocessed())

    @property
    def device_bytes(self) -> int:
        """Bytes of the dataset held on the device (0 when streaming)."""
        return int(self.source.nbytes) if self.on_device else 0

    def __call__(self, idx):
        idx = np.asarray(idx)
        if not getattr(self.bk, "is_gpu", False):
            return self.bk.asarray(self.source.batch(idx))
        if self.on_device:
            return self.bk.xp.take(self._dev, self._device_index(idx), axis=0)
        if self.bk.name != "cupy":  # a device stand-in (strict mode): a plain upload, no pinned memory or streams
            return self.bk.asarray(self.source.batch(idx))
        return self._stream_batch(idx)

    def _remember(self, table, key, value):
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.MAX_CACHED:
            table.popitem(last=False)

    def _device_index(self, idx):
        key = idx.astype(np.int64, copy=False).tobytes()
        dev = self._dev_idx.get(key)
        if dev is None:  # rows of the device copy: the source may hold a shard starting at row_offset
            dev = self.bk.asarray(idx.astype(np.int64, copy=False) - int(getattr(self.source, "row_offset", 0)))
            self._remember(self._dev_idx, key, dev)
        else:
            self._dev_idx.move_to_end(key)
        return dev

    # ---------------------------------------------------------------- CuPy only (not run without a GPU)
    def _stream_batch(self, idx):  # pragma: no cover - needs CuPy and a device
        import cupy

        main = cupy.cuda.get_current_stream()
        key = idx.astype(np.int64, copy=False).tobytes()
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == key:
            out = pending[1]
            main.wait_event(pending[2])
            self.prefetch_hits += 1
        else:
            if pending is not None:  # a wrong guess: its block goes back to the pool only after its copy
                main.wait_event(pending[2])
            out, _ = self._transfer(idx, main, side=None)
        if self._last_key is not None:
            self._remember(self._next, self._last_key, idx.copy())
        self._last_key = key
        nxt = self._next.get(key) if self.prefetch else None
        if nxt is not None:
            if self._stream is None:
                self._stream = cupy.cuda.Stream(non_blocking=True)
            dev, ev = self._transfer(nxt, main, side=self._stream)
            self._pending = (nxt.tobytes(), dev, ev)
        return out

    def _transfer(self, idx, main, side):  # pragma: no cover - needs CuPy and a device
        """Gather rows into a pinned buffer and copy them to a new device array on ``side`` (None: ``main``)."""
        import cupy
        import cupyx

        shape = (len(idx),) + tuple(self.source.preprocessed().shape[1:])
        dtype = self.source.preprocessed().dtype
        slot = self._slot
        self._slot ^= 1
        ev = self._stage_event[slot]
        if ev is not None:
            ev.synchronize()  # the buffer's previous copy has finished reading it
        size = int(np.prod(shape))
        buf = self._stage[slot]
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = cupyx.empty_pinned((size,), dtype=dtype)
            self._stage[slot] = buf
        host = buf[:size].reshape(shape)
        self.source.batch_into(idx, host)
        dev = cupy.empty(shape, dtype=dtype)  # allocated in the compute stream's order
        if side is None:
            dev.set(host, stream=main)
            ev = main.record()
        else:
            side.wait_event(main.record())  # the block may still be read by queued compute-stream work
            dev.set(host, stream=side)
            ev = side.record()
        self._stage_event[slot] = ev
        self.transfers += 1
        return dev, ev


def make_get_data(bk, source, load_one_by_one, memory_saturation=1.0, working_bytes=0, free_bytes=None,
                  prefetch=True):
    """The run's ``get_data`` and a log line: a :class:`DeviceBatches` placed by :func:`pypty.data.memory.place_data`.

    Parameters
    ----------
    bk : Backend
    source : PatternSource or SignalSource
    load_one_by_one : bool
        False asks for the whole dataset in device memory (GPU); it is
        streamed instead when it does not fit next to ``working_bytes``.
    memory_saturation : float in (0, 1]
    working_bytes : int
        Device memory the run needs besides the data (parameters, history,
        one batch's working set), e.g. from :mod:`pypty.data.memory`.
    free_bytes : int or None
        Free device memory (None: measured).
    prefetch : bool
        See :class:`DeviceBatches`.

    Returns
    -------
    (DeviceBatches, str)

    Drop-in for the two-branch ``get_data`` of :func:`pypty.model.setup.build_setup`::

        get_data, why = make_get_data(bk, source, p["load_one_by_one"], p["memory_saturation"])
    """
    on_device, why = _memory.place_data(bk, source.nbytes, load_one_by_one, memory_saturation, working_bytes,
                                        free_bytes)
    return DeviceBatches(bk, source, keep_on_device=on_device, prefetch=prefetch), why
