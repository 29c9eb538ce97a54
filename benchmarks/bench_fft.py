"""Batched 2-D FFT libraries side by side on the shapes pypty uses (issue 12, part 1).

For each shape (B, N, N), dtype and thread count, times one unitary forward
plus one unitary inverse transform over the last two axes with every FFT
library importable here, alternating the libraries within each repeat so
that all see the same machine load, and prints the median time per
transform and the rate in GFLOP/s (the conventional 5 n log2 n flops of a
complex transform of n = N^2 points, per image).

Libraries (each skipped with a note when it does not import):

* ``numpy``   -- ``numpy.fft`` (pocketfft C, single-threaded);
* ``scipy``   -- ``scipy.fft`` (pocketfft C++, ``workers`` threads);
* ``pyfftw``  -- pyFFTW ``FFTW`` objects with ``FFTW_MEASURE`` plans built once per
  shape, dtype and thread count, on aligned buffers, executed out of place
  (what :mod:`pypty.fft` does);
* ``ducc0``   -- ``ducc0.fft.c2c`` (``nthreads``), writing into a preallocated output;
* ``mkl_fft`` -- ``mkl_fft`` (Intel MKL) through its ``scipy.fft`` interface.

Usage::

    python benchmarks/bench_fft.py                       # default grid, markdown table
    python benchmarks/bench_fft.py --sizes 128 --threads 2 --dtypes complex64
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _numpy(a, threads):
    f = lambda x: np.fft.ifft2(np.fft.fft2(x, norm="ortho"), norm="ortho")  # noqa: E731
    return f


def _scipy(a, threads):
    import scipy.fft as sf

    return lambda x: sf.ifft2(sf.fft2(x, norm="ortho", workers=threads), norm="ortho", workers=threads)


def _pyfftw(a, threads):
    from pypty.fft import FFTWTransforms

    tr = FFTWTransforms(threads=threads)
    tr.fft2(a)  # plans made here (FFTW_MEASURE), outside the timing
    tr.ifft2(a)
    return lambda x: tr.ifft2(tr.fft2(x))


def _ducc0(a, threads):
    import ducc0

    out = np.empty_like(a)
    out2 = np.empty_like(a)

    def f(x):
        ducc0.fft.c2c(x, axes=(-2, -1), forward=True, inorm=1, nthreads=threads, out=out)
        ducc0.fft.c2c(out, axes=(-2, -1), forward=False, inorm=1, nthreads=threads, out=out2)
        return out2

    return f


def _mkl(a, threads):
    import mkl_fft.interfaces.scipy_fft as mf

    return lambda x: mf.ifft2(mf.fft2(x, norm="ortho", workers=threads), norm="ortho", workers=threads)


LIBRARIES = {"numpy": _numpy, "scipy": _scipy, "pyfftw": _pyfftw, "ducc0": _ducc0, "mkl_fft": _mkl}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--dtypes", nargs="+", default=["complex64", "complex128"])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--images", type=int, default=0,
                    help="images per batch (default: about 4 MiB of complex64, as the model's batches)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--libraries", nargs="+", default=list(LIBRARIES))
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    libs = []
    for name in args.libraries:
        try:
            LIBRARIES[name](np.zeros((1, 8, 8), np.complex64), 1)
            libs.append(name)
        except Exception as exc:  # not installed / not importable here
            print(f"# {name}: skipped ({type(exc).__name__}: {exc})")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        commit = "?"
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} logical CPUs; load average {os.getloadavg()[0]:.2f}; commit {commit}; median of {args.repeat}")
    print()
    print("| N | images | dtype | threads | " + " | ".join(f"{n} us/transform (GFLOP/s)" for n in libs) + " | fastest |")
    print("|---:|---:|---|---:|" + "---:|" * len(libs) + "---|")
    for n in args.sizes:
        b = args.images or max(1, (4 << 20) // (8 * n * n))
        for dt in args.dtypes:
            a = (rng.standard_normal((b, n, n)) + 1j * rng.standard_normal((b, n, n))).astype(dt)
            for th in args.threads:
                fns = {name: LIBRARIES[name](a, th) for name in libs}
                ref = fns[libs[0]](a.copy())
                for name, f in fns.items():
                    err = np.max(np.abs(f(a.copy()) - ref)) / np.max(np.abs(ref))
                    if err > (1e-4 if dt == "complex64" else 1e-10):
                        raise SystemExit(f"{name} disagrees with {libs[0]}: relative error {err:.2e}")
                times = {name: [] for name in libs}
                for _ in range(args.repeat):
                    for name, f in fns.items():
                        x = a.copy()
                        t0 = time.perf_counter()
                        f(x)
                        times[name].append((time.perf_counter() - t0) / (2 * b))
                flops = 5 * n * n * math.log2(n * n)
                med = {k: statistics.median(v) for k, v in times.items()}
                cells = [f"{1e6 * med[k]:.1f} ({flops / med[k] / 1e9:.1f})" for k in libs]
                print(f"| {n} | {b} | {dt} | {th} | " + " | ".join(cells) + f" | {min(med, key=med.get)} |")


if __name__ == "__main__":
    main()
