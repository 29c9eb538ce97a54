"""Reconstruct the independent abTEM MoS2 dataset (../shared/data/mos2_80kV) and score it.

Usage::

    python scripts/reconstruct_mos2.py [--data DIR] [--epochs 40] [--slices 1] [--refine-positions]
                                       [--out runs/mos2] [--true-positions]

Prints the Pearson correlation of the reconstructed phase (sum over slices)
with the ground-truth transmission phase on the reconstruction grid, at the
known pixel offset implied by pypty's conventions (no fitting of the offset),
plus the best offset found by cross-correlation as a check, and the rms
position error before and after refinement.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import h5py
import numpy as np

import pypty.iterative
from pypty.probe import make_probe


def load(data_dir):
    meta = json.load(open(os.path.join(data_dir, "metadata.json")))
    with h5py.File(os.path.join(data_dir, "data.h5"), "r") as f:
        data = f["data"][...]
        nominal = f["positions_nominal_px"][...]
        true = f["positions_true_px"][...]
    with h5py.File(os.path.join(data_dir, "ground_truth.h5"), "r") as f:
        gt = f["transmission_phase_rad_phonon_mean_recon_grid"][...]
    return meta, data, nominal, true, gt


def score(phase, gt, margin, window, scan_lo, scan_hi):
    """Correlation of phase with the tiled ground truth at the known offset.

    Object pixel j sits at ground-truth pixel j - margin (mod the cell), see
    the module docstring.  Only the scanned region (probe centres) is scored.
    """
    n_gt = gt.shape[0]
    ys = np.arange(scan_lo[0], scan_hi[0])
    xs = np.arange(scan_lo[1], scan_hi[1])
    rec = phase[np.ix_(ys, xs)]
    ref = gt[np.ix_((ys - margin) % n_gt, (xs - margin) % n_gt)]
    r = np.corrcoef((rec - rec.mean()).ravel(), (ref - ref.mean()).ravel())[0, 1]
    best = max(((np.corrcoef(rec.ravel(), gt[np.ix_((ys - margin + dy) % n_gt, (xs - margin + dx) % n_gt)].ravel())[0, 1],
                 dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)))
    return r, best


def geometry(meta, data, nominal, true, true_positions=False, margin=4):
    """Initial pypty positions and the frame used for scoring.

    Returns ``(pos0, true_corner, margin)``: the starting positions (top-left
    corners of the probe windows on the canvas, px), the true corners in the
    same frame, and the canvas margin (px before the first probe window).
    """
    n_det = data.shape[1]
    # pypty positions: top-left corner of the window; probe centre = corner + n_det//2
    start = true if true_positions else nominal
    pos0 = start - n_det // 2 + margin
    true_corner = true - n_det // 2 + margin
    if pos0.min() < 0:
        margin += int(np.ceil(-pos0.min()))
        pos0 = start - n_det // 2 + margin
        true_corner = true - n_det // 2 + margin
    return pos0, true_corner, margin


def initial_probe(meta, data):
    """Probe from make_probe with the nominal C10, normalised to the mean counts per pattern of ``data``."""
    n_det = data.shape[1]
    # Probe focus: abTEM's defocus is measured from the entrance plane of the 7.975 Å
    # cell; our object slices start at the first atomic plane (2.39 Å below).
    return make_probe((n_det, n_det), meta["dx_recon_A"], meta["energy_eV"] / 1e3, meta["semiangle_mrad"],
                      {"C10": meta["C10_A"] + meta["truth"]["geometry"]["atomic_plane_z_A"][0]},
                      intensity=float(data.sum(axis=(1, 2)).mean()))


def scan_region(pos0, n_det):
    """(lo, hi) pixel bounds of the probe centres: the region that :func:`score` scores."""
    centres = pos0 + n_det // 2
    lo = np.floor(centres.min(axis=0)).astype(int)
    hi = np.ceil(centres.max(axis=0)).astype(int) + 1
    return lo, hi


def position_errors(pos0, pos1, true_corner):
    """``(err0, err1, drift)``: rms position errors (px, global shift removed) before and after, and that shift.

    ``pos0``, ``pos1``: initial and refined positions in the same (given)
    frame.  A global shift of all positions is not observable; ``drift`` (y, x)
    px is the one the refinement added (the mean of pos1 - pos0).
    """
    d0 = pos0 - true_corner
    err0 = np.sqrt(np.mean(np.sum((d0 - d0.mean(axis=0)) ** 2, axis=1)))
    d = pos1 - true_corner
    drift = d.mean(axis=0) - d0.mean(axis=0)  # a global shift of all positions is not observable
    d = d - d.mean(axis=0)
    err1 = np.sqrt(np.mean(np.sum(d**2, axis=1)))
    return float(err0), float(err1), drift


def unshift(phase, drift):
    """Undo a global (sub-pixel) shift ``drift`` (y, x) px of the object (Fourier shift)."""
    ky = np.fft.fftfreq(phase.shape[0])[:, None]
    kx = np.fft.fftfreq(phase.shape[1])[None, :]
    return np.fft.ifft2(np.fft.fft2(phase) * np.exp(2j * np.pi * (ky * drift[0] + kx * drift[1]))).real


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data", "mos2_80kV"))
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--slices", type=int, default=1)
    ap.add_argument("--algorithm", default="ml")
    ap.add_argument("--refine-positions", action="store_true")
    ap.add_argument("--positions-from", type=int, default=10, help="epoch at which position refinement starts")
    ap.add_argument("--true-positions", action="store_true", help="start from the true (jittered) positions")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--single", action="store_true", help="complex64")
    ap.add_argument("--out", default="runs/mos2")
    ap.add_argument("--propmethod", default="multislice", choices=["multislice", "better_multislice", "yoshida"])
    ap.add_argument("--background", action="store_true", help="refine a static background (from epoch 5)")
    ap.add_argument("--beam-current", action="store_true", help="refine the beam current (from epoch 5)")
    ap.add_argument("--tilt", action="store_true", help="refine a global beam tilt (tilt_mode 2, from epoch 5)")
    ap.add_argument("--lazy-clean", action="store_true", help="do not band-limit the object (lazy_clean=True)")
    args = ap.parse_args(argv)

    meta, data, nominal, true, gt = load(args.data)
    n_det = data.shape[1]
    dx = meta["dx_recon_A"]
    pos0, true_corner, margin = geometry(meta, data, nominal, true, args.true_positions)
    thickness = meta["specimen_thickness_A"]
    n_sl = args.slices
    dz = thickness / n_sl if n_sl > 1 else thickness
    probe = initial_probe(meta, data)
    params = dict(
        dataset=data, acc_voltage=meta["energy_eV"] / 1e3, pixel_size_x_A=dx, pixel_size_y_A=dx,
        num_slices=n_sl, slice_distances=np.array([dz]), positions=pos0, probe=probe,
        scan_size=tuple(meta["scan_shape_yx"]), algorithm=args.algorithm, epoch_max=args.epochs,
        compute_batch=args.batch, update_obj=1, update_probe=1,
        update_probe_pos=(f"lambda e: 1 if e >= {args.positions_from} else 0" if args.refine_positions else 0),
        output_folder=args.out, print_flag=1, default_dtype="single" if args.single else "double",
        overwrite_output=True, propmethod=args.propmethod, lazy_clean=args.lazy_clean,
    )
    if args.background:
        params.update(static_background=1e-3, update_static_background="lambda e: e >= 5")
    if args.beam_current:
        params.update(update_beam_current="lambda e: e >= 5")
    if args.tilt:
        params.update(tilt_mode=2, tilts=np.zeros((1, 6)), update_tilts="lambda e: e >= 5")
    t = time.perf_counter()
    res = pypty.iterative.run(params)
    wall = time.perf_counter() - t
    phase = np.angle(res["obj"][..., 0]).sum(axis=2)
    lo, hi = scan_region(pos0, n_det)
    r, best = score(phase, gt, margin, n_det, lo, hi)
    pos1 = res["positions"] + res["position_offset"]  # in the frame of pos0
    err0, err1, drift = position_errors(pos0, pos1, true_corner)
    # the object moves with that global shift: undo it (sub-pixel Fourier shift) before scoring again
    r_shift, _ = score(unshift(phase, drift), gt, margin, n_det, lo, hi)
    print(json.dumps(dict(epochs=args.epochs, slices=n_sl, algorithm=args.algorithm, wall_s=round(wall, 1),
                          final_loss=res["loss"][-1], first_loss=res["loss"][0], corr_known_offset=round(float(r), 4),
                          best_corr_offset=[round(float(best[0]), 4), int(best[1]), int(best[2])],
                          corr_after_removing_global_shift=round(float(r_shift), 4),
                          global_shift_px=[round(float(v), 3) for v in drift],
                          pos_rms_err_px_before=round(float(err0), 4), pos_rms_err_px_after=round(float(err1), 4),
                          **({"background_mean_counts": round(float(res["static_background"].mean()), 4)}
                             if "static_background" in res else {}),
                          **({"beam_current_std": round(float(np.std(res["beam_current"])), 5)}
                             if "beam_current" in res else {}),
                          **({"tilt_mrad": [round(float(v), 3) for v in res["tilts"][0, :2]]}
                             if "tilts" in res else {}))))
    return res


if __name__ == "__main__":
    main()
