"""Hints for GPU runs: a precision notice and a memory-pressure test for freeing CuPy's pool.

Nothing here changes a default; the functions only decide.  The caller wires
them in (the run's log, ``warnings.warn``, the ``smart_memory`` step of
:class:`pypty.engine.session.Reconstruction`).

``gpu_dtype_notice``
    ``default_dtype="double"`` (complex128) is the contract's default and stays
    so.  On a GPU it is the slow choice: the evaluation is bound by memory
    traffic (FFTs, elementwise products), which doubles with the item size,
    and consumer GPUs run FP64 arithmetic at 1/32-1/64 of the FP32 rate.  The
    notice says so once, with what single precision costs.
``should_free_pool``
    ``smart_memory=True`` frees CuPy's cached blocks after every epoch.  That
    returns memory to other processes but makes the next epoch allocate every
    block again from the driver (``cudaMalloc`` + first-touch), which costs
    time on every epoch and gains nothing while the device has room.  The
    policy here frees only under memory pressure: when the device memory in
    use (by this process's pool, cached blocks included, and by anyone else)
    reaches ``fraction`` of the device.
"""
from __future__ import annotations

import numpy as np

__all__ = ["gpu_dtype_notice", "should_free_pool", "device_memory_use"]

_DOUBLE_NAMES = {"double", "complex128", "float64", "c16", "f8"}


def _is_gpu(backend) -> bool:
    if isinstance(backend, str):
        return backend.lower() in ("cupy", "gpu", "cuda")
    name = getattr(backend, "name", None)
    if name is not None:
        return str(name).lower() == "cupy"
    return bool(getattr(backend, "is_gpu", False))


def _is_double(dtype) -> bool:
    if isinstance(dtype, str) and dtype.lower() in _DOUBLE_NAMES:
        return True
    if isinstance(dtype, str) and dtype.lower() == "single":
        return False
    try:
        dt = np.dtype(dtype)
    except TypeError:
        return False
    return dt in (np.dtype(np.complex128), np.dtype(np.float64))


def gpu_dtype_notice(backend, dtype) -> str | None:
    """One-line notice when double precision runs on a GPU, else None.

    Parameters
    ----------
    backend : Backend or str
        A :class:`pypty.backend.Backend` (its ``name``) or a backend name;
        only ``"cupy"`` counts as a GPU.
    dtype : str or dtype
        ``default_dtype`` ("double"/"single") or a NumPy dtype
        (complex128/float64 count as double).

    Returns
    -------
    str or None
    """
    if not (_is_gpu(backend) and _is_double(dtype)):
        return None
    return ('default_dtype="double" (complex128) is running on a GPU; default_dtype="single" (complex64) is '
            "typically about 2x faster there (more on GPUs with slow FP64) and halves the working memory, "
            "at a relative rounding error of about 1e-7 per operation (float32) instead of 1e-16, "
            "far below the Poisson noise of counted data")


def should_free_pool(used_bytes, total_bytes, fraction=0.8) -> bool:
    """True when the device is under memory pressure: ``used_bytes >= fraction * total_bytes``.

    Parameters
    ----------
    used_bytes : int
        Device memory in use, as the device sees it: ``total - free`` of
        ``cupy.cuda.Device().mem_info``, which counts the blocks CuPy's pool
        holds (cached ones included, i.e. what freeing the pool could give
        back) and other processes' memory.
    total_bytes : int
        Device capacity (``mem_info[1]``).  Not positive: unknown, never free.
    fraction : float in (0, 1]
        Threshold.  The default 0.8 leaves room above ``memory_saturation``
        (0.7 of the free memory, the target of ``compute_batch="auto"``).

    Raises
    ------
    ValueError
        ``fraction`` outside (0, 1] or negative ``used_bytes``.
    """
    fraction = float(fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if used_bytes < 0:
        raise ValueError(f"used_bytes must be >= 0, got {used_bytes!r}")
    if not total_bytes > 0:
        return False
    return float(used_bytes) >= fraction * float(total_bytes)


def device_memory_use(backend):
    """``(used_bytes, total_bytes)`` of the current CUDA device for a CuPy backend, else None.

    ``used_bytes = total - free`` from ``cupy.cuda.Device().mem_info`` (the
    argument :func:`should_free_pool` expects).  Returns None on other
    backends and when the device cannot be queried.
    """
    if not _is_gpu(backend):
        return None
    try:
        import cupy

        free, total = cupy.cuda.Device().mem_info
    except Exception:  # no CuPy / no device: no pressure information
        return None
    return int(total) - int(free), int(total)
