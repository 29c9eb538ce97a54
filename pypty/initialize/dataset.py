"""Convert raw 4D-STEM files into a pypty dataset (``.h5`` with ``data`` (N, ky, kx)).

Readers (all lazy; the data are processed chunk by chunk, never loaded whole):

- ``.npy``: 3D (N, ky, kx) or 4D (scan_y, scan_x, ky, kx), memory-mapped;
- ``.h5``/``.hdf5``: a 3D or 4D dataset, by default ``data``;
- EMPAD ``.raw``: little-endian float32 frames of 128 x 130 px, the last two
  rows of every frame are metadata and are dropped (EMPAD file layout, Tate
  et al., Microsc. Microanal. 22 (2016) 237);
- every format that rosettasciio (``rsciio``) reads lazily, e.g. Merlin
  ``.mib``, Gatan ``.dm4``, TVIPS ``.tvips``, ``.blo``.

Processing order, per chunk of patterns (units: detector px):

1. ``crop`` (y0, y1, x0, x1) in raw detector px;
2. ``transpose_detector`` (ky <-> kx), then ``flip_ky``, ``flip_kx``;
3. ``bin``: sum over bin x bin blocks;
4. ``center``: integer shift moving the centre of mass of the mean pattern
   (the bright-field disk) to pixel (K//2, K//2), zeros shifted in;
5. ``pad``: zero pixels added on every side;
6. ``normalize``: a factor (see :func:`create_dataset`), then the cast to ``dtype``.

The output file holds ``data`` (N, ky, kx), ``mean_pattern`` (ky, kx) and,
as attributes, the acquisition metadata (names as in the bundled sample:
``acc_voltage_kV``, ``semiangle_mrad``, ``scan_step_A``, ``scan_shape``,
``scan_rotation_deg``, ``detector_pixel_mrad``/``detector_pixel_inv_A``/
``bright_field_radius_px`` for the processed detector pixels) and a record
of the processing.  :func:`pypty.initialize.pypty_params_from_dataset`
reads them back.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings

import h5py
import numpy as np

from .. import __version__
from ..data.sources import _link_to_other_file, hdf5_dataset

__all__ = ["DatasetError", "open_4dstem", "create_dataset", "EMPAD_FRAME_SHAPE"]

#: EMPAD frame on disk (rows, cols): 128 detector rows followed by 2 metadata rows.
EMPAD_FRAME_SHAPE = (130, 128)

_CALIBRATION_KEYS = ("detector_pixel_mrad", "detector_pixel_inv_A", "bright_field_radius_px")


class DatasetError(ValueError):
    """A raw file or a conversion option is unusable (the message names the argument)."""


class _Frames:
    """Lazy (N, ky, kx) view of a 3D or 4D array-like (numpy memmap, h5py or dask)."""

    def __init__(self, arr, scan_shape, origin, close=None):
        self.origin = origin
        self._close = close
        shape = tuple(int(s) for s in arr.shape)
        if scan_shape is not None:
            try:
                scan_shape = tuple(int(s) for s in scan_shape)
            except (TypeError, ValueError):
                raise DatasetError(f"scan_shape must be two ints (scan_y, scan_x), got {scan_shape!r}") from None
        if len(shape) in (3, 4) and min(shape) < 1:
            raise DatasetError(f"{origin!r} holds no patterns: shape {shape}")
        if len(shape) == 4:
            if scan_shape is not None and tuple(scan_shape) != shape[:2]:
                raise DatasetError(f"scan_shape {tuple(scan_shape)} does not match the scan axes {shape[:2]} "
                                   f"of {origin!r}")
            scan_shape = shape[:2]
        elif len(shape) != 3:
            raise DatasetError(f"{origin!r}: expected 3D (N, ky, kx) or 4D (scan_y, scan_x, ky, kx) data, "
                               f"got shape {shape}")
        dt = np.dtype(arr.dtype)
        if dt.kind not in "iuf":
            raise DatasetError(f"{origin!r}: expected real numbers, got dtype {dt}")
        self.arr = arr
        self.ndim = len(shape)
        self.n = shape[0] * shape[1] if len(shape) == 4 else shape[0]
        self.detector_shape = shape[-2:]
        if scan_shape is not None:
            scan_shape = tuple(int(s) for s in scan_shape)
            if len(scan_shape) != 2 or min(scan_shape) < 1 or scan_shape[0] * scan_shape[1] != self.n:
                raise DatasetError(f"scan_shape {scan_shape} does not fit {self.n} patterns in {origin!r}")
        self.scan_shape = scan_shape

    def _read(self, start, stop, first):
        try:
            return np.asarray(self.arr[start:stop], dtype=np.float64)
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:  # damaged file, missing filter
            last = min(stop, self.arr.shape[0]) - 1
            what = f"patterns from {first}" if self.ndim == 4 else f"patterns {start}..{last}"
            raise DatasetError(f"source {self.origin!r}: cannot read {what}: {exc}") from exc

    def chunks(self, chunk_size):
        """Yield float64 arrays (B, ky, kx) in scan order."""
        if self.ndim == 3:
            for i in range(0, self.n, chunk_size):
                yield self._read(i, i + chunk_size, i)
        else:
            sx = self.arr.shape[1]
            rows = max(1, chunk_size // sx)
            for r in range(0, self.arr.shape[0], rows):
                block = self._read(r, r + rows, r * sx)
                yield block.reshape((-1,) + block.shape[2:])

    def close(self):
        if self._close is not None:
            self._close()
            self._close = None


def _rsciio_reader(ext):
    try:
        from rsciio import IO_PLUGINS
    except ImportError:
        return None
    import importlib

    for plugin in IO_PLUGINS:
        if ext in [e.lower() for e in plugin["file_extensions"]]:
            return importlib.import_module(plugin["api"]).file_reader
    return None


def open_4dstem(path, dataset_path=None, scan_shape=None, rsciio_kwargs=None, allow_external_hdf5=False):
    """Open a 4D-STEM file lazily.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npy``, ``.h5``/``.hdf5``, EMPAD ``.raw`` or any extension rosettasciio reads.
    dataset_path : str or None
        HDF5 only: path of the dataset inside the file (default ``"data"``).
    scan_shape : (int, int) or None
        (scan_y, scan_x); required for EMPAD ``.raw`` and 3D files only when
        positions are to be built from it, checked against 4D files.
    rsciio_kwargs : dict or None
        Extra keyword arguments for the rosettasciio ``file_reader``.
    allow_external_hdf5 : bool
        HDF5 only: accept a dataset kept in other files (external link,
        external raw storage, virtual dataset with sources in other files);
        refused by default (see :func:`pypty.data.sources.hdf5_dataset`).

    Returns
    -------
    object with ``n``, ``detector_shape`` (ky, kx), ``scan_shape``,
    ``chunks(chunk_size)`` yielding float64 (B, ky, kx) and ``close()``.

    Raises
    ------
    DatasetError
        Missing file, unknown extension, unreadable file, wrong rank or
        size, data kept in other files (HDF5), no rosettasciio, an error of
        the rosettasciio reader; every message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetError(f"source {path!r} does not exist" + (" (a folder)" if os.path.isdir(path) else ""))
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext == "npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise DatasetError(f"source {path!r} is not a readable .npy file: {exc}") from exc
        return _Frames(arr, scan_shape, path)
    if ext in ("h5", "hdf5", "hdf"):
        name = "data" if dataset_path is None else str(dataset_path)
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise DatasetError(f"source {path!r} is not a readable HDF5 file: {exc}") from exc
        try:
            if not allow_external_hdf5 and _link_to_other_file(f, name) is not None:  # before "in" follows it
                hdf5_dataset(f, name, path, "source", False, DatasetError)  # raises, naming the link
            if name not in f or not isinstance(f.get(name), h5py.Dataset):  # get: None for a dangling link
                found = []
                f.visititems(lambda k, v: found.append(k) if isinstance(v, h5py.Dataset) else None)
                raise DatasetError(f"dataset_path {name!r} is not a dataset in {path!r}; datasets found: {found}")
            return _Frames(hdf5_dataset(f, name, path, "source", allow_external_hdf5, DatasetError), scan_shape,
                           path, close=f.close)
        except BaseException:
            f.close()
            raise
    if ext == "raw":
        frame_bytes = EMPAD_FRAME_SHAPE[0] * EMPAD_FRAME_SHAPE[1] * 4
        size = os.path.getsize(path)
        if size == 0 or size % frame_bytes:
            raise DatasetError(f"{path!r}: {size} bytes is not a whole number of EMPAD frames "
                               f"(128 x 130 float32 = {frame_bytes} bytes each)")
        n = size // frame_bytes
        if scan_shape is None:
            raise DatasetError(f"scan_shape is needed for the EMPAD file {path!r} ({n} frames)")
        try:
            mm = np.memmap(path, dtype="<f4", mode="r", shape=(n,) + EMPAD_FRAME_SHAPE)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"source {path!r}: cannot map the EMPAD file: {exc}") from exc
        return _Frames(mm[:, :128, :], scan_shape, path)
    reader = _rsciio_reader(ext)
    if reader is None:
        raise DatasetError(f"source {path!r}: extension {ext!r} is not .npy/.h5/.raw and rosettasciio "
                           f"(pip install rosettasciio) does not read it or is not installed")
    kwargs = dict(rsciio_kwargs or {})
    kwargs.setdefault("lazy", True)
    try:
        signals = reader(path, **kwargs)
        signals = [s for s in signals if np.ndim(s["data"]) in (3, 4)]
    except Exception as exc:  # the reader's own errors (a damaged file, wrong rsciio_kwargs)
        raise DatasetError(f"source {path!r}: rosettasciio could not read it "
                           f"({type(exc).__name__}: {exc}); check the file and rsciio_kwargs") from exc
    if not signals:
        raise DatasetError(f"rosettasciio found no 3D or 4D signal in {path!r}")
    return _Frames(signals[0]["data"], scan_shape, path)


