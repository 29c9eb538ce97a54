#!/usr/bin/env python
"""Blind start on the shared MoS2 data: C10, C12 and the scan rotation from the data, against the known C10.

Issue 14's check on an independent simulation (``../shared/data/mos2_80kV``):
:func:`pypty.initialize.from_data` estimates the aberrations and the scan
rotation without the metadata's C10; a reconstruction started from that
estimate is compared with one started from the known C10 (at the first atomic
plane, as in ``scripts/reconstruct_mos2.py``), by the phase correlation with
the ground truth at the known offset after each number of epochs.  Both
runs: ``ml``, one slice, ``lazy_clean=True``, the probe refined, positions
fixed at the nominal (blind: rotated) positions, float64.

Usage::

    python benchmarks/blind_start_mos2.py [--data DIR] [--epochs 6 11]

Prints one JSON line.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))

import pypty.iterative  # noqa: E402
from pypty import initialize  # noqa: E402
from pypty.probe import make_probe  # noqa: E402
from reconstruct_mos2 import geometry, load, scan_region, score  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "mos2_80kV"))
    ap.add_argument("--epochs", type=int, nargs="+", default=[6, 11])
    args = ap.parse_args(argv)
    meta, data, nominal, true, gt = load(args.data)
    n_det = data.shape[1]
    dx = meta["dx_recon_A"]
    kv = meta["energy_eV"] / 1e3
    pos0, _, margin = geometry(meta, data, nominal, true)
    lo, hi = scan_region(pos0, n_det)
    base = dict(dataset=data, acc_voltage=kv, pixel_size_x_A=dx, pixel_size_y_A=dx, num_slices=1,
                slice_distances=np.array([meta["specimen_thickness_A"]]), positions=pos0,
                scan_size=tuple(meta["scan_shape_yx"]), algorithm="ml", lazy_clean=True, update_obj=1,
                update_probe=1, compute_batch=128, print_flag=0, output_folder="")
    t = time.perf_counter()
    est = initialize.from_data(base, semiangle_mrad=meta["semiangle_mrad"], object_from=None)
    est_idpc = initialize.from_data(base, semiangle_mrad=meta["semiangle_mrad"], object_from="idpc")
    t_est = time.perf_counter() - t
    rep = est["report"]
    counts = float(data.sum(axis=(1, 2)).mean())
    c10_known = meta["C10_A"] + meta["truth"]["geometry"]["atomic_plane_z_A"][0]
    known_probe = make_probe((n_det, n_det), dx, kv, meta["semiangle_mrad"], {"C10": c10_known}, intensity=counts)
    blind_probe = make_probe((n_det, n_det), dx, kv, meta["semiangle_mrad"],
                             {"C10": rep["C10"], "C12a": rep["C12a"], "C12b": rep["C12b"]}, intensity=counts)
    out = dict(C10_estimate=round(rep["C10"], 2), C10_sigma=round(rep["sigma"]["C10"], 2),
               C10_known_first_plane=round(c10_known, 2), C10_metadata=meta["C10_A"],
               C12a=round(rep["C12a"], 2), C12b=round(rep["C12b"], 2), rotation_deg=round(rep["rotation_deg"], 3),
               positions_rotated=rep["positions_rotated"], estimate_s=round(t_est, 3), r={})
    runs = (("blind", dict(probe=blind_probe, positions=est["positions"])),
            ("blind_idpc_object", dict(probe=blind_probe, positions=est_idpc["positions"], obj=est_idpc["obj"])),
            ("known", dict(probe=known_probe)))
    for name, extra in runs:
        for epochs in args.epochs:
            res = pypty.iterative.run(dict(base, epoch_max=epochs, **extra))
            phase = np.angle(res["obj"][..., 0]).sum(axis=2)
            r, _ = score(phase, gt, margin, n_det, lo, hi)
            out["r"][f"{name}_{epochs}"] = round(float(r), 4)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
