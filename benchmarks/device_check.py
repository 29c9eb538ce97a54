#!/usr/bin/env python
"""The one command to run on a machine with an NVIDIA GPU: what pypty does there, as JSON and Markdown.

Run from the repository root (nothing beyond CuPy, NumPy, SciPy, h5py and
pytest for the test section is needed; pypty is imported from this checkout)::

    python benchmarks/device_check.py --out runs/device_check           # on the GPU, about 5-7 min
    python benchmarks/device_check.py --dry-run --out /tmp/dc            # anywhere, CPU, ~30 s

It writes ``device_check.json`` and ``device_check.md`` (tables for
``docs/performance.md``) into ``--out`` and prints both paths and the tables.
Sections (each wrapped so that one failing section records its error text and
the others still run; a section that would overrun ``--budget-s`` is recorded
as skipped with the reason):

``environment``
    Python, NumPy, SciPy, h5py, CuPy versions; CUDA runtime and driver, cuFFT
    and NVRTC versions; device name, compute capability and memory; pypty's
    git commit; the notice of :func:`pypty.device_hints.gpu_dtype_notice`.
``tests``
    The test files that run on every backend (those with tests taking the
    ``bk`` fixture), selected with ``-k <backend>`` so that only their
    device variants run, in a ``pytest`` subprocess with a timeout; pass /
    fail / error / skip counts and the names of failing tests.
``determinism``
    Two identical loss + gradient evaluations (complex64 and complex128):
    bitwise equal?  And the relative difference to the same evaluation on
    NumPy (the CPU reference).  On the strict stand-in backend also its
    counts of host<->device transfers and synchronisations per evaluation.
``memory``
    ``compute_batch="auto"``: the estimate of :mod:`pypty.data.memory`
    (bytes per pattern x batch) against the measured peak of CuPy's memory
    pool (peak of ``used_bytes()``, see :class:`PoolPeak`) for one
    evaluation started from an emptied pool, for three model sizes; and a
    reconstruction of the bundled sample with ``compute_batch="auto"`` and
    ``smart_memory=False``: the batch it chose, the estimate (fixed + batch x
    per pattern, from the run's log line), the pool's peak ``used_bytes()``
    and what it held at the end (``total_bytes()``).  On a CPU the pool
    figures are "n/a" (the NumPy ``tracemalloc`` peak is given instead).
``sample``
    The bundled sample reconstruction (``presets/sample_srtio3.py``) on the
    device backend and on NumPy: wall time, seconds per epoch, Pearson
    correlation of the phase with the ground truth, and the correlation of
    the two reconstructions with each other.
``datapath``
    The sample with ``load_one_by_one`` True and False: setup + first epoch
    and seconds per later epoch.
``throughput``
    Loss + gradient patterns/s of :mod:`bench_loss_grad`'s model for N =
    64/128/256, slices 1/6, probe modes 1/4, complex64/complex128, and a
    batch sweep; next to two FFT bounds on the same backend: the
    backend's unitary (``norm="ortho"``) ``fft2``/``ifft2`` as the model
    calls them, and the bare transforms (no normalisation pass:
    ``norm="backward"`` forward, ``norm="forward"`` inverse).  The gap between
    the two bounds is the cost of the separate scaling passes that folding the
    normalisation into the propagator kernels would save.

``--dry-run`` runs every section end to end with tiny sizes on the CPU, on
the strict stand-in backend (``get_backend("strict")``) when pypty has one
and on NumPy otherwise, so that the script is known to work before it meets
a GPU (``tests/test_device_check.py`` runs it).

Timings use ``time.perf_counter`` after ``cupy.cuda.Device().synchronize()``
on CuPy.  The run()-based sections (sample, memory, datapath) run in
subprocesses of this script (``--worker``) so that each starts with a clean
memory pool and the NumPy comparison can force the CPU (``PYPTY_FORCE_CPU=1``).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import os
import platform
import re
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import redirect_stdout

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (HERE, ROOT):  # bench_loss_grad by import; pypty from this checkout
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402

import bench_loss_grad as blg  # noqa: E402
from pypty.backend import get_backend  # noqa: E402

PRESET = os.path.join(ROOT, "presets", "sample_srtio3.py")
RESULT_TAG = "DEVICE_CHECK_RESULT "
SECTIONS = ("environment", "tests", "determinism", "memory", "sample", "datapath", "throughput")
# per section: cap (s) in a full run, and the least time it needs to be worth starting
CAPS = {"environment": 20, "tests": 150, "determinism": 40, "memory": 60, "sample": 150, "datapath": 60,
        "throughput": 400}
MIN_S = {"environment": 1, "tests": 15, "determinism": 3, "memory": 8, "sample": 15, "datapath": 8,
         "throughput": 20}


# =========================================================================== configuration
def configuration(dry: bool) -> dict:
    """Sizes of every section: the full grid on a device, a trimmed one in the dry run."""
    if dry:
        return dict(
            grid=dict(sizes=[32], slices=[1, 2], modes=[1, 2], dtypes=["complex64", "complex128"]),
            patterns=lambda n, b: 2 * b, batch=lambda n: 8, repeat=1,
            sweep=dict(n=32, slices=2, modes=1, dtype="complex64", batches=[4, 8, 16], patterns=16),
            determinism=dict(n=32, slices=2, modes=2, patterns=16, batch=8),
            memory_models=[(32, 2, 1, "complex64", 8), (32, 1, 2, "complex128", 8)],
            sample_epochs=1, sample_single=False, memory_epochs=1, datapath_epochs=2, test_files="one",
            small_rows=8,
        )
    return dict(
        grid=dict(sizes=[64, 128, 256], slices=[1, 6], modes=[1, 4], dtypes=["complex64", "complex128"]),
        patterns=lambda n, b: 4 * b, batch=lambda n: 128 if n <= 128 else 64, repeat=3,
        sweep=dict(n=128, slices=6, modes=1, dtype="complex64", batches=[16, 32, 64, 128, 256, 512],
                   patterns=1024),
        determinism=dict(n=64, slices=2, modes=2, patterns=256, batch=64),
        memory_models=[(128, 6, 1, "complex64", 64), (128, 1, 4, "complex64", 64), (256, 6, 1, "complex128", 32)],
        sample_epochs=None, sample_single=True, memory_epochs=2, datapath_epochs=6, test_files="all",
        small_rows=0,
    )


def cpu_configuration() -> dict:
    """Full mode without a GPU: the CPU grid of bench_loss_grad (N = 256 and large batches are left out)."""
    c = configuration(False)
    c.update(grid=dict(sizes=[64, 128], slices=[1, 6], modes=[1, 4], dtypes=["complex64", "complex128"]),
             patterns=lambda n, b: 128, batch=blg.default_batch,
             sweep=dict(n=128, slices=6, modes=1, dtype="complex64", batches=[16, 32, 64, 128], patterns=128),
             determinism=dict(n=64, slices=2, modes=2, patterns=64, batch=32),
             memory_models=[(128, 6, 1, "complex64", 32)])
    return c


# =========================================================================== helpers
def _is_cupy(bk) -> bool:
    return getattr(bk, "name", "") == "cupy"


def _sync(bk):
    if _is_cupy(bk):
        import cupy

        cupy.cuda.Device().synchronize()


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (set, tuple)):
        return list(v)
    return str(v)


def _strict_backend():
    """``get_backend("strict")`` when this pypty has the strict stand-in backend, else None."""
    try:
        return get_backend("strict")
    except Exception:  # unknown name (ValueError) or not usable here
        return None


def select_backend(choice: str, dry: bool):
    """(backend, environment for run()-based worker subprocesses, note)."""
    if choice == "auto":
        if dry:
            bk = _strict_backend()
            if bk is not None:
                return bk, {"PYPTY_DEVICE": "strict"}, "dry run: strict stand-in backend"
            return get_backend("numpy"), {"PYPTY_FORCE_CPU": "1"}, "dry run: NumPy (no strict backend in this pypty)"
        bk = get_backend()
        if _is_cupy(bk):
            return bk, {}, "CuPy on the GPU"
        return bk, {"PYPTY_FORCE_CPU": "1"}, "no usable GPU: NumPy on the CPU"
    if choice == "strict":
        bk = _strict_backend()
        if bk is None:
            raise SystemExit("device_check: this pypty has no strict backend")
        return bk, {"PYPTY_DEVICE": "strict"}, "strict stand-in backend"
    bk = get_backend(choice)
    return bk, ({} if choice == "cupy" else {"PYPTY_FORCE_CPU": "1"}), f"{choice} (requested)"


def _worker_env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYPTY_FORCE_CPU", "PYPTY_DEVICE")}
    env.update(extra)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_worker(job: str, args: dict, env_extra: dict, timeout: float) -> dict:
    """Run ``device_check.py --worker job`` in a subprocess; its result dict (raises on failure)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", job, "--worker-args", json.dumps(args)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=max(1.0, timeout), cwd=ROOT,
                           env=_worker_env(env_extra))
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"worker {job!r} stopped at its time limit ({timeout:.0f} s)") from None
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if r.returncode != 0 or not lines:
        text = (r.stderr or r.stdout or "").strip()
        last = text.splitlines()[-1] if text else "no output"
        raise RuntimeError(f"worker {job!r} exited with {r.returncode}: {last}\n{text[-1500:]}")
    return json.loads(lines[-1][len(RESULT_TAG):])


