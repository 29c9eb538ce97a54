#!/usr/bin/env python
"""Strong and weak scaling of the distributed (MPI) reconstruction on CPU processes, and a model for 8-64 GPUs.

Every rank runs one thread (``OMP_NUM_THREADS=1``, ``OPENBLAS_NUM_THREADS=1``,
``PYPTY_FFT_WORKERS=1``) and the same FFT engine (``PYPTY_FFT``, default
ducc0 when installed, else scipy: the engine a distributed run picks; see
:func:`pypty.distributed.comm.fft_engine`), so R ranks use R cores.

* **strong scaling**: a fixed problem (``--patterns`` patterns) on R = 1, 2, ... ranks;
* **weak scaling**: ``--patterns`` patterns *per rank*;
* **reduction**: the time of one Reduce + Bcast of a float64 buffer of a few
  sizes between R ranks (``--reduce-mb``), i.e. the collective alone;
* **model**: the time per evaluation at 8-64 GPUs of a large problem from
  explicit assumptions (printed with the table, options ``--model-*``,
  ``--gpu-*``, ``--nccl-busbw-gbs``, ``--pcie-gbs``, ``--mpi-gbs``,
  ``--replicated-passes``): GPU compute per pattern from the FFT count and
  the memory bandwidth, the replicated optimizer work from passes over the
  parameters, the collective from the buffer size.  The CPU measurements
  above give the measured pieces at small scale (objective, collective,
  packing, replicated time per evaluation).

Each measurement runs ``mpiexec -n R python -m mpi4py THIS --worker ...`` (R = 1:
a plain process), which runs :func:`pypty.iterative.run` for ``--epochs``
epochs and reports: wall time per epoch, loss evaluations, the time inside
the objective (:class:`pypty.engine.objective.Objective`, timed by a wrapper
installed in the worker only), the time of the epochs (``Reconstruction.step``,
set-up excluded; s/epoch, speed-up and efficiency use it), the time inside
the collective and the packing (``comm_stats`` of the result), the
replicated time (steps minus objective: L-BFGS, line search, constraints),
and the buffer size.  Timings of R > 1 are those of the slowest rank
(collective: the mean over ranks, which includes waiting for the slowest).

Usage::

    python benchmarks/bench_distributed.py [--ranks 1 2] [--patterns 144] [--window 32] [--epochs 6]
        [--reduce-mb 1 16 128] [--markdown]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


# ------------------------------------------------------------------------------------------------ worker side
def _problem(n_patterns, window, seed=0):
    """A synthetic far-field scan: (data (N, W, W) float64, positions (N, 2) px, probe (W, W, 1))."""
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from synthetic import default_probe, phase_object, simulate
    from pypty.probe import make_probe

    side = int(np.ceil(np.sqrt(n_patterns)))
    step = 3.0
    iy, ix = np.divmod(np.arange(n_patterns), side)
    pos = np.stack([iy * step + 2.0, ix * step + 2.0], axis=1).astype(float)
    canvas = int(side * step + window + 4)
    obj = phase_object((canvas, canvas), seed=seed)
    if window == 32:
        probe = default_probe()
    else:
        probe = make_probe((window, window), 0.4, 200.0, 25.0, {"C10": -60.0}, n_modes=1, intensity=1e4)
    return simulate(obj, probe, pos), pos, probe


def worker(args):
    from pypty.distributed.comm import detect
    from pypty.engine import objective as O
    from pypty.engine import session as S
    import pypty.iterative

    comm = detect()
    data, pos, probe = _problem(args.patterns * (comm.size if args.weak else 1), args.window)
    timer = {"calls": 0, "seconds": 0.0}
    orig = O.Objective.__call__

    def timed(self, x):
        t = time.perf_counter()
        try:
            return orig(self, x)
        finally:
            timer["calls"] += 1
            timer["seconds"] += time.perf_counter() - t

    O.Objective.__call__ = timed
    steps = {"seconds": 0.0}
    orig_step = S.Reconstruction.step

    def timed_step(self, epoch):
        t = time.perf_counter()
        try:
            return orig_step(self, epoch)
        finally:
            steps["seconds"] += time.perf_counter() - t

    S.Reconstruction.step = timed_step
    params = dict(dataset=data, positions=pos, probe=probe, acc_voltage=200.0, pixel_size_x_A=0.4,
                  pixel_size_y_A=0.4, epoch_max=args.epochs, print_flag=0, compute_batch=args.batch,
                  output_folder="", default_dtype=args.dtype, update_probe=1, update_probe_pos=1)
    if comm.distributed:
        comm.barrier()
    t = time.perf_counter()
    res = pypty.iterative.run(params, comm=None)
    wall = time.perf_counter() - t
    stats = res.get("comm_stats", {"reductions": 0, "seconds": 0.0, "bytes": 0, "pack_seconds": 0.0})
    row = dict(ranks=comm.size, patterns=len(pos), epochs=args.epochs, wall_s=wall, evals=timer["calls"],
               objective_s=timer["seconds"], step_s=steps["seconds"], comm_s=stats["seconds"],
               pack_s=stats["pack_seconds"],
               buffer_bytes=(stats["bytes"] // max(stats["reductions"], 1)), loss=res["loss"][-1])
    rows = comm.allgather(row)
    if comm.is_root:
        # the slowest rank sets the pace; the collective time includes waiting for it
        out = dict(rows[0], wall_s=max(r["wall_s"] for r in rows),
                   objective_s=max(r["objective_s"] for r in rows), step_s=max(r["step_s"] for r in rows),
                   comm_s=float(np.mean([r["comm_s"] for r in rows])),
                   comm_min_s=min(r["comm_s"] for r in rows), pack_s=max(r["pack_s"] for r in rows))
        print("RESULT " + json.dumps(out), flush=True)


def reduce_worker(args):
    """Time Reduce + Bcast of float64 buffers of ``--reduce-mb`` MB (median of 5 after a warm-up)."""
    from pypty.distributed.comm import detect

    comm = detect()
    out = []
    for mb in args.reduce_mb:
        buf = np.ones(int(mb * 2**20 / 8))
        times = []
        for _ in range(6):
            comm.barrier()
            t = time.perf_counter()
            comm.allsum(buf)
            times.append(time.perf_counter() - t)
        out.append(dict(mb=mb, seconds=float(np.median(times[1:]))))
    if comm.is_root:
        print("RESULT " + json.dumps(dict(ranks=comm.size, reduce=out)), flush=True)


# ------------------------------------------------------------------------------------------------ launcher side
def _env():
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PYPTY_FFT_WORKERS="1")
    if not env.get("PYPTY_FFT"):
        import importlib.util

        env["PYPTY_FFT"] = "ducc0" if importlib.util.find_spec("ducc0") else "scipy"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def launch(ranks, extra):
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    mpiexec = mpiexec if os.path.exists(mpiexec) else shutil.which("mpiexec")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker"] + extra
    if ranks > 1:
        cmd = [mpiexec, "-n", str(ranks), sys.executable, "-m", "mpi4py"] + cmd[1:]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=3600)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    if res.returncode or not line:
        raise SystemExit(f"worker failed ({' '.join(cmd)}):\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    return json.loads(line[-1][7:])


def model_table(args):
    """Predicted seconds per evaluation of the large problem at R GPUs (see the printed assumptions)."""
    n, w, s, mp = args.model_patterns, args.model_window, args.model_slices, args.model_modes
    canvas = args.model_canvas
    # buffer: 2 + obj (S x canvas^2 complex) + probe (Mp x W^2 complex) + positions (2N), float64
    values = 2 + 2 * s * canvas * canvas + 2 * mp * w * w + 2 * n
    nbytes = 8 * values
    ffts = 2 * mp + (4 * s - 2) * mp  # transforms of one pattern's evaluation (docs/performance.md)
    fft_s = 2 * 2 * w * w * 8 / (args.gpu_bandwidth_gbs * 1e9)  # one complex64 W^2 FFT: read + write, 2 passes
    gpu_pattern_s = ffts * fft_s / args.gpu_fft_fraction
    compute_1 = n * gpu_pattern_s
    rows = []
    for r in (1, 8, 16, 32, 64):
        compute = compute_1 / r
        nccl = 0.0 if r == 1 else 2 * (r - 1) / r * nbytes / (args.nccl_busbw_gbs * 1e9)
        staged = 0.0 if r == 1 else (2 * nbytes / (args.pcie_gbs * 1e9)
                                     + 2 * (r - 1) / r * nbytes / (args.mpi_gbs * 1e9) * 2)
        rep = args.replicated_passes * nbytes / (args.gpu_bandwidth_gbs * 1e9)  # every rank: does not shrink
        rows.append(dict(r=r, compute=compute, rep=rep, nccl=nccl, staged=staged,
                         eff_nccl=(compute_1 + rep) / r / (compute + rep + nccl) if r > 1 else 1.0,
                         eff_staged=(compute_1 + rep) / r / (compute + rep + staged) if r > 1 else 1.0))
    return nbytes, gpu_pattern_s, ffts, rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--reduce-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--weak", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--patterns", type=int, default=144, help="patterns (strong) or patterns per rank (weak)")
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--dtype", default="double", choices=["double", "single"])
    ap.add_argument("--reduce-mb", type=float, nargs="+", default=[1.0, 16.0, 128.0])
    ap.add_argument("--markdown", action="store_true")
    # model assumptions (printed)
    ap.add_argument("--model-patterns", type=int, default=65536)
    ap.add_argument("--model-window", type=int, default=128)
    ap.add_argument("--model-slices", type=int, default=6)
    ap.add_argument("--model-modes", type=int, default=6)
    ap.add_argument("--model-canvas", type=int, default=1152)
    ap.add_argument("--gpu-bandwidth-gbs", type=float, default=3000.0, help="GPU memory bandwidth (H100/H200 class)")
    ap.add_argument("--gpu-fft-fraction", type=float, default=0.3,
                    help="fraction of an evaluation spent in FFTs (the CPU ratio of docs/performance.md)")
    ap.add_argument("--nccl-busbw-gbs", type=float, default=40.0, help="NCCL ring allreduce bus bandwidth, "
                    "inter-node (InfiniBand NDR); within one NVLink node it is several times higher")
    ap.add_argument("--replicated-passes", type=float, default=60.0,
                    help="passes over the parameter vector per evaluation outside the objective (L-BFGS two-loop "
                         "recursion with 10 pairs: about 4 x 10 + line search and constraints)")
    ap.add_argument("--pcie-gbs", type=float, default=25.0, help="device <-> host copies (host-staged MPI)")
    ap.add_argument("--mpi-gbs", type=float, default=12.0, help="host MPI Reduce / Bcast bandwidth per rank")
    args = ap.parse_args(argv)
    if args.worker:
        return reduce_worker(args) if args.reduce_only else worker(args)

    base = ["--patterns", str(args.patterns), "--window", str(args.window), "--batch", str(args.batch),
            "--epochs", str(args.epochs), "--dtype", args.dtype]
    results = {"strong": [], "weak": [], "reduce": []}
    for mode in ("strong", "weak"):
        for r in args.ranks:
            results[mode].append(launch(r, base + (["--weak"] if mode == "weak" else [])))
    for r in args.ranks:
        if r > 1:
            results["reduce"].append(launch(r, ["--reduce-only", "--reduce-mb"] + [str(v) for v in args.reduce_mb]))

    env = _env()
    print(f"# bench_distributed: window {args.window}, batch {args.batch}, {args.epochs} epochs, {args.dtype}, "
          f"FFT engine {env['PYPTY_FFT']}, 1 thread per rank")
    head = ("| mode | ranks | patterns | s/epoch | evals | objective ms/eval | collective ms/eval | "
            "pack ms/eval | replicated ms/eval | buffer MB | speed-up | efficiency |")
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for mode in ("strong", "weak"):
        ref = results[mode][0]
        for row in results[mode]:
            per_epoch = row["step_s"] / row["epochs"]  # the epochs alone (set-up excluded)
            ref_epoch = ref["step_s"] / ref["epochs"]
            ev = max(row["evals"], 1)
            if mode == "strong":
                speed = ref_epoch / per_epoch
                eff = speed * ref["ranks"] / row["ranks"]
            else:  # the same work per rank: time should stay flat
                speed = ref_epoch / per_epoch * row["ranks"] / ref["ranks"]
                eff = ref_epoch / per_epoch
            print(f"| {mode} | {row['ranks']} | {row['patterns']} | {per_epoch:.3f} | {row['evals']} | "
                  f"{1e3 * row['objective_s'] / ev:.1f} | {1e3 * row['comm_s'] / ev:.2f} | "
                  f"{1e3 * row['pack_s'] / ev:.2f} | {1e3 * max(row['step_s'] - row['objective_s'], 0) / ev:.2f} | "
                  f"{row['buffer_bytes'] / 2**20:.3f} | {speed:.2f} | {eff:.2f} |")
    if results["reduce"]:
        print()
        print("| ranks | buffer MB | Reduce + Bcast ms | GB/s (buffer / time) |")
        print("|---|---|---|---|")
        for res in results["reduce"]:
            for item in res["reduce"]:
                print(f"| {res['ranks']} | {item['mb']:g} | {1e3 * item['seconds']:.2f} | "
                      f"{item['mb'] / 1024 / item['seconds']:.2f} |")
    nbytes, gpu_pattern_s, ffts, rows = model_table(args)
    print()
    print(f"Model: {args.model_patterns} patterns of {args.model_window}^2 px, {args.model_slices} slices, "
          f"{args.model_modes} probe modes, canvas {args.model_canvas}^2 px; reduced buffer "
          f"{nbytes / 2**20:.0f} MiB per evaluation; {ffts} FFTs per pattern at {args.gpu_bandwidth_gbs:g} GB/s "
          f"and an FFT fraction of {args.gpu_fft_fraction:g} -> {1e6 * gpu_pattern_s:.1f} us per pattern on one "
          f"GPU (assumed); replicated work (L-BFGS, line search, constraints on every rank) "
          f"{args.replicated_passes:g} passes over the parameters per evaluation at the GPU's bandwidth; "
          f"NCCL ring allreduce at {args.nccl_busbw_gbs:g} GB/s bus bandwidth; "
          f"host-staged MPI: 2 PCIe copies at {args.pcie_gbs:g} GB/s + Reduce and Bcast at {args.mpi_gbs:g} GB/s.")
    print()
    print("| GPUs | compute s/eval | replicated s/eval | NCCL s/eval | host-staged MPI s/eval | "
          "efficiency (NCCL) | efficiency (host MPI) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['r']} | {row['compute']:.3f} | {row['rep']:.3f} | {row['nccl']:.4f} | {row['staged']:.4f} | "
              f"{row['eff_nccl']:.2f} | {row['eff_staged']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
