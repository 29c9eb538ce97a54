"""Operators between the exit wave and the measured signal, with their adjoints.

* beam tilt ramps in real space (tilt before the specimen = shift in the
  aperture plane; tilt after the specimen = shift in the detector plane);
* near-field detection (Fresnel propagation to a defocused image plane with a
  spherical aberration and a spatial-coherence envelope);
* binning of an upsampled model pattern onto detector pixels
  (``upsample_pattern``);
* projection of patterns onto virtual detectors (``masks``, ``lsq_compressed``).

Arrays use the internal layout (FFT axes last, FFT order in reciprocal space).
Adjoints are with respect to ``<a, b> = Re sum conj(a) b``.
"""
from __future__ import annotations

import numpy as np

from .operators import separable_phase, yx_moments

__all__ = ["window_coordinates_A", "tilt_phase", "tilt_phase_gradient",
           "near_field_transfer", "bin_pattern", "bin_pattern_adjoint",
           "compress", "compress_adjoint"]


# --------------------------------------------------------------------------- tilt ramps
def window_coordinates_A(shape_yx, pixel_size_yx_A):
    """Real-space coordinates (y (Y, 1), x (1, X)) in Å, zero at pixel (Y//2, X//2)."""
    ny, nx = shape_yx
    y = (np.arange(ny) - ny // 2)[:, None] * float(pixel_size_yx_A[0])
    x = (np.arange(nx) - nx // 2)[None, :] * float(pixel_size_yx_A[1])
    return y, x


def tilt_phase(xp, ryx_A, tilts_mrad, wavelength_A, dtype):
    """Real-space factor ``exp(2 pi i (t . r) / lambda)`` of a beam tilt.

    A tilt t (rad) gives the wave the transverse wave vector ``t / lambda``:
    before the specimen it moves the probe's disk in the aperture plane, after
    the specimen it moves the pattern in the detector plane by
    ``t / (lambda dk)`` px.

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


# --------------------------------------------------------------------------- near field
def near_field_transfer(shape_yx, pixel_size_yx_A, wavelength_A, defocus_A, cs_A=0.0, alpha_mrad=0.0):
    """Transfer function from the exit plane to a defocused image plane.

    ``H(k) = exp(-i chi(k)) E_s(k)`` with
    ``chi = pi lambda df k^2 + pi/2 Cs lambda^3 k^4`` (positive ``df`` =
    propagation by ``df`` downstream, the Fresnel propagator of
    :func:`pypty.operators.fresnel_kernel`) and the spatial-coherence envelope
    ``E_s = exp(-(pi alpha / lambda)^2 (lambda df k + Cs lambda^3 k^3)^2)``
    for an illumination semi-angle ``alpha`` (Frank, Optik 38 (1973) 519;
    Kirkland, Eq. 3.42).  ``E_s(0) = 1``: the unscattered flux is preserved.

    Parameters
    ----------
    shape_yx : (Y, X); pixel_size_yx_A : (dy, dx) Å; wavelength_A : Å
    defocus_A : float or array (B,), Å
    cs_A : float, Å;  alpha_mrad : float >= 0, mrad

    Returns
    -------
    ndarray complex128, (Y, X) for a scalar defocus, else (B, Y, X); FFT order.
    """
    ny, nx = shape_yx
    ky = np.fft.fftfreq(ny, d=pixel_size_yx_A[0])[:, None]
    kx = np.fft.fftfreq(nx, d=pixel_size_yx_A[1])[None, :]
    k2 = ky**2 + kx**2
    df = np.asarray(defocus_A, dtype=float)
    dfb = df[..., None, None]
    lam = float(wavelength_A)
    chi = np.pi * lam * dfb * k2 + 0.5 * np.pi * cs_A * lam**3 * k2**2
    h = np.exp(-1j * chi)
    if alpha_mrad > 0:
        k = np.sqrt(k2)
        grad = lam * dfb * k + cs_A * lam**3 * k**3
        h = h * np.exp(-(np.pi * alpha_mrad * 1e-3 / lam) ** 2 * grad**2)
    return h


# --------------------------------------------------------------------------- upsampling
def _roll_amount(u):
    return (int(u) - 1) // 2


def bin_pattern(xp, inten, u):
    """Sum u x u model pixels into one detector pixel, FFT order kept.

    Detector pixel j collects model frequencies ``u j - h ... u j - h + u - 1``
    with ``h = (u - 1) // 2`` (centred on ``u j`` for odd u; for even u the
    block is off-centre by half a model pixel).

    inten : real (B, u Y, u X)  ->  (B, Y, X).
    """
    if u == 1:
        return inten
    h = _roll_amount(u)
    b, ny, nx = inten.shape
    r = xp.roll(inten, (h, h), axis=(1, 2))
    return r.reshape(b, ny // u, u, nx // u, u).sum(axis=(2, 4))


def bin_pattern_adjoint(xp, g, u):
    """Adjoint of :func:`bin_pattern`: (B, Y, X) -> (B, u Y, u X)."""
    if u == 1:
        return g
    h = _roll_amount(u)
    rep = xp.repeat(xp.repeat(g, u, axis=1), u, axis=2)
    return xp.roll(rep, (-h, -h), axis=(1, 2))


# --------------------------------------------------------------------------- compression
def compress(xp, inten, masks):
    """Virtual-detector signals ``s_m = sum_k mask_m(k) I(k)``.

    inten : real (B, Y, X); masks : real (M, Y, X) (same order as ``inten``).
    Returns (B, M).
    """
    b = inten.shape[0]
    return inten.reshape(b, -1) @ masks.reshape(masks.shape[0], -1).T


def compress_adjoint(xp, g, masks):
    """Adjoint of :func:`compress`: (B, M) -> (B, Y, X)."""
    return (g @ masks.reshape(masks.shape[0], -1)).reshape((g.shape[0],) + masks.shape[1:])
