"""Subspace projections (class A): object band limit, mean-free position updates.

A class-A constraint is an orthogonal projection ``Pi`` (``Pi^2 = Pi =
Pi^H``) onto a linear subspace of one block.  When the state is outside the
subspace (at activation, after a canvas growth or a class-D edit) ``apply``
projects it and resets the L-BFGS history; in every evaluation the objective
projects the block's gradient (``project``).  Directions are then
combinations of projected gradients and of pairs that lie in the subspace,
so the iterates stay in it with no further resets: this is L-BFGS on the
restricted problem (``design/regularizers.md`` section 2.2).

A state counts as inside the subspace when the part that the projection
removes is below ``tol`` of its norm (``1e-9`` in double precision,
``1e-4`` in single): rounding in the line search must not reset the history
every epoch.
"""
from __future__ import annotations

import numpy as np

from ..operators.fresnel import bandlimit_mask
from .base import UNCHANGED, Change, ParamsConstraint

__all__ = ["ObjectBandLimit", "PositionRecenter", "CONSTRAINTS", "inside_tolerance"]


def inside_tolerance(dtype) -> float:
    """Relative size of a removed part that still counts as rounding (1e-9 for 64-bit reals, 1e-4 for 32-bit)."""
    return 1e-9 if np.finfo(np.dtype(dtype)).eps < 1e-10 else 1e-4


def _relative(xp, removed, total) -> float:
    num = float(xp.sqrt(xp.sum(xp.abs(removed) ** 2, dtype=xp.float64)))
    den = float(xp.sqrt(xp.sum(xp.abs(total) ** 2, dtype=xp.float64)))
    return num / den if den > 0 else num


class ObjectBandLimit(ParamsConstraint):
    """The object is kept band-limited: ``O <- F^-1[B F O]`` for every slice and mode (class A).

    ``B = 1[|f| <= (c - e)]`` with ``|f|`` the radial frequency as a
    fraction of Nyquist on the object canvas (the circular mask of
    :func:`pypty.operators.fresnel.bandlimit_mask`, the shape of the
    propagator's band limit), ``c = damping_cutoff_multislice`` and ``e =
    update_extra_cut``.  The hard mask (no taper) keeps ``Pi`` a projection,
    so repeated application changes nothing (PyPty's tapered mask compounds:
    ``design/regularizers.md`` 3.17).  Off with ``lazy_clean=True``.

    With ``phase_only_obj`` the band limit applies to the phase block
    (``phi <- Pi phi``; the object is ``exp(i phi)``).  The constraint acts
    whether or not the object is refined in the epoch.

    Rows: ``update_extra_cut``, ``lazy_clean``.
    """

    name = "band_limit"
    PARAMS = ("update_extra_cut", "lazy_clean")
    SWITCH = "lazy_clean"

    def __init__(self, p, bk):
        super().__init__(p, bk)
        self.cutoff = float(p["damping_cutoff_multislice"]) - float(p["update_extra_cut"])
        self._masks = {}

    @classmethod
    def from_params(cls, p, bk):
        return None if p["lazy_clean"] else cls(p, bk)

    @classmethod
    def check_params(cls, p) -> list:
        if p["lazy_clean"]:
            return []
        c = float(p["damping_cutoff_multislice"]) - float(p["update_extra_cut"])
        if c <= 0:
            return ["parameter 'update_extra_cut' (%g) must be smaller than damping_cutoff_multislice (%g) unless "
                    "lazy_clean=True" % (p["update_extra_cut"], p["damping_cutoff_multislice"])]
        return []

    def active(self, epoch):
        return True

    def mask(self, shape_yx):
        """The pass band (Ny, Nx) in FFT order on the device, real dtype of the canvas."""
        key = tuple(int(v) for v in shape_yx)
        if key not in self._masks:
            self._masks[key] = self.xp.asarray(bandlimit_mask(key, self.cutoff, 0.0))
        return self._masks[key]

    def _pi(self, a):
        m = self.mask(a.shape[-2:])
        if self.xp.iscomplexobj(a):
            return self.bk.ifft2(self.bk.fft2(a) * m).astype(a.dtype, copy=False)
        return self.bk.ifft2(self.bk.fft2(a) * m).real.astype(a.dtype, copy=False)

    def projected_blocks(self, epoch):
        return ("obj", "obj_phase")

    def project(self, block, g, epoch):
        """``Pi g`` for the object block (complex) or the phase block (real)."""
        return self._pi(g)

    def apply(self, arrays, epoch, ctx):
        xp, obj = self.xp, arrays["obj"]
        if ctx.settings.phase_only_obj:
            phase = xp.angle(obj)
            new_phase = self._pi(phase)
            if _relative(xp, phase - new_phase, phase) <= inside_tolerance(phase.dtype):
                return {}, UNCHANGED
            return {"obj": xp.exp(1j * new_phase).astype(obj.dtype)}, Change(
                "reset", "object phase band-limited to %.4g of Nyquist" % self.cutoff)
        new = self._pi(obj)
        if _relative(xp, obj - new, obj) <= inside_tolerance(obj.real.dtype):
            return {}, UNCHANGED
        return {"obj": new}, Change("reset", "object band-limited to %.4g of Nyquist" % self.cutoff)


class PositionRecenter(ParamsConstraint):
    """The position corrections keep a zero mean (class A; PtyRAD's ``pos_recenter`` with relax 0).

    With ``p0`` the given positions in the current canvas frame
    (``given_positions - position_offset``), the subspace is ``mean_n(p_n -
    p0_n) = 0``: on activation ``p <- p - mean_n(p - p0)``, then every
    position gradient loses its mean, ``G <- G - mean_n G``.  This removes
    the unobservable global translation of the positions (which otherwise
    trades with a shift of the object) without resetting the history after
    activation.  Lee et al., PtyRAD (2025), "pos_recenter"; design section
    4.2.

    Row: ``pos_recenter`` (epoch-dependent).
    """

    name = "pos_recenter"
    PARAMS = ("pos_recenter",)
    SWITCH = "pos_recenter"

    def projected_blocks(self, epoch):
        return ("positions",)

    def project(self, block, g, epoch):
        return g - self.xp.mean(g, axis=0, keepdims=True)

    def apply(self, arrays, epoch, ctx):
        xp, pos = self.xp, arrays["positions"]
        p0 = xp.asarray(np.asarray(ctx.given_positions) - np.asarray(ctx.position_offset)[None, :], dtype=pos.dtype)
        mean = xp.mean(pos - p0, axis=0, keepdims=True)
        if float(xp.max(xp.abs(mean))) <= 1e-9:
            return {}, UNCHANGED
        shift = [float(v) for v in self.bk.to_numpy(mean).ravel()]
        return {"positions": pos - mean}, Change(
            "reset", "mean position correction (%.3g, %.3g) px removed" % (shift[0], shift[1]))


#: in order of application
CONSTRAINTS: tuple = (ObjectBandLimit, PositionRecenter)
