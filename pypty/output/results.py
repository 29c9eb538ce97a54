"""The results file: one HDF5 file per run holding everything needed to trust, trace and continue it.

Layout (``format = "pypty-results"``, ``format_version = 1``)::

    /                       attrs: format, format_version, pypty_version, backend, compute (libraries), status
                            ("save point", "final" or "interrupted"), epochs_done, epoch_first,
                            run_uid, timestamp, wall_time_s, output_folder, [random_seed]
    /arrays/<name>          every refined array in the user layout, as returned by
                            ``pypty.iterative.run``: obj (y, x, slices, modes), probe (y, x, modes),
                            positions (N, 2) px indexing the saved object, and any further refined array
                            (tilts, beam_current, static_background, aberrations_array, ...)
    /initial/<name>         the arrays at the start of the run (positions only by default)
    /position_offset        (2,) float64 px: ``arrays/positions + position_offset`` are the
                            positions in the frame the user gave them (non-zero when the canvas
                            was shifted: use_full_FOV=False, negative positions,
                            extra_space_on_side_px, dynamically_resize_yx_object)
    /loss/<column>          one value per epoch: epoch, loss, loss_data (the weighted data term),
                            reg_<name> (one per loss term), step, accepted, evaluations,
                            wall_time_s, refined (text)
    /convergence/<metric>   one value per save point (see :mod:`pypty.output.savepoints`)
    /params                 JSON text of the parameters used (epoch-dependent ones as source text)
    /provenance             JSON text: {component: [entry, ...]} (see :mod:`pypty.output.provenance`)
    /timing                 attrs: wall_time_s, epochs, mean_epoch_s
    /restart/...            exact continuation state: positions_canvas, given_positions (as given at
                            the start, for reset_positions), the L-BFGS history
                            (optimizer/pair_NNNN/s|y/<block>) and the cached loss/gradient

Every dataset is written with the HDF5 Fletcher-32 checksum filter, so silent
corruption of stored data is detected on reading, and the file is written to a
temporary name and renamed (:func:`pypty.output.atomic.atomic_stream`), so the latest file
is always complete.  HDF5 writes through a guarded file object: a full disk or an
exceeded quota raises :class:`pypty.output.atomic.OutputWriteError` naming the file (the
previous file intact, no temporary left) instead of crashing HDF5's close; the free space
is checked against the size of the arrays before writing.

Public API: :class:`ResultsFileError`, :func:`write_results`,
:func:`load_results`, :func:`validate_results`, :func:`params_from_results`,
:func:`results_path`, :data:`RESULTS_NAME`.
"""
from __future__ import annotations

import json
import math
import os

import h5py
import numpy as np

from .atomic import atomic_stream

__all__ = ["ResultsFileError", "RESULTS_NAME", "FORMAT", "FORMAT_VERSION", "write_results", "load_results",
           "validate_results", "params_from_results", "results_path"]

FORMAT = "pypty-results"
FORMAT_VERSION = 1
#: File name of the results file inside a run's output folder.
RESULTS_NAME = "results.h5"
_REQUIRED = ("arrays", "loss", "params", "provenance", "position_offset")


class ResultsFileError(ValueError):
    """A results file is missing, truncated, corrupted or not a pypty results file (the path is named)."""


def results_path(path: str) -> str:
    """``path`` itself if it is a file, ``path/results.h5`` if it is a folder."""
    path = os.fspath(path)
    return os.path.join(path, RESULTS_NAME) if os.path.isdir(path) else path


# ---------------------------------------------------------------------------- writing
def _ds(group, name, value):
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        group.create_dataset(name, data=arr.astype(h5py.string_dtype()))
    elif arr.ndim == 0 or arr.size == 0:
        group.create_dataset(name, data=arr)
    else:
        group.create_dataset(name, data=arr, fletcher32=True, chunks=True)


def _text(group, name, text):
    group.create_dataset(name, data=np.array(text, dtype=h5py.string_dtype()))


def _write_blocks(group, blocks):
    for k, v in blocks.items():
        _ds(group, k, v)


