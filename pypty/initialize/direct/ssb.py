"""Single-side-band (SSB) direct ptychography of a weak phase object.

References: Rodenburg, McCallum & Nellist, Ultramicroscopy 48 (1993) 304 (the double-overlap
"trotters" and SSB); Pennycook et al., Ultramicroscopy 151 (2015) 160 (aberration-corrected SSB on
4D-STEM data); Yang et al., Ultramicroscopy 151 (2015) 232 / Nat. Commun. 7 (2016) 12532.

Derivation in pypty's conventions (docs/direct_methods.md): probe P(k) = A(k) exp(-i chi(k)) at
scan point r_p, exit wave p(r - r_p) t(r), pattern I(k, r_p) = |FFT[exit wave](k)|^2 with the
forward sign exp(-2 pi i k.r).  Fourier transforming over the scan with numpy's forward sign,
G(k, Q) = sum_p I(k, r_p) exp(-2 pi i Q.r_p), and keeping the terms linear in phi for
t = 1 + i phi (Phi = FT of phi on the scan),

    G(k, Q) = |A(k)|^2 N delta_Q + i Phi(Q) [P(k - Q) P*(k) - P(k) P*(k + Q)].

Where k and k - Q lie in the aperture and k + Q does not (trotter "minus"),
G = i Phi(Q) |A|^2 exp(i [chi(k) - chi(k - Q)]); where k and k + Q lie in it and k - Q does not
(trotter "plus"), G = -i Phi(Q) |A|^2 exp(i [chi(k + Q) - chi(k)]).  Each such pixel thus gives an
estimate of Phi(Q) once the aberration phase is removed; SSB averages them over both trotters:

    Phi(Q) = 1/(n_- + n_+) [ sum_{k in T-} G(k,Q) e^{-i[chi(k) - chi(k-Q)]} / i
                            - sum_{k in T+} G(k,Q) e^{-i[chi(k+Q) - chi(k)]} / i ] / <I_BF>,

with <I_BF> the mean bright-field intensity per pixel (so phi comes out in rad), Phi(0) = 0 and
Phi(Q) = 0 where there is no trotter (|Q| > 2 alpha / lambda).  phi(r_p) = IFFT(Phi).  The transfer is
flat (1) to first order in phi for all 0 < |Q| < 2 alpha / lambda.
"""
import re
import time

import numpy as np

from ...operators.optics import aberrations_as_dict
from .parallax import bright_field_disk

__all__ = ["aberration_phase_at", "ssb"]

_NAME = re.compile(r"^C(\d)(\d)([ab]?)$")


def aberration_phase_at(kx, ky, wavelength_A, aberrations):
    """chi(k) in rad at arbitrary frequencies (1/Å, object frame), pypty's Krivanek convention
    (``pypty.operators.optics.aberration_phase``: chi = 2 pi / lambda sum alpha^(n+1)/(n+1)
    (C_nma cos m phi + C_nmb sin m phi), alpha = lambda |k|, phi = atan2(ky, kx))."""
    kx, ky = np.broadcast_arrays(np.asarray(kx, float), np.asarray(ky, float))
    alpha = wavelength_A * np.hypot(kx, ky)
    phi = np.arctan2(ky, kx)
    chi = np.zeros(kx.shape)
    for key, val in aberrations_as_dict(aberrations).items():
        if val == 0.0:
            continue
        n, m, part = _NAME.match(key).groups()
        n, m = int(n), int(m)
        ang = 1.0 if m == 0 else (np.cos(m * phi) if part == "a" else np.sin(m * phi))
        chi = chi + val * alpha ** (n + 1) / (n + 1) * ang
    return 2 * np.pi / wavelength_A * chi


