"""Tilt-corrected bright field (tcBF, "parallax"): aberrations and scan rotation from the shifts
between virtual bright-field images, and the shift-corrected bright-field image.

Method: each detector pixel k inside the bright-field disk gives a virtual bright-field image that,
for a weak object, is the object image displaced by the gradient of the aberration function,
I_k(r_p) ~ f(r_p + grad_k chi(k) / (2 pi)) (first order in q of chi(k) - chi(k - q)).
References: Spoth et al., Microsc. Microanal. (2017) / Yu et al., "Dose-efficient tcBF", and the
parallax formulation of Varnavides et al., "Iterative phase retrieval algorithms for scanning
transmission electron microscopy" (arXiv 2309.05250, 2023); the shift measurement follows
Guizar-Sicairos et al., Opt. Lett. 33 (2008) 156 (cross-correlation, here with a parabolic peak fit).

In pypty's Krivanek convention (pypty/operators/optics.py), with alpha = lambda |k| and
phi = atan2(ky, kx),
chi / (2 pi) = (lambda / 2) [C10 (kx^2 + ky^2) + C12a (kx^2 - ky^2) + 2 C12b kx ky], so
d = grad chi / (2 pi) = lambda ((C10 + C12a) kx + C12b ky, (C10 - C12a) ky + C12b kx)  (x, y; Å).
In scan px (scan rotation theta, fast axis u, slow axis v, step s) the image of pixel k is the mean
image shifted by  (s_y, s_x) = -(d.v, d.u) / s.
Note: (theta, C) and (theta + 180 deg, -C) give identical shifts; the branch is fixed by a given
rotation, a rotation hint, or the COM rotation (see :func:`pypty.initialize.direct.fit_scan_rotation`).
"""
import numpy as np
from scipy.optimize import minimize_scalar

from .com import center_of_mass, fit_scan_rotation

__all__ = ["bright_field_disk", "virtual_bright_field", "image_shifts", "fit_parallax", "tcbf_image"]


def bright_field_disk(mean_pattern, threshold=0.5):
    """Bright-field disk of a mean pattern: (centre_yx px, radius px, bool mask).

    The mask is ``mean_pattern > threshold * max``; the centre is its intensity-weighted centre of mass
    and the radius sqrt(area / pi), both in detector px.
    """
    p = np.asarray(mean_pattern, float)
    mask = p > threshold * p.max()
    yy, xx = np.indices(p.shape)
    w = p * mask
    c = np.array([(w * yy).sum(), (w * xx).sum()]) / w.sum()
    return c, float(np.sqrt(mask.sum() / np.pi)), mask


def virtual_bright_field(data, scan_shape, bin_factor=1, rim=0.7, threshold=0.5):
    """Virtual bright-field images of (binned) detector pixels inside the bright-field disk.

    Parameters
    ----------
    data : (N, Ky, Kx) or (Sy, Sx, Ky, Kx) intensities.
    scan_shape : (Sy, Sx).
    bin_factor : int, detector binning (bins of bin x bin px, summed; edge px that do not fill a bin dropped).
    rim : float, keep bins whose centre lies within ``rim * r_BF`` of the disk centre.

    Returns
    -------
    images : (M, Sy, Sx) float64, each normalised to mean 1;
    k_px : (M, 2) bin centres relative to the disk centre (y, x) in unbinned detector px;
    info : dict with ``centre_px``, ``radius_px``.
    """
    d = np.asarray(data)
    d = d.reshape((-1,) + d.shape[-2:])
    ky, kx = d.shape[-2:]
    centre, radius, _ = bright_field_disk(d.mean(axis=0), threshold)
    b = int(bin_factor)
    nby, nbx = ky // b, kx // b
    db = d[:, :nby * b, :nbx * b].reshape(d.shape[0], nby, b, nbx, b).sum(axis=(2, 4), dtype=np.float64)
    cy = (np.arange(nby) * b + (b - 1) / 2.0) - centre[0]
    cx = (np.arange(nbx) * b + (b - 1) / 2.0) - centre[1]
    kyy, kxx = np.meshgrid(cy, cx, indexing="ij")
    keep = np.hypot(kyy, kxx) <= rim * radius
    imgs = db[:, keep].T.reshape((-1,) + tuple(scan_shape))
    imgs = imgs / np.maximum(imgs.mean(axis=(1, 2), keepdims=True), 1e-300)
    return imgs, np.stack([kyy[keep], kxx[keep]], axis=1), dict(centre_px=centre, radius_px=radius)


