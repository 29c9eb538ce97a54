"""Probe (illumination) construction from the aperture and aberrations.

Aberrations use Krivanek notation with coefficients in Å.  The aberration
phase is (Krivanek, Dellby & Lupini, Ultramicroscopy 78 (1999) 1, Eq. 2)::

    chi(alpha, phi) = 2 pi / lambda * sum_{n,m} alpha^(n+1) / (n+1)
                      * (C_nm_a cos(m phi) + C_nm_b sin(m phi))

with alpha = lambda |k| and phi = atan2(ky, kx) measured from +x towards +y.
The probe in reciprocal space is ``A(k) exp(-i chi(k))``, so C10 < 0 is
underfocus (abTEM's "defocus" is -C10).
"""
from __future__ import annotations

import re

import numpy as np

from .physics import electron_wavelength_A, spatial_frequencies

__all__ = ["KRIVANEK_NAMES", "aberrations_as_dict", "aberration_phase", "make_probe"]


def _krivanek_names(max_order: int = 5):
    names = []
    for n in range(1, max_order + 1):
        for m in range((n + 1) % 2, n + 2, 2):
            if m == 0:
                names.append(f"C{n}0")
            else:
                names += [f"C{n}{m}a", f"C{n}{m}b"]
    return tuple(names)


#: Krivanek coefficient names in the order of an aberration vector:
#: C10, C12a, C12b, C21a, C21b, C23a, C23b, C30, C32a, C32b, C34a, C34b, ...
KRIVANEK_NAMES = _krivanek_names()
_NAME_RE = re.compile(r"^C(\d)(\d)([ab]?)$")


def aberrations_as_dict(aberrations) -> dict:
    """Krivanek coefficients (Å) as a dict from a dict, a vector in :data:`KRIVANEK_NAMES` order, or None.

    Raises ValueError for unknown names or more than ``len(KRIVANEK_NAMES)`` values.
    """
    if aberrations is None:
        return {}
    if isinstance(aberrations, dict):
        out = {}
        for key, val in aberrations.items():
            m = _NAME_RE.match(str(key))
            if not m or (m.group(2) != "0") != bool(m.group(3)):
                raise ValueError(f"aberrations: unknown Krivanek coefficient {key!r}; expected names like "
                                 f"{', '.join(KRIVANEK_NAMES[:8])}")
            out[str(key)] = float(val)
        return out
    arr = np.asarray(aberrations, dtype=float).ravel()
    if arr.size > len(KRIVANEK_NAMES):
        raise ValueError(f"aberrations: at most {len(KRIVANEK_NAMES)} coefficients supported, got {arr.size}")
    return dict(zip(KRIVANEK_NAMES, arr.tolist()))


def aberration_phase(shape_yx, pixel_size_A, acc_voltage_kV, aberrations):
    """Aberration phase chi(k) in rad on an FFT grid (unshifted order).

    Parameters
    ----------
    shape_yx : (int, int)
        Probe window (Y, X) in px.
    pixel_size_A : float or (float, float)
        Real-space pixel size (dy, dx) in Å.
    acc_voltage_kV : float
        Accelerating voltage in kV.
    aberrations : dict, sequence or None
        Krivanek coefficients in Å, as a dict (``{"C10": -50.0, "C12a": 3.0}``)
        or a vector in the order of :data:`KRIVANEK_NAMES`.

    Returns
    -------
    ndarray, float64, shape (Y, X)

    Raises
    ------
    ValueError
        Unknown coefficient names or too many coefficients.
    """
    ab = aberrations_as_dict(aberrations)
    pix = np.broadcast_to(np.asarray(pixel_size_A, dtype=float), (2,))
    lam = electron_wavelength_A(acc_voltage_kV)
    ky, kx = spatial_frequencies(shape_yx, pix)
    alpha = lam * np.sqrt(ky**2 + kx**2)
    phi = np.arctan2(ky + 0 * kx, kx + 0 * ky)
    chi = np.zeros(np.broadcast_shapes(ky.shape, kx.shape))
    for key, val in ab.items():
        if val == 0.0:
            continue
        n, m, ab_part = _NAME_RE.match(key).groups()
        n, m = int(n), int(m)
        radial = alpha ** (n + 1) / (n + 1)
        ang = 1.0 if m == 0 else (np.cos(m * phi) if ab_part == "a" else np.sin(m * phi))
        chi += val * radial * ang
    return 2 * np.pi / lam * chi