def ssb(data, scan_shape, scan_step_A, wavelength_A, aberrations=None, rotation_deg=0.0, transpose=False,
        detector_pixel_inv_A=None, detector_pixel_mrad=None, semiangle_mrad=None, center_px=None,
        edge_margin_px=0.0, lowpass_inv_A=None, max_chunk=2**20):
    """Single-side-band phase image (rad) of a weak phase object on the scan grid.

    Parameters
    ----------
    data : (N, Ky, Kx) or (Sy, Sx, Ky, Kx) intensities, pattern p = iy * Sx + ix, zero frequency near
        the bright-field disk centre.
    scan_shape : (Sy, Sx); scan_step_A : float, Å.
    wavelength_A : float, Å.
    aberrations : Krivanek coefficients of the probe (dict or vector C10, C12a, C12b, ...; Å), e.g.
        from :func:`fit_parallax`; None = aberration-free probe.
    rotation_deg, transpose : scan rotation (deg) and transposition, as in :func:`idpc`.
    detector_pixel_inv_A : float, 1/Å; or ``detector_pixel_mrad`` (mrad). Default: from
        ``semiangle_mrad`` and the measured bright-field radius (dk = alpha / (lambda r_BF)).
    semiangle_mrad : aperture semi-angle (mrad); default: the measured bright-field radius.
    center_px : (cy, cx) detector px of k = 0; default the centre of the bright-field disk.
    edge_margin_px : a pixel counts as inside the aperture (for k, k -/+ Q) when |.| < r - margin and
        as outside (for k +/- Q) when |.| > r + margin (detector px).  Default 0: a margin excludes the
        soft aperture edge but also the thin trotters of the lowest |Q| (0.5 px: correlation 0.76
        instead of 0.96 on the synthetic tests).
    lowpass_inv_A : optional Gaussian low-pass exp(-|Q|^2 / (2 q_lp^2)) (1/Å); none by default.
    max_chunk : maximum number of (Q, k) pairs processed at once (temporaries ~ 150-200 bytes each).

    Returns
    -------
    dict: ``phase`` (Sy, Sx) (or (Sx, Sy) when transposed) in rad, zero mean, pixel = ``scan_step_A``;
    ``pixel_A``; ``trotter_pixels`` (Sy, Sx) number of detector px averaged per Q (FFT order);
    ``spectrum`` Phi(Q) (FFT order); ``detector_pixel_inv_A``; ``aperture_radius_px``; ``center_px``;
    ``time_s``.
    """
    t0 = time.perf_counter()
    d = np.asarray(data)
    ky_n, kx_n = d.shape[-2:]
    sy, sx = (int(v) for v in scan_shape)
    d = d.reshape(sy, sx, ky_n, kx_n)
    if transpose:
        d = np.swapaxes(d, 0, 1)
    ny, nx = d.shape[:2]
    mean_pattern = d.mean(axis=(0, 1), dtype=np.float64)
    centre, r_bf, _ = bright_field_disk(mean_pattern)
    if center_px is not None:
        centre = np.asarray(center_px, float)
    if detector_pixel_inv_A is None:
        if detector_pixel_mrad is not None:
            detector_pixel_inv_A = detector_pixel_mrad * 1e-3 / wavelength_A
        elif semiangle_mrad is not None:
            detector_pixel_inv_A = semiangle_mrad * 1e-3 / wavelength_A / r_bf
        else:
            raise ValueError("ssb: give detector_pixel_inv_A, detector_pixel_mrad or semiangle_mrad")
    dk = float(detector_pixel_inv_A)
    r_ap = r_bf if semiangle_mrad is None else semiangle_mrad * 1e-3 / wavelength_A / dk   # px
    # detector pixels inside the aperture (object-frame k, 1/Å)
    iy, ix = np.indices((ky_n, kx_n))
    kyp, kxp = iy - centre[0], ix - centre[1]
    inside = np.hypot(kyp, kxp) < r_ap - edge_margin_px
    k_y, k_x = kyp[inside] * dk, kxp[inside] * dk
    intens = d[:, :, inside].astype(np.float64)
    i_bf = intens.mean()
    g = np.fft.fft2(intens, axes=(0, 1)).reshape(ny * nx, -1) / i_bf        # G(k, Q) / <I_BF>
    # scan frequencies -> object frame: Q = q_u u + q_v v
    qv = np.fft.fftfreq(ny, scan_step_A)[:, None] * np.ones((1, nx))
    qu = np.fft.fftfreq(nx, scan_step_A)[None, :] * np.ones((ny, 1))
    th = np.deg2rad(rotation_deg)
    q_x = (qu * np.cos(th) - qv * np.sin(th)).ravel()
    q_y = (qu * np.sin(th) + qv * np.cos(th)).ravel()
    r_in, r_out = (r_ap - edge_margin_px) * dk, (r_ap + edge_margin_px) * dk
    ab = aberrations_as_dict(aberrations)
    chi_k = aberration_phase_at(k_x, k_y, wavelength_A, ab)[None, :]
    spec = np.zeros(ny * nx, complex)
    count = np.zeros(ny * nx)
    m = k_x.size
    step = max(1, int(max_chunk // max(m, 1)))
    for a in range(0, ny * nx, step):
        b = min(a + step, ny * nx)
        qx, qy = q_x[a:b, None], q_y[a:b, None]
        kmx, kmy = k_x[None, :] - qx, k_y[None, :] - qy          # k - Q
        kpx, kpy = k_x[None, :] + qx, k_y[None, :] + qy          # k + Q
        rm, rp = np.hypot(kmx, kmy), np.hypot(kpx, kpy)
        t_minus = (rm < r_in) & (rp > r_out)
        t_plus = (rp < r_in) & (rm > r_out)
        corr = np.zeros(t_minus.shape, complex)
        if t_minus.any():
            chi_m = aberration_phase_at(kmx, kmy, wavelength_A, ab)
            corr = np.where(t_minus, np.exp(-1j * (chi_k - chi_m)), corr)
        if t_plus.any():
            chi_p = aberration_phase_at(kpx, kpy, wavelength_A, ab)
            corr = np.where(t_plus, -np.exp(-1j * (chi_p - chi_k)), corr)
        spec[a:b] = np.sum(g[a:b] * corr, axis=1) / 1j
        count[a:b] = t_minus.sum(axis=1) + t_plus.sum(axis=1)
    spec = np.where(count > 0, spec / np.maximum(count, 1), 0.0)
    spec[0] = 0.0
    if lowpass_inv_A is not None:
        spec = spec * np.exp(-(q_x**2 + q_y**2) / (2 * float(lowpass_inv_A) ** 2))
    spec = spec.reshape(ny, nx)
    ph = np.fft.ifft2(spec).real
    return dict(phase=ph - ph.mean(), pixel_A=float(scan_step_A), trotter_pixels=count.reshape(ny, nx),
                spectrum=spec, detector_pixel_inv_A=dk, aperture_radius_px=float(r_ap),
                center_px=np.asarray(centre, float), time_s=time.perf_counter() - t0)
