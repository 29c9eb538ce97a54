"""The communicator of a run: one process (:class:`SerialComm`) or R MPI processes (:class:`MPIComm`).

Every rank holds the parameters and the optimizer state; the patterns are
sharded (:mod:`pypty.distributed.shard`).  Per loss evaluation each rank
computes the data loss and gradient of its own patterns and
:meth:`MPIComm.evaluate` reduces one flat float64 buffer ``[loss, error
flag, gradient blocks]``: ``Reduce`` (sum) to rank 0, then ``Bcast`` from
rank 0, so every rank receives the *same bits* by construction (an
``Allreduce`` may round differently per rank).  L-BFGS and its line search
then take identical decisions on every rank.

The one-process run uses :class:`SerialComm`, whose methods are no-ops (the
R = 1 case of the same code: nothing is packed or copied).

Detection (:func:`detect`)
--------------------------
Importing pypty never imports mpi4py.  A run is distributed when

* ``mpi4py.MPI`` is already imported (``python -m mpi4py ...`` imports it,
  as does a script that did ``from mpi4py import MPI``), or a launcher's
  environment variable says so (``PMI_SIZE``, ``OMPI_COMM_WORLD_SIZE``,
  ``MV2_COMM_WORLD_SIZE`` > 1, or ``PMIX_RANK`` set: mpiexec of MPICH,
  Intel MPI, Open MPI, MVAPICH, srun), and
* ``MPI.COMM_WORLD.size > 1``.

``PYPTY_MPI=0`` in the environment turns detection off (each process runs
alone).  A launcher that says ``size > 1`` without mpi4py installed is an
error (R copies of the same run would otherwise start).  Tests and advanced
users pass a communicator explicitly (``pypty.iterative.run(p, comm=...)``).

Faults
------
An exception on one rank inside a guarded section (:meth:`MPIComm.evaluate`,
:meth:`MPIComm.agree`) is caught, the rank still takes part in the
collective with its error flag set, and then *every* rank raises the same
:class:`DistributedError` (naming the rank and the original error; on the
failing rank chained to it).  Code outside guarded sections must behave the
same on every rank (it acts on replicated arrays); a rank that dies ends the
job through the MPI runtime (``python -m mpi4py`` aborts on an uncaught
exception).
"""
from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

from .shard import BufferLayout, pack, unpack, shard_bounds

__all__ = ["DistributedError", "SerialComm", "MPIComm", "detect", "resolve", "select_gpu", "fft_workers",
           "fft_engine", "checksum", "SIZE_VARIABLES"]

#: Environment variables in which MPI launchers put the number of processes.
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")

#: Environment variable that turns detection off when "0".
DISABLE_ENV = "PYPTY_MPI"

#: Environment variable that sets the CPU threads of each rank (default: cores / ranks on the node).
WORKERS_ENV = "PYPTY_FFT_WORKERS"
#: Flag value a rank puts into the reduced buffer when it received a stop signal (errors count 1 each).
STOP_FLAG = 2.0**20


class DistributedError(RuntimeError):
    """An error on one rank of a distributed run, raised identically on every rank.

    Attributes
    ----------
    rank : int
        The first rank that failed.
    agreed : bool
        True: every rank raises it at the same point (so collectives after
        it, e.g. the barrier before the ranks leave, are safe).
    """

    def __init__(self, message: str, rank: int = -1, agreed: bool = True):
        super().__init__(message)
        self.rank, self.agreed = rank, agreed


class CommStats:
    """Counters of the collectives of one communicator (for logs and ``benchmarks/bench_distributed.py``).

    ``reductions`` (evaluations reduced), ``seconds`` (wall time inside the
    Reduce + Bcast, including waiting for the slowest rank), ``bytes``
    (float64 buffer bytes per rank and reduction, summed),
    ``pack_seconds`` (packing, device <-> host copies, unpacking).
    """

    def __init__(self):
        self.reductions, self.seconds, self.bytes, self.pack_seconds = 0, 0.0, 0, 0.0

    def as_dict(self) -> dict:
        return dict(reductions=self.reductions, seconds=self.seconds, bytes=self.bytes,
                    pack_seconds=self.pack_seconds)


