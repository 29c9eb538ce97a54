"""Reparametrisations: optimizer blocks that stand for a refinable array through a fixed map.

=====================  =========================  =========================================================
block                  array                      map (block x -> array), chain rule (array gradient G -> block)
=====================  =========================  =========================================================
``obj_phase``          obj (``phase_only_obj``)   ``O = exp(i x)``; ``dL/dx = -Im(conj(G) O)``
``probe_phase``        probe                      ``P = ifft2(|P0_hat| exp(i x))``;
                       (``tune_only_probe_phase``)  ``dL/dx = -Im(conj(G_hat) |P0_hat| exp(i x))``
``probe_abs``          probe                      ``P = ifft2(x exp(i arg P0_hat))``;
                       (``tune_only_probe_abs``)    ``dL/dx = Re(conj(G_hat) exp(i arg P0_hat))``
``background_sqrt``    static_background          ``b = x^2`` (so b >= 0); ``dL/dx = 2 x G``
``probe_normed``       probe                      ``P_u = sqrt(I0_u) x_u / ||x_u||`` per subscan u;
                       (``fix_probe_intensity``)  ``G_x = sqrt(I0_u)/||x_u|| (G_u - x^_u Re<x^_u, G_u>)``
=====================  =========================  =========================================================

``G_hat = fft2(G)`` (unitary); ``P0_hat`` is the *reference*: the probe's
spectrum when the reparametrisation became active, which fixes the half
(amplitude or phase) that is not refined.  For ``probe_normed`` the
reference is ``I0`` (U,), the total intensity ``sum |P_u|^2`` of each
subscan's probe when ``fix_probe_intensity`` became active, and
``x^_u = x_u / ||x_u||`` (norms and inner products over modes and pixels).
This is an exact reparametrisation of the sphere ``sum |P_u|^2 = I0_u``
(``design/regularizers.md`` section 4.2, class B): it removes the scale
ambiguity between probe, object amplitude and beam current without
resetting the optimizer.

The engine keeps the block values of the last accepted step, so that a block
such as ``obj_phase`` continues exactly (the phase is not re-wrapped through
``angle``).  A kept value is stale once another block that changes the same
array was accepted: :attr:`Reparam.stale_on`.
"""
from __future__ import annotations

from types import MappingProxyType

__all__ = ["Reparam", "ObjPhase", "ProbePhase", "ProbeAbs", "BackgroundSqrt", "ProbeNormed", "REPARAMS",
           "block_reparam"]


class Reparam:
    """Base of a reparametrisation (see the module docstring).

    Attributes
    ----------
    block : str
        Optimizer block name.
    array : str
        The refinable array it stands for.
    stale_on : tuple of str
        Blocks whose accepted update makes a kept value of this block stale.
    uses_reference : bool
        The map depends on a reference of the probe (see the module docstring).
    """

    block = ""
    array = ""
    stale_on: tuple = ()
    uses_reference = False
    #: parameter-table rows that switch this reparametrisation on (claimed, see tests/parameters/test_claims.py)
    PARAMS: tuple = ()

    def reference(self, bk, arrays):
        """The reference this map needs, from the current arrays (spectrum of the probe by default)."""
        return bk.fft2(arrays["probe"])

    def initial(self, bk, arrays, real_dtype):
        """Block value that reproduces ``arrays[self.array]``."""
        raise NotImplementedError

    def to_array(self, bk, x, ref, complex_dtype):
        """The array for block value ``x`` (``ref``: reference spectrum or None)."""
        raise NotImplementedError

    def grad(self, bk, g, x, value, ref):
        """Block gradient from the array gradient ``g`` at block value ``x`` (``value``: the array)."""
        raise NotImplementedError


class ObjPhase(Reparam):
    block, array, stale_on = "obj_phase", "obj", ("obj",)

    def initial(self, bk, arrays, real_dtype):
        return bk.xp.angle(arrays["obj"]).astype(real_dtype)

    def to_array(self, bk, x, ref, complex_dtype):
        return bk.xp.exp(1j * x).astype(complex_dtype)

    def grad(self, bk, g, x, value, ref):
        # O = exp(i phi): dL/dphi = Re(conj(G) i O) = -Im(conj(G) O)
        return -(g.conj() * value).imag


