"""Sharding of the patterns over ranks, and the flat buffer of one loss evaluation.

Patterns are split into contiguous shards: rank ``r`` of ``R`` owns the
global pattern indices ``[start_r, stop_r)`` with the first ``N % R`` ranks
holding one pattern more (:func:`shard_bounds`), so ``R = 3`` with ``N = 10``
gives 4, 3, 3.  A contiguous shard is one contiguous read from an HDF5 file.

The flat buffer (:func:`pack`, :func:`unpack`) is what one evaluation
reduces: ``[loss, error flag, block 1, block 2, ...]``, float64, with every
complex block stored as (real, imag) pairs and every real block widened to
float64 (the accumulation dtype whatever the working precision).  Its size
per evaluation is ``2 + sum over refined blocks of (2 if complex else 1) x
block.size`` float64 values (see ``docs/distributed.md``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["shard_bounds", "shard_of", "filter_sequence", "BufferLayout", "pack", "unpack"]


def shard_bounds(n: int, size: int, rank: int) -> tuple:
    """``(start, stop)``: the contiguous pattern indices owned by ``rank`` of ``size`` ranks.

    Parameters
    ----------
    n : int >= 0
        Number of patterns.
    size : int >= 1
        Number of ranks.
    rank : int in [0, size)

    Returns
    -------
    (int, int)
        ``stop - start`` is ``n // size`` or ``n // size + 1`` (the first
        ``n % size`` ranks take one more); empty (start == stop) when
        ``n < size`` for the last ranks.

    Raises
    ------
    ValueError
        ``size < 1``, ``rank`` outside ``[0, size)`` or ``n < 0``.
    """
    n, size, rank = int(n), int(size), int(rank)
    if size < 1 or not 0 <= rank < size or n < 0:
        raise ValueError(f"shard_bounds: need n >= 0, size >= 1 and 0 <= rank < size, got n={n}, size={size}, "
                         f"rank={rank}")
    q, r = divmod(n, size)
    start = rank * q + min(rank, r)
    return start, start + q + (1 if rank < r else 0)


def shard_of(n: int, size: int) -> np.ndarray:
    """Owner rank of every pattern: int64 (n,), non-decreasing (contiguous shards of :func:`shard_bounds`)."""
    owner = np.empty(int(n), dtype=np.int64)
    for r in range(int(size)):
        a, b = shard_bounds(n, size, r)
        owner[a:b] = r
    return owner


def filter_sequence(sequence, start: int, stop: int) -> np.ndarray:
    """The entries of ``sequence`` (int array of pattern indices) in ``[start, stop)``, in their order.

    Repeated indices stay repeated (a pattern listed twice counts twice, as
    in the one-process data term).  The result may be empty.
    """
    seq = np.asarray(sequence, dtype=np.int64)
    return seq[(seq >= start) & (seq < stop)]


class BufferLayout:
    """Where each block lies in the flat float64 buffer of one evaluation.

    Parameters
    ----------
    specs : sequence of (name, shape, dtype)
        The gradient blocks in a fixed order (the same on every rank).

    Attributes
    ----------
    size : int
        float64 values in the buffer: 2 (loss, error flag) + the blocks.
    slices : dict name -> (slice, shape, dtype, is_complex)
    """

    HEADER = 2  # [loss, error flag]

    def __init__(self, specs):
        self.slices, pos = {}, self.HEADER
        for name, shape, dtype in specs:
            dtype = np.dtype(dtype)
            cplx = dtype.kind == "c"
            count = int(np.prod(shape, dtype=np.int64)) * (2 if cplx else 1)
            self.slices[name] = (slice(pos, pos + count), tuple(int(s) for s in shape), dtype, cplx)
            pos += count
        self.size = pos

    @property
    def nbytes(self) -> int:
        """Bytes of the buffer (float64)."""
        return 8 * self.size


def pack(xp, layout: BufferLayout, loss: float, error: float, grads) -> object:
    """The flat float64 buffer ``[loss, error, blocks...]`` (an array of ``xp``, on the device of the blocks).

    ``grads``: dict name -> array of the layout's shape, or None (a rank whose
    evaluation failed: zeros, so its buffer still has the agreed size).
    """
    buf = xp.zeros(layout.size, dtype=xp.float64)
    buf[0] = float(loss)
    buf[1] = float(error)
    if grads is None:
        return buf
    for name, (sl, shape, dtype, cplx) in layout.slices.items():
        g = grads[name]
        if tuple(g.shape) != shape:
            raise ValueError(f"pack: gradient block {name!r} has shape {tuple(g.shape)}, the layout {shape}")
        if cplx:
            g = xp.ascontiguousarray(g, dtype=xp.complex128).reshape(-1)
            buf[sl] = g.view(xp.float64)
        else:
            buf[sl] = g.reshape(-1)
    return buf


def unpack(xp, layout: BufferLayout, buf) -> tuple:
    """``(loss, error, grads)`` of a reduced buffer; each block back in its own dtype (a new array)."""
    loss, error = float(buf[0]), float(buf[1])
    grads = {}
    for name, (sl, shape, dtype, cplx) in layout.slices.items():
        part = buf[sl]
        if cplx:
            part = xp.ascontiguousarray(part).view(xp.complex128)
        grads[name] = part.reshape(shape).astype(dtype, copy=True)
    return loss, error, grads
