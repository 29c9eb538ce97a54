"""Up-front size checks of a run: far-off scan positions, and arrays that would not fit in memory.

:func:`pypty.model.setup.build_setup` calls these before it allocates the
object canvas or builds the probe, so that a small input (one outlier
position, a large ``upsample_pattern``, ``n_hermite_probe_modes`` or
``probe_marker`` value) is refused at once with the parameter named and the
memory it would need, instead of ending in a ``MemoryError`` (or a swap
storm) after the data have been scanned.

Memory need (bytes) is the estimate of :mod:`pypty.data.memory` for a batch
of one pattern::

    params  = (S Mo Ny Nx + K Mp Y X) c + 16 N
    need    = params (6 + 2 h) + per_pattern(Y X, S, Mo, Mp)

(S slices, 3 S with yoshida; Mo object modes; canvas Ny x Nx; K probes of
Mp modes on the Y x X window; c bytes per complex; h = ``hist_length``,
capped at 50, 0 when it is epoch-dependent), compared with the available
host memory (NumPy) or the free device memory (GPU, and the host for the
initial object and probe).
"""
from __future__ import annotations

import math

import numpy as np

from ..data import memory as _memory
from ..initialize.probe import check_hermite_orders
from ..parameters import parameter_error as _err
from ..parameters.epoch_eval import EpochExpression
from .canvas import canvas_geometry, far_positions

__all__ = ["check_sizes", "planned_probe", "check_far_positions", "check_memory"]

_HIST_CAP = 50


def _gib(b):
    return f"{b / 2**30:.3g} GiB"


def planned_probe(p, n, win):
    """(modes Mp, probes K, parameter that sets Mp, parameter that sets K) of the probe the run will use.

    Read from the parameters alone (before anything is built); Hermite orders
    are checked here (:func:`pypty.initialize.probe.check_hermite_orders`).
    """
    probe = p["probe"]
    k_name = "probe"
    if probe is not None:
        shape = np.shape(probe)
        mp = int(shape[2]) if len(shape) >= 3 else 1
        k = int(shape[3]) if len(shape) == 4 else 1
        return mp, k, "probe", "probe"
    mp, m_name = 1, "probe"
    if p["defocus_spread_modes"] is not None:
        mp, m_name = int(np.size(p["defocus_spread_modes"])), "defocus_spread_modes"
    elif p["n_hermite_probe_modes"] is not None and p["recon_type"] != "near_field":
        nx, ny = check_hermite_orders(p["n_hermite_probe_modes"], win)
        mp, m_name = nx * ny, "n_hermite_probe_modes"
    k = 1
    if p["probe_marker"] is not None and np.size(p["probe_marker"]):
        k, k_name = int(np.max(p["probe_marker"])) + 1, "probe_marker"
    return mp, k, m_name, k_name


def check_far_positions(pos, win, obj_yx, canvas_yx, margin):
    """Refuse positions far outside the scan (:func:`pypty.model.canvas.far_positions`) that would grow the canvas.

    ``pos`` (N, 2) px: the positions the canvas is sized to; ``obj_yx``: the
    given (or default 1 x 1) object; ``canvas_yx``: the canvas they need.
    Positions an ``obj`` already covers are kept (the way to use them as
    they are).

    Raises
    ------
    PyptyParameterError
        Naming 'positions', the first far position, the scan's extent and the
        canvas (and memory) the far positions would need.
    """
    far, lo, hi = far_positions(pos, win)
    if far.size == 0 or tuple(canvas_yx) == tuple(obj_yx):
        return
    keep = np.setdiff1d(np.arange(len(pos)), far)
    _, inner = canvas_geometry(obj_yx, pos[keep], win, margin)
    if tuple(inner) == tuple(canvas_yx):
        return
    i = int(far[0])
    raise _err("positions", f"{far.size} position(s) lie far outside the scan, the first #{i} at "
                            f"({pos[i, 0]:.6g}, {pos[i, 1]:.6g}) px, while the central half of the scan lies in y "
                            f"{lo[0]:.6g}..{hi[0]:.6g}, x {lo[1]:.6g}..{hi[1]:.6g} px; they would grow the object "
                            f"canvas from {inner[0]} x {inner[1]} to {canvas_yx[0]} x {canvas_yx[1]} px "
                            f"({_gib(16.0 * canvas_yx[0] * canvas_yx[1])} per complex128 slice). Correct or drop "
                            f"them, or give an 'obj' that already covers them to use them as they are")


def _hist(p):
    h = p["hist_length"]
    if callable(h) or isinstance(h, EpochExpression):
        return 0
    h = float(h)
    return _HIST_CAP if not math.isfinite(h) else min(int(h), _HIST_CAP)


