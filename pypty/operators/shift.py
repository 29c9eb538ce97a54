"""Sub-pixel shift of the probe (Fourier shift theorem), its adjoint and its gradient.

The probe of pattern n is moved by its sub-pixel remainder ``s_n`` (px)::

    psi_0 = ifft2(P_n * R(s_n)),    R(s)(k) = exp(-2 pi i k.s)    (k in cycles/px)

``P_n`` are the per-pattern probe spectra (probe of the subscan times the
CTF).  Adjoints are with respect to ``<a, b> = Re sum conj(a) b`` (see
:mod:`pypty.operators`).  The separable helpers :func:`separable_phase` and
:func:`yx_moments` are shared with the tilt operators.
"""
from __future__ import annotations

import numpy as np

__all__ = ["separable_phase", "yx_moments", "shift_ramp", "shift_probe", "shift_probe_adjoint", "shift_gradient"]


def separable_phase(xp, wyx, coeffs, scale, dtype):
    """``exp(i scale (c_y w_y + c_x w_x))`` per batch entry, built as an outer product.

    The phase ramps of sub-pixel shifts, beam tilts and tilted propagation all
    have this form; two 1D exponentials per entry replace one 2D one.

    wyx : (w_y (Y, 1), w_x (1, X)); coeffs : real (B, 2); scale : float.
    Returns ``dtype`` (B, Y, X).
    """
    wy, wx = wyx
    ry = xp.exp(1j * scale * (wy[None] * coeffs[:, 0, None, None])).astype(dtype)  # (B, Y, 1)
    rx = xp.exp(1j * scale * (wx[None] * coeffs[:, 1, None, None])).astype(dtype)  # (B, 1, X)
    return ry * rx


def yx_moments(xp, q, wyx, scale=1.0):
    """``scale * (sum q w_y, sum q w_x)`` per batch entry, for separable weights.

    The gradients of shifts and tilts all have this form (a weighted sum of
    ``Im(conj(G) z)`` with a coordinate or frequency as weight).

    q : real (B, ..., Y, X) (leading extra axes, e.g. modes, are summed);
    wyx : (w_y (Y, 1), w_x (1, X)).  Returns float64 (B, 2).
    """
    wy, wx = wyx
    q = q.reshape((q.shape[0], -1) + q.shape[-2:]).sum(axis=1, dtype=xp.float64)  # (B, Y, X)
    gy = q.sum(axis=2) @ wy[:, 0].astype(xp.float64)  # separable: one reduction per axis
    gx = q.sum(axis=1) @ wx[0].astype(xp.float64)
    return scale * xp.stack([gy, gx], axis=1)


def shift_ramp(xp, kyx, shifts, dtype):
    """Phase ramps that shift a function by ``shifts`` pixels.

    f(r - s)  <->  F(k) exp(-2 pi i k.s)  (Fourier shift theorem).

    Parameters
    ----------
    xp : module
    kyx : (ky, kx)
        Frequencies in cycles/px, shapes (Y, 1) and (1, X), FFT order.
    shifts : array, float, shape (B, 2)
        Shifts (y, x) in px; positive moves the function to larger indices.
    dtype : complex dtype

    Returns
    -------
    array, ``dtype``, shape (B, Y, X)
    """
    return separable_phase(xp, kyx, shifts, -2 * np.pi, dtype)


def shift_probe(bk, spectra, ramp):
    """Shifted probes in real space: ``ifft2(spectra * ramp[:, None])``.

    Parameters
    ----------
    bk : pypty.backend.Backend
    spectra : complex (Mp, Y, X), (1, Mp, Y, X) or (B, Mp, Y, X)
        Probe spectra ``P_n`` (one for all patterns, or one per pattern), FFT order.
    ramp : complex (B, Y, X)
        :func:`shift_ramp` of the sub-pixel remainders.

    Returns
    -------
    complex (B, Mp, Y, X)
    """
    if spectra.ndim == 3:
        spectra = spectra[None]
    return bk.ifft2(spectra * ramp[:, None])


def shift_probe_adjoint(bk, g, ramp):
    """Adjoint of :func:`shift_probe` with respect to per-pattern spectra.

    ``fft2(g) * conj(ramp)[:, None]``: the gradient of the loss with respect
    to ``P_n`` (B, Mp, Y, X).  For one spectrum shared by all patterns, sum it
    over B.  The same array feeds :func:`shift_gradient` and the aberration
    gradient.
    """
    return bk.fft2(g) * ramp.conj()[:, None]


def shift_gradient(xp, g_hat_shifted, probe_hat, kyx):
    """Gradient of the loss w.r.t. the sub-pixel shifts (y, x) in px.

    With psi0 = ifft2(P̂ R(s)), dpsi0/ds_y = ifft2(P̂ R(s) (-2 pi i k_y)), so
    dL/ds_y = Re sum conj(G_hat R*) P̂ (-2 pi i k_y) by Parseval, where
    ``g_hat_shifted = fft2(G) * conj(R)`` (:func:`shift_probe_adjoint`).

    Parameters
    ----------
    g_hat_shifted : (B, Mp, Y, X) complex
    probe_hat : (Mp, Y, X) or (B, Mp, Y, X) complex (per-pattern spectra)
    kyx : (ky, kx), frequencies in cycles/px, shapes (Y, 1), (1, X)

    Returns
    -------
    array, float64, shape (B, 2)
    """
    if probe_hat.ndim == 3:
        probe_hat = probe_hat[None]
    q = xp.sum(g_hat_shifted.conj() * probe_hat, axis=1)  # (B, Y, X)
    # Re(q * (-2 pi i k)) = 2 pi k Im(q)
    return yx_moments(xp, q.imag, kyx, 2 * np.pi)
