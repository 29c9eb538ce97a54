"""Tilt-grid smoothing (class D): a Gaussian filter of the per-position tilts over the scan grid.

Port of PtyRAD's ``tilt_smooth`` (Lee et al., *PtyRAD*, 2025;
``design/regularizers.md`` sections 4.1, 4.2) to pypty's tilts: all the tilt
types of the model (``tilt_mode``), mrad, a Gaussian truncated at 4 sigma
(PtyRAD's fixed 5-tap kernel truncates its default sigma = 2 at 1 sigma) and
'nearest' (edge-replicating) boundaries.  The soft counterparts are the
fast-axis, slow-axis and deformation tilt terms of :mod:`pypty.regularizers`.
"""
from __future__ import annotations

import math

import numpy as np

from ..parameters.conventions import TILT_TYPES, tilt_types_for_mode
from ..parameters.errors import parameter_error
from ..parameters.schedule import may_be_on
from .base import UNCHANGED, Change, ParamsConstraint
from .object_filters import gaussian_filter1d_nearest, gaussian_kernel1d, positive_number
from .object_pointwise import _constant, _range_messages

__all__ = ["TiltSmooth", "gaussian_filter1d"]

def gaussian_filter1d(xp, a, sigma: float, axis: int):
    """Gaussian filter of ``a`` along ``axis``, truncated at 4 sigma, 'nearest' boundaries (a new array).

    The filter of the object constraints
    (:func:`pypty.constraints.object_filters.gaussian_filter1d_nearest`), which
    equals ``scipy.ndimage.gaussian_filter1d(a, sigma, axis, mode="nearest")``
    up to rounding; NumPy or CuPy (``xp``).
    """
    out = gaussian_filter1d_nearest(xp, a, float(sigma), axis)
    return out.copy() if out is a else out


class TiltSmooth(ParamsConstraint):
    """``tilt_smooth_sigma``: Gaussian smoothing of the per-position tilts over the scan grid.

    The tilts t (N, 6) mrad are seen on the scan grid of
    ``scan_size = (Sy, Sx)``, in raster order ``Q[i, j, c] = t[i*Sx + j, c]``,
    and the columns c of the tilt types in the model
    (:func:`pypty.parameters.conventions.tilt_types_for_mode` of ``tilt_mode``;
    column pairs :data:`~pypty.parameters.conventions.TILT_TYPES`) are
    replaced by::

        Q' = G_sigma,x * (G_sigma,y * Q)

    a separable Gaussian with sigma = ``tilt_smooth_sigma`` scan positions
    (0 = off, epoch-dependent), truncated at 4 sigma, with 'nearest'
    (edge-replicating) boundaries (:func:`gaussian_filter1d`).  The other
    columns are kept.  A global tilt (1, 6) is skipped (UNCHANGED).

    Acts only when ``"tilts"`` is in ``ctx.settings.refine``.  Source:
    ``design/regularizers.md`` sections 4.1, 4.2 (PtyRAD's ``tilt_smooth``,
    Lee et al. 2025).
    """

    name = "tilt_smooth"
    PARAMS = ("tilt_smooth_sigma", "scan_size", "tilt_mode", "tilts")
    SWITCH = "tilt_smooth_sigma"

    RESETS_HISTORY = True

    @classmethod
    def switched_on(cls, row, value) -> bool:
        """On when sigma is > 0."""
        return positive_number(value)

    def apply(self, arrays: dict, epoch: int, ctx) -> tuple:
        """Smooth the tilts of the model's tilt types over the scan grid.

        Parameters
        ----------
        arrays : dict
            ``"tilts"``: float (N, 6) mrad (or (1, 6), a global tilt: skipped).
        epoch : int
        ctx : pypty.constraints.base.Context
            ``ctx.settings.refine``: acts only when it holds ``"tilts"``.

        Returns
        -------
        ({"tilts": (N, 6) mrad, dtype of the input}, Change("reset", reason)),
        or ({}, UNCHANGED) (tilts not refined or absent, a global tilt, sigma too small
        for a kernel wider than one tap, or no change).

        Raises
        ------
        PyptyParameterError
            No ``scan_size``, or Sy * Sx != N.
        """
        xp = self.xp
        tilts = arrays.get("tilts")
        if tilts is None or "tilts" not in ctx.settings.refine or tilts.shape[0] == 1:
            return {}, UNCHANGED
        sigma = float(self.at(self.SWITCH, epoch))
        if gaussian_kernel1d(sigma).size == 1:  # sigma < 1/8: a one-tap filter is the identity
            return {}, UNCHANGED
        sy, sx = self._grid(tilts.shape[0])
        cols = [c for kind in tilt_types_for_mode(self.p["tilt_mode"]) for c in range(*TILT_TYPES[kind])]
        if not cols:
            return {}, UNCHANGED
        q = tilts[:, cols].reshape(sy, sx, len(cols))
        q = gaussian_filter1d(xp, gaussian_filter1d(xp, q, sigma, axis=0), sigma, axis=1)
        new = tilts.copy()
        new[:, cols] = q.reshape(-1, len(cols))
        if bool(xp.array_equal(new, tilts)):
            return {}, UNCHANGED
        return {"tilts": new}, Change("reset", f"tilts smoothed over the scan grid (sigma {sigma:g})")

    def _grid(self, n: int) -> tuple:
        scan = self.p.get("scan_size")
        if scan is None:
            raise parameter_error("scan_size", "tilt_smooth_sigma > 0 needs scan_size (Sy, Sx)")
        sy, sx = (int(v) for v in scan)
        if sy * sx != n:
            raise parameter_error("scan_size", f"{sy} x {sx} = {sy * sx} scan points, but the tilts have {n} rows")
        return sy, sx

    @classmethod
    def check_params(cls, p: dict) -> list:
        """sigma >= 0; when it may be on and the tilts have N > 1 rows: ``scan_size`` given with Sy * Sx = N."""
        out = _range_messages(p, {cls.SWITCH: (0.0, None, False, "a float >= 0")})
        if not may_be_on(p.get(cls.SWITCH)):
            return out
        tilts = p.get("tilts")
        n = int(np.shape(tilts)[0]) if tilts is not None and np.ndim(tilts) == 2 else 1
        if n == 1:
            return out
        scan = p.get("scan_size")
        if scan is None:
            out.append("parameter 'scan_size': needed by tilt_smooth_sigma (per-position tilts on the scan grid)")
        else:
            sy, sx = (int(v) for v in scan)
            if sy * sx != n:
                out.append(f"parameter 'scan_size': {sy} x {sx} = {sy * sx} scan points, but tilts has {n} rows "
                           f"(tilt_smooth_sigma)")
        return out

    @classmethod
    def warnings(cls, p: dict) -> list:
        """A global tilt (one row): nothing to smooth."""
        const, v = _constant(p.get(cls.SWITCH))
        if const and not (v is not None and not isinstance(v, (bool, np.bool_)) and math.isfinite(float(v))
                          and float(v) > 0):
            return []
        tilts = p.get("tilts")
        if tilts is not None and np.ndim(tilts) == 2 and np.shape(tilts)[0] == 1:
            return [(f"parameter '{cls.SWITCH}': the tilts are one global row, so there is nothing to smooth "
                     "(give N rows for per-position tilts)")]
        return []


#: constraint classes of this module, in order of application
CONSTRAINTS: tuple = (TiltSmooth,)
