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
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import scipy.ndimage

__all__ = ["DataError", "Preprocessing", "PatternSource", "SignalSource", "preprocess", "open_measurements"]


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


def open_measurements(path: str):
    """Open a measurement file: ``(array-like, h5py.File or None)``.

    ``.npy`` files are memory-mapped (no HDF5 handle); ``.h5``/``.hdf5``/``.hdf``
    files return their ``data`` dataset and the open file, which the caller
    must close.

    Raises
    ------
    DataError
        Missing file, unreadable HDF5, no ``data`` dataset, unknown extension.
    """
    if not os.path.exists(path):
        raise DataError(f"data_path {path!r} does not exist")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        return np.load(path, mmap_mode="r"), None
    if ext in (".h5", ".hdf5", ".hdf"):
        import h5py

        try:
            h5 = h5py.File(path, "r")
        except OSError as exc:
            raise DataError(f"data_path {path!r} is not a readable HDF5 file: {exc}") from exc
        if "data" not in h5:
            keys = list(h5.keys())
            h5.close()
            raise DataError(f"data_path {path!r} has no dataset 'data' (found {keys})")
        return h5["data"], h5
    raise DataError(f"data_path {path!r}: unsupported extension {ext!r}; use .h5/.hdf5 or .npy")


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
        True: patterns are read from the file per batch (h5 / memory-mapped
        npy), never all at once.  False: all patterns are preprocessed once
        and kept in memory.
    scan_size : (int, int) or None
        If given, must satisfy scan_y * scan_x == N.
    check_chunk : int
        Patterns per chunk when scanning the data for NaN/inf/negative values.

    Raises
    ------
    DataError
        Missing file, wrong rank, NaN/inf, negative counts (with their
        number), scan size mismatch, no data given.
    """

    def __init__(self, data_path="", dataset=None, prep=Preprocessing(), dtype=np.float64,
                 load_one_by_one=True, scan_size=None, check_chunk=256):
        self.prep = prep
        self.dtype = np.dtype(dtype)
        if dataset is not None:
            raw = np.asarray(dataset)
            self.origin = "array"
        elif data_path:
            raw, self._h5 = open_measurements(str(data_path))
            self.origin = str(data_path)
        else:
            raise DataError("no data: set 'data_path' (an .h5 or .npy file) or 'dataset' (an array)")
        try:
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
            raise DataError(f"diffraction data must be 3D (N, ky, kx) or 4D (scan_y, scan_x, ky, kx); "
                            f"got shape {tuple(raw.shape)}")
        if not (np.issubdtype(raw.dtype, np.number) and not np.issubdtype(raw.dtype, np.complexfloating)):
            raise DataError(f"diffraction data must be real numbers, got dtype {raw.dtype}")
        self.n = int(raw.shape[0])
        if scan_size is not None and int(scan_size[0]) * int(scan_size[1]) != self.n:
            raise DataError(f"scan_size {tuple(scan_size)} gives {int(scan_size[0]) * int(scan_size[1])} "
                            f"positions but the data holds {self.n} patterns")
        self.scan_size = None if scan_size is None else (int(scan_size[0]), int(scan_size[1]))
        self.raw = raw
        self._check_values(check_chunk)
        sample = preprocess(np.asarray(raw[0:1]), prep, self.dtype)
        self.pattern_shape = tuple(sample.shape[1:])
        self._memory = None
        if not load_one_by_one:
            self._memory = self._read(np.arange(self.n))
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
        for start in range(0, self.n, chunk):
            block = np.asarray(self.raw[start:start + chunk])
            bad = int(np.count_nonzero(~np.isfinite(block)))
            if bad and first_bad is None:
                first_bad = (start, start + len(block) - 1)
            n_bad += bad
            n_neg += int(np.count_nonzero(block < 0))
        if n_bad:
            raise DataError(f"diffraction data contain {n_bad} NaN or inf values "
                            f"(first in patterns {first_bad[0]}..{first_bad[1]})")
        if n_neg:
            raise DataError(f"diffraction data contain {n_neg} negative values; counts must be >= 0 "
                            f"(subtract the dark reference and clip at 0 first)")

    # ------------------------------------------------------------------ access
    def _read(self, idx):
        return np.fft.ifftshift(preprocess(self._raw_rows(idx), self.prep, self.dtype), axes=(1, 2))

    def batch(self, idx):
        """Preprocessed patterns for scan indices ``idx``, FFT order.

        Returns ndarray, ``dtype``, shape (len(idx), Y, X).
        """
        if self._memory is not None:
            return self._memory[np.asarray(idx)]
        return self._read(idx)

    def mean_total_counts(self, idx=None, chunk=256):
        """Mean over patterns of the total (preprocessed) counts per pattern."""
        idx = np.arange(self.n) if idx is None else np.asarray(idx)
        tot = 0.0
        for s in range(0, len(idx), chunk):
            tot += float(np.sum(self.batch(idx[s:s + chunk]), dtype=np.float64))
        return tot / max(len(idx), 1)

    def mean_pattern(self, idx=None, chunk=256):
        """Mean preprocessed pattern (Y, X), float64, centred (fftshift order)."""
        idx = np.arange(self.n) if idx is None else np.asarray(idx)
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

    Raises
    ------
    DataError
        Missing file or dataset, wrong rank, non-finite values.
    """

    def __init__(self, data_path="", dataset=None, dtype=np.float64):
        if dataset is not None:
            raw, self.origin = np.asarray(dataset), "array"
        elif data_path:
            self.origin = str(data_path)
            raw, self._h5 = open_measurements(str(data_path))
        else:
            raise DataError("no data: set 'data_path' (an .h5 or .npy file) or 'dataset' (an array)")
        try:
            if raw.ndim != 2:
                raise DataError(f"compressed data (algorithm 'lsq_compressed') must be 2D (N, n_masks); got "
                                f"shape {tuple(raw.shape)}")
            self.signals = np.asarray(raw[...], dtype=dtype)
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
