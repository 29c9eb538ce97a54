"""From the numbers a microscopist knows to ``pypty_params`` entries.

Relations used (far-field ptychography, e.g. Rodenburg & Maiden, "Ptychography",
Springer Handbook of Microscopy (2019), Sec. 17.3):

- detector pixel in Å^-1: ``dk = theta_px / lambda`` (theta_px in rad), or
  ``dk = alpha / (lambda * r_BF)`` from the convergence semi-angle alpha and
  the bright-field disk radius r_BF in px;
- reconstruction pixel: ``dx = 1 / (K * dk)`` for a (padded, binned) window
  of K px, so the probe window spans ``1 / dk`` Å;
- electron wavelength: :func:`pypty.operators.optics.electron_wavelength_A`.

Scan positions follow ``docs/conventions.md``: scan point (iy, ix) (x fast)
sits at ``ix * step * u + iy * step * v`` with the fast-axis direction
``u = (cos theta, sin theta)`` and the slow-axis direction
``v = (-sin theta, cos theta)`` in object (x, y) components, theta the scan
rotation: the angle from the object's (detector's) +x axis towards its +y
axis to the scan's fast axis.  Positions are the top-left corners (y, x) of
the probe window in reconstruction px.
"""
from __future__ import annotations

import math

import numpy as np

from ..operators.optics import electron_wavelength_A

__all__ = ["CalibrationError", "detector_pixel_inv_A", "reconstruction_pixel_size_A", "scan_positions_px",
           "object_shape_px", "slice_settings", "pypty_params_from_experiment", "pypty_params_from_dataset"]


class CalibrationError(ValueError):
    """An experimental number is missing, inconsistent or out of range (the message names it)."""


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
            or not math.isfinite(float(value)) or float(value) <= 0:
        raise CalibrationError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _shape2(name, value):
    try:
        a, b = (int(v) for v in value)
        ok = a >= 1 and b >= 1 and all(float(v) == int(v) for v in value)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise CalibrationError(f"{name} must be two ints >= 1, got {value!r}")
    return a, b


def detector_pixel_inv_A(acc_voltage_kV, *, detector_pixel_mrad=None, detector_pixel_inv_A=None,
                         bright_field_radius_px=None, semiangle_mrad=None):
    """Reciprocal-space size of one detector pixel, Å^-1.

    Give exactly one of ``detector_pixel_mrad`` (mrad/px),
    ``detector_pixel_inv_A`` (Å^-1/px) or ``bright_field_radius_px`` (px, then
    ``semiangle_mrad`` is needed too).

    Returns
    -------
    float, Å^-1 per px

    Raises
    ------
    CalibrationError
        None or several calibrations given, or a non-positive value.
    """
    lam = electron_wavelength_A(_positive("acc_voltage_kV", acc_voltage_kV))
    given = [k for k, v in (("detector_pixel_mrad", detector_pixel_mrad),
                            ("detector_pixel_inv_A", detector_pixel_inv_A),
                            ("bright_field_radius_px", bright_field_radius_px)) if v is not None]
    if len(given) != 1:
        raise CalibrationError("give exactly one detector calibration: detector_pixel_mrad, "
                               f"detector_pixel_inv_A or bright_field_radius_px (got {given or 'none'})")
    if detector_pixel_mrad is not None:
        return _positive("detector_pixel_mrad", detector_pixel_mrad) * 1e-3 / lam
    if detector_pixel_inv_A is not None:
        return _positive("detector_pixel_inv_A", detector_pixel_inv_A)
    if semiangle_mrad is None:
        raise CalibrationError("bright_field_radius_px needs semiangle_mrad")
    return _positive("semiangle_mrad", semiangle_mrad) * 1e-3 / lam / _positive("bright_field_radius_px",
                                                                                bright_field_radius_px)


_detector_dk = detector_pixel_inv_A  # the name is shadowed by an argument below


def reconstruction_pixel_size_A(window_px, dk_inv_A):
    """Real-space pixel (Å) of a ``window_px``-wide probe window: ``1 / (window_px * dk)``.

    Raises CalibrationError for non-positive inputs.
    """
    return 1.0 / (_positive("window_px", window_px) * _positive("dk_inv_A", dk_inv_A))


