"""Loss terms on the object: mixed-state variance, L1 norms, adaptive TV, missing wedge.

Every term acts on the object ``O`` in the internal layout (S slices, K modes,
Ny, Nx), complex128 or complex64, and follows :class:`pypty.regularizers.LossTerm`:
``value_and_grad(arrays, epoch)`` returns ``(R, {"obj": G})`` with R a Python
float accumulated in float64 and ``G = 2 dR/d(conj O)`` (so
``R(O + dO) ~ R(O) + Re sum conj(G) dO``) in the object's dtype.  Inputs are
never modified.  The definitions are the recommended ones of
``design/regularizers.md`` (sections 3.1, 3.4, 3.5, 3.10); they are C^1 so the
strong-Wolfe line search of :mod:`pypty.optim` sees a continuous gradient.

Notation: ``F`` is the unitary 2-D DFT over (y, x) (:meth:`pypty.backend.Backend.fft2`),
``F3`` the unitary 3-D DFT over (s, y, x); ``f = fftfreq(N)`` in cycles/px;
``rho_eps(t) = sqrt(t^2 + eps^2) - eps`` is the smooth L1 of Charbonnier et al.
(1994).  The weights are in loss units and are not multiplied by ``loss_weight``.
"""
from __future__ import annotations

import math

import numpy as np

from ..parameters.schedule import may_be_on
from .base import ParamsTerm, value_key

__all__ = ["MixedVariance", "PhaseNorm", "AbsNorm", "AdaptiveTV", "MissingWedge", "TERMS"]

#: smallest modulus used in 1/abs(O) and ln abs(O) (the L1 terms)
_TINY = 1e-12


def _obj(arrays):
    """The object array and its real dtype."""
    obj = arrays["obj"]
    return obj, obj.real.dtype


def _sum64(xp, a) -> float:
    """Sum of a real array accumulated in float64, as a Python float."""
    return float(xp.sum(a, dtype=xp.float64))


def _sq_abs(a):
    """abs(a)^2 of a complex array without a square root (real dtype of a)."""
    return a.real * a.real + a.imag * a.imag


def _rho(xp, t, eps):
    """Smooth L1 ``sqrt(t^2 + eps^2) - eps`` and its derivative ``t / sqrt(t^2 + eps^2)``.

    Written as ``t^2 / (sqrt(t^2 + eps^2) + eps)`` so that small ``t`` loses no digits
    to cancellation.  Charbonnier, Blanc-Feraud, Aubert & Barlaud, ICIP 1994.
    """
    root = xp.sqrt(t * t + eps * eps)
    return t * t / (root + eps), t / root


