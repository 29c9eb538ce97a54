"""Loss terms on positions and tilts seen on the scan grid: fast axis, slow axis, deformation.

The scan is a raster of ``scan_size = (Sy, Sx)`` points, ``Sy * Sx = N``, in
the order of the rows of the arrays: row ``n = i * Sx + j`` is scan line i
(slow axis), point j (fast axis).  The grid view of an (N, c) array q is
``Q[i, j, :] = q[i * Sx + j, :]``.  Serpentine scans are not unfolded: give
them in raster order.

Arrays (internal layout, :mod:`pypty.model.refinables`):

* ``positions``: (N, 2) float64, window corners (y, x) in canvas px; every
  term here is invariant under a common translation, so the canvas frame
  does not matter.  Weights in loss units per px^2.
* ``tilts``: (N, 6) float64 in mrad, column pairs (y, x) before, inside,
  after (:data:`pypty.parameters.conventions.TILT_TYPES`).  Only the column
  pairs of the types of ``tilt_mode`` enter the terms (the other columns are
  not in the model; their gradient is 0).  Weights in loss units per mrad^2.

Terms (``design/regularizers.md`` sections 3.6-3.8), each for positions and
for tilts, each with its own weight and loss column ``reg_<name>``:

* fast axis: ``R = w sum_{i,j,c} (Q[i,j-1] + Q[i,j+1] - 2 Q[i,j])^2`` over
  interior j (second differences along each scan line);
* slow axis: ``R = w sum_{i,j,c} (Q[i-1,j] + Q[i+1,j] - 2 Q[i,j])^2`` over
  interior i (second differences along each column, the contract's
  "acceleration along one column"; not PyPty's row sums);
* deformation: ``R = w sum_c norm((I - H) q_c)^2`` with H the orthogonal
  projector onto the affine functions ``a i + b j + c`` of the grid indices
  (the residual of the best affine grid).

All three are quadratic: ``G = 2 w K^T K q`` for the linear operator K of the
term; gradients are ``dR/dq`` (real arrays).

Terms on tilts exist only when the model has tilts: ``from_params`` returns
None when ``tilts`` is all zero and ``update_tilts`` is constantly off (the
rule of :func:`pypty.model.setup.build_setup`).  ``value_and_grad`` returns
``(0.0, {})`` when the array is absent from ``arrays``.
"""
from __future__ import annotations

import numpy as np

from ..parameters.conventions import TILT_TYPES, tilt_types_for_mode
from ..parameters.schedule import may_be_on
from .base import ParamsTerm, value_key

__all__ = ["DeformationPositions", "DeformationTilts", "FastAxisPositions", "FastAxisTilts", "SlowAxisPositions",
           "SlowAxisTilts", "affine_basis", "tilts_in_model"]


def _msg(name, text):
    return f"parameter '{name}': {text}"


def tilts_in_model(p: dict) -> bool:
    """True when the model has a tilts array: a non-zero ``tilts`` or ``update_tilts`` that may be on.

    The same rule as :func:`pypty.model.setup.build_setup`.
    """
    return bool(np.any(np.asarray(p["tilts"]) != 0)) or may_be_on(p["update_tilts"])


def affine_basis(scan_size) -> np.ndarray:
    """An orthonormal basis of the affine functions on the scan grid.

    Parameters
    ----------
    scan_size : (int, int)
        (Sy, Sx).

    Returns
    -------
    numpy.ndarray, float64, shape (N, r)
        Columns orthonormal, spanning ``{a i + b j + c}`` evaluated at
        ``n = i * Sx + j`` (r = 3, or less for a single line or point), so the
        hat matrix is ``H = B B^T`` (``design/regularizers.md`` 3.8).
    """
    sy, sx = (int(s) for s in scan_size)
    i, j = np.divmod(np.arange(sy * sx, dtype=np.float64), sx)
    a = np.stack([np.ones_like(i), i - i.mean(), j - j.mean()], axis=1)
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    rank = int(np.sum(s > s[0] * 1e-10))
    return np.ascontiguousarray(u[:, :rank])


