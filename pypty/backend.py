"""Array backend: CuPy on a usable CUDA device, otherwise NumPy with ``scipy.fft``.

This is the only module that decides which array library runs the numerics;
everything else receives a :class:`Backend` and writes ``bk.xp.`` /
``bk.fft2`` code against it.  Nothing happens at import time: CuPy is imported
(and a device probed) only when :func:`get_backend` is called.

FFT normalisation is "ortho" everywhere in pypty, so ``fft2`` and ``ifft2``
are unitary and each is the adjoint of the other (this keeps the
dot-product tests and Wirtinger gradients free of N^2 factors).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft

__all__ = ["Backend", "get_backend", "cupy_available"]


@functools.lru_cache(maxsize=1)
def cupy_available() -> bool:
    """Return True when CuPy imports and at least one CUDA device answers.

    The answer is cached (it cannot change within a process); this is the
    only cached state of the module.  Set the environment variable
    ``PYPTY_FORCE_CPU=1`` to force the CPU path.
    """
    if os.environ.get("PYPTY_FORCE_CPU", "") not in ("", "0"):
        return False
    try:
        import cupy  # noqa: F401

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # any import/driver problem means "no GPU"
        return False


@dataclass(frozen=True)
class Backend:
    """Array module plus FFTs for one device.

    Attributes
    ----------
    xp : module
        ``numpy`` or ``cupy``.
    name : str
        ``"numpy"`` or ``"cupy"``.
    workers : int
        Threads for ``scipy.fft`` (ignored on CuPy).
    """

    xp: Any
    name: str
    workers: int = 1

    @property
    def is_gpu(self) -> bool:
        return self.name == "cupy"

    # --- FFTs over the last two axes, unitary ("ortho") ---------------------
    def fft2(self, a):
        """Unitary 2D FFT over the last two axes; sign exp(-2 pi i k.r)."""
        if self.is_gpu:
            return self.xp.fft.fft2(a, norm="ortho")
        return scipy.fft.fft2(a, norm="ortho", workers=self.workers, overwrite_x=False)

    def ifft2(self, a):
        """Unitary inverse 2D FFT over the last two axes (adjoint of fft2)."""
        if self.is_gpu:
            return self.xp.fft.ifft2(a, norm="ortho")
        return scipy.fft.ifft2(a, norm="ortho", workers=self.workers, overwrite_x=False)

    # --- transfers ------------------------------------------------------------
    def asarray(self, a, dtype=None):
        """Copy/convert ``a`` onto this backend's device."""
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        """Return a NumPy array (device -> host copy on CuPy)."""
        if self.is_gpu and not isinstance(a, np.ndarray):
            return self.xp.asnumpy(a)
        return np.asarray(a)

    def free_memory_pool(self) -> None:
        """Release cached device memory blocks (CuPy only; no-op on NumPy)."""
        if self.is_gpu:
            self.xp.get_default_memory_pool().free_all_blocks()


def get_backend(name: str | None = None, workers: int | None = None) -> Backend:
    """Pick the array backend.

    Parameters
    ----------
    name : {"numpy", "cupy", None}
        None: CuPy when :func:`cupy_available`, else NumPy.
    workers : int, optional
        ``scipy.fft`` threads; default ``os.cpu_count()``.

    Raises
    ------
    RuntimeError
        ``name="cupy"`` requested but no usable CUDA device.
    ValueError
        Unknown ``name``.
    """
    if workers is None:
        workers = os.cpu_count() or 1
    if name is None:
        name = "cupy" if cupy_available() else "numpy"
    if name == "numpy":
        return Backend(np, "numpy", workers)
    if name == "cupy":
        if not cupy_available():
            raise RuntimeError("backend 'cupy' requested but CuPy or a CUDA device is not available")
        import cupy

        return Backend(cupy, "cupy", workers)
    raise ValueError(f"unknown backend {name!r}; expected 'numpy', 'cupy' or None")
