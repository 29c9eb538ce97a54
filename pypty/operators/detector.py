"""Operators between the exit wave and the measured signal, with their adjoints.

* far-field detection (intensity of the unitary FFT, summed over modes);
* near-field detection (Fresnel propagation to a defocused image plane with a
  spherical aberration and a spatial-coherence envelope);
* binning of an upsampled model pattern onto detector pixels
  (``upsample_pattern``);
* the detector's point-spread function: a periodic Gaussian blur of the
  patterns (``detector_blur_sigma``), self-adjoint;
* projection of patterns onto virtual detectors (``masks``, ``lsq_compressed``).

Arrays use the internal layout (FFT axes last, FFT order in reciprocal space).
Adjoints are with respect to ``<a, b> = Re sum conj(a) b``.
"""
from __future__ import annotations

import numpy as np
import scipy.fft

__all__ = ["farfield", "farfield_adjoint", "near_field_transfer", "near_field", "near_field_adjoint",
           "bin_pattern", "bin_pattern_adjoint", "blur_transfer", "blur_pattern", "blur_pattern_adjoint",
           "compress", "compress_adjoint"]


# --------------------------------------------------------------------------- far field
def farfield(bk, exit_wave):
    """Far-field intensity of exit waves, summed over all mode axes.

    exit_wave : (B, Mo, Mp, Y, X) complex.
    Returns ``(I, Psi)``: I (B, Y, X) real = sum_{Mo,Mp} |fft2(psi)|^2 in FFT
    order (zero frequency at [0, 0]); Psi = fft2(psi), kept for the adjoint.
    With the unitary FFT, sum(I) = sum |psi|^2 (counts are conserved).
    """
    psi_hat = bk.fft2(exit_wave)
    inten = bk.xp.sum(psi_hat.real**2 + psi_hat.imag**2, axis=(1, 2))
    return inten, psi_hat


def farfield_adjoint(bk, dl_di, psi_hat):
    """Back-propagate dL/dI (B, Y, X) real to the exit wave (transpose of the Jacobian of :func:`farfield`).

    L depends on psi through I = sum |Psi|^2 with Psi = fft2(psi), so
    G_Psi = 2 dL/dI * Psi and G_psi = ifft2(G_Psi).
    Returns (B, Mo, Mp, Y, X) complex.
    """
    return bk.ifft2(2 * dl_di[:, None, None] * psi_hat)


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


def near_field(bk, exit_wave, h):
    """Near-field image intensity: ``I = ifftshift(sum_{Mo,Mp} |ifft2(fft2(psi) H)|^2)``.

    exit_wave : (B, Mo, Mp, Y, X); h : (B or 1, Y, X) from
    :func:`near_field_transfer` (FFT order).  The image is returned with its
    centre at [0, 0] (``ifftshift``), like far-field patterns, so the data
    pipeline is the same.  Returns ``(I (B, Y, X), field)``, field the image
    wave (B, Mo, Mp, Y, X) kept for the adjoint.
    """
    field = bk.ifft2(bk.fft2(exit_wave) * h[:, None, None])
    inten = bk.xp.fft.ifftshift(bk.xp.sum(field.real**2 + field.imag**2, axis=(1, 2)), axes=(-2, -1))
    return inten, field


def near_field_adjoint(bk, dl_di, field, h):
    """Transpose of the Jacobian of :func:`near_field`: dL/dI (B, Y, X) -> exit-wave gradient (B, Mo, Mp, Y, X)."""
    d_img = bk.xp.fft.fftshift(dl_di, axes=(-2, -1))
    return bk.ifft2(bk.fft2(2 * d_img[:, None, None] * field) * h.conj()[:, None, None])


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


# --------------------------------------------------------------------------- detector point-spread function
def blur_transfer(shape_yx, sigma_px):
    """Transfer function of a periodic Gaussian blur of std ``sigma_px`` on a (Y, X) pattern.

    The kernel is the sampled Gaussian ``g(dy, dx) = exp(-(dy^2 + dx^2) / (2 sigma^2))`` over the periodic
    (minimum-image) pixel offsets ``dy = Y fftfreq(Y)``, ``dx = X fftfreq(X)``, normalised to unit sum; the
    transfer function is its DFT.  Because g is real, non-negative and even (``g(-d) = g(d)`` modulo the
    period), the transfer function is real and even, equals 1 at zero frequency (counts are conserved) and
    the blurred pattern of a non-negative pattern is non-negative.  A kernel wider than the pattern wraps
    around (periodic boundary).  Separable: ``T = T_y(f_y) T_x(f_x)``.

    Parameters
    ----------
    shape_yx : (int, int)
        Pattern shape (Y, X) in detector px.
    sigma_px : float > 0
        Standard deviation of the Gaussian, detector px.

    Returns
    -------
    ndarray float64 (Y, X)
        Transfer function in FFT order (zero frequency at [0, 0]); pass it to :func:`blur_pattern`.

    Raises
    ------
    ValueError
        ``sigma_px`` not a finite number > 0.
    """
    sigma = float(sigma_px)
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"blur_transfer: sigma must be a finite number > 0 (detector px), got {sigma_px!r}")
    axes = []
    for n in shape_yx:
        d = np.fft.fftfreq(int(n)) * int(n)  # periodic offsets 0, 1, ..., -1 (px)
        g = np.exp(-0.5 * (d / sigma) ** 2)
        axes.append(np.fft.fft(g / g.sum()).real)  # g even -> its DFT is real (imaginary part is rounding)
    return axes[0][:, None] * axes[1][None, :]


def blur_pattern(bk, inten, transfer):
    """Periodic convolution of patterns with the Gaussian of :func:`blur_transfer`: ``I' = F^-1[T F I]``.

    Convolution commutes with circular shifts, so the patterns may be in FFT order (as the model keeps them)
    or centred: the result is the same pattern blurred, in the same order.  Real-to-complex FFTs (half
    spectrum, ``rfft2``/``irfft2``) are used: T is real and even, so ``T F I`` is Hermitian and the result
    is real and exact.

    inten : real (B, Y, X); transfer : real (Y, X) from :func:`blur_transfer`.
    Returns real (B, Y, X), dtype of ``inten``.
    """
    ny, nx = inten.shape[-2:]
    half = transfer[:, :nx // 2 + 1]
    if bk.is_gpu:
        fft = bk.xp.fft
        out = fft.irfft2(fft.rfft2(inten) * half, s=(ny, nx))
    else:
        out = scipy.fft.irfft2(scipy.fft.rfft2(inten, workers=bk.workers) * half, s=(ny, nx), workers=bk.workers)
    return out.astype(inten.dtype, copy=False)


def blur_pattern_adjoint(bk, g, transfer):
    """Adjoint of :func:`blur_pattern`: the same convolution (T is real and even, so the operator is symmetric).

    g : real (B, Y, X) (e.g. dL/dI' of the blurred pattern)  ->  dL/dI, real (B, Y, X).
    """
    return blur_pattern(bk, g, transfer)


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