class _BareFFT:
    """A backend whose fft2/ifft2 skip the normalisation pass (forward unscaled, inverse unscaled).

    Only the FFT-bound loop uses it (its values are never read), so the
    missing 1/sqrt(Y X) factors do not matter; what is left is the bare
    cuFFT (or pocketfft) work.  None for backends other than CuPy and NumPy.
    """

    def __init__(self, bk):
        self._bk = bk

    @classmethod
    def wrap(cls, bk):
        return cls(bk) if getattr(bk, "name", "") in ("cupy", "numpy") else None

    def __getattr__(self, name):
        return getattr(self._bk, name)

    def fft2(self, a):
        if _is_cupy(self._bk):
            return self._bk.xp.fft.fft2(a, norm="backward")
        import scipy.fft

        return scipy.fft.fft2(a, norm="backward", workers=self._bk.workers)

    def ifft2(self, a):
        if _is_cupy(self._bk):
            return self._bk.xp.fft.ifft2(a, norm="forward")
        import scipy.fft

        return scipy.fft.ifft2(a, norm="forward", workers=self._bk.workers)


class PoolPeak:
    """Peak of CuPy's default memory pool while the block runs, from an emptied pool.

    A Python allocator wrapping ``pool.malloc`` records ``pool.used_bytes()``
    after every allocation (bytes in live arrays, cuFFT work areas included:
    CuPy allocates them from the pool), so ``peak_used`` is the true peak of
    what the code needed at once; ``total_growth`` is what the pool held at
    the end (``total_bytes()``, used + cached blocks, i.e. the peak held when
    nothing freed the pool meanwhile).
    """

    def __init__(self, cupy):
        self.cupy = cupy
        self.pool = cupy.get_default_memory_pool()
        self.peak_used = self.total_growth = 0

    def __enter__(self):
        self.cupy.cuda.Device().synchronize()
        self.pool.free_all_blocks()
        base_used, base_total = self.pool.used_bytes(), self.pool.total_bytes()
        self._base = (base_used, base_total)
        self._peak = base_used

        def malloc(size):
            mem = self.pool.malloc(size)
            used = self.pool.used_bytes()
            if used > self._peak:
                self._peak = used
            return mem

        self.cupy.cuda.set_allocator(malloc)
        return self

    def __exit__(self, *exc):
        self.cupy.cuda.Device().synchronize()
        self.cupy.cuda.set_allocator(self.pool.malloc)
        self.peak_used = self._peak - self._base[0]
        self.total_growth = self.pool.total_bytes() - self._base[1]
        return False


def _peak_bytes(bk, fn):
    """Peak bytes of ``fn()``: CuPy pool's peak used bytes (:class:`PoolPeak`), NumPy tracemalloc peak, else None."""
    if _is_cupy(bk):
        with PoolPeak(bk.xp) as pk:
            fn()
        return pk.peak_used
    if getattr(bk, "name", "") == "numpy":
        import tracemalloc

        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    fn()
    return None