def make_probe(shape_yx, pixel_size_A, acc_voltage_kV, semiangle_mrad, aberrations=None,
               n_modes: int = 1, intensity: float = 1.0, soft_edge_px: float = 1.0):
    """Build a probe from a round condenser aperture and Krivanek aberrations.

    psi(k) = A(k) exp(-i chi(k)); the real-space probe is the unitary inverse
    FFT, centred at pixel (Y//2, X//2) of its window.  Extra modes (for mixed
    states) are the first mode multiplied by low-order Hermite-like
    polynomials in real space, orthogonalised and given 10 % of the power each
    before renormalisation.

    Parameters
    ----------
    shape_yx : (int, int)
        Probe window (Y, X) in px; equals the (padded) diffraction-pattern shape.
    pixel_size_A : float or (float, float)
        Reconstruction pixel size (dy, dx) in Å.
    acc_voltage_kV : float
        Accelerating voltage in kV.
    semiangle_mrad : float
        Convergence semi-angle in mrad (> 0).
    aberrations : dict, sequence or None
        Krivanek coefficients in Å (see :func:`aberration_phase`).
    n_modes : int
        Number of probe modes (>= 1).
    intensity : float
        Total sum over pixels and modes of |probe|^2 (use the mean counts per
        pattern so that the model matches the data scale).
    soft_edge_px : float
        Width of the linear aperture edge in reciprocal pixels (0 = hard edge).

    Returns
    -------
    ndarray, complex128, shape (Y, X, n_modes)

    Raises
    ------
    ValueError
        Non-positive semi-angle, intensity or mode count, or bad aberrations.
    """
    if not semiangle_mrad > 0:
        raise ValueError(f"semiangle_mrad must be > 0, got {semiangle_mrad!r}")
    if not intensity > 0:
        raise ValueError(f"intensity must be > 0, got {intensity!r}")
    if int(n_modes) < 1:
        raise ValueError(f"n_modes must be >= 1, got {n_modes!r}")
    ny, nx = (int(s) for s in shape_yx)
    pix = np.broadcast_to(np.asarray(pixel_size_A, dtype=float), (2,))
    lam = electron_wavelength_A(acc_voltage_kV)
    ky, kx = spatial_frequencies((ny, nx), pix)
    k = np.sqrt(ky**2 + kx**2)
    k_cut = semiangle_mrad * 1e-3 / lam
    dk = min(1.0 / (ny * pix[0]), 1.0 / (nx * pix[1]))
    if soft_edge_px > 0:
        aperture = np.clip((k_cut - k) / (soft_edge_px * dk) + 0.5, 0.0, 1.0)
    else:
        aperture = (k <= k_cut).astype(float)
    chi = aberration_phase((ny, nx), pix, acc_voltage_kV, aberrations)
    psi_k = aperture * np.exp(-1j * chi)
    psi = np.fft.fftshift(np.fft.ifft2(psi_k, norm="ortho"))
    modes = [psi]
    yy = (np.arange(ny) - ny // 2)[:, None] / ny
    xx = (np.arange(nx) - nx // 2)[None, :] / nx
    polys = [yy + 0 * xx, xx + 0 * yy, yy * xx, yy**2 - xx**2]
    for i in range(1, int(n_modes)):
        cand = psi * polys[(i - 1) % len(polys)] * (1 + (i - 1) // len(polys))
        for prev in modes:
            cand = cand - np.vdot(prev, cand) / np.vdot(prev, prev) * prev
        cand *= np.sqrt(0.1 * np.sum(np.abs(psi) ** 2) / np.sum(np.abs(cand) ** 2))
        modes.append(cand)
    probe = np.stack(modes, axis=-1)
    probe *= np.sqrt(intensity / np.sum(np.abs(probe) ** 2))
    return probe.astype(np.complex128)