class ProbePhase(Reparam):
    block, array, stale_on, uses_reference = "probe_phase", "probe", ("probe", "probe_abs"), True

    def initial(self, bk, arrays, real_dtype):
        return bk.xp.angle(bk.fft2(arrays["probe"])).astype(real_dtype)

    def to_array(self, bk, x, ref, complex_dtype):
        return bk.ifft2(bk.xp.abs(ref) * bk.xp.exp(1j * x)).astype(complex_dtype)

    def grad(self, bk, g, x, value, ref):
        xp = bk.xp  # P = |P0| exp(i phi): dL/dphi = -Im(conj(G) P)
        return -(bk.fft2(g).conj() * (xp.abs(ref) * xp.exp(1j * x))).imag


class ProbeAbs(Reparam):
    block, array, stale_on, uses_reference = "probe_abs", "probe", ("probe", "probe_phase"), True

    def initial(self, bk, arrays, real_dtype):
        return bk.xp.abs(bk.fft2(arrays["probe"])).astype(real_dtype)

    def to_array(self, bk, x, ref, complex_dtype):
        return bk.ifft2(x * bk.xp.exp(1j * bk.xp.angle(ref))).astype(complex_dtype)

    def grad(self, bk, g, x, value, ref):
        xp = bk.xp  # P = a exp(i phi0): dL/da = Re(conj(G) exp(i phi0))
        return (bk.fft2(g).conj() * xp.exp(1j * xp.angle(ref))).real


class BackgroundSqrt(Reparam):
    block, array = "background_sqrt", "static_background"

    def initial(self, bk, arrays, real_dtype):
        return bk.xp.sqrt(arrays["static_background"])

    def to_array(self, bk, x, ref, complex_dtype):
        return x * x

    def grad(self, bk, g, x, value, ref):
        return 2.0 * x * g


class ProbeNormed(Reparam):
    block, array, stale_on, uses_reference = "probe_normed", "probe", ("probe", "probe_phase", "probe_abs"), True
    PARAMS = ("fix_probe_intensity",)

    def reference(self, bk, arrays):
        p = arrays["probe"]
        return bk.xp.sum((p * p.conj()).real, axis=(1, 2, 3), dtype=bk.xp.float64)  # I0 per subscan (U,)

    def initial(self, bk, arrays, real_dtype):
        return arrays["probe"]

    @staticmethod
    def _norms(xp, x):
        return xp.sqrt(xp.sum((x * x.conj()).real, axis=(1, 2, 3), dtype=xp.float64))[:, None, None, None]

    def to_array(self, bk, x, ref, complex_dtype):
        xp = bk.xp
        scale = xp.sqrt(ref)[:, None, None, None] / self._norms(xp, x)
        return (x * scale).astype(complex_dtype)

    def grad(self, bk, g, x, value, ref):
        xp = bk.xp
        n = self._norms(xp, x)
        u = x / n
        radial = xp.sum((u.conj() * g).real, axis=(1, 2, 3), dtype=xp.float64)[:, None, None, None]
        return (xp.sqrt(ref)[:, None, None, None] / n) * (g - u * radial)


#: block name -> reparametrisation (read-only).
REPARAMS = MappingProxyType({r.block: r for r in (ObjPhase(), ProbePhase(), ProbeAbs(), BackgroundSqrt(),
                                                  ProbeNormed())})


def block_reparam(name: str, phase_only_obj: bool, probe_part: str):
    """The reparametrisation of array ``name`` in an epoch, or None (the array is its own block).

    ``probe_part`` is "", "phase", "abs" (``tune_only_probe_phase`` /
    ``tune_only_probe_abs``) or "normed" (``fix_probe_intensity``); the
    static background is always refined as its square root.
    """
    if name == "obj" and phase_only_obj:
        return REPARAMS["obj_phase"]
    if name == "probe" and probe_part:
        return REPARAMS["probe_" + probe_part]
    if name == "static_background":
        return REPARAMS["background_sqrt"]
    return None
