"""Initial probe guesses: from the data, a binary aperture, a given beam, aberrations and modes.

The beam in reciprocal space is ``psi(k) = A(k) exp(-i chi(k))`` (Krivanek
aberration phase, :func:`pypty.operators.optics.aberration_phase`; C10 < 0 underfocus)
and the real-space probe is its unitary inverse FFT, centred at pixel
(Y//2, X//2) of the window.  ``A(k)`` is, in order of precedence:

1. ``beam_ctf`` (complex or real, zero frequency at (Y//2, X//2)), if given;
2. the binary aperture ``mean_pattern > estimate_aperture_based_on_binary *
   mean(mean_pattern)`` (1 inside, 0 outside), if that factor is > 0;
3. ``sqrt(mean_pattern)`` (the data's mean pattern unless ``mean_pattern`` is given).

Mixed states (Thibault & Menzel, Nature 494 (2013) 68) are started either as
defocus-spread modes (one mode per defocus of ``defocus_spread_modes``, equal
power: the incoherent sum then is the intensity averaged over those defoci)
or as Hermite modes (``n_hermite_probe_modes = (nx, ny)``: the first probe
times Hermite polynomials H_m(x / w_x) H_n(y / w_y), m < nx, n < ny, w the
rms widths of the probe, Gram-Schmidt orthogonalised, each higher mode with
10 % of the first mode's power).  The total ``sum |probe|^2`` is the mean
counts per pattern.
"""
from __future__ import annotations

import numpy as np
from numpy.polynomial import hermite as _hermite

from ..data import PatternSource, Preprocessing
from ..data.memory import host_memory_bytes
from ..operators.optics import aberration_phase, aberrations_as_dict, electron_wavelength_A, spatial_frequencies
from ..parameters import parameter_error as _err, validate

__all__ = ["make_probe", "aperture_from_binary", "probe_from_beam", "hermite_modes", "defocus_spread_probe",
           "probe_from_parameters", "initial_probe", "check_hermite_orders", "HERMITE_MAX_WORK"]

#: Power of every higher Hermite mode relative to the first mode at the start.
HERMITE_MODE_POWER = 0.1
#: Largest cost of building Hermite modes (:func:`check_hermite_orders`), in operations on window pixels.
#: Measured about 3e-9 s each on one core: the limit is about half a minute.
HERMITE_MAX_WORK = 1e10


def _hermite_work(nx, ny, window_yx):
    """Operations to build nx * ny Hermite modes: Gram-Schmidt (M^2/2 passes) and the polynomials (Clenshaw)."""
    m = nx * ny
    return (m * m / 2 + 4 * m * (nx + ny)) * float(window_yx[0]) * float(window_yx[1])


def check_hermite_orders(orders, window_yx):
    """``n_hermite_probe_modes`` as ints (nx, ny), refusing orders that add nothing or take too long to build.

    An order above the window's pixels along its axis gives polynomials that
    are linear combinations of the lower ones on those pixels (zero after the
    orthogonalisation).  The Gram-Schmidt orthogonalisation of M = nx * ny
    modes costs about M^2/2 passes over the window (quadratic in M): more
    than :data:`HERMITE_MAX_WORK` operations are refused instead of running
    for minutes to hours.

    Raises
    ------
    PyptyParameterError
        Not a pair of ints >= 1, an order above the window size, or too many modes.
    """
    try:
        nx, ny = (int(v) for v in orders)
    except (TypeError, ValueError):
        raise _err("n_hermite_probe_modes", f"expected a pair of ints (nx, ny), got {orders!r}") from None
    if nx < 1 or ny < 1:
        raise _err("n_hermite_probe_modes", f"orders (nx, ny) must be >= 1, got {tuple(orders)}")
    wy, wx = (int(v) for v in window_yx)
    if nx > wx or ny > wy:
        raise _err("n_hermite_probe_modes", f"orders (nx, ny) = ({nx}, {ny}) exceed the probe window {wy} x {wx} px "
                                            f"(y x x): on that many pixels, polynomials of higher order are "
                                            f"combinations of lower ones and add nothing")
    work = _hermite_work(nx, ny, (wy, wx))
    if work > HERMITE_MAX_WORK:
        k = 1
        while _hermite_work(k + 1, k + 1, (wy, wx)) <= HERMITE_MAX_WORK:
            k += 1
        raise _err("n_hermite_probe_modes", f"({nx}, {ny}) asks for {nx * ny} modes on a {wy} x {wx} px window; "
                                            f"building and orthogonalising them takes about {work:.2g} operations "
                                            f"(limit {HERMITE_MAX_WORK:.0g}, about half a minute): use fewer modes, "
                                            f"e.g. ({k}, {k}) or less")
    return nx, ny


