"""``compute_batch="auto"``: the batch size from free memory and an estimate of the working set.

Working memory of one loss-and-gradient evaluation of a batch of B patterns
(window Y x X px, S slices, Mo object modes, Mp probe modes, complex item
size c bytes), measured as the ``tracemalloc`` peak on the NumPy backend
for S in 1..3, Mo in 1..2, Mp in 1..3, is bounded from above (by 1.2-1.35x
of the measured peak of :class:`pypty.model.multislice.MultisliceModel`) by::

    per pattern = Y X c (3 S Mo Mp + 2 Mo Mp + 2 S Mo + 4 Mp + 4)

(stored waves entering every slice, the back-propagated wave and its FFT
temporaries, object patches, shift ramps, intensities, data and index
arrays).  The arrays that do not scale with B (object, probe, positions,
their gradients, L-BFGS history of ``2 hist_length`` vectors and about six
vectors of line-search work) and, on a GPU without ``load_one_by_one``, the
whole dataset are counted once.  The estimate is multiplied by
:data:`SAFETY` (FFT plans, allocator slack) and the batch is the largest B
with ``fixed + B per_pattern <= memory_saturation * free``, clipped to
``1..N``.

On the CPU the batch is also capped at the cache-friendly size of
:func:`cpu_batch` (one wave array of about 1 MiB, at least 4 patterns, at
least one batch per worker thread: batches run in ``bk.workers`` threads at
once) and so that its working set stays below :data:`CPU_MAX_BATCH_BYTES`:
larger batches do not run faster there but slower.

On a GPU the per-pattern estimate (``bytes_per_pattern(..., gpu=True)``)
also counts the prefetched next batch of data (8 bytes per pixel at most);
the deterministic object-gradient scatter
(:func:`pypty.operators.patches.scatter_patches_windows`) needs temporaries
of one window only (:data:`GPU_SCATTER_BYTES_PER_PX` = 0 per batch pixel).

Where the data live (:func:`host_copy_fits`, :func:`place_data`): the
preprocessed patterns are held on the host once per run (in memory when they
take at most :data:`HOST_COPY_FRACTION` of the available host memory, else
in a temporary file), and on a GPU also in device memory when
``load_one_by_one=False`` and they fit next to the run's working memory.
"""
from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["SAFETY", "CPU_MAX_BATCH_BYTES", "CPU_WAVE_BYTES", "CPU_MIN_BATCH", "cpu_batch", "HOST_COPY_FRACTION", "GPU_SCATTER_BYTES_PER_PX", "bytes_per_pattern",
           "fixed_bytes", "free_memory_bytes", "host_memory_bytes", "auto_compute_batch", "resolve_compute_batch",
           "host_copy_fits", "place_data"]

#: Multiplier on the estimated working memory.
SAFETY = 1.25
#: Largest working set of one batch on the CPU (bytes).
CPU_MAX_BATCH_BYTES = 128 * 2**20
#: Target size of one (B, Mo, Mp, Y, X) wave array of a batch on the CPU (bytes): see :func:`cpu_batch`.
CPU_WAVE_BYTES = 2**20
#: Smallest automatic batch on the CPU.
CPU_MIN_BATCH = 4
#: L-BFGS history length assumed when hist_length is infinite.
_HIST_CAP = 50
#: Largest share of the available host memory the preprocessed host copy may take (else a temporary file).
HOST_COPY_FRACTION = 0.5
#: Extra device bytes per window pixel of a batch on a GPU for the object-gradient scatter (one window at a time).
GPU_SCATTER_BYTES_PER_PX = 0


def bytes_per_pattern(window_yx, n_slices, n_obj_modes, n_probe_modes, complex_dtype=np.complex128, gpu=False):
    """Estimated working memory (bytes) per pattern of a batch (see module docstring).

    ``gpu=True`` adds the GPU-only terms: the prefetched next batch (8
    bytes per pixel at most) and :data:`GPU_SCATTER_BYTES_PER_PX`.
    """
    y, x = (int(v) for v in window_yx)
    s, mo, mp = int(n_slices), int(n_obj_modes), int(n_probe_modes)
    c = np.dtype(complex_dtype).itemsize
    per = y * x * c * (3 * s * mo * mp + 2 * mo * mp + 2 * s * mo + 4 * mp + 4)
    if gpu:
        per += y * x * (GPU_SCATTER_BYTES_PER_PX + 8)
    return per