def _write_restart(f, restart):
    g = f.create_group("restart", track_order=True)
    _ds(g, "positions_canvas", restart["positions_canvas"])
    if restart.get("given_positions") is not None:  # the positions as given at the start (reset_positions)
        _ds(g, "given_positions", restart["given_positions"])
    opt = restart.get("optimizer")
    if opt is not None:
        og = g.create_group("optimizer", track_order=True)
        hl = opt["hist_length"]
        og.attrs["hist_length"] = -1 if hl == math.inf else int(hl)
        og.attrs["bb_gamma"] = np.nan if opt["bb_gamma"] is None else float(opt["bb_gamma"])
        og.attrs["signature"] = json.dumps(opt["signature"])
        og.attrs["last_reset_reason"] = opt["last_reset_reason"]
        og.attrs["n_pairs"] = len(opt["pairs"])
        for i, p in enumerate(opt["pairs"]):
            pg = og.create_group(f"pair_{i:04d}", track_order=True)
            pg.attrs["rho"], pg.attrs["gamma"] = p["rho"], p["gamma"]
            pg.attrs["gamma_k"] = json.dumps(p["gamma_k"])
            _write_blocks(pg.create_group("s", track_order=True), p["s"])
            _write_blocks(pg.create_group("y", track_order=True), p["y"])
    blocks = restart.get("blocks")
    if blocks:  # reparametrised block values (e.g. obj_phase) and reference arrays, kept exactly
        _write_blocks(g.create_group("blocks", track_order=True), blocks)
    if restart.get("probe_part"):
        g.attrs["probe_part"] = restart["probe_part"]
    cache = restart.get("cache")
    if cache is not None:
        cg = g.create_group("cache", track_order=True)
        cg.attrs["names"] = json.dumps(list(cache["names"]))
        cg.attrs["weight"] = float(cache["weight"])
        cg.attrs["subpixel"] = bool(cache["subpixel"])
        cg.attrs["f"] = float(cache["f"])
        cg.attrs["terms"] = str(cache.get("terms", "()"))
        cg.attrs["parts"] = json.dumps({k: float(v) for k, v in cache.get("parts", {}).items()})
        _ds(cg, "sequence", np.asarray(cache["sequence"], dtype=np.int64))
        _write_blocks(cg.create_group("g", track_order=True), cache["g"])


def _nbytes(obj) -> int:
    """Bytes of the arrays in a (nested) record: the size estimate checked against the free space."""
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    return 64


def write_results(path: str, record: dict) -> str:
    """Write a results file atomically (temporary file in the same folder, then rename).

    Parameters
    ----------
    path : str
        Target file (conventionally ``<output folder>/results.h5``).
    record : dict
        ``arrays`` {name: ndarray} (user layout); ``initial`` {name: ndarray};
        ``position_offset`` (2,) px; ``loss`` {column: 1D array or list};
        ``convergence`` {metric: 1D array}; ``params`` (JSON-serialisable
        dict); ``provenance`` {component: [entry, ...]}; ``attrs`` {name:
        str/int/float/bool} for the root; ``timing`` {name: float};
        optional ``restart`` {"positions_canvas", "optimizer" (from
        :meth:`pypty.optim.LBFGS.state_dict`), "cache"}.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    pypty.output.atomic.OutputWriteError
        (an OSError) The file could not be written: folder not writable,
        less free space than the arrays need, full disk or exceeded quota
        during the write.  The message names the file; the previous file, if
        any, is untouched and no temporary file is left.
    """
    size = int(1.05 * _nbytes(record)) + 2 ** 20  # data, checksums and HDF5 metadata
    with atomic_stream(path, size) as fh:
        with h5py.File(fh, "w") as f:
            f.attrs["format"], f.attrs["format_version"] = FORMAT, FORMAT_VERSION
            for k, v in record.get("attrs", {}).items():
                if v is not None:
                    f.attrs[k] = v
            _write_blocks(f.create_group("arrays", track_order=True), record["arrays"])
            _write_blocks(f.create_group("initial", track_order=True), record.get("initial", {}))
            _ds(f, "position_offset", np.asarray(record.get("position_offset", np.zeros(2)), dtype=np.float64))
            lg = f.create_group("loss", track_order=True)
            for k, v in record.get("loss", {}).items():
                if k == "refined":
                    lg.create_dataset(k, data=np.array([str(s) for s in v], dtype=h5py.string_dtype()))
                else:
                    _ds(lg, k, np.asarray(v))
            _write_blocks(f.create_group("convergence", track_order=True), {k: np.asarray(v) for k, v in
                                                          record.get("convergence", {}).items()})
            _text(f, "params", json.dumps(record.get("params", {})))
            _text(f, "provenance", json.dumps(record.get("provenance", {})))
            tg = f.create_group("timing", track_order=True)
            for k, v in record.get("timing", {}).items():
                tg.attrs[k] = v
            if record.get("restart") is not None:
                _write_restart(f, record["restart"])
            f.attrs["complete"] = True  # written last: a file without it was cut short
    return path