def _append_mode(modes, cand, power):
    """Append ``cand`` to ``modes`` after Gram-Schmidt against them, scaled to ``HERMITE_MODE_POWER * power``.

    A candidate with nothing left after the orthogonalisation is appended as is (zero).
    """
    for prev in modes:
        cand = cand - np.vdot(prev, cand) / np.vdot(prev, prev) * prev
    norm = np.sum(np.abs(cand) ** 2)
    if norm > 0:
        cand = cand * np.sqrt(HERMITE_MODE_POWER * power / norm)
    modes.append(cand)


def make_probe(shape_yx, pixel_size_A, acc_voltage_kV, semiangle_mrad, aberrations=None,
               n_modes: int = 1, intensity: float = 1.0, soft_edge_px: float = 1.0):
    """Build a probe from a round condenser aperture and Krivanek aberrations.

    psi(k) = A(k) exp(-i chi(k)); the real-space probe is the unitary inverse
    FFT, centred at pixel (Y//2, X//2) of its window.  Extra modes (for mixed
    states) are the first mode multiplied by low-order Hermite-like
    polynomials in real space, orthogonalised and given
    ``HERMITE_MODE_POWER`` (10 %) of the power each before renormalisation.

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
    PyptyParameterError (a ValueError)
        Non-positive semi-angle, intensity or mode count, a window that is
        not two sizes >= 1 or would not fit in host memory, or bad aberrations.
    """
    if not semiangle_mrad > 0:
        raise _err("semiangle_mrad", f"must be > 0, got {semiangle_mrad!r}")
    if not intensity > 0:
        raise _err("intensity", f"must be > 0, got {intensity!r}")
    try:
        n_modes = int(n_modes)
        ny, nx = (int(s) for s in shape_yx)
    except (TypeError, ValueError):
        raise _err("shape_yx", f"expected two ints (Y, X) and an int n_modes, got {shape_yx!r} and {n_modes!r}") \
            from None
    if n_modes < 1:
        raise _err("n_modes", f"must be >= 1, got {n_modes!r}")
    if ny < 1 or nx < 1:
        raise _err("shape_yx", f"must be two sizes >= 1 px, got {tuple(shape_yx)}")
    need = 16.0 * ny * nx * (n_modes + 8)  # the modes and the temporaries of one (frequencies, aperture, phase)
    avail = host_memory_bytes()
    if need > avail:
        raise _err("shape_yx", f"a {ny} x {nx} px probe with {n_modes} modes needs about {need / 2**30:.3g} GiB, "
                               f"more than the {avail / 2**30:.3g} GiB of available host memory")
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
    power = np.sum(np.abs(psi) ** 2)
    for i in range(1, int(n_modes)):
        _append_mode(modes, psi * polys[(i - 1) % len(polys)] * (1 + (i - 1) // len(polys)), power)
    probe = np.stack(modes, axis=-1)
    probe *= np.sqrt(intensity / np.sum(np.abs(probe) ** 2))
    return probe.astype(np.complex128)


def aperture_from_binary(mean_pattern, factor):
    """Binary aperture: pixels of ``mean_pattern`` above ``factor * mean(mean_pattern)``.

    Parameters
    ----------
    mean_pattern : ndarray, real, (Y, X)
    factor : float > 0

    Returns
    -------
    ndarray, float64 (0 or 1), (Y, X)

    Raises
    ------
    PyptyParameterError
        ``factor`` not > 0, or no pixel above the threshold.
    """
    mp = np.asarray(mean_pattern, dtype=float)
    if not float(factor) > 0:
        raise _err("estimate_aperture_based_on_binary", f"must be > 0, got {factor!r}")
    mask = mp > float(factor) * mp.mean()
    if not mask.any():
        raise _err("estimate_aperture_based_on_binary",
                   f"no pixel of the mean pattern exceeds {factor} x its mean ({mp.mean():.4g}); use a smaller factor")
    return mask.astype(np.float64)


def probe_from_beam(beam_k, pixel_size_yx_A, acc_voltage_kV, aberrations=None, extra_probe_defocus=0.0):
    """Real-space probe (Y, X) from a centred reciprocal-space beam and aberrations.

    ``psi = fftshift(ifft2(ifftshift(beam_k) * exp(-i chi), norm="ortho"))`` with
    ``C10 -> C10 - extra_probe_defocus`` (defocus = -C10).

    Parameters
    ----------
    beam_k : ndarray, (Y, X), zero frequency at (Y//2, X//2)
    pixel_size_yx_A : (float, float), Å
    acc_voltage_kV : float
    aberrations : dict, sequence or None, Å (Krivanek)
    extra_probe_defocus : float, Å

    Returns
    -------
    ndarray, complex128, (Y, X)
    """
    ab = aberrations_as_dict(aberrations)
    ab["C10"] = ab.get("C10", 0.0) - float(extra_probe_defocus)
    amp = np.fft.ifftshift(np.asarray(beam_k))
    chi = aberration_phase(amp.shape, pixel_size_yx_A, acc_voltage_kV, ab)
    return np.fft.fftshift(np.fft.ifft2(amp * np.exp(-1j * chi), norm="ortho"))


def hermite_modes(probe, orders):
    """Mixed-state probe: ``probe`` times Hermite polynomials, orthogonalised.

    Parameters
    ----------
    probe : ndarray, complex, (Y, X), real space
    orders : (int, int)
        (nx, ny): polynomial orders m < nx along x and n < ny along y; nx * ny
        modes, (1, 1) is the probe alone.

    Returns
    -------
    ndarray, complex128, (Y, X, nx * ny); the first mode is ``probe``, each
    higher mode has ``HERMITE_MODE_POWER`` of its power.

    Raises
    ------
    PyptyParameterError
        Orders not >= 1, above the window size or too many to build in
        reasonable time (:func:`check_hermite_orders`), polynomials that
        overflow, or a zero probe.
    """
    psi = np.asarray(probe, dtype=np.complex128)
    if psi.ndim != 2:
        raise _err("probe", f"Hermite modes need a 2D probe (Y, X), got shape {psi.shape}")
    nx, ny = check_hermite_orders(orders, psi.shape)
    w = np.abs(psi) ** 2
    tot = w.sum()
    if not tot > 0:
        raise _err("probe", "is zero everywhere")
    yy, xx = np.indices(psi.shape, dtype=float)
    cy, cx = (w * yy).sum() / tot, (w * xx).sum() / tot
    sy = max(np.sqrt((w * (yy - cy) ** 2).sum() / tot), 1e-3)
    sx = max(np.sqrt((w * (xx - cx) ** 2).sum() / tot), 1e-3)
    modes = []
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, naming the parameter
        for n in range(ny):
            for m in range(nx):
                hy = _hermite.hermval((yy - cy) / sy, np.eye(n + 1)[n])
                hx = _hermite.hermval((xx - cx) / sx, np.eye(m + 1)[m])
                if modes:
                    _append_mode(modes, psi * hy * hx, tot)
                else:
                    modes.append(psi * hy * hx)  # orders (0, 0): the probe itself
    out = np.stack(modes, axis=-1)
    if not np.all(np.isfinite(out)):
        raise _err("n_hermite_probe_modes", f"orders ({nx}, {ny}): the Hermite polynomials overflow on this "
                                            f"{psi.shape[0]} x {psi.shape[1]} px window (probe rms widths "
                                            f"{sy:.3g} x {sx:.3g} px); use lower orders")
    return out


def defocus_spread_probe(beam_k, pixel_size_yx_A, acc_voltage_kV, defoci_A, aberrations=None,
                         extra_probe_defocus=0.0):
    """One probe mode per extra defocus (Å, > 0 underfocus), equal power.

    Returns
    -------
    ndarray, complex128, (Y, X, len(defoci_A)); every mode carries
    ``1/len(defoci_A)`` of the power of the single probe.
    """
    d = np.atleast_1d(np.asarray(defoci_A, dtype=float))
    if d.ndim != 1 or d.size == 0 or not np.all(np.isfinite(d)):
        raise _err("defocus_spread_modes", f"expected a non-empty 1D array of finite defoci (Å), got {defoci_A!r}")
    modes = [probe_from_beam(beam_k, pixel_size_yx_A, acc_voltage_kV, aberrations, extra_probe_defocus + v)
             for v in d]
    return np.stack(modes, axis=-1) / np.sqrt(d.size)


def probe_from_parameters(p, data_mean_pattern, window_yx, pixel_size_yx_A):
    """The probe ``run`` builds when ``probe`` is None (validated parameters ``p``).

    Parameters
    ----------
    p : dict
        Output of :func:`pypty.parameters.validate`; reads ``beam_ctf``,
        ``estimate_aperture_based_on_binary``, ``mean_pattern``,
        ``aberrations``, ``extra_probe_defocus``, ``defocus_spread_modes``,
        ``n_hermite_probe_modes``, ``acc_voltage``.
    data_mean_pattern : ndarray, (Y, X)
        Mean preprocessed pattern of the data (zero frequency at the centre).
    window_yx : (int, int)
        Preprocessed pattern shape.
    pixel_size_yx_A : (float, float)

    Returns
    -------
    probe : ndarray, complex128, (Y, X, modes), ``sum |probe|^2`` = counts of the mean pattern
    description : str
        How it was made (for the log).

    Raises
    ------
    PyptyParameterError
        Wrong shapes of ``mean_pattern``/``beam_ctf``, empty aperture (both
        mode kinds together are refused by :func:`pypty.parameters.validate`).
    """
    win = tuple(int(v) for v in window_yx)
    dmp = np.asarray(data_mean_pattern, dtype=float)
    mp = dmp if p["mean_pattern"] is None else np.asarray(p["mean_pattern"], dtype=float)
    if mp.shape != win:
        raise _err("mean_pattern", f"expected shape {win} (the preprocessed pattern), got {mp.shape}")
    if p["beam_ctf"] is not None:
        beam = np.asarray(p["beam_ctf"])
        if beam.shape != win:
            raise _err("beam_ctf", f"expected shape {win} (the preprocessed pattern), got {beam.shape}")
        how = "beam_ctf"
    elif p["estimate_aperture_based_on_binary"] > 0:
        beam = aperture_from_binary(mp, p["estimate_aperture_based_on_binary"])
        how = "binary aperture of the mean pattern"
    else:
        beam = np.sqrt(np.clip(mp, 0, None))
        how = "mean pattern"
    args = (beam, pixel_size_yx_A, p["acc_voltage"])
    if p["defocus_spread_modes"] is not None:
        probe = defocus_spread_probe(*args, p["defocus_spread_modes"], p["aberrations"], p["extra_probe_defocus"])
        how += f", {probe.shape[-1]} defocus-spread modes"
    else:
        probe = probe_from_beam(*args, p["aberrations"], p["extra_probe_defocus"])[..., None]
        if p["n_hermite_probe_modes"] is not None:
            probe = hermite_modes(probe[..., 0], p["n_hermite_probe_modes"])
            how += f", {probe.shape[-1]} Hermite modes"
    if p["aberrations"] is not None or p["extra_probe_defocus"]:
        how += ", aberrations"
    power = float(np.sum(np.abs(probe) ** 2))
    if not power > 0:
        raise _err("probe", f"the initial probe from the {how} is zero everywhere")
    target = float(dmp.sum())
    if target > 0:
        probe = probe * np.sqrt(target / power)
    return probe.astype(np.complex128), "probe built from the " + how


def initial_probe(pypty_params):
    """The initial probe :func:`pypty.iterative.run` would build for ``pypty_params`` (probe None).

    Reads the data once (mean pattern, after ``data_bin``/``data_pad``/...).

    Returns
    -------
    ndarray, complex128, (Y, X, modes)

    Raises
    ------
    PyptyParameterError, pypty.data.DataError
    """
    p = validate(pypty_params)
    ddt = np.dtype(p["force_dataset_dtype"]) if p["force_dataset_dtype"] is not None else np.float64
    prep = Preprocessing(multiplier=float(p["data_multiplier"]), pad=int(p["data_pad"]), bin=int(p["data_bin"]),
                         flip_ky=bool(p["flip_ky"]), shift=tuple(float(v) for v in p["data_shift_vector"]))
    src = PatternSource(p["data_path"], p["dataset"], prep, ddt, load_one_by_one=True, scan_size=p["scan_size"],
                        allow_external_hdf5=bool(p.get("allow_external_hdf5", False)))
    try:
        mean = src.mean_pattern()
        win = src.pattern_shape
    finally:
        src.close()
    pix = (float(p["pixel_size_y_A"]), float(p["pixel_size_x_A"]))
    return probe_from_parameters(p, mean, win, pix)[0]
