"""Array backend: CuPy on a usable CUDA device, otherwise NumPy with ``scipy.fft``.

This is the only module that decides which array library runs the numerics;
everything else receives a :class:`Backend` and writes ``bk.xp.`` /
``bk.fft2`` code against it.  Nothing happens at import time: CuPy is imported
(and a device probed) only when :func:`get_backend` is called.

CuPy is chosen only when it imports, a CUDA device answers, and a tiny
elementwise kernel, a reduction and a small FFT actually run on that device
(:func:`cupy_status`); otherwise NumPy runs, with a one-line warning saying
why when CuPy is installed but unusable.  ``PYPTY_FORCE_CPU=1`` forces NumPy.

``PYPTY_DEVICE=strict`` (or ``get_backend("strict")``) selects the
*device-strict* backend of :mod:`pypty.strict_device`: NumPy underneath, but
its arrays behave like CuPy device arrays (implicit conversions to NumPy,
NumPy functions and ``scipy`` on them, and host/device mixing raise
``TypeError``), the CuPy branches of pypty run (``is_gpu`` is True), and
host<->device transfers and synchronisations are counted per call site
(``bk.counters``).  ``PYPTY_DEVICE`` sets what ``get_backend()`` (no name)
returns: ``strict``, ``numpy``/``cpu``, ``cupy``/``gpu``, or ``auto`` (or
empty, the default: CuPy when usable, else NumPy); an explicit name passed to
:func:`get_backend` is always honoured.  The test suite's ``bk`` fixture
follows ``PYPTY_DEVICE=strict`` (tests/conftest.py).

FFT normalisation is "ortho" everywhere in pypty, so ``fft2`` and ``ifft2``
are unitary and each is the adjoint of the other (this keeps the
dot-product tests and Wirtinger gradients free of N^2 factors).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft

__all__ = ["Backend", "get_backend", "cupy_available", "cupy_status", "DEVICE_ENV"]

#: Environment variable selecting the backend of ``get_backend()`` (``strict``: device-strict stand-in).
DEVICE_ENV = "PYPTY_DEVICE"
_DEVICE_CHOICES = {"": None, "auto": None, "strict": "strict", "numpy": "numpy", "cpu": "numpy",
                   "cupy": "cupy", "gpu": "cupy"}


@functools.lru_cache(maxsize=1)
def cupy_status() -> tuple:
    """``(usable, reason)``: whether CuPy runs on a CUDA device here, and if not, why (one line).

    Usable means: CuPy imports, at least one CUDA device answers, and a tiny
    elementwise kernel, a reduction and a small complex FFT run on it and
    give the right numbers.  The answer is cached (it cannot change within a
    process).  ``PYPTY_FORCE_CPU=1`` forces ``(False, ...)``.  ``reason`` is
    ``""`` when usable, and starts with ``"CuPy is not installed"`` when the
    import fails for that reason (the ordinary CPU install).
    """
    if os.environ.get("PYPTY_FORCE_CPU", "") not in ("", "0"):
        return False, "PYPTY_FORCE_CPU is set"
    try:
        import cupy
    except ModuleNotFoundError as exc:
        if exc.name == "cupy":
            return False, f"CuPy is not installed ({exc})"
        return False, f"CuPy does not import ({type(exc).__name__}: {exc})"
    except Exception as exc:  # a broken install: CUDA libraries missing, version clash, ...
        return False, f"CuPy does not import ({type(exc).__name__}: {exc})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
        if n < 1:
            return False, "CuPy finds no CUDA device"
        a = cupy.arange(16, dtype=cupy.float32)
        s = float((a * 2 + 1).sum())  # an elementwise kernel compiled and run, a reduction read back
        f = cupy.asnumpy(cupy.fft.fft(a.astype(cupy.complex64)))  # cuFFT plan and execution
        cupy.cuda.Device().synchronize()
        if s != 256.0 or abs(complex(f[0]) - 120.0) > 1e-3:
            return False, f"CuPy test kernel/FFT gave wrong results on the device (sum {s}, fft[0] {f[0]})"
    except Exception as exc:  # driver/toolkit mismatch, no kernel image, cuFFT missing, out of memory, ...
        msg = " ".join(str(exc).split())[:200]
        return False, f"CuPy cannot run a test kernel and FFT on the device ({type(exc).__name__}: {msg})"
    return True, ""


def cupy_available() -> bool:
    """Return True when CuPy imports, a CUDA device answers and a test kernel and FFT run on it.

    See :func:`cupy_status` (cached).  Set the environment variable
    ``PYPTY_FORCE_CPU=1`` to force the CPU path.
    """
    return cupy_status()[0]


@functools.lru_cache(maxsize=1)
def _notice_cpu_fallback(reason: str) -> None:
    """One warning per process when CuPy is installed but cannot be used."""
    warnings.warn(f"pypty: running on the CPU (NumPy): {reason}", RuntimeWarning, stacklevel=3)


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
        Threads of the CPU FFTs (ignored on CuPy).
    transforms : object or None
        CPU FFT engine of :mod:`pypty.fft` (FFTW, ducc0 or scipy.fft) used by
        :meth:`fft2` / :meth:`ifft2` on NumPy; None: ``scipy.fft``.
    """

    xp: Any
    name: str
    workers: int = 1
    transforms: Any = None

    @property
    def fft_name(self) -> str:
        """The library doing this backend's 2-D FFTs (``cufft``, ``fftw``, ``ducc0`` or ``scipy``)."""
        if self.name == "cupy":
            return "cufft"
        return "scipy" if self.transforms is None or self.name == "strict" else self.transforms.name

    @property
    def is_gpu(self) -> bool:
        """True for CuPy and for the device-strict stand-in (whose arrays behave as device arrays)."""
        return self.name in ("cupy", "strict")

    @property
    def counters(self):
        """Transfer/sync counters of the strict backend (:class:`pypty.strict_device.Counters`), else None."""
        return getattr(self.xp, "counters", None) if self.name == "strict" else None

    @property
    def simulated_free_bytes(self):
        """Free memory (bytes) the strict backend reports for its simulated device; None on NumPy and CuPy."""
        if self.name != "strict":
            return None
        from .strict_device import DEVICE_BYTES

        return DEVICE_BYTES

    # --- FFTs over the last two axes, unitary ("ortho") ---------------------
    def fft2(self, a, unscaled: bool = False):
        """Unitary 2D FFT over the last two axes; sign exp(-2 pi i k.r).

        ``unscaled=True``: the plain sum ``sum_r a(r) exp(-2 pi i k.r)``
        (sqrt(Y X) times the unitary transform), for callers that fold the
        scale into a kernel they multiply anyway.
        """
        if self.is_gpu:
            return self.xp.fft.fft2(a, norm="backward" if unscaled else "ortho")
        if self.transforms is not None:
            return self.transforms.fft2(a, unscaled=unscaled, threads=self.workers)
        return scipy.fft.fft2(a, norm="backward" if unscaled else "ortho", workers=self.workers)

    def ifft2(self, a, unscaled: bool = False):
        """Unitary inverse 2D FFT over the last two axes (adjoint of fft2).

        ``unscaled=True``: the plain sum ``sum_k a(k) exp(+2 pi i k.r)`` (no 1/(Y X)).
        """
        if self.is_gpu:
            return self.xp.fft.ifft2(a, norm="forward" if unscaled else "ortho")
        if self.transforms is not None:
            return self.transforms.ifft2(a, unscaled=unscaled, threads=self.workers)
        return scipy.fft.ifft2(a, norm="forward" if unscaled else "ortho", workers=self.workers)

    def describe(self) -> str:
        """One line naming the libraries that compute (for results files and logs), e.g.
        ``"numpy 2.4.6; FFT: fftw (pyFFTW 0.15.1), 2 threads; fused CPU kernels: numba 0.68.1"``."""
        from importlib.metadata import PackageNotFoundError, version

        def ver(dist):
            try:
                return version(dist)
            except PackageNotFoundError:
                return "?"

        if self.name == "cupy":
            return f"cupy {getattr(self.xp, '__version__', None) or ver('cupy')}; FFT: cuFFT"
        if self.name == "strict":
            return f"strict device stand-in (numpy {np.__version__}); FFT: scipy.fft"
        fft = self.fft_name
        lib = {"fftw": f"pyFFTW {ver('pyFFTW')}", "ducc0": f"ducc0 {ver('ducc0')}",
               "scipy": f"scipy {ver('scipy')}"}.get(fft, fft)
        from .operators import cpu_kernels

        kernels = f"numba {ver('numba')}" if cpu_kernels.available() else "off (NumPy expressions)"
        return (f"numpy {np.__version__}; FFT: {fft} ({lib}), {self.workers} threads; "
                f"fused CPU kernels: {kernels}")

    def with_workers(self, workers: int) -> "Backend":
        """The same backend with ``workers`` threads per CPU transform (the FFT engine and its plans shared)."""
        return dataclasses.replace(self, workers=int(workers))

    # --- transfers ------------------------------------------------------------
    def asarray(self, a, dtype=None):
        """Copy/convert ``a`` onto this backend's device."""
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        """Return a NumPy array (device -> host copy on CuPy)."""
        if self.is_gpu and not isinstance(a, np.ndarray):
            return self.xp.asnumpy(a)
        return np.asarray(a)

    def clear_fft_plans(self) -> int:
        """Drop the cached FFT plans (``remove_fft_cache``): CuPy's cuFFT plan cache on a GPU, the FFTW plans of
        :class:`pypty.fft.FFTWTransforms` on the CPU; ducc0, ``scipy.fft`` and the strict stand-in keep none
        that pypty can drop.  Returns the number of plans dropped (CuPy: the cache's size before)."""
        if self.name == "cupy":
            cache = self.xp.fft.config.get_plan_cache()
            n = int(cache.get_curr_size())
            cache.clear()
            return n
        if self.name == "strict" or self.transforms is None:
            return 0
        return int(self.transforms.clear_plans())

    def free_memory_pool(self) -> None:
        """Release cached device memory blocks (CuPy only; no-op on NumPy)."""
        if self.is_gpu:
            self.xp.get_default_memory_pool().free_all_blocks()