def scan_positions_px(scan_shape, scan_step_A, pixel_size_A, scan_rotation_deg=0.0, margin_px=4.0):
    """Scan positions (N, 2) as (y, x) top-left probe-window corners in reconstruction px.

    Parameters
    ----------
    scan_shape : (int, int)
        (scan_y, scan_x); pattern p = iy * scan_x + ix (x fast).
    scan_step_A : float or (float, float)
        Step (slow, fast) in Å, one number for both.
    pixel_size_A : float
        Reconstruction pixel size in Å.
    scan_rotation_deg : float
        Angle of the scan's fast axis from the object's +x towards +y (degrees).
    margin_px : float
        Smallest y and x of the result (>= 0), room for position refinement.

    Returns
    -------
    ndarray, float64, (scan_y * scan_x, 2)

    Raises
    ------
    CalibrationError
    """
    sy, sx = _shape2("scan_shape", scan_shape)
    steps = np.broadcast_to(np.asarray(scan_step_A, dtype=float), (2,))
    step_slow, step_fast = (_positive("scan_step_A", float(s)) for s in steps)
    dx = _positive("pixel_size_A", pixel_size_A)
    if not (isinstance(margin_px, (int, float, np.number)) and margin_px >= 0):
        raise CalibrationError(f"margin_px must be a number >= 0, got {margin_px!r}")
    th = math.radians(float(scan_rotation_deg))
    iy, ix = np.mgrid[:sy, :sx]
    a, b = ix.ravel() * step_fast, iy.ravel() * step_slow
    x = a * math.cos(th) - b * math.sin(th)
    y = a * math.sin(th) + b * math.cos(th)
    pos = np.stack([y, x], axis=1) / dx
    return pos - pos.min(axis=0) + float(margin_px)


def object_shape_px(positions, window_yx, margin_px=0):
    """Object canvas (ny, nx) in px that holds every probe window (plus ``margin_px`` after the last)."""
    pos = np.asarray(positions, dtype=float)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise CalibrationError(f"positions must have shape (N, 2), got {pos.shape}")
    wy, wx = _shape2("window_yx", window_yx)
    return (int(np.floor(pos[:, 0].max() + 0.5)) + wy + int(margin_px),
            int(np.floor(pos[:, 1].max() + 0.5)) + wx + int(margin_px))


def slice_settings(thickness_A, num_slices=1):
    """``{"num_slices", "slice_distances"}`` for a specimen of ``thickness_A`` cut into equal slices.

    Raises CalibrationError for a non-positive thickness or slice count.
    """
    t = _positive("thickness_A", thickness_A)
    if isinstance(num_slices, bool) or not isinstance(num_slices, (int, np.integer)) or num_slices < 1:
        raise CalibrationError(f"num_slices must be an int >= 1, got {num_slices!r}")
    return {"num_slices": int(num_slices), "slice_distances": np.full(int(num_slices), t / int(num_slices))}


def pypty_params_from_experiment(*, detector_shape, acc_voltage_kV, semiangle_mrad, scan_step_A, scan_shape,
                                 scan_rotation_deg=0.0, detector_pixel_mrad=None, detector_pixel_inv_A=None,
                                 bright_field_radius_px=None, data_bin=1, data_pad="auto", thickness_A=None,
                                 num_slices=1, defocus_A=None, margin_px=4.0):
    """``pypty_params`` entries from experimental numbers.

    Parameters
    ----------
    detector_shape : (int, int)
        Stored pattern size (ky, kx) in px, before ``data_bin``/``data_pad``.
    acc_voltage_kV, semiangle_mrad : float
        Accelerating voltage (kV), convergence semi-angle (mrad).
    scan_step_A : float or (float, float)
        Scan step in Å; scan_shape (scan_y, scan_x); scan_rotation_deg (see module docstring).
    detector_pixel_mrad, detector_pixel_inv_A, bright_field_radius_px : float
        One detector calibration, for the stored pixels (see :func:`detector_pixel_inv_A`).
    data_bin : int
        On-the-fly binning of run (``data_bin``).
    data_pad : int or "auto"
        Padding per side in px after binning; "auto": a quarter of the binned width.
    thickness_A : float or None
        Specimen thickness; with ``num_slices`` gives ``slice_distances``
        (None: one slice of 10 Å, the table default).
    defocus_A : float or None
        Probe defocus (Å, = -C10; > 0 underfocus); gives ``aberrations = [C10]``.
    margin_px : float
        Smallest position in px.

    Returns
    -------
    dict with ``acc_voltage``, ``pixel_size_x_A``, ``pixel_size_y_A``,
    ``positions`` (N, 2), ``scan_size``, ``data_bin``, ``data_pad``,
    ``num_slices``, ``slice_distances`` and (with ``defocus_A``) ``aberrations``.

    Raises
    ------
    CalibrationError
        Naming the missing or wrong number.
    """
    ky, kx = _shape2("detector_shape", detector_shape)
    if ky != kx:
        raise CalibrationError(f"detector_shape must be square for equal x/y pixel sizes, got {(ky, kx)}; "
                               f"crop it with create_dataset(crop=...)")
    if isinstance(data_bin, bool) or not isinstance(data_bin, (int, np.integer)) or data_bin < 1 or ky % data_bin:
        raise CalibrationError(f"data_bin must be an int >= 1 dividing {ky}, got {data_bin!r}")
    kb = ky // int(data_bin)
    if isinstance(data_pad, str):
        if data_pad != "auto":
            raise CalibrationError(f"data_pad must be an int >= 0 or 'auto', got {data_pad!r}")
        data_pad = kb // 4
    if isinstance(data_pad, bool) or not isinstance(data_pad, (int, np.integer)) or data_pad < 0:
        raise CalibrationError(f"data_pad must be an int >= 0 or 'auto', got {data_pad!r}")
    dk = _detector_dk(acc_voltage_kV, detector_pixel_mrad=detector_pixel_mrad,
                              detector_pixel_inv_A=detector_pixel_inv_A,
                              bright_field_radius_px=bright_field_radius_px, semiangle_mrad=semiangle_mrad)
    _positive("semiangle_mrad", semiangle_mrad)
    dk *= int(data_bin)
    window = kb + 2 * int(data_pad)
    dx = reconstruction_pixel_size_A(window, dk)
    out = {
        "acc_voltage": float(acc_voltage_kV), "pixel_size_x_A": dx, "pixel_size_y_A": dx,
        "positions": scan_positions_px(scan_shape, scan_step_A, dx, scan_rotation_deg, margin_px),
        "scan_size": _shape2("scan_shape", scan_shape), "data_bin": int(data_bin), "data_pad": int(data_pad),
    }
    out.update(slice_settings(thickness_A, num_slices) if thickness_A is not None
               else slice_settings(10.0 * num_slices if isinstance(num_slices, int) else 10.0, num_slices))
    if defocus_A is not None:
        if not (isinstance(defocus_A, (int, float, np.number)) and math.isfinite(defocus_A)):
            raise CalibrationError(f"defocus_A must be a finite number, got {defocus_A!r}")
        out["aberrations"] = np.array([-float(defocus_A)])
    return out