def _time_alternating(bk, fns, repeat):
    """Median wall time of each callable, run in alternation ``repeat`` times (all warmed up by the caller)."""
    times = [[] for _ in fns]
    for _ in range(max(1, repeat)):
        for fn, out in zip(fns, times):
            _sync(bk)
            t0 = time.perf_counter()
            fn()
            _sync(bk)
            out.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def _free(bk):
    if _is_cupy(bk):
        _sync(bk)
        bk.free_memory_pool()


# =========================================================================== sections
def section_environment(ctx, deadline):
    import scipy

    import pypty
    from pypty.device_hints import gpu_dtype_notice

    env = {"python": platform.python_version(), "platform": f"{platform.system()} {platform.machine()}",
           "cpu": blg._lscpu_model() or platform.processor() or platform.machine(), "cpus": os.cpu_count(),
           "numpy": np.__version__, "scipy": scipy.__version__, "pypty": getattr(pypty, "__version__", "?"),
           "git": blg._git_commit(), "backend": ctx["bk"].name, "backend_note": ctx["note"],
           "worker_env": ctx["worker_env"], "dtype_notice_double": gpu_dtype_notice(ctx["bk"], "double")}
    try:
        import h5py

        env["h5py"] = h5py.__version__
    except Exception as exc:  # h5py is a dependency of pypty, but report rather than fail
        env["h5py"] = f"n/a ({exc})"
    try:
        import cupy
    except Exception as exc:
        env["cupy"] = f"n/a ({type(exc).__name__}: {exc})"
        return env
    env["cupy"] = cupy.__version__
    probes = {
        "cuda_runtime": lambda: cupy.cuda.runtime.runtimeGetVersion(),
        "cuda_driver": lambda: cupy.cuda.runtime.driverGetVersion(),
        "cufft": lambda: cupy.cuda.cufft.getVersion(),
        "nvrtc": lambda: ".".join(str(v) for v in cupy.cuda.nvrtc.getVersion()),
        "device_count": lambda: cupy.cuda.runtime.getDeviceCount(),
        "device": lambda: _device_name(cupy),
        "compute_capability": lambda: cupy.cuda.Device().compute_capability,
        "memory_total_GiB": lambda: round(cupy.cuda.Device().mem_info[1] / 2**30, 2),
        "memory_free_GiB": lambda: round(cupy.cuda.Device().mem_info[0] / 2**30, 2),
    }
    for key, fn in probes.items():
        try:
            env[key] = fn()
        except Exception as exc:  # CuPy without a device, or a missing library
            env[key] = f"n/a ({type(exc).__name__}: {exc})"
    if _is_cupy(ctx["bk"]):  # remove_fft_cache's CuPy branch (Backend.clear_fft_plans): never run before a GPU
        try:
            bk = ctx["bk"]
            a = bk.xp.ones((2, 32, 32), dtype=bk.xp.complex64)
            before = bk.to_numpy(bk.fft2(a))
            dropped = bk.clear_fft_plans()
            again = bk.to_numpy(bk.fft2(a))
            env["clear_fft_plans"] = {"dropped": dropped, "same_bits_after": bool(np.array_equal(before, again))}
        except Exception as exc:
            env["clear_fft_plans"] = f"error ({type(exc).__name__}: {exc})"
    return env


def _device_name(cupy):
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


_BK_TEST = re.compile(r"def test_\w+\([^)]*\bbk\b")


def device_test_files():
    """Test files with at least one test taking the ``bk`` (backend) fixture, relative to the root."""
    out = []
    for dirpath, _dirs, files in os.walk(os.path.join(ROOT, "tests")):
        for f in sorted(files):
            if f.startswith("test_") and f.endswith(".py"):
                path = os.path.join(dirpath, f)
                with open(path, encoding="utf-8") as fh:
                    if _BK_TEST.search(fh.read()):
                        out.append(os.path.relpath(path, ROOT))
    return sorted(out)


_RUN_LEVEL_TEST = re.compile(r"\btest_backend\(\)")


def run_level_test_files():
    """Test files that compute on ``conftest.test_backend()`` (the backend ``run`` picks: CuPy on a GPU) and
    have no ``bk``-fixture variant to select with ``-k cupy``, relative to the root."""
    out = []
    bk_files = set(device_test_files())
    for dirpath, _dirs, files in os.walk(os.path.join(ROOT, "tests")):
        for f in sorted(files):
            if f.startswith("test_") and f.endswith(".py"):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, ROOT)
                with open(path, encoding="utf-8") as fh:
                    if rel not in bk_files and _RUN_LEVEL_TEST.search(fh.read()):
                        out.append(rel)
    return sorted(out)


_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)")


def parse_pytest_summary(text: str) -> dict:
    """Counts of pytest's final summary line (``3 failed, 10 passed, 2 deselected in 1.2s``)."""
    summary = ""
    for line in text.splitlines():
        if re.search(r"\bin [\d.]+s\b", line) and _COUNT.search(line):
            summary = line.strip(" =")
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "deselected": 0, "xfailed": 0, "xpassed": 0}
    for n, kind in _COUNT.findall(summary):
        counts["errors" if kind.startswith("error") else kind] += int(n)
    if not summary:  # cut off before the summary (time limit): count the progress characters of -q
        for line in text.splitlines():
            m = re.fullmatch(r"([.FEsxX]+)\s*(\[\s*\d+%\])?", line.strip())
            if m:
                for ch, key in ((".", "passed"), ("F", "failed"), ("E", "errors"), ("s", "skipped"),
                                ("x", "xfailed"), ("X", "xpassed")):
                    counts[key] += m[1].count(ch)
        summary = "(no summary line: counted from the progress output)"
    counts["summary"] = summary
    counts["failing_tests"] = [ln.split(" - ")[0][7:] for ln in text.splitlines() if ln.startswith("FAILED ")][:40]
    return counts


