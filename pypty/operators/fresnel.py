"""Fresnel propagation between slices: band-limited kernel, forward and adjoint, tilted propagation.

``propagate(psi) = ifft2(fft2(psi) K)`` with the paraxial propagator
``K = exp(-i pi lambda dz |k|^2) * mask`` (Kirkland, *Advanced Computing in
Electron Microscopy*, 2nd ed., Eq. 6.90).  A tilt t (mrad) inside the
specimen multiplies K by :func:`tilt_ramp`.  The band-limit mask is real, so
``propagate_adjoint`` multiplies by ``conj(K)`` (not ``1/K``: the masked
kernel has no inverse).
"""
from __future__ import annotations

import numpy as np

from .shift import separable_phase, yx_moments

__all__ = ["bandlimit_mask", "fresnel_kernel", "propagate", "propagate_adjoint", "tilt_ramp", "tilt_gradient"]


def bandlimit_mask(shape_yx, cutoff: float, rolloff: float = 0.0):
    """Circular band-limit mask in FFT order, as a fraction of Nyquist.

    Parameters
    ----------
    shape_yx : (int, int)
        Grid (Y, X) in px.
    cutoff : float
        Radius of the pass band as a fraction of the Nyquist frequency of the
        coarser axis (``damping_cutoff_multislice``; 2/3 avoids aliasing of the
        product of two band-limited functions).
    rolloff : float
        Width (same units) of a cos^2 taper ending at ``cutoff``
        (``smooth_rolloff``); 0 gives a hard edge.

    Returns
    -------
    ndarray, float64, shape (Y, X); 1 in the pass band, 0 outside.
    """
    ny, nx = shape_yx
    fy = np.fft.fftfreq(ny)[:, None] / 0.5
    fx = np.fft.fftfreq(nx)[None, :] / 0.5
    r = np.sqrt(fy**2 + fx**2)
    if rolloff <= 0:
        return (r <= cutoff).astype(float)
    inner = cutoff - rolloff
    t = np.clip((r - inner) / rolloff, 0.0, 1.0)
    return np.where(t >= 1.0, 0.0, np.cos(0.5 * np.pi * t) ** 2)


def fresnel_kernel(shape_yx, pixel_size_yx_A, wavelength_A: float, dz_A: float,
                   cutoff: float = 2 / 3, rolloff: float = 0.0):
    """Band-limited Fresnel propagator ``exp(-i pi lambda dz |k|^2) * mask``.

    Paraxial free-space propagation over ``dz`` (Kirkland, Eq. 6.90), with
    numpy's forward FFT sign exp(-2 pi i k.r).

    Parameters
    ----------
    shape_yx : (int, int)
        Grid (Y, X) in px.
    pixel_size_yx_A : (float, float)
        Pixel size (dy, dx) in Å.
    wavelength_A, dz_A : float
        Electron wavelength and propagation distance in Å.
    cutoff, rolloff : float
        See :func:`bandlimit_mask`.

    Returns
    -------
    ndarray, complex128, shape (Y, X), FFT order.
    """
    ny, nx = shape_yx
    ky = np.fft.fftfreq(ny, d=pixel_size_yx_A[0])[:, None]
    kx = np.fft.fftfreq(nx, d=pixel_size_yx_A[1])[None, :]
    phase = -np.pi * wavelength_A * dz_A * (ky**2 + kx**2)
    return np.exp(1j * phase) * bandlimit_mask(shape_yx, cutoff, rolloff)


def propagate(bk, psi, kernel, keep_spectrum=False):
    """Forward propagation ``ifft2(fft2(psi) * kernel)``.

    Parameters
    ----------
    psi : complex (..., Y, X)
    kernel : complex, broadcastable to ``psi`` (FFT order)
    keep_spectrum : bool
        Also return the propagated spectrum ``fft2(psi) * kernel`` (the
        tilt gradient of :func:`tilt_gradient` needs it).

    Returns
    -------
    complex, shape of ``psi`` (and the spectrum, same shape, with ``keep_spectrum``).
    """
    spectrum = bk.fft2(psi) * kernel
    out = bk.ifft2(spectrum)
    return (out, spectrum) if keep_spectrum else out


def propagate_adjoint(bk, g, kernel, keep_spectrum=False):
    """Adjoint of :func:`propagate`: ``ifft2(fft2(g) * conj(kernel))``.

    With ``keep_spectrum`` also returns ``fft2(g)`` (the gradient with respect
    to the propagated spectrum, for :func:`tilt_gradient`).
    """
    g_hat = bk.fft2(g)
    out = bk.ifft2(g_hat * kernel.conj())
    return (out, g_hat) if keep_spectrum else out


def tilt_ramp(xp, kyx_A, tilts_mrad, distance_A, dtype):
    """Fourier factor that shifts a wave by ``distance * tilt`` (tilted propagation).

    A wave travelling at angle t (rad) to the optical axis moves laterally by
    ``dz t`` over a distance dz: ``F(k) exp(-2 pi i dz (k_y t_y + k_x t_x))``.

    Parameters
    ----------
    kyx_A : (ky, kx)
        Spatial frequencies in 1/Å, shapes (Y, 1) and (1, X), FFT order.
    tilts_mrad : array (B, 2)
        Tilt (y, x) in mrad per pattern.
    distance_A : float
    dtype : complex dtype

    Returns
    -------
    array (B, Y, X) of ``dtype``.
    """
    return separable_phase(xp, kyx_A, tilts_mrad, -2 * np.pi * distance_A * 1e-3, dtype)


def tilt_gradient(xp, g_hat, wave_hat, kyx_A, distance_A):
    """dL/dt (B, 2) in 1/mrad for one tilted propagation step.

    With ``W = F(psi) K R_t`` the propagated spectrum and ``G_hat = F(G)`` its
    gradient, ``dW/dt_y = W (-2 pi i dz 1e-3 k_y)`` and
    ``dL/dt_y = Re sum conj(G_hat) dW/dt_y = 2 pi dz 1e-3 sum k_y Im(conj(G_hat) W)``,
    summed over modes and pixels.

    g_hat, wave_hat : complex (B, ..., Y, X).
    """
    return yx_moments(xp, (g_hat.conj() * wave_hat).imag, kyx_A, 2 * np.pi * distance_A * 1e-3)
