"""Blind start: defocus, astigmatism, scan rotation and an initial object from the data alone."""
import math
import time

import numpy as np
from scipy.ndimage import map_coordinates

from ...operators.optics import electron_wavelength_A
from .com import center_of_mass, fit_scan_rotation, idpc
from .parallax import bright_field_disk, fit_parallax

__all__ = ["from_data"]


def _load(params):
    data = params.get("dataset")
    if data is None:
        path = str(params.get("data_path", ""))
        if path.endswith(".npy"):
            data = np.load(path, mmap_mode="r")
        else:
            import h5py
            with h5py.File(path, "r") as f:
                data = f["data"][()]
    data = np.asarray(data)
    if params.get("flip_ky"):
        data = data[..., ::-1, :]
    return data


def from_data(pypty_params, *, semiangle_mrad, fit_c12=True, estimate_rotation=True, rotation_deg=None,
              object_from="tcbf", min_rotation_sigma=2.0, **parallax_options):
    """Estimate what a reconstruction needs from the data: aberrations, rotated positions, initial object.

    Parameters
    ----------
    pypty_params : dict
        Must hold the data (``dataset`` or ``data_path``: .h5 with 'data' or .npy), ``acc_voltage`` (kV),
        ``pixel_size_x_A`` (reconstruction px, Å), the nominal raster ``positions`` (N, 2) px (x fast)
        and ``scan_size`` (Sy, Sx) -- what :func:`pypty_params_from_experiment` gives without a defocus.
        Patterns are read as stored (after ``flip_ky``; ``data_bin``/``data_pad`` do not matter here).
    semiangle_mrad : float
        Convergence semi-angle (mrad); with the measured bright-field radius r_BF (px) it gives the
        detector pixel dk = alpha / (lambda r_BF) (1/Å).
    fit_c12 : bool
        Fit two-fold astigmatism as well as C10.
    estimate_rotation : bool
        Estimate the scan rotation/transposition (COM curl + parallax); otherwise use ``rotation_deg``
        (default: the rotation of the nominal positions) and no transposition.
    object_from : "tcbf", "idpc" or None
        Source of the initial object phase; None: no object is returned (``run`` starts from vacuum).
        On the shared MoS2 data a vacuum start converged faster than an iDPC start (r 0.975 against
        0.912 after 6 epochs, ``benchmarks/blind_start_mos2.py``).
    min_rotation_sigma : float
        The positions are rotated only when the estimated rotation differs from the nominal one by
        more than this many standard deviations of the parallax fit.
    parallax_options : passed to :func:`fit_parallax` (``bin_factor``, ``rim``, ``n_iter``).

    Returns
    -------
    dict with ``aberrations`` (Krivanek vector C10, C12a, C12b; Å), ``positions`` (N, 2) px (rotated
    about the scan centre by the estimated minus the nominal rotation, and re-indexed when transposed;
    same minimum as the nominal positions), ``obj`` (Y, X, num_slices, 1) complex128 = exp(i phase / num_slices)
    on a canvas
    that holds every probe window (phase interpolated from the scan-grid estimate, zero outside the
    scanned area), and ``report`` (a dict: numbers, 1-sigma uncertainties, residuals, runtimes, notes).
    """
    t0 = time.perf_counter()
    data = _load(pypty_params)
    sy, sx = (int(v) for v in pypty_params["scan_size"])
    d3 = data.reshape((-1,) + data.shape[-2:])
    lam = electron_wavelength_A(float(pypty_params["acc_voltage"]))
    dx = float(pypty_params["pixel_size_x_A"])
    pos = np.asarray(pypty_params["positions"], float).reshape(-1, 2)
    g = pos.reshape(sy, sx, 2)
    fast = (g[0, -1] - g[0, 0]) / max(sx - 1, 1)
    step_A = float(np.hypot(*fast)) * dx
    nominal_rot = math.degrees(math.atan2(fast[0], fast[1]))
    _, r_bf, _ = bright_field_disk(d3.mean(axis=0))
    dk = semiangle_mrad * 1e-3 / lam / r_bf
    report = dict(detector_pixel_inv_A=dk, bright_field_radius_px=r_bf, scan_step_A=step_A,
                  nominal_rotation_deg=nominal_rot)
    t = time.perf_counter()
    com = center_of_mass(d3)
    transpose = False
    if estimate_rotation:
        rc = fit_scan_rotation(com, (sy, sx))
        transpose = rc["transpose"] and sy == sx
        report.update(com_rotation_deg=rc["rotation_deg"], com_transpose=rc["transpose"],
                      com_relative_curl=rc["relative_curl"])
        rot_fixed, hint = None, rc["rotation_deg"]
    else:
        rot_fixed, hint = (nominal_rot if rotation_deg is None else float(rotation_deg)), None
    report["time_com_s"] = time.perf_counter() - t
    t = time.perf_counter()
    px = fit_parallax(d3, (sy, sx), step_A, dk, lam, rotation_deg=rot_fixed, rotation_hint_deg=hint,
                      transpose=transpose, fit_c12=fit_c12, upsample=step_A / dx, **parallax_options)
    report["time_parallax_s"] = time.perf_counter() - t
    rot = px["rotation_deg"]
    report.update(C10=px["C10"], C12a=px["C12a"], C12b=px["C12b"], sigma=px["sigma"], rotation_deg=rot,
                  transpose=transpose, parallax_residual_px=px["residual_px"])
    # positions: rotate the nominal raster about its centre by (estimated - nominal) rotation, when the
    # difference is significant (beyond min_rotation_sigma standard deviations of the parallax fit): a
    # rotation within the noise would only move the positions away from a correct nominal scan
    new = g.swapaxes(0, 1).reshape(-1, 2) if transpose else pos.copy()
    sig = float(px["sigma"].get("rotation_deg", 0.0) or 0.0) if isinstance(px.get("sigma"), dict) else 0.0
    significant = abs(rot - nominal_rot) > min_rotation_sigma * sig
    report["positions_rotated"] = bool(estimate_rotation and significant)
    if not significant:
        rot = nominal_rot
    if estimate_rotation and significant:
        a = math.radians(rot - nominal_rot)
        c = new.mean(axis=0)
        r = new - c
        new = np.stack([r[:, 0] * math.cos(a) + r[:, 1] * math.sin(a),
                        -r[:, 0] * math.sin(a) + r[:, 1] * math.cos(a)], axis=1) + c
        new += pos.min(axis=0) - new.min(axis=0)
    if object_from is None:
        report["time_total_s"] = time.perf_counter() - t0
        report["notes"] = ("C10/C12 from the parallax fit (rim 0.7 of the BF disk); 180-deg branch of the rotation "
                           "(and so the sign of C10) from the COM curl fit with the positive-skewness rule; no "
                           "initial object.")
        return dict(aberrations=np.array([px["C10"], px["C12a"], px["C12b"]]), positions=new, obj=None,
                    report=report)
    # initial object on a canvas holding every probe window
    if object_from == "idpc":
        phase, up = idpc(com, (sy, sx), step_A, rot, transpose, detector_pixel_inv_A=dk), 1.0
    else:
        phase, up = px["tcbf"]["phase"], step_A / dx   # tcBF phase is on the reconstruction grid
    kb = d3.shape[-1] // int(pypty_params.get("data_bin", 1) or 1)
    pad = pypty_params.get("data_pad", 0) or 0
    win = kb + 2 * (kb // 4 if pad == "auto" else int(pad))   # probe window (px) as run builds it
    ny = int(np.ceil(new[:, 0].max())) + win + 1
    nx = int(np.ceil(new[:, 1].max())) + win + 1
    yy, xx = np.mgrid[:ny, :nx].astype(float)
    # canvas px -> scan index: probe centre = position + win//2; invert the raster (rotation about c)
    th = math.radians(rot)
    org = (new.reshape(sx, sy, 2)[0, 0] if transpose else new.reshape(sy, sx, 2)[0, 0]) + win // 2
    ry, rx = yy - org[0], xx - org[1]
    step_px = step_A / dx
    iu = (rx * math.cos(th) + ry * math.sin(th)) / step_px
    iv = (-rx * math.sin(th) + ry * math.cos(th)) / step_px
    sc = np.stack([iv * up, iu * up])
    ph = map_coordinates(phase, sc, order=1, mode="constant", cval=0.0)
    inside = (iv >= 0) & (iv <= phase.shape[0] / up - 1) & (iu >= 0) & (iu <= phase.shape[1] / up - 1)
    ph = np.where(inside, ph, 0.0)
    report["time_total_s"] = time.perf_counter() - t0
    report["notes"] = ("C10/C12 from the parallax fit (rim 0.7 of the BF disk); 180-deg branch of the rotation "
                       "(and so the sign of C10) from the COM curl fit with the positive-skewness rule; the "
                       "object phase is the Wiener-filtered tcBF contrast (rad, crude).")
    ns = int(pypty_params.get("num_slices", 1) or 1)
    obj = np.repeat(np.exp(1j * ph / ns)[:, :, None, None], ns, axis=2)  # phase split evenly over slices
    return dict(aberrations=np.array([px["C10"], px["C12a"], px["C12b"]]), positions=new, obj=obj, report=report)