class _GridTerm(ParamsTerm):
    """Shared machinery: grid view, columns, validation.

    Subclasses set ARRAY, name, WEIGHT, PARAMS (the rows they implement, claimed) and READS (core rows they
    read: scan_size, positions, and for tilts the tilt rows).
    """

    ARRAY = ""

    def __init__(self, p: dict, bk):
        super().__init__(p, bk)
        self._cols = None
        if self.ARRAY == "tilts":
            self._cols = tuple(c for t in tilt_types_for_mode(p["tilt_mode"]) for c in range(*TILT_TYPES[t]))
        self._dev = {}  # device constants (the affine basis), built on first use

    # ------------------------------------------------------------------ params
    @classmethod
    def from_params(cls, p: dict, bk):
        """The term, or None when the weight is constantly 0 or (tilts) the model has no tilts."""
        if not may_be_on(p[cls.WEIGHT]):
            return None
        if cls.ARRAY == "tilts" and not tilts_in_model(p):
            return None
        return cls(p, bk)

    @classmethod
    def check_params(cls, p: dict) -> list:
        """Errors (``"parameter 'name': ..."``) when the weight may be on and the grid is not usable.

        Rules (nothing is checked when the weight is constantly 0, or, for
        tilts, when the model has no tilts: the term is then never built):

        * ``scan_size`` is given;
        * ``scan_size[0] * scan_size[1]`` equals N, the rows of ``positions``;
        * for tilts: ``tilts`` has N rows (one per scan point; a common
          (1, 6) tilt has no scan grid).
        """
        w = cls.WEIGHT
        if not may_be_on(p[w]):
            return []
        if cls.ARRAY == "tilts" and not tilts_in_model(p):
            return []
        errs = []
        n = int(np.shape(p["positions"])[0])
        ss = p["scan_size"]
        if ss is None:
            errs.append(_msg(w, f"is on, but 'scan_size' is None: give scan_size = (Sy, Sx) with Sy * Sx = N = {n} "
                                f"(the grid of the raster scan)"))
        else:
            sy, sx = (int(s) for s in ss)
            if sy * sx != n:
                errs.append(_msg("scan_size", f"{(sy, sx)} has {sy * sx} points, but 'positions' has N = {n} rows "
                                              f"(needed by '{w}')"))
        if cls.ARRAY == "tilts":
            rows = int(np.shape(p["tilts"])[0])
            if rows != n:
                errs.append(_msg(w, f"needs one tilt row per scan point, but 'tilts' has {rows} row(s) and "
                                    f"'positions' N = {n} (a common tilt has no scan grid: give an (N, 6) array)"))
        return errs

    def key(self, epoch: int) -> tuple:
        """(weight, scan_size, and tilt_mode for tilts) at ``epoch``; the arrays' initial values do not matter."""
        keys = (self.WEIGHT, "scan_size") + (("tilt_mode",) if self.ARRAY == "tilts" else ())
        return tuple(value_key(self.at(k, epoch)) for k in keys)

    # ------------------------------------------------------------------ grid
    def _grid(self, a):
        """(Q, cols): Q float64 (Sy, Sx, c) view of the used columns of ``a`` (a new array)."""
        ss = self.p["scan_size"]
        if ss is None:
            raise ValueError(_msg("scan_size", f"needed by '{self.WEIGHT}'"))
        sy, sx = (int(s) for s in ss)
        if a.ndim != 2 or a.shape[0] != sy * sx:
            raise ValueError(_msg("scan_size", f"{(sy, sx)} does not match '{self.ARRAY}' of shape {a.shape} "
                                               f"(needed by '{self.WEIGHT}')"))
        q = a if self._cols is None else a[:, list(self._cols)]
        return q.astype(self.xp.float64).reshape(sy, sx, q.shape[1])

    def _full(self, a, g):
        """Scatter the (Sy, Sx, c) gradient ``g`` back to the shape and dtype of ``a``."""
        g = g.reshape(a.shape[0], g.shape[-1])
        if self._cols is not None:
            full = self.xp.zeros(a.shape, dtype=self.xp.float64)
            full[:, list(self._cols)] = g
            g = full
        return g.astype(a.dtype, copy=False)

    def value_and_grad(self, arrays: dict, epoch: int) -> tuple:
        """``(R, {ARRAY: dR/dq})``; ``(0.0, {})`` when the array is not in the model.

        Raises
        ------
        ValueError
            ``scan_size`` is missing or does not match the array's rows.
        """
        a = arrays.get(self.ARRAY)
        if a is None:
            return 0.0, {}
        w = self.weight(epoch)
        q = self._grid(a)
        r, kt = self._residual(q)  # r: K q (any shape); kt: K^T K q, shape of q
        value = w * float(self.xp.sum(r * r, dtype=self.xp.float64))
        return value, {self.ARRAY: self._full(a, (2 * w) * kt)}

    def _residual(self, q):  # pragma: no cover - abstract
        raise NotImplementedError


def _second_difference(xp, q, axis):
    """(L, D^T L): interior second differences of q along ``axis`` and their adjoint (zero-padded)."""
    n = q.shape[axis]
    if n < 3:
        return xp.zeros((0,), dtype=q.dtype), xp.zeros_like(q)

    def sl(start, stop):
        idx = [slice(None)] * q.ndim
        idx[axis] = slice(start, stop)
        return tuple(idx)

    lap = q[sl(0, n - 2)] + q[sl(2, n)] - 2 * q[sl(1, n - 1)]
    adj = xp.zeros_like(q)
    adj[sl(0, n - 2)] += lap
    adj[sl(2, n)] += lap
    adj[sl(1, n - 1)] -= 2 * lap
    return lap, adj


