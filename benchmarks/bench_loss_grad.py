#!/usr/bin/env python
"""Throughput of one loss + gradient evaluation of the far-field model, next to its FFT bound.

For every combination of window size N (probe window N x N px), number of
slices S, number of probe modes Mp (one object mode) and complex dtype, this
script times ONE call of :meth:`pypty.model.MultisliceModel.loss_and_grad` with
``need=("obj", "probe", "positions")`` over P patterns in batches of B, and,
in the same run, on the same backend, with the same B and dtype, a loop that
does only the FFTs of that evaluation (see :func:`ffts_per_evaluation`) on
arrays of the same shapes.  The ratio

    model patterns/s / FFT-bound patterns/s

is the figure of merit: it says which fraction of the time the evaluation
spends in transforms it cannot avoid.  1.0 means everything but the FFTs is
free; the remainder is gather/scatter, elementwise work, allocation and
Python overhead.  The ratio is much less machine-dependent than the absolute
numbers.

Usage::

    python benchmarks/bench_loss_grad.py [--backend numpy|cupy] [--sizes 64 128]
        [--slices 1 6] [--modes 1 4] [--dtypes complex64 complex128]
        [--patterns 128] [--batch B] [--repeat 3] [--workers W] [--fft ENGINE] [--markdown]
        [--compare REV [--rounds 2]] [--profile]

``--compare REV`` runs the script of git revision REV (a temporary worktree)
and this checkout's alternately, configuration by configuration, and prints
both with the speed-up: the side-by-side figure of a change.

Timings are the median of ``--repeat`` runs after one warm-up run each, read with
``time.perf_counter`` (after ``cupy.cuda.Device().synchronize()`` on CuPy);
model and FFT-bound runs alternate so that both see the same machine load.
Before timing, one evaluation runs through a counting wrapper of the backend
and the script stops if the model's number of transforms differs from
:func:`ffts_per_evaluation` (so the bound cannot silently go stale).
Peak memory: on NumPy the ``tracemalloc`` peak of the untimed warm-up
evaluation (NumPy reports its buffers to tracemalloc), counted from the start
of the call (inputs such as object, probe and data are not included); on
CuPy the default memory pool's ``total_bytes()`` after the warm-up
evaluation started from an emptied pool (blocks held by the pool, i.e. the
peak of what the evaluation needed at once, up to the pool's rounding; cuFFT
plan work areas created by that first call are included).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

from pypty.backend import get_backend
from pypty.model import MultisliceModel
from pypty.model.schemes import scheme_steps
from pypty.operators.optics import electron_wavelength_A
from pypty.probe import make_probe

# Physical parameters of the synthetic experiment (values only need to be plausible).
PIXEL_A = 0.2          # reconstruction pixel size, Å
VOLTAGE_KV = 300.0     # accelerating voltage
SEMIANGLE_MRAD = 25.0  # convergence semi-angle
DEFOCUS_A = -100.0     # C10 (underfocus)
SLICE_A = 10.0         # slice thickness, Å
COUNTS = 1e4           # mean counts per pattern


# --------------------------------------------------------------------------- FFT count
def ffts_per_evaluation(n_slices: int, probe_modes: int, object_modes: int = 1, propmethod: str = "multislice"):
    """FFTs done by one ``loss_and_grad`` evaluation with all three gradients.

    Read off :meth:`pypty.model.MultisliceModel.loss_and_grad` and the operators
    it calls, per batch of B patterns:

    forward
        1 ifft2 of the shifted probes, shape (B, Mp, N, N)   (``shift_probe``);
        S - 1 pairs fft2 + ifft2, shape (B, Mo, Mp, N, N)    (``propagate``);
        1 fft2 of the exit waves, shape (B, Mo, Mp, N, N)    (``farfield``).
    backward
        1 ifft2, shape (B, Mo, Mp, N, N)                     (``farfield_adjoint``);
        S - 1 pairs fft2 + ifft2, shape (B, Mo, Mp, N, N)    (``propagate_adjoint``);
        1 fft2, shape (B, Mp, N, N)                          (``shift_probe_adjoint``).
    once per evaluation
        1 fft2 of the probe and 1 ifft2 of its gradient, shape (Mp, N, N).

    The wave entering the first propagation is (B, 1, Mp, N, N) before the
    object multiplies it, but the multiplication by the first slice makes it
    (B, Mo, Mp, N, N), so every propagation acts on B * Mo * Mp images.

    Returns
    -------
    dict with
        ``per_pattern`` : number of N x N 2D transforms per pattern
            (``2 * Mp + 4 * S * Mo * Mp - 2 * Mo * Mp``, i.e. ``4 * S * Mp`` for Mo = 1);
        ``per_evaluation`` : N x N transforms independent of the pattern count (``2 * Mp``);
        ``sequence`` : list of ``(kind, "probe" | "wave")`` per batch, in the
            order the model does them ("probe": B * Mp images, "wave": B * Mo * Mp images).
    """
    # propagations of the splitting scheme: S - 1 for multislice, S for better_multislice,
    # 4 S - 1 for yoshida (pypty.model.schemes.scheme_steps); tilts add no transform
    n_prop = sum(1 for st in scheme_steps(propmethod, [SLICE_A] * int(n_slices)) if st.kind == "P")
    seq = [("ifft2", "probe")]
    seq += [("fft2", "wave"), ("ifft2", "wave")] * n_prop
    seq += [("fft2", "wave"), ("ifft2", "wave")]          # farfield, farfield_adjoint
    seq += [("fft2", "wave"), ("ifft2", "wave")] * n_prop
    seq += [("fft2", "probe")]
    mp, mo = int(probe_modes), int(object_modes)
    per_pattern = sum(mp if what == "probe" else mo * mp for _, what in seq)
    return {"per_pattern": per_pattern, "per_evaluation": 2 * mp, "sequence": seq}


class _CountingBackend:
    """Wraps a Backend and counts the N x N images its fft2/ifft2 transform."""

    def __init__(self, bk):
        self._bk = bk
        self.images = 0

    def __getattr__(self, name):
        return getattr(self._bk, name)

    def with_workers(self, workers):
        return self  # threads do not change the count

    def fft2(self, a, **kw):
        self.images += int(np.prod(a.shape[:-2]))
        return self._bk.fft2(a, **kw)

    def ifft2(self, a, **kw):
        self.images += int(np.prod(a.shape[:-2]))
        return self._bk.ifft2(a, **kw)


def check_fft_count(model, evaluate, n_patterns, n_slices, probe_modes, propmethod="multislice"):
    """Run ``evaluate(model)`` on a copy of the model with a counting backend; raise if the FFT count differs."""
    counting = _CountingBackend(model.bk)
    evaluate(dataclasses.replace(model, bk=counting))
    c = ffts_per_evaluation(n_slices, probe_modes, propmethod=propmethod)
    expected = n_patterns * c["per_pattern"] + c["per_evaluation"]
    if counting.images != expected:
        raise RuntimeError(f"the model did {counting.images} N x N transforms, ffts_per_evaluation() "
                           f"predicts {expected}: update ffts_per_evaluation() to match pypty.model.multislice")


# --------------------------------------------------------------------------- helpers
def _sync(bk):
    if bk.is_gpu:
        import cupy  # only reached on the CuPy backend

        cupy.cuda.Device().synchronize()


def _time_pair(bk, fn_a, fn_b, repeat):
    """Median wall times of ``fn_a()`` and ``fn_b()`` over ``repeat`` runs.

    The caller has warmed both up.  The runs alternate (a, b, a, b, ...) so
    that both see the same machine load; this keeps their ratio meaningful
    on a shared machine.
    """
    times = ([], [])
    for _ in range(max(1, repeat)):
        for fn, out in zip((fn_a, fn_b), times):
            _sync(bk)
            t0 = time.perf_counter()
            fn()
            _sync(bk)
            out.append(time.perf_counter() - t0)
    return statistics.median(times[0]), statistics.median(times[1])


def _peak_memory(bk, fn):
    """Peak bytes of one evaluation (see the module docstring for the method)."""
    if bk.is_gpu:
        pool = bk.xp.get_default_memory_pool()
        _sync(bk)
        pool.free_all_blocks()
        base = pool.total_bytes()
        fn()
        _sync(bk)
        return pool.total_bytes() - base
    import tracemalloc

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def default_batch(n, probe_modes=1, dtype="complex64", n_patterns=128, bk=None):
    """Default compute batch: what ``compute_batch="auto"`` picks on the CPU (:func:`pypty.data.memory.cpu_batch`);
    64 for N <= 64 and 32 above on a GPU (and for checkouts without ``cpu_batch``)."""
    try:
        from pypty.data.memory import cpu_batch
    except ImportError:
        cpu_batch = None
    if cpu_batch is None or bk is None or bk.is_gpu:
        return 64 if n <= 64 else 32
    return cpu_batch((n, n), 1, probe_modes, dtype, n_patterns, int(bk.workers))


def build_problem(bk, n, n_slices, probe_modes, cdt, n_patterns, seed=0, min_canvas=0, propmethod="multislice",
                  tilts=False):
    """Model, object, probe, positions and data for one configuration.

    The scan is a raster of ceil(sqrt(P)) x ceil(sqrt(P)) positions with a
    step of N/8 px plus random sub-pixel parts; the canvas just holds it, or
    is ``min_canvas`` px square if that is larger (the scan stays in a corner).
    """
    rng = np.random.default_rng(seed)
    cdt = np.dtype(cdt)
    rdt = np.finfo(cdt).dtype
    side = int(np.ceil(np.sqrt(n_patterns)))
    step = n / 8.0
    grid = np.arange(side) * step
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], axis=1)[:n_patterns]
    pos = pos + rng.uniform(0.0, 1.0, pos.shape)  # sub-pixel parts, as in a real scan
    canvas = (max(int(np.ceil(pos[:, 0].max())) + n + 1, int(min_canvas)),
              max(int(np.ceil(pos[:, 1].max())) + n + 1, int(min_canvas)))
    obj = np.exp(1j * 0.3 * rng.standard_normal((n_slices, 1) + canvas)).astype(cdt)
    probe = make_probe((n, n), PIXEL_A, VOLTAGE_KV, SEMIANGLE_MRAD, {"C10": DEFOCUS_A},
                       n_modes=probe_modes, intensity=COUNTS)
    probe = np.ascontiguousarray(np.transpose(probe, (2, 0, 1)), dtype=cdt)
    # Poisson-like data with roughly the probe's total counts per pattern
    mean_pattern = np.full((n, n), COUNTS / (n * n))
    data = rng.poisson(mean_pattern, (n_patterns, n, n)).astype(rdt)

    lam = electron_wavelength_A(VOLTAGE_KV)
    model = MultisliceModel(bk, (n, n), (PIXEL_A, PIXEL_A), lam, (SLICE_A,) * n_slices, cdt,
                            loss_name="lsq_sqrt", eps=max(1e-6 * COUNTS / (n * n), 1e-12), propmethod=propmethod,
                            tilt_types=("before", "inside", "after") if tilts else ())
    probe = probe[None]  # (subscans = 1, Mp, N, N)
    extra = {"tilts": bk.asarray(rng.normal(0.0, 2.0, (n_patterns, 6)))} if tilts else {}  # mrad, all types
    return model, bk.asarray(obj), bk.asarray(probe), bk.asarray(pos), bk.asarray(data), extra


def make_batches(n_patterns, batch):
    seq = np.arange(n_patterns)
    return [seq[i:i + batch] for i in range(0, n_patterns, batch)]


def fft_bound_fn(bk, n, n_slices, probe_modes, cdt, batches, object_modes=1, seed=1, propmethod="multislice"):
    """A callable doing exactly the FFTs of one evaluation, on arrays of the same shapes."""
    rng = np.random.default_rng(seed)
    seq = ffts_per_evaluation(n_slices, probe_modes, object_modes, propmethod)["sequence"]
    sizes = sorted({len(b) for b in batches})

    def rnd(shape):
        a = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
        return bk.asarray(a, dtype=cdt)

    arrays = {b: {"probe": rnd((b, probe_modes, n, n)), "wave": rnd((b, object_modes, probe_modes, n, n))}
              for b in sizes}
    probe = rnd((probe_modes, n, n))
    workers = 1 if bk.is_gpu or not hasattr(bk, "with_workers") else max(1, min(int(bk.workers), len(batches)))

    def one(bk1, part):
        out = None
        for b in part:
            arr = arrays[len(b)]
            for kind, what in seq:
                out = getattr(bk1, kind)(arr[what])
        return out

    def run():
        out = bk.ifft2(bk.fft2(probe))
        if workers <= 1:
            return one(bk, batches)
        # as the model on the CPU (MultisliceModel.batch_workers): batches in threads, 1-thread transforms
        from concurrent.futures import ThreadPoolExecutor

        bk1 = bk.with_workers(1)
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda w: one(bk1, batches[w::workers]), range(workers)))[0] if batches else out

    return run


# --------------------------------------------------------------------------- profile
#: cProfile attribution: category -> (module file suffix, function names); cumulative times.
PROFILE_CATEGORIES = [
    ("FFTs (Backend.fft2/ifft2)", [("pypty/backend.py", ("fft2", "ifft2"))]),
    ("gather (patch_indices, extract_patches; fused: in transmit_windows)",
     [("pypty/operators/patches.py", ("patch_indices", "extract_patches"))]),
    ("scatter-add (scatter_patches / scatter_conj_product)",
     [("pypty/operators/patches.py", ("scatter_patches",)),
      ("pypty/operators/cpu_kernels.py", ("scatter_conj_product",))]),
    ("shift ramps and position gradient",
     [("pypty/operators/shift.py", ("shift_ramp", "shift_gradient")),
      ("pypty/operators/cpu_kernels.py", ("shift_moments",))]),
    ("loss and dL/dI", [("pypty/model/losses.py", ("loss_and_derivative", "data_loss"))]),
    ("fused element-wise kernels (transmission and its adjoint, propagator, |Psi|^2, 2 dL/dI Psi)",
     [("pypty/operators/cpu_kernels.py", ("transmit_windows", "multiply_conj_windows", "multiply_conj_patches",
                                          "multiply_kernel", "intensity", "scale_by_pattern"))]),
]


def profile_one(bk, n, n_slices, probe_modes, cdt, n_patterns, batch, repeat, min_canvas=0):
    """Break the time of ``repeat`` evaluations into categories with cProfile.

    Returns (total seconds, list of (category, seconds)).  The remainder
    ("other") is the elementwise work of ``loss_and_grad``, ``_forward``,
    ``_backward`` and the operators ``propagate*``, ``shift_probe*``,
    ``transmit*``, ``modulate*`` and ``farfield*``
    (products, conjugate copies, sums over modes, |.|^2), the data fetch, and
    allocation; its largest single items are listed separately.  On CuPy the
    profile shows host time of asynchronous launches and is not meaningful.
    """
    import cProfile
    import pstats

    model, obj, probe, pos, data, _ = build_problem(bk, n, n_slices, probe_modes, cdt, n_patterns,
                                                    min_canvas=min_canvas)
    xp = bk.xp
    batches = make_batches(n_patterns, batch)
    get_data = lambda idx: data[xp.asarray(idx)]  # noqa: E731

    def evaluate():
        model.loss_and_grad({"obj": obj, "probe": probe, "positions": pos}, batches, get_data,
                            need=("obj", "probe", "positions"))
        _sync(bk)

    evaluate()
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for _ in range(max(1, repeat)):
        evaluate()
    prof.disable()
    total = time.perf_counter() - t0
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
    rows = []
    for label, specs in PROFILE_CATEGORIES:
        ct = sum(v[3] for (f, _, name), v in stats.items()
                 if any(f.replace(os.sep, "/").endswith(suffix) and name in names for suffix, names in specs))
        rows.append((label, ct))
    rows.append(("other: inline elementwise, mode sums, data fetch, allocation", total - sum(r[1] for r in rows)))
    # largest builtins called directly from the model's own code (part of "other")
    inline = ("loss_and_grad", "_forward", "_backward", "propagate", "propagate_adjoint", "shift_probe",
              "shift_probe_adjoint", "transmit", "transmit_adjoint", "modulate", "modulate_adjoint", "farfield",
              "farfield_adjoint")
    detail = {}
    for (f, _, name), v in stats.items():
        if "/pypty/" in f.replace(os.sep, "/") or f.endswith("bench_loss_grad.py"):
            continue  # pypty's own functions are categories or inline code
        for (cf, _, cname), cv in v[4].items():
            cf = cf.replace(os.sep, "/")
            if cname in inline and (cf.endswith("pypty/model/multislice.py") or "/pypty/operators/" in cf):
                detail[name] = detail.get(name, 0.0) + cv[3]
    for name, tt in sorted(detail.items(), key=lambda kv: -kv[1])[:3]:
        short = name.replace("<method '", "").replace("' of 'numpy.ndarray' objects>", "").strip("<>")
        rows.append((f"  of which {short}() called inline", tt))
    rows.append(("  (the rest of 'other' is arithmetic operators: *, +, **)", None))
    return total / max(1, repeat), [(lab, None if t is None else t / max(1, repeat)) for lab, t in rows]


# --------------------------------------------------------------------------- header
def _lscpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except Exception:
        return None
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return None


def _loadavg():
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except (OSError, AttributeError):
        return "n/a"


def _git_commit():
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10, cwd=here)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def header(bk, args):
    import scipy

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = _lscpu_model() or platform.processor() or platform.machine()
    machine = f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}"
    libs = f"numpy {np.__version__}, scipy {scipy.__version__}"
    backend = bk.name
    if bk.is_gpu:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        gpu = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        backend += f" ({gpu})"
        libs += f", cupy {cupy.__version__}"
    else:
        backend += f" ({getattr(bk, 'fft_name', 'scipy')} FFTs, threads={bk.workers})"
    return (f"date: {now} | machine: {machine} | backend: {backend} | {libs} | "
            f"git: {_git_commit()} | model: {args.propmethod}{' + tilts (all types, refined)' if args.tilts else ''} | patterns: {args.patterns} | canvas: {args.canvas or 'fits the scan'} | repeat: {args.repeat} (median after 1 warm-up) | "
            f"python {platform.python_version()} | load average at start: {_loadavg()}")


# --------------------------------------------------------------------------- main
def run_one(bk, n, n_slices, probe_modes, cdt, n_patterns, batch, repeat, min_canvas=0, propmethod="multislice",
            tilts=False):
    model, obj, probe, pos, data, extra = build_problem(bk, n, n_slices, probe_modes, cdt, n_patterns,
                                                        min_canvas=min_canvas, propmethod=propmethod, tilts=tilts)
    xp = bk.xp
    batches = make_batches(n_patterns, batch)
    get_data = lambda idx: data[xp.asarray(idx)]  # noqa: E731  (as pypty/model/setup.py does on a GPU)
    need = ("obj", "probe", "positions") + (("tilts",) if tilts else ())
    arrays = {"obj": obj, "probe": probe, "positions": pos, **extra}

    def evaluate(m=model):
        return m.loss_and_grad(arrays, batches, get_data, need=need)

    bound = fft_bound_fn(bk, n, n_slices, probe_modes, cdt, batches, propmethod=propmethod)
    # warm-up: one untimed evaluation that also checks the FFT count and measures the peak memory
    peak = _peak_memory(bk, lambda: check_fft_count(model, evaluate, n_patterns, n_slices, probe_modes,
                                                    propmethod))
    bound()
    t_model, t_fft = _time_pair(bk, evaluate, bound, repeat)
    if bk.is_gpu:
        bk.free_memory_pool()
    return {
        "N": n, "slices": n_slices, "modes": probe_modes, "dtype": np.dtype(cdt).name, "batch": batch,
        "model": n_patterns / t_model, "fft": n_patterns / t_fft, "ratio": t_fft / t_model,
        "peak_MiB": peak / 2**20, "ffts": ffts_per_evaluation(n_slices, probe_modes, propmethod=propmethod)["per_pattern"],
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--slices", type=int, nargs="+", default=[1, 6])
    ap.add_argument("--modes", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--dtypes", nargs="+", default=["complex64", "complex128"],
                    choices=["complex64", "complex128"])
    ap.add_argument("--patterns", type=int, default=128,
                    help="total patterns P per evaluation (default 128: the full grid takes a few minutes on 2 cores)")
    ap.add_argument("--batch", type=int, default=None,
                    help="compute_batch B (default 64 for N <= 64, 32 above)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="CPU FFT threads (default: all CPUs)")
    ap.add_argument("--fft", default=None, choices=["auto", "fftw", "ducc0", "scipy", "all"],
                    help="CPU FFT engine (pypty.fft; default: PYPTY_FFT or auto); 'all': the grid once per "
                         "installed engine, each with its own FFT bound")
    ap.add_argument("--canvas", type=int, default=0,
                    help="minimum object canvas side in px (default: just large enough for the scan); "
                         "shows how the cost of the object gradient's scatter-add grows with the canvas")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--propmethod", default="multislice", choices=["multislice", "better_multislice", "yoshida"],
                    help="splitting scheme of the model")
    ap.add_argument("--tilts", action="store_true",
                    help="per-pattern tilts of all three types in the model, refined too")
    ap.add_argument("--profile", action="store_true",
                    help="instead of the table: cProfile breakdown of one evaluation per configuration "
                         "(batches one after the other: cProfile sees the main thread only)")
    ap.add_argument("--compare", metavar="REV", default=None,
                    help="also run this script of git revision REV (a temporary worktree), alternating with this "
                         "checkout configuration by configuration, and print both side by side with the speed-up")
    ap.add_argument("--rounds", type=int, default=2, help="with --compare: alternating rounds (median taken)")
    args = ap.parse_args(argv)
    if args.compare:
        return compare(args, argv if argv is not None else sys.argv[1:])
    if args.fft == "all":
        from pypty.fft import available_engines

        rest = _strip(argv if argv is not None else sys.argv[1:], {"--fft"}, set())
        for engine in available_engines():
            print(f"\n## FFT engine: {engine}\n", flush=True)
            main(rest + ["--fft", engine])
        return 0

    bk = get_backend(args.backend, workers=args.workers, fft=args.fft)
    head = header(bk, args)
    if args.profile:
        bk = bk.with_workers(1) if not bk.is_gpu and hasattr(bk, "with_workers") else bk
        print(head, flush=True)
        if bk.is_gpu:
            print("warning: on CuPy cProfile sees the host side of asynchronous launches; "
                  "use Nsight Systems for a device-side breakdown", flush=True)
        for n in args.sizes:
            for s in args.slices:
                for mp in args.modes:
                    for dt in args.dtypes:
                        batch = args.batch or default_batch(n, mp, dt, args.patterns, bk)
                        total, rows = profile_one(bk, n, s, mp, np.dtype(dt), args.patterns, batch, args.repeat,
                                                  args.canvas)
                        print(f"\nN={n} slices={s} probe modes={mp} {dt} batch={batch}: "
                              f"{total:.3f} s per evaluation of {args.patterns} patterns (under cProfile)")
                        for label, t in rows:
                            if t is None:
                                print(f"  {label}")
                            else:
                                print(f"  {label:<62s} {t:8.3f} s  {100 * t / total:5.1f} %")
        return 0
    print(head if not args.markdown else head.replace(" | ", "  \n"), flush=True)
    mem = "tracemalloc peak" if not bk.is_gpu else "pool bytes"
    if args.markdown:
        print()
        print(f"| N | slices | probe modes | dtype | batch | FFTs/pattern | model patterns/s "
              f"| FFT-bound patterns/s | ratio | peak memory (MiB, {mem}) |")
        print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    else:
        print(f"{'N':>4} {'S':>2} {'Mp':>2} {'dtype':>10} {'B':>3} {'FFT/p':>5} {'model p/s':>10} "
              f"{'FFT p/s':>10} {'ratio':>6} {'peak MiB':>9}")
    for n in args.sizes:
        for s in args.slices:
            for mp in args.modes:
                for dt in args.dtypes:
                    batch = args.batch or default_batch(n, mp, dt, args.patterns, bk)
                    r = run_one(bk, n, s, mp, np.dtype(dt), args.patterns, batch, args.repeat, args.canvas,
                                args.propmethod, args.tilts)
                    if args.markdown:
                        print(f"| {r['N']} | {r['slices']} | {r['modes']} | {r['dtype']} | {r['batch']} "
                              f"| {r['ffts']} | {r['model']:.1f} | {r['fft']:.1f} | {r['ratio']:.2f} "
                              f"| {r['peak_MiB']:.1f} |", flush=True)
                    else:
                        print(f"{r['N']:>4} {r['slices']:>2} {r['modes']:>2} {r['dtype']:>10} {r['batch']:>3} "
                              f"{r['ffts']:>5} {r['model']:>10.1f} {r['fft']:>10.1f} {r['ratio']:>6.2f} "
                              f"{r['peak_MiB']:>9.1f}", flush=True)
    return 0


# --------------------------------------------------------------------------- --compare
def _strip(argv, names_with_value, flags):
    """``argv`` without the options ``names_with_value`` (and their values) and the switches ``flags``."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a.split("=")[0] in names_with_value:
            if "=" not in a:
                while i < len(argv) and not argv[i].startswith("-"):
                    i += 1
            continue
        if a not in flags:
            out.append(a)
    return out