class MixedVariance(ParamsTerm):
    r"""Penalty on low-frequency differences between object modes (design 3.1; PyPty's mixed-state variance).

    For every slice s, with ``g(f) = exp(-(f_y^2 + f_x^2) / sigma^2)`` (f in cycles/px)::

        B[s,k] = F^-1[g F O[s,k]],   Bbar[s] = (1/K) sum_k B[s,k]
        R = (w/K) sum_{s,k,y,x} abs(B[s,k] - Bbar[s])^2
        G[s,k] = (2w/K) F^-1[g F(B[s,k] - Bbar[s])]

    The mode differences are weighted by ``exp(-2 f^2 / sigma^2)`` in power, so
    ``sigma`` is a frequency width (cycles/px, the 1/e half-width of g; 0.5 is
    e^-1 at Nyquist on an axis).  R is a convex quadratic, invariant under
    adding one array to every mode, ``sum_k G[s,k] = 0`` (the mode mean is not
    changed), and R = 0, G = 0 for K = 1.

    Parameters
    ----------
    p : dict
        Validated parameters; the term reads these rows (``PARAMS``):

        - ``mixed_variance_weight``: w >= 0, epoch-dependent, loss units;
        - ``mixed_variance_sigma``: sigma > 0, epoch-dependent, cycles/px.

    bk : pypty.backend.Backend
        Array module and FFTs (NumPy or CuPy).

    Notes
    -----
    Computed in Fourier space (Parseval, unitary F): ``Dhat = g (F O - mean_k F O)``,
    ``R = (w/K) sum abs(Dhat)^2``, ``G = (2w/K) F^-1[g Dhat]``: one forward and one
    inverse FFT of the object.
    """

    name = "mixed_variance"
    PARAMS = ("mixed_variance_weight", "mixed_variance_sigma")
    WEIGHT = "mixed_variance_weight"

    def value_and_grad(self, arrays, epoch):
        """Value and gradient at ``arrays["obj"]``.

        Parameters
        ----------
        arrays : dict
            ``arrays["obj"]``: object, internal layout (S, K, Ny, Nx), complex128
            or complex64, NumPy or CuPy (not modified).
        epoch : int
            Epoch at which the parameters are resolved.

        Returns
        -------
        (float, {"obj": G})
            R (a Python float, summed in float64) and ``G = 2 dR/d(conj O)``,
            of the object's shape and dtype.
        """
        xp = self.xp
        obj, rdt = _obj(arrays)
        K, Ny, Nx = obj.shape[1:]
        if K < 2:
            return 0.0, {"obj": xp.zeros_like(obj)}
        w = self.weight(epoch)
        sigma = float(self.at("mixed_variance_sigma", epoch))
        fy = xp.fft.fftfreq(Ny).astype(rdt)
        fx = xp.fft.fftfreq(Nx).astype(rdt)
        g = xp.exp(-(fy[:, None] ** 2 + fx[None, :] ** 2) / rdt.type(sigma * sigma))
        spec = self.bk.fft2(obj)
        dhat = g * (spec - xp.mean(spec, axis=1, keepdims=True))
        value = (w / K) * _sum64(xp, _sq_abs(dhat))
        grad = self.bk.ifft2(dhat * g)
        grad *= rdt.type(2.0 * w / K)
        return value, {"obj": grad.astype(obj.dtype, copy=False)}


class _LogNorm(ParamsTerm):
    """Shared code of :class:`PhaseNorm` and :class:`AbsNorm`: smooth L1 of a part of ln O."""

    EPS = ""

    def _part(self, xp, obj, mod):
        raise NotImplementedError

    def value_and_grad(self, arrays, epoch):
        """Value and gradient at ``arrays["obj"]``.

        Parameters
        ----------
        arrays : dict
            ``arrays["obj"]``: object, internal layout (S, K, Ny, Nx), complex128
            or complex64, NumPy or CuPy (not modified).
        epoch : int
            Epoch at which the parameters are resolved.

        Returns
        -------
        (float, {"obj": G})
            R (a Python float, summed in float64) and ``G = 2 dR/d(conj O)``,
            of the object's shape and dtype.
        """
        xp = self.xp
        obj, rdt = _obj(arrays)
        w = self.weight(epoch)
        eps = rdt.type(self.at(self.EPS, epoch))
        mod = xp.maximum(xp.abs(obj), rdt.type(_TINY))
        val, der = _rho(xp, self._part(xp, obj, mod), eps)
        value = w * _sum64(xp, val)
        factor = der / (mod * mod)
        factor *= rdt.type(w)
        grad = obj * (factor * self.DIRECTION)
        return value, {"obj": grad.astype(obj.dtype, copy=False)}


