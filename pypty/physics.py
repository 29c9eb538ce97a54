"""Physical constants and electron-optical helper formulas.

All lengths are in Å, voltages in kV (at the public interface), angles in rad
unless the name says mrad.
"""
from __future__ import annotations

import numpy as np
from scipy import constants as _c

__all__ = ["electron_wavelength_A", "interaction_constant", "spatial_frequencies"]


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