def _message(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def checksum(xp, arrays: dict) -> tuple:
    """A cheap bit-sensitive checksum of ``arrays`` (name -> array): per array, the sum of its 32-bit words.

    Computed where the arrays live (no host copy of the arrays); a change of
    any bit of any value changes the sum.  Returns a tuple of (name, int).
    """
    out = []
    for name in sorted(arrays):
        a = arrays[name]
        if a is None:
            continue
        a = xp.ascontiguousarray(a).reshape(-1)
        words = a.view(xp.uint32) if a.nbytes % 4 == 0 else a.view(xp.uint8)
        out.append((name, int(xp.sum(words, dtype=xp.uint64))))
    return tuple(out)


class SerialComm:
    """The communicator of a one-process run: rank 0 of 1; every method is a no-op or the identity."""

    size, rank, local_rank, local_size = 1, 0, 0, 1
    distributed = False

    def __init__(self):
        self.stats = CommStats()

    @property
    def is_root(self) -> bool:
        """True on the rank that writes files and prints (always, here)."""
        return True

    def shard(self, n: int) -> tuple:
        """``(start, stop)`` of the patterns of this rank: all of them."""
        return 0, int(n)

    def evaluate(self, xp, to_host, to_device, specs, compute):
        """``compute()`` -> ``(loss, grads)``, unchanged (exceptions propagate as they are)."""
        return compute()

    def agree(self, fn, what: str = ""):
        """``fn()`` (exceptions propagate as they are)."""
        return fn()

    def allsum(self, array):
        """``array`` itself (the sum over one rank)."""
        return array

    def allgather(self, obj) -> list:
        return [obj]

    def barrier(self) -> None:
        return None

    def check_replicated(self, xp, arrays: dict, what: str = "") -> None:
        """Nothing to compare on one rank."""
        return None

    def close(self) -> None:
        """Release the communicator's resources (nothing here)."""
        return None


class MPIComm(SerialComm):
    """R processes of an mpi4py communicator (see the module docstring).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        Duplicated here (a collective call on every rank of ``comm``), so
        pypty's messages never mix with the caller's.
    """

    distributed = True

    def __init__(self, comm):
        from mpi4py import MPI

        super().__init__()
        self._MPI = MPI
        #: Stop signals this rank received (set by the driver, pypty.engine.interrupts with defer=True), and
        #: the exception a deferred one is raised as (signum -> exception), raised on every rank together.
        self.pending_signals, self.on_stop = [], None
        self.comm = comm.Dup()
        self.size, self.rank = int(self.comm.Get_size()), int(self.comm.Get_rank())
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank, self.local_size = int(local.Get_rank()), int(local.Get_size())
        local.Free()

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> tuple:
        """``(start, stop)``: the contiguous pattern indices of this rank (see :func:`.shard.shard_bounds`)."""
        return shard_bounds(n, self.size, self.rank)

    # ------------------------------------------------------------------ collectives
    def close(self) -> None:
        """Free the duplicated communicator (every rank calls it when the run ends)."""
        if self.comm is not None:
            self.comm.Free()
            self.comm = None

    def _reduce_bcast(self, host: np.ndarray) -> np.ndarray:
        """Sum of ``host`` (float64, 1D) over the ranks, identical bits on every rank (Reduce to 0 + Bcast)."""
        MPI = self._MPI
        host = np.ascontiguousarray(host, dtype=np.float64)
        out = np.empty_like(host)
        t = time.perf_counter()
        self.comm.Reduce([host, MPI.DOUBLE], [out, MPI.DOUBLE], op=MPI.SUM, root=0)
        self.comm.Bcast([out, MPI.DOUBLE], root=0)
        self.stats.seconds += time.perf_counter() - t
        self.stats.bytes += host.nbytes
        return out

    def _raise_if_any(self, err, what: str) -> None:
        """Collective: raise the same :class:`DistributedError` on every rank when any rank passed an error."""
        msgs = self.comm.allgather(None if err is None else _message(err))
        bad = [r for r, m in enumerate(msgs) if m is not None]
        if not bad:
            return
        r = bad[0]
        more = f" (and {len(bad) - 1} more rank(s))" if len(bad) > 1 else ""
        exc = DistributedError(f"rank {r} of {self.size} failed during {what}{more}: {msgs[r]}", rank=r)
        raise exc from err

    def evaluate(self, xp, to_host, to_device, specs, compute):
        """Run ``compute()`` on this rank's patterns and reduce: ``(loss, grads)`` summed over the ranks.

        Parameters
        ----------
        xp : array module of the blocks
        to_host, to_device : callables (device array <-> NumPy array)
        specs : sequence of (name, shape, dtype)
            The gradient blocks ``compute`` returns, in an order that is the
            same on every rank (also used when ``compute`` fails).
        compute : callable() -> (float, dict name -> array)

        Returns
        -------
        (float, dict)
            Identical bits on every rank; each block in its own dtype.

        Raises
        ------
        DistributedError
            On every rank, when ``compute`` raised on any rank.
        """
        layout = BufferLayout(specs)
        err = None
        try:
            loss, grads = compute()
            t = time.perf_counter()
            buf = to_host(pack(xp, layout, loss, 0.0, grads))
            self.stats.pack_seconds += time.perf_counter() - t
        except BaseException as exc:  # taken to the collective; raised on every rank after it
            err = exc
            buf = pack(np, layout, 0.0, 1.0, None)  # the agreed size, on the host
        pending = self.pending_signals
        if err is None and pending:  # a stop signal this rank received (deferred, see pypty.engine.interrupts)
            buf[1] = STOP_FLAG
        out = self._reduce_bcast(buf)
        self.stats.reductions += 1
        flags = float(out[1])
        if flags % STOP_FLAG != 0.0:  # errors: 1 per failed rank
            self._raise_if_any(err, "a loss evaluation")
        if flags >= STOP_FLAG and self.on_stop is not None:  # a stop signal on some rank: every rank stops here
            # one more (rare) collective so that every rank names the same signal: the lowest rank's first one
            got = [s for s in self.comm.allgather(int(pending[0]) if pending else None) if s is not None]
            raise self.on_stop(got[0] if got else signal.SIGTERM)
        t = time.perf_counter()
        loss, _, grads = unpack(xp, layout, to_device(out))
        self.stats.pack_seconds += time.perf_counter() - t
        return loss, grads

    def agree(self, fn, what: str = "the set-up"):
        """Collective: ``fn()`` on every rank; when it raised on any rank, the same error on every rank."""
        err, res = None, None
        try:
            res = fn()
        except BaseException as exc:
            err = exc
        self._raise_if_any(err, what)
        return res

    def allsum(self, array):
        """Sum of a NumPy float array over the ranks (float64, identical bits on every rank), same shape."""
        a = np.asarray(array, dtype=np.float64)
        return self._reduce_bcast(a.reshape(-1)).reshape(a.shape)

    def allgather(self, obj) -> list:
        return self.comm.allgather(obj)

    def barrier(self) -> None:
        self.comm.Barrier()

    def check_replicated(self, xp, arrays: dict, what: str = "") -> None:
        """Collective: raise :class:`DistributedError` on every rank when the ranks' ``arrays`` differ in any bit."""
        sums = self.comm.allgather(checksum(xp, arrays))
        if any(s != sums[0] for s in sums[1:]):
            bad = [r for r, s in enumerate(sums) if s != sums[0]]
            names = sorted({n for r in bad for (n, v), (_, v0) in zip(sums[r], sums[0]) if v != v0})
            raise DistributedError(f"the parameters of the ranks diverged{(' ' + what) if what else ''}: "
                                   f"rank(s) {bad} differ from rank 0 in {names or 'the set of arrays'} "
                                   f"(every rank must compute the same; a non-deterministic reduction or "
                                   f"rank-dependent code is a bug)")


# ---------------------------------------------------------------------------- detection
def _launcher_size() -> int:
    """Processes a launcher announced in the environment (0: none announced; PMIx: -1 = ask MPI)."""
    for name in SIZE_VARIABLES:
        v = os.environ.get(name, "").strip()
        if v.isdigit():
            return int(v)
    return -1 if "PMIX_RANK" in os.environ else 0


def detect():
    """The communicator of this process: :class:`MPIComm` of ``COMM_WORLD`` when distributed, else :class:`SerialComm`.

    See the module docstring for the rule.  Collective when distributed.

    Raises
    ------
    RuntimeError
        A launcher started several processes but mpi4py cannot be imported.
    """
    if os.environ.get(DISABLE_ENV, "").strip() == "0":
        return SerialComm()
    size = _launcher_size()
    if "mpi4py.MPI" not in sys.modules and (size == 0 or size == 1):
        return SerialComm()
    try:
        from mpi4py import MPI
    except ImportError as exc:
        if size > 1:
            raise RuntimeError(f"pypty: started as one of {size} MPI processes but mpi4py cannot be imported "
                               f"({exc}); install the 'mpi' extra (pip install 'pypty[mpi]') or set "
                               f"{DISABLE_ENV}=0 to run each process alone") from exc
        return SerialComm()
    if MPI.COMM_WORLD.Get_size() <= 1:
        return SerialComm()
    return MPIComm(MPI.COMM_WORLD)


def resolve(comm=None):
    """A pypty communicator from ``comm``: None -> :func:`detect`; an mpi4py communicator -> :class:`MPIComm`
    (or :class:`SerialComm` for one rank); a pypty communicator -> itself."""
    if comm is None:
        return detect()
    if isinstance(comm, SerialComm):
        return comm
    if hasattr(comm, "Get_size") and hasattr(comm, "Dup"):
        return MPIComm(comm) if comm.Get_size() > 1 else SerialComm()
    raise TypeError(f"comm must be None, an mpi4py communicator or a pypty communicator, got {type(comm).__name__}")


def select_gpu(comm) -> int | None:
    """Make GPU ``local_rank % n_gpus`` CuPy's current device (distributed runs that will use CuPy only).

    Called before the backend is chosen, so no rank creates a context on
    another rank's GPU.  Does nothing (returns None) for a one-process run,
    when ``PYPTY_DEVICE`` asks for another backend, when ``PYPTY_FORCE_CPU``
    is set, or when CuPy or a device is missing.  Returns the device number.
    """
    if not comm.distributed or os.environ.get("PYPTY_DEVICE", "").strip().lower() in ("numpy", "strict") \
            or os.environ.get("PYPTY_FORCE_CPU"):
        return None
    import importlib.util

    if importlib.util.find_spec("cupy") is None:
        return None
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
        if n < 1:
            return None
        dev = comm.local_rank % n
        cupy.cuda.Device(dev).use()
        return dev
    except Exception:  # no driver or device: the backend choice reports it
        return None


def fft_workers(comm) -> int | None:
    """CPU threads per rank (``Backend.workers``: batch threads and FFT threads): ``PYPTY_FFT_WORKERS`` if set,
    else (distributed) cores // ranks on the node.

    None (the backend's default, all cores) for a one-process run without
    the environment variable.

    Raises
    ------
    ValueError
        ``PYPTY_FFT_WORKERS`` is not a positive integer.
    """
    env = os.environ.get(WORKERS_ENV, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"environment variable {WORKERS_ENV}={env!r} must be a positive integer")
        return int(env)
    if not comm.distributed:
        return None
    return max(1, (os.cpu_count() or 1) // max(1, comm.local_size))


def fft_engine(comm) -> str | None:
    """CPU FFT engine of a distributed run: one that gives the same bits on every rank.

    FFTW's ``FFTW_MEASURE`` plans are chosen by timing, so two processes may
    pick different algorithms for the same shape and their results differ in
    the last bits: the ranks would then drift apart (and the parameter
    checksum stops the run).  Distributed runs therefore use ducc0 (when
    installed) or ``scipy.fft``, whose algorithms depend on the shape only,
    unless ``PYPTY_FFT`` names an engine explicitly (FFTW then at the user's
    risk: the driver warns).  None for a one-process run (the backend's own
    choice).
    """
    if not comm.distributed:
        return None
    env = os.environ.get("PYPTY_FFT", "").strip().lower()
    if env and env != "auto":
        return env
    import importlib.util

    return "ducc0" if importlib.util.find_spec("ducc0") is not None else "scipy"