# --------------------------------------------------------------------------
# processing
# --------------------------------------------------------------------------

def _crop_box(crop, det):
    if crop is None:
        return None
    try:
        y0, y1, x0, x1 = (int(v) for v in crop)
    except (TypeError, ValueError):
        raise DatasetError(f"crop must be (y0, y1, x0, x1) in detector px, got {crop!r}") from None
    if not (0 <= y0 < y1 <= det[0] and 0 <= x0 < x1 <= det[1]):
        raise DatasetError(f"crop {crop!r} does not lie inside the detector {det[0]} x {det[1]} px")
    return y0, y1, x0, x1


def _orient(chunk, crop, transpose, flip_ky, flip_kx, b):
    if crop is not None:
        chunk = chunk[:, crop[0]:crop[1], crop[2]:crop[3]]
    if transpose:
        chunk = np.swapaxes(chunk, 1, 2)
    if flip_ky:
        chunk = chunk[:, ::-1, :]
    if flip_kx:
        chunk = chunk[:, :, ::-1]
    if b > 1:
        n, ky, kx = chunk.shape
        chunk = chunk.reshape(n, ky // b, b, kx // b, b).sum(axis=(2, 4))
    return chunk


def _shift_int(chunk, dy, dx):
    """Shift (B, Y, X) by integer (dy, dx) px, zeros shifted in."""
    if dy == 0 and dx == 0:
        return chunk
    out = np.zeros_like(chunk)
    _, h, w = chunk.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[:, yd, xd] = chunk[:, ys, xs]
    return out


def centre_of_mass(pattern):
    """Centre of mass (y, x) in px of a 2D pattern (float64 (2,)).

    Raises DatasetError when the pattern has no positive total.
    """
    p = np.asarray(pattern, dtype=np.float64)
    tot = p.sum()
    if not tot > 0:
        raise DatasetError("centre of mass: the mean pattern sums to zero or less")
    yy, xx = np.indices(p.shape)
    return np.array([(p * yy).sum() / tot, (p * xx).sum() / tot])


def _check_calibration(calib, b):
    out = {}
    for key, val in calib.items():
        if val is None:
            continue
        v = float(val)
        if not np.isfinite(v) or v <= 0:
            raise DatasetError(f"{key} must be a number > 0, got {val!r}")
        # a binned pixel spans b raw pixels; a disk radius in px shrinks by b
        out[key] = v / b if key == "bright_field_radius_px" else v * b
    return out


def create_dataset(source, output_path, *, dataset_path=None, scan_shape=None, transpose_detector=False,
                   flip_ky=False, flip_kx=False, crop=None, bin=1, center=False, pad=0, normalize=None,
                   dtype="float32", acc_voltage_kV=None, semiangle_mrad=None, scan_step_A=None,
                   scan_rotation_deg=0.0, detector_pixel_mrad=None, detector_pixel_inv_A=None,
                   bright_field_radius_px=None, extra_attrs=None, chunk_size=256, overwrite=False,
                   rsciio_kwargs=None, allow_external_hdf5=False):
    """Write a pypty dataset (``.h5``) from a raw 4D-STEM file or array, chunk by chunk.

    Parameters
    ----------
    source : str, os.PathLike or ndarray
        File (see :func:`open_4dstem`) or array, 3D (N, ky, kx) or 4D
        (scan_y, scan_x, ky, kx), real numbers (counts).
    output_path : str or os.PathLike
        The ``.h5`` file to write (atomically: temp file, then rename).
    dataset_path, scan_shape, rsciio_kwargs, allow_external_hdf5
        See :func:`open_4dstem`.  ``scan_shape`` (scan_y, scan_x) is stored
        as an attribute (from the 4D shape when not given).
    transpose_detector, flip_ky, flip_kx : bool
        Detector orientation: swap ky and kx, then reverse ky (rows), then kx.
    crop : (int, int, int, int) or None
        (y0, y1, x0, x1) raw detector px kept (half-open ranges).
    bin : int
        Detector binning factor (sum of bin x bin pixels); must divide the
        (cropped) detector size.
    center : bool
        Shift every pattern by the same integer vector so that the centre of
        mass of the mean pattern lands on pixel (K//2, K//2).
    pad : int
        Zero pixels added on every side (>= 0).
    normalize : None, "mean_counts" or float
        None: keep the values; "mean_counts": divide by the mean total per
        pattern (each pattern then sums to about 1); a float: multiply (e.g.
        1 / detector counts per electron).
    dtype : str or numpy dtype
        Stored dtype; integer dtypes are rounded (with a warning stating the
        largest change when values were not whole numbers) and must hold
        the values.
    acc_voltage_kV, semiangle_mrad, scan_step_A, scan_rotation_deg : float or None
        Acquisition metadata (kV, mrad, Å, degrees), stored as attributes.
    detector_pixel_mrad, detector_pixel_inv_A, bright_field_radius_px : float or None
        Detector calibration of the raw (unbinned) pixels: mrad/px, Å^-1/px or
        the bright-field disk radius in px; stored converted to the binned pixels.
    extra_attrs : dict or None
        More attributes (numbers, strings, small arrays; others as JSON text).
    chunk_size : int
        Patterns per chunk.
    overwrite : bool
        Replace an existing ``output_path``.

    Returns
    -------
    str
        ``output_path``.

    Raises
    ------
    DatasetError
        Naming the argument: unreadable source, bad option, crop outside
        the detector, bin not dividing, values not fitting ``dtype``, NaN/inf,
        output exists or cannot be written, ``extra_attrs`` HDF5 cannot store.
    """
    out = os.fspath(output_path)
    if os.path.exists(out) and not overwrite:
        raise DatasetError(f"output_path {out!r} exists; pass overwrite=True to replace it")
    for name, val in (("bin", bin), ("pad", pad), ("chunk_size", chunk_size)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)):
            raise DatasetError(f"{name} must be an int, got {val!r}")
    if bin < 1 or pad < 0 or chunk_size < 1:
        raise DatasetError(f"need bin >= 1, pad >= 0, chunk_size >= 1; got bin={bin}, pad={pad}, "
                           f"chunk_size={chunk_size}")
    try:
        out_dt = np.dtype(dtype)
    except TypeError:
        raise DatasetError(f"dtype {dtype!r} is not a numpy dtype") from None
    if out_dt.kind not in "iuf":
        raise DatasetError(f"dtype must be a real integer or float dtype, got {out_dt}")
    if not (normalize is None or normalize == "mean_counts"
            or (isinstance(normalize, (int, float, np.number)) and not isinstance(normalize, bool)
                and np.isfinite(normalize) and normalize > 0)):
        raise DatasetError(f"normalize must be None, 'mean_counts' or a number > 0, got {normalize!r}")
    calib = _check_calibration({"detector_pixel_mrad": detector_pixel_mrad,
                                "detector_pixel_inv_A": detector_pixel_inv_A,
                                "bright_field_radius_px": bright_field_radius_px}, bin)
    meta = {}
    for key, val in (("acc_voltage_kV", acc_voltage_kV), ("semiangle_mrad", semiangle_mrad),
                     ("scan_step_A", scan_step_A)):
        if val is not None:
            if not (isinstance(val, (int, float, np.number)) and np.isfinite(val) and val > 0):
                raise DatasetError(f"{key} must be a number > 0, got {val!r}")
            meta[key] = float(val)
    if not (isinstance(scan_rotation_deg, (int, float, np.number)) and np.isfinite(scan_rotation_deg)):
        raise DatasetError(f"scan_rotation_deg must be a finite number, got {scan_rotation_deg!r}")
    meta["scan_rotation_deg"] = float(scan_rotation_deg)

    if isinstance(source, np.ndarray):
        frames = _Frames(source, scan_shape, "array")
    elif isinstance(source, (str, os.PathLike)):
        frames = open_4dstem(source, dataset_path, scan_shape, rsciio_kwargs, allow_external_hdf5)
    else:
        raise DatasetError(f"source must be a file path or a numpy array, got {type(source).__name__}")
    try:
        return _convert(frames, out, meta, calib, extra_attrs, dict(
            crop=_crop_box(crop, frames.detector_shape), transpose=bool(transpose_detector),
            flip_ky=bool(flip_ky), flip_kx=bool(flip_kx), b=int(bin)), bool(center), int(pad),
            normalize, out_dt, int(chunk_size))
    finally:
        frames.close()


