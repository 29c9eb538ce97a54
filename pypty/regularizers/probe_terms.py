"""Loss terms on the probe: reciprocal-space mask and real-space window.

Both act on the probe in the internal layout (:mod:`pypty.model.refinables`):
``probe`` is a complex (U, M, Y, X) array, U subscans, M modes, real space,
centred at (Y//2, X//2) of its Y x X window, in sqrt(counts) (``sum
abs(P)^2`` = counts per pattern).  FFTs are unitary (``bk.fft2``, zero
frequency at index 0), so a weight means the same for every window size.
Gradients follow :mod:`pypty.optim`: ``G = 2 dR/d(conj P)``.

* :class:`ProbeMaskTerm` (``reg_probe_mask``): ``R = w sum_{u,m in S} sum_k
  Mbar(k) abs((F P[u,m])(k))^2``, the counts outside the aperture
  (``design/regularizers.md`` sections 3.2 and 4.2 "probe_mask_k");
* :class:`ProbeWindowTerm` (``reg_probe_window``): ``R = w sum W abs(P)^2``,
  the counts outside a real-space window (section 3.3).

Both are quadratic, convex, and invariant under a unitary mixing of the
modes (``P -> V P`` over m; for the mask term with all modes selected), so
they commute with ``keep_probe_states_orthogonal``.
"""
from __future__ import annotations

import math

import numpy as np

from ..parameters.schedule import may_be_on, resolve
from .base import ParamsTerm, value_key

__all__ = ["ProbeMaskTerm", "ProbeWindowTerm", "dominant_modes", "window_map"]

#: Defaults of rows this module reads that the parameter table may not have yet (extension keys).
_DEFAULTS = {"probe_constraint_power_thresh": 1.0}


def _param(p, key, epoch):
    value = p[key] if key in p else _DEFAULTS[key]
    return resolve(key, value, epoch)


def _constant(value) -> bool:
    return not callable(value)


def _msg(name, text):
    return f"parameter '{name}': {text}"


def dominant_modes(power, thresh: float) -> np.ndarray:
    """The dominant probe modes of each subscan, up to a cumulative power fraction.

    Parameters
    ----------
    power : array_like, float, shape (U, M)
        Power (counts) of mode m of subscan u, ``sum_yx abs(P[u, m])^2``.
    thresh : float in (0, 1]
        Power fraction.

    Returns
    -------
    numpy.ndarray, bool, shape (U, M)
        Per subscan, the smallest set of modes, taken in descending order of
        power (ties by index), whose summed power reaches ``thresh`` of the
        subscan's total: PtyRAD's "modes 0..m* where the cumulative fraction
        first exceeds power_thresh" (``design/regularizers.md`` 4.2), without
        assuming that the modes are sorted.  All modes for ``thresh >= 1`` or
        a subscan with zero power.
    """
    power = np.asarray(power, dtype=np.float64)
    sel = np.ones(power.shape, dtype=bool)
    if thresh >= 1:
        return sel
    for u, pw in enumerate(power):
        total = pw.sum()
        if not total > 0:
            continue
        order = np.argsort(-pw, kind="stable")
        cum = np.cumsum(pw[order]) / total
        n = int(np.searchsorted(cum, thresh * (1 - 1e-12))) + 1  # first index with cum >= thresh
        sel[u] = False
        sel[u, order[:min(n, pw.size)]] = True
    return sel