def fixed_bytes(canvas_yx, window_yx, n_slices, n_obj_modes, n_probe_modes, n_patterns,
                complex_dtype=np.complex128, hist_length=10, data_on_device_bytes=0):
    """Estimated memory (bytes) that does not scale with the batch size."""
    c = np.dtype(complex_dtype).itemsize
    params = (int(n_slices) * int(n_obj_modes) * int(canvas_yx[0]) * int(canvas_yx[1])
              + int(n_probe_modes) * int(window_yx[0]) * int(window_yx[1])) * c + int(n_patterns) * 16
    hist = _HIST_CAP if (hist_length is None or not math.isfinite(float(hist_length))) \
        else min(int(hist_length), _HIST_CAP)
    return params * (6 + 2 * hist) + int(data_on_device_bytes)


def free_memory_bytes(bk):
    """Free memory of the compute device in bytes.

    GPU (CuPy): ``cupy.cuda.Device().mem_info`` free bytes plus the bytes
    held free in CuPy's memory pool.  CPU: available host memory
    (``psutil.virtual_memory().available``, else ``os.sysconf``).
    """
    if getattr(bk, "is_gpu", False):
        xp = bk.xp  # cupy, or the strict stand-in (which simulates a device)
        free, _total = xp.cuda.Device().mem_info
        return int(free) + int(xp.get_default_memory_pool().free_bytes())
    return host_memory_bytes()


