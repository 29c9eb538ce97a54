#!/usr/bin/env python
"""Simulate a depth test specimen with abTEM: two MoS2 monolayers separated by a vacuum gap.

Writes one ``.h5`` (diffraction counts, noise-free intensities, scan positions,
per-layer and per-slice ground-truth phase on the reconstruction grid, the
metadata as attributes) and the same metadata as ``<name>.json``.  Needs the
optional extra ``sample`` (``pip install abtem ase``; made with abTEM 1.0.11).
It is the specimen of ``benchmarks/depth_demo.py`` (issue 10: do the
missing-wedge / kz / z-blur options reduce the cross-talk between layers?).

Usage::

    python scripts/simulate_bilayer.py [--out /work/depth_data/bilayer_mos2.h5] [--configs 2]
                                       [--gap-slices 6] [--shift 0.5 0.25] [--dose 1e6] [--seed 3]

Run time: about 3 minutes on a 2-core CPU with the defaults.

Specimen
--------
Two 2H-MoS2 monolayers (one S-Mo-S trilayer each, a = 3.19 Å, S-S height
3.19 Å), beam along c, in the square periodic cell of
``shared/data/mos2_80kV``: 7 x 4 orthogonal a x sqrt(3) a cells, with a uniaxial
strain of +1.036 % along y so that the cell is 22.33 x 22.33 Å (detector pixels
square).  The second (lower) layer is shifted laterally by ``--shift`` =
(0.5, 0.25) of the orthogonal cell (a, sqrt(3) a strained), i.e. (1.595, 1.396) Å
in (x, y): for this shift the projected phases of the two layers, band-limited
to the reconstruction's 2/3 Nyquist, are nearly uncorrelated (Pearson
r ~ +0.03; stored as ``truth_layer_correlation``), so a correlation of a
reconstructed layer with the *other* layer's truth measures cross-talk.  A
shift by a bond vector (0, 1/3) would give r ~ +0.23 and (1/3, 0) r ~ -0.27.

Depth layout (z down the beam from the entrance plane of the cell, z = 0):
simulation slices of ``dz_sim`` = 1.595 Å (half the S-S height), grouped in
"reconstruction slices" of ``--sub`` = 3 simulation slices (4.785 Å): ``--vacuum-slices``
(1) empty reconstruction slice, layer 1 (its S / Mo / S planes at the centres
of the three simulation slices of reconstruction slice 1), ``--gap-slices`` (6)
empty reconstruction slices, layer 2, and ``--vacuum-slices`` empty ones.  With
the defaults: 10 reconstruction slices, 30 simulation slices, 47.85 Å; layer 1
at z = 5.58-8.77 Å, layer 2 at z = 39.08-42.27 Å (planes); the centre-to-centre
distance is 33.5 Å and the vacuum gap between the facing S planes 30.3 Å.  The
empty slices above and below keep the two layers apart in the periodic-in-z
3-D FFT used by the missing-wedge penalty and the kz filter.

Microscope: 80 kV, semi-angle 25 mrad (abTEM soft aperture, one reciprocal pixel
wide), defocus in abTEM's sign (``--defocus``; default: the crossover in the
middle of the cell, z = thickness/2 = 23.9 Å below the entrance plane; C10 = -defocus).
No other aberrations, no partial coherence.

Scan: 32 x 32 raster, step 0.4 Å, x fast (pattern p = iy*32 + ix), starting at
the cell origin (a Mo column of layer 1), exact positions (no jitter).
Detector 64 x 64 px.  Dose ``--dose`` e/Å^2 (default 1e6: 160000 electrons per
pattern); counts = Poisson(electrons_per_pattern * I_noise_free) with
``numpy.random.default_rng([seed, 2])``.  Frozen phonons: ``--configs``
configurations (default 2; 0 = the static lattice) of Gaussian displacements of
0.06 Å rms per axis (``abtem.FrozenPhonons(seed=seed)``), intensities averaged.

Grid and conventions: as ``scripts/make_sample_data.py`` (read its docstring):
the simulation cell *is* the probe window, dk = 1/L (1.870 mrad at 80 kV), the
simulation grid is 320 x 320 (0.0698 Å), every stored pattern is the central
64 x 64 block of the fftshifted abTEM pattern (zero frequency at pixel (32, 32);
the detector reaches 59.8 mrad).  The reconstruction is meant to run with
pypty's ``data_pad`` = ``--data-pad`` (default 16, a quarter of the pattern):
window n = 64 + 2 pad = 96 px, dx_recon = L/n = 0.23260 Å.  Why: pypty
band-limits its Fresnel propagator to 2/3 of the window's Nyquist
(``damping_cutoff_multislice``); without padding (dx = L/64) that is 40 mrad,
so scattering to 40-60 mrad, which the detector records, could only come from
the last slice, and a multislice reconstruction piles structure into the last
slice (``model_rel_l2_recon_slices_propagator_2_3`` in the checks shows the
cost; with the 96 px window the band limit sits at the detector edge).
``positions_px`` are pypty's positions: the top-left corner of the n x n probe
window on the object canvas, probe centre at window pixel (n//2, n//2),
positions_px = positions_A / dx_recon + margin_px (4); the cell origin sits at
object pixel ``object_origin_px`` = margin_px + n//2.  Ground truths are on that canvas:
``truth_phase_layers`` (2, H, W) = sigma * projected potential of each layer
(summed over its simulation slices, mean over the phonon configurations, abTEM's
2/3 anti-aliasing, resampled exactly to dx_recon by keeping |k| < (n/2) dk),
``truth_phase_recon_slices`` (n_recon_slices, H, W) the same per reconstruction
slice, ``truth_phase_sim_slices`` (n_sim_slices, H, W) per simulation slice.
The layers' Mo planes sit dz_rec/2 below the entrance of their
reconstruction slice; pypty applies a slice's transmission at its entrance, so
the reconstruction's first plane is put at z = dz_rec/2 (``recon_first_plane_z_A``)
and its probe is ``pypty.probe.make_probe(..., {"C10": C10_recon_A})`` with
C10_recon_A = C10_A + dz_rec/2 (defocus measured from that plane, as
``scripts/reconstruct_mos2.py`` measures it from the first atomic plane); then
every layer lies on the transmission plane of its slice.

Checks (``checks`` in the metadata): a pypty-style far-field multislice on the
n x n window at dx_recon (patterns cropped to the 64 x 64 detector), with the simulation-slice truth (dz_sim) and with
the reconstruction-slice truth (dz_recon, C10_recon_A), against the noise-free abTEM
patterns (mean Pearson correlation and relative L2 error), the same with
pypty's 2/3 propagator band limit, and the
same with the two layers swapped in depth (must be worse: the data carry the
depth order).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

# the sample script's helpers (same band limit, forward model, resampling and tiling definitions); scripts/ is on sys.path
from make_sample_data import (antialias, crop_center, mean_pearson, pypty_style_forward, resample_to_recon,
                              tile_to_canvas)

GENERATOR = "scripts/simulate_bilayer.py"
GENERATOR_VERSION = "1.0"

A_MOS2 = 3.19            # Å
SS_HEIGHT = 3.19         # Å, S-S distance in one trilayer
CELLS = (7, 4)           # orthogonal a x sqrt(3) a cells along (x, y)
N_DET = 64
OVERSAMPLING = 5
MARGIN_PX = 4
PARAMETRIZATION = "lobato"
PROJECTION = "infinite"


def cell_extent():
    """(L, y strain factor): the square cell of the shared MoS2 dataset."""
    b = np.sqrt(3.0) * A_MOS2
    L = CELLS[0] * A_MOS2
    return L, L / (CELLS[1] * b)


def mos2_layer(z_planes, shift_frac=(0.0, 0.0), thickness=10.0):
    """One 2H-MoS2 trilayer (ase.Atoms) in the square cell; planes S/Mo/S at ``z_planes`` (Å).

    ``shift_frac`` = (fx, fy): lateral shift in fractions of the orthogonal cell (a, sqrt(3) a strained).
    """
    import ase

    L, sy = cell_extent()
    a, b = A_MOS2, np.sqrt(3.0) * A_MOS2 * sy
    pos, sym = [], []
    for i in range(CELLS[0]):
        for j in range(CELLS[1]):
            for fx, fy in ((0.0, 0.0), (0.5, 0.5)):
                pos.append([(i + fx) * a, (j + fy) * b, z_planes[1]])
                sym.append("Mo")
            for fx, fy in ((0.5, 1.0 / 6.0), (0.0, 2.0 / 3.0)):
                for z in (z_planes[0], z_planes[2]):
                    pos.append([(i + fx) * a, (j + fy) * b, z])
                    sym.append("S")
    atoms = ase.Atoms(sym, positions=pos, cell=[L, L, thickness], pbc=True)
    atoms.positions[:, 0] += shift_frac[0] * a
    atoms.positions[:, 1] += shift_frac[1] * b
    atoms.wrap()
    return atoms


def rel_l2(model, ref):
    m = model / model.sum((1, 2), keepdims=True) * ref.sum((1, 2), keepdims=True)
    return float(np.linalg.norm(m - ref) / np.linalg.norm(ref))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/work/depth_data/bilayer_mos2.h5", help="output .h5 (a .json beside it)")
    ap.add_argument("--energy", type=float, default=80e3, help="eV")
    ap.add_argument("--semiangle", type=float, default=25.0, help="mrad")
    ap.add_argument("--defocus", type=float, default=None,
                    help="abTEM sign (Å below the entrance plane); default: middle of the cell")
    ap.add_argument("--sub", type=int, default=3, help="simulation slices (1.595 Å) per reconstruction slice")
    ap.add_argument("--vacuum-slices", type=int, default=1, help="empty reconstruction slices above and below")
    ap.add_argument("--gap-slices", type=int, default=6, help="empty reconstruction slices between the layers")
    ap.add_argument("--shift", type=float, nargs=2, default=(0.5, 0.25),
                    help="lateral shift of layer 2, fractions (x, y) of the orthogonal cell")
    ap.add_argument("--scan", type=int, nargs=2, default=(32, 32), help="(ny, nx)")
    ap.add_argument("--step", type=float, default=0.4, help="scan step, Å")
    ap.add_argument("--configs", type=int, default=2, help="frozen-phonon configurations (0 = static)")
    ap.add_argument("--sigma-phonon", type=float, default=0.06, help="rms displacement per axis, Å")
    ap.add_argument("--dose", type=float, default=1e6, help="e/Å^2")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--data-pad", type=int, default=16,
                    help="pypty's data_pad for which positions and truths are written (window 64 + 2 pad)")
    ap.add_argument("--no-verify", action="store_true")
    args = ap.parse_args(argv)

    import abtem
    import ase
    import h5py
    from abtem.core.energy import energy2sigma, energy2wavelength

    t_start = time.perf_counter()
    abtem.config.set({"device": "cpu"})
    checks, timings = {}, {}

    L, strain_y = cell_extent()
    n_sim = OVERSAMPLING * N_DET
    d_sim = L / n_sim
    n_win = N_DET + 2 * args.data_pad  # pypty's probe window with data_pad
    dx = L / n_win
    dk = 1.0 / L
    lam = float(energy2wavelength(args.energy))
    sigma = float(energy2sigma(args.energy))
    alpha = args.semiangle * 1e-3
    dz_sim = SS_HEIGHT / 2.0
    sub = args.sub
    if sub < 3:
        raise SystemExit("--sub must be >= 3 (a layer spans three simulation slices)")
    n_rec = 2 * args.vacuum_slices + 2 + args.gap_slices
    n_sim_slices = n_rec * sub
    dz_rec = sub * dz_sim
    thickness = n_sim_slices * dz_sim
    layer_rec_slice = (args.vacuum_slices, args.vacuum_slices + 1 + args.gap_slices)
    layer_sim_slices = [list(range(s * sub, s * sub + 3)) for s in layer_rec_slice]
    z_planes = [[(k + 0.5) * dz_sim for k in sl] for sl in layer_sim_slices]
    defocus = thickness / 2.0 if args.defocus is None else float(args.defocus)
    c10 = -defocus
    # pypty applies slice s's transmission at the entrance of the slice; the layers' centres (Mo planes)
    # sit dz_rec/2 below the entrance of their reconstruction slice, so a reconstruction whose first
    # plane is at z = dz_rec/2 puts every layer exactly on a transmission plane: the probe's C10 is then
    # measured from there (as scripts/reconstruct_mos2.py does with the first atomic plane).
    recon_z0 = dz_rec / 2.0
    c10_recon = c10 + recon_z0

    atoms1 = mos2_layer(z_planes[0], (0.0, 0.0), thickness)
    atoms2 = mos2_layer(z_planes[1], tuple(args.shift), thickness)
    atoms = atoms1 + atoms2
    atoms.set_cell([L, L, thickness])
    atoms.pbc = True
    labels = np.array([0] * len(atoms1) + [1] * len(atoms2))

    ny, nx = args.scan
    iy, ix = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    pos_A = np.stack([iy.ravel() * args.step, ix.ravel() * args.step], axis=1).astype(np.float64)
    n_pos = len(pos_A)
    pos_px = pos_A / dx + MARGIN_PX
    origin_px = MARGIN_PX + n_win // 2
    e_per_pattern = args.dose * args.step**2
    print(f"2 x MoS2, gap {args.gap_slices} x {dz_rec:.3f} Å, shift {tuple(args.shift)}; {n_rec} recon slices "
          f"({n_sim_slices} sim slices of {dz_sim} Å, {thickness:.2f} Å); {args.energy / 1e3:g} kV, "
          f"{args.semiangle} mrad, defocus {defocus:.2f} Å; {n_pos} positions, {args.configs} phonon configs",
          flush=True)

    probe = abtem.Probe(energy=args.energy, semiangle_cutoff=args.semiangle, defocus=defocus, soft=True,
                        extent=(L, L), gpts=(n_sim, n_sim))
    scan = abtem.CustomScan(pos_A[:, ::-1].copy())  # abTEM positions are (x, y)

    def potential(at):
        return abtem.Potential(at, gpts=(n_sim, n_sim), slice_thickness=dz_sim, projection=PROJECTION,
                               parametrization=PARAMETRIZATION)

    if args.configs > 0:
        configs = list(abtem.FrozenPhonons(atoms, num_configs=args.configs, sigmas=args.sigma_phonon,
                                           seed=args.seed))
    else:
        configs = [atoms]
    t0 = time.perf_counter()
    sum_patterns = np.zeros((n_pos, N_DET, N_DET))
    sum_full = np.zeros(n_pos)
    v_slices = np.zeros((n_sim_slices, n_sim, n_sim))
    for ic, conf in enumerate(configs):
        pot = potential(conf).build(lazy=False)
        v_conf = np.transpose(pot.array, (0, 2, 1)).astype(np.float64)  # (S, y, x), V Å
        assert v_conf.shape[0] == n_sim_slices, v_conf.shape
        v_slices += v_conf
        dps = probe.multislice(pot, scan=scan, lazy=True).diffraction_patterns(
            max_angle=None, block_direct=False, fftshift=True).compute()
        full = np.transpose(dps.array, (0, 2, 1))
        sum_full += full.sum(axis=(1, 2))
        sum_patterns += crop_center(full, N_DET)
        del full, dps
        print(f"  configuration {ic + 1}/{len(configs)}: {time.perf_counter() - t0:.1f} s", flush=True)
    timings["multislice_s"] = round(time.perf_counter() - t0, 2)
    nc = len(configs)
    noise_free = sum_patterns / nc
    v_slices /= nc
    checks["fraction_outside_detector_mean"] = float(1 - np.mean(noise_free.sum(axis=(1, 2)) / (sum_full / nc)))
    # empty slices must be empty (atoms in their slices)
    vmax = np.abs(v_slices).max(axis=(1, 2))
    layer_set = set(layer_sim_slices[0]) | set(layer_sim_slices[1])
    checks["max_potential_outside_layers_rel"] = float(max(vmax[k] for k in range(n_sim_slices)
                                                           if k not in layer_set) / vmax.max())

    # ---- ground truth on the reconstruction grid
    t0 = time.perf_counter()
    aa = antialias(n_sim, d_sim)
    phase_sim = np.fft.ifft2(np.fft.fft2(sigma * v_slices) * aa).real
    phase_sim_rec = resample_to_recon(phase_sim, n_win)[0]  # (S_sim, 64, 64)
    need = np.floor(pos_px.max(axis=0) + 0.5).astype(int) + n_win
    canvas_shape = (int(need[0] + MARGIN_PX), int(need[1] + MARGIN_PX))
    gt_sim = tile_to_canvas(phase_sim_rec, origin_px, canvas_shape)
    gt_rec = gt_sim.reshape(n_rec, sub, *canvas_shape).sum(axis=1)
    gt_layers = np.stack([gt_sim[sl].sum(axis=0) for sl in layer_sim_slices])
    # correlation of the two layers' truths over the scanned field (probe centres)
    lo = np.floor(pos_px.min(axis=0) + n_win // 2).astype(int)
    hi = np.ceil(pos_px.max(axis=0) + n_win // 2).astype(int) + 1
    a_, b_ = (g[lo[0]:hi[0], lo[1]:hi[1]].ravel() for g in gt_layers)
    checks["truth_layer_correlation"] = float(np.corrcoef(a_, b_)[0, 1])
    checks["truth_layer_phase_max_rad"] = [float(g.max()) for g in gt_layers]
    timings["ground_truth_s"] = round(time.perf_counter() - t0, 2)

    # ---- check: pypty-style model on the reconstruction grid
    if not args.no_verify:
        t0 = time.perf_counter()
        sel = np.arange(0, n_pos, 17)
        ref = noise_free[sel]
        m_sim = pypty_style_forward(gt_sim, pos_px[sel], lam, dx, dz_sim, alpha, c10, n_win)
        m_rec = pypty_style_forward(gt_rec, pos_px[sel], lam, dx, dz_rec, alpha, c10_recon, n_win)
        m_bl = pypty_style_forward(gt_rec, pos_px[sel], lam, dx, dz_rec, alpha, c10_recon, n_win, 2.0 / 3.0)
        swapped = gt_rec.copy()
        swapped[list(layer_rec_slice)] = swapped[list(layer_rec_slice[::-1])]
        m_swap = pypty_style_forward(swapped, pos_px[sel], lam, dx, dz_rec, alpha, c10_recon, n_win)
        m_one = pypty_style_forward(gt_rec.sum(0)[None], pos_px[sel], lam, dx, dz_rec, alpha,
                                    c10 + thickness / 2.0, n_win)
        for name, m in (("sim_slices", m_sim), ("recon_slices", m_rec), ("recon_slices_propagator_2_3", m_bl),
                        ("recon_slices_layers_swapped", m_swap),
                        ("single_slice_mid", m_one)):
            checks[f"model_pearson_{name}"] = mean_pearson(m, ref)
            checks[f"model_rel_l2_{name}"] = rel_l2(m, ref)
        print("check: pypty-style model vs abTEM (noise-free): " + ", ".join(
            f"{k[len('model_'):]} {v:.5f}" for k, v in checks.items() if k.startswith("model_")), flush=True)
        assert checks["model_rel_l2_recon_slices"] < checks["model_rel_l2_recon_slices_layers_swapped"]
        timings["check_s"] = round(time.perf_counter() - t0, 2)

    rng = np.random.default_rng([args.seed, 2])
    counts = rng.poisson(e_per_pattern * noise_free).astype(np.float32)
    checks["counts_per_pattern_mean"] = float(counts.sum((1, 2)).mean())

    meta = {
        "name": os.path.splitext(os.path.basename(args.out))[0],
        "specimen": ("two 2H-MoS2 monolayers (a = 3.19 Å, S-S 3.19 Å) in the square 7 x 4 orthogonal-cell "
                     f"supercell (+{(strain_y - 1) * 100:.3f} % strain along y), separated by a vacuum gap; "
                     f"layer 2 shifted laterally by {list(args.shift)} of the orthogonal cell"),
        "specimen_formula": atoms.get_chemical_formula(),
        "layer_shift_frac_xy": list(args.shift),
        "layer_shift_A_xy": [args.shift[0] * A_MOS2, args.shift[1] * np.sqrt(3) * A_MOS2 * strain_y],
        "energy_eV": args.energy, "wavelength_A": lam, "sigma_rad_per_V_A": sigma,
        "semiangle_mrad": args.semiangle, "defocus_abtem_A": defocus, "C10_A": c10,
        "defocus_convention": ("abTEM defocus = -C10; the crossover lies `defocus` below the entrance plane z = 0 "
                               "of the cell"),
        "recon_first_plane_z_A": recon_z0,
        "C10_recon_A": c10_recon,
        "recon_convention": ("pypty applies the transmission of slice s at z = recon_first_plane_z_A + s * dz_recon_A; "
                             "with the probe make_probe(..., {'C10': C10_recon_A}) the Mo plane of each layer lies "
                             "on the transmission plane of its reconstruction slice (layer_recon_slice)"),
        "n_det": N_DET, "data_pad": args.data_pad, "n_window": n_win, "detector_pixel_mrad": lam * dk * 1e3, "detector_pixel_inv_A": dk,
        "bright_field_radius_px": alpha / (lam * dk), "pixel_size_A": dx, "probe_window_A": L,
        "scan_shape": [ny, nx], "scan_step_A": args.step, "scan_rotation_deg": 0.0,
        "margin_px": MARGIN_PX, "object_origin_px": origin_px, "canvas_shape": list(canvas_shape),
        "dose_e_per_A2": args.dose, "electrons_per_pattern": e_per_pattern, "seed": args.seed,
        "random_streams": "phonons: abtem.FrozenPhonons(seed=seed); Poisson: default_rng([seed, 2])",
        "frozen_phonon_configs": args.configs, "phonon_sigma_A_per_axis": args.sigma_phonon,
        "dz_sim_A": dz_sim, "n_sim_slices": n_sim_slices, "sim_slices_per_recon_slice": sub,
        "dz_recon_A": dz_rec, "n_recon_slices": n_rec, "thickness_A": thickness,
        "layer_recon_slice": list(layer_rec_slice), "layer_sim_slices": layer_sim_slices,
        "layer_atomic_planes_z_A": z_planes,
        "layer_centre_distance_A": z_planes[1][1] - z_planes[0][1],
        "vacuum_gap_between_S_planes_A": z_planes[1][0] - z_planes[0][2],
        "simulation_gpts": [n_sim, n_sim], "simulation_sampling_A": d_sim,
        "parametrization": PARAMETRIZATION, "projection": PROJECTION,
        "conventions": ("as scripts/make_sample_data.py: data (N, ky, kx), p = iy*nx + ix, zero frequency at "
                        "(32, 32), no flip; positions_px = top-left window corners on the object canvas "
                        "(= positions_A / pixel_size_A + margin_px), cell origin at object pixel object_origin_px; "
                        "truth arrays are on that canvas (truth[i, j] <-> object pixel (i, j))"),
        "truth": ("truth_phase_layers (2, H, W): sigma * projected potential of layer 1 (upper) and layer 2 "
                  "(lower), mean over phonon configurations, abTEM 2/3 anti-aliasing, resampled to pixel_size_A "
                  "(|k| < n_window/2 dk); truth_phase_recon_slices (n_recon_slices, H, W) and truth_phase_sim_slices "
                  "(n_sim_slices, H, W) likewise per slice"),
        "abtem_version": abtem.__version__, "ase_version": ase.__version__, "numpy_version": np.__version__,
        "python_version": platform.python_version(), "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "command": " ".join(["scripts/simulate_bilayer.py"] + (sys.argv[1:] if argv is None else list(argv))),
        "data_shape": list(counts.shape), "data_dtype": "float32 (integer counts)",
    }
    t0 = time.perf_counter()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    gz = dict(compression="gzip", compression_opts=4, shuffle=True)
    with h5py.File(args.out, "w") as f:
        f.create_dataset("data", data=counts, chunks=(min(64, n_pos), N_DET, N_DET), **gz).attrs["units"] = "counts"
        f.create_dataset("data_noise_free", data=noise_free.astype(np.float32), chunks=(min(64, n_pos), N_DET, N_DET),
                         **gz).attrs["units"] = "fraction of the incident electrons per pixel"
        f.create_dataset("positions_px", data=pos_px).attrs["description"] = \
            "(y, x) top-left corner of the probe window on the object canvas, px"
        f.create_dataset("positions_A", data=pos_A).attrs["description"] = "(y, x) probe centres, cell frame, Å"
        f.create_dataset("truth_phase_layers", data=gt_layers.astype(np.float32), **gz)
        f.create_dataset("truth_phase_recon_slices", data=gt_rec.astype(np.float32), **gz)
        f.create_dataset("truth_phase_sim_slices", data=gt_sim.astype(np.float32), **gz)
        f.create_dataset("atom_layer", data=labels)
        for k, v in meta.items():
            f.attrs[k] = json.dumps(v) if isinstance(v, (dict, list)) else v
        f.attrs["checks"] = json.dumps(checks)
    timings["write_s"] = round(time.perf_counter() - t0, 2)
    timings["total_s"] = round(time.perf_counter() - t_start, 2)
    meta["checks"] = checks
    meta["timings_s"] = timings
    with open(os.path.splitext(args.out)[0] + ".json", "w") as fh:
        json.dump(meta, fh, indent=1)
        fh.write("\n")
    print(json.dumps({"out": args.out, "size_MB": round(os.path.getsize(args.out) / 1e6, 2), "checks": checks,
                      "timings_s": timings}, indent=1))


if __name__ == "__main__":
    main()
