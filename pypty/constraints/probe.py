"""Probe constraints: hard aperture (class A) and orthogonal modes (class C).

The fixed probe intensity (``fix_probe_intensity``, class B) is an exact
reparametrisation of the probe block: :class:`pypty.model.reparam.ProbeNormed`.
The soft reciprocal-space and window penalties are loss terms
(:mod:`pypty.regularizers.probe_terms`).
"""
from __future__ import annotations

import math

import numpy as np

from .base import UNCHANGED, Change, ParamsConstraint
from .projections import _relative, inside_tolerance

__all__ = ["HardAperture", "OrthogonalProbeModes", "CONSTRAINTS"]


def _probe_mask(p):
    """The reciprocal-space probe mask (Y, X) float64, centred: ``probe_constraint_mask``, else ``aperture_mask``."""
    m = p.get("probe_constraint_mask")
    return p.get("aperture_mask") if m is None else m


class HardAperture(ParamsConstraint):
    """``probe_reg_constraint_weight = inf``: the probe spectrum is kept inside a binary aperture (class A).

    With ``A`` the binary mask (``probe_constraint_mask``, else
    ``aperture_mask``; centred, probe-window shape) moved to FFT order,
    ``Pi P = F^-1[A F P]`` for every subscan and mode.  On activation the
    probe is projected (history reset); afterwards every probe gradient is
    projected, so the probe stays inside the aperture exactly with no further
    resets (``design/regularizers.md`` 3.2, class A).  With
    ``tune_only_probe_abs`` the spectrum amplitude block is multiplied by
    ``A``.  A finite weight is the soft L2 penalty of
    :mod:`pypty.regularizers.probe_terms`, which claims the rows.
    """

    name = "hard_aperture"
    PARAMS = ()

    def __init__(self, p, bk):
        super().__init__(p, bk)
        self.mask = bk.xp.asarray(np.fft.ifftshift(np.asarray(_probe_mask(p), dtype=np.float64)))

    @classmethod
    def from_params(cls, p, bk):
        w = p["probe_reg_constraint_weight"]
        return cls(p, bk) if (isinstance(w, float) and math.isinf(w)) else None

    @classmethod
    def check_params(cls, p) -> list:
        w = p["probe_reg_constraint_weight"]
        if not (isinstance(w, float) and math.isinf(w)):
            return []
        m = _probe_mask(p)
        if m is None:
            return ["parameter 'probe_reg_constraint_weight' = inf (a hard aperture) needs probe_constraint_mask "
                    "or aperture_mask"]
        if not np.all((np.asarray(m) == 0) | (np.asarray(m) == 1)):
            which = "probe_constraint_mask" if p.get("probe_constraint_mask") is not None else "aperture_mask"
            return ["parameter '%s' must be binary (0 or 1) when probe_reg_constraint_weight = inf" % which]
        return []

    def active(self, epoch):
        return True

    def projected_blocks(self, epoch):
        return ("probe", "probe_abs")

    def project(self, block, g, epoch):
        if block == "probe_abs":  # a real spectrum amplitude in FFT order
            return g * self.mask.astype(g.dtype)
        return self.bk.ifft2(self.bk.fft2(g) * self.mask).astype(g.dtype, copy=False)

    def apply(self, arrays, epoch, ctx):
        probe = arrays["probe"]
        new = self.bk.ifft2(self.bk.fft2(probe) * self.mask).astype(probe.dtype, copy=False)
        if _relative(self.xp, probe - new, probe) <= inside_tolerance(probe.real.dtype):
            return {}, UNCHANGED
        return {"probe": new}, Change("reset", "probe spectrum projected onto the aperture")


class OrthogonalProbeModes(ParamsConstraint):
    """``keep_probe_states_orthogonal``: probe modes in the eigenbasis of their Gram matrix (class C).

    For each subscan u, with ``Phi_u = [vec P[u,0], ..., vec P[u,M-1]]``
    (YX x M) and ``Phi_u^H Phi_u = V diag(lambda) V^H`` (``eigh`` in float64,
    lambda descending), the new modes are ``P'_u = Phi_u V``: mutually
    orthogonal, sorted by power, with the same density matrix ``sum_m P_m
    P_m^H``, hence the same model patterns, loss and total intensity.
    Unlike Gram-Schmidt (PyPty), which changes the density matrix and the
    loss, this is a unitary change of basis: the L-BFGS pairs and the cached
    gradient are mapped by the same ``V`` and nothing is reset
    (``design/regularizers.md`` 3.11; PtyRAD's ``ortho_pmode``).

    Acts at the start of every epoch where the switch is on, the probe is
    refined as a whole (or at fixed intensity) and M > 1; skipped when the
    basis is already the eigenbasis (``V`` = identity to 1e-12).

    Row: ``keep_probe_states_orthogonal`` (epoch-dependent).
    """

    name = "orthogonal_probe_modes"
    PARAMS = ("keep_probe_states_orthogonal",)
    SWITCH = "keep_probe_states_orthogonal"

    def rotations(self, probe):
        """``V`` (U, M, M) complex128 on the host, eigenvectors by descending eigenvalue, and the eigenvalues."""
        phi = self.bk.to_numpy(probe).astype(np.complex128)  # (U, M, Y, X)
        u, m = phi.shape[:2]
        flat = phi.reshape(u, m, -1)
        gram = np.einsum("umk,unk->umn", flat.conj(), flat)  # G[m, n] = <P_m, P_n>
        gram = 0.5 * (gram + np.conj(np.swapaxes(gram, 1, 2)))
        lam, vec = np.linalg.eigh(gram)
        order = np.argsort(-lam, axis=1, kind="stable")
        lam = np.take_along_axis(lam, order, axis=1)
        vec = np.take_along_axis(vec, order[:, None, :], axis=2)
        # fix the phase of each eigenvector (largest entry real positive) so the map is deterministic
        idx = np.argmax(np.abs(vec), axis=1)
        ph = np.take_along_axis(vec, idx[:, None, :], axis=1)
        vec = vec * (np.abs(ph) / np.where(ph == 0, 1, ph))
        return vec, lam

    def apply(self, arrays, epoch, ctx):
        block = ctx.settings.block_name("probe")
        probe = arrays["probe"]
        if "probe" not in ctx.settings.refine or block not in ("probe", "probe_normed") or probe.shape[1] < 2:
            return {}, UNCHANGED
        vec, _ = self.rotations(probe)
        eye = np.eye(vec.shape[1])[None]
        if np.max(np.abs(vec - eye)) <= 1e-12:
            return {}, UNCHANGED
        v = self.xp.asarray(vec.astype(probe.dtype))
        xp = self.xp

        def rotate(a):  # a'[u, j] = sum_m V[u, m, j] a[u, m]
            return xp.einsum("umj,umyx->ujyx", v.astype(a.dtype), a)

        return {"probe": rotate(probe)}, Change("map", "probe modes orthogonalised", {block: rotate})


#: in order of application (the orthogonalisation last: the probe returned is orthogonal and sorted)
CONSTRAINTS: tuple = (HardAperture, OrthogonalProbeModes)