def _window(shape):
    return np.outer(np.hanning(shape[0] + 2)[1:-1], np.hanning(shape[1] + 2)[1:-1])


def image_shifts(images, reference):
    """Sub-pixel shifts s (M, 2) (y, x, scan px) with images[m](n) ~ reference(n - s[m]).

    Cross-correlation of the Hann-windowed, mean-free images by FFT; the integer peak is refined by
    a 3-point parabola per axis (vectorised over the images).
    """
    imgs = np.asarray(images, float)
    w = _window(imgs.shape[1:])
    a = (imgs - imgs.mean(axis=(1, 2), keepdims=True)) * w
    r = (reference - reference.mean()) * w
    cc = np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(r))).real
    m, ny, nx = cc.shape
    idx = cc.reshape(m, -1).argmax(axis=1)
    py, px = np.unravel_index(idx, (ny, nx))
    ar = np.arange(m)

    def para(c_m, c0, c_p):
        den = c_m - 2 * c0 + c_p
        return np.where(np.abs(den) > 1e-300, 0.5 * (c_m - c_p) / np.where(den == 0, 1, den), 0.0)

    dy = para(cc[ar, (py - 1) % ny, px], cc[ar, py, px], cc[ar, (py + 1) % ny, px])
    dx = para(cc[ar, py, (px - 1) % nx], cc[ar, py, px], cc[ar, py, (px + 1) % nx])
    sy = (py + ny // 2) % ny - ny // 2 + dy
    sx = (px + nx // 2) % nx - nx // 2 + dx
    return np.stack([sy, sx], axis=1)


def _fourier_shift(images, shifts):
    """Shift (M, Sy, Sx) images by (M, 2) scan px (positive = towards larger indices), periodic."""
    ny, nx = images.shape[1:]
    qy = np.fft.fftfreq(ny)[None, :, None]
    qx = np.fft.fftfreq(nx)[None, None, :]
    ph = np.exp(-2j * np.pi * (qy * shifts[:, 0, None, None] + qx * shifts[:, 1, None, None]))
    return np.fft.ifft2(np.fft.fft2(images) * ph).real


def _design(k_inv_A, wavelength_A, scan_step_A, theta, fit_c12):
    """Design matrix (2M, p): model shifts (s_y of all pixels, then s_x) per unit coefficient (Å)."""
    ky, kx = k_inv_A[:, 0], k_inv_A[:, 1]
    # d (x, y) per coefficient: C10 -> (kx, ky); C12a -> (kx, -ky); C12b -> (ky, kx)
    cols = [(kx, ky)]
    if fit_c12:
        cols += [(kx, -ky), (ky, kx)]
    c, s = np.cos(theta), np.sin(theta)
    out = []
    for dx, dy in cols:
        du = dx * c + dy * s
        dv = -dx * s + dy * c
        out.append(np.concatenate([-dv, -du]) * wavelength_A / scan_step_A)
    return np.stack(out, axis=1)


def _lsq(k, lam, step, theta, fit_c12, s_flat):
    x = _design(k, lam, step, theta, fit_c12)
    coef, *_ = np.linalg.lstsq(x, s_flat, rcond=None)
    res = s_flat - x @ coef
    return coef, float(res @ res)


def fit_parallax(data, scan_shape, scan_step_A, detector_pixel_inv_A, wavelength_A, *, bin_factor=None,
                 rotation_deg=None, rotation_hint_deg=None, transpose=None, fit_c12=True, n_iter=3,
                 rim=0.7, upsample=None):
    """Fit C10, C12a, C12b (Å) and the scan rotation (deg) to the parallax shifts of virtual BF images.

    Parameters
    ----------
    data : (N, Ky, Kx) or (Sy, Sx, Ky, Kx) intensities, pattern p = iy * Sx + ix.
    scan_shape : (Sy, Sx); scan_step_A : float, Å.
    detector_pixel_inv_A : float, 1/Å per detector px; wavelength_A : float, Å.
    bin_factor : int, detector binning; default so that about <= 300 bins lie in the disk.
    rotation_deg : fix the scan rotation (deg) instead of fitting it.
    rotation_hint_deg : pick the 180-deg branch nearest to this; default: from the COM curl fit
        (:func:`fit_scan_rotation`, skewness rule).
    transpose : bool or None (fit both and keep the smaller residual).
    fit_c12 : also fit two-fold astigmatism.
    n_iter : alignment iterations (reference = mean BF image, then the tcBF image of the last fit).
    rim : use detector pixels within ``rim * r_BF`` (default 0.7): pixels near the disk edge see only
        one side of the scattered beams and their shifts are biased outwards (C10 overestimated by
        ~15-40 % with rim = 0.95 in the tests).
    upsample : float, passed to :func:`tcbf_image` for the returned image.

    Returns
    -------
    dict: ``C10``, ``C12a``, ``C12b`` (Å), ``sigma`` (dict of 1-sigma uncertainties, Å and deg, from the
    least-squares covariance sigma^2 (J^T J)^-1 including the rotation column), ``rotation_deg``,
    ``transpose``, ``residual_px`` (rms shift residual, scan px), ``shifts_px`` (M, 2) measured,
    ``model_px`` (M, 2), ``k_inv_A`` (M, 2), ``images`` (M, Sy', Sx') virtual BF images (scan axes swapped
    when transposed), ``tcbf`` (the tcBF image, see :func:`tcbf_image`), ``aberrations`` (Krivanek
    vector C10, C12a, C12b; Å).
    """
    d = np.asarray(data)
    d = d.reshape((-1,) + d.shape[-2:])
    if bin_factor is None:
        _, r, _ = bright_field_disk(d.mean(axis=0))
        bin_factor = max(1, int(np.ceil(np.sqrt(np.pi * r * r / 300.0))))
    imgs0, kpx, info = virtual_bright_field(d, scan_shape, bin_factor, rim)
    k = kpx * detector_pixel_inv_A
    hint = rotation_hint_deg
    if rotation_deg is None and (hint is None or transpose is None):
        com = center_of_mass(d)
        rot = fit_scan_rotation(com, scan_shape)
        hint = rot["rotation_deg"] if hint is None else hint
        transpose = rot["transpose"] if transpose is None else transpose
    best = None
    for tr in ([False, True] if transpose is None else [bool(transpose)]):
        imgs = np.swapaxes(imgs0, 1, 2) if tr else imgs0
        ref = imgs.mean(axis=0)
        for it in range(n_iter):
            s = image_shifts(imgs, ref)
            s_flat = np.concatenate([s[:, 0], s[:, 1]])
            if rotation_deg is not None:
                th = np.deg2rad(rotation_deg)
            else:
                grid = np.deg2rad(np.arange(0.0, 180.0, 1.0))
                rss = [_lsq(k, wavelength_A, scan_step_A, t, fit_c12, s_flat)[1] for t in grid]
                t0 = grid[int(np.argmin(rss))]
                th = minimize_scalar(lambda t: _lsq(k, wavelength_A, scan_step_A, t, fit_c12, s_flat)[1],
                                     bounds=(t0 - np.deg2rad(1.5), t0 + np.deg2rad(1.5)), method="bounded",
                                     options=dict(xatol=1e-6)).x
                if hint is not None:  # 180-deg branch nearest to the hint
                    if np.cos(th - np.deg2rad(hint)) < 0:
                        th += np.pi
            coef, rss_v = _lsq(k, wavelength_A, scan_step_A, th, fit_c12, s_flat)
            model = (_design(k, wavelength_A, scan_step_A, th, fit_c12) @ coef).reshape(2, -1).T
            ref = np.mean(_fourier_shift(imgs, -model), axis=0)
        cand = dict(tr=tr, th=th, coef=coef, rss=rss_v, s=s, model=model, imgs=imgs, s_flat=s_flat)
        if best is None or cand["rss"] < best["rss"]:
            best = cand
    th, coef, s_flat = best["th"], best["coef"], best["s_flat"]
    x = _design(k, wavelength_A, scan_step_A, th, fit_c12)
    eps = 1e-6
    dth = (_design(k, wavelength_A, scan_step_A, th + eps, fit_c12) @ coef - x @ coef) / eps
    jac = np.column_stack([x, dth])
    dof = max(jac.shape[0] - jac.shape[1], 1)
    sig2 = best["rss"] / dof
    cov = sig2 * np.linalg.pinv(jac.T @ jac)
    err = np.sqrt(np.diag(cov))
    names = ["C10", "C12a", "C12b"][:len(coef)]
    out = {n: float(v) for n, v in zip(names, coef)}
    out.setdefault("C12a", 0.0)
    out.setdefault("C12b", 0.0)
    sigma = {n: float(e) for n, e in zip(names, err[:-1])}
    sigma["rotation_deg"] = float(np.rad2deg(err[-1]))
    rot = float((np.rad2deg(th) + 180.0) % 360.0 - 180.0)
    out.update(sigma=sigma, rotation_deg=rot, transpose=bool(best["tr"]),
               residual_px=float(np.sqrt(best["rss"] / (len(s_flat) / 2))), shifts_px=best["s"],
               model_px=best["model"], k_inv_A=k, images=best["imgs"], bin_factor=int(bin_factor),
               disk=info, aberrations=np.array([out["C10"], out["C12a"], out["C12b"]]))
    out["tcbf"] = tcbf_image(best["imgs"], best["model"], upsample=upsample, wavelength_A=wavelength_A,
                             scan_step_A=scan_step_A, aberrations=out["aberrations"], rotation_deg=rot)
    return out


def tcbf_image(images, shifts_px, upsample=None, wavelength_A=None, scan_step_A=None, aberrations=None,
               rotation_deg=0.0, wiener=0.1):
    """Tilt-corrected bright-field image and a crude phase estimate from it.

    tcBF = mean over pixels of the BF images shifted back by their (model) shifts (Fourier shift,
    periodic), then upsampled by ``upsample`` (Fourier interpolation; e.g. scan step / reconstruction
    pixel).  For a weak phase object the first-order contrast of the tcBF image is
    c(q) = T(q) phi(q), T(q) = 2 sin(pi lambda [C10 |q|^2 + C12a (qx^2 - qy^2) + 2 C12b qx qy])
    (q in 1/Å in the object frame; from chi(k) - chi(k -/+ q) = +/- q.grad chi - chi_2(q), where the
    first term is the parallax shift and chi_2 the quadratic part; valid where k +/- q are both in the
    aperture),
    so when ``aberrations`` are given the returned ``phase`` is the Wiener estimate
    phi = c T / (T^2 + wiener) (rad, zero mean); otherwise ``phase`` is the contrast c = tcBF / mean - 1.

    Returns
    -------
    dict: ``image`` (tcBF, mean 1), ``phase`` (rad, see above), ``pixel_A`` (Å, when ``scan_step_A``).
    """
    imgs = np.asarray(images, float)
    img = np.mean(_fourier_shift(imgs, -np.asarray(shifts_px, float)), axis=0)
    f = 1.0 if upsample is None else float(upsample)
    if f != 1.0:
        ny, nx = img.shape
        my, mx = int(round(ny * f)), int(round(nx * f))
        spec = np.fft.fftshift(np.fft.fft2(img))
        big = np.zeros((my, mx), complex)
        oy, ox = my // 2 - ny // 2, mx // 2 - nx // 2  # zero frequency stays at the centre (index m // 2)
        big[oy:oy + ny, ox:ox + nx] = spec
        img = np.fft.ifft2(np.fft.ifftshift(big)).real * (my * mx) / (ny * nx)
    c = img / img.mean() - 1.0
    out = dict(image=img / img.mean())
    if scan_step_A is not None:
        out["pixel_A"] = scan_step_A / f
    if aberrations is not None and wavelength_A is not None and scan_step_A is not None:
        ab = np.zeros(3)
        ab[:len(aberrations)] = np.asarray(aberrations, float)[:3]
        qsy = np.fft.fftfreq(c.shape[0], scan_step_A / f)[:, None]
        qsx = np.fft.fftfreq(c.shape[1], scan_step_A / f)[None, :]
        th = np.deg2rad(rotation_deg)
        # scan-frame frequencies -> object frame: q = qsx u + qsy v
        qx = qsx * np.cos(th) - qsy * np.sin(th)
        qy = qsx * np.sin(th) + qsy * np.cos(th)
        t = 2 * np.sin(np.pi * wavelength_A * (ab[0] * (qx**2 + qy**2) + ab[1] * (qx**2 - qy**2)
                                               + 2 * ab[2] * qx * qy))
        ph = np.fft.ifft2(np.fft.fft2(c) * t / (t**2 + wiener)).real
        out["phase"] = ph - ph.mean()
    else:
        out["phase"] = c
    return out
