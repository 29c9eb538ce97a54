"""Fused CPU kernels (Numba) for the element-wise, gather and scatter passes of the multislice model.

On the NumPy backend each step of the model written with NumPy expressions
makes one or more full passes over a (B, Mo, Mp, Y, X) array and allocates a
temporary per pass (``conj()`` copies, products, sums over modes, the flat
index arrays of the gather and scatter).  The kernels here do each step in
one multi-threaded pass, in place or into an output the caller owns, with no
temporaries.  They compute exactly what the operator functions of
:mod:`pypty.operators` compute (the NumPy expressions stay the reference;
``tests/operators/test_cpu_kernels.py`` compares each kernel with its
reference, most of them bit for bit), so the dot-product tests of those
operators cover them too.

The kernels are used only on the NumPy backend when Numba imports
(:func:`available`); set ``PYPTY_CPU_KERNELS=0`` to use the NumPy
expressions instead.  They are compiled on first use (a few seconds per
kernel and dtype) and the machine code is cached on disk next to this file
(``cache=True``), so later processes start at once.  Threads: Numba's
(``NUMBA_NUM_THREADS``, default all cores).

Determinism: every kernel is a fixed sequence of floating-point operations
for a given input and thread count (reductions over pixels are split into a
fixed number of row blocks), so two evaluations give the same bits and an
exact restart holds.  The scatter-add adds the windows of a batch in batch
order, as ``numpy.add.at`` does, with the rows of one window in parallel
(they are distinct canvas pixels).
"""
from __future__ import annotations

import functools
import os

import numpy as np

__all__ = ["available", "KERNELS_ENV", "kernels"]

#: Environment variable: ``0`` turns the fused CPU kernels off (NumPy expressions instead).
KERNELS_ENV = "PYPTY_CPU_KERNELS"


def available() -> bool:
    """True when the fused kernels will be used: Numba imports and ``PYPTY_CPU_KERNELS`` is not ``0``."""
    if os.environ.get(KERNELS_ENV, "").strip() in ("0", "false", "no", "off"):
        return False
    return kernels() is not None


@functools.lru_cache(maxsize=1)
def kernels():
    """The compiled-on-demand kernel namespace, or None when Numba does not import."""
    try:
        import numba  # noqa: F401
    except Exception:  # not installed, or broken (llvmlite mismatch): the NumPy expressions run
        return None
    return _build()


def _build():
    import numba as nb
    from types import SimpleNamespace

    jit = functools.partial(nb.njit, parallel=False, cache=True, nogil=True)

    @jit
    def gather_windows(out, obj, corners):
        """out[s, b, m] = obj[s, m, cy:cy+Y, cx:cx+X]: out (S, B, Mo, Y, X), obj (S, Mo, Ny, Nx), corners (B, 2)."""
        S, B, Mo, Y, X = out.shape
        for s in range(S):
            for b in nb.prange(B):
                cy = corners[b, 0]
                cx = corners[b, 1]
                for m in range(Mo):
                    for y in range(Y):
                        for x in range(X):
                            out[s, b, m, y, x] = obj[s, m, cy + y, cx + x]

    @jit
    def scatter_conj_product(grad, g, psi, corners):
        """grad[m, cy+y, cx+x] += sum_p conj(psi[b, m|0, p, y, x]) g[b, m, p, y, x], windows in batch order.

        grad (Mo, Ny, Nx); g (B, Mo, Mp, Y, X); psi (B, Mo or 1, Mp, Y, X).
        """
        B, Mo, Mp, Y, X = g.shape
        shared = psi.shape[1] == 1
        for b in range(B):  # batch order: the order of numpy.add.at
            cy = corners[b, 0]
            cx = corners[b, 1]
            for m in range(Mo):
                mq = 0 if shared else m
                for y in nb.prange(Y):  # distinct canvas rows within one window
                    row = grad[m, cy + y, cx:cx + X]
                    if Mp == 1:
                        for x in range(X):
                            row[x] += np.conj(psi[b, mq, 0, y, x]) * g[b, m, 0, y, x]
                    else:
                        for x in range(X):
                            v = np.conj(psi[b, mq, 0, y, x]) * g[b, m, 0, y, x]
                            for p in range(1, Mp):
                                v += np.conj(psi[b, mq, p, y, x]) * g[b, m, p, y, x]
                            row[x] += v

    @jit
    def multiply_conj_patches(g, u):
        """In place: g[b, m, p] = g[b, m, p] * conj(u[b, m]); g (B, Mo, Mp, Y, X), u (B, Mo, Y, X)."""
        B, Mo, Mp, Y, X = g.shape
        for i in nb.prange(B * Mo):
            b = i // Mo
            m = i % Mo
            for p in range(Mp):
                for y in range(Y):
                    for x in range(X):
                        g[b, m, p, y, x] = g[b, m, p, y, x] * np.conj(u[b, m, y, x])

    @jit
    def multiply_kernel(h, k):
        """In place: h[i] = h[i] * k, h (I, Y, X) (images), k (Y, X) (one kernel for all images)."""
        I, Y, X = h.shape
        for i in nb.prange(I):
            for y in range(Y):
                for x in range(X):
                    h[i, y, x] = h[i, y, x] * k[y, x]

    @jit
    def intensity(out, psi_hat, scale):
        """out[b] = scale * sum_{m,p} |psi_hat[b, m, p]|^2: out (B, Y, X) real, psi_hat (B, Mo, Mp, Y, X).

        ``scale`` has the dtype of ``out``; the sum runs in that dtype, over modes in order.
        """
        B, Mo, Mp, Y, X = psi_hat.shape
        for b in nb.prange(B):
            for y in range(Y):
                for x in range(X):
                    v = psi_hat[b, 0, 0, y, x]
                    out[b, y, x] = v.real * v.real + v.imag * v.imag
            for j in range(1, Mo * Mp):
                m = j // Mp
                p = j % Mp
                for y in range(Y):
                    for x in range(X):
                        v = psi_hat[b, m, p, y, x]
                        out[b, y, x] += v.real * v.real + v.imag * v.imag
            for y in range(Y):
                for x in range(X):
                    out[b, y, x] *= scale

    @jit
    def scale_by_pattern(psi_hat, dl, factor):
        """In place: psi_hat[b, m, p] *= factor * dl[b]: psi_hat (B, Mo, Mp, Y, X), dl (B, Y, X) real.

        ``factor`` has the dtype of ``dl``.
        """
        B, Mo, Mp, Y, X = psi_hat.shape
        for b in nb.prange(B):
            for y in range(Y):
                for x in range(X):
                    dl[b, y, x] *= factor
            for m in range(Mo):
                for p in range(Mp):
                    for y in range(Y):
                        for x in range(X):
                            psi_hat[b, m, p, y, x] = psi_hat[b, m, p, y, x] * dl[b, y, x]

    return SimpleNamespace(gather_windows=gather_windows, scatter_conj_product=scatter_conj_product,
                           multiply_conj_patches=multiply_conj_patches, multiply_kernel=multiply_kernel,
                           intensity=intensity, scale_by_pattern=scale_by_pattern)
