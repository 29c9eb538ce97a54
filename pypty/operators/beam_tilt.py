"""Beam tilts before and after the specimen: real-space phase factors, their adjoint and gradient.

A tilt t (rad) gives the wave the transverse wave vector ``t / lambda``:
``E(t)(r) = exp(2 pi i t.r / lambda)``.  Before the specimen it moves the
bright-field disk in the aperture plane; after the specimen it moves the
pattern in the detector plane by ``t / (lambda dk)`` px.  Applying it is the
per-pattern multiplication :func:`modulate`, whose adjoint multiplies by the
conjugate.
"""
from __future__ import annotations

import numpy as np

from .shift import separable_phase, yx_moments

__all__ = ["window_coordinates_A", "tilt_phase", "tilt_phase_gradient", "modulate", "modulate_adjoint"]


def window_coordinates_A(shape_yx, pixel_size_yx_A):
    """Real-space coordinates (y (Y, 1), x (1, X)) in Å, zero at pixel (Y//2, X//2)."""
    ny, nx = shape_yx
    y = (np.arange(ny) - ny // 2)[:, None] * float(pixel_size_yx_A[0])
    x = (np.arange(nx) - nx // 2)[None, :] * float(pixel_size_yx_A[1])
    return y, x


def tilt_phase(xp, ryx_A, tilts_mrad, wavelength_A, dtype):
    """Real-space factor ``exp(2 pi i (t . r) / lambda)`` of a beam tilt.

    Parameters
    ----------
    ryx_A : (y (Y, 1), x (1, X)) in Å, see :func:`window_coordinates_A`
    tilts_mrad : array (B, 2), (y, x) in mrad
    wavelength_A : float
    dtype : complex dtype

    Returns
    -------
    array (B, Y, X) of ``dtype``.
    """
    return separable_phase(xp, ryx_A, tilts_mrad, 2 * np.pi * 1e-3 / wavelength_A, dtype)


def tilt_phase_gradient(xp, g, wave, ryx_A, wavelength_A):
    """dL/dt (B, 2) per mrad for ``wave = psi * tilt_phase(t)``.

    ``dwave/dt_y = wave 2 pi i 1e-3 r_y / lambda`` so
    ``dL/dt_y = -(2 pi 1e-3 / lambda) sum r_y Im(conj(G) wave)``.

    g, wave : complex (B, ..., Y, X) (gradient at and value of the tilted wave).
    """
    return yx_moments(xp, (g.conj() * wave).imag, ryx_A, -2 * np.pi * 1e-3 / wavelength_A)


def _per_pattern(factor, ndim):
    """(B, Y, X) -> (B, 1, ..., 1, Y, X) with ``ndim`` axes in all."""
    return factor.reshape(factor.shape[:1] + (1,) * (ndim - 3) + factor.shape[1:])


def modulate(psi, factor):
    """``psi * factor`` per pattern: psi (B, ..., Y, X), factor (B, Y, X) broadcast over the mode axes."""
    return psi * _per_pattern(factor, psi.ndim)


def modulate_adjoint(g, factor):
    """Adjoint of :func:`modulate` in psi: ``g * conj(factor)`` per pattern."""
    return g * _per_pattern(factor.conj(), g.ndim)