# ---------------------------------------------------------------------------- reading
def _read_ds(ds):
    """Read a dataset, refusing one that declares more bytes than the available host memory (before reading)."""
    if ds.shape is not None and h5py.check_string_dtype(ds.dtype) is None:
        nbytes = math.prod(int(d) for d in ds.shape) * ds.dtype.itemsize
        # psutil is imported only when a file is read
        from ..data.memory import host_memory_bytes

        avail = host_memory_bytes()
        if nbytes > avail:
            raise ResultsFileError(f"results file '{ds.file.filename}': dataset '{ds.name}' declares shape "
                                   f"{tuple(ds.shape)} {ds.dtype} ({nbytes / 2**30:.3g} GiB), more than the "
                                   f"{avail / 2**30:.3g} GiB of memory available: refused before reading it")
    return ds[()]


def _read_blocks(group, read=_read_ds):
    return {k: read(group[k]) for k in group}


def _read_restart(g, read=_read_ds):
    """The ``/restart`` group as a dict; ``read(dataset)`` reads each dataset (checks of
    :mod:`pypty.output.restart` for ``restart_from``)."""
    out = {"positions_canvas": read(g["positions_canvas"]), "optimizer": None, "cache": None,
           "blocks": _read_blocks(g["blocks"], read) if "blocks" in g else {},
           "probe_part": str(_attr(g.attrs["probe_part"])) if "probe_part" in g.attrs else "",
           "given_positions": read(g["given_positions"]) if "given_positions" in g else None}
    if "optimizer" in g:
        og = g["optimizer"]
        hl = int(og.attrs["hist_length"])
        bb = float(og.attrs["bb_gamma"])
        pairs = []
        for i in range(int(og.attrs["n_pairs"])):
            pg = og[f"pair_{i:04d}"]
            pairs.append({"s": _read_blocks(pg["s"], read), "y": _read_blocks(pg["y"], read),
                          "rho": float(pg.attrs["rho"]), "gamma": float(pg.attrs["gamma"]),
                          "gamma_k": json.loads(pg.attrs["gamma_k"])})
        out["optimizer"] = {"hist_length": math.inf if hl < 0 else hl, "bb_gamma": None if math.isnan(bb) else bb,
                            "signature": json.loads(og.attrs["signature"]),
                            "last_reset_reason": str(og.attrs["last_reset_reason"]), "pairs": pairs}
    if "cache" in g:
        cg = g["cache"]
        out["cache"] = {"names": json.loads(cg.attrs["names"]), "weight": float(cg.attrs["weight"]),
                        "subpixel": bool(cg.attrs["subpixel"]), "f": float(cg.attrs["f"]),
                        "terms": str(_attr(cg.attrs["terms"])) if "terms" in cg.attrs else "()",
                        "parts": json.loads(cg.attrs["parts"]) if "parts" in cg.attrs else None,
                        "sequence": read(cg["sequence"]), "g": _read_blocks(cg["g"], read)}
    return out


