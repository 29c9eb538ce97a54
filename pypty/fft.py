"""CPU FFT engines for the NumPy backend: unitary batched 2-D transforms over the last two axes.

pypty's transforms are always unitary (``norm="ortho"``) 2-D transforms over
the last two axes of a C-contiguous complex array (see :mod:`pypty.backend`).
On the CPU several libraries can do them; they differ several-fold in speed
on the same machine (``benchmarks/bench_fft.py`` and
``benchmarks/bench_loss_grad.py --fft all``; tables in ``docs/performance.md``).
Each engine here has the same two methods,
``fft2(a, unscaled=False, threads=None)`` and ``ifft2(...)``, which return a
new array and never modify ``a`` (``threads``: threads of this call; None:
the engine's own number); every engine may be called from several threads at once:

* :class:`DuccTransforms` -- ``ducc0.fft.c2c`` (the default: no planning, so
  the same bits in every process, and it scales across the model's batch
  threads, where it measured fastest in the model);
* :class:`FFTWTransforms` -- FFTW through pyFFTW (``pip install pyfftw`` or the
  ``fftw`` extra), plans made once per (shape, dtype, direction, threads)
  with ``FFTW_MEASURE`` and kept, shared between processes through a wisdom
  file; fastest for one transform at a time;
* :class:`ScipyTransforms` -- ``scipy.fft`` (pocketfft), always available: the fallback.

``unscaled=True`` gives the plain sums instead (forward: no factor; inverse:
no 1/(Y X)), for callers that fold the scale into a kernel.

:func:`make_transforms` picks one by name (``"auto"``: the first installed in
the order of :data:`AUTO_ORDER`).  The environment variable ``PYPTY_FFT``
overrides the default choice.  Nothing is imported or planned at import time.
"""
from __future__ import annotations

import math
import os
import threading

import numpy as np

__all__ = ["ScipyTransforms", "FFTWTransforms", "DuccTransforms", "make_transforms", "AUTO_ORDER",
           "FFT_ENV", "CACHE_ENV", "available_engines", "cache_dir"]

#: Environment variable naming the CPU FFT engine (``scipy``, ``fftw``, ``ducc0`` or ``auto``).
FFT_ENV = "PYPTY_FFT"
#: Preference of ``"auto"``: first installed wins.
AUTO_ORDER = ("ducc0", "fftw", "scipy")


_COMPLEX = (np.dtype(np.complex64), np.dtype(np.complex128))


def _scale(a) -> float:
    return 1.0 / math.sqrt(a.shape[-1] * a.shape[-2])


def _aligned_copy(a, alignment):
    """A C-contiguous copy of ``a`` whose data pointer is a multiple of ``alignment`` bytes."""
    buf = np.empty(a.nbytes + alignment, np.uint8)
    off = (-buf.ctypes.data) % alignment
    b = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
    b[...] = a
    return b


class ScipyTransforms:
    """``scipy.fft.fft2/ifft2`` with ``norm="ortho"`` and ``workers`` threads."""

    name = "scipy"

    def __init__(self, threads: int = 1):
        import scipy.fft

        self._sf = scipy.fft
        self.threads = int(threads)

    def fft2(self, a, unscaled=False, threads=None):
        return self._sf.fft2(a, norm="backward" if unscaled else "ortho",
                             workers=self.threads if threads is None else threads)

    def ifft2(self, a, unscaled=False, threads=None):
        return self._sf.ifft2(a, norm="forward" if unscaled else "ortho",
                              workers=self.threads if threads is None else threads)

    def clear_plans(self) -> int:
        """Nothing to drop: ``scipy.fft`` keeps its own small plan cache, which has no public API; returns 0."""
        return 0


class DuccTransforms:
    """``ducc0.fft.c2c`` over the last two axes, scaled by 1/sqrt(Ny Nx) (unitary), ``nthreads`` threads."""

    name = "ducc0"

    def __init__(self, threads: int = 1):
        import ducc0.fft

        self._c2c = ducc0.fft.c2c
        self.threads = int(threads)

    def _run(self, a, unscaled, forward, threads):
        out = np.empty(a.shape, np.result_type(a.dtype, np.complex64))
        return self._c2c(a, axes=(-2, -1), forward=forward, inorm=0 if unscaled else 1,
                         nthreads=self.threads if threads is None else threads, out=out)

    def fft2(self, a, unscaled=False, threads=None):
        return self._run(a, unscaled, True, threads)

    def ifft2(self, a, unscaled=False, threads=None):
        return self._run(a, unscaled, False, threads)

    def clear_plans(self) -> int:
        """Nothing to drop: ducc0 keeps no plans between calls that pypty could release; returns 0."""
        return 0


