"""Electron optics: wavelength, interaction constant, frequency grids, aberrations and the probe CTF.

All lengths are in Å, voltages in kV (at the public interface), angles in rad
unless the name says mrad.

Aberrations use Krivanek notation with coefficients in Å.  The aberration
phase is (Krivanek, Dellby & Lupini, Ultramicroscopy 78 (1999) 1, Eq. 2)::

    chi(alpha, phi) = 2 pi / lambda * sum_{n,m} alpha^(n+1) / (n+1)
                      * (C_nm_a cos(m phi) + C_nm_b sin(m phi))

with alpha = lambda |k| and phi = atan2(ky, kx) measured from +x towards +y.
The probe in reciprocal space is ``A(k) exp(-i chi(k))``, so C10 < 0 is
underfocus (abTEM's "defocus" is -C10).  :func:`aberration_ctf` and
:func:`aberration_gradient` are the per-pattern CTF of the refinable
``aberrations_array`` and its gradient.
"""
from __future__ import annotations

import re

import numpy as np
from scipy import constants as _c

__all__ = ["electron_wavelength_A", "interaction_constant", "spatial_frequencies", "KRIVANEK_NAMES",
           "aberrations_as_dict", "aberration_phase", "aberration_ctf", "aberration_gradient"]


def electron_wavelength_A(acc_voltage_kV: float) -> float:
    """Relativistic electron wavelength in Å.

    lambda = h / sqrt(2 m0 e V (1 + e V / (2 m0 c^2)))  (e.g. Kirkland,
    *Advanced Computing in Electron Microscopy*, 2nd ed., Eq. 2.5), with CODATA
    constants from :mod:`scipy.constants`.

    Parameters
    ----------
    acc_voltage_kV : float
        Accelerating voltage in kV (> 0).

    Returns
    -------
    float
        Wavelength in Å (0.04176 Å at 80 kV, 0.01969 Å at 300 kV).

    Raises
    ------
    ValueError
        If ``acc_voltage_kV <= 0``.
    """
    if not acc_voltage_kV > 0:
        raise ValueError(f"acc_voltage must be > 0 kV, got {acc_voltage_kV!r}")
    v = float(acc_voltage_kV) * 1e3
    e, m0, c, h = _c.e, _c.m_e, _c.c, _c.h
    lam_m = h / np.sqrt(2.0 * m0 * e * v * (1.0 + e * v / (2.0 * m0 * c**2)))
    return float(lam_m * 1e10)


def interaction_constant(acc_voltage_kV: float) -> float:
    """Interaction constant sigma in rad / (V Å).

    sigma = 2 pi m e lambda / h^2 with the relativistic mass m = gamma m0
    (Kirkland, Eq. 5.6).  The phase of a thin object is ``sigma * V_projected``.
    """
    lam_m = electron_wavelength_A(acc_voltage_kV) * 1e-10
    v = float(acc_voltage_kV) * 1e3
    gamma = 1.0 + _c.e * v / (_c.m_e * _c.c**2)
    sigma_per_Vm = 2 * np.pi * gamma * _c.m_e * _c.e * lam_m / _c.h**2
    return float(sigma_per_Vm * 1e-10)


def spatial_frequencies(shape_yx, pixel_size_yx_A):
    """Spatial frequencies of an FFT grid in FFT (unshifted) order.

    Parameters
    ----------
    shape_yx : (int, int)
        Grid shape (Y, X) in px.
    pixel_size_yx_A : (float, float)
        Real-space pixel size (dy, dx) in Å.

    Returns
    -------
    ky, kx : ndarray, float64, shapes (Y, 1) and (1, X)
        Frequencies in 1/Å (``numpy.fft.fftfreq`` order), for broadcasting.
    """
    (ny, nx), (dy, dx) = shape_yx, pixel_size_yx_A
    ky = np.fft.fftfreq(int(ny), d=float(dy))[:, None]
    kx = np.fft.fftfreq(int(nx), d=float(dx))[None, :]
    return ky, kx


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


def aberration_ctf(xp, rows, basis, complex_dtype):
    """Per-pattern CTF ``exp(-i sum_j A_j chi_j(k))`` (B, Y, X).

    rows : real (B, J), Krivanek coefficients (Å) of each pattern;
    basis : real (J, Y, X), :func:`aberration_phase` of a unit coefficient
    (rad per Å), FFT order.
    """
    chi = xp.tensordot(rows.astype(basis.dtype, copy=False), basis, axes=(1, 0))
    return xp.exp(-1j * chi).astype(complex_dtype)


def aberration_gradient(xp, g_spectra, spectra, basis):
    """dL/dA (B, J) float64 for spectra ``P = P0 * aberration_ctf(A)``.

    g_spectra, spectra : complex (B, Mp, Y, X) (gradient at and value of the
    aberrated spectra).  ``dP/dA_j = -i chi_j P`` so
    ``dL/dA_j = Re sum conj(G)(-i chi_j P) = sum chi_j Im(conj(G) P)``.
    """
    q = xp.sum((g_spectra.conj() * spectra).imag, axis=1)  # (B, Y, X)
    return xp.tensordot(q, basis, axes=((1, 2), (1, 2))).astype(xp.float64)