class ProbeMaskTerm(ParamsTerm):
    """Reciprocal-space probe penalty: the probe counts outside an aperture mask (L2, unitary FFT).

    Rows (``PARAMS``): ``probe_reg_constraint_weight`` (w, loss units per
    count), ``probe_constraint_mask`` and ``aperture_mask`` (A, centred
    (Y, X) real in [0, 1], 1 = allowed; ``probe_constraint_mask`` takes
    precedence), ``probe_constraint_power_thresh`` (t in (0, 1], default 1,
    epoch-dependent).

    Formula (``design/regularizers.md`` 3.2, 4.2)::

        Mbar = ifftshift(1 - A)                       (FFT order)
        R = w sum_{(u, m) in S} sum_k Mbar(k) abs((F P[u, m])(k))^2
        G = 2 w F^-1[Mbar * F P]   on the modes in S, 0 elsewhere

    F is the unitary 2-D DFT (``bk.fft2``).  S is every mode when t = 1;
    for t < 1 it is, per subscan, the dominant modes up to the power fraction
    t (:func:`dominant_modes`), computed by :meth:`begin_epoch` from the
    probe at the start of the epoch and frozen for the epoch (a line search
    never sees a changing set; the set is part of :meth:`key`).

    Active when ``0 < w < inf``; ``w = inf`` is the hard Fourier projection
    (a class-A constraint, :mod:`pypty.constraints`), not this term.
    """

    name = "probe_mask"
    PARAMS = ("probe_reg_constraint_weight", "probe_constraint_mask", "aperture_mask",
              "probe_constraint_power_thresh")
    WEIGHT = "probe_reg_constraint_weight"

    def __init__(self, p: dict, bk):
        super().__init__(p, bk)
        a = p["probe_constraint_mask"] if p["probe_constraint_mask"] is not None else p["aperture_mask"]
        self._mask_source = "probe_constraint_mask" if p["probe_constraint_mask"] is not None else "aperture_mask"
        if a is None:
            raise ValueError(_msg(self.WEIGHT, "a probe_constraint_mask or an aperture_mask is needed when the "
                                               "reciprocal-space probe penalty is on"))
        a = np.array(a, dtype=np.float64)  # a private copy: the user's array is never touched
        self._mask_key = value_key(a)
        self._mbar_host = np.fft.ifftshift(1.0 - a)
        self._mbar = {}  # real dtype -> device array
        self._frozen = {}  # epoch -> bool (U, M) mode selection (only for power_thresh < 1)

    # ------------------------------------------------------------------ params
    @classmethod
    def from_params(cls, p: dict, bk):
        """The term, or None when the weight is constantly 0 or inf (inf: the hard projection elsewhere)."""
        w = p[cls.WEIGHT]
        if not may_be_on(w) or (_constant(w) and math.isinf(float(w))):
            return None
        return cls(p, bk)

    @classmethod
    def check_params(cls, p: dict) -> list:
        """Errors (``"parameter 'name': ..."``) for the rows of this term when its weight may be on.

        Rules: a mask is given (``probe_constraint_mask`` or ``aperture_mask``),
        it is a finite real 2-D array with values in [0, 1];
        ``probe_constraint_power_thresh`` (when constant) lies in (0, 1].
        The weight inf (hard projection) is left to the constraint.
        """
        w = p[cls.WEIGHT]
        if not may_be_on(w) or (_constant(w) and math.isinf(float(w))):
            return []
        errs = []
        key = "probe_constraint_mask" if p["probe_constraint_mask"] is not None else "aperture_mask"
        a = p[key]
        if a is None:
            errs.append(_msg(cls.WEIGHT, "is on, but both 'probe_constraint_mask' and 'aperture_mask' are None: "
                                         "give a centred (Y, X) mask in [0, 1] (1 = allowed), e.g. "
                                         "pypty.initialize.sigmoid_mask((Y, X), radius, width)"))
        else:
            arr = np.asarray(a)
            if arr.ndim != 2 or arr.dtype.kind not in "biuf":
                errs.append(_msg(key, f"must be a real 2-D (Y, X) array for '{cls.WEIGHT}', got "
                                      f"shape {arr.shape} dtype {arr.dtype}"))
            elif not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
                errs.append(_msg(key, "values must be finite and in [0, 1] (1 = allowed, 0 = penalised)"))
        t = p.get("probe_constraint_power_thresh", 1.0)
        if _constant(t):
            try:
                ok = 0 < float(t) <= 1
            except (TypeError, ValueError):
                ok = False
            if not ok:
                errs.append(_msg("probe_constraint_power_thresh", f"must be in (0, 1], got {t!r}"))
        return errs

    def at(self, key: str, epoch: int):
        return _param(self.p, key, epoch)

    def active(self, epoch: int) -> bool:
        w = self.weight(epoch)
        return 0 < w < math.inf

    def _thresh(self, epoch: int) -> float:
        t = float(self.at("probe_constraint_power_thresh", epoch))
        if not 0 < t <= 1:
            raise ValueError(_msg("probe_constraint_power_thresh", f"must be in (0, 1], got {t!r} at epoch {epoch}"))
        return t

    def key(self, epoch: int) -> tuple:
        """(weight, mask identity, power_thresh, frozen mode set) at ``epoch``."""
        t = self._thresh(epoch)
        sel = self._frozen.get(epoch) if t < 1 else None
        return (value_key(self.weight(epoch)), self._mask_key, value_key(t),
                "all" if sel is None else repr(sel.astype(int).tolist()))

    # ------------------------------------------------------------------ epoch bookkeeping
    def begin_epoch(self, arrays: dict, epoch: int) -> None:
        """Freeze the mode set S of ``epoch`` from the probe at the start of the epoch.

        Needed only when ``probe_constraint_power_thresh < 1`` at ``epoch``
        (otherwise a no-op); must be called once per epoch, after the hand
        constraints and before the epoch's objective is built (its key
        includes S).  Only the newest epoch's set is kept.

        Parameters
        ----------
        arrays : dict
            Arrays at the start of the epoch (internal layout); reads ``probe``.
        epoch : int
        """
        t = self._thresh(epoch)
        self._frozen = {}
        if t >= 1 or "probe" not in arrays:
            return
        xp = self.xp
        probe = arrays["probe"]
        power = xp.sum(xp.abs(probe) ** 2, axis=(-2, -1), dtype=xp.float64)
        self._frozen[epoch] = dominant_modes(self.bk.to_numpy(power), t)

    # ------------------------------------------------------------------ value
    def _mbar_dev(self, shape, real_dtype):
        if self._mbar_host.shape != tuple(shape):
            raise ValueError(_msg(self._mask_source, f"shape {self._mbar_host.shape} does not match the probe "
                                                     f"window {tuple(shape)} (Y, X)"))
        key = np.dtype(real_dtype).str
        if key not in self._mbar:
            self._mbar[key] = self.bk.asarray(self._mbar_host, dtype=real_dtype)
        return self._mbar[key]

    def value_and_grad(self, arrays: dict, epoch: int) -> tuple:
        """``(R, {"probe": G})`` at ``arrays["probe"]`` (see the class docstring); ``(0.0, {})`` without a probe.

        Raises
        ------
        RuntimeError
            ``probe_constraint_power_thresh < 1`` at ``epoch`` and
            :meth:`begin_epoch` was not called for it.
        ValueError
            The mask shape differs from the probe window.
        """
        probe = arrays.get("probe")
        if probe is None:
            return 0.0, {}
        xp = self.xp
        w = self.weight(epoch)
        real = xp.empty(0, dtype=probe.dtype).real.dtype
        mbar = self._mbar_dev(probe.shape[-2:], real)
        fp = self.bk.fft2(probe)
        if self._thresh(epoch) < 1:
            sel = self._frozen.get(epoch)
            if sel is None:
                raise RuntimeError(f"loss term '{self.name}': probe_constraint_power_thresh < 1 at epoch {epoch}, "
                                   f"but begin_epoch(arrays, {epoch}) was not called to freeze the mode set")
            if sel.shape != probe.shape[:2]:
                raise RuntimeError(f"loss term '{self.name}': the frozen mode set has shape {sel.shape}, the probe "
                                   f"{probe.shape[:2]} (U, M)")
            fp = fp * self.bk.asarray(sel[..., None, None], dtype=real)
        mfp = mbar * fp
        value = w * float(xp.sum((fp.real * mfp.real + fp.imag * mfp.imag), dtype=xp.float64))
        grad = (2 * w) * self.bk.ifft2(mfp)
        return value, {"probe": grad.astype(probe.dtype, copy=False)}