def section_tests(ctx, deadline):
    files = device_test_files()
    if not files:
        raise RuntimeError("no test file with a bk-fixture test found under tests/")
    if ctx["cfg"]["test_files"] == "one":
        files = [f for f in files if f.endswith("test_adjoint.py")][:1] or files[:1]
    try:
        import pytest  # noqa: F401
    except ImportError:
        return {"status": "skipped", "reason": "pytest is not installed"}
    keywords = [ctx["bk"].name] + (["numpy"] if ctx["bk"].name not in ("numpy", "cupy") else [])
    res = {"files": files, "command": None}
    for kw in keywords:  # the strict backend's variants, if the fixture has them, else NumPy's
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--maxfail=50", "-k", kw] + files
        left = deadline - time.perf_counter()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=max(5.0, left), cwd=ROOT,
                               env=_worker_env({} if kw == "cupy" else ctx["worker_env"]))
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            res.update(parse_pytest_summary(out), status="skipped", keyword=kw,
                       reason=f"pytest stopped at the section's time limit ({left:.0f} s)", tail=out[-1500:])
            return res
        res.update(parse_pytest_summary(r.stdout), rc=r.returncode, keyword=kw, command=" ".join(cmd[1:]))
        if r.returncode == 5:  # no test selected by this keyword
            res["note"] = (f"no {kw!r} test variant; the 'numpy' variants ran with {ctx['worker_env']} "
                           "(get_backend('numpy') then gives the strict backend)")
            continue
        if r.returncode not in (0, 1):
            res["tail"] = (r.stdout + r.stderr)[-2000:]
        break
    left = deadline - time.perf_counter()
    run_level = run_level_test_files() if ctx["cfg"]["test_files"] != "one" else []
    if _is_cupy(ctx["bk"]) and run_level and left > 20:  # whole runs on the device (test_backend() is CuPy there)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--maxfail=50"] + run_level
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=left, cwd=ROOT, env=_worker_env({}))
            res["run_level"] = {**parse_pytest_summary(r.stdout), "rc": r.returncode, "files": run_level}
            if r.returncode not in (0, 1):
                res["run_level"]["tail"] = (r.stdout + r.stderr)[-2000:]
        except subprocess.TimeoutExpired:
            res["run_level"] = {"status": "skipped", "reason": f"the section's time limit ({left:.0f} s)"}
    return res


def _evaluate_fn(model, arrays, batches, get_data, need):
    return lambda: model.loss_and_grad(arrays, batches, get_data, need=need)


def _problem(bk, n, s, mp, dtype, patterns, batch, seed=0):
    model, obj, probe, pos, data, _ = blg.build_problem(bk, n, s, mp, np.dtype(dtype), patterns, seed=seed)
    xp = bk.xp
    batches = blg.make_batches(patterns, batch)
    get_data = lambda idx: data[xp.asarray(idx)]  # noqa: E731  (as pypty/model/setup.py on a GPU)
    arrays = {"obj": obj, "probe": probe, "positions": pos}
    return model, arrays, batches, get_data


def section_determinism(ctx, deadline):
    bk, c = ctx["bk"], ctx["cfg"]["determinism"]
    need = ("obj", "probe", "positions")
    ref_bk = get_backend("numpy") if bk.name != "numpy" else None
    out = {"config": c}
    for dt in ("complex64", "complex128"):
        if time.perf_counter() > deadline:
            out[dt] = {"status": "skipped", "reason": "section time limit"}
            continue
        model, arrays, batches, get_data = _problem(bk, c["n"], c["slices"], c["modes"], dt, c["patterns"],
                                                    c["batch"])
        f = _evaluate_fn(model, arrays, batches, get_data, need)
        (la, ga), (lb, gb) = f(), f()
        ga = {k: bk.to_numpy(v) for k, v in ga.items()}
        gb = {k: bk.to_numpy(v) for k, v in gb.items()}
        same = {k: ga[k].tobytes() == gb[k].tobytes() for k in sorted(ga)}
        row = {"loss_bitwise_equal": float(la) == float(lb), "grads_bitwise_equal": same,
               "identical": float(la) == float(lb) and all(same.values()),
               "max_rel_diff_between_runs": max(_rel(ga[k], gb[k]) for k in ga), "loss": float(la)}
        if ref_bk is not None:  # same problem (same seeds) on NumPy
            m2, a2, b2, d2 = _problem(ref_bk, c["n"], c["slices"], c["modes"], dt, c["patterns"], c["batch"])
            lr, gr = _evaluate_fn(m2, a2, b2, d2, need)()
            row["vs_numpy_loss_rel_diff"] = abs(float(la) - float(lr)) / max(abs(float(lr)), 1e-300)
            row["vs_numpy_grad_max_rel_diff"] = max(_rel(ga[k], ref_bk.to_numpy(gr[k])) for k in ga)
        counters = getattr(bk, "counters", None)  # the strict stand-in counts transfers and syncs
        if counters is not None:
            counters.reset()
            f()
            snap = counters.snapshot()
            row["per_evaluation"] = {"events": snap["totals"], "bytes": snap["bytes"],
                                     "top_sites": {k: dict(list(v.items())[:5]) for k, v in snap["sites"].items()}}
        out[dt] = row
        _free(bk)
    return out


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return float(np.max(np.abs(a - b))) / scale if scale > 0 else float(np.max(np.abs(a - b), initial=0.0))


def section_memory(ctx, deadline):
    from pypty.data.memory import SAFETY, bytes_per_pattern

    bk = ctx["bk"]
    need = ("obj", "probe", "positions")
    models = []
    for n, s, mp, dt, b in ctx["cfg"]["memory_models"]:
        if time.perf_counter() > deadline:
            models.append({"N": n, "slices": s, "modes": mp, "dtype": dt, "batch": b, "status": "skipped",
                           "reason": "section time limit"})
            continue
        model, arrays, batches, get_data = _problem(bk, n, s, mp, dt, b, b)  # one batch of b patterns
        est = b * bytes_per_pattern((n, n), s, 1, mp, np.dtype(dt))
        row = {"N": n, "slices": s, "modes": mp, "dtype": dt, "batch": b, "estimate_MiB": est / 2**20,
               "estimate_with_safety_MiB": SAFETY * est / 2**20}
        if _is_cupy(bk):
            with PoolPeak(bk.xp) as pk:
                _evaluate_fn(model, arrays, batches, get_data, need)()
            row.update(measured_pool_MiB=pk.peak_used / 2**20, measured_over_estimate=pk.peak_used / est,
                       pool_total_growth_MiB=pk.total_growth / 2**20)
        else:
            peak = _peak_bytes(bk, _evaluate_fn(model, arrays, batches, get_data, need))
            row.update(measured_pool_MiB="n/a", measured_over_estimate="n/a",
                       tracemalloc_peak_MiB=None if peak is None else peak / 2**20)
        models.append(row)
        _free(bk)
    left = deadline - time.perf_counter()
    run = _part(lambda: run_worker("memory", {"epochs": ctx["cfg"]["memory_epochs"], "tmp": ctx["tmp"],
                                              "data_path": ctx["small_data"]}, ctx["worker_env"], left))
    return _with_part_errors({"models": models, "run_auto": run})


