"""Geometry of the object canvas: sizing it to the scan, and growing it when windows leave it.

Positions are the top-left corners of the probe windows in canvas px.  The
canvas is padded with vacuum (ones) so that every window fits with a margin
(:func:`ensure_margin`, also used to crop with ``use_full_FOV=False``).
During a run, refined positions can move a window out of the canvas
(:func:`windows_outside`); the engine then pads the object with
:func:`ensure_margin` and pads the optimizer history and kept blocks with
zeros (:func:`pad_canvas`).
"""
from __future__ import annotations

import numpy as np

__all__ = ["canvas_geometry", "ensure_margin", "windows_outside", "pad_canvas", "far_positions", "OUTLIER_FACTOR"]

#: A position is "far" when it lies more than this many robust scan extents outside the scan (:func:`far_positions`).
OUTLIER_FACTOR = 3.0


def canvas_geometry(canvas_yx, positions, window_yx, margin, crop=False):
    """The integer shift (2,) and the canvas size (Ny, Nx) :func:`ensure_margin` gives, without building it.

    ``canvas_yx``: current canvas (Ny, Nx); the other arguments as for :func:`ensure_margin`.
    """
    pos_np = np.asarray(positions.get() if hasattr(positions, "get") else positions)
    lo = pos_np.min(axis=0)
    hi = np.floor(pos_np.max(axis=0) + 0.5)
    shift = np.ceil(margin - lo).astype(int)
    if not crop:
        shift = np.maximum(shift, 0)
    ny, nx = (int(v) for v in canvas_yx)
    need = (int(hi[0] + shift[0]) + window_yx[0] + margin, int(hi[1] + shift[1]) + window_yx[1] + margin)
    return shift, (max(ny + int(shift[0]), need[0]), max(nx + int(shift[1]), need[1]))


def far_positions(positions, window_yx, factor=OUTLIER_FACTOR):
    """Indices of positions far outside the scan, and the scan's robust box ``(lo, hi)`` (2,) px.

    The robust box spans the 25th to 75th percentile of the positions along
    each axis (a few wild positions do not move it); its extent ``E`` is its
    larger side, at least the larger window size.  A position more than
    ``factor * E`` outside the box (along either axis) is far.  A grid scan
    has none: its extreme positions lie 0.5 E outside the box; with the
    default factor 3 a position is far when it lies more than about 1.5 scan
    widths beyond the scan's edge.
    """
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    if len(pos) < 4:
        return np.zeros(0, dtype=np.int64), pos.min(axis=0), pos.max(axis=0)
    lo, hi = np.percentile(pos, 25, axis=0), np.percentile(pos, 75, axis=0)
    extent = max(float(np.max(hi - lo)), float(max(window_yx)))
    out = np.maximum(lo - pos, pos - hi).max(axis=1)
    return np.flatnonzero(out > factor * extent), lo, hi


def ensure_margin(xp, obj, positions, window_yx, margin, crop=False):
    """Pad (or, with ``crop``, cut) the object canvas so every window keeps ``margin`` px inside.

    Parameters
    ----------
    obj : complex (S, Mo, Ny, Nx) (NumPy or device)
    positions : float (N, 2) top-left window corners in canvas px (NumPy or device)
    window_yx : (Y, X)
    margin : int >= 0
    crop : bool
        Allow a negative shift (cut rows/columns before the first window).

    Returns
    -------
    obj, positions, shift : the new canvas (new pixels are ones, i.e.
    vacuum), the positions in it, and the integer shift (2,) added to them.
    """
    ny, nx = obj.shape[-2:]
    shift, new = canvas_geometry((ny, nx), positions, window_yx, margin, crop)
    if tuple(shift) == (0, 0) and new == (ny, nx):
        return obj, positions, shift
    out = xp.ones(obj.shape[:-2] + new, dtype=obj.dtype)
    src_y0, src_x0 = max(0, -shift[0]), max(0, -shift[1])
    dst_y0, dst_x0 = max(0, shift[0]), max(0, shift[1])
    h = min(ny - src_y0, new[0] - dst_y0)
    w = min(nx - src_x0, new[1] - dst_x0)
    if h > 0 and w > 0:
        out[..., dst_y0:dst_y0 + h, dst_x0:dst_x0 + w] = obj[..., src_y0:src_y0 + h, src_x0:src_x0 + w]
    return out, positions + xp.asarray(shift.astype(float)), shift


def windows_outside(positions, window_yx, canvas_yx, tol=0) -> bool:
    """True when a window (rounded as the model rounds it) lies more than ``tol`` px outside the canvas.

    positions : NumPy float (N, 2) canvas px; window_yx, canvas_yx : (int, int); tol : int >= 0.
    """
    lo = positions.min(axis=0)
    hi = np.floor(positions.max(axis=0) + 0.5) + np.asarray(window_yx)
    return bool(np.any(lo < -tol - 0.5) or np.any(hi > np.asarray(canvas_yx) + tol))


def pad_canvas(xp, v, new_canvas, shift, fill=0):
    """``v`` (..., Ny, Nx) placed at ``shift`` (sy, sx) in a ``fill``-valued (..., new_canvas) array."""
    sy, sx = int(shift[0]), int(shift[1])
    old = v.shape[-2:]
    out = xp.full(v.shape[:-2] + tuple(new_canvas), fill, dtype=v.dtype)
    out[..., sy:sy + old[0], sx:sx + old[1]] = v
    return out