def window_map(window, shape) -> np.ndarray:
    """The real-space penalty map W of the window term, a new float64 (Y, X) array.

    Parameters
    ----------
    window : [r0, r1] or array_like (Y, X)
        Radii form: ``0 <= r0 < r1``, fractions of ``h = min(Y, X) / 2``.
        Array form: a real penalty map >= 0 (copied, never modified).
    shape : (int, int)
        (Y, X), the probe window.

    Returns
    -------
    numpy.ndarray, float64, shape (Y, X)
        Radii form (``design/regularizers.md`` 3.3)::

            rho = sqrt((y - Y//2)^2 + (x - X//2)^2) / h
            W = 0                                   for rho <= r0
            W = (1 - cos(pi (rho - r0) / (r1 - r0))) / 2   for r0 < rho < r1
            W = 1                                   for rho >= r1

        centred like the probe, so W(Y//2, X//2) = 0 and W is radially
        symmetric.  Array form: a copy of the map.

    Raises
    ------
    ValueError
        Radii out of order, a map of another shape, non-finite or negative values.
    """
    ny, nx = (int(s) for s in shape)
    arr = np.asarray(window)
    if arr.ndim == 1 and arr.size == 2:
        r0, r1 = (float(v) for v in arr)
        if not (math.isfinite(r1) and 0 <= r0 < r1):
            raise ValueError(_msg("window", f"radii must satisfy 0 <= inner < outer, got {list(arr.tolist())}"))
        h = min(ny, nx) / 2
        y = np.arange(ny) - ny // 2
        x = np.arange(nx) - nx // 2
        rho = np.sqrt(y[:, None] ** 2 + x[None, :] ** 2) / h
        t = np.clip((rho - r0) / (r1 - r0), 0.0, 1.0)
        return (1.0 - np.cos(np.pi * t)) / 2
    if arr.ndim != 2 or arr.dtype.kind not in "biuf":
        raise ValueError(_msg("window", f"expected [inner, outer] or a real 2-D penalty map, got shape {arr.shape} "
                                        f"dtype {arr.dtype}"))
    if arr.shape != (ny, nx):
        raise ValueError(_msg("window", f"penalty map shape {arr.shape} does not match the probe window {(ny, nx)}"))
    out = np.array(arr, dtype=np.float64, copy=True)
    if not np.all(np.isfinite(out)) or out.min() < 0:
        raise ValueError(_msg("window", "a penalty map must be finite and >= 0"))
    return out


