"""Linear and bilinear operators of the far-field multislice model.

Each physical step has its forward and its adjoint next to each other.  All
waves use the internal layout ``(..., Y, X)`` (FFT axes last); FFTs are
unitary (see :mod:`pypty.backend`).  Adjoints are with respect to the real
inner product ``<a, b> = Re sum conj(a) b`` used throughout pypty, so for a
linear operator A we have ``<A x, y> = <x, A^H y>``.

Gradients follow the Wirtinger convention of :mod:`pypty.optimizer`: for a
complex array z the gradient is ``G = 2 dL/d(conj z)`` so that
``dL = Re sum conj(G) dz``; back-propagating ``G`` through a linear map is
applying its adjoint.

Operators
---------
shift        sub-pixel Fourier shift of the probe (per scan position)
propagate    Fresnel propagation between slices, band-limited
transmit     multiplication by object patches (gather / scatter-add)
detect       far-field intensity summed over probe and object modes
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "bandlimit_mask", "fresnel_kernel", "propagate", "propagate_adjoint",
    "shift_ramp", "shift_probe", "shift_probe_adjoint", "shift_gradient",
    "patch_indices", "extract_patches", "scatter_patches",
    "farfield", "farfield_adjoint", "yx_moments", "separable_phase",
]


# --------------------------------------------------------------------------- propagate
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


def propagate(bk, psi, kernel):
    """Forward propagation: ``ifft2(fft2(psi) * kernel)``; psi (..., Y, X)."""
    return bk.ifft2(bk.fft2(psi) * kernel)


def propagate_adjoint(bk, g, kernel):
    """Adjoint of :func:`propagate`: ``ifft2(fft2(g) * conj(kernel))``."""
    return bk.ifft2(bk.fft2(g) * kernel.conj())


# --------------------------------------------------------------------------- shift
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


def shift_probe(bk, probe_hat, ramp):
    """Shifted probes: ``ifft2(probe_hat[None] * ramp[:, None])``.

    probe_hat : (Mp, Y, X) = fft2(probe);  ramp : (B, Y, X).
    Returns (B, Mp, Y, X).
    """
    return bk.ifft2(probe_hat[None] * ramp[:, None])


def shift_probe_adjoint(bk, g):
    """First half of the adjoint of :func:`shift_probe`.

    Returns ``fft2(g)`` for g of shape (B, Mp, Y, X); the caller multiplies
    by ``conj(ramp)``, sums over B to get the gradient of ``probe_hat``
    (and uses the same array for :func:`shift_gradient`).
    """
    return bk.fft2(g)


def shift_gradient(xp, g_hat_shifted, probe_hat, kyx):
    """Gradient of the loss w.r.t. the sub-pixel shifts (y, x) in px.

    With psi0 = ifft2(P̂ R(s)), dpsi0/ds_y = ifft2(P̂ R(s) (-2 pi i k_y)), so
    dL/ds_y = Re sum conj(G_hat R*) P̂ (-2 pi i k_y) by Parseval, where
    ``g_hat_shifted = fft2(G) * conj(R)``.

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


# --------------------------------------------------------------------------- transmit
def patch_indices(xp, corners, shape_yx, canvas_yx):
    """Flat indices of the object pixels under each probe window.

    Parameters
    ----------
    corners : int array, shape (B, 2)
        Top-left corners (y, x) of the windows in canvas px (already clipped).
    shape_yx : (Y, X)
        Window shape.
    canvas_yx : (Ny, Nx)
        Object canvas shape.

    Returns
    -------
    int64 array, shape (B, Y, X)
    """
    ny, nx = shape_yx
    rows = corners[:, 0, None] + xp.arange(ny)[None]  # (B, Y)
    cols = corners[:, 1, None] + xp.arange(nx)[None]  # (B, X)
    return rows[:, :, None] * int(canvas_yx[1]) + cols[:, None, :]


def extract_patches(xp, obj, idx):
    """Gather object patches.

    obj : (S, Mo, Ny, Nx); idx : (B, Y, X) flat indices.
    Returns (S, B, Mo, Y, X) (a copy).
    """
    s, mo = obj.shape[:2]
    flat = obj.reshape(s, mo, -1)
    patches = xp.take(flat, idx, axis=2)  # (S, Mo, B, Y, X)
    return xp.moveaxis(patches, 2, 1)


def scatter_patches(xp, grad_flat, g, idx):
    """Adjoint of :func:`extract_patches` for one slice: scatter-add.

    grad_flat : (Mo, Ny*Nx) complex accumulator (C-contiguous), modified in place.
    g : (B, Mo, Y, X) complex gradient of the patches.
    idx : (B, Y, X) flat indices.
    Overlapping windows are summed.  The cost is proportional to the number
    of window pixels, not to the canvas size (``numpy.add.at`` on NumPy;
    ``cupyx.scatter_add`` on the real and imaginary parts on CuPy).
    """
    flat_idx = idx.ravel()
    if xp is np:
        for m in range(grad_flat.shape[0]):
            np.add.at(grad_flat[m], flat_idx, g[:, m].ravel())
        return
    import cupyx

    for m in range(grad_flat.shape[0]):
        gm = g[:, m]
        parts = grad_flat[m].view(gm.real.dtype)  # interleaved (re, im)
        cupyx.scatter_add(parts, 2 * flat_idx, gm.real.ravel())
        cupyx.scatter_add(parts, 2 * flat_idx + 1, gm.imag.ravel())


# --------------------------------------------------------------------------- detect
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
    """Back-propagate dL/dI (B, Y, X) real to the exit wave.

    L depends on psi through I = sum |Psi|^2 with Psi = fft2(psi), so
    G_Psi = 2 dL/dconj(Psi) = 2 dL/dI * Psi and G_psi = ifft2(G_Psi).
    Returns (B, Mo, Mp, Y, X) complex.
    """
    return bk.ifft2(2 * dl_di[:, None, None] * psi_hat)
