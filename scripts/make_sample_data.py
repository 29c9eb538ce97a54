#!/usr/bin/env python
"""Simulate pypty's bundled sample dataset: SrTiO3 [001], 200 kV, with abTEM.

Writes ``pypty/data/sample_srtio3.h5`` (diffraction counts, scan positions,
ground-truth phase) and ``pypty/data/sample_srtio3.json`` (the same metadata,
for humans).  Needs the optional extra ``sample`` (``pip install abtem ase``).
Run time: about 2-3 minutes on a 2-core CPU.

Usage::

    python scripts/make_sample_data.py [--configs 6] [--seed 7] [--dose 1e5] [--out-dir pypty/data]

Specimen
--------
Cubic perovskite SrTiO3 (Pm-3m, a = 3.905 Å; Sr at (0,0,0), Ti at
(1/2,1/2,1/2), O at (1/2,1/2,0) and equivalents), viewed along [001].  The
periodic simulation cell is 4 x 4 x 3 unit cells: 15.62 x 15.62 Å laterally,
11.715 Å thick.  The atoms are shifted by a/4 along z so that the SrO and TiO2
planes sit at the centres of the six simulation slices of a/2 = 1.9525 Å.  In
the projected image Sr columns are at (0, 0) (mod a), Ti-O columns at
(a/2, a/2) and pure O columns at (a/2, 0) and (0, a/2).

Thermal diffuse scattering: frozen phonons (``abtem.FrozenPhonons``),
``--configs`` configurations (default 6) of independent Gaussian displacements
with rms 0.075 Å (Sr), 0.067 Å (Ti), 0.089 Å (O) per Cartesian axis (room
temperature U_iso of about 0.0056, 0.0045 and 0.0079 Å^2), seeded from
``--seed``; intensities of the configurations are averaged.

Microscope: 200 kV, convergence semi-angle 21.4 mrad (abTEM soft aperture:
linear edge one reciprocal pixel wide, centred on the cut-off), defocus 60 Å in
abTEM's sign, i.e. C10 = -60 Å (Krivanek): the probe is under-focused, its
crossover 60 Å below the entrance plane of the cell.  No other aberrations,
no partial coherence.

Scan: 28 x 28 raster with a 0.4 Å step, no rotation, x fast (pattern
p = iy*28 + ix), starting at the cell origin (a Sr column).  Dose 1e5 e/Å^2,
i.e. 16000 electrons per pattern; counts are Poisson(16000 * I_noise_free)
with ``numpy.random.default_rng(seed)``; the exact nominal positions are
stored (no jitter).

The detector grid: how the simulation matches 64 pixels of dk
---------------------------------------------------------------
A periodic multislice simulation on a cell of extent L samples reciprocal
space at dk = 1/L.  Instead of cropping a larger probe window or
interpolating the patterns, the simulation cell here *is* the probe window:
L = 4 a = 15.62 Å = N_det * dx_recon with N_det = 64, hence
dx_recon = L/64 = 0.2440625 Å and dk = 1/L = 0.064020 1/Å
(1.6056 mrad at 200 kV).  abTEM runs on a 320 x 320 grid (0.0488 Å, 5 x finer
than dx_recon; anti-aliasing band limit 2/3 of the simulation Nyquist =
6.83 1/Å = 171 mrad), and each stored pattern is the central 64 x 64 block of
the full 320 x 320 fftshifted abTEM diffraction pattern (rows/columns
160-32 ... 160+31, zero frequency at 160 -> 32).  No interpolation or binning
is involved: detector pixel (i, j) is exactly the Fourier coefficient at
k = ((i - 32) dk, (j - 32) dk).  The detector reaches 32 dk = 2.05 1/Å =
51.4 mrad = 2.40 x the semi-angle; the bright-field disk radius is
alpha / (lambda dk) = 13.33 px.  Electrons scattered beyond the detector are
lost (as in an experiment); the fraction is stored in the metadata.

This is exactly pypty's far-field model: because the cell has the extent of
the probe window, the (periodic) simulated probe at r_p times the (periodic)
specimen equals, after a cyclic shift by the window corner, the probe centred
in its 64 x 64 window times the 64 x 64 crop of the object canvas, and the
probe's Fourier coefficients (aperture radius 13.3 px < 32 px) are the same
on both grids.  The price: the probe wraps around the 15.62 Å cell (its
intensity outside a centred disk of radius L/2 is stored as
``probe_intensity_outside_L_over_2``) and the frozen-phonon displacements
repeat with period L.  The scanned field (10.8 Å) is smaller than L.

Conventions (identical to pypty's forward model; verified, see below)
--------------------------------------------------------------------
* patterns ``data`` (N, ky, kx), p = iy*n_scan_x + ix (x fast); zero
  frequency at pixel (N_det//2, N_det//2), k = (index - N_det//2) * dk; ky
  along rows, kx along columns, parallel to real-space y, x (no flip,
  transpose or rotation).  abTEM stores arrays as (x, y); they are transposed
  to (y, x) here, positions are passed to abTEM as (x, y).
* pattern = |fftshift(fft2(exit_wave))|^2, numpy's forward sign
  exp(-2 pi i k.r); transmission t = exp(+i sigma V); Fresnel propagator
  exp(-i pi lambda dz k^2); probe(k) = A(k) exp(-i chi(k)),
  chi = (2 pi / lambda) (1/2) alpha^2 C10 with C10 = -(abTEM defocus); a probe
  at r_p is probe(k) exp(-2 pi i k.r_p).
* Normalisation: abTEM's incident probe has sum_k |psi_k|^2 = 1 on the full
  320 x 320 grid; counts = Poisson(electrons_per_pattern * pattern).
* positions: ``positions_A`` (N, 2) (y, x) probe centres in Å in the cell
  frame (cell origin = a Sr column).  ``positions_px`` (N, 2) (y, x): the
  top-left corner of the 64 x 64 probe window on the object canvas in pixels
  of dx_recon, the probe being centred at window pixel (32, 32):
  positions_px = positions_A / dx_recon + margin_px (margin_px = 4), so the
  probe centre sits at object pixel positions_px + 32 and the cell origin at
  object pixel ``object_origin_px`` = margin_px + 32 = 36 (an integer).
* ``ground_truth_phase`` (H, W) is on the object-canvas grid itself:
  ground_truth_phase[i, j] is the phase at object pixel (i, j), i.e. at cell
  coordinates y = (i - 36) dx_recon, x = (j - 36) dx_recon (periodic with
  64 px).  It is sigma * (projected potential summed over the six slices),
  averaged over the frozen-phonon configurations, band-limited by abTEM's
  anti-aliasing and then exactly resampled to dx_recon by keeping the Fourier
  coefficients with |k| < 32 dk (a disc inside the recon-grid Nyquist square).
  ``ground_truth_phase_slices`` (6, H, W) holds the same per simulation slice.

Verification done by this script (results under ``checks`` in the JSON)
-----------------------------------------------------------------------
1. An independent NumPy multislice (own probe from the formula above, own
   anti-aliasing, own propagator and transmission; only the slice potentials
   come from abTEM) for two asymmetric probe positions of the first phonon
   configuration reproduces abTEM's full 320 x 320 patterns to ~1e-6
   relative; the same comparison with the pattern transposed, flipped or
   point-reflected fails by O(1), so axis order, FFT sign, transmission,
   propagator and probe/defocus signs and the shift direction are pinned.
2. abTEM's projected potential of the static crystal peaks at the Sr site,
   sim pixel (0, 0), symmetrically (no half-pixel offset of the potential
   grid), and the incident probe peaks at r_p / sampling.
3. A pypty-style forward model on the 64 x 64 window at dx_recon (probe from
   the formula, centred at (32, 32), shifted by the sub-pixel remainder of
   positions_px; object = exp(i ground_truth_phase_slices) on the canvas;
   multislice with dz = a/2) reproduces the noise-free abTEM patterns with a
   mean Pearson correlation close to 1; the same model with positions
   mirrored, transposed or off by one pixel correlates worse.
4. The mean pattern's centre of mass is at (32, 32) and its bright-field
   radius matches semiangle / detector_pixel_mrad.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

GENERATOR = "scripts/make_sample_data.py"
GENERATOR_VERSION = "1.0"

# ----------------------------------------------------------------- settings
A_LATTICE = 3.905             # Å, SrTiO3
CELLS_XY = 4                  # lateral repeats: cell = probe window
CELLS_Z = 3                   # thickness in unit cells
ENERGY_EV = 200e3
SEMIANGLE_MRAD = 21.4
DEFOCUS_A = 60.0              # abTEM sign; C10 = -DEFOCUS_A
N_DET = 64
OVERSAMPLING = 5              # simulation grid = OVERSAMPLING * N_DET per side
SCAN_SHAPE = (28, 28)         # (ny, nx)
SCAN_STEP_A = 0.4
SCAN_START_A = (0.0, 0.0)     # (y, x) of the first probe centre, cell frame
MARGIN_PX = 4
SIGMAS_A = {"Sr": 0.075, "Ti": 0.067, "O": 0.089}
PARAMETRIZATION = "lobato"
PROJECTION = "infinite"


def srtio3_cell(a=A_LATTICE):
    from ase.spacegroup import crystal

    return crystal(["Sr", "Ti", "O"], basis=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0)],
                   spacegroup=221, cellpar=[a, a, a, 90, 90, 90])


def specimen(a=A_LATTICE):
    atoms = srtio3_cell(a).repeat((CELLS_XY, CELLS_XY, CELLS_Z))
    atoms.positions[:, 2] += a / 4.0  # atomic planes at slice centres
    return atoms


def raster_positions_A():
    ny, nx = SCAN_SHAPE
    iy, ix = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")  # x fast after ravel
    pos = np.stack([SCAN_START_A[0] + iy.ravel() * SCAN_STEP_A,
                    SCAN_START_A[1] + ix.ravel() * SCAN_STEP_A], axis=1)
    return pos.astype(np.float64)


def kgrid(n, d):
    k = np.fft.fftfreq(n, d)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    return ky, kx


def probe_k(n, d, lam, semiangle_rad, c10, r_yx=(0.0, 0.0)):
    """A(k) exp(-i chi) exp(-2 pi i k.r) on an FFT-ordered (y, x) grid; soft edge one dk wide."""
    ky, kx = kgrid(n, d)
    k = np.sqrt(ky**2 + kx**2)
    dk = 1.0 / (n * d)
    aperture = np.clip((semiangle_rad / lam - k) / dk + 0.5, 0.0, 1.0)
    aperture[0, 0] = 1.0
    chi = np.pi * lam * (ky**2 + kx**2) * c10
    return aperture * np.exp(-1j * chi) * np.exp(-2j * np.pi * (ky * r_yx[0] + kx * r_yx[1]))


def antialias(n, d, cutoff=2.0 / 3.0, taper=0.01):
    """Own 2/3 band limit with a raised-cosine edge (same definition as abTEM's default)."""
    ky, kx = kgrid(n, d)
    k = np.sqrt(ky**2 + kx**2)
    kc, tw = cutoff / d / 2.0, taper / d
    out = np.where(k > kc - tw, 0.5 * (1 + np.cos(np.pi * (k - kc + tw) / tw)), 1.0)
    out[k > kc] = 0.0
    return out


def numpy_multislice_pattern(V_yx, sigma, lam, d, dz, semiangle_rad, c10, r_yx):
    """Independent reference: |fftshift(fft2(exit))|^2 of a probe at r_yx through slices V (S, y, x)."""
    n = V_yx.shape[-1]
    aa = antialias(n, d)
    ky, kx = kgrid(n, d)
    prop = np.exp(-1j * np.pi * lam * dz * (ky**2 + kx**2)) * aa
    psi_k = probe_k(n, d, lam, semiangle_rad, c10, r_yx)
    psi = np.fft.ifft2(psi_k)
    psi /= np.sqrt(np.sum(np.abs(np.fft.fft2(psi)) ** 2))
    for v in V_yx:
        t = np.fft.ifft2(np.fft.fft2(np.exp(1j * sigma * v)) * aa)
        psi = np.fft.ifft2(np.fft.fft2(psi * t) * prop)
    return np.abs(np.fft.fftshift(np.fft.fft2(psi))) ** 2


def crop_center(arr, n):
    """Central n x n block around index N//2 of the last two axes (zero frequency -> n//2)."""
    c0, c1 = arr.shape[-2] // 2, arr.shape[-1] // 2
    return arr[..., c0 - n // 2:c0 - n // 2 + n, c1 - n // 2:c1 - n // 2 + n]


def resample_to_recon(img_sim, n_rec):
    """Exact band-limited resampling of a periodic (y, x) image to n_rec px: keep |k| < n_rec/2 dk."""
    n_sim = img_sim.shape[-1]
    f = np.fft.fftshift(np.fft.fft2(img_sim), axes=(-2, -1))
    f = crop_center(f, n_rec)
    m = np.arange(n_rec) - n_rec // 2
    my, mx = np.meshgrid(m, m, indexing="ij")
    f = f * (my**2 + mx**2 < (n_rec / 2) ** 2)
    out = np.fft.ifft2(np.fft.ifftshift(f, axes=(-2, -1))) * (n_rec / n_sim) ** 2
    return out.real, float(np.abs(out.imag).max())


def tile_to_canvas(cell_img, origin_px, shape):
    """canvas[i, j] = cell_img[(i - origin) mod n, (j - origin) mod n] (last two axes)."""
    n = cell_img.shape[-1]
    iy = (np.arange(shape[0]) - origin_px) % n
    ix = (np.arange(shape[1]) - origin_px) % n
    return cell_img[..., iy[:, None], ix[None, :]]


def pypty_style_forward(phase_slices_canvas, positions_px, lam, dx, dz, semiangle_rad, c10, n=N_DET, cutoff=None):
    """pypty's far-field multislice on the n px window (the last slice is not propagated).

    ``cutoff``: band limit of the propagator as a fraction of Nyquist (pypty's
    ``damping_cutoff_multislice``), None = none.  Returns the central N_DET x N_DET
    block of the fftshifted pattern (the detector): (N, 64, 64).
    """
    ky, kx = kgrid(n, dx)
    p_hat = probe_k(n, dx, lam, semiangle_rad, c10, (n // 2 * dx, n // 2 * dx))  # centred at (n/2, n/2)
    prop = np.exp(-1j * np.pi * lam * dz * (ky**2 + kx**2))
    if cutoff is not None:
        f = np.sqrt(np.fft.fftfreq(n)[:, None] ** 2 + np.fft.fftfreq(n)[None, :] ** 2) / 0.5
        prop = prop * (f <= cutoff)
    obj = np.exp(1j * phase_slices_canvas)
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.fftfreq(n)[None, :]
    out = np.empty((len(positions_px), N_DET, N_DET))
    for p, (py, px) in enumerate(positions_px):
        cy, cx = int(np.rint(py)), int(np.rint(px))
        sy, sx = py - cy, px - cx
        psi = np.fft.ifft2(p_hat * np.exp(-2j * np.pi * (fy * sy + fx * sx)))
        for s in range(obj.shape[0]):
            psi = psi * obj[s, cy:cy + n, cx:cx + n]
            if s < obj.shape[0] - 1:
                psi = np.fft.ifft2(np.fft.fft2(psi) * prop)
        out[p] = crop_center(np.abs(np.fft.fftshift(np.fft.fft2(psi))) ** 2, N_DET)
    return out


def mean_pearson(a, b):
    a = a.reshape(len(a), -1)
    b = b.reshape(len(b), -1)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return float(np.mean(np.sum(a * b, 1) / np.sqrt(np.sum(a * a, 1) * np.sum(b * b, 1))))


def bright_field_stats(mean_pattern):
    """Centre of mass (y, x) relative to (N//2, N//2) and the half-maximum radius of the BF disk."""
    n = mean_pattern.shape[0]
    y, x = np.mgrid[:n, :n] - n // 2
    tot = mean_pattern.sum()
    com = (float((y * mean_pattern).sum() / tot), float((x * mean_pattern).sum() / tot))
    plateau = np.median(mean_pattern[y**2 + x**2 <= 25])
    radius = float(np.sqrt(np.count_nonzero(mean_pattern > 0.5 * plateau) / np.pi))
    return com, radius


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out-dir", default=os.path.join(here, "..", "pypty", "data"))
    ap.add_argument("--name", default="sample_srtio3")
    ap.add_argument("--configs", type=int, default=6, help="frozen-phonon configurations")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--dose", type=float, default=1e5, help="electrons per Å^2")
    ap.add_argument("--no-noise-free", action="store_true", help="do not store data_noise_free")
    ap.add_argument("--no-verify", action="store_true", help="skip the convention checks 1-3")
    args = ap.parse_args(argv)

    import abtem
    import ase
    import h5py
    from abtem.core.energy import energy2sigma, energy2wavelength

    t_start = time.perf_counter()
    timings = {}
    checks = {}
    abtem.config.set({"device": "cpu"})

    a = A_LATTICE
    L = CELLS_XY * a
    n_sim = OVERSAMPLING * N_DET
    d_sim = L / n_sim
    dx = L / N_DET
    dk = 1.0 / L
    lam = float(energy2wavelength(ENERGY_EV))
    sigma = float(energy2sigma(ENERGY_EV))
    alpha = SEMIANGLE_MRAD * 1e-3
    c10 = -DEFOCUS_A
    det_mrad = lam * dk * 1e3
    bf_radius_px = alpha / (lam * dk)
    sim_dz = a / 2.0
    thickness = CELLS_Z * a
    n_sim_slices = int(round(thickness / sim_dz))
    pos_A = raster_positions_A()
    n_pos = len(pos_A)
    pos_px = pos_A / dx + MARGIN_PX
    origin_px = MARGIN_PX + N_DET // 2
    e_per_pattern = round(args.dose * SCAN_STEP_A**2, 6)
    print(f"SrTiO3 [001] {CELLS_XY}x{CELLS_XY}x{CELLS_Z} cells, L = {L:.4f} Å, {ENERGY_EV / 1e3:.0f} kV "
          f"(lambda {lam:.5f} Å), alpha {SEMIANGLE_MRAD} mrad, C10 {c10} Å; dx_recon {dx:.5f} Å, "
          f"dk {dk:.5f} 1/Å = {det_mrad:.4f} mrad, BF radius {bf_radius_px:.3f} px; "
          f"{n_pos} positions, {args.configs} phonon configs", flush=True)

    atoms = specimen(a)
    probe = abtem.Probe(energy=ENERGY_EV, semiangle_cutoff=SEMIANGLE_MRAD, defocus=DEFOCUS_A, soft=True,
                        extent=(L, L), gpts=(n_sim, n_sim))
    scan = abtem.CustomScan(pos_A[:, ::-1].copy())  # abTEM positions are (x, y)

    def potential(at):
        return abtem.Potential(at, gpts=(n_sim, n_sim), slice_thickness=sim_dz, projection=PROJECTION,
                               parametrization=PARAMETRIZATION)

    # ---- check 2: potential and probe registration on the simulation grid
    t0 = time.perf_counter()
    static = potential(atoms).build(lazy=False)
    v_static = np.transpose(static.array, (0, 2, 1)).sum(0).astype(np.float64)  # (y, x)
    peak = np.unravel_index(np.argmax(v_static), v_static.shape)
    checks["static_potential_peak_px_yx"] = [int(peak[0]), int(peak[1])]
    checks["static_potential_symmetry_rel"] = float(max(
        abs(v_static[1, 0] - v_static[-1, 0]), abs(v_static[0, 1] - v_static[0, -1])) / v_static[0, 0])
    w_in = probe.build(scan=abtem.CustomScan(np.array([[1.9, 0.7]])), lazy=False)  # (x, y) Å
    inc = np.abs(w_in.array[0].T) ** 2  # (y, x)
    checks["incident_probe_peak_px_yx"] = [int(v) for v in np.unravel_index(np.argmax(inc), inc.shape)]
    checks["incident_probe_expected_px_yx"] = [0.7 / d_sim, 1.9 / d_sim]
    checks["incident_probe_sum_k"] = float(np.sum(np.abs(np.fft.fft2(w_in.array[0])) ** 2))
    dist = np.fft.fftfreq(n_sim, 1.0 / n_sim) * d_sim  # signed distance from pixel 0 (FFT order), Å
    r = np.hypot(dist[:, None], dist[None, :])
    inc0 = np.abs(np.fft.ifft2(probe_k(n_sim, d_sim, lam, alpha, c10))) ** 2
    checks["probe_intensity_outside_L_over_2"] = float(inc0[r > L / 2].sum() / inc0.sum())
    assert checks["static_potential_peak_px_yx"] == [0, 0], checks
    timings["checks_grid_s"] = round(time.perf_counter() - t0, 2)

    # ---- multislice over frozen-phonon configurations
    fp = abtem.FrozenPhonons(atoms, num_configs=args.configs, sigmas=SIGMAS_A, seed=args.seed)
    sum_patterns = np.zeros((n_pos, N_DET, N_DET))
    sum_full = np.zeros(n_pos)
    v_slices = np.zeros((n_sim_slices, n_sim, n_sim))
    rms_disp = {s: [] for s in SIGMAS_A}
    symbols = np.array(atoms.get_chemical_symbols())
    t0 = time.perf_counter()
    for ic, conf in enumerate(fp):
        disp = conf.positions - atoms.positions
        for s in SIGMAS_A:
            rms_disp[s].append(float(np.sqrt(np.mean(disp[symbols == s] ** 2))))
        pot = potential(conf).build(lazy=False)
        v_conf = np.transpose(pot.array, (0, 2, 1)).astype(np.float64)  # (S, y, x) V Å
        assert v_conf.shape[0] == n_sim_slices
        v_slices += v_conf
        waves = probe.multislice(pot, scan=scan, lazy=True)
        dps = waves.diffraction_patterns(max_angle=None, block_direct=False, fftshift=True).compute()
        full = np.transpose(dps.array, (0, 2, 1))  # (N, ky, kx), zero at n_sim//2
        assert full.shape == (n_pos, n_sim, n_sim)
        sum_full += full.sum(axis=(1, 2))
        sum_patterns += crop_center(full, N_DET)
        if ic == 0 and not args.no_verify:
            # ---- check 1: independent NumPy multislice
            errs, alt = [], {"transpose": [], "flip_ky": [], "point_reflection": []}
            for p in (n_pos // 2 + 3, n_pos - 2):
                ref = numpy_multislice_pattern(v_conf, sigma, lam, d_sim, sim_dz, alpha, c10, pos_A[p])
                ab = full[p]
                scale = ab.max()
                errs.append(float(np.abs(ref - ab).max() / scale))
                alt["transpose"].append(float(np.abs(ref - ab.T).max() / scale))
                alt["flip_ky"].append(float(np.abs(ref - np.roll(ab[::-1], 1, 0)).max() / scale))
                alt["point_reflection"].append(float(np.abs(ref - np.roll(ab[::-1, ::-1], 1, (0, 1))).max() / scale))
            checks["numpy_multislice_max_rel_err"] = max(errs)
            checks["numpy_multislice_wrong_convention_max_rel_err"] = {k: min(v) for k, v in alt.items()}
            print(f"check 1: independent NumPy multislice vs abTEM: max rel err {max(errs):.2e} "
                  f"(wrong conventions: {checks['numpy_multislice_wrong_convention_max_rel_err']})", flush=True)
            assert max(errs) < 1e-3, errs
        del full, dps, waves
        print(f"  phonon configuration {ic + 1}/{args.configs}: {time.perf_counter() - t0:.1f} s", flush=True)
    timings["multislice_s"] = round(time.perf_counter() - t0, 2)
    n_cfg = args.configs
    noise_free = sum_patterns / n_cfg
    v_slices /= n_cfg
    checks["sum_full_grid_mean"] = float(np.mean(sum_full / n_cfg))
    checks["sum_detector_mean"] = float(noise_free.sum(axis=(1, 2)).mean())
    checks["sum_detector_min"] = float(noise_free.sum(axis=(1, 2)).min())
    checks["fraction_outside_detector_mean"] = float(1 - np.mean(noise_free.sum(axis=(1, 2)) / (sum_full / n_cfg)))
    checks["rms_displacement_A_per_axis_measured"] = {s: float(np.mean(v)) for s, v in rms_disp.items()}

    # ---- ground truth on the reconstruction grid, tiled onto the object canvas
    t0 = time.perf_counter()
    # anti-aliasing as in abTEM's transmission (2/3 band limit of the simulation grid), applied to the phase
    aa = antialias(n_sim, d_sim)
    phase_slices_sim = np.fft.ifft2(np.fft.fft2(sigma * v_slices) * aa).real
    phase_slices_rec, imag_max = resample_to_recon(phase_slices_sim, N_DET)
    checks["gt_resample_max_imag"] = imag_max
    need = np.floor(pos_px.max(axis=0) + 0.5).astype(int) + N_DET  # pypty's canvas for these positions
    canvas_shape = (int(need[0] + MARGIN_PX), int(need[1] + MARGIN_PX))
    gt_slices = tile_to_canvas(phase_slices_rec, origin_px, canvas_shape)
    gt = gt_slices.sum(axis=0)
    checks["gt_phase_sim_grid_max_rad"] = float(phase_slices_sim.sum(0).max())
    checks["gt_phase_max_rad"] = float(gt.max())
    checks["gt_phase_min_rad"] = float(gt.min())
    timings["ground_truth_s"] = round(time.perf_counter() - t0, 2)

    # ---- check 3: pypty-style forward model on the reconstruction grid
    if not args.no_verify:
        t0 = time.perf_counter()
        sel = np.arange(0, n_pos, 7)
        model = pypty_style_forward(gt_slices, pos_px[sel], lam, dx, sim_dz, alpha, c10)
        ref = noise_free[sel]
        checks["recon_grid_model_pearson"] = mean_pearson(model, ref)
        def rel_l2(m):
            m = m / m.sum((1, 2), keepdims=True) * ref.sum((1, 2), keepdims=True)
            return float(np.linalg.norm(m - ref) / np.linalg.norm(ref))

        checks["recon_grid_model_rel_l2"] = rel_l2(model)
        wrong, wrong_l2 = {}, {}
        ctr = pos_px[sel] - pos_px[0]
        variants = {"mirror_y": np.stack([pos_px[0, 0] + ctr[:, 0].max() - ctr[:, 0], pos_px[sel, 1]], 1),
                    "transpose_yx": pos_px[sel][:, ::-1],
                    "plus_1px_y": pos_px[sel] + [1, 0], "minus_1px_x": pos_px[sel] - [0, 1]}
        for name, pv in variants.items():
            m = pypty_style_forward(gt_slices, pv, lam, dx, sim_dz, alpha, c10)
            wrong[name], wrong_l2[name] = mean_pearson(m, ref), rel_l2(m)
        checks["recon_grid_model_pearson_wrong_positions"] = wrong
        checks["recon_grid_model_rel_l2_wrong_positions"] = wrong_l2
        # single slice (projected phase object), as a 1-slice reconstruction sees it
        one = pypty_style_forward(gt[None], pos_px[sel], lam, dx, sim_dz, alpha, c10 + (thickness - sim_dz) / 2)
        checks["recon_grid_single_slice_pearson"] = mean_pearson(one, ref)
        checks["recon_grid_single_slice_rel_l2"] = rel_l2(one)
        print(f"check 3: pypty-style model vs abTEM (noise-free): Pearson "
              f"{checks['recon_grid_model_pearson']:.5f} (6 slices), {checks['recon_grid_single_slice_pearson']:.5f}"
              f" (1 slice); wrong positions: { {k: round(v, 4) for k, v in wrong.items()} }", flush=True)
        assert checks["recon_grid_model_pearson"] > max(wrong.values())
        timings["check_recon_grid_s"] = round(time.perf_counter() - t0, 2)

    # ---- noise
    rng = np.random.default_rng(args.seed)
    counts = rng.poisson(e_per_pattern * noise_free)
    assert counts.max() < 65535
    counts = counts.astype(np.uint16)
    mean_pattern = counts.mean(axis=0).astype(np.float64)
    com, radius = bright_field_stats(mean_pattern)
    checks.update(mean_pattern_com_px_yx=list(com), bf_radius_px_measured=radius,
                  bf_radius_px_nominal=bf_radius_px, counts_per_pattern_mean=float(counts.sum((1, 2)).mean()),
                  max_count=int(counts.max()), zero_fraction=float(np.mean(counts == 0)))

    # ---- write
    t0 = time.perf_counter()
    conventions = (
        "data (N, ky, kx) counts, pattern p = iy*n_scan_x + ix (x fast); zero frequency at pixel "
        "(N_det//2, N_det//2), k = (index - N_det//2)*dk; ky along rows, kx along columns, parallel to "
        "real-space y, x (no flip/transpose/rotation); pattern = |fftshift(fft2(exit_wave))|^2 with numpy's "
        "forward sign exp(-2 pi i k.r); transmission t = exp(+i sigma V); Fresnel propagator "
        "exp(-i pi lambda dz k^2); probe(k) = A(k) exp(-i chi), chi = (2 pi/lambda)(1/2 alpha^2 C10), "
        "C10 = -(abTEM defocus), probe at r_p: probe(k) exp(-2 pi i k.r_p); positions_A (y, x) probe centres "
        "in the cell frame; positions_px (y, x) = top-left corner of the N_det x N_det probe window on the "
        "object canvas in px of pixel_size_A, probe centred at window pixel (N_det//2, N_det//2): "
        "positions_px = positions_A/pixel_size_A + margin_px, cell origin at object pixel object_origin_px; "
        "ground_truth_phase[i, j] = phase at object pixel (i, j) = cell coordinates "
        "((i - object_origin_px)*pixel_size_A, (j - object_origin_px)*pixel_size_A), periodic with N_det px; "
        "counts = Poisson(electrons_per_pattern * I), I normalised to sum_k |psi_k|^2 = 1 for the incident probe "
        "on the full simulation grid")
    meta = {
        "name": args.name,
        "specimen": (f"SrTiO3 (cubic perovskite, Pm-3m, a = {a} Å) viewed along [001]; periodic cell "
                     f"{CELLS_XY} x {CELLS_XY} x {CELLS_Z} unit cells; SrO/TiO2 planes at slice centres"),
        "specimen_formula": atoms.get_chemical_formula(),
        "lattice_constant_A": a,
        "thickness_A": thickness,
        "simulation_cell_A": [L, L, thickness],
        "acc_voltage_kV": ENERGY_EV / 1e3,
        "wavelength_A": lam,
        "sigma_rad_per_V_A": sigma,
        "semiangle_mrad": SEMIANGLE_MRAD,
        "defocus_abtem_A": DEFOCUS_A,
        "C10_A": c10,
        "defocus_convention": ("abTEM defocus = -C10 (Krivanek); C10 < 0: under-focus, crossover "
                               f"{DEFOCUS_A} Å below the entrance plane of the cell (z = 0), where the first "
                               "slice's transmission is applied"),
        "other_aberrations": "none",
        "aperture": "abTEM soft aperture: linear edge one reciprocal pixel (dk) wide centred on the cut-off",
        "n_det": N_DET,
        "detector_shape_yx": [N_DET, N_DET],
        "detector_pixel_mrad": det_mrad,
        "detector_pixel_inv_A": dk,
        "detector_max_angle_mrad": N_DET // 2 * det_mrad,
        "bright_field_radius_px": bf_radius_px,
        "pixel_size_A": dx,
        "probe_window_A": L,
        "scan_shape": list(SCAN_SHAPE),
        "scan_step_A": SCAN_STEP_A,
        "scan_start_A": list(SCAN_START_A),
        "scan_rotation_deg": 0.0,
        "margin_px": MARGIN_PX,
        "object_origin_px": origin_px,
        "canvas_shape_gt": list(canvas_shape),
        "dose": args.dose,
        "dose_unit": "e/Å^2",
        "electrons_per_pattern": e_per_pattern,
        "seed": args.seed,
        "random_streams": ("frozen phonons: abtem.FrozenPhonons(seed=seed); Poisson noise: "
                           "numpy.random.default_rng(seed)"),
        "frozen_phonon_configs": n_cfg,
        "frozen_phonon_sigmas_A_per_axis": SIGMAS_A,
        "n_slices_simulation": n_sim_slices,
        "sim_slice_thickness_A": sim_dz,
        "abtem_transmission_planes_z_A": [i * sim_dz for i in range(n_sim_slices)],
        "atomic_planes_z_A": [(i + 0.5) * sim_dz for i in range(n_sim_slices)],
        "simulation_gpts": [n_sim, n_sim],
        "simulation_sampling_A": d_sim,
        "parametrization": PARAMETRIZATION,
        "projection": PROJECTION,
        "ground_truth": ("ground_truth_phase = sigma * sum over slices of the projected potential, mean over "
                         "the frozen-phonon configurations, abTEM 2/3 anti-aliasing band limit, resampled to "
                         "pixel_size_A by keeping Fourier coefficients |k| < N_det/2 dk, tiled onto the object "
                         "canvas (ground_truth_phase[i, j] <-> object pixel (i, j))"),
        "conventions": conventions,
        "abtem_version": abtem.__version__,
        "ase_version": ase.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "command": " ".join([os.path.basename(sys.argv[0])] + (sys.argv[1:] if argv is None else list(argv))),
        "data_shape": list(counts.shape),
        "data_dtype": "uint16",
    }
    os.makedirs(args.out_dir, exist_ok=True)
    h5_path = os.path.join(args.out_dir, args.name + ".h5")
    json_path = os.path.join(args.out_dir, args.name + ".json")
    gz = dict(compression="gzip", compression_opts=9, shuffle=True)
    with h5py.File(h5_path, "w") as f:
        d = f.create_dataset("data", data=counts, chunks=(64, N_DET, N_DET), **gz)
        d.attrs["units"] = "counts"
        if not args.no_noise_free:
            nf = noise_free.astype(np.float32)
            nf = (nf.view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32)  # keep 10 mantissa bits
            d = f.create_dataset("data_noise_free", data=nf, chunks=(64, N_DET, N_DET), **gz)
            d.attrs["units"] = ("fraction of the incident electrons per pixel (multiply by electrons_per_pattern "
                                "for expected counts); float32 with the mantissa truncated to 10 bits "
                                "(relative precision 1e-3) for compression")
        d = f.create_dataset("positions_px", data=pos_px.astype(np.float64))
        d.attrs["description"] = "(y, x) top-left corner of the probe window on the object canvas, px"
        d = f.create_dataset("positions_A", data=pos_A)
        d.attrs["description"] = "(y, x) probe centres in the simulation-cell frame, Å"
        d = f.create_dataset("ground_truth_phase", data=gt.astype(np.float32), **gz)
        d.attrs["description"] = meta["ground_truth"]
        d.attrs["pixel_size_A"] = dx
        d.attrs["object_origin_px"] = origin_px
        d.attrs["pixel_to_A"] = (f"ground_truth_phase[i, j]: object pixel (i, j), cell coordinates "
                                 f"y = (i - {origin_px}) * {dx}, x = (j - {origin_px}) * {dx} Å")
        d = f.create_dataset("ground_truth_phase_slices", data=gt_slices.astype(np.float32), **gz)
        d.attrs["description"] = "per simulation slice (dz = sim_slice_thickness_A), same grid as ground_truth_phase"
        for k, v in meta.items():
            if isinstance(v, dict):
                v = json.dumps(v)
            f.attrs[k] = v
        f.attrs["checks"] = json.dumps(checks)
    timings["write_s"] = round(time.perf_counter() - t0, 2)
    timings["total_s"] = round(time.perf_counter() - t_start, 2)
    meta["file_size_bytes"] = os.path.getsize(h5_path)
    meta["checks"] = checks
    meta["timings_s"] = timings
    with open(json_path, "w") as fh:
        json.dump(meta, fh, indent=1)
        fh.write("\n")
    print(json.dumps({"h5": h5_path, "size_MB": round(meta["file_size_bytes"] / 1e6, 3), "checks": checks,
                      "timings_s": timings}, indent=1))


if __name__ == "__main__":
    main()