class ProbeWindowTerm(ParamsTerm):
    """Real-space probe penalty: the probe counts outside a window (L2).

    Rows (``PARAMS``): ``window_weight`` (w, loss units per count,
    epoch-dependent), ``window`` ([r0, r1] fractions of min(Y, X)/2, or a
    (Y, X) penalty map >= 0 with 1 = penalised; epoch-dependent).

    Formula (``design/regularizers.md`` 3.3)::

        R = w sum_{u, m, y, x} W(y, x) abs(P[u, m, y, x])^2
        G = 2 w W P

    with W from :func:`window_map`.  W is built once per resolved value of
    ``window`` and probe shape (a new array, cached; the user's array is
    copied, never modified), so repeated evaluations within an epoch give
    identical values.
    """

    name = "probe_window"
    PARAMS = ("window_weight", "window")
    WEIGHT = "window_weight"

    def __init__(self, p: dict, bk):
        super().__init__(p, bk)
        self._cache = {}  # (value_key(window), Y, X, real dtype) -> device W

    @classmethod
    def check_params(cls, p: dict) -> list:
        """Errors when the weight may be on and ``window`` is constantly None."""
        if may_be_on(p[cls.WEIGHT]) and p["window"] is None:
            return [_msg(cls.WEIGHT, "is on, but 'window' is None: give [inner, outer] radii (fractions of "
                                     "min(Y, X)/2) or a (Y, X) penalty map >= 0")]
        return []

    def _w_dev(self, window, shape, real_dtype):
        key = (value_key(window), int(shape[0]), int(shape[1]), np.dtype(real_dtype).str)
        w = self._cache.get(key)
        if w is None:
            if len(self._cache) >= 4:
                self._cache.clear()
            w = self._cache[key] = self.bk.asarray(window_map(window, shape), dtype=real_dtype)
        return w

    def value_and_grad(self, arrays: dict, epoch: int) -> tuple:
        """``(R, {"probe": G})`` at ``arrays["probe"]``; ``(0.0, {})`` without a probe.

        Raises
        ------
        ValueError
            ``window`` is None at ``epoch``, or not a valid window for the probe shape.
        """
        probe = arrays.get("probe")
        if probe is None:
            return 0.0, {}
        window = self.at("window", epoch)
        if window is None:
            raise ValueError(_msg("window", f"is None at epoch {epoch} while 'window_weight' is on"))
        xp = self.xp
        w = self.weight(epoch)
        real = xp.empty(0, dtype=probe.dtype).real.dtype
        wmap = self._w_dev(window, probe.shape[-2:], real)
        wp = wmap * probe
        value = w * float(xp.sum(probe.real * wp.real + probe.imag * wp.imag, dtype=xp.float64))
        return value, {"probe": ((2 * w) * wp).astype(probe.dtype, copy=False)}


#: loss-term classes of this module, in registry order
TERMS: tuple = (ProbeMaskTerm, ProbeWindowTerm)