def small_sample(path, scan_rows):
    """Write the first ``scan_rows`` scan rows of the bundled sample to ``path`` (dry run: less work)."""
    import h5py

    src = runpy.run_path(PRESET)["default_data_path"]()
    with h5py.File(src, "r") as f, h5py.File(path, "w") as g:
        ny, nx = (int(v) for v in f.attrs["scan_shape"])
        n = min(int(scan_rows), ny) * nx
        for k, v in f.attrs.items():
            g.attrs[k] = v
        g.attrs["scan_shape"] = np.array([n // nx, nx])
        for k in ("data", "positions_px", "positions_A"):
            g[k] = f[k][:n]
    return path


def _part(fn):
    """Run one part of a section: its dict, or a record of why it was skipped (time limit) or failed."""
    try:
        return fn()
    except TimeoutError as exc:
        return {"status": "skipped", "reason": str(exc)}
    except Exception as exc:  # the section keeps its other parts
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}"}


def _with_part_errors(out: dict) -> dict:
    """Mark the section as failed when one of its parts failed (the parts' results are kept)."""
    bad = [f"{k}: {v['error']}" for k, v in out.items() if isinstance(v, dict) and v.get("status") == "error"]
    if bad:
        out.update(status="error", error="; ".join(bad))
    return out


def _sample_job(ctx, env_extra, timeout, label, dtype=None):
    tmp = ctx["tmp"]
    args = {"epochs": ctx["cfg"]["sample_epochs"], "phase_path": os.path.join(tmp, f"phase_{label}.npy"),
            "out": os.path.join(tmp, f"sample_{label}"), "dtype": dtype}
    return run_worker("sample", args, env_extra, timeout)


def section_sample(ctx, deadline):
    out = {}
    left = deadline - time.perf_counter()
    same = ctx["bk"].name == "numpy"
    out["device"] = _part(lambda: _sample_job(ctx, ctx["worker_env"], left if same else 0.3 * left, "device"))
    if same:
        out["numpy"] = {"status": "skipped", "reason": "the device backend is NumPy already"}
        return _with_part_errors(out)
    if ctx["cfg"]["sample_single"]:  # what default_dtype="single" gains and costs on the device
        out["device_single"] = _part(lambda: _sample_job(ctx, ctx["worker_env"], 0.3 * (deadline - time.perf_counter()),
                                                         "device_single", dtype="single"))
    out["numpy"] = _part(lambda: _sample_job(ctx, {"PYPTY_FORCE_CPU": "1"}, deadline - time.perf_counter(),
                                             "numpy"))
    if "wall_s" in out["device"] and "wall_s" in out["numpy"]:
        out["speedup_wall"] = out["numpy"]["wall_s"] / out["device"]["wall_s"]
        preset = runpy.run_path(PRESET)
        a = np.load(out["device"]["phase_path"])
        b = np.load(out["numpy"]["phase_path"])
        rows, cols = preset["scanned_region"](out["device"]["positions_px"], out["device"]["n_det"])
        out["phase_pearson_device_vs_numpy"] = preset["pearson"](a[np.ix_(rows, cols)], b[np.ix_(rows, cols)])
    for v in out.values():  # only needed above (the phases live in the temporary folder)
        if isinstance(v, dict):
            v.pop("positions_px", None)
            v.pop("phase_path", None)
    return _with_part_errors(out)


def section_datapath(ctx, deadline):
    left = deadline - time.perf_counter()
    try:
        return run_worker("datapath", {"epochs": ctx["cfg"]["datapath_epochs"], "tmp": ctx["tmp"],
                                       "data_path": ctx["small_data"]}, ctx["worker_env"], left)
    except TimeoutError as exc:
        return {"status": "skipped", "reason": str(exc)}


def throughput_row(bk, bare, n, s, mp, dt, patterns, batch, repeat):
    """One configuration: model, unitary-FFT bound and bare-FFT bound patterns/s, peak memory."""
    cdt = np.dtype(dt)
    model, arrays, batches, get_data = _problem(bk, n, s, mp, dt, patterns, batch)
    need = ("obj", "probe", "positions")
    evaluate = lambda m=model: m.loss_and_grad(arrays, batches, get_data, need=need)  # noqa: E731
    bound = blg.fft_bound_fn(bk, n, s, mp, cdt, batches)
    fns = [evaluate, bound]
    bare_bound = None
    if bare is not None:
        try:  # an old CuPy without norm="forward" only loses this column
            bare_bound = blg.fft_bound_fn(bare, n, s, mp, cdt, batches)
            bare_bound()
            fns.append(bare_bound)
        except Exception:
            bare_bound = None
    # untimed warm-up: FFT-count check (the bound must match the model) and peak memory
    peak = _peak_bytes(bk, lambda: blg.check_fft_count(model, evaluate, patterns, s, mp))
    for fn in fns[1:]:
        fn()
    t = _time_alternating(bk, fns, repeat)
    row = {"N": n, "slices": s, "modes": mp, "dtype": cdt.name, "batch": batch, "patterns": patterns,
           "ffts_per_pattern": blg.ffts_per_evaluation(s, mp)["per_pattern"],
           "model_pps": patterns / t[0], "fft_pps": patterns / t[1], "ratio": t[1] / t[0],
           "bare_fft_pps": patterns / t[2] if bare_bound is not None else "n/a",
           "ratio_bare": t[2] / t[0] if bare_bound is not None else "n/a",
           "norm_pass_share_of_fft": (t[1] - t[2]) / t[1] if bare_bound is not None else "n/a",
           "peak_MiB": None if peak is None else peak / 2**20}
    _free(bk)
    return row


def section_throughput(ctx, deadline):
    bk, cfg = ctx["bk"], ctx["cfg"]
    bare = _BareFFT.wrap(bk)
    g = cfg["grid"]
    todo = [("grid", n, s, mp, dt, cfg["batch"](n)) for n in g["sizes"] for s in g["slices"] for mp in g["modes"]
            for dt in g["dtypes"]]
    sw = cfg["sweep"]
    todo += [("sweep", sw["n"], sw["slices"], sw["modes"], sw["dtype"], b) for b in sw["batches"]]
    rows, sweep, skipped, errors = [], [], [], []
    rate = 0.0  # seconds per unit of work of the previous configuration
    for kind, n, s, mp, dt, b in todo:
        label = f"N={n} S={s} Mp={mp} {dt} B={b}"
        patterns = sw["patterns"] if kind == "sweep" else cfg["patterns"](n, b)
        units = patterns * n * n * blg.ffts_per_evaluation(s, mp)["per_pattern"] * np.dtype(dt).itemsize
        if time.perf_counter() + 1.2 * rate * units > deadline:
            skipped.append(label)
            continue
        t0 = time.perf_counter()
        try:
            r = throughput_row(bk, bare, n, s, mp, dt, patterns, b, cfg["repeat"])
        except Exception as exc:  # e.g. out of memory for the largest batch: keep the others
            errors.append(f"{label}: {type(exc).__name__}: {exc}"[:400])
            _free(bk)
            continue
        rate = (time.perf_counter() - t0) / units
        (sweep if kind == "sweep" else rows).append(r)
    out = {"grid": rows, "batch_sweep": sweep, "repeat": cfg["repeat"],
           "bound_note": "fft_pps: the backend's unitary fft2/ifft2 (as the model calls them); bare_fft_pps: "
                         "the same transforms without the normalisation pass"}
    if skipped:
        out["skipped_configs"] = skipped
        out["skipped_reason"] = "section time limit (--budget-s)"
    if errors:
        out["errors"] = errors
    return out


SECTION_FUNCS = {"environment": section_environment, "tests": section_tests, "determinism": section_determinism,
                 "memory": section_memory, "sample": section_sample, "datapath": section_datapath,
                 "throughput": section_throughput}


# =========================================================================== workers (subprocesses)
def _sample_params(folder, epochs, data_path=None):
    p = runpy.run_path(PRESET)["pypty_params"](data_path=data_path, output_folder=folder)
    p.update(print_flag=0, overwrite_output=True)
    if epochs is not None:
        p["epoch_max"] = int(epochs)
    return p


def _pool():
    from pypty.backend import get_backend as gb

    bk = gb()
    if _is_cupy(bk):
        return bk, bk.xp.get_default_memory_pool()
    return bk, None


def worker_sample(a):
    import pypty.iterative

    bk, pool = _pool()
    p = _sample_params(a["out"], a["epochs"])
    if a.get("dtype"):
        p["default_dtype"] = a["dtype"]
    t0 = time.perf_counter()
    res = pypty.iterative.run(p)
    _sync(bk)
    wall = time.perf_counter() - t0
    phase = np.angle(np.asarray(res["obj"])[..., 0]).sum(axis=2)
    np.save(a["phase_path"], phase)
    preset = runpy.run_path(PRESET)
    cmp = preset["compare_with_ground_truth"](phase, p["data_path"], p["positions"], p["probe"].shape[0]) or {}
    loss = [float(v) for v in res["loss"]]
    return {"backend": bk.name, "default_dtype": p.get("default_dtype", "double"), "epochs": len(loss),
            "wall_s": wall, "s_per_epoch": wall / max(len(loss), 1),
            "first_loss": loss[0] if loss else None, "final_loss": loss[-1] if loss else None,
            "pearson_ground_truth": cmp.get("pearson_known_offset"), "best_shift_px_yx": cmp.get("best_shift_px_yx"),
            "phase_path": a["phase_path"], "positions_px": np.asarray(p["positions"]).tolist(),
            "n_det": int(p["probe"].shape[0]),
            "transfers": bk.counters.totals() if getattr(bk, "counters", None) is not None else "n/a",
            "pool_total_MiB": pool.total_bytes() / 2**20 if pool is not None else "n/a"}


_AUTO = re.compile(r"compute_batch auto: (\d+) \(free ([\d.]+) GiB x memory_saturation ([\d.]+), about "
                   r"([\d.]+) MiB per pattern, ([\d.]+) MiB fixed\)")


def worker_memory(a):
    import pypty.iterative
    from pypty.data.memory import SAFETY

    bk, pool = _pool()
    p = _sample_params(tempfile.mkdtemp(prefix="pypty_dc_mem_", dir=a.get("tmp")), a["epochs"], a.get("data_path"))
    p.update(compute_batch="auto", smart_memory=False, print_flag=2)
    buf = io.StringIO()
    pk = PoolPeak(bk.xp) if pool is not None else None
    with redirect_stdout(buf):
        if pk is not None:
            with pk:
                pypty.iterative.run(p)
        else:
            pypty.iterative.run(p)
    m = _AUTO.search(buf.getvalue())
    if m is None:
        raise RuntimeError("no 'compute_batch auto' line in the run's log: " + buf.getvalue()[-600:])
    b, free_gib, sat, per_mib, fixed_mib = int(m[1]), float(m[2]), float(m[3]), float(m[4]), float(m[5])
    est = fixed_mib + b * per_mib
    out = {"backend": bk.name, "auto_batch": b, "n_patterns": int(len(p["positions"])), "free_GiB": free_gib,
           "memory_saturation": sat, "per_pattern_MiB": per_mib, "fixed_MiB": fixed_mib, "estimate_MiB": est,
           "estimate_with_safety_MiB": SAFETY * est, "log": m[0]}
    if pk is not None:
        out.update(pool_peak_used_MiB=pk.peak_used / 2**20, pool_peak_over_estimate=(pk.peak_used / 2**20) / est,
                   pool_peak_total_MiB=pk.total_growth / 2**20, pool_used_after_MiB=pool.used_bytes() / 2**20)
    else:
        out.update(pool_peak_used_MiB="n/a", pool_peak_over_estimate="n/a", pool_peak_total_MiB="n/a",
                   pool_used_after_MiB="n/a")
    return out


def worker_datapath(a):
    import pypty.iterative

    bk, _ = _pool()
    out = {"backend": bk.name, "data": a.get("data_path") or "bundled sample"}
    for lob in (True, False):
        folder = tempfile.mkdtemp(prefix="pypty_dc_dp_", dir=a.get("tmp"))
        p = _sample_params(folder, a["epochs"], a.get("data_path"))
        p.update(load_one_by_one=lob)
        t0 = time.perf_counter()
        res = pypty.iterative.run(p)
        _sync(bk)
        wall = time.perf_counter() - t0
        with open(os.path.join(res["output_folder"], "loss.csv"), newline="") as fh:
            t = [float(r["wall_time_s"]) for r in csv.DictReader(fh)]
        later = np.diff(t)
        out[f"load_one_by_one={lob}"] = {
            "epochs": len(t), "wall_s": wall, "setup_and_first_epoch_s": t[0] if t else None,
            "s_per_later_epoch": float(np.median(later)) if len(later) else None}
    on, off = out["load_one_by_one=True"], out["load_one_by_one=False"]
    if on["s_per_later_epoch"] and off["s_per_later_epoch"]:
        out["epoch_time_ratio_on_over_off"] = on["s_per_later_epoch"] / off["s_per_later_epoch"]
    return out


WORKERS = {"sample": worker_sample, "memory": worker_memory, "datapath": worker_datapath}


# =========================================================================== report
def _fmt(v, nd=2):
    if isinstance(v, float):
        return f"{v:.{nd}f}" if abs(v) >= 10 ** -nd or v == 0 else f"{v:.2e}"
    return "" if v is None else str(v)


def markdown(report) -> str:
    S = report["sections"]
    meta = report["meta"]
    lines = [f"## Device check: {meta['backend']} ({meta['mode']})", "",
             f"date: {meta['date']} | git: {meta['git']} | total: {meta['total_s']:.0f} s of a "
             f"{meta['budget_s']:.0f} s budget", ""]
    lines += ["| section | status | seconds | note |", "|---|---|---:|---|"]
    for name in SECTIONS:
        s = S.get(name, {})
        note = s.get("reason") or s.get("error", "")
        lines.append(f"| {name} | {s.get('status', 'not run')} | {s.get('seconds', 0.0):.1f} | "
                     f"{str(note).splitlines()[0][:120] if note else ''} |")
    env = S.get("environment", {})
    if env.get("status") == "ok":
        keys = ("python", "numpy", "scipy", "h5py", "cupy", "cuda_runtime", "cuda_driver", "cufft", "nvrtc",
                "device", "compute_capability", "memory_total_GiB", "cpu", "cpus", "backend")
        lines += ["", "| environment | |", "|---|---|"]
        lines += [f"| {k} | {env[k]} |" for k in keys if k in env]
    t = S.get("tests", {})
    if t.get("status") in ("ok", "skipped") and "passed" in t:
        lines += ["", "| tests (-k {}) | passed | failed | errors | skipped | deselected |".format(t.get("keyword")),
                  "|---|---:|---:|---:|---:|---:|",
                  f"| {len(t.get('files', []))} files | {t['passed']} | {t['failed']} | {t['errors']} | "
                  f"{t['skipped']} | {t['deselected']} |"]
        if t.get("failing_tests"):
            lines.append("")
            lines.append("failing: " + ", ".join(f"`{x}`" for x in t["failing_tests"][:20]))
    d = S.get("determinism", {})
    if d.get("status") == "ok":
        lines += ["", "| determinism | loss bitwise | grads bitwise | max rel. diff run-to-run | "
                      "vs NumPy: loss rel. diff | vs NumPy: grad max rel. diff |", "|---|---|---|---:|---:|---:|"]
        for dt in ("complex64", "complex128"):
            r = d.get(dt, {})
            if "identical" in r:
                g = r["grads_bitwise_equal"]
                lines.append(f"| {dt} | {r['loss_bitwise_equal']} | {all(g.values())} "
                             f"({', '.join(k for k, v in g.items() if not v) or 'all equal'}) | "
                             f"{_fmt(r['max_rel_diff_between_runs'])} | {_fmt(r.get('vs_numpy_loss_rel_diff', 'n/a'))}"
                             f" | {_fmt(r.get('vs_numpy_grad_max_rel_diff', 'n/a'))} |")
        pe = d.get("complex64", {}).get("per_evaluation")
        if pe:
            lines += ["", "transfers and syncs of one evaluation (complex64, strict backend's counters): "
                      + ", ".join(f"{k} {v}" for k, v in pe["events"].items())]
    m = S.get("memory", {})
    if m.get("status") == "ok":
        lines += ["", "| memory: one evaluation | batch | estimate MiB (B x bytes_per_pattern) | measured pool MiB "
                      "| measured / estimate | tracemalloc MiB |", "|---|---:|---:|---:|---:|---:|"]
        for r in m.get("models", []):
            if "estimate_MiB" in r:
                lines.append(f"| N={r['N']} S={r['slices']} Mp={r['modes']} {r['dtype']} | {r['batch']} | "
                             f"{_fmt(r['estimate_MiB'], 1)} | {_fmt(r['measured_pool_MiB'], 1)} | "
                             f"{_fmt(r['measured_over_estimate'])} | {_fmt(r.get('tracemalloc_peak_MiB', ''), 1)} |")
        ra = m.get("run_auto", {})
        if "auto_batch" in ra:
            lines += ["", "| sample run, compute_batch=\"auto\" | batch | estimate MiB (fixed + B x per pattern) "
                          "| pool peak used MiB | peak / estimate | pool held at end MiB (total_bytes) |",
                      "|---|---:|---:|---:|---:|---:|",
                      f"| {ra['backend']}, {ra['n_patterns']} patterns | {ra['auto_batch']} | "
                      f"{_fmt(ra['estimate_MiB'], 1)} | {_fmt(ra['pool_peak_used_MiB'], 1)} | "
                      f"{_fmt(ra['pool_peak_over_estimate'])} | {_fmt(ra['pool_peak_total_MiB'], 1)} |"]
    s = S.get("sample", {})
    if s.get("status") == "ok":
        lines += ["", "| sample reconstruction | default_dtype | epochs | wall s | s/epoch | Pearson vs ground truth |",
                  "|---|---|---:|---:|---:|---:|"]
        for k in ("device", "device_single", "numpy"):
            r = s.get(k, {})
            if "wall_s" in r:
                lines.append(f"| {r['backend']} | {r['default_dtype']} | {r['epochs']} | {_fmt(r['wall_s'], 1)} | "
                             f"{_fmt(r['s_per_epoch'], 3)} | {_fmt(r['pearson_ground_truth'], 4)} |")
        if "phase_pearson_device_vs_numpy" in s:
            lines += ["", f"device vs NumPy: speed-up {s['speedup_wall']:.1f}x, phase correlation "
                          f"{s['phase_pearson_device_vs_numpy']:.6f}"]
    dp = S.get("datapath", {})
    if dp.get("status") == "ok":
        what = "bundled sample" if dp.get("data") == "bundled sample" else "first scan rows of the sample"
        lines += ["", f"| data path ({dp.get('backend')}, {what}) | epochs | wall s | setup + first epoch s "
                      "| s / later epoch |",
                  "|---|---:|---:|---:|---:|"]
        for k in ("load_one_by_one=True", "load_one_by_one=False"):
            r = dp.get(k, {})
            if r:
                lines.append(f"| {k} | {r['epochs']} | {_fmt(r['wall_s'], 2)} | {_fmt(r['setup_and_first_epoch_s'], 2)}"
                             f" | {_fmt(r['s_per_later_epoch'], 3)} |")
    th = S.get("throughput", {})
    if th.get("status") == "ok":
        head = ("| N | slices | probe modes | dtype | batch | patterns | FFTs/pattern | model patterns/s | "
                "FFT-bound patterns/s | ratio | bare-FFT patterns/s | ratio to bare | peak MiB |")
        rule = "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        for title, rows in (("throughput (loss + gradient)", th.get("grid", [])),
                            ("batch sweep", th.get("batch_sweep", []))):
            if not rows:
                continue
            lines += ["", f"{title}, median of {th.get('repeat')}:", "", head, rule]
            for r in rows:
                lines.append(f"| {r['N']} | {r['slices']} | {r['modes']} | {r['dtype']} | {r['batch']} | "
                             f"{r['patterns']} | {r['ffts_per_pattern']} | {_fmt(r['model_pps'], 1)} | "
                             f"{_fmt(r['fft_pps'], 1)} | {_fmt(r['ratio'])} | {_fmt(r['bare_fft_pps'], 1)} | "
                             f"{_fmt(r['ratio_bare'])} | {_fmt(r['peak_MiB'], 1)} |")
        if th.get("skipped_configs"):
            lines += ["", f"skipped ({th.get('skipped_reason')}): " + "; ".join(th["skipped_configs"])]
        if th.get("errors"):
            lines += ["", "errors: " + "; ".join(th["errors"])]
    return "\n".join(lines) + "\n"


