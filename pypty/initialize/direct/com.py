"""Centre of mass (COM), scan rotation from the curl of the COM field, and integrated DPC (iDPC).

Conventions (docs/conventions.md): detector axes (ky, kx) are parallel to the object's (y, x);
the scan rotation ``theta`` is the angle of the scan's fast axis u = (cos theta, sin theta)
(x, y components) from the object's +x towards +y, the slow axis is v = (-sin theta, cos theta);
scan point (iy, ix) sits at ``ix * step * u + iy * step * v``. ``transpose=True`` means that the
scan axes of the data must be swapped first (scan point (iy, ix) at ``iy*step*u + ix*step*v``).

Physics: for a thin phase object phi(r) the centre of mass of the pattern, in 1/Å, is
<k> = grad(phi * |P|^2)(r_p) / (2 pi) (a wave exp(i phi) is locally tilted by grad phi / 2 pi with
pypty's forward FFT sign exp(-2 pi i k.r)); references: Waddell & Chapman, Optik 54 (1979) 83;
Lazić, Bosch & Lazar, Ultramicroscopy 160 (2016) 265 (iDPC); Müller-Caspary et al.,
Ultramicroscopy 178 (2017) 62 (COM as momentum transfer).
"""
import numpy as np

__all__ = ["center_of_mass", "fit_scan_rotation", "rotate_com", "idpc"]