#: Environment variable: folder of pypty's caches (FFTW wisdom); ``0`` or ``off``: no FFTW wisdom file.
CACHE_ENV = "PYPTY_CACHE_DIR"


def cache_dir():
    """Folder of pypty's caches: ``PYPTY_CACHE_DIR``, else ``$XDG_CACHE_HOME/pypty`` or ``~/.cache/pypty``; None: off."""
    d = os.environ.get(CACHE_ENV, "").strip()
    if d.lower() in ("0", "off", "none", "false"):
        return None
    if d:
        return d
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pypty")


class _Wisdom:
    """FFTW wisdom shared by the processes of one machine through a file (plans reproducible across processes).

    With ``FFTW_MEASURE`` FFTW times candidate algorithms and keeps the
    fastest; under different machine load two processes can pick different
    algorithms for the same transform, whose results differ in the last bits.
    An exact restart in a new process then would not reproduce the run.  So
    every plan made is added to a wisdom file per machine
    (``<cache>/fftw_wisdom-<host>.pickle``, written atomically), and before
    making a plan a process imports that file: a transform measured once on
    a machine is planned the same way by every later process there.
    Unreadable or unwritable files are reported once (RuntimeWarning) and
    the plans are then measured per process.
    """

    def __init__(self, pyfftw):
        self._pf = pyfftw
        d = cache_dir()
        self.path = None if d is None else os.path.join(d, f"fftw_wisdom-{_host_tag()}.pickle")
        self._stamp = None
        self._warned = False

    def _warn(self, what, exc):
        if not self._warned:
            import warnings

            warnings.warn(f"pypty: FFTW wisdom file {self.path}: cannot {what} ({type(exc).__name__}: {exc}); "
                          f"FFT plans are measured per process (exact restarts in a new process may differ in the "
                          f"last bits). Set {CACHE_ENV} to a writable folder.", RuntimeWarning, stacklevel=5)
            self._warned = True

    def load(self):
        if self.path is None:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._warn("read it", exc)
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            import pickle

            with open(self.path, "rb") as f:
                wisdom = pickle.load(f)
            if not (isinstance(wisdom, tuple) and len(wisdom) == 3 and all(isinstance(w, bytes) for w in wisdom)):
                raise ValueError("not FFTW wisdom (a tuple of 3 byte strings)")
            self._pf.import_wisdom(wisdom)
            self._stamp = stamp
        except Exception as exc:  # a damaged or foreign file: measured plans instead
            self._warn("read it", exc)

    def save(self):
        if self.path is None:
            return
        try:
            import pickle
            import tempfile

            self.load()  # merge what other processes added meanwhile
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self.path), prefix=".fftw_wisdom-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    pickle.dump(self._pf.export_wisdom(), f)
                os.replace(tmp, self.path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            st = os.stat(self.path)
            self._stamp = (st.st_mtime_ns, st.st_size)
        except Exception as exc:
            self._warn("write it", exc)


def _host_tag() -> str:
    import platform
    import re

    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{platform.node() or 'host'}-{platform.machine() or 'cpu'}")[:80]


class FFTWTransforms:
    """FFTW (pyFFTW) with plans made once per (shape, dtype, direction, threads) and kept (``FFTW_MEASURE``).

    A call on an array with a shape, dtype and thread count seen before
    reuses a kept plan: FFTW runs directly on the caller's input when it is
    aligned as the plan needs (otherwise on an aligned copy) and writes a new
    output array.  Several Python threads may transform at once: each call
    takes an idle plan of its key from a pool (or makes one) and returns it
    afterwards, so a plan is never used by two threads together.  Making a
    plan with ``FFTW_MEASURE`` takes up to a few hundred ms for a new size,
    once per process (later plans of the same size reuse FFTW's wisdom).
    Each plan keeps the two aligned buffers it was made on (an idle plan
    points at them, never at a caller's arrays); at most :attr:`max_keys`
    keys are kept, least recently used dropped first.
    """

    name = "fftw"
    max_keys = 12

    def __init__(self, threads: int = 1, effort: str = "FFTW_MEASURE"):
        import pyfftw

        self._pyfftw = pyfftw
        self.threads = int(threads)
        self.effort = effort
        self._pools = {}  # key -> idle plans; insertion order = least recently used first
        self._lock = threading.Lock()  # guards the pools and FFTW's planner (not thread-safe)
        self._fallback = ScipyTransforms(threads)  # real or unusual inputs
        self._wisdom = _Wisdom(pyfftw)

    def _acquire(self, key):
        with self._lock:
            pool = self._pools.pop(key, None)
            if pool is None:
                pool = []
                while len(self._pools) >= self.max_keys:
                    self._pools.pop(next(iter(self._pools)))
            self._pools[key] = pool  # most recently used last
            if pool:
                return pool.pop()
            shape, dtype, direction, threads = key
            pf = self._pyfftw
            a = pf.empty_aligned(shape, dtype=dtype)
            b = pf.empty_aligned(shape, dtype=dtype)
            self._wisdom.load()  # plans measured by other processes on this machine are reused, not re-measured
            plan = pf.FFTW(a, b, axes=(-2, -1), direction=direction, flags=(self.effort,), threads=threads)
            self._wisdom.save()
            return plan, a, b

    def _release(self, key, entry):
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                pool.append(entry)

    def _run(self, a, unscaled, direction, threads):
        a = np.asarray(a)
        threads = self.threads if threads is None else int(threads)
        if a.dtype not in _COMPLEX or a.ndim < 2:
            return getattr(self._fallback, "fft2" if direction == "FFTW_FORWARD" else "ifft2")(a, unscaled, threads)
        shape = a.shape
        # (images, Y, X) with canonical strides (size-1 axes of a contiguous array may have any stride)
        a = np.ascontiguousarray(a).reshape((-1,) + shape[-2:])
        key = (a.shape, a.dtype, direction, threads)
        entry = self._acquire(key)
        plan, park_in, park_out = entry
        try:
            if a.ctypes.data % plan.input_alignment:
                a = _aligned_copy(a, plan.input_alignment)
            dest = np.empty(a.shape, a.dtype)
            if dest.ctypes.data % plan.output_alignment:
                dest = _aligned_copy(dest, plan.output_alignment)
            # FFTW runs directly on the caller's input (out of place: the input is preserved) and on ``dest``;
            # pyFFTW's __call__ is not used: it copies misaligned inputs into the array of the previous call
            plan.update_arrays(a, dest)
            plan.execute()
        finally:
            plan.update_arrays(park_in, park_out)  # an idle plan holds its own buffers, not the caller's arrays
            self._release(key, entry)
        if not unscaled:  # unitary
            np.multiply(dest, a.real.dtype.type(_scale(a)), out=dest)
        return dest.reshape(shape)

    def clear_plans(self) -> int:
        """Drop every kept plan and its two aligned buffers (``remove_fft_cache``); returns how many were dropped.

        FFTW's wisdom stays loaded, so the next transform of a size seen
        before re-plans in microseconds and gets the same plan (the same bits).
        A plan in use by another thread is not dropped: it returns to a fresh
        pool when its transform ends.
        """
        with self._lock:
            n = sum(len(pool) for pool in self._pools.values())
            self._pools.clear()
        return n

    def fft2(self, a, unscaled=False, threads=None):
        return self._run(a, unscaled, "FFTW_FORWARD", threads)

    def ifft2(self, a, unscaled=False, threads=None):
        return self._run(a, unscaled, "FFTW_BACKWARD", threads)


_ENGINES = {"scipy": ScipyTransforms, "fftw": FFTWTransforms, "ducc0": DuccTransforms}
_MODULES = {"scipy": "scipy.fft", "fftw": "pyfftw", "ducc0": "ducc0"}


def available_engines() -> tuple:
    """Names of the CPU FFT engines whose library imports here (``scipy`` always)."""
    import importlib.util

    return tuple(n for n in _ENGINES if importlib.util.find_spec(_MODULES[n].split(".")[0]) is not None)


def make_transforms(name: str | None = None, threads: int = 1):
    """Build a CPU FFT engine.

    Parameters
    ----------
    name : {"auto", "scipy", "fftw", "ducc0", None}
        None: the environment variable ``PYPTY_FFT`` if set, else ``"auto"``
        (the first installed of :data:`AUTO_ORDER`).
    threads : int
        Threads per transform.

    Raises
    ------
    ValueError
        Unknown name.
    ImportError
        The named library is not installed (``pip install pyfftw`` / ``ducc0``).
    """
    if name is None:
        name = os.environ.get(FFT_ENV, "").strip().lower() or "auto"
    if name == "auto":
        avail = available_engines()
        name = next(n for n in AUTO_ORDER if n in avail)
    if name not in _ENGINES:
        raise ValueError(f"unknown FFT engine {name!r} (environment variable {FFT_ENV} or fft_engine); "
                         f"expected one of {sorted(_ENGINES) + ['auto']}")
    try:
        return _ENGINES[name](threads)
    except ImportError as exc:
        raise ImportError(f"FFT engine {name!r} needs the package {_MODULES[name].split('.')[0]!r}, "
                          f"which does not import here ({exc}); install it or choose 'scipy'") from exc
