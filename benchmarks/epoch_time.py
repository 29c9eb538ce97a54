"""Seconds per epoch of a whole reconstruction (``pypty.iterative.run``) on a synthetic multislice scan.

The per-epoch figure the field quotes (issue 12 compares with the peer's 5.0 s per epoch of 1,024 patterns of
128 x 128 px with 8 slices on a 2-core box).  The data are simulated with pypty's own forward model from a
random weak-phase object (``--slices`` slices of 2 Å), a 25 mrad, 300 kV probe with 100 Å defocus, and a
32 x 32 raster (``--patterns``) with a step of N/8 px, then Poisson noise at 10^4 counts per pattern.  The
reconstruction starts from a flat object and the true probe, refines object, probe and positions (from epoch
2), single precision by default, contract defaults otherwise; the seconds are the differences of the
``wall_time_s`` column of loss.csv (epoch 1, which includes the set-up and the first plans, is reported
separately).

Usage::

    python benchmarks/epoch_time.py [--size 128] [--slices 8] [--patterns 1024] [--epochs 6] [--dtype single]
                                    [--batch auto]

Run it with ``PYTHONPATH`` pointing at another checkout to compare commits side by side (alternate the runs).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

KV, PIX_A, MRAD, DEFOCUS_A, COUNTS, SLICE_A = 300.0, 0.2, 25.0, 100.0, 1e4, 2.0


def simulate(n, n_slices, n_patterns, seed=0):
    """(data (P, N, N) counts centred, positions (P, 2) px, probe (N, N, 1), object canvas shape)."""
    from pypty.backend import get_backend
    from pypty.model.multislice import MultisliceModel
    from pypty.operators.optics import electron_wavelength_A
    from pypty.probe import make_probe

    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_patterns)))
    grid = np.arange(side) * (n / 8.0)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], axis=1)[:n_patterns] + rng.uniform(0, 1, (n_patterns, 2))
    canvas = (int(np.ceil(pos[:, 0].max())) + n + 1, int(np.ceil(pos[:, 1].max())) + n + 1)
    obj = np.exp(1j * 0.05 * rng.standard_normal((n_slices, 1) + canvas))
    probe = make_probe((n, n), PIX_A, KV, MRAD, {"C10": DEFOCUS_A}, intensity=COUNTS)  # (N, N, 1)
    bk = get_backend("numpy")
    model = MultisliceModel(bk, (n, n), (PIX_A, PIX_A), electron_wavelength_A(KV), (SLICE_A,) * n_slices,
                            np.complex128)
    arrays = {"obj": obj, "probe": np.transpose(probe, (2, 0, 1))[None].astype(np.complex128), "positions": pos}
    pred = np.concatenate([model.predict(arrays, np.arange(i, min(i + 64, n_patterns)))
                           for i in range(0, n_patterns, 64)])
    data = np.fft.fftshift(rng.poisson(np.maximum(pred, 0)).astype(np.float32), axes=(1, 2))
    return data, pos, probe, canvas


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--slices", type=int, default=8)
    ap.add_argument("--patterns", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--dtype", default="single", choices=["single", "double"])
    ap.add_argument("--batch", default="auto")
    args = ap.parse_args(argv)
    import pypty
    import pypty.iterative

    t0 = time.perf_counter()
    data, pos, probe, _ = simulate(args.size, args.slices, args.patterns)
    t_sim = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        params = dict(dataset=data, positions=pos, probe=probe, acc_voltage=KV, pixel_size_x_A=PIX_A,
                      pixel_size_y_A=PIX_A, num_slices=args.slices, slice_distances=np.full(args.slices, SLICE_A),
                      epoch_max=args.epochs, default_dtype=args.dtype, print_flag=0, output_folder=out,
                      compute_batch=args.batch if args.batch == "auto" else int(args.batch),
                      update_probe_pos="lambda e: 1 if e >= 1 else 0", save_results_every=0, save_figures=[],
                      save_tiff=[])
        t0 = time.perf_counter()
        pypty.iterative.run(params)
        t_run = time.perf_counter() - t0
        log = np.genfromtxt(os.path.join(out, "loss.csv"), delimiter=",", names=True)
    wall = np.atleast_1d(log["wall_time_s"])
    per = np.diff(wall)
    print(f"pypty {pypty.__version__} from {os.path.dirname(pypty.__file__)}; {args.patterns} patterns of "
          f"{args.size}^2 px, {args.slices} slices, {args.dtype}, batch {args.batch}; load average "
          f"{os.getloadavg()[0]:.2f}")
    print(f"simulation {t_sim:.1f} s; run {t_run:.1f} s; epoch 1 (with set-up) {wall[0]:.2f} s; epochs 2-{len(wall)}: "
          f"median {statistics.median(per):.2f} s per epoch (min {per.min():.2f}, max {per.max():.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