@functools.lru_cache(maxsize=8)
def _engine(fft, workers):
    from .fft import make_transforms

    return make_transforms(fft, workers)


def _transforms(fft, workers):
    """One FFT engine per (name, threads) and process, so that its plans are made once."""
    if fft is None:
        from .fft import FFT_ENV

        fft = os.environ.get(FFT_ENV, "").strip().lower() or "auto"
    return _engine(fft, workers)


def get_backend(name: str | None = None, workers: int | None = None, fft: str | None = None) -> Backend:
    """Pick the array backend.

    Parameters
    ----------
    name : {"numpy", "cupy", "strict", None}
        None: the choice of the environment variable ``PYPTY_DEVICE`` if set,
        else CuPy when :func:`cupy_available` (a test kernel and FFT ran on
        the device), else NumPy (with a one-line warning saying why when CuPy
        is installed but unusable).  "strict": the device-strict stand-in
        (:mod:`pypty.strict_device`).  An explicit name is always honoured.
    workers : int, optional
        Threads of the CPU FFTs; default ``os.cpu_count()``.
    fft : {"auto", "fftw", "ducc0", "scipy", None}
        CPU FFT engine (:func:`pypty.fft.make_transforms`); None: the
        environment variable ``PYPTY_FFT``, else ``"auto"`` (the first
        installed of :data:`pypty.fft.AUTO_ORDER`: ducc0, which is installed
        with pypty, then FFTW through pyFFTW, then ``scipy.fft``).  Ignored on
        CuPy.

    Raises
    ------
    RuntimeError
        ``name="cupy"`` requested but no usable CUDA device (the reason is in the message).
    ValueError
        Unknown ``name``, ``PYPTY_DEVICE`` or ``fft`` / ``PYPTY_FFT`` value.
    ImportError
        The FFT engine named by ``fft`` / ``PYPTY_FFT`` is not installed.
    """
    if workers is None:
        workers = os.cpu_count() or 1
    env = os.environ.get(DEVICE_ENV, "").strip().lower()
    if env not in _DEVICE_CHOICES:
        raise ValueError(f"environment variable {DEVICE_ENV}={env!r} is not one of "
                         f"{sorted(k for k in _DEVICE_CHOICES if k)}")
    if name is None:
        name = _DEVICE_CHOICES[env]
    if name is None:
        ok, why = cupy_status()
        if not ok and not why.startswith(("CuPy is not installed", "PYPTY_FORCE_CPU")):
            _notice_cpu_fallback(why)
        name = "cupy" if ok else "numpy"
    if name == "numpy":
        return Backend(np, "numpy", workers, _transforms(fft, workers))
    if name == "strict":
        from . import strict_device

        return Backend(strict_device.xp, "strict", workers)
    if name == "cupy":
        ok, why = cupy_status()
        if not ok:
            raise RuntimeError(f"backend 'cupy' requested but CuPy cannot be used: {why}")
        import cupy

        return Backend(cupy, "cupy", workers)
    raise ValueError(f"unknown backend {name!r}; expected 'numpy', 'cupy', 'strict' or None")