# =========================================================================== main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny sizes on the CPU (strict backend when pypty has one, else NumPy)")
    ap.add_argument("--out", default="runs/device_check", help="folder for device_check.json and .md")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="wall-time budget; sections that would overrun it are recorded as skipped (default 420)")
    ap.add_argument("--backend", default="auto", choices=["auto", "cupy", "numpy", "strict"],
                    help="device backend (auto: CuPy when a GPU is usable; strict/NumPy in the dry run)")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--worker-args", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        res = WORKERS[args.worker](json.loads(args.worker_args))
        print(RESULT_TAG + json.dumps(res, default=_jsonable), flush=True)
        return 0

    t_start = time.perf_counter()
    bk, worker_env, note = select_backend(args.backend, args.dry_run)
    cfg = configuration(True) if args.dry_run else (configuration(False) if _is_cupy(bk) else cpu_configuration())
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "device_check.json")
    md_path = os.path.join(args.out, "device_check.md")
    tmp = tempfile.mkdtemp(prefix="pypty_device_check_")
    ctx = {"bk": bk, "worker_env": worker_env, "note": note, "cfg": cfg, "tmp": tmp, "small_data": None}
    if cfg["small_rows"]:
        try:
            ctx["small_data"] = small_sample(os.path.join(tmp, "sample_small.h5"), cfg["small_rows"])
        except Exception as exc:  # the sections then use the whole sample
            print(f"device_check: no small sample ({exc}); using the whole sample", file=sys.stderr)
    report = {"meta": {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                       "mode": "dry run" if args.dry_run else "full", "backend": bk.name, "backend_note": note,
                       "budget_s": args.budget_s, "git": blg._git_commit(), "argv": sys.argv[1:]},
              "sections": {}}
    wanted = [s for s in SECTIONS if not args.only or s in args.only]
    try:
        run_sections(report, wanted, ctx, args, t_start, json_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # run folders, phases, the small sample
    report["meta"]["total_s"] = time.perf_counter() - t_start
    with open(json_path, "w") as fh:
        json.dump(report, fh, indent=1, default=_jsonable)
    md = markdown(report)
    with open(md_path, "w") as fh:
        fh.write(md)
    print(f"JSON: {json_path}\nMarkdown: {md_path}\n")
    print(md)
    return 1 if any(s.get("status") == "error" for s in report["sections"].values()) else 0


def run_sections(report, wanted, ctx, args, t_start, json_path):
    """Run the sections in order within the budget; the JSON is rewritten after each."""
    for i, name in enumerate(wanted):
        now = time.perf_counter()
        remaining = args.budget_s - (now - t_start)
        reserve = sum(MIN_S[s] for s in wanted[i + 1:])
        allowed = min(CAPS[name], remaining - reserve)
        if allowed < MIN_S[name]:
            report["sections"][name] = {"status": "skipped", "seconds": 0.0,
                                        "reason": f"budget: {remaining:.0f} s left, {reserve} s reserved for "
                                                  f"later sections, section needs >= {MIN_S[name]} s"}
        else:
            try:
                res = SECTION_FUNCS[name](ctx, now + allowed)
                status = res.pop("status", "ok") if isinstance(res, dict) else "ok"
                report["sections"][name] = {"status": status, **(res if isinstance(res, dict) else {"value": res})}
            except Exception as exc:  # one failing section must not lose the others
                report["sections"][name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                                            "traceback": traceback.format_exc()[-2500:]}
            report["sections"][name]["seconds"] = time.perf_counter() - now
        print(f"device_check: {name}: {report['sections'][name]['status']} "
              f"({report['sections'][name]['seconds']:.1f} s)", file=sys.stderr, flush=True)
        report["meta"]["total_s"] = time.perf_counter() - t_start
        with open(json_path, "w") as fh:  # after every section: a killed run keeps what it had
            json.dump(report, fh, indent=1, default=_jsonable)


if __name__ == "__main__":
    sys.exit(main())