def _attr(attrs, key):
    v = attrs.get(key)
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        v = v.item()
    return v


def pypty_params_from_dataset(data_path, **overrides):
    """``pypty_params`` for a pypty dataset written by :func:`create_dataset` (or the bundled sample).

    Reads the attributes ``acc_voltage_kV``, ``semiangle_mrad``, ``scan_step_A``,
    ``scan_shape``, ``scan_rotation_deg``, a detector calibration
    (``detector_pixel_mrad``, ``detector_pixel_inv_A`` or
    ``bright_field_radius_px``) and, if present, ``C10_A``; ``overrides``
    (the keyword arguments of :func:`pypty_params_from_experiment`) replace
    or supply them.

    Returns
    -------
    dict
        :func:`pypty_params_from_experiment` plus ``data_path``.

    Raises
    ------
    CalibrationError
        A needed number is neither in the file nor in ``overrides``.
    """
    import h5py

    from ..data.sources import hdf5_dataset

    try:
        with h5py.File(data_path, "r") as f:
            if "data" not in f:
                raise CalibrationError(f"data_path {data_path!r} has no dataset 'data'")
            shape = hdf5_dataset(f, "data", data_path, "data_path", bool(overrides.get("allow_external_hdf5", False)),
                                 CalibrationError).shape
            attrs = dict(f.attrs)
    except OSError as exc:
        raise CalibrationError(f"data_path {data_path!r} is not a readable HDF5 file: {exc}") from exc
    if len(shape) != 3:
        raise CalibrationError(f"'data' in {data_path!r} must be 3D (N, ky, kx), got shape {shape}")
    kw = {"detector_shape": shape[1:]}
    for key in ("acc_voltage_kV", "semiangle_mrad", "scan_step_A", "scan_rotation_deg"):
        if key in attrs:
            kw[key] = float(_attr(attrs, key))
    if "scan_shape" in attrs:
        kw["scan_shape"] = tuple(int(v) for v in np.asarray(attrs["scan_shape"]))
    calibs = {k: overrides[k] for k in ("detector_pixel_mrad", "detector_pixel_inv_A", "bright_field_radius_px")
              if overrides.get(k) is not None}
    if not calibs:
        for key in ("detector_pixel_mrad", "detector_pixel_inv_A", "bright_field_radius_px"):
            if key in attrs:
                calibs = {key: float(_attr(attrs, key))}
                break
    kw.update(calibs)
    if "C10_A" in attrs:
        kw["defocus_A"] = -float(_attr(attrs, "C10_A"))
    kw.update({k: v for k, v in overrides.items() if k not in calibs})
    for key in ("acc_voltage_kV", "semiangle_mrad", "scan_step_A", "scan_shape"):
        if kw.get(key) is None:
            raise CalibrationError(f"{key} is neither an attribute of {data_path!r} nor given as an argument")
    n_scan = kw["scan_shape"][0] * kw["scan_shape"][1] if len(tuple(kw["scan_shape"])) == 2 else -1
    if n_scan != shape[0]:
        raise CalibrationError(f"scan_shape {kw['scan_shape']} does not match the {shape[0]} patterns of "
                               f"{data_path!r}")
    out = pypty_params_from_experiment(**kw)
    out["data_path"] = str(data_path)
    return out