class PhaseNorm(_LogNorm):
    r"""Smooth L1 norm of the object phase (design 3.4; PyPty's ``phase_norm_weight``).

    With ``phi = arg O`` (principal value in (-pi, pi], rad)::

        R = w sum_{s,k,y,x} rho_eps(phi),       rho_eps(t) = sqrt(t^2 + eps^2) - eps
        G = i w rho_eps'(phi) O / max(abs(O), 1e-12)^2

    The gradient is tangential (``Re(conj(G) O) = 0``): the term changes only
    the phase.  ``abs(R - w sum abs(phi)) <= w eps count``.  Minimising
    ``norm(O - O_n)^2 + R`` soft-thresholds the phase at about w/2 (vacuum
    noise below it goes to 0).  R jumps where phi wraps at +-pi, which lies
    outside the intended regime of per-slice phases well below pi.
    Smoothing: Charbonnier et al., ICIP 1994; the eps replaces PyPty's
    non-differentiable abs(phi), whose kink sits at the vacuum value.

    Parameters
    ----------
    p : dict
        Validated parameters; the term reads these rows (``PARAMS``):

        - ``phase_norm_weight``: w >= 0, epoch-dependent, loss units per rad;
        - ``phase_norm_eps``: eps > 0, rad.

    bk : pypty.backend.Backend
        Array module and FFTs (NumPy or CuPy).
    """

    name = "phase_norm"
    PARAMS = ("phase_norm_weight", "phase_norm_eps")
    WEIGHT = "phase_norm_weight"
    EPS = "phase_norm_eps"
    DIRECTION = 1j

    def _part(self, xp, obj, mod):
        return xp.angle(obj)


class AbsNorm(_LogNorm):
    r"""Smooth L1 norm of the absorption ``-ln abs(O)`` (design 3.4; PyPty's ``abs_norm_weight``).

    With ``a = ln max(abs(O), 1e-12)`` (dimensionless; rho_eps is even, so the sign of a is immaterial)::

        R = w sum_{s,k,y,x} rho_eps(a),         rho_eps(t) = sqrt(t^2 + eps^2) - eps
        G = w rho_eps'(a) O / max(abs(O), 1e-12)^2

    The gradient is radial (``Im(conj(G) O) = 0``): the term changes only the
    modulus, pulling it towards 1.  ``abs(R - w sum abs(a)) <= w eps count``.
    Smoothing: Charbonnier et al., ICIP 1994.

    Parameters
    ----------
    p : dict
        Validated parameters; the term reads these rows (``PARAMS``):

        - ``abs_norm_weight``: w >= 0, loss units;
        - ``abs_norm_eps``: eps > 0, dimensionless.

    bk : pypty.backend.Backend
        Array module and FFTs (NumPy or CuPy).
    """

    name = "abs_norm"
    PARAMS = ("abs_norm_weight", "abs_norm_eps")
    WEIGHT = "abs_norm_weight"
    EPS = "abs_norm_eps"
    DIRECTION = 1.0

    def _part(self, xp, obj, mod):
        return xp.log(mod)