def check_memory(p, bk, n, win, canvas_yx, n_slices, n_obj_modes, mp, k, cdt, names):
    """Refuse a run whose canvas, probe or per-pattern working set would not fit in memory.

    Parameters
    ----------
    p : validated parameters
    bk : Backend
    n : int, patterns
    win : (Y, X) probe window px
    canvas_yx : (Ny, Nx) px
    n_slices : int, slices as propagated (3 x num_slices for yoshida)
    n_obj_modes, mp, k : int, object modes, probe modes, probes (subscans)
    cdt : complex dtype
    names : dict with "canvas", "modes", "probes", "window": the parameter
        each size comes from (named in the message)

    Raises
    ------
    PyptyParameterError
        Naming the parameter whose term dominates, with the estimate and its parts.
    """
    c = np.dtype(cdt).itemsize
    ny, nx = (float(v) for v in canvas_yx)
    wy, wx = (float(v) for v in win)
    h = _hist(p)
    copies = 6 + 2 * h
    canvas = n_slices * n_obj_modes * ny * nx * c
    probe = k * mp * wy * wx * c
    mp_eff = mp * (2 if k > 1 else 1)
    per = float(_memory.bytes_per_pattern((int(wy), int(wx)), n_slices, n_obj_modes, mp_eff, cdt,
                                          gpu=bool(getattr(bk, "is_gpu", False))))
    need = (canvas + probe + 16.0 * n) * copies + per
    if getattr(bk, "is_gpu", False):
        free = bk.simulated_free_bytes
        checks = [("device", need, _memory.free_memory_bytes(bk) if free is None else int(free)),
                  ("host", 2 * (canvas + probe), _memory.host_memory_bytes())]
    else:
        checks = [("host", need, _memory.host_memory_bytes())]
    for where, amount, avail in checks:
        if amount <= avail:
            continue
        parts = {"canvas": canvas * copies, "modes": probe * copies + per}
        top = max(parts, key=parts.get)
        if top == "canvas":
            name = names["canvas"]
        elif k > 1 and k >= mp:
            name = names["probes"]
        elif mp > 1:
            name = names["modes"]
        else:
            name = names["window"]
        raise _err(name, f"the run would need about {_gib(amount)} of {where} memory, more than the "
                         f"{_gib(avail)} available: object canvas {int(ny)} x {int(nx)} px x {n_slices} slices x "
                         f"{n_obj_modes} modes ({_gib(canvas)}), {k} probe(s) x {mp} modes of {int(wy)} x {int(wx)} "
                         f"px ({_gib(probe)}), about {copies} copies of them for the optimizer (hist_length {h}), "
                         f"{_gib(per)} of work per pattern")


def check_sizes(p, bk, n, detector_yx, cdt, keep_canvas=False):
    """All up-front size checks of a run, from the parameters and the data's header only.

    Parameters
    ----------
    p : validated parameters
    bk : Backend
    n : int
        Patterns (or compressed measurements) the data declare.
    detector_yx : (int, int)
        Preprocessed pattern (or mask) shape.
    cdt : complex dtype of the computation
    keep_canvas : bool
        As for :func:`pypty.model.setup.build_setup` (no cropping).

    Nothing is checked when ``positions`` does not have N rows (the caller
    reports that).  Raises PyptyParameterError naming 'sequence' (an index
    >= N), 'positions' (far positions, :func:`check_far_positions`),
    'n_hermite_probe_modes' (:func:`planned_probe`) or the parameter that
    makes the run too large for memory (:func:`check_memory`).
    """
    pos = np.asarray(p["positions"], dtype=np.float64)
    if pos.shape != (n, 2):
        return
    up = int(p["upsample_pattern"])
    win = (int(detector_yx[0]) * up, int(detector_yx[1]) * up)
    obj = p["obj"]
    obj_yx = tuple(int(v) for v in np.shape(obj)[:2]) if obj is not None else (1, 1)
    n_obj_modes = int(np.shape(obj)[3]) if obj is not None and np.ndim(obj) == 4 else 1
    sel, crop = slice(None), False
    seq = p["sequence"]
    if seq is not None and not callable(seq) and not isinstance(seq, EpochExpression):
        idx = np.asarray(seq, dtype=np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            bad = int(idx[(idx < 0) | (idx >= n)][0])
            raise _err("sequence", f"index {bad} is not a pattern of the data (0..{n - 1})")
        if not p["use_full_FOV"] and idx.size:
            sel, crop = idx, not keep_canvas
    margin = int(p["extra_space_on_side_px"])
    _, canvas = canvas_geometry(obj_yx, pos[sel], win, margin, crop)
    check_far_positions(pos[sel], win, obj_yx, canvas, margin)
    mp, k, m_name, k_name = planned_probe(p, n, win)
    span = float(np.max(np.ptp(pos[sel], axis=0))) if len(pos[sel]) else 0.0
    if obj is not None and obj_yx[0] >= canvas[0] and obj_yx[1] >= canvas[1]:
        c_name = "obj"
    elif 2 * margin > span:
        c_name = "extra_space_on_side_px"
    else:
        c_name = "positions"
    w_name = "upsample_pattern" if up > 1 else ("data_pad" if int(p["data_pad"]) > 0 else "data_path")
    s_eff = int(p["num_slices"]) * (3 if p["propmethod"] == "yoshida" else 1)
    check_memory(p, bk, n, win, canvas, s_eff, n_obj_modes, mp, k, cdt,
                 {"canvas": c_name, "modes": m_name, "probes": k_name, "window": w_name})