def _convert(frames, out, meta, calib, extra_attrs, orient, center, pad, normalize, out_dt, chunk_size):
    det = frames.detector_shape
    crop, b = orient["crop"], orient["b"]
    ky, kx = (crop[1] - crop[0], crop[3] - crop[2]) if crop else det
    if orient["transpose"]:
        ky, kx = kx, ky
    if ky % b or kx % b:
        raise DatasetError(f"bin={b} does not divide the (cropped) detector size {ky} x {kx} px")
    ky, kx = ky // b, kx // b
    # pass 1: mean pattern (for the centring and the normalisation), value checks
    total = np.zeros((ky, kx))
    for chunk in frames.chunks(chunk_size):
        if not np.all(np.isfinite(chunk)):
            raise DatasetError(f"{frames.origin!r} contains NaN or inf values")
        total += _orient(chunk, **orient).sum(axis=0)
    mean = total / frames.n
    shift = (0, 0)
    if center:
        com = centre_of_mass(mean)
        shift = (int(np.rint(ky // 2 - com[0])), int(np.rint(kx // 2 - com[1])))
        mean = _shift_int(mean[None], *shift)[0]
    mean_total = float(mean.sum())
    if normalize == "mean_counts":
        if not mean_total > 0:
            raise DatasetError("normalize='mean_counts': the mean pattern sums to zero or less")
        factor = 1.0 / mean_total
    else:
        factor = 1.0 if normalize is None else float(normalize)
    mean = np.pad(mean, pad) * factor
    shape = (frames.n, ky + 2 * pad, kx + 2 * pad)
    info = np.iinfo(out_dt) if out_dt.kind in "iu" else None

    folder = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(out) + ".", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise DatasetError(f"output_path {out!r} cannot be written: {exc}") from exc
    os.close(fd)
    rounded = [0.0, None]  # largest change by the rounding to an integer dtype, and its first pattern
    try:
        with h5py.File(tmp, "w") as f:
            dset = f.create_dataset("data", shape=shape, dtype=out_dt,
                                    chunks=(min(chunk_size, shape[0]),) + shape[1:])
            i = 0
            for chunk in frames.chunks(chunk_size):
                c = _shift_int(_orient(chunk, **orient), *shift)
                if pad:
                    c = np.pad(c, ((0, 0), (pad, pad), (pad, pad)))
                if factor != 1.0:
                    c = c * factor
                if info is not None:
                    r = np.rint(c)
                    change = float(np.max(np.abs(r - c))) if c.size else 0.0
                    if change > rounded[0]:
                        rounded[0] = change
                        rounded[1] = rounded[1] if rounded[1] is not None else i
                    c = r
                    if c.min() < info.min or c.max() > info.max:
                        raise DatasetError(f"dtype {out_dt}: values {c.min():g}..{c.max():g} do not fit; "
                                           f"choose a float dtype or another normalize")
                dset[i:i + len(c)] = c.astype(out_dt)
                i += len(c)
            f.create_dataset("mean_pattern", data=mean)
            attrs = dict(meta)
            attrs.update(calib)
            if frames.scan_shape is not None:
                attrs["scan_shape"] = np.asarray(frames.scan_shape, dtype=np.int64)
            attrs.update({
                "pypty_version": __version__, "source": str(frames.origin),
                "detector_shape_raw": np.asarray(det, dtype=np.int64),
                "processing": json.dumps({"crop": crop, "transpose_detector": orient["transpose"],
                                          "flip_ky": orient["flip_ky"], "flip_kx": orient["flip_kx"],
                                          "bin": b, "center_shift_px_yx": list(shift), "pad": pad,
                                          "normalization_factor": factor, "dtype": str(out_dt)}),
                "center_shift_px_yx": np.asarray(shift, dtype=np.int64), "data_pad_applied": pad,
                "mean_total_counts": float(mean.sum()), "n_det": int(shape[1]),
                "conventions": "data (N, ky, kx), pattern p = iy*scan_x + ix (x fast), zero frequency "
                               "at (ky//2, kx//2) after centring; calibrations refer to the stored pixels",
            })
            for key, val in (extra_attrs or {}).items():
                if isinstance(val, (str, int, float, np.number, np.ndarray)):
                    attrs[str(key)] = val
                else:
                    try:
                        attrs[str(key)] = json.dumps(val)
                    except (TypeError, ValueError) as exc:
                        raise DatasetError(f"extra_attrs[{key!r}]: {type(val).__name__} is neither a number, "
                                           f"string or array nor JSON-serialisable: {exc}") from exc
            for key, val in attrs.items():
                try:
                    f.attrs[key] = val
                except (TypeError, ValueError) as exc:
                    raise DatasetError(f"extra_attrs[{key!r}]: HDF5 cannot store {val!r:.80}: {exc}") from exc
        os.replace(tmp, out)
    except OSError as exc:  # disk full, file system errors
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise DatasetError(f"output_path {out!r} could not be written: {exc}") from exc
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if rounded[0] > 0:
        warnings.warn(f"create_dataset: dtype {out_dt} stores whole numbers; values were rounded, the largest "
                      f"change {rounded[0]:.3g} counts (first in the chunk starting at pattern {rounded[1]}). "
                      f"Use a float dtype to keep them", stacklevel=2)
    return out