class AdaptiveTV(ParamsTerm):
    r"""Smoothed total variation TV_{p,q} of every (slice, mode) image (design 3.5; PyPty's ``atv_*``).

    Forward differences with a Neumann boundary (0 on the last column / row),
    per pixel (no Å scaling; anisotropic pixels are not compensated)::

        Dx O[..,y,x] = O[..,y,x+1] - O[..,y,x]  (x < Nx-1),   0 at x = Nx-1;  Dy likewise
        ax = abs(Dx O)^2 + eps^2,   ay = abs(Dy O)^2 + eps^2,   T = ax^(p/2) + ay^(p/2)
        R = w sum_{s,k,y,x} [ T^(q/p) - (2 eps^p)^(q/p) ]
        G = w q [ Dx^H(T^(q/p-1) ax^(p/2-1) Dx O) + Dy^H(T^(q/p-1) ay^(p/2-1) Dy O) ]

    p combines the two directions (2: isotropic, 1: anisotropic), q is the
    outer power (1: edge-preserving TV of Rudin, Osher & Fatemi, Physica D 60,
    1992; 2: quadratic smoothing).  eps sits inside each component, so the
    term is C^1 with a locally Lipschitz gradient for p >= 1, 0 < q <= 2; in
    flat regions the curvature is about ``w q eps^(q-2)``.  R = 0 and G = 0
    for a constant object.

    Parameters
    ----------
    p : dict
        Validated parameters; the term reads these rows (``PARAMS``):

        - ``atv_weight``: w >= 0, epoch-dependent, loss units;
        - ``atv_q``: 0 < q <= 2, epoch-dependent;
        - ``atv_p``: p >= 1, epoch-dependent;
        - ``atv_eps``: eps > 0, units of O per px.

    bk : pypty.backend.Backend
        Array module and FFTs (NumPy or CuPy).
    """

    name = "atv"
    PARAMS = ("atv_weight", "atv_q", "atv_p", "atv_eps")
    WEIGHT = "atv_weight"

    @classmethod
    def check_params(cls, p) -> list:
        """Cross-checks of the ATV rows beyond the table's own.

        Parameters
        ----------
        p : dict
            Parameters (constants, callables or compiled epoch expressions).

        Returns
        -------
        list of str
            One message per constant ``atv_p < 1``, ``atv_q`` outside (0, 2] or
            ``atv_eps <= 0``, naming the row.  Epoch-dependent values are checked
            when resolved (:meth:`value_and_grad` raises ValueError).
        """
        errors = []
        checks = (("atv_p", lambda v: v >= 1, "atv_p must be >= 1 (got %r)"),
                  ("atv_q", lambda v: 0 < v <= 2, "atv_q must lie in (0, 2] (got %r)"),
                  ("atv_eps", lambda v: v > 0, "atv_eps must be > 0 (got %r)"))
        for key, ok, msg in checks:
            v = p.get(key)
            if v is not None and not callable(v) and not ok(float(v)):
                errors.append(msg % (v,))
        return errors

    def _exponents(self, epoch):
        q, pw = float(self.at("atv_q", epoch)), float(self.at("atv_p", epoch))
        eps = float(self.at("atv_eps", epoch))
        if not (pw >= 1 and 0 < q <= 2 and eps > 0):
            raise ValueError("atv: need atv_p >= 1, 0 < atv_q <= 2 and atv_eps > 0; got p=%r, q=%r, eps=%r at "
                             "epoch %d" % (pw, q, eps, epoch))
        return q, pw, eps

    def _dx(self, u, axis):
        """Forward difference along ``axis`` (-1 or -2), 0 on the last index (Neumann)."""
        d = self.xp.zeros_like(u)
        if axis == -1:
            d[..., :-1] = u[..., 1:] - u[..., :-1]
        else:
            d[..., :-1, :] = u[..., 1:, :] - u[..., :-1, :]
        return d

    def _dxT(self, v, out, axis):
        """``out += D^H v`` for the difference of :meth:`_dx` (the last index of v is ignored)."""
        if axis == -1:
            out[..., :-1] -= v[..., :-1]
            out[..., 1:] += v[..., :-1]
        else:
            out[..., :-1, :] -= v[..., :-1, :]
            out[..., 1:, :] += v[..., :-1, :]

    def value_and_grad(self, arrays, epoch):
        """Value and gradient at ``arrays["obj"]``.

        Parameters
        ----------
        arrays : dict
            ``arrays["obj"]``: object, internal layout (S, K, Ny, Nx), complex128
            or complex64, NumPy or CuPy (not modified).
        epoch : int
            Epoch at which the parameters are resolved.

        Returns
        -------
        (float, {"obj": G})
            R (a Python float, summed in float64) and ``G = 2 dR/d(conj O)``,
            of the object's shape and dtype.

        Raises
        ------
        ValueError
            The exponents resolved at ``epoch`` are outside p >= 1, 0 < q <= 2.
        """
        xp = self.xp
        obj, rdt = _obj(arrays)
        w = self.weight(epoch)
        q, pw, eps = self._exponents(epoch)
        e2 = rdt.type(eps * eps)
        dx, dy = self._dx(obj, -1), self._dx(obj, -2)
        ax, ay = _sq_abs(dx) + e2, _sq_abs(dy) + e2
        hx, hy = ax ** rdt.type(pw / 2), ay ** rdt.type(pw / 2)
        t = hx + hy
        # the flat-object value (2 eps^p)^(q/p), by the same operations as t, so that R = 0 exactly there
        h0 = xp.full((1,), e2, dtype=rdt) ** rdt.type(pw / 2)
        floor = (h0 + h0) ** rdt.type(q / pw)
        value = w * _sum64(xp, t ** rdt.type(q / pw) - floor)
        c = t ** rdt.type(q / pw - 1)
        c *= rdt.type(w * q)
        grad = xp.zeros_like(obj)
        self._dxT(dx * (c * hx / ax), grad, -1)
        self._dxT(dy * (c * hy / ay), grad, -2)
        return value, {"obj": grad}


