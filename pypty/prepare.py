"""Turn validated parameters into device arrays, a data source and a model.

This is where the user layout (object (y, x, slices, modes), probe
(y, x, modes)) is converted to the internal FFT-friendly layout (object
(slices, modes, y, x), probe (modes, y, x)), the object canvas is sized to the
scan, and the probe is built from the data when none is given.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .data import PatternSource, Preprocessing
from .initialize.probe import probe_from_parameters
from .memory import resolve_compute_batch
from .model import FarFieldModel
from .operators import fresnel_kernel
from .parameters import PyptyParameterError
from .physics import electron_wavelength_A
from .probe import aberration_phase, aberrations_as_dict

__all__ = ["Setup", "build_setup", "probe_from_mean_pattern"]


@dataclass
class Setup:
    """Everything a run needs besides the optimizer (see :func:`build_setup`)."""

    bk: object
    source: PatternSource
    model: FarFieldModel
    obj: object          # device (S, Mo, Ny, Nx)
    probe: object        # device (Mp, Y, X)
    positions: object    # device float64 (N, 2), canvas px
    position_offset: np.ndarray  # add to canvas positions to get user positions
    n_patterns: int
    compute_batch: int
    complex_dtype: np.dtype
    real_dtype: np.dtype
    get_data: Callable

    def close(self):
        self.source.close()


def probe_from_mean_pattern(mean_pattern, pixel_size_yx_A, acc_voltage_kV, aberrations=None,
                            extra_probe_defocus=0.0):
    """Probe whose diffraction intensity is the mean pattern, with aberration phases.

    psi(k) = sqrt(mean_pattern(k)) exp(-i chi(k)), chi from Krivanek
    coefficients (:func:`pypty.probe.aberration_phase`) with
    ``C10 -> C10 - extra_probe_defocus`` (defocus = -C10: a positive extra
    defocus moves the crossover further below the specimen, i.e. underfocus).

    Parameters
    ----------
    mean_pattern : ndarray, float, (Y, X), zero frequency at (Y//2, X//2), counts
    pixel_size_yx_A : (float, float), Å
    acc_voltage_kV : float
    aberrations : dict, sequence or None (Å)
    extra_probe_defocus : float (Å)

    Returns
    -------
    ndarray, complex128, (Y, X, 1); ``sum |probe|^2 = sum(mean_pattern)``.
    """
    ab = aberrations_as_dict(aberrations)
    ab["C10"] = ab.get("C10", 0.0) - float(extra_probe_defocus)
    amp = np.sqrt(np.clip(np.fft.ifftshift(np.asarray(mean_pattern, dtype=float)), 0, None))
    chi = aberration_phase(amp.shape, pixel_size_yx_A, acc_voltage_kV, ab)
    probe = np.fft.fftshift(np.fft.ifft2(amp * np.exp(-1j * chi), norm="ortho"))
    return probe[..., None]


def _err(name, msg):
    return PyptyParameterError(f"parameter '{name}': {msg}")


def build_setup(p: dict, bk, log=None) -> Setup:
    """Build data source, model and initial device arrays from validated parameters.

    Raises
    ------
    PyptyParameterError
        Shapes that do not fit together (probe vs patterns, positions vs
        data, object slices vs ``num_slices``, negative positions).
    pypty.data.DataError
        Unusable data.
    """
    say = log or (lambda m: None)
    xp = bk.xp
    cdt = np.dtype(np.complex128 if p["default_dtype"] == "double" else np.complex64)
    rdt = np.dtype(np.float64 if cdt == np.complex128 else np.float32)
    ddt = np.dtype(p["force_dataset_dtype"]) if p["force_dataset_dtype"] is not None else rdt
    prep = Preprocessing(multiplier=float(p["data_multiplier"]), pad=int(p["data_pad"]), bin=int(p["data_bin"]),
                         flip_ky=bool(p["flip_ky"]), shift=tuple(float(v) for v in p["data_shift_vector"]))
    source = PatternSource(p["data_path"], p["dataset"], prep, ddt,
                           load_one_by_one=bool(p["load_one_by_one"]) and not bool(p["preload_to_cpu"]),
                           scan_size=p["scan_size"])
    try:
        return _build(p, bk, source, xp, cdt, rdt, say)
    except BaseException:
        source.close()
        raise


def _build(p, bk, source, xp, cdt, rdt, say):
    n = source.n
    win = source.pattern_shape
    # ---------------------------------------------------------------- positions
    pos = p["positions"]
    pos = np.zeros((1, 2)) if pos is None else np.array(pos, dtype=np.float64)
    if pos.shape != (n, 2):
        raise _err("positions", f"expected shape ({n}, 2) (one (y, x) per pattern), got {pos.shape}")
    if pos.min() < 0:
        raise _err("positions", f"positions are top-left corners of the probe window in object px and "
                                f"must be >= 0; the smallest is {pos.min():.3f} (shift all positions)")
    offset = np.zeros(2)
    extent = pos  # positions the canvas must hold
    if p["sequence"] is not None and not callable(p["sequence"]) and not p["use_full_FOV"]:
        extent = pos[np.asarray(p["sequence"], dtype=np.int64)]
        offset = np.floor(extent.min(axis=0))
        pos, extent = pos - offset, extent - offset
    # ---------------------------------------------------------------- object
    n_slices = int(p["num_slices"])
    obj = p["obj"]
    if obj is None:
        obj = np.ones((1, 1, n_slices, 1), dtype=cdt)
    obj = np.asarray(obj)
    if obj.ndim != 4:
        raise _err("obj", f"expected 4 dimensions (y, x, slices, modes), got shape {obj.shape}")
    if obj.shape[2] != n_slices:
        raise _err("obj", f"has {obj.shape[2]} slices but num_slices = {n_slices}")
    need = (int(np.floor(extent[:, 0].max() + 0.5)) + win[0], int(np.floor(extent[:, 1].max() + 0.5)) + win[1])
    ny, nx = max(obj.shape[0], need[0]), max(obj.shape[1], need[1])
    if (ny, nx) != obj.shape[:2]:
        padded = np.ones((ny, nx) + obj.shape[2:], dtype=cdt)
        padded[:obj.shape[0], :obj.shape[1]] = obj
        obj = padded
        say(f"object canvas padded with ones to {ny} x {nx} px to hold the scan")
    obj_int = np.ascontiguousarray(np.transpose(obj, (2, 3, 0, 1)), dtype=cdt)
    # ---------------------------------------------------------------- probe
    pix = (float(p["pixel_size_y_A"]), float(p["pixel_size_x_A"]))
    probe = p["probe"]
    data_mean = source.mean_pattern()  # one pass over the data
    mean_total = float(data_mean.sum())
    if probe is None:  # beam initialisation: pypty/initialize/probe.py
        probe, how = probe_from_parameters(p, data_mean, win, pix)
        say(how)
    probe = np.asarray(probe)
    if probe.ndim == 2:
        probe = probe[..., None]
    if probe.ndim != 3 or probe.shape[:2] != win:
        raise _err("probe", f"expected shape ({win[0]}, {win[1]}, modes) to match the preprocessed patterns "
                            f"(after data_bin/data_pad), got {probe.shape}")
    power = float(np.sum(np.abs(probe) ** 2))
    if power <= 0:
        raise _err("probe", "is zero everywhere")
    ratio = mean_total / power
    if not 0.5 <= ratio <= 2.0:
        warnings.warn(f"parameter 'probe': its intensity sum |probe|^2 = {power:.4g} differs from the mean counts "
                      f"per pattern {mean_total:.4g}; the probe is rescaled by {np.sqrt(ratio):.4g} in amplitude",
                      stacklevel=3)
        probe = probe * np.sqrt(ratio)
    probe_int = np.ascontiguousarray(np.transpose(probe, (2, 0, 1)), dtype=cdt)
    # ---------------------------------------------------------------- propagators
    dz = np.atleast_1d(np.asarray(p["slice_distances"], dtype=float))
    if dz.size == 1:
        dz = np.full(n_slices, dz[0])
    if dz.size != n_slices:
        raise _err("slice_distances", f"expected 1 or num_slices = {n_slices} values, got {dz.size}")
    lam = electron_wavelength_A(p["acc_voltage"])
    kernels = [bk.asarray(fresnel_kernel(win, pix, lam, float(d), float(p["damping_cutoff_multislice"]),
                                         float(p["smooth_rolloff"])), dtype=cdt) for d in dz[:-1]]
    eps = max(1e-6 * mean_total / (win[0] * win[1]), 1e-12)
    model = FarFieldModel(bk, win, (ny, nx), kernels, cdt, loss_name=p["algorithm"], eps=eps)
    # ---------------------------------------------------------------- data access
    on_device = n * win[0] * win[1] * source.dtype.itemsize if bk.is_gpu and not p["load_one_by_one"] else 0
    batch, why = resolve_compute_batch(p, bk, n, win, (ny, nx), n_slices, obj_int.shape[1], probe_int.shape[0],
                                       cdt, on_device)  # "auto": pypty/memory.py
    say(why)
    if bk.is_gpu and not p["load_one_by_one"]:
        dev = bk.asarray(source.batch(np.arange(n)))
        get_data = lambda idx: dev[xp.asarray(idx)]  # noqa: E731
    else:
        get_data = lambda idx: bk.asarray(source.batch(idx))  # noqa: E731
    say(f"{n} patterns of {win[0]} x {win[1]} px, object {ny} x {nx} px x {n_slices} slices x "
        f"{obj_int.shape[1]} modes, probe modes {probe_int.shape[0]}, {cdt}, backend {bk.name}")
    return Setup(bk=bk, source=source, model=model, obj=bk.asarray(obj_int), probe=bk.asarray(probe_int),
                 positions=bk.asarray(pos), position_offset=offset, n_patterns=n, compute_batch=batch,
                 complex_dtype=cdt, real_dtype=rdt, get_data=get_data)
