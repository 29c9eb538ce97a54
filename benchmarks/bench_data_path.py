#!/usr/bin/env python
"""Patterns/s of the data path alone: ``get_data`` over one epoch of batches, before and after preprocessing once.

The data path is what a run does to hand the model the measured patterns of
a batch: read them, preprocess them (``data_bin``, ``flip_ky``,
``data_shift_vector``, ``data_pad``, ``data_multiplier``), put them in FFT
order and on the compute device.  This script times only that, with the
contract default ``load_one_by_one=True``, for

* ``before``: the per-batch path of earlier versions (every batch read from
  the file and preprocessed again), taken from ``pypty/data/sources.py`` at
  ``--old-ref`` (``git show``) and imported from a temporary file;
* ``after``: :class:`pypty.data.sources.DeviceBatches` over the current
  :class:`~pypty.data.sources.PatternSource`, which preprocesses all
  patterns once into a host copy and gathers batches from it.  The one-time
  build is timed separately (``build s``) and the first epoch including it
  is given too (``after, epoch 1``: build + one epoch); the build is the
  median of ``--repeat`` builds on fresh sources.  On CuPy, ``after``
  streams through pinned buffers with prefetch (``load_one_by_one=True``),
  or gathers on the device with ``--on-device``.

Datasets: the bundled sample (``pypty/data/sample_srtio3.h5``, 784 patterns
of 64 x 64 px, uint16, gzip) and a synthetic one (``--synthetic`` patterns of
``--size`` px, float32 Poisson counts, an uncompressed ``.h5`` written to a
temporary folder).  Batches: the patterns in order, ``--batch`` per batch (a
run's default sequence).  Each timing is the median of ``--repeat`` epochs
(``before`` and ``after`` alternate, so they see the same machine load);
``time.perf_counter``, after ``cupy.cuda.Device().synchronize()`` on CuPy.
The output is a Markdown table.

Usage::

    python benchmarks/bench_data_path.py [--backend numpy|cupy] [--repeat 3] [--batch 64]
        [--synthetic 4096] [--size 64] [--old-ref 64f520f] [--only NAME ...] [--on-device]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

from pypty.backend import get_backend
from pypty.data.sources import DeviceBatches, PatternSource, Preprocessing

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SAMPLE = os.path.join(ROOT, "pypty", "data", "sample_srtio3.h5")

#: Preprocessing settings compared (name -> keyword arguments of Preprocessing).
OPTIONS = {
    "none": {},
    "shift (0.37, -0.21) px": {"shift": (0.37, -0.21)},
    "bin 2": {"bin": 2},
    "pad 8": {"pad": 8},
    "shift + bin 2 + pad 8": {"shift": (0.37, -0.21), "bin": 2, "pad": 8},
}


def old_sources(ref):
    """The module ``pypty/data/sources.py`` at git ``ref``, imported from a temporary file (None if unavailable)."""
    try:
        text = subprocess.run(["git", "-C", ROOT, "show", f"{ref}:pypty/data/sources.py"], check=True,
                              capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = os.path.join(tempfile.mkdtemp(prefix="pypty-bench-"), "old_sources.py")
    with open(path, "w") as fh:
        fh.write(text)
    spec = importlib.util.spec_from_file_location("old_sources", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_sources"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def synthetic_file(n, size, folder):
    path = os.path.join(folder, f"synthetic_{n}x{size}.h5")
    rng = np.random.default_rng(0)
    ky, kx = np.mgrid[:size, :size] - size // 2
    disc = (np.hypot(ky, kx) < size / 4).astype(np.float64) * 200.0
    with h5py.File(path, "w") as fh:
        ds = fh.create_dataset("data", (n, size, size), dtype=np.float32)
        for s in range(0, n, 512):
            ds[s:s + 512] = rng.poisson(disc, size=(min(512, n - s), size, size)).astype(np.float32)
    return path


def sync(bk):
    if bk.is_gpu:
        import cupy

        cupy.cuda.Device().synchronize()


def epoch(get, batches, bk):
    t = time.perf_counter()
    for b in batches:
        get(b)
    sync(bk)
    return time.perf_counter() - t


def measure(path, prep, bk, old, batch, repeat, on_device=False):
    """dict of timings (s) for one dataset and one preprocessing setting."""
    builds = []
    for _ in range(repeat):  # the one-time build, on fresh sources
        src = PatternSource(path, prep=prep, load_one_by_one=True)
        t = time.perf_counter()
        src.preprocessed()
        builds.append(time.perf_counter() - t)
        src.close()
    build = statistics.median(builds)
    src = PatternSource(path, prep=prep, load_one_by_one=True)
    src.preprocessed()
    n = src.n
    batches = [np.arange(i, min(i + batch, n)) for i in range(0, n, batch)]
    get = DeviceBatches(bk, src, keep_on_device=on_device, prefetch=True)
    old_src = None
    if old is not None:
        old_src = old.PatternSource(path, prep=old.Preprocessing(**vars_of(prep)), load_one_by_one=True)
        old_get = lambda idx: bk.asarray(old_src.batch(idx))  # the get_data of setup.py at that revision
        epoch(old_get, batches[:1], bk)  # warm-up
    epoch(get, batches, bk)  # warm-up
    before, after = [], []
    for _ in range(repeat):
        if old_src is not None:
            before.append(epoch(old_get, batches, bk))
        after.append(epoch(get, batches, bk))
    for s in (src, old_src):
        if s is not None:
            s.close()
    after = statistics.median(after)
    return {"n": n, "before": statistics.median(before) if before else float("nan"),
            "after": after, "build": build, "first": build + after}


def vars_of(prep):
    return {"multiplier": prep.multiplier, "pad": prep.pad, "bin": prep.bin, "flip_ky": prep.flip_ky,
            "shift": prep.shift}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--synthetic", type=int, default=4096, help="patterns of the synthetic dataset (0: none)")
    ap.add_argument("--size", type=int, default=64, help="px of the synthetic patterns")
    ap.add_argument("--old-ref", default="64f520f", help="git revision of the 'before' sources.py")
    ap.add_argument("--only", nargs="*", default=None, help="preprocessing settings to run (names of OPTIONS)")
    ap.add_argument("--on-device", action="store_true",
                    help="CuPy: 'after' holds the dataset in device memory (load_one_by_one=False)")
    args = ap.parse_args(argv)
    bk = get_backend(args.backend)
    old = old_sources(args.old_ref)
    if old is None:
        print(f"# git revision {args.old_ref} not available: no 'before' column", file=sys.stderr)
    tmp = tempfile.mkdtemp(prefix="pypty-bench-data-")
    datasets = [("sample (784 x 64 x 64, uint16, gzip)", SAMPLE)]
    if args.synthetic:
        datasets.append((f"synthetic ({args.synthetic} x {args.size} x {args.size}, float32)",
                         synthetic_file(args.synthetic, args.size, tmp)))
    names = args.only or list(OPTIONS)
    head = ("| dataset | preprocessing | before, patterns/s | after, patterns/s | speed-up | build s | "
            "after, epoch 1 incl. build, patterns/s |")
    print(f"# backend {bk.name}, batch {args.batch}, median of {args.repeat} epochs, before = {args.old_ref}")
    print(head)
    print("|" + "---|" * 7)
    for label, path in datasets:
        for name in names:
            r = measure(path, Preprocessing(**OPTIONS[name]), bk, old, args.batch, args.repeat, args.on_device)
            n = r["n"]
            print(f"| {label} | {name} | {n / r['before']:,.0f} | {n / r['after']:,.0f} | "
                  f"{r['before'] / r['after']:,.0f}x | {r['build']:.2f} | {n / r['first']:,.0f} |", flush=True)
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