class MissingWedge(ParamsTerm):
    r"""Missing-wedge penalty on the 3-D object spectrum (design 3.10; PyPty's ``beta_wedge``/``wedge_mu``).

    With the unitary 3-D DFT ``F3`` over (slice, y, x) of each mode and the
    frequencies ``q_z = fftfreq(S, dz)``, ``q_y = fftfreq(Ny, d_y)``,
    ``q_x = fftfreq(Nx, d_x)`` (1/Å; dz = ``slice_distances[0]``, d_y, d_x the
    pixel sizes, Å)::

        q0 = (1/2) min(1/(Ny d_y), 1/(Nx d_x))
        W(q) = (2/pi) atan( beta^2 q_z^2 / (q_x^2 + q_y^2 + q0^2) )          in [0, 1)
        R = mu sum_k sum_q W(q) abs((F3 O_k)(q))^2
        G = 2 mu F3^-1[ W F3 O_k ]

    W = 1/2 on the cone ``q_z / q_r = 1/beta``; W = 0 on the q_z = 0 plane, so
    R = 0 for a z-invariant object (and for S = 1) and ``sum_s G_s = 0``: the
    slice-summed transmission is not changed by the term.  The q0
    regularisation replaces PyPty's ``q_r^2 = 1 / Å^2`` at q_r = 0, which left
    the laterally uniform z-modulation nearly unpenalised.  Periodic in z (the
    first and last slices are neighbours).  Active when ``wedge_mu > 0`` and
    ``beta_wedge > 0``.  Relation to PtyRAD's kz filter: one gradient step of
    length 1/(2 mu) multiplies F3 O by (1 - W).

    Parameters
    ----------
    p : dict
        Validated parameters; the term reads these rows (``PARAMS``):

        - ``wedge_mu``: mu >= 0, epoch-dependent, loss units;
        - ``beta_wedge``: beta >= 0, epoch-dependent, dimensionless;

        and these core rows (``READS``; in :meth:`key`, not claimed):
        ``pixel_size_y_A``, ``pixel_size_x_A`` (Å), ``slice_distances`` (Å, uniform).

    bk : pypty.backend.Backend
        Array module and FFTs (NumPy or CuPy).
    """

    name = "wedge"
    PARAMS = ("wedge_mu", "beta_wedge")
    #: core rows read but not implemented here (claimed by the core, not by this term)
    READS = ("pixel_size_y_A", "pixel_size_x_A", "slice_distances")
    WEIGHT = "wedge_mu"

    def __init__(self, p, bk):
        super().__init__(p, bk)
        self._cache = None

    @classmethod
    def from_params(cls, p, bk):
        """The term, or None when ``wedge_mu`` or ``beta_wedge`` is constantly 0."""
        return cls(p, bk) if may_be_on(p["wedge_mu"]) and may_be_on(p["beta_wedge"]) else None

    @classmethod
    def check_params(cls, p) -> list:
        """Cross-checks of the missing-wedge rows.

        Parameters
        ----------
        p : dict
            Parameters (constants, callables or compiled epoch expressions).

        Returns
        -------
        list of str
            "beta_wedge > 0 needs wedge_mu > 0" when ``beta_wedge`` may be on
            while ``wedge_mu`` is constantly 0; a message naming
            ``slice_distances`` when both may be on and the slice distances are
            not uniform (relative spread > 1e-6).
        """
        errors = []
        beta_on, mu_on = may_be_on(p.get("beta_wedge", 0)), may_be_on(p.get("wedge_mu", 0))
        if beta_on and not mu_on:
            errors.append("beta_wedge > 0 needs wedge_mu > 0 (the weight of the missing-wedge loss term); "
                          "with wedge_mu = 0 it has no effect")
        if beta_on and mu_on:
            dz = np.asarray(p.get("slice_distances", [1.0]), dtype=float).ravel()
            if dz.size > 1 and not np.allclose(dz, dz[0], rtol=1e-6, atol=0):
                errors.append("beta_wedge/wedge_mu: the missing-wedge term needs uniform slice_distances "
                              "(got %s)" % np.array2string(dz, threshold=8))
        return errors

    def active(self, epoch):
        """True when ``wedge_mu > 0`` and ``beta_wedge > 0`` at ``epoch``."""
        return self.weight(epoch) > 0 and float(self.at("beta_wedge", epoch)) > 0

    def key(self, epoch):
        """Resolved ``wedge_mu``, ``beta_wedge`` and the geometry rows of ``READS``."""
        return super().key(epoch) + tuple(value_key(self.at(k, epoch)) for k in self.READS)

    def filter(self, shape, beta, rdt):
        """The weight W(q) on the FFT grid of an object.

        Parameters
        ----------
        shape : tuple (S, K, Ny, Nx)
            Object shape.
        beta : float
            ``beta_wedge`` (dimensionless).
        rdt : numpy.dtype
            Real dtype of the result.

        Returns
        -------
        array (S, 1, Ny, Nx) of ``rdt``, on the backend's device
            W in [0, 1), FFT order (zero frequency at index 0).  The last one is
            cached (geometry, shape, beta and dtype).
        """
        S, _, Ny, Nx = shape
        dy, dx = float(self.p["pixel_size_y_A"]), float(self.p["pixel_size_x_A"])
        dz = float(np.asarray(self.p["slice_distances"], dtype=float).ravel()[0])
        ck = (shape, beta, dy, dx, dz, np.dtype(rdt).str)
        if self._cache is not None and self._cache[0] == ck:
            return self._cache[1]
        xp = self.xp
        qz = xp.fft.fftfreq(S, dz)
        qy = xp.fft.fftfreq(Ny, dy)
        qx = xp.fft.fftfreq(Nx, dx)
        q0 = 0.5 * min(1.0 / (Ny * dy), 1.0 / (Nx * dx))
        qr2 = qy[:, None] ** 2 + qx[None, :] ** 2 + q0 * q0
        wgt = (2 / math.pi) * xp.arctan(beta * beta * qz[:, None, None] ** 2 / qr2[None])
        wgt = wgt[:, None].astype(rdt)
        self._cache = (ck, wgt)
        return wgt

    def value_and_grad(self, arrays, epoch):
        """Value and gradient at ``arrays["obj"]``.

        Parameters
        ----------
        arrays : dict
            ``arrays["obj"]``: object, internal layout (S, K, Ny, Nx), complex128
            or complex64, NumPy or CuPy (not modified).
        epoch : int
            Epoch at which the parameters are resolved.

        Returns
        -------
        (float, {"obj": G})
            R (a Python float, summed in float64) and ``G = 2 dR/d(conj O)``,
            of the object's shape and dtype.
        """
        xp = self.xp
        obj, rdt = _obj(arrays)
        mu = self.weight(epoch)
        wgt = self.filter(obj.shape, float(self.at("beta_wedge", epoch)), rdt)
        spec = xp.fft.fftn(obj, axes=(0, 2, 3), norm="ortho")
        value = mu * _sum64(xp, wgt * _sq_abs(spec))
        spec *= wgt
        grad = xp.fft.ifftn(spec, axes=(0, 2, 3), norm="ortho")
        grad *= rdt.type(2.0 * mu)
        return value, {"obj": grad.astype(obj.dtype, copy=False)}


#: loss-term classes of this module, in registry order
TERMS: tuple = (MixedVariance, PhaseNorm, AbsNorm, AdaptiveTV, MissingWedge)
