"""Fused CPU kernels (Numba) for the element-wise, gather and scatter passes of the multislice model.

On the NumPy backend each step of the model written with NumPy expressions
makes one or more full passes over a (B, Mo, Mp, Y, X) array and allocates a
temporary per pass (``conj()`` copies, products, sums over modes, the flat
index arrays of the gather and scatter).  The kernels here do each step in
one pass, in place or into an output the caller owns, with no temporaries:

===========================  ==============================================================
kernel                       replaces (the reference NumPy expression)
===========================  ==============================================================
``transmit_windows``         ``extract_patches`` + ``transmit``: the product read from the canvas
``multiply_conj_windows``    ``transmit_adjoint`` with the patches read from the canvas (in place)
``scatter_conj_product``     ``transmit_patches_adjoint`` + ``scatter_patches``
``multiply_conj_patches``    ``transmit_adjoint`` (in place)
``multiply_kernel``          the product with the propagator in ``propagate`` (in place)
``intensity``                ``|fft2(psi)|^2`` summed over modes in ``farfield``
``scale_by_pattern``         ``2 dL/dI * Psi`` in ``farfield_adjoint`` (in place)
``shift_moments``            ``shift_gradient`` (the position gradient)
===========================  ==============================================================

The model (:class:`pypty.model.multislice.MultisliceModel`) uses them with
unscaled transforms, the unitary scales folded into the propagator and the
far-field factors.  ``tests/operators/test_cpu_kernels.py`` compares every
kernel with its reference expression, and the model's gradients on both
paths; the dot-product and finite-difference tests run on the fused path.
Results agree with the NumPy expressions to rounding, not bit for bit: NumPy's
SIMD loops compute complex products with fused multiply-adds, Numba's code
does not.

The kernels are used on the NumPy backend when Numba imports
(:func:`available`); set ``PYPTY_CPU_KERNELS=0`` to use the NumPy
expressions instead.  They are compiled on first use (a few seconds in all)
and the machine code is cached on disk next to this file (``cache=True``),
so later processes start at once.  They are single-threaded (both cores
are kept busy by running batches in threads,
:meth:`~pypty.model.multislice.MultisliceModel.batch_workers`; they release
the GIL): Numba's own threading layers spin-wait between parallel regions and
then slow down the FFTW threads.

Determinism: every kernel is a fixed sequence of floating-point operations,
so two evaluations give the same bits and an exact restart holds.  The
scatter-add adds the windows of a batch in batch order (the order of
``numpy.add.at``).
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

    jit = functools.partial(nb.njit, cache=True, nogil=True)

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
                for y in range(Y):  # distinct canvas rows within one window
                    row = grad[m, cy + y, cx:cx + X]
                    for p in range(Mp):  # one contiguous pass per probe mode
                        for x in range(X):
                            row[x] += np.conj(psi[b, mq, p, y, x]) * g[b, m, p, y, x]

    @jit
    def multiply_conj_patches(g, u):
        """In place: g[b, m, p] = g[b, m, p] * conj(u[b, m]); g (B, Mo, Mp, Y, X), u (B, Mo, Y, X)."""
        B, Mo, Mp, Y, X = g.shape
        for i in range(B * Mo):
            b = i // Mo
            m = i % Mo
            for p in range(Mp):
                for y in range(Y):
                    for x in range(X):
                        g[b, m, p, y, x] = g[b, m, p, y, x] * np.conj(u[b, m, y, x])

    @jit
    def transmit_windows(out, psi, obj, corners):
        """out[b, m, p] = psi[b, m|0, p] * obj[m, cy:cy+Y, cx:cx+X]: the transmission read from the canvas.

        out (B, Mo, Mp, Y, X); psi (B, Mo or 1, Mp, Y, X); obj (Mo, Ny, Nx) (one slice); corners (B, 2).
        """
        B, Mo, Mp, Y, X = out.shape
        shared = psi.shape[1] == 1
        for b in range(B):
            cy = corners[b, 0]
            cx = corners[b, 1]
            for m in range(Mo):
                mq = 0 if shared else m
                for p in range(Mp):
                    for y in range(Y):
                        for x in range(X):
                            out[b, m, p, y, x] = psi[b, mq, p, y, x] * obj[m, cy + y, cx + x]

    @jit
    def multiply_conj_windows(g, obj, corners):
        """In place: g[b, m, p] *= conj(obj[m, cy:cy+Y, cx:cx+X]); g (B, Mo, Mp, Y, X), obj (Mo, Ny, Nx)."""
        B, Mo, Mp, Y, X = g.shape
        for b in range(B):
            cy = corners[b, 0]
            cx = corners[b, 1]
            for m in range(Mo):
                for p in range(Mp):
                    for y in range(Y):
                        for x in range(X):
                            g[b, m, p, y, x] = g[b, m, p, y, x] * np.conj(obj[m, cy + y, cx + x])

    @jit
    def multiply_kernel(h, k):
        """In place: h[i] = h[i] * k, h (I, Y, X) (images), k (Y, X) (one kernel for all images)."""
        I, Y, X = h.shape
        for i in range(I):
            for y in range(Y):
                for x in range(X):
                    h[i, y, x] = h[i, y, x] * k[y, x]

    @jit
    def intensity(out, psi_hat, scale):
        """out[b] = scale * sum_{m,p} |psi_hat[b, m, p]|^2: out (B, Y, X) real, psi_hat (B, Mo, Mp, Y, X).

        ``scale`` has the dtype of ``out``; the sum runs in that dtype, over modes in order.
        """
        B, Mo, Mp, Y, X = psi_hat.shape
        for b in range(B):
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
        for b in range(B):
            for y in range(Y):
                for x in range(X):
                    dl[b, y, x] *= factor
            for m in range(Mo):
                for p in range(Mp):
                    for y in range(Y):
                        for x in range(X):
                            psi_hat[b, m, p, y, x] = psi_hat[b, m, p, y, x] * dl[b, y, x]

    @jit
    def shift_moments(out, g_hat, probe_hat, ky, kx, scale):
        """out[b] = scale * (sum q k_y, sum q k_x), q = Im(sum_p conj(g_hat[b, p]) probe_hat[b|0, p]) (float64).

        g_hat (B, Mp, Y, X); probe_hat (B or 1, Mp, Y, X); ky (Y,), kx (X,) real; out (B, 2) float64.
        The gradient of :func:`pypty.operators.shift.shift_gradient` in one pass, with partial sums per
        column (the loop over x vectorises).
        """
        B, Mp, Y, X = g_hat.shape
        shared = probe_hat.shape[0] == 1
        for b in range(B):
            bq = 0 if shared else b
            col = np.zeros(X)
            gy = 0.0
            for y in range(Y):
                row = np.zeros(X)
                for p in range(Mp):
                    for x in range(X):
                        g = g_hat[b, p, y, x]
                        q = probe_hat[bq, p, y, x]
                        row[x] += np.float64(g.real * q.imag - g.imag * q.real)
                ry = 0.0
                for x in range(X):
                    ry += row[x]
                    col[x] += row[x]
                gy += ky[y] * ry
            gx = 0.0
            for x in range(X):
                gx += kx[x] * col[x]
            out[b, 0] = scale * gy
            out[b, 1] = scale * gx

    return SimpleNamespace(shift_moments=shift_moments, transmit_windows=transmit_windows,
                           multiply_conj_windows=multiply_conj_windows, scatter_conj_product=scatter_conj_product,
                           multiply_conj_patches=multiply_conj_patches, multiply_kernel=multiply_kernel,
                           intensity=intensity, scale_by_pattern=scale_by_pattern)
