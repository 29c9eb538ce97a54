"""Object patches under the probe windows: gather (forward) and scatter-add (adjoint).

The object canvas is (S, Mo, Ny, Nx); the window of pattern n starts at the
integer corner ``c_n`` (canvas px).  :func:`split_positions` splits scan
positions into corners and sub-pixel remainders (the remainders go to
:func:`pypty.operators.shift.shift_ramp`).
"""
from __future__ import annotations

import numpy as np

__all__ = ["split_positions", "patch_indices", "extract_patches", "scatter_patches", "scatter_rows"]


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
    hi = xp.asarray([canvas_yx[0] - window_yx[0], canvas_yx[1] - window_yx[1]])
    corners = xp.clip(xp.rint(positions), 0, hi).astype(xp.int64)
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
    of window pixels, not to the canvas size (``numpy.add.at`` on NumPy;
    ``cupyx.scatter_add`` on the real and imaginary parts on CuPy).
    """
    flat_idx = idx.ravel()
    if xp is np:
        for m in range(grad_flat.shape[0]):
            np.add.at(grad_flat[m], flat_idx, g[:, m].ravel())
        return
    import cupyx

    for m in range(grad_flat.shape[0]):
        gm = g[:, m]
        parts = grad_flat[m].view(gm.real.dtype)  # interleaved (re, im)
        cupyx.scatter_add(parts, 2 * flat_idx, gm.real.ravel())
        cupyx.scatter_add(parts, 2 * flat_idx + 1, gm.imag.ravel())


def scatter_rows(xp, acc, rows, vals):
    """Adjoint of the row gather ``vals = acc_like[rows]``: ``acc[rows[i]] += vals[i]``, repeats summed.

    acc : (R, ...) accumulator, modified in place; rows : NumPy int (B,);
    vals : (B, ...).  Rows are summed in increasing row order (deterministic).
    """
    rows = np.asarray(rows)
    for r in np.unique(rows):
        sel = xp.asarray(np.nonzero(rows == r)[0])
        acc[int(r)] += xp.sum(vals[sel], axis=0)
