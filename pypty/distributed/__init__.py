"""Exact-gradient data-parallel reconstruction over MPI processes (see ``docs/distributed.md``).

* :mod:`pypty.distributed.comm`: detection of an MPI launch, the
  communicator of a run (:class:`SerialComm` for one process, the no-op
  case; :class:`MPIComm` for R ranks), the reduction of one loss evaluation,
  the cross-rank checksum of the parameters, GPU selection per node-local
  rank.
* :mod:`pypty.distributed.shard`: contiguous shards of the patterns and the
  flat float64 buffer an evaluation reduces.

Importing this package does not import mpi4py.
"""
from .comm import DistributedError, MPIComm, SerialComm, detect, resolve
from .shard import filter_sequence, shard_bounds

__all__ = ["DistributedError", "MPIComm", "SerialComm", "detect", "resolve", "filter_sequence", "shard_bounds"]