def _attr(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _open(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"results file '{path}' does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ResultsFileError(f"results file '{path}' cannot be read as HDF5 (truncated or corrupted?): "
                               f"{exc}") from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise ResultsFileError(f"'{path}' is not a pypty results file (no format='{FORMAT}' attribute)")
    missing = [k for k in _REQUIRED if k not in f]
    if missing or not f.attrs.get("complete", False):
        f.close()
        what = f"lacks {missing}" if missing else "has no 'complete' mark"
        raise ResultsFileError(f"results file '{path}' is incomplete: it {what} (the write was cut short?)")
    return f


def load_results(path: str, restart_state: bool = True) -> dict:
    """Read a results file completely and check it.

    Parameters
    ----------
    path : str
        A results file, or a run folder holding ``results.h5``.
    restart_state : bool
        Also read the optimizer history and cached gradient (``restart``).

    Returns
    -------
    dict
        ``path``; ``attrs`` (root attributes); ``arrays`` {name: ndarray},
        user layout (``obj`` complex (y, x, slices, modes), ``probe``
        complex (y, x, modes), ``positions`` float64 (N, 2) px, ...);
        ``initial``; ``position_offset`` (2,) px; ``loss`` {column: ndarray};
        ``convergence`` {metric: ndarray}; ``params`` (dict, JSON form);
        ``positions_canvas`` (N, 2) px in the saved object's frame (or None);
        ``provenance`` {component: [entry, ...]}; ``timing``; ``restart``
        (dict or None).

    Raises
    ------
    FileNotFoundError
        No such file.
    ResultsFileError
        Truncated/corrupted HDF5, a failed checksum, not a pypty results
        file, an incomplete file, or a dataset declaring more bytes than the
        available memory (refused before reading); the message names the file.
    """
    path = results_path(path)
    f = _open(path)
    try:
        with f:
            out = {"path": os.path.abspath(path), "attrs": {k: _attr(v) for k, v in f.attrs.items()},
                   "arrays": _read_blocks(f["arrays"]),
                   "initial": _read_blocks(f["initial"]) if "initial" in f else {},
                   "position_offset": _read_ds(f["position_offset"]),
                   "loss": {k: (f["loss"][k].asstr()[()] if f["loss"][k].dtype.kind == "O"
                                else _read_ds(f["loss"][k])) for k in f["loss"]},
                   "convergence": _read_blocks(f["convergence"]) if "convergence" in f else {},
                   "params": json.loads(f["params"].asstr()[()]),
                   "provenance": json.loads(f["provenance"].asstr()[()]),
                   "timing": {k: _attr(v) for k, v in f["timing"].attrs.items()} if "timing" in f else {},
                   "positions_canvas": (_read_ds(f["restart/positions_canvas"]) if "restart/positions_canvas" in f
                                        else None),
                   "restart": _read_restart(f["restart"]) if restart_state and "restart" in f else None}
    except (OSError, KeyError, ValueError) as exc:
        if isinstance(exc, ResultsFileError):
            raise
        raise ResultsFileError(f"results file '{path}' is corrupted: {exc}") from None
    return out


def validate_results(path: str) -> None:
    """Raise :class:`ResultsFileError` (or FileNotFoundError) unless ``path`` reads completely.

    Every dataset is read, so Fletcher-32 checksums are verified.
    """
    load_results(path, restart_state=True)


def params_from_results(path: str) -> dict:
    """``pypty_params`` entries that start a follow-up run from a results file.

    Parameters
    ----------
    path : str
        A results file or a run folder holding ``results.h5``.

    Returns
    -------
    dict
        ``obj`` (y, x, slices, modes), ``probe`` (y, x, modes), ``positions``
        (N, 2) px indexing the saved object (as returned by the run), every further
        saved refinable array (:data:`pypty.model.refinables.REFINABLES`: tilts,
        beam_current, static_background, aberrations_array; any other dataset
        under ``/arrays/`` is ignored), ``epoch_prev`` (epochs done, so epoch-dependent
        parameters continue) and ``parent_results`` (the absolute path, so
        the new run inherits the provenance history).  If the parent used
        ``use_full_FOV=False`` (``position_offset`` non-zero) the saved object
        is the cropped canvas, so the follow-up must keep the same
        ``sequence`` and ``use_full_FOV=False`` (pypty crops the same way
        again).  Merge into your
        parameters: ``{**my_params, **params_from_results(path)}``; drop
        ``epoch_prev`` to count epochs from 0 again.

    Raises
    ------
    FileNotFoundError, ResultsFileError
        As :func:`load_results`.
    """
    from ..model.refinables import ARRAY_NAMES  # a lower layer, imported when used

    res = load_results(path, restart_state=False)
    out = {}
    for name, arr in res["arrays"].items():
        if name in ARRAY_NAMES:  # refinable arrays only: nothing else in a file may set a parameter
            out[name] = arr
    out["epoch_prev"] = int(res["attrs"]["epochs_done"])
    out["parent_results"] = res["path"]
    return out