def _parse_rows(text):
    rows = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) == 10 and f[0].isdigit() and f[3].startswith("complex"):  # keyed without the batch (f[4])
            rows[tuple(f[:4])] = (float(f[6]), float(f[7]), float(f[8]), int(f[4]))
    return rows


def compare(args, argv):
    """Run REV's script and this one alternately per configuration; print both tables and the speed-ups."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    import tempfile

    tmp = tempfile.mkdtemp(prefix="pypty-compare-")
    wt = os.path.join(tmp, "tree")
    subprocess.run(["git", "worktree", "add", "--detach", wt, args.compare], cwd=root, check=True,
                   capture_output=True)
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", args.compare], cwd=root, capture_output=True,
                             text=True).stdout.strip()
        base = _strip(argv, {"--compare", "--rounds", "--fft"}, {"--markdown", "--profile"})
        configs = [(n, s, m, d) for n in args.sizes for s in args.slices for m in args.modes for d in args.dtypes]
        results = {"old": {}, "new": {}}
        for cfg in configs:
            n, s, m, d = cfg
            one = _strip(base, {"--sizes", "--slices", "--modes", "--dtypes"}, set())
            one += ["--sizes", str(n), "--slices", str(s), "--modes", str(m), "--dtypes", d]
            for _ in range(max(1, args.rounds)):
                for which, tree in (("old", wt), ("new", root)):
                    extra = ["--fft", args.fft] if (which == "new" and args.fft) else []
                    env = dict(os.environ, PYTHONPATH=tree)
                    out = subprocess.run([sys.executable, os.path.join(tree, "benchmarks", "bench_loss_grad.py")]
                                         + one + extra, capture_output=True, text=True, env=env, cwd=tree)
                    if out.returncode:
                        raise SystemExit(f"{which} ({tree}) failed:\n{out.stderr[-2000:]}")
                    for key, val in _parse_rows(out.stdout).items():
                        results[which].setdefault(key, []).append(val)
        print(f"side by side, alternating per configuration, {args.rounds} round(s), median; old = {rev}, "
              f"new = this checkout ({_git_commit()}); load average at end: {_loadavg()}")
        print()
        print("| N | slices | probe modes | dtype | old batch | new batch | old patterns/s | new patterns/s | speed-up "
              "| old ratio to its FFT bound | new ratio | new FFT-bound patterns/s |")
        print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key in results["new"]:
            o, nw = results["old"].get(key), results["new"][key]
            med = lambda v, i: statistics.median(x[i] for x in v)  # noqa: E731
            if o is None:
                continue
            print(f"| {' | '.join(key)} | {o[0][3]} | {nw[0][3]} | {med(o, 0):.1f} | {med(nw, 0):.1f} "
                  f"| {med(nw, 0) / med(o, 0):.2f} "
                  f"| {med(o, 2):.2f} | {med(nw, 2):.2f} | {med(nw, 1):.1f} |")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", wt], cwd=root, capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
