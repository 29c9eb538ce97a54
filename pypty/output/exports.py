"""TIFF exports of the object and probe (tifffile), with bit-depth and field-of-view options.

Quantities (``save_tiff`` parameter): ``object_phase`` and
``object_amplitude`` (stacks (slices, y, x), one file per object mode plus a
``_sum`` file: phase summed / amplitude multiplied over slices, i.e. the
projected transmission), ``probe_amplitude`` and ``probe_phase`` (stacks
(modes, y, x), real space).

Bit depths (``tiff_bit_depths``): ``raw`` (float32 values as they are: rad for
phases), ``32`` (float32 scaled to [0, 1]), ``16`` (uint16 scaled to
[0, 65535]) and ``8`` (uint8 scaled to [0, 255]); the scaling is a min-max
stretch over the whole file (a constant image becomes 0).  Field of view
(``tiff_fov``): ``full`` (the whole object canvas) or ``crop`` (the region
scanned by the probe window centres, see :func:`scan_crop`); the probe is
always exported whole.  File names: ``<quantity>[_m<mode>|_sum]_<fov>_<bit>_epoch<NNNN>.tif``.

Public API: :data:`TIFF_QUANTITIES`, :data:`BIT_DEPTHS`, :data:`FOVS`,
:func:`scan_crop`, :func:`to_bit_depth`, :func:`write_tiff`, :func:`export_tiffs`.
"""
from __future__ import annotations

import io
import os

import numpy as np

from .atomic import atomic_write_bytes

__all__ = ["TIFF_QUANTITIES", "BIT_DEPTHS", "FOVS", "scan_crop", "to_bit_depth", "write_tiff", "export_tiffs"]

#: Quantities of ``save_tiff``, bit depths of ``tiff_bit_depths`` and fields of view of ``tiff_fov``
#: (the parameter table's choices).
TIFF_QUANTITIES = ("object_phase", "object_amplitude", "probe_amplitude", "probe_phase")
BIT_DEPTHS = ("raw", "32", "16", "8")
FOVS = ("crop", "full")


def scan_crop(positions_canvas, window_yx, canvas_yx):
    """Bounding box of the probe-window centres, ``(y0, y1, x0, x1)`` px in the canvas.

    Parameters
    ----------
    positions_canvas : ndarray, float, (N, 2)
        Top-left corners of the probe window in object-canvas px.
    window_yx : (int, int)
        Probe window (Y, X) px.
    canvas_yx : (int, int)
        Object canvas (Ny, Nx) px.

    Returns
    -------
    tuple of 4 int
        Half-open bounds clipped to the canvas; at least one pixel wide.
    """
    c = np.asarray(positions_canvas, dtype=float) + np.asarray(window_yx, dtype=float) / 2.0
    y0, x0 = np.floor(c.min(axis=0)).astype(int)
    y1, x1 = np.ceil(c.max(axis=0)).astype(int) + 1
    y0, x0 = max(y0, 0), max(x0, 0)
    y1, x1 = min(max(y1, y0 + 1), canvas_yx[0]), min(max(x1, x0 + 1), canvas_yx[1])
    return int(y0), int(y1), int(x0), int(x1)


def to_bit_depth(img, bit: str) -> np.ndarray:
    """Convert a real image/stack to one of :data:`BIT_DEPTHS` (see the module docstring).

    Raises
    ------
    ValueError
        Unknown ``bit`` or a complex input.
    """
    a = np.asarray(img)
    if a.dtype.kind == "c":
        raise ValueError("to_bit_depth: expected a real array, got complex")
    if bit not in BIT_DEPTHS:
        raise ValueError(f"to_bit_depth: bit must be one of {BIT_DEPTHS}, got {bit!r}")
    a = a.astype(np.float64)
    if bit == "raw":
        return a.astype(np.float32)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    u = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    if bit == "32":
        return u.astype(np.float32)
    top = 65535 if bit == "16" else 255
    return np.round(u * top).astype(np.uint16 if bit == "16" else np.uint8)


def write_tiff(path: str, img, metadata: dict | None = None) -> str:
    """Write an image or stack with tifffile, atomically; returns ``path``."""
    import tifffile  # here, not at module import: the parameter table imports this module's choices

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.asarray(img), metadata=metadata or {})
    atomic_write_bytes(path, buf.getvalue())
    return path


def _object_stacks(obj, what):
    """{suffix: stack (slices, y, x)} and the per-mode sum images."""
    out = {}
    n_modes = obj.shape[3]
    for m in range(n_modes):
        o = np.transpose(obj[..., m], (2, 0, 1))
        stack = np.angle(o) if what == "object_phase" else np.abs(o)
        tag = f"_m{m}" if n_modes > 1 else ""
        out[tag] = stack
        out[tag + "_sum"] = stack.sum(axis=0) if what == "object_phase" else np.prod(stack, axis=0)
    return out


def export_tiffs(folder: str, arrays: dict, quantities, bits, fovs, crop, epoch: int) -> list:
    """Write the requested TIFF files into ``folder``.

    Parameters
    ----------
    folder : str
        Created if missing.
    arrays : dict
        ``obj`` complex (y, x, slices, modes) and ``probe`` complex (y, x, modes).
    quantities, bits, fovs : sequences of str
        Subsets of :data:`TIFF_QUANTITIES`, :data:`BIT_DEPTHS`, :data:`FOVS`.
    crop : (y0, y1, x0, x1)
        Scanned region for ``fov="crop"`` (:func:`scan_crop`).
    epoch : int
        Epochs done, put in the file names.

    Returns
    -------
    list of str
        Files written.
    """
    os.makedirs(folder, exist_ok=True)
    written = []
    for q in quantities:
        if q.startswith("object"):
            for fov in fovs:
                obj = arrays["obj"]
                if fov == "crop":
                    y0, y1, x0, x1 = crop
                    obj = obj[y0:y1, x0:x1]
                for suffix, img in _object_stacks(obj, q).items():
                    for bit in bits:
                        path = os.path.join(folder, f"{q}{suffix}_{fov}_{bit}_epoch{epoch:04d}.tif")
                        written.append(write_tiff(path, to_bit_depth(img, bit), {"quantity": q, "fov": fov,
                                                                                 "bit": bit, "epoch": epoch}))
        else:
            pr = np.transpose(np.asarray(arrays["probe"]).reshape(arrays["probe"].shape[:2] + (-1,)), (2, 0, 1))
            img = np.abs(pr) if q == "probe_amplitude" else np.angle(pr)
            for bit in bits:
                path = os.path.join(folder, f"{q}_{bit}_epoch{epoch:04d}.tif")
                written.append(write_tiff(path, to_bit_depth(img, bit), {"quantity": q, "bit": bit, "epoch": epoch}))
    return written
