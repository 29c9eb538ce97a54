"""Object filters (class D): charge flipping, Gaussian filters in xy and z, kr and kz filters, DCT threshold.

Every class here is a nonlinear edit of the object transmission ``O``
(internal layout ``(S, K, Ny, Nx)`` complex: S slices, K object modes, the
Ny x Nx canvas) between epochs (``design/regularizers.md`` sections 2.2 and
2.3).  In order of application (:data:`CONSTRAINTS`):

1. :class:`ChargeFlip` (``do_charge_flip``, ``cf_delta_phase``, ``cf_delta_abs``,
   ``cf_beta_phase``, ``cf_beta_abs``, ``fancy_sigma``, ``fancy_sigma_eps``): scale phi and a
   below delta max by beta, per (slice, mode), optionally between a Wiener deconvolution and a
   reconvolution;
2. :class:`GaussianFilter` (``apply_gaussian_filter``, ``apply_gaussian_filter_amplitude``):
   2-D Gaussian of the phasor exp(i phi) and of a, per (slice, mode);
3. :class:`GaussianFilterZ` (``apply_gaussian_filter_z``, ``apply_gaussian_filter_z_amplitude``):
   1-D Gaussian of the phasor and of a along the slices;
4. :class:`KrFilter` (``kr_filter_radius``, ``kr_filter_width``, ``kr_filter_obj_type``):
   lateral sigmoid low-pass of phi and/or A, per (slice, mode);
5. :class:`KzFilter` (``kz_filter_beta``, ``kz_filter_alpha``, ``kz_filter_obj_type``,
   ``kz_filter_amplitude_factor``): 3-D arctan missing-wedge filter of phi and/or A, per mode;
6. :class:`DctThreshold` (``dct_keep_fraction``, ``dct_obj_type``): keep the largest DCT-II
   coefficients of phi and/or A (global ranking).

Notation: ``phi = arg O`` (rad, principal value in (-pi, pi]),
``A = abs(O)``, ``a = -ln max(abs(O), 1e-12)`` (the absorption), all
real arrays of the shape of ``O``.  ``O' = exp(-a') exp(i phi')`` or
``O' = A' exp(i phi')`` rebuilds the object; the part (phase or amplitude)
that a filter does not touch keeps its value.  A negative ``A'`` (possible
after the kr, kz and DCT filters, which act linearly on A) gives the
complex number ``A' exp(i phi')``, i.e. the phase turns by pi, as PtyRAD's
``torch.polar`` does.

Common rules, for every class:

* It acts only in epochs in which ``"obj"`` is refined
  (``"obj" in ctx.settings.refine``), as PyPty does with ``update_obj``;
  otherwise it returns ``({}, UNCHANGED)``.
* With ``phase_only_obj`` (``ctx.settings.phase_only_obj``) the amplitude
  parts are skipped: the ``obj_phase`` block keeps ``abs(O) = 1``, so an
  amplitude edit would be dropped by the next step anyway.
* The input arrays are never modified; a new array of the input's dtype is
  returned, with ``Change("reset", reason)`` (the engine resets the L-BFGS
  history and re-evaluates the loss and gradient).  ``UNCHANGED`` is returned
  when the map is the identity (nothing flipped, a single slice for the z
  filter, ...).
* Code runs on NumPy and CuPy (``self.xp``).  The Gaussian filters are a
  separable truncated (4 sigma) kernel with ``'nearest'`` (edge-replicate)
  boundaries written with ``xp.pad`` (:func:`gaussian_filter1d_nearest`,
  checked against ``scipy.ndimage.gaussian_filter1d(mode="nearest",
  truncate=4)``); FFT-based maps are periodic.
* Each class has ``check_params(p) -> list of str`` (cross-checks, messages
  naming the parameter).  A filter on in consecutive epochs resets the L-BFGS
  history every epoch: validation warns about that for every class-D
  constraint (``RESETS_HISTORY``; checked in :mod:`pypty.parameters.consistency`).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.fft

from ..parameters.schedule import may_be_on
from .base import UNCHANGED, Change, ParamsConstraint

__all__ = ["CONSTRAINTS", "OBJ_TYPES", "ChargeFlip", "DctThreshold", "GaussianFilter", "GaussianFilterZ", "KrFilter",
           "KzFilter", "gaussian_convolve", "gaussian_filter1d_nearest", "gaussian_kernel1d", "gaussian_otf", "kr_mask",
           "kz_weight", "wiener_deconvolve"]

#: values of the ``*_obj_type`` rows
OBJ_TYPES = ("phase", "amplitude", "both")
#: floor of abs(O) in a = -ln max(abs(O), _TINY)
_TINY = 1e-12
#: truncation of the Gaussian kernels, in sigmas (scipy.ndimage's default)
_TRUNCATE = 4.0


# ============================================================================ helpers
def _constant(value):
    """(True, value) for a constant parameter value, (False, None) for an epoch-dependent one."""
    if callable(value) and not isinstance(value, type):
        return False, None
    return True, value


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def positive_number(v) -> bool:
    """The switch rule of the constraints whose parameter is a strength, on when > 0 (a number, not a bool)."""
    return _is_number(v) and float(v) > 0


def _on(v) -> bool:
    return v is not None and v is not False and bool(v)


def _real_dtype(a):
    return np.finfo(a.dtype).dtype


def _refines_obj(ctx) -> bool:
    return "obj" in tuple(ctx.settings.refine)


def _phase_only(ctx) -> bool:
    return bool(getattr(ctx.settings, "phase_only_obj", False))


def _parts(obj_type: str, ctx) -> tuple:
    """(do_phase, do_amplitude) for an ``*_obj_type`` value; the amplitude is off with ``phase_only_obj``."""
    if obj_type not in OBJ_TYPES:
        raise ValueError(f"obj_type must be one of {OBJ_TYPES}, got {obj_type!r}")
    return obj_type in ("phase", "both"), obj_type in ("amplitude", "both") and not _phase_only(ctx)


def _absorption(xp, obj):
    """a = -ln max(abs(O), 1e-12), real (dtype of abs(O))."""
    return -xp.log(xp.maximum(xp.abs(obj), _TINY))


def _phasor(xp, obj):
    """exp(i arg O) (1 where O = 0), dtype of O."""
    return xp.exp(1j * xp.angle(obj)).astype(obj.dtype)


def _rfftn(bk, a, axes):
    """Unitary real FFT over ``axes`` (scipy.fft with ``bk.workers`` on NumPy)."""
    if bk.is_gpu:
        return bk.xp.fft.rfftn(a, axes=axes, norm="ortho")
    return scipy.fft.rfftn(a, axes=axes, norm="ortho", workers=bk.workers)


def _irfftn(bk, a, shape, axes):
    """Inverse of :func:`_rfftn` for a real array of ``shape``."""
    s = [shape[ax] for ax in axes]
    if bk.is_gpu:
        return bk.xp.fft.irfftn(a, s=s, axes=axes, norm="ortho")
    return scipy.fft.irfftn(a, s=s, axes=axes, norm="ortho", workers=bk.workers)


def _uniform_dz(slice_distances) -> float:
    """The common slice distance (Å); ValueError when the distances differ."""
    dz = np.atleast_1d(np.asarray(slice_distances, dtype=float))
    if dz.size > 1 and not np.allclose(dz, dz[0], rtol=1e-9, atol=0.0):
        raise ValueError(f"needs uniform slice_distances, got {dz.tolist()}")
    return float(dz[0])


def _slice_problem(p, name) -> list:
    """A message when ``slice_distances`` (parameter row) is not uniform."""
    dz = np.atleast_1d(np.asarray(p.get("slice_distances", (10.0,)), dtype=float))
    if dz.size > 1 and not np.allclose(dz, dz[0], rtol=1e-9, atol=0.0):
        return [(f"parameter '{name}': needs uniform 'slice_distances' (one common value), got "
                 f"{dz.size} values from {dz.min():g} to {dz.max():g} Å")]
    return []


def _choice_problem(p, name) -> list:
    const, v = _constant(p.get(name, "both"))
    if const and v not in OBJ_TYPES:
        return [f"parameter '{name}': must be one of {', '.join(repr(c) for c in OBJ_TYPES)}, got {v!r}"]
    return []


def _number_problem(p, name, default, lo=None, lo_open=False, hi=None, hi_open=False, what="") -> list:
    """A message when the constant value of ``name`` is not a number in the given interval."""
    const, v = _constant(p.get(name, default))
    if not const:
        return []
    ok = _is_number(v) and math.isfinite(float(v))
    if ok and lo is not None:
        ok = float(v) > lo if lo_open else float(v) >= lo
    if ok and hi is not None:
        ok = float(v) < hi if hi_open else float(v) <= hi
    if ok:
        return []
    return [f"parameter '{name}': must be {what}, got {v!r}"]


# ============================================================================ Gaussian kernels
def gaussian_kernel1d(sigma: float, truncate: float = _TRUNCATE) -> np.ndarray:
    """Normalised sampled Gaussian, the kernel of ``scipy.ndimage.gaussian_filter1d``.

    Parameters
    ----------
    sigma : float > 0
        Standard deviation in samples (px or slices).
    truncate : float
        Half-width ``r = int(truncate * sigma + 0.5)`` in sigmas.

    Returns
    -------
    numpy.ndarray float64 (2 r + 1,)
        ``w[j] = exp(-(j - r)^2 / (2 sigma^2)) / sum``.
    """
    r = int(truncate * float(sigma) + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    w = np.exp(-0.5 * x * x / (float(sigma) ** 2))
    return w / w.sum()


def gaussian_filter1d_nearest(xp, a, sigma: float, axis: int, truncate: float = _TRUNCATE):
    """Truncated Gaussian filter along one axis with ``'nearest'`` (edge-replicate) boundaries.

    The same map as ``scipy.ndimage.gaussian_filter1d(a, sigma, axis, mode="nearest",
    truncate=truncate)``, written with ``xp.pad`` and a sum of shifted slices so that it
    runs on NumPy and CuPy arrays, real or complex (the real and imaginary parts are
    filtered alike).

    Parameters
    ----------
    xp : module
        numpy or cupy.
    a : array, real or complex, any shape
    sigma : float >= 0
        In samples of ``axis``; 0 returns ``a`` itself.
    axis : int

    Returns
    -------
    array of the shape and dtype of ``a`` (a new array unless sigma = 0)::

        out[..., i, ...] = sum_j w[j] a[..., clip(i + j - r, 0, n - 1), ...]
    """
    if sigma <= 0:
        return a
    w = gaussian_kernel1d(sigma, truncate)
    r = (w.size - 1) // 2
    axis = axis % a.ndim
    n = a.shape[axis]
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r, r)
    ap = xp.pad(a, pad, mode="edge")
    idx = [slice(None)] * a.ndim

    def part(j):
        idx[axis] = slice(j, j + n)
        return ap[tuple(idx)]

    out = part(0) * float(w[0])
    for j in range(1, w.size):
        out += part(j) * float(w[j])
    return out.astype(a.dtype, copy=False)


def _smooth(xp, a, sigmas: dict):
    """Separable Gaussian: ``sigmas`` maps axis -> sigma (0 = that axis untouched)."""
    for axis, sigma in sigmas.items():
        a = gaussian_filter1d_nearest(xp, a, float(sigma), axis)
    return a


def gaussian_otf(shape_yx, sigma: float) -> np.ndarray:
    """Transfer function of the periodic, origin-centred Gaussian of :class:`ChargeFlip`'s ``fancy_sigma``.

    ``g(y, x) = exp(-(y^2 + x^2) / (2 sigma^2)) / sum`` with (y, x) the signed periodic
    distances ``fftfreq(N) * N`` (px) from pixel (0, 0), so ``g`` is even and its DFT is
    real, with ``g_hat(0) = 1``.  Convolving with ``g`` is ``F^-1[g_hat F x]`` (unitary F).

    Parameters
    ----------
    shape_yx : (int, int)
        (Ny, Nx) px.
    sigma : float > 0
        Standard deviation in px.

    Returns
    -------
    numpy.ndarray float64 (Ny, Nx), FFT order.
    """
    ny, nx = (int(n) for n in shape_yx)
    y = np.fft.fftfreq(ny) * ny
    x = np.fft.fftfreq(nx) * nx
    g = np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2.0 * float(sigma) ** 2))
    g /= g.sum()
    return np.fft.fft2(g).real


def _otf_half(bk, shape, sigma, dtype):
    """:func:`gaussian_otf` on the rfft half-plane (Ny, Nx//2 + 1), on the device, real ``dtype``."""
    return bk.asarray(gaussian_otf(shape[-2:], sigma)[:, : shape[-1] // 2 + 1], dtype=dtype)


def gaussian_convolve(bk, x, sigma: float):
    """Periodic convolution of each (y, x) plane of the real array ``x`` with g_sigma: ``F^-1[g_hat F x]``.

    Parameters
    ----------
    bk : pypty.backend.Backend
    x : real array (..., Ny, Nx)
    sigma : float > 0
        px (:func:`gaussian_otf`).

    Returns
    -------
    real array of the shape and dtype of ``x``.
    """
    axes = (-2, -1)
    otf = _otf_half(bk, x.shape, sigma, x.dtype)
    return _irfftn(bk, _rfftn(bk, x, axes) * otf, x.shape, axes).astype(x.dtype, copy=False)


def wiener_deconvolve(bk, x, sigma: float, kappa: float):
    """Wiener deconvolution of each (y, x) plane of ``x`` by g_sigma (design section 3.13).

    ``x_d = F^-1[ g_hat F x / (g_hat^2 + kappa) ]`` (g_hat real and even, so conj(g_hat) = g_hat).

    Parameters
    ----------
    bk : pypty.backend.Backend
    x : real array (..., Ny, Nx)
    sigma : float > 0
        px.
    kappa : float > 0
        ``fancy_sigma_eps``; the noise gain is at most 1 / (2 sqrt(kappa)).

    Returns
    -------
    real array of the shape and dtype of ``x``.
    """
    axes = (-2, -1)
    otf = _otf_half(bk, x.shape, sigma, x.dtype)
    return _irfftn(bk, _rfftn(bk, x, axes) * (otf / (otf * otf + kappa)), x.shape, axes).astype(x.dtype, copy=False)


# ============================================================================ 1. charge flipping
def _fancy_sigmas(value) -> tuple:
    """``fancy_sigma`` -> (sigma_phi or None, sigma_a or None)."""
    if value is None or value is False:
        return None, None
    if _is_number(value):
        return float(value), float(value)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return tuple(None if v is None else float(v) for v in value)
    raise ValueError(f"fancy_sigma must be None, a float > 0 or a pair (sigma_phi or None, sigma_a or None), "
                     f"got {value!r}")


class ChargeFlip(ParamsConstraint):
    """Charge flipping of the object phase and absorption (design sections 3.12 and 3.13).

    Charge flipping (Oszlányi & Sütő, Acta Cryst. A 60, 134-141, 2004) changes the sign
    of the weak part of a density that should be positive; PyPty's variant
    (``pypty@2f1c402:pypty/objective.py:1100-1107``) scales it by a factor beta.  Per
    slice s and mode k, for x = phi (``cf_delta_phase``, ``cf_beta_phase``) and for
    x = a (``cf_delta_abs``, ``cf_beta_abs``)::

        m = max_{y,x} x[s, k]
        x'[s, k, y, x] = beta x[s, k, y, x]   where x[s, k, y, x] < delta m   (and m > 0)
                         x[s, k, y, x]        elsewhere
        O' = exp(-a') exp(i phi')

    The thresholds are relative to the maximum over the whole canvas slice (vacuum
    margins included, as in PyPty).  A slice whose maximum is <= 0 is left unchanged
    (the rule would otherwise flip an unintended set).  With beta < 0, flipping the
    absorption makes ``abs(O') > 1`` where a weak positive absorption (0 < a < delta m)
    becomes negative: this is intended (design 3.12 (b) 5).
    A part with beta = 1 is the identity and is skipped.

    ``fancy_sigma`` (section 3.13): None (plain flip), a float sigma (px, both parts), or
    a pair (sigma_phi or None, sigma_a or None).  For a part with a sigma, per (s, k)::

        x_d = F^-1[ g_hat F x / (g_hat^2 + kappa) ]        (Wiener deconvolution; g_hat real)
        flip x_d with its own thresholds (delta max x_d)
        x'  = F^-1[ g_hat F (flipped x_d) ]                (reconvolution)

    with g the periodic, origin-centred, normalised Gaussian of std sigma px
    (:func:`gaussian_otf`) and kappa = ``fancy_sigma_eps``.  There is no min subtraction
    and no translation (PyPty's phase branch was rolled by half the canvas).  A slice
    part in which nothing is flipped keeps its original x (not the lossy round trip).

    Acts only when ``"obj"`` is in ``ctx.settings.refine`` (PyPty: ``update_obj``).
    Deviation from the design text: with ``phase_only_obj`` the absorption is not flipped.
    """

    name = "charge_flip"
    PARAMS = ("do_charge_flip", "cf_delta_phase", "cf_delta_abs", "cf_beta_phase", "cf_beta_abs",
              "fancy_sigma", "fancy_sigma_eps")
    SWITCH = "do_charge_flip"
    RESETS_HISTORY = True

    def _flip_part(self, x, delta, beta, sigma, kappa):
        """(x', touched): x' real (S, K, Ny, Nx); touched bool, broadcastable to x."""
        xp = self.xp
        if sigma is None:
            m = x.max(axis=(-2, -1), keepdims=True)
            mask = (x < delta * m) & (m > 0)
            return xp.where(mask, beta * x, x), mask
        xd = wiener_deconvolve(self.bk, x, sigma, kappa)
        m = xd.max(axis=(-2, -1), keepdims=True)
        mask = (xd < delta * m) & (m > 0)
        xr = gaussian_convolve(self.bk, xp.where(mask, beta * xd, xd), sigma)
        touched = mask.any(axis=(-2, -1), keepdims=True)
        return xp.where(touched, xr, x), touched

    def apply(self, arrays: dict, epoch: int, ctx) -> tuple:
        """Flip the phase and the absorption of every (slice, mode).

        Parameters
        ----------
        arrays : dict
            ``"obj"``: complex (S, K, Ny, Nx) transmission (dimensionless).
        epoch : int
            Resolves ``cf_*``, ``fancy_sigma`` and ``fancy_sigma_eps``.
        ctx : pypty.constraints.base.Context
            ``settings.refine``, ``settings.phase_only_obj``.

        Returns
        -------
        ({"obj": complex (S, K, Ny, Nx), dtype of the input}, Change("reset", ...)) or
        ({}, UNCHANGED) when nothing was flipped (or the object is not refined).
        """
        if not _refines_obj(ctx):
            return {}, UNCHANGED
        xp = self.xp
        obj = arrays["obj"]
        s_phi, s_a = _fancy_sigmas(self.at("fancy_sigma", epoch))
        kappa = float(self.at("fancy_sigma_eps", epoch))
        parts = [("phase", float(self.at("cf_delta_phase", epoch)), float(self.at("cf_beta_phase", epoch)), s_phi)]
        if not _phase_only(ctx):
            parts.append(("absorption", float(self.at("cf_delta_abs", epoch)), float(self.at("cf_beta_abs", epoch)),
                          s_a))
        new, touched, done = {}, None, []
        for part, delta, beta, sigma in parts:
            if beta == 1.0:
                continue
            x = xp.angle(obj) if part == "phase" else _absorption(xp, obj)
            x2, t = self._flip_part(x, delta, beta, sigma, kappa)
            if not bool(xp.any(t)):
                continue
            new[part] = x2
            touched = t if touched is None else (touched | t)
            done.append(part)
        if not done:
            return {}, UNCHANGED
        phi = new["phase"] if "phase" in new else xp.angle(obj)
        amp = xp.exp(-new["absorption"]) if "absorption" in new else xp.abs(obj)
        out = xp.where(touched, amp * xp.exp(1j * phi), obj).astype(obj.dtype, copy=False)
        fancy = (s_phi is not None and "phase" in done) or (s_a is not None and "absorption" in done)
        how = " with fancy_sigma" if fancy else ""
        return {"obj": out}, Change("reset", f"charge flip of the {' and '.join(done)}{how}")

    @classmethod
    def check_params(cls, p: dict) -> list:
        """``fancy_sigma`` is None, a float > 0 or a pair of (float > 0 or None); ``fancy_sigma_eps`` > 0."""
        out = []
        const, v = _constant(p.get("fancy_sigma"))
        if const and v is not None:
            pair = isinstance(v, (tuple, list)) and len(v) == 2 and all(
                e is None or (_is_number(e) and math.isfinite(float(e)) and float(e) > 0) for e in v)
            single = _is_number(v) and math.isfinite(float(v)) and float(v) > 0
            if not (pair or single):
                out.append(f"parameter 'fancy_sigma': must be None, a float > 0 (px) or a pair (sigma_phase or "
                           f"None, sigma_abs or None) of floats > 0, got {v!r}")
        out += _number_problem(p, "fancy_sigma_eps", 1e-3, lo=0, lo_open=True, what="a float > 0")
        for name in ("cf_delta_phase", "cf_delta_abs", "cf_beta_phase", "cf_beta_abs"):
            out += _number_problem(p, name, 0.0, what="a finite float")
        return out



# ============================================================================ 2. Gaussian filters in xy
def _sigma_value(value, name, pair_ok=True):
    """Filter switch value -> None (off), or sigma: float, or (sigma_y, sigma_x) when ``pair_ok``."""
    if value is None or value is False or (isinstance(value, (bool, np.bool_)) and not value):
        return None
    if value is True or (isinstance(value, np.bool_) and value):
        return 1.0
    if _is_number(value):
        v = float(value)
        if v < 0 or not math.isfinite(v):
            raise ValueError(f"parameter '{name}': sigma must be >= 0, got {value!r}")
        return v if v > 0 else None
    if pair_ok and isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_number(e) for e in value):
        sy, sx = (float(e) for e in value)
        if min(sy, sx) < 0 or not (math.isfinite(sy) and math.isfinite(sx)):
            raise ValueError(f"parameter '{name}': sigmas must be >= 0, got {value!r}")
        return (sy, sx) if max(sy, sx) > 0 else None
    raise ValueError(f"parameter '{name}': expected False, True, a sigma >= 0"
                     f"{' or a pair (sigma_y, sigma_x)' if pair_ok else ''}, got {value!r}")


def _sigma_problem(p, name, pair_ok) -> list:
    const, v = _constant(p.get(name, False))
    if not const:
        return []
    try:
        _sigma_value(v, name, pair_ok)
    except ValueError as exc:
        return [str(exc)]
    return []


def _blur_object(xp, obj, sigmas_phase, sigmas_amp):
    """O' from blurring the phasor and/or a with the separable Gaussians ``{axis: sigma}`` (None: part kept)."""
    if sigmas_phase is not None:
        v = _smooth(xp, _phasor(xp, obj), sigmas_phase)
        ph = xp.exp(1j * xp.angle(v))
    else:
        ph = _phasor(xp, obj)
    amp = xp.exp(-_smooth(xp, _absorption(xp, obj), sigmas_amp)) if sigmas_amp is not None else xp.abs(obj)
    return (amp * ph).astype(obj.dtype, copy=False)


class _PhaseAbsorptionBlur(ParamsConstraint):
    """Shared part of the Gaussian filters: two switch rows (phase ``SWITCH``, absorption ``_AMP``).

    Subclasses set the rows, ``PAIR_OK`` (a (sigma_y, sigma_x) pair accepted),
    ``UNIT`` and ``WHERE`` (for the message) and ``_axes(sigma) -> {axis:
    sigma}``; :meth:`_blur` does the edit (object refined, absorption skipped
    with ``phase_only_obj``).
    """

    _AMP = ""
    PAIR_OK, UNIT, WHERE = False, "", ""
    RESETS_HISTORY = True

    @classmethod
    def from_params(cls, p: dict, bk):
        return cls(p, bk) if may_be_on(p[cls.SWITCH]) or may_be_on(p[cls._AMP]) else None

    def _sigmas(self, epoch):
        return (_sigma_value(self.at(self.SWITCH, epoch), self.SWITCH, pair_ok=self.PAIR_OK),
                _sigma_value(self.at(self._AMP, epoch), self._AMP, pair_ok=self.PAIR_OK))

    @classmethod
    def switch_rows(cls) -> tuple:
        return (cls.SWITCH, cls._AMP)

    @classmethod
    def switched_on(cls, row, value) -> bool:
        return _sigma_value(value, row, pair_ok=cls.PAIR_OK) is not None

    def _axes(self, sigma) -> dict:
        raise NotImplementedError

    def _blur(self, arrays, epoch, ctx):
        if not _refines_obj(ctx):
            return {}, UNCHANGED
        sp, sa = self._sigmas(epoch)
        if _phase_only(ctx):
            sa = None
        if sp is None and sa is None:
            return {}, UNCHANGED
        out = _blur_object(self.xp, arrays["obj"], None if sp is None else self._axes(sp),
                           None if sa is None else self._axes(sa))
        what = " and ".join(f"{n} (sigma {s} {self.UNIT})" for n, s in (("phase", sp), ("absorption", sa))
                            if s is not None)
        return {"obj": out}, Change("reset", f"Gaussian filter in {self.WHERE} of the {what}")


class GaussianFilter(_PhaseAbsorptionBlur):
    """Gaussian filters of the object phase and absorption in (y, x) (design section 3.9).

    Values of ``apply_gaussian_filter`` (phase) and ``apply_gaussian_filter_amplitude``
    (absorption): False or 0 = off, True = 1 px, a float sigma > 0 (px), or a pair
    (sigma_y, sigma_x) px.  Per slice s and mode k, 2-D over (y, x) only (no leak across
    slices or modes, whatever ``smart_memory``)::

        phi' = arg(G_sigma * exp(i phi))          (wrap-safe; = G_sigma * phi to second order)
        a'   = G_sigma * a,   a = -ln max(abs(O), 1e-12)
        O'   = exp(-a') exp(i phi')

    G_sigma: separable truncated (4 sigma) Gaussian with ``'nearest'`` boundaries
    (:func:`gaussian_filter1d_nearest`; = ``scipy.ndimage.gaussian_filter``, PyPty's
    ``pypty@2f1c402:pypty/iterative.py:938-982``).  A filter that is off keeps its part
    exactly: ``abs(O') = abs(O)`` when only the phase is filtered, ``arg O' = arg O`` when
    only the absorption is.  PyPty filters after each accepted step; here it runs at the
    start of the epoch (section 2.3), and only when ``"obj"`` is in
    ``ctx.settings.refine``.  With ``phase_only_obj`` the absorption filter is skipped.
    """

    name = "gaussian_filter"
    PARAMS = ("apply_gaussian_filter", "apply_gaussian_filter_amplitude")
    SWITCH = "apply_gaussian_filter"
    _AMP = "apply_gaussian_filter_amplitude"
    PAIR_OK, UNIT, WHERE = True, "px", "(y, x)"

    def _axes(self, sigma):
        sy, sx = sigma if isinstance(sigma, tuple) else (sigma, sigma)
        return {-2: sy, -1: sx}

    def apply(self, arrays: dict, epoch: int, ctx) -> tuple:
        """Blur the phase and/or the absorption of every (slice, mode) in (y, x).

        Parameters
        ----------
        arrays : dict
            ``"obj"``: complex (S, K, Ny, Nx).
        epoch : int
        ctx : pypty.constraints.base.Context
            ``settings.refine``, ``settings.phase_only_obj``.

        Returns
        -------
        ({"obj": complex (S, K, Ny, Nx), dtype of the input}, Change("reset", ...)) or ({}, UNCHANGED).
        """
        return self._blur(arrays, epoch, ctx)

    @classmethod
    def check_params(cls, p: dict) -> list:
        """Each value is False/True, a sigma >= 0 (px) or a pair (sigma_y, sigma_x) >= 0."""
        return _sigma_problem(p, cls.SWITCH, True) + _sigma_problem(p, cls._AMP, True)


# ============================================================================ 3. Gaussian filter in z
class GaussianFilterZ(_PhaseAbsorptionBlur):
    """Gaussian filters of the object phase and absorption along the slices (PtyRAD ``obj_zblur``, design 4.1, 4.2).

    Values of ``apply_gaussian_filter_z`` (phase) and ``apply_gaussian_filter_z_amplitude``
    (absorption): False or 0 = off, True = 1 slice, a float sigma > 0 (slices).  For each
    mode k and pixel (y, x), 1-D along the slice axis s::

        phi' = arg(G_sigma^z * exp(i phi)),   a' = G_sigma^z * a,   O' = exp(-a') exp(i phi')

    with a truncated (4 sigma) Gaussian and ``'nearest'`` (replicate) boundaries in z
    (PtyRAD: 5 taps, replicate, ``ptyrad@8ef86bd:src/ptyrad/core/constraints.py:125-138``).
    pypty filters a = -ln abs(O) where PtyRAD filters abs(O) (equal to first order near
    abs(O) = 1), and the phasor where PtyRAD filters phi (wrap-safe).  Needs uniform
    ``slice_distances`` (sigma counts slices).  S = 1 is the identity (UNCHANGED).
    Acts only when ``"obj"`` is in ``ctx.settings.refine``; the absorption part is skipped
    with ``phase_only_obj``.
    """

    name = "gaussian_filter_z"
    PARAMS = ("apply_gaussian_filter_z", "apply_gaussian_filter_z_amplitude")
    SWITCH = "apply_gaussian_filter_z"
    _AMP = "apply_gaussian_filter_z_amplitude"
    PAIR_OK, UNIT, WHERE = False, "slices", "z"

    def _axes(self, sigma):
        return {0: sigma}

    def apply(self, arrays: dict, epoch: int, ctx) -> tuple:
        """Blur the phase and/or the absorption along the slice axis.

        Parameters
        ----------
        arrays : dict
            ``"obj"``: complex (S, K, Ny, Nx).
        epoch : int
        ctx : pypty.constraints.base.Context
            ``settings.refine``, ``settings.phase_only_obj``.

        Returns
        -------
        ({"obj": complex (S, K, Ny, Nx), dtype of the input}, Change("reset", ...)) or ({}, UNCHANGED)
        (also for S = 1).
        """
        if arrays["obj"].shape[0] < 2:
            return {}, UNCHANGED
        return self._blur(arrays, epoch, ctx)

    @classmethod
    def check_params(cls, p: dict) -> list:
        """Each value is False/True or a sigma >= 0 (slices); uniform ``slice_distances`` when on."""
        out = _sigma_problem(p, cls.SWITCH, False) + _sigma_problem(p, cls._AMP, False)
        if may_be_on(p.get(cls.SWITCH, False)) or may_be_on(p.get(cls._AMP, False)):
            out += _slice_problem(p, cls.SWITCH if may_be_on(p.get(cls.SWITCH, False)) else cls._AMP)
        return out


# ============================================================================ 4. kr filter
def kr_mask(shape_yx, radius: float, width: float) -> np.ndarray:
    """Lateral sigmoid low-pass of :class:`KrFilter`, FFT order, float64 (Ny, Nx).

    ``s(f) = 1 / (1 + exp(10 (abs(f) - radius/2) / width))`` with
    ``f = (fftfreq(Ny), fftfreq(Nx))`` in cycles/px (radius 1 = Nyquist on each axis),
    written as ``(1 - tanh(z/2)) / 2`` to avoid overflow.
    """
    fy = np.fft.fftfreq(int(shape_yx[0]))
    fx = np.fft.fftfreq(int(shape_yx[1]))
    f = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    z = 10.0 * (f - 0.5 * float(radius)) / float(width)
    return 0.5 * (1.0 - np.tanh(0.5 * z))


class KrFilter(ParamsConstraint):
    """Lateral sigmoid low-pass of the object phase and/or amplitude (PtyRAD ``kr_filter``, design 4.1, 4.2).

    Per slice s and mode k, for x = phi and/or x = A = abs(O) (``kr_filter_obj_type``
    "phase", "amplitude" or "both")::

        x' = Re F^-1[ s F x ],   s(f) = 1 / (1 + exp(10 (abs(f) - r/2) / w))
        O' = A' exp(i phi')

    F: unitary 2-D DFT over (y, x) (periodic); f in cycles/px per axis (fftfreq);
    r = ``kr_filter_radius`` (fraction of Nyquist, 0 = off, epoch-dependent),
    w = ``kr_filter_width`` (cycles/px).  Source:
    ``ptyrad@8ef86bd:src/ptyrad/core/constraints.py:140-155, 506-517``.  The soft mask
    compounds with each application (it is not a projection).  phi is the principal value
    arg O: an object whose phase wraps within a slice gets filtered wrap jumps.  Acts only
    when ``"obj"`` is in ``ctx.settings.refine``; the amplitude part is skipped with
    ``phase_only_obj``.
    """

    name = "kr_filter"
    PARAMS = ("kr_filter_radius", "kr_filter_width", "kr_filter_obj_type")
    SWITCH = "kr_filter_radius"
    RESETS_HISTORY = True

    @classmethod
    def switched_on(cls, row, value) -> bool:
        return positive_number(value)

    def apply(self, arrays: dict, epoch: int, ctx) -> tuple:
        """Low-pass the phase and/or amplitude of every (slice, mode).

        Parameters
        ----------
        arrays : dict
            ``"obj"``: complex (S, K, Ny, Nx).
        epoch : int
        ctx : pypty.constraints.base.Context
            ``settings.refine``, ``settings.phase_only_obj``.

        Returns
        -------
        ({"obj": complex (S, K, Ny, Nx), dtype of the input}, Change("reset", ...)) or ({}, UNCHANGED).
        """
        if not _refines_obj(ctx):
            return {}, UNCHANGED
        do_phi, do_amp = _parts(self.at("kr_filter_obj_type", epoch), ctx)
        if not (do_phi or do_amp):
            return {}, UNCHANGED
        xp, obj = self.xp, arrays["obj"]
        radius, width = float(self.at(self.SWITCH, epoch)), float(self.at("kr_filter_width", epoch))
        shape, axes = obj.shape, (-2, -1)
        m = self.bk.asarray(kr_mask(shape[-2:], radius, width)[:, : shape[-1] // 2 + 1], dtype=_real_dtype(obj))

        def filt(x):
            return _irfftn(self.bk, _rfftn(self.bk, x, axes) * m, shape, axes)

        phi = filt(xp.angle(obj)) if do_phi else xp.angle(obj)
        amp = filt(xp.abs(obj)) if do_amp else xp.abs(obj)
        out = (amp * xp.exp(1j * phi)).astype(obj.dtype, copy=False)
        what = " and ".join(n for n, d in (("phase", do_phi), ("amplitude", do_amp)) if d)
        return {"obj": out}, Change("reset", f"kr filter (radius {radius:g}) of the {what}")

    @classmethod
    def check_params(cls, p: dict) -> list:
        """radius >= 0 (fraction of Nyquist), width > 0 (cycles/px), obj_type in OBJ_TYPES."""
        return (_number_problem(p, "kr_filter_radius", 0, lo=0, what="a float >= 0 (0 = off)")
                + _number_problem(p, "kr_filter_width", 0.05, lo=0, lo_open=True, what="a float > 0 (cycles/px)")
                + _choice_problem(p, "kr_filter_obj_type"))



# ============================================================================ 5. kz filter
def kz_weight(n_slices: int, shape_yx, pixel_size_yx_A, dz_A: float, beta: float, alpha: float) -> np.ndarray:
    """The 3-D weight ``W_a`` of :class:`KzFilter`, float64 (S, Ny, Nx), FFT order.

    ::

        q_z = fftfreq(S, dz),  q_y = fftfreq(Ny, d_y),  q_x = fftfreq(Nx, d_x)      (1/Å)
        q0  = (1/2) min(1/(Ny d_y), 1/(Nx d_x))
        W_beta = (2/pi) atan( beta^2 q_z^2 / (q_x^2 + q_y^2 + q0^2) )              (design 3.10)
        W_a = (1 - W_beta) exp(-alpha (f_x^2 + f_y^2)),   f = fftfreq(N) cycles/px

    0 < W_a <= 1 for alpha >= 0; W_a = exp(-alpha f^2) on the q_z = 0 plane.
    """
    ny, nx = (int(n) for n in shape_yx)
    dy, dx = (float(d) for d in pixel_size_yx_A)
    qz = np.fft.fftfreq(int(n_slices), float(dz_A))[:, None, None]
    qy = np.fft.fftfreq(ny, dy)[None, :, None]
    qx = np.fft.fftfreq(nx, dx)[None, None, :]
    q0 = 0.5 * min(1.0 / (ny * dy), 1.0 / (nx * dx))
    w_beta = (2.0 / np.pi) * np.arctan(float(beta) ** 2 * qz ** 2 / (qx ** 2 + qy ** 2 + q0 ** 2))
    fy = np.fft.fftfreq(ny)[None, :, None]
    fx = np.fft.fftfreq(nx)[None, None, :]
    return (1.0 - w_beta) * np.exp(-float(alpha) * (fx ** 2 + fy ** 2))


class KzFilter(ParamsConstraint):
    """Arctan missing-wedge filter of the object in 3-D (PtyRAD ``kz_filter`` in physical units, design 4.2, 3.10).

    For each mode k, over (s, y, x), for x = phi and/or x = A = abs(O)
    (``kz_filter_obj_type`` "phase", "amplitude" or "both")::

        x' = Re F3^-1[ W_a F3 x ]                    (W_a: :func:`kz_weight`)
        A'' = 1 + c (A' - 1)                         (amplitude only; c = kz_filter_amplitude_factor)
        O' = A'' exp(i phi')

    F3: unitary 3-D DFT over (s, y, x) (periodic in z: the top and bottom slices are
    neighbours; pad with vacuum slices if that matters).  beta = ``kz_filter_beta``
    (dimensionless, physical units: W_beta = 1/2 on the cone q_z / q_r = 1/beta;
    ``beta = beta_PtyRAD * d_x / dz``; 0 = off, epoch-dependent), alpha =
    ``kz_filter_alpha`` (px^2; it multiplies f^2 in cycles^2/px^2).  Pixel sizes and the
    (uniform) slice distance come from ``ctx.setup.model.pixel_size_yx_A`` and
    ``ctx.setup.model.slice_distances`` (Å).  With alpha = 0 the filter is one gradient
    step of length 1/(2 mu) on the ``beta_wedge`` loss term, and a contraction:
    ``norm(x') <= norm(x)``.  Source: ``ptyrad@8ef86bd:src/ptyrad/core/constraints.py:157-171,
    519-544``.  Acts only when ``"obj"`` is in ``ctx.settings.refine``; the amplitude part
    is skipped with ``phase_only_obj``.  UNCHANGED when the map is the identity (S = 1,
    alpha = 0, and no amplitude shrink).
    """

    name = "kz_filter"
    PARAMS = ("kz_filter_beta", "kz_filter_alpha", "kz_filter_obj_type", "kz_filter_amplitude_factor")
    SWITCH = "kz_filter_beta"
    RESETS_HISTORY = True

    @classmethod
    def switched_on(cls, row, value) -> bool:
        return positive_number(value)

    def apply(self, arrays: dict, epoch: int, ctx) -> tuple:
        """Filter the phase and/or amplitude of every mode in (s, y, x) Fourier space.

        Parameters
        ----------
        arrays : dict
            ``"obj"``: complex (S, K, Ny, Nx).
        epoch : int
        ctx : pypty.constraints.base.Context
            ``settings.refine``, ``settings.phase_only_obj``; ``setup.model.pixel_size_yx_A``
            (Å, Å) and ``setup.model.slice_distances`` (S,) Å, uniform.

        Returns
        -------
        ({"obj": complex (S, K, Ny, Nx), dtype of the input}, Change("reset", ...)) or ({}, UNCHANGED).

        Raises
        ------
        ValueError
            Non-uniform slice distances.
        """
        if not _refines_obj(ctx):
            return {}, UNCHANGED
        do_phi, do_amp = _parts(self.at("kz_filter_obj_type", epoch), ctx)
        beta, alpha = float(self.at(self.SWITCH, epoch)), float(self.at("kz_filter_alpha", epoch))
        c = float(self.at("kz_filter_amplitude_factor", epoch))
        xp, obj = self.xp, arrays["obj"]
        S = obj.shape[0]
        if not (do_phi or do_amp) or (S == 1 and alpha == 0 and (not do_amp or c == 1.0)):
            return {}, UNCHANGED
        model = ctx.setup.model
        try:
            dz = _uniform_dz(model.slice_distances)
        except ValueError as exc:
            raise ValueError(f"kz_filter_beta: {exc}") from None
        w = kz_weight(S, obj.shape[-2:], model.pixel_size_yx_A, dz, beta, alpha)
        w = self.bk.asarray(w[:, None, :, : obj.shape[-1] // 2 + 1], dtype=_real_dtype(obj))  # (S, 1, Ny, Nx//2+1)
        axes = (0, 2, 3)

        def filt(x):
            return _irfftn(self.bk, _rfftn(self.bk, x, axes) * w, x.shape, axes)

        phi = filt(xp.angle(obj)) if do_phi else xp.angle(obj)
        if do_amp:
            amp = 1.0 + c * (filt(xp.abs(obj)) - 1.0)
        else:
            amp = xp.abs(obj)
        out = (amp * xp.exp(1j * phi)).astype(obj.dtype, copy=False)
        what = " and ".join(n for n, d in (("phase", do_phi), ("amplitude", do_amp)) if d)
        return {"obj": out}, Change("reset", f"kz filter (beta {beta:g}, alpha {alpha:g}) of the {what}")

    @classmethod
    def check_params(cls, p: dict) -> list:
        """beta >= 0, alpha >= 0, amplitude factor in (0, 1], obj_type in OBJ_TYPES, uniform slices when on."""
        out = (_number_problem(p, "kz_filter_beta", 0, lo=0, what="a float >= 0 (0 = off)")
               + _number_problem(p, "kz_filter_alpha", 1.0, lo=0, what="a float >= 0 (px^2)")
               + _number_problem(p, "kz_filter_amplitude_factor", 0.9, lo=0, lo_open=True, hi=1,
                                 what="a float in (0, 1]")
               + _choice_problem(p, "kz_filter_obj_type"))
        if may_be_on(p.get(cls.SWITCH, 0)):
            out += _slice_problem(p, cls.SWITCH)
        return out



# ============================================================================ 6. DCT threshold
def _dctn(bk, x, inverse: bool):
    """Orthonormal DCT-II (or its inverse) over (y, x): cupyx.scipy.fft on CuPy, scipy.fft on NumPy.

    A CuPy without ``cupyx.scipy.fft.dctn`` falls back to the host (bk.to_numpy / bk.asarray).
    """
    if bk.is_gpu:
        try:
            import cupyx.scipy.fft as cfft

            f = cfft.idctn if inverse else cfft.dctn
            return f(x, type=2, axes=(-2, -1), norm="ortho")
        except (ImportError, AttributeError):
            host = bk.to_numpy(x)
            f = scipy.fft.idctn if inverse else scipy.fft.dctn
            return bk.asarray(f(host, type=2, axes=(-2, -1), norm="ortho"))
    f = scipy.fft.idctn if inverse else scipy.fft.dctn
    return f(x, type=2, axes=(-2, -1), norm="ortho", workers=bk.workers)


class DctThreshold(ParamsConstraint):
    """Keep the largest DCT coefficients of the object phase and/or amplitude (PtyRAD ``kr_thresh``, design 4.1, 4.2).

    For x = phi and/or x = A = abs(O) (``dct_obj_type``), with C the orthonormal 2-D
    DCT-II over (y, x) of each (slice, mode)::

        c = C x                                          (S, K, Ny, Nx)
        k = max(1, int(f * c.size)),   t = k-th largest abs(c)   (global ranking over s, k, y, x)
        x' = C^-1[ c * (abs(c) >= t) ]
        O' = A' exp(i phi')

    f = ``dct_keep_fraction`` in (0, 1] (1 = off; epoch-dependent).  Ties at t keep more
    than k coefficients.  The ranking is global across slices and modes, as in PtyRAD
    (``ptyrad@8ef86bd:src/ptyrad/core/constraints.py:173-185, 461-504``), and each part is
    ranked on its own.  The threshold is exact (``xp.partition``), not a sampled quantile.
    Applying the map twice with the same f changes nothing more (idempotent, up to
    rounding and the re-wrapping of phi).  The DCT runs with ``cupyx.scipy.fft.dctn`` on
    CuPy (host ``scipy.fft.dctn`` when that CuPy lacks it) and ``scipy.fft.dctn`` on NumPy.
    Acts only when ``"obj"`` is in ``ctx.settings.refine``; the amplitude part is skipped
    with ``phase_only_obj``.
    """

    name = "dct_threshold"
    PARAMS = ("dct_keep_fraction", "dct_obj_type")
    SWITCH = "dct_keep_fraction"
    RESETS_HISTORY = True

    @classmethod
    def from_params(cls, p: dict, bk):
        const, v = _constant(p[cls.SWITCH])
        return None if const and not cls.switched_on(cls.SWITCH, v) else cls(p, bk)

    @classmethod
    def switched_on(cls, row, value) -> bool:
        return _is_number(value) and float(value) < 1

    def _threshold(self, x, frac):
        xp = self.xp
        c = _dctn(self.bk, x, inverse=False)
        mag = xp.abs(c).ravel()
        n = int(mag.size)
        k = max(1, int(frac * n))
        if k >= n:
            return x
        t = xp.partition(mag, n - k)[n - k]
        return _dctn(self.bk, xp.where(xp.abs(c) >= t, c, 0), inverse=True).astype(x.dtype, copy=False)

    def apply(self, arrays: dict, epoch: int, ctx) -> tuple:
        """Hard-threshold the DCT coefficients of the phase and/or amplitude.

        Parameters
        ----------
        arrays : dict
            ``"obj"``: complex (S, K, Ny, Nx).
        epoch : int
        ctx : pypty.constraints.base.Context
            ``settings.refine``, ``settings.phase_only_obj``.

        Returns
        -------
        ({"obj": complex (S, K, Ny, Nx), dtype of the input}, Change("reset", ...)) or ({}, UNCHANGED).

        Raises
        ------
        ValueError
            ``dct_keep_fraction`` <= 0 at this epoch.
        """
        if not _refines_obj(ctx):
            return {}, UNCHANGED
        frac = float(self.at(self.SWITCH, epoch))
        if not frac > 0:
            raise ValueError(f"parameter 'dct_keep_fraction': must be in (0, 1], got {frac!r} at epoch {epoch}")
        do_phi, do_amp = _parts(self.at("dct_obj_type", epoch), ctx)
        xp, obj = self.xp, arrays["obj"]
        if frac >= 1 or not (do_phi or do_amp) or max(1, int(frac * obj.size)) >= obj.size:
            return {}, UNCHANGED
        phi = self._threshold(xp.angle(obj), frac) if do_phi else xp.angle(obj)
        amp = self._threshold(xp.abs(obj), frac) if do_amp else xp.abs(obj)
        out = (amp * xp.exp(1j * phi)).astype(obj.dtype, copy=False)
        what = " and ".join(n for n, d in (("phase", do_phi), ("amplitude", do_amp)) if d)
        return {"obj": out}, Change("reset", f"DCT threshold (keep {frac:g}) of the {what}")

    @classmethod
    def check_params(cls, p: dict) -> list:
        """0 < dct_keep_fraction <= 1; dct_obj_type in OBJ_TYPES."""
        return (_number_problem(p, "dct_keep_fraction", 1.0, lo=0, lo_open=True, hi=1,
                                what="a float in (0, 1] (1 = off)")
                + _choice_problem(p, "dct_obj_type"))



#: constraint classes of this module, in order of application
CONSTRAINTS: tuple = (ChargeFlip, GaussianFilter, GaussianFilterZ, KrFilter, KzFilter, DctThreshold)
