"""Object patches under the probe windows: gather (forward) and scatter-add (adjoint).

The object canvas is (S, Mo, Ny, Nx); the window of pattern n starts at the
integer corner ``c_n`` (canvas px).  :func:`split_positions` splits scan
positions into corners and sub-pixel remainders (the remainders go to
:func:`pypty.operators.shift.shift_ramp`).
"""
from __future__ import annotations

import numpy as np

__all__ = ["split_positions", "patch_indices", "extract_patches", "scatter_patches", "scatter_rows",
           "scatter_patches_windows"]


def split_positions(xp, positions, window_yx, canvas_yx, subpixel=True):
    """Integer window corners and sub-pixel remainders of scan positions.

    Parameters
    ----------
    positions : float array (B, 2)
        Top-left window corners (y, x) in canvas px.
    window_yx, canvas_yx : (int, int)
        Probe window and object canvas shapes.
    subpixel : bool
        False: remainders are zero (positions rounded).

    Returns
    -------
    corners : int64 (B, 2), rounded and clipped to ``[0, canvas - window]``
    frac : float64 (B, 2), ``positions - corners`` (zeros if not subpixel)
    """
    r = xp.rint(positions)  # clipped per column with Python bounds: no host-to-device copy
    corners = xp.stack([xp.clip(r[:, 0], 0, canvas_yx[0] - window_yx[0]),
                        xp.clip(r[:, 1], 0, canvas_yx[1] - window_yx[1])], axis=1).astype(xp.int64)
    frac = positions - corners if subpixel else xp.zeros_like(positions)
    return corners, frac


def patch_indices(xp, corners, shape_yx, canvas_yx):
    """Flat indices of the object pixels under each probe window.

    Parameters
    ----------
    corners : int array, shape (B, 2)
        Top-left corners (y, x) of the windows in canvas px (already clipped).
    shape_yx : (Y, X)
        Window shape.
    canvas_yx : (Ny, Nx)
        Object canvas shape.

    Returns
    -------
    int64 array, shape (B, Y, X)
    """
    ny, nx = shape_yx
    rows = corners[:, 0, None] + xp.arange(ny)[None]  # (B, Y)
    cols = corners[:, 1, None] + xp.arange(nx)[None]  # (B, X)
    return rows[:, :, None] * int(canvas_yx[1]) + cols[:, None, :]


def extract_patches(xp, obj, idx):
    """Gather object patches.

    obj : (S, Mo, Ny, Nx); idx : (B, Y, X) flat indices.
    Returns (S, B, Mo, Y, X) (a copy).
    """
    s, mo = obj.shape[:2]
    flat = obj.reshape(s, mo, -1)
    patches = xp.take(flat, idx, axis=2)  # (S, Mo, B, Y, X)
    return xp.moveaxis(patches, 2, 1)


def scatter_patches(xp, grad_flat, g, idx):
    """Adjoint of :func:`extract_patches` for one slice: scatter-add.

    grad_flat : (Mo, Ny*Nx) complex accumulator (C-contiguous), modified in place.
    g : (B, Mo, Y, X) complex gradient of the patches.
    idx : (B, Y, X) flat indices.
    Overlapping windows are summed.  The cost is proportional to the number
    of window pixels, not to the canvas size.

    The result is the same bits for the same inputs on every backend, and the
    same bits on NumPy and on a GPU: the contributions to a canvas pixel are
    added one after the other in batch order.

    * NumPy: ``numpy.add.at`` (which adds in the order of ``idx``);
    * any other array module (CuPy): :func:`scatter_patches_windows`, one
      plain indexed add per window.  ``cupyx.scatter_add`` is not used: its
      atomic adds sum a pixel covered by several windows in an order that
      changes from run to run, so two identical evaluations could differ in
      the last bits and an exact restart would not hold.
    """
    if xp is np:
        flat_idx = idx.ravel()
        for m in range(grad_flat.shape[0]):
            np.add.at(grad_flat[m], flat_idx, g[:, m].ravel())
        return
    scatter_patches_windows(xp, grad_flat, g, idx)


def scatter_patches_windows(xp, grad_flat, g, idx):
    """:func:`scatter_patches` as one indexed add per window, in batch order (any array module).

    Within one window the flat indices are distinct, so ``grad_flat[:, i_b]
    += g_b`` (a gather, an elementwise add and a scatter to distinct
    elements) is exact without atomics; window b is added after window b - 1,
    the order of ``numpy.add.at``, so the result equals NumPy's bit for bit.
    It costs B small kernels per slice on a GPU and no host synchronisation
    or transfer.

    Parameters
    ----------
    xp : module
        ``numpy``, ``cupy`` or pypty's strict device stand-in.
    grad_flat : complex array (Mo, Ny*Nx), modified in place.
    g : complex array (B, Mo, Y, X)
    idx : int array (B, Y, X), flat canvas indices (distinct within a window).
    """
    n_modes = grad_flat.shape[0]
    for b in range(idx.shape[0]):
        grad_flat[:, idx[b].ravel()] += g[b].reshape(n_modes, -1)


def scatter_rows(xp, acc, rows, vals):
    """Adjoint of the row gather ``vals = acc_like[rows]``: ``acc[rows[i]] += vals[i]``, repeats summed.

    acc : (R, ...) accumulator, modified in place; rows : NumPy int (B,);
    vals : (B, ...).  Rows are summed in increasing row order (deterministic).
    """
    rows = np.asarray(rows)
    for r in np.unique(rows):
        sel = xp.asarray(np.nonzero(rows == r)[0])
        acc[int(r)] += xp.sum(vals[sel], axis=0)