def host_memory_bytes():
    """Available host memory in bytes (``psutil``, else ``os.sysconf``)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a dependency
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def host_copy_fits(nbytes, available=None):
    """True when a preprocessed host copy of ``nbytes`` takes at most :data:`HOST_COPY_FRACTION` of ``available``.

    ``available``: host bytes (None: :func:`host_memory_bytes`).
    """
    avail = host_memory_bytes() if available is None else int(available)
    return int(nbytes) <= HOST_COPY_FRACTION * avail


def place_data(bk, data_bytes, load_one_by_one, memory_saturation=1.0, working_bytes=0, free_bytes=None):
    """Whether the whole preprocessed dataset is held in device memory, and a log line.

    On the CPU: never (the host copy serves the batches).  On a GPU: when
    ``load_one_by_one`` is False and ``SAFETY (working_bytes + data_bytes)
    <= memory_saturation * free`` (free: :func:`free_memory_bytes`, or
    ``free_bytes``); otherwise the batches are streamed from the host copy.
    """
    if not getattr(bk, "is_gpu", False):
        return False, "data: preprocessed once, batches gathered from the host copy"
    if load_one_by_one:
        return False, (f"data: streamed from the preprocessed host copy ({data_bytes / 2**20:.1f} MiB), "
                       f"next batch prefetched (load_one_by_one=True)")
    free = free_memory_bytes(bk) if free_bytes is None else int(free_bytes)
    if SAFETY * (float(working_bytes) + float(data_bytes)) <= float(memory_saturation) * free:
        return True, f"data: {data_bytes / 2**20:.1f} MiB held in device memory"
    return False, (f"data: {data_bytes / 2**20:.1f} MiB do not fit in device memory next to the "
                   f"{working_bytes / 2**20:.1f} MiB of the run (free {free / 2**30:.2f} GiB x memory_saturation "
                   f"{memory_saturation}); streamed from the preprocessed host copy instead")


def auto_compute_batch(free_bytes, per_pattern_bytes, fixed, memory_saturation, n_patterns):
    """Largest batch B in 1..n_patterns with ``SAFETY (fixed + B per_pattern) <= saturation free``.

    Never less than 1 (even when the estimate says nothing fits) and never
    more than the number of patterns.

    Raises ValueError for a non-positive per-pattern size, saturation outside
    (0, 1] or fewer than one pattern.
    """
    if not per_pattern_bytes > 0:
        raise ValueError(f"per_pattern_bytes must be > 0, got {per_pattern_bytes!r}")
    if not 0 < memory_saturation <= 1:
        raise ValueError(f"memory_saturation must be in (0, 1], got {memory_saturation!r}")
    if int(n_patterns) < 1:
        raise ValueError(f"n_patterns must be >= 1, got {n_patterns!r}")
    budget = float(memory_saturation) * max(float(free_bytes), 0.0) / SAFETY - float(fixed)
    b = int(budget // float(per_pattern_bytes)) if budget > 0 else 1
    return max(1, min(b, int(n_patterns)))


def cpu_batch(window_yx, n_obj_modes, n_probe_modes, complex_dtype, n_patterns, workers=1):
    """Cache-friendly batch on the CPU: one wave array of about :data:`CPU_WAVE_BYTES`, at least :data:`CPU_MIN_BATCH`.

    ``B = CPU_WAVE_BYTES / (Mo Mp Y X itemsize)`` clipped to ``[CPU_MIN_BATCH, ceil(n_patterns / workers)]``
    (every CPU worker thread gets a batch; never more than the patterns).  A fixed rule, not a
    timing at run time, so that a restarted run makes the same batches (the same bits); it comes
    from a sweep of ``benchmarks/bench_loss_grad.py --batch`` (docs/performance.md, 2026-12-01):
    the fastest batch kept one (B, Mo, Mp, Y, X) wave at 0.5-2 MiB for N = 64-256, 1-4 probe modes
    and both precisions; batches 4-8 times larger ran 1.3-2.5 times slower.
    """
    image = int(window_yx[0]) * int(window_yx[1]) * np.dtype(complex_dtype).itemsize
    per = max(1, int(n_obj_modes) * int(n_probe_modes) * image)
    b = max(CPU_MIN_BATCH, int(CPU_WAVE_BYTES // per))
    return max(1, min(b, -(-int(n_patterns) // max(1, int(workers))), int(n_patterns)))


def resolve_compute_batch(p, bk, n_patterns, window_yx, canvas_yx, n_slices, n_obj_modes, n_probe_modes,
                          complex_dtype, data_on_device_bytes=0, free_bytes=None):
    """``compute_batch`` of validated parameters ``p`` as an int, and a log line.

    An int is returned as given; "auto" is sized with
    :func:`auto_compute_batch` from :func:`free_memory_bytes` (or
    ``free_bytes`` when given) and ``p["memory_saturation"]``.
    """
    cb = p["compute_batch"]
    if cb != "auto":
        return int(cb), f"compute_batch {int(cb)}"
    per = bytes_per_pattern(window_yx, n_slices, n_obj_modes, n_probe_modes, complex_dtype,
                            gpu=bool(getattr(bk, "is_gpu", False)))
    hist = p["hist_length"]
    hist = 10 if callable(hist) else hist
    fixed = fixed_bytes(canvas_yx, window_yx, n_slices, n_obj_modes, n_probe_modes, n_patterns, complex_dtype,
                        hist, data_on_device_bytes)
    free = free_memory_bytes(bk) if free_bytes is None else int(free_bytes)
    b = auto_compute_batch(free, per, fixed, float(p["memory_saturation"]), n_patterns)
    if not getattr(bk, "is_gpu", False):
        b = max(1, min(b, int(CPU_MAX_BATCH_BYTES // per), cpu_batch(window_yx, n_obj_modes, n_probe_modes,
                                                                   complex_dtype, n_patterns,
                                                                   int(getattr(bk, "workers", 1)))))
    return b, (f"compute_batch auto: {b} (free {free / 2**30:.2f} GiB x memory_saturation "
               f"{p['memory_saturation']}, about {per / 2**20:.2f} MiB per pattern, {fixed / 2**20:.1f} MiB fixed)")
