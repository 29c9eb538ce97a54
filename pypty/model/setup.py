"""Turn validated parameters into device arrays, a data source and a model.

This is where the user layout (object (y, x, slices, modes), probe
(y, x, modes) or (y, x, modes, subscans), centred patterns) is converted to
the internal FFT-friendly layout (object (slices, modes, y, x), probe
(subscans, modes, y, x), FFT order), the object canvas is sized to the scan,
the probe is built from the data when none is given, and the optional arrays
(tilts, beam current, static background, aberrations array) are created when
they are used or refined.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np

from .. import operators as ops
from ..backend import Backend
from ..data import PatternSource, Preprocessing, SignalSource
from ..data.memory import bytes_per_pattern, fixed_bytes, resolve_compute_batch
from ..data.sources import make_get_data
from ..initialize.probe import probe_from_parameters
from ..operators.optics import electron_wavelength_A
from ..parameters import parameter_error as _err
from ..parameters.epoch_eval import EpochExpression
from ..parameters.schedule import may_be_on, resolve
from .canvas import ensure_margin
from .limits import check_sizes
from .multislice import MultisliceModel
from .refinables import tilt_types_for_mode

__all__ = ["Setup", "build_setup"]


@dataclass(frozen=True)
class Setup:
    """The static problem of a run: data access, model and the *initial* arrays (see :func:`build_setup`).

    ``arrays`` holds the initial device arrays in the internal layout (see
    :mod:`pypty.model.refinables`); optional ones are present only when the
    model uses them.  ``position_offset`` (2,) px: user-frame position =
    canvas position + offset, for the initial canvas.  Nothing here changes
    during a run: the state of a run (arrays, canvas, offset, optimizer) lives
    in :class:`pypty.engine.session.Reconstruction`.

    Attributes
    ----------
    bk : pypty.backend.Backend
    source : PatternSource or SignalSource
        The measured data (patterns, or signals of virtual detectors).
    model : MultisliceModel
    arrays : dict name -> device array
        Initial arrays (internal layout).
    position_offset : float64 ndarray (2,), px
    n_patterns : int
    compute_batch : int
        Patterns per batch.
    complex_dtype, real_dtype : numpy dtype
        Precision of the computation.
    get_data : callable(idx) -> device array
        Preprocessed data of the patterns ``idx`` (FFT order).
    probe_4d : bool
        The probe is given and returned as (y, x, modes, subscans).
    comm : pypty.distributed.comm.SerialComm or MPIComm or None
        The communicator of the run (None: one process).
    shard : (int, int)
        ``(start, stop)``: the patterns this rank evaluates and holds in
        ``source`` (all of them, ``(0, n_patterns)``, for one process).
    """

    bk: Backend
    source: Union[PatternSource, SignalSource]
    model: MultisliceModel
    arrays: dict
    position_offset: np.ndarray
    n_patterns: int
    compute_batch: int
    complex_dtype: np.dtype
    real_dtype: np.dtype
    get_data: Callable
    probe_4d: bool = False
    comm: object = None
    shard: tuple = (0, 0)

    @property
    def canvas_yx(self) -> tuple:
        """Initial object canvas (Ny, Nx) in px."""
        return tuple(int(v) for v in self.arrays["obj"].shape[-2:])

    def close(self):
        """Close the data source (an open HDF5 file)."""
        self.source.close()


def build_setup(p: dict, bk, log=None, keep_canvas=False, comm=None) -> Setup:
    """Build data source, model and initial device arrays from validated parameters.

    ``keep_canvas``: never crop the given object (an exact restart continues
    on the saved canvas even with ``use_full_FOV=False``); it is still padded
    if a window does not fit.

    ``comm``: the run's communicator (:mod:`pypty.distributed`; None: one
    process).  Distributed, each rank reads and preprocesses only its shard
    of the patterns (compressed signals, small, are read whole by every
    rank), and the statistics over all patterns (the mean pattern, hence
    the mean counts and the loss's ``eps``) are summed over the ranks so
    that every rank holds the same values.  Collective then.

    Raises
    ------
    PyptyParameterError
        Shapes or settings that do not fit together (probe vs patterns,
        positions vs data, object slices vs ``num_slices``, markers, tilts
        outside ``tilt_mode``, masks without ``lsq_compressed``, ...);
        positions far outside the scan, or a canvas, probe modes or window
        that would not fit in memory, refused from the data's header before
        the data are read (:func:`pypty.model.limits.check_sizes`).
    pypty.data.DataError
        Unusable data.
    """
    say = log or (lambda m: None)
    cdt = np.dtype(np.complex128 if p["default_dtype"] == "double" else np.complex64)
    rdt = np.dtype(np.float64 if cdt == np.complex128 else np.float32)
    ddt = np.dtype(p["force_dataset_dtype"]) if p["force_dataset_dtype"] is not None else rdt
    compressed = p["algorithm"] == "lsq_compressed"
    # sizes are checked against the data's header before the data are read (pypty/model/limits.py)
    n_pos, external = int(np.shape(p["positions"])[0]), bool(p.get("allow_external_hdf5", False))
    distributed = comm is not None and comm.distributed
    shard = comm.shard(n_pos) if distributed else (0, n_pos)
    if compressed:  # signals are small: every rank reads them all (the evaluation is still sharded)
        source = SignalSource(p["data_path"], p["dataset"], ddt, expected_n=n_pos, allow_external_hdf5=external)
    else:
        prep = Preprocessing(multiplier=float(p["data_multiplier"]), pad=int(p["data_pad"]),
                             bin=int(p["data_bin"]), flip_ky=bool(p["flip_ky"]),
                             shift=tuple(float(v) for v in p["data_shift_vector"]))

        def open_source():  # distributed: a bad pattern of one rank's shard is reported on every rank
            return PatternSource(p["data_path"], p["dataset"], prep, ddt,
                                 load_one_by_one=bool(p["load_one_by_one"]) and not bool(p["preload_to_cpu"]),
                                 scan_size=p["scan_size"], expected_n=n_pos, allow_external_hdf5=external,
                                 check_header=lambda n, shape: check_sizes(p, bk, n, shape, cdt, keep_canvas),
                                 rows=shard if distributed else None)

        source = comm.agree(open_source, "reading the data") if distributed else open_source()
    try:
        st = _build(p, bk, source, cdt, rdt, say, compressed, keep_canvas, comm if distributed else None)
        return dataclasses.replace(st, comm=comm, shard=shard)
    except BaseException:
        source.close()
        raise


def ddt_of(source):
    """dtype of the batches a data source returns."""
    return source.signals.dtype if isinstance(source, SignalSource) else source.dtype


def _detector_shape(p, source, compressed):
    if not compressed:
        return tuple(source.pattern_shape)
    masks = np.asarray(p["masks"])
    if masks.ndim != 3 or masks.shape[0] != source.n_signals:
        raise _err("masks", f"expected shape (n_masks={source.n_signals}, ky, kx) to match the compressed "
                            f"data (N, {source.n_signals}), got {masks.shape}")
    return tuple(masks.shape[1:])


def _warn_detector_beyond_band(p, detector, compressed, n_slices):
    """Warn when measured scattering reaches past the propagator's band limit in a multislice model.

    The Fresnel propagator passes frequencies up to ``damping_cutoff_multislice``
    of the window's Nyquist; scattering the detector records beyond that can
    only come from the last slice, so a reconstruction moves structure there
    (shown on a two-layer specimen, docs/regularization_depth.md).  The
    measured part of a pattern spans ``(K - 2 data_pad) / K`` of the window's
    Nyquist (K the preprocessed pattern width).
    """
    if compressed or n_slices < 2 or p["recon_type"] != "far_field":
        return
    cutoff, pad = float(p["damping_cutoff_multislice"]), int(p["data_pad"])
    reach = max((k - 2 * pad) / k for k in detector)
    if reach > cutoff + 1e-9:
        measured = max(k - 2 * pad for k in detector)
        need = int(np.ceil(measured * (1 / cutoff - 1) / 2 - 1e-9))  # data_pad giving reach = cutoff
        warnings.warn(f"parameter 'data_pad': with {n_slices} slices the measured patterns reach {reach:.2f} of the "
                      f"window's Nyquist frequency, beyond the propagator's band limit damping_cutoff_multislice = "
                      f"{cutoff:.3g}; scattering there can only come from the last slice, which then takes up "
                      f"structure of the others. Pad the patterns (data_pad of about a quarter of the pattern width, "
                      f"here at least {need} px) or raise damping_cutoff_multislice", stacklevel=4)


def _build(p, bk, source, cdt, rdt, say, compressed, keep_canvas=False, comm=None):
    n = source.n
    detector = _detector_shape(p, source, compressed)
    check_sizes(p, bk, n, detector, cdt, keep_canvas)  # far positions, memory (again for patterns: cheap)
    up = int(p["upsample_pattern"])
    near = p["recon_type"] == "near_field"
    win = (detector[0] * up, detector[1] * up)
    pix = (float(p["pixel_size_y_A"]), float(p["pixel_size_x_A"]))
    lam = electron_wavelength_A(p["acc_voltage"])
    # ---------------------------------------------------------------- positions and canvas
    pos = np.array(p["positions"], dtype=np.float64)
    if pos.shape != (n, 2):
        raise _err("positions", f"expected shape ({n}, 2) (one (y, x) per pattern), got {pos.shape}")
    n_slices = int(p["num_slices"])
    _warn_detector_beyond_band(p, detector, compressed, n_slices)
    obj = np.asarray(p["obj"]) if p["obj"] is not None else np.ones((1, 1, n_slices, 1), dtype=cdt)
    if obj.ndim != 4:
        raise _err("obj", f"expected 4 dimensions (y, x, slices, modes), got shape {obj.shape}")
    if obj.shape[2] != n_slices:
        raise _err("obj", f"has {obj.shape[2]} slices but num_slices = {n_slices}")
    obj_int = np.transpose(obj, (2, 3, 0, 1)).astype(cdt)  # a copy: the user's array is never touched
    sel = slice(None)
    crop = False
    if p["sequence"] is not None and not callable(p["sequence"]) and not isinstance(p["sequence"], EpochExpression) \
            and not p["use_full_FOV"]:
        sel, crop = np.asarray(p["sequence"], dtype=np.int64), not keep_canvas
    margin = int(p["extra_space_on_side_px"])
    obj_int, _, shift = ensure_margin(np, obj_int, pos[sel], win, margin, crop=crop)
    pos = pos + shift  # windows of patterns outside the sequence may fall outside a cropped canvas
    offset = -shift.astype(float)
    ny, nx = obj_int.shape[-2:]
    if tuple(shift) != (0, 0) or (ny, nx) != obj.shape[:2]:
        say(f"object canvas {ny} x {nx} px (shift {tuple(int(s) for s in shift)} px, margin {margin} px)")
    # ---------------------------------------------------------------- probe
    if compressed:
        data_mean = None
    elif comm is None:
        data_mean = source.mean_pattern()  # one pass over the data (centred)
    else:  # the sum of the ranks' shards, the same bits on every rank
        data_mean = comm.allsum(source.pattern_sum()) / n
    probe_int, probe_4d = _probe(p, data_mean, win, detector, up, pix, lam, near, compressed, say)
    # ---------------------------------------------------------------- model extras
    arrays = {"obj": bk.asarray(np.ascontiguousarray(obj_int)), "probe": bk.asarray(probe_int.astype(cdt)),
              "positions": bk.asarray(pos)}
    kw = {}
    tilt_types = tilt_types_for_mode(p["tilt_mode"])
    tilts = np.array(p["tilts"], dtype=np.float64)
    if tilts.shape[0] not in (1, n):
        raise _err("tilts", f"expected 1 row (a common tilt) or N = {n} rows, got shape {tilts.shape}")
    if np.any(tilts != 0) or may_be_on(p["update_tilts"]):
        arrays["tilts"] = bk.asarray(tilts)
        kw["tilt_types"] = tilt_types
        if "inside" in tilt_types and n_slices == 1 and p["propmethod"] == "multislice":
            warnings.warn(f"parameter 'tilt_mode': {p['tilt_mode']} uses tilts inside the specimen, but with "
                          f"num_slices = 1 and propmethod 'multislice' there is no propagation inside it, so "
                          f"they have no effect (use tilt_mode 2 for a beam tilt, or more slices)", stacklevel=4)
    if p["beam_current"] is not None or may_be_on(p["update_beam_current"]):
        bc = np.ones(n) if p["beam_current"] is None else np.array(p["beam_current"], dtype=np.float64)
        if bc.shape != (n,):
            raise _err("beam_current", f"expected shape ({n},) (one value per pattern), got {bc.shape}")
        bad = ~(np.isfinite(bc) & (bc >= 0))  # NaN, inf or a negative current give a non-finite or negative loss
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise _err("beam_current", f"must be finite and >= 0 (a relative current per pattern), got "
                                       f"{int(bad.sum())} bad value(s), the first {float(bc[i])!r} at pattern {i}")
        arrays["beam_current"] = bk.asarray(bc)
    _background(p, arrays, kw, detector, compressed, bk)
    _aberrations(p, arrays, kw, n, bk)
    if p["phase_plate_in_h5"] is not None:
        kw["phase_plates"] = _phase_plates(p["phase_plate_in_h5"], n, win, cdt, bool(p["allow_external_hdf5"]))
    if near:
        df = np.atleast_1d(np.asarray(p["defocus_array"], dtype=float))
        if df.size not in (1, n):
            raise _err("defocus_array", f"expected 1 value or N = {n} values, got {df.size}")
        kw["near_field"] = {"defocus": df, "cs": float(p["Cs"]), "alpha": float(p["alpha_near_field"])}
    if compressed:
        kw["masks"] = bk.asarray(np.fft.ifftshift(np.asarray(p["masks"], dtype=rdt), axes=(-2, -1)))
    if p["probe_marker"] is not None:
        marker = np.asarray(p["probe_marker"], dtype=np.int64)
        if marker.shape != (n,) or marker.min() < 0 or marker.max() >= probe_int.shape[0]:
            raise _err("probe_marker", f"expected {n} integers in [0, {probe_int.shape[0] - 1}] (probes on the "
                                       f"last axis of the 4D probe), got shape {marker.shape}")
        kw["probe_marker"] = marker
    # ---------------------------------------------------------------- model
    dz = np.atleast_1d(np.asarray(p["slice_distances"], dtype=float))
    if dz.size == 1:
        dz = np.full(n_slices, dz[0])
    if dz.size != n_slices:
        raise _err("slice_distances", f"expected 1 or num_slices = {n_slices} values, got {dz.size}")
    # the loss regulariser depends on the data only (never on the current probe), so restarts are exact
    if compressed:
        mean_total = float(np.mean(np.abs(source.signals).sum(axis=1)))
    else:
        mean_total = float(np.sum(data_mean))
    eps = max(1e-6 * mean_total / (detector[0] * detector[1]), 1e-12)
    model = MultisliceModel(bk, win, pix, lam, tuple(dz), cdt, propmethod=p["propmethod"],
                            cutoff=float(p["damping_cutoff_multislice"]), rolloff=float(p["smooth_rolloff"]),
                            loss_name=str(resolve("algorithm", p["algorithm"], 0)),  # per epoch: EpochSettings
                            eps=eps, upsample=up, acc_voltage_kV=float(p["acc_voltage"]),
                            detector_blur_sigma=float(p["detector_blur_sigma"]), **kw)
    # ---------------------------------------------------------------- data access
    per_pattern = source.n_signals if compressed else detector[0] * detector[1]
    n_held = int(getattr(source, "n_local", n))  # patterns this rank holds (its shard when distributed)
    on_device = n_held * per_pattern * np.dtype(ddt_of(source)).itemsize if bk.is_gpu and not p["load_one_by_one"] \
        else 0
    n_probe_modes = probe_int.shape[1] * (2 if probe_int.shape[0] > 1 else 1)  # per-pattern spectra with markers
    batch, why = resolve_compute_batch(p, bk, n, win, (ny, nx), n_slices * (3 if p["propmethod"] == "yoshida" else 1),
                                       obj_int.shape[1], n_probe_modes, cdt, on_device,  # "auto": pypty/data/memory.py
                                       free_bytes=bk.simulated_free_bytes)  # None except on the strict stand-in
    say(why)
    # patterns preprocessed once per run; on a GPU kept in device memory when they fit (pypty/data/sources.py)
    s_eff = n_slices * (3 if p["propmethod"] == "yoshida" else 1)
    working = (bytes_per_pattern(win, s_eff, obj_int.shape[1], n_probe_modes, cdt, gpu=bk.is_gpu) * batch
               + fixed_bytes((ny, nx), win, s_eff, obj_int.shape[1], n_probe_modes, n, cdt))
    get_data, why = make_get_data(bk, source, p["load_one_by_one"], float(p["memory_saturation"]), working,
                                  free_bytes=bk.simulated_free_bytes)
    if bk.is_gpu:
        say(why)
    say(f"{n} measurements, detector {detector[0]} x {detector[1]} px, probe window {win[0]} x {win[1]} px, "
        f"object {ny} x {nx} px x {n_slices} slices x {obj_int.shape[1]} modes, probe modes "
        f"{probe_int.shape[1]} x {probe_int.shape[0]} subscans, {p['propmethod']}, {cdt}, backend {bk.name}"
        + (f"; also {', '.join(k for k in arrays if k not in ('obj', 'probe', 'positions'))}"
           if len(arrays) > 3 else ""))
    return Setup(bk=bk, source=source, model=model, arrays=arrays, position_offset=offset, n_patterns=n,
                 compute_batch=batch, complex_dtype=cdt, real_dtype=rdt, get_data=get_data, probe_4d=probe_4d)


def _probe(p, data_mean, win, detector, up, pix, lam, near, compressed, say):
    """Internal probe (K, Mp, Y, X) complex128 and whether the user layout is 4D."""
    probe = p["probe"]
    mean_total = None if data_mean is None else float(data_mean.sum())
    if probe is None:
        if compressed:
            raise _err("probe", "must be given for compressed data (no patterns to build it from)")
        mp = np.asarray(p["mean_pattern"] if p["mean_pattern"] is not None else data_mean, dtype=float)
        if mp.shape != detector:
            raise _err("mean_pattern", f"expected shape {detector} (the preprocessed pattern), got {mp.shape}")
        if near:
            h = ops.near_field_transfer(win, pix, lam, float(np.mean(p["defocus_array"])), float(p["Cs"]))
            amp = np.sqrt(np.clip(mp, 0, None))
            probe = np.fft.ifft2(np.fft.fft2(amp) * h.conj())[..., None]
            say("probe built from the mean image, propagated back by the mean defocus")
        else:  # beam initialisation: pypty/initialize/probe.py
            if up > 1:  # spread each detector pixel over u x u model pixels
                mp = np.fft.fftshift(ops.bin_pattern_adjoint(np, np.fft.ifftshift(mp)[None], up)[0]) / up**2
            probe, how = probe_from_parameters(dict(p, mean_pattern=mp), mp, win, pix)
            say(how)  # "probe built from the ..." (pypty/initialize/probe.py)
        if p["probe_marker"] is not None:
            k = int(np.max(p["probe_marker"])) + 1
            probe = np.repeat(probe[..., None], k, axis=3)
    probe = np.asarray(probe)
    probe_4d = probe.ndim == 4
    if probe.ndim == 2:
        probe = probe[..., None]
    if probe.ndim == 3:
        probe = probe[..., None]
    if probe.ndim != 4 or probe.shape[:2] != win:
        raise _err("probe", f"expected shape ({win[0]}, {win[1]}, modes) or ({win[0]}, {win[1]}, modes, subscans) "
                            f"to match the preprocessed patterns (after data_bin/data_pad, times "
                            f"upsample_pattern), got {probe.shape}")
    probe_int = np.transpose(probe, (3, 2, 0, 1)).astype(np.complex128)  # (K, Mp, Y, X), a copy
    power = float(np.sum(np.abs(probe_int) ** 2)) / probe_int.shape[0]
    if power <= 0:
        raise _err("probe", "is zero everywhere")
    if mean_total is not None and not near:
        ratio = mean_total / power
        if not 0.5 <= ratio <= 2.0:
            warnings.warn(f"parameter 'probe': its intensity sum |probe|^2 = {power:.4g} differs from the mean "
                          f"counts per pattern {mean_total:.4g}; the probe is rescaled by {math.sqrt(ratio):.4g} "
                          f"in amplitude", stacklevel=4)
            probe_int = probe_int * np.sqrt(ratio)
    return probe_int, probe_4d


def _background(p, arrays, kw, detector, compressed, bk):
    bg = p["static_background"]
    if np.all(np.asarray(bg) == 0):
        return
    pad = 0 if compressed else int(p["data_pad"])
    mask = np.zeros(detector)
    mask[pad:detector[0] - pad, pad:detector[1] - pad] = 1.0
    if np.ndim(bg) == 0:
        arr = float(bg) * mask
    else:
        arr = np.array(bg, dtype=np.float64)
        inner = (detector[0] - 2 * pad, detector[1] - 2 * pad)
        if arr.shape == inner and pad:
            arr = np.pad(arr, pad)
        if arr.shape != detector:
            raise _err("static_background", f"expected shape {detector} (the preprocessed pattern) or {inner} "
                                            f"(before data_pad), got {arr.shape}")
        if arr.min() < 0:
            raise _err("static_background", f"must be >= 0 counts, smallest value {arr.min():.3g}")
        arr = arr * mask
    arrays["static_background"] = bk.asarray(np.fft.ifftshift(arr))
    kw["background_mask"] = bk.asarray(np.fft.ifftshift(mask))


def _aberrations(p, arrays, kw, n, bk):
    ab = np.array(p["aberrations_array"], dtype=np.float64)
    marker = p["aberration_marker"]
    if not (np.any(ab != 0) or may_be_on(p["update_aberrations_array"]) or marker is not None):
        return
    if marker is not None:
        marker = np.asarray(marker, dtype=np.int64)
        if marker.shape != (n,) or marker.min() < 0 or marker.max() >= ab.shape[0]:
            raise _err("aberration_marker", f"expected {n} integers in [0, {ab.shape[0] - 1}] (rows of "
                                            f"aberrations_array), got shape {marker.shape}")
        kw["aberration_marker"] = marker
    arrays["aberrations_array"] = bk.asarray(ab)
    kw["n_aberrations"] = ab.shape[1]


def _phase_plates(path, n, win, cdt, allow_external=False):
    import h5py

    from ..data.sources import hdf5_dataset
    from ..parameters import PyptyParameterError

    try:
        with h5py.File(path, "r") as fh:
            if "configs" not in fh:
                raise _err("phase_plate_in_h5", f"{path!r} has no dataset 'configs' (found {list(fh.keys())})")
            plates = np.asarray(hdf5_dataset(fh, "configs", path, "phase_plate_in_h5", allow_external,
                                             PyptyParameterError)[...])
    except OSError as exc:
        raise _err("phase_plate_in_h5", f"{path!r} is not a readable HDF5 file: {exc}") from exc
    if plates.shape != (n,) + tuple(win):
        raise _err("phase_plate_in_h5", f"dataset 'configs' must have shape ({n}, {win[0]}, {win[1]}), got "
                                        f"{plates.shape}")
    if plates.dtype.kind not in "biufc":
        raise _err("phase_plate_in_h5", f"dataset 'configs' of {path!r} must hold numbers, got dtype {plates.dtype}")
    bad = ~np.isfinite(plates)
    if np.any(bad):
        i = np.unravel_index(int(np.flatnonzero(bad)[0]), plates.shape)
        raise _err("phase_plate_in_h5", f"dataset 'configs' of {path!r} holds {int(bad.sum())} NaN or inf value(s), "
                                        f"the first in the plate of pattern {int(i[0])}")
    if not np.iscomplexobj(plates):
        plates = np.exp(1j * plates.astype(float))  # real plates are phases in rad
    return np.fft.ifftshift(plates, axes=(-2, -1)).astype(cdt)