def center_of_mass(data, mask=None):
    """Centre of mass of each pattern relative to the detector centre (K//2, K//2), in detector px.

    Parameters
    ----------
    data : array (N, Ky, Kx) or (Sy, Sx, Ky, Kx)
        Intensities (counts).
    mask : array (Ky, Kx) of bool or float, optional
        Detector weights (e.g. a bright-field disk mask); all pixels when None.

    Returns
    -------
    ndarray float64 (N, 2): (com_y, com_x) in detector px, N = number of patterns (row-major scan).
    """
    d = np.asarray(data)
    d = d.reshape((-1,) + d.shape[-2:])
    ky, kx = d.shape[-2:]
    w = np.ones((ky, kx)) if mask is None else np.asarray(mask, dtype=float)
    yy = (np.arange(ky) - ky // 2)[:, None] * w
    xx = (np.arange(kx) - kx // 2)[None, :] * w
    flat = d.reshape(d.shape[0], -1).astype(np.float64, copy=False)
    tot = flat @ w.ravel()
    tot = np.where(tot > 0, tot, np.inf)
    return np.stack([flat @ yy.ravel() / tot, flat @ xx.ravel() / tot], axis=1)


def rotate_com(com_yx, scan_shape, rotation_deg, transpose=False):
    """COM field in scan coordinates: (Sy, Sx, 2) with components (along slow axis v, along fast axis u).

    ``com_yx`` (N, 2) in detector (= object) axes, px; the mean is subtracted.  With ``transpose`` the
    scan axes are swapped first, so the result then has shape (Sx, Sy, 2).
    """
    c = np.asarray(com_yx, float).reshape(tuple(scan_shape) + (2,))
    if transpose:
        c = np.swapaxes(c, 0, 1)
    c = c - c.reshape(-1, 2).mean(axis=0)
    th = np.deg2rad(rotation_deg)
    cu = c[..., 1] * np.cos(th) + c[..., 0] * np.sin(th)
    cv = -c[..., 1] * np.sin(th) + c[..., 0] * np.cos(th)
    return np.stack([cv, cu], axis=-1)


def _curl_terms(c):
    """Images A, B with curl(theta) = cos(theta) A + sin(theta) B for the field (c_y, c_x) of (Sy, Sx, 2)."""
    dcy_dy, dcy_dx = np.gradient(c[..., 0])
    dcx_dy, dcx_dx = np.gradient(c[..., 1])
    return (dcx_dy - dcy_dx)[1:-1, 1:-1], (dcy_dy + dcx_dx)[1:-1, 1:-1]


def _phase_skewness(com_yx, scan_shape, rotation_deg, transpose):
    ph = idpc(com_yx, scan_shape, 1.0, rotation_deg, transpose, detector_pixel_inv_A=1.0, highpass=0.05)
    ph = ph[2:-2, 2:-2] - ph[2:-2, 2:-2].mean()
    return float(np.mean(ph**3) / max(np.mean(ph**2), 1e-300) ** 1.5)


def fit_scan_rotation(com_yx, scan_shape, n_angles=360, resolve_180="skewness"):
    """Scan rotation and transposition that make the rotated COM field curl-free.

    The COM field in scan coordinates (g_v, g_u) = (c.v, c.u) is, for a thin object, the gradient of
    the (blurred) phase along the scan axes, so its curl ``d g_u / d iy - d g_v / d ix`` vanishes.
    With A = d c_x/d iy - d c_y/d ix and B = d c_y/d iy + d c_x/d ix (central differences),
    curl(theta) = cos(theta) A + sin(theta) B, so mean(curl^2) is a quadratic form in (cos, sin):
    it is evaluated on a grid of ``n_angles`` angles in [0, 360) (vectorised) and the minimum is
    refined exactly as the eigenvector of the smallest eigenvalue of [[<AA>, <AB>], [<AB>, <BB>]].
    Both transpositions are tried; the one with the smaller relative curl wins.

    The curl cannot tell theta from theta + 180 deg (the field changes sign).  With
    ``resolve_180="skewness"`` the branch whose iDPC phase has positive skewness is chosen (atoms give
    positive phase peaks: valid for positive projected potentials, i.e. any real specimen that is not
    mostly holes); with ``resolve_180=None`` the result lies in [-90, 90).

    Parameters
    ----------
    com_yx : (N, 2) COM in detector px (rows (y, x)), N = Sy * Sx patterns, x fast.
    scan_shape : (Sy, Sx)

    Returns
    -------
    dict: ``rotation_deg`` (float, deg, pypty's ``scan_rotation_deg``), ``transpose`` (bool),
    ``relative_curl`` (rms curl / rms gradient of the field, at the optimum, for the chosen
    transposition), ``relative_curl_other`` (same for the other transposition), ``angles_deg`` and
    ``curl_rms`` (grid and rms curl per angle, chosen transposition).
    """
    results = []
    for tr in (False, True):
        c = rotate_com(com_yx, scan_shape, 0.0, tr)
        a, b = _curl_terms(c)
        m = np.array([[np.mean(a * a), np.mean(a * b)], [np.mean(a * b), np.mean(b * b)]])
        ang = np.linspace(0, 2 * np.pi, n_angles, endpoint=False)
        cs = np.stack([np.cos(ang), np.sin(ang)])
        curve = np.einsum("ia,ij,ja->a", cs, m, cs)
        w, v = np.linalg.eigh(m)
        th = np.arctan2(v[1, 0], v[0, 0])
        th0 = ang[np.argmin(curve)]
        # pick the sign of the eigenvector nearest to the grid minimum (cosmetic; 180-ambiguity below)
        if np.cos(th - th0) < 0:
            th += np.pi
        scale = np.sqrt(w.sum()) + 1e-300
        results.append(dict(theta=th, rel=float(np.sqrt(max(w[0], 0.0)) / scale),
                            curve=np.sqrt(np.maximum(curve, 0.0)), ang=np.rad2deg(ang)))
    best = 0 if results[0]["rel"] <= results[1]["rel"] else 1
    r = results[best]
    rot = (np.rad2deg(r["theta"]) + 90.0) % 180.0 - 90.0
    if resolve_180 == "skewness":
        if _phase_skewness(com_yx, scan_shape, rot, bool(best)) < 0:
            rot = rot + 180.0
        rot = (rot + 180.0) % 360.0 - 180.0
    return dict(rotation_deg=float(rot), transpose=bool(best), relative_curl=r["rel"],
                relative_curl_other=results[1 - best]["rel"], angles_deg=r["ang"], curl_rms=r["curve"])


def idpc(com_yx, scan_shape, scan_step_A, rotation_deg=0.0, transpose=False, detector_pixel_inv_A=None,
         detector_pixel_mrad=None, wavelength_A=None, highpass=None, pad=True):
    """Integrated DPC phase (rad) by Fourier integration of the COM field.

    grad phi = 2 pi dk * COM (rad/Å; dk the detector pixel in 1/Å, COM in px) expressed along the scan
    axes; with q the scan-grid spatial frequency (1/Å),
    phi(q) = (q_y G_y(q) + q_x G_x(q)) / (2 pi i (|q|^2 + q_hp^2)),
    a Tikhonov-type high-pass regularisation (q_hp = ``highpass``) that suppresses the ramps and the
    low-frequency noise (Lazić et al., Ultramicroscopy 160 (2016) 265).  The COM mean is removed; with
    ``pad`` the field is mirror-padded to twice its size to avoid wrap-around artefacts.  The result is
    the phase convolved with the probe intensity |P|^2, with zero mean.

    Parameters
    ----------
    com_yx : (N, 2) COM in detector px.
    scan_shape : (Sy, Sx); scan_step_A : float, Å.
    rotation_deg, transpose : scan rotation (deg) and transposition (see :func:`fit_scan_rotation`).
    detector_pixel_inv_A : float, 1/Å; or ``detector_pixel_mrad`` (mrad) with ``wavelength_A`` (Å).
    highpass : float, 1/Å; default 0.5 / (scan field of view).

    Returns
    -------
    ndarray (Sy, Sx) (or (Sx, Sy) when transposed) phase in rad, pixel = ``scan_step_A`` (Å).
    """
    if detector_pixel_inv_A is None:
        if detector_pixel_mrad is None or wavelength_A is None:
            raise ValueError("idpc: give detector_pixel_inv_A, or detector_pixel_mrad and wavelength_A")
        detector_pixel_inv_A = detector_pixel_mrad * 1e-3 / wavelength_A
    g = rotate_com(com_yx, scan_shape, rotation_deg, transpose) * (2 * np.pi * detector_pixel_inv_A)
    ny, nx = g.shape[:2]
    if pad:
        gy = np.concatenate([g[..., 0], g[::-1, :, 0] * -1], axis=0)
        gy = np.concatenate([gy, gy[:, ::-1]], axis=1)
        gx = np.concatenate([g[..., 1], g[::-1, :, 1]], axis=0)
        gx = np.concatenate([gx, -gx[:, ::-1]], axis=1)
    else:
        gy, gx = g[..., 0], g[..., 1]
    qy = np.fft.fftfreq(gy.shape[0], scan_step_A)[:, None]
    qx = np.fft.fftfreq(gy.shape[1], scan_step_A)[None, :]
    if highpass is None:
        highpass = 0.5 / (max(ny, nx) * scan_step_A)
    den = 2j * np.pi * (qy**2 + qx**2 + highpass**2)
    ph = np.fft.ifft2((qy * np.fft.fft2(gy) + qx * np.fft.fft2(gx)) / den).real
    ph = ph[:ny, :nx]
    return ph - ph.mean()