class _FastAxis(_GridTerm):
    """Fast-axis term (``design/regularizers.md`` 3.6).

    ``L[i, j] = Q[i, j-1] + Q[i, j+1] - 2 Q[i, j]`` for ``1 <= j <= Sx-2``;
    ``R = w sum L^2``; ``G = 2 w D^T L`` with ``(D^T L)[j] = L[j-1] + L[j+1] - 2 L[j]``
    (L zero-padded).  R = 0 for any grid affine along each scan line (any
    per-line slope and offset); 0 when Sx < 3.
    """

    def _residual(self, q):
        return _second_difference(self.xp, q, 1)


class _SlowAxis(_GridTerm):
    """Slow-axis term, per column (``design/regularizers.md`` 3.7(c)).

    ``L[i, j] = Q[i-1, j] + Q[i+1, j] - 2 Q[i, j]`` for ``1 <= i <= Sy-2``;
    ``R = w sum L^2``; ``G = 2 w D^T L``.  R = 0 for any grid linear along
    each column; unlike PyPty (second differences of the row sums) a column
    zig-zag that keeps the row sums is penalised, and R does not grow as Sx^2.
    0 when Sy < 3.
    """

    def _residual(self, q):
        return _second_difference(self.xp, q, 0)


class _Deformation(_GridTerm):
    """Deformation term: distance to the best affine grid (``design/regularizers.md`` 3.8).

    ``r_c = (I - H) q_c`` with ``H = B B^T`` (:func:`affine_basis`, the hat
    matrix of ``A[n] = (1, i, j)``), per used column c;
    ``R = w sum_c norm(r_c)^2``; ``G = 2 w r`` (I - H is an orthogonal
    projector).  R = 0 for any affine grid (rotation, scale, shear,
    translation); nonlinear drift is not absorbed.  The projector is applied
    as ``q - B (B^T q)`` on the device, with B computed once on the host.
    """

    def _residual(self, q):
        sy, sx, c = q.shape
        b = self._dev.get("basis")
        if b is None or b.shape[0] != sy * sx:
            b = self._dev["basis"] = self.bk.asarray(affine_basis((sy, sx)))
        flat = q.reshape(sy * sx, c)
        r = flat - b @ (b.T @ flat)
        return r, r.reshape(q.shape)


_TILT_ROWS = ("tilts", "tilt_mode", "update_tilts")


class FastAxisPositions(_FastAxis):
    """Fast-axis term on ``positions`` (px); weight ``fast_axis_reg_weight_positions`` (loss units / px^2)."""

    name, ARRAY, WEIGHT = "fast_axis_positions", "positions", "fast_axis_reg_weight_positions"
    PARAMS = (WEIGHT,)
    READS = ("scan_size", "positions")


class FastAxisTilts(_FastAxis):
    """Fast-axis term on ``tilts`` (mrad); weight ``fast_axis_reg_weight_tilts`` (loss units / mrad^2)."""

    name, ARRAY, WEIGHT = "fast_axis_tilts", "tilts", "fast_axis_reg_weight_tilts"
    PARAMS = (WEIGHT,)
    READS = ("scan_size", "positions") + _TILT_ROWS


class SlowAxisPositions(_SlowAxis):
    """Slow-axis term on ``positions`` (px); weight ``slow_axis_reg_weight_positions`` (loss units / px^2)."""

    name, ARRAY, WEIGHT = "slow_axis_positions", "positions", "slow_axis_reg_weight_positions"
    PARAMS = (WEIGHT,)
    READS = ("scan_size", "positions")


class SlowAxisTilts(_SlowAxis):
    """Slow-axis term on ``tilts`` (mrad); weight ``slow_axis_reg_weight_tilts`` (loss units / mrad^2).

    Read from its own row (PyPty read the positions weight here).
    """

    name, ARRAY, WEIGHT = "slow_axis_tilts", "tilts", "slow_axis_reg_weight_tilts"
    PARAMS = (WEIGHT,)
    READS = ("scan_size", "positions") + _TILT_ROWS


class DeformationPositions(_Deformation):
    """Deformation term on ``positions`` (px); weight ``deformation_reg_weight_positions`` (loss units / px^2)."""

    name, ARRAY, WEIGHT = "deformation_positions", "positions", "deformation_reg_weight_positions"
    PARAMS = (WEIGHT,)
    READS = ("scan_size", "positions")


class DeformationTilts(_Deformation):
    """Deformation term on ``tilts`` (mrad); weight ``deformation_reg_weight_tilts`` (loss units / mrad^2)."""

    name, ARRAY, WEIGHT = "deformation_tilts", "tilts", "deformation_reg_weight_tilts"
    PARAMS = (WEIGHT,)
    READS = ("scan_size", "positions") + _TILT_ROWS


#: loss-term classes of this module, in registry order
TERMS: tuple = (FastAxisPositions, SlowAxisPositions, DeformationPositions,
                FastAxisTilts, SlowAxisTilts, DeformationTilts)
