"""``restart_from``: read from a results file only what an exact continuation needs, and check all of it.

A results file (layout: :mod:`pypty.output.results`) is data, never parameters.  A
restart takes from it

* under ``/arrays/``: the refinable arrays of :data:`pypty.model.refinables.REFINABLES`
  (obj, probe and positions, which must be there; tilts, beam_current, static_background and
  aberrations_array when saved).  Any other dataset there (``epoch_max``, ``loss_weight``,
  ``output_folder``, ...) is not read: the run's own parameters decide what it does and where
  it writes;
* the root attribute ``epochs_done`` (it becomes ``epoch_prev``);
* the canvas geometry: ``/position_offset`` and ``/restart/positions_canvas``;
* the continuation state under ``/restart/``: given_positions, the L-BFGS pairs, the cached
  loss and gradient, the kept reparametrised blocks and the probe reference;
* what the new results file carries on: ``/loss/``, ``/convergence/``, ``/initial/positions``
  and ``/provenance``.

``/params``, ``/timing`` and the other root attributes are not read.

Checks, each failure a :class:`RestartError` (both a
:class:`~pypty.parameters.PyptyParameterError` and a
:class:`~pypty.output.results.ResultsFileError`) whose message starts with
``parameter 'restart_from' (<file>):`` and names the dataset:

1. before any dataset is read (but ``/arrays/positions``, whose shape (N, 2) is checked first
   and whose values bound the object canvas), from the HDF5 metadata only: the dtype kind
   (complex, real, integer, number, text), the rank, every dimension the run fixes (N patterns
   from the shape of the data, the detector and probe window from it after
   ``data_bin``/``data_pad`` times ``upsample_pattern``, ``num_slices``, 2 or 6 columns,
   optimizer blocks equal in shape to their arrays, loss rows at most ``epochs_done``) and the
   declared size: neither one dataset nor all of them together may declare more bytes than the
   available host memory (:func:`pypty.data.memory.host_memory_bytes`), and no dimension the run
   bounds may exceed :data:`GROWTH` times that bound (the object canvas against the extent of
   the saved positions, probe subscans and the cached pattern order against N, convergence rows
   against ``epochs_done + 1``); attributes (``epochs_done``, the optimizer and cache scalars,
   JSON texts) must have the right type and range;
2. after reading: no NaN or inf in any array, pattern indices inside ``[0, N)``, a probe that
   is not zero, a background that is not negative, a provenance of pypty's components;
3. the saved arrays against the other parameters of the run
   (:func:`pypty.parameters.consistency.check_consistency` run again with them, markers against
   the probe subscans and aberration rows).

Public API: :class:`RestartError`, :func:`load_restart`, :func:`apply_restart`,
:func:`check_canvas`, :data:`GROWTH`.
"""
from __future__ import annotations

import json
import math
import os
import warnings

import h5py
import numpy as np

from ..data.memory import host_memory_bytes
from ..data.sources import Preprocessing, open_measurements, preprocess
from ..model.refinables import BY_NAME, REFINABLES
from ..model.reparam import REPARAMS
from ..parameters import PyptyParameterError
from .results import ResultsFileError, _open, _read_restart, results_path

__all__ = ["RestartError", "GROWTH", "load_restart", "apply_restart", "check_canvas"]

#: A dimension the run bounds may be at most this many times that bound (see the module docstring).
GROWTH = 4
#: Values of the ``probe_part`` attribute of ``/restart`` (see :mod:`pypty.model.reparam`).
_PROBE_PARTS = ("", "phase", "abs", "normed")
_KINDS = {"complex": ("c", "a complex array (complex64 or complex128)"),
          "real": ("f", "a real array (float32 or float64)"),
          "int": ("iu", "an integer array"),
          "number": ("biuf", "a numeric array"),
          "block": ("cf", "a real or complex array"),
          "text": ("O", "text")}


class RestartError(PyptyParameterError, ResultsFileError):
    """``restart_from`` names a results file that cannot be continued; the message names the file and dataset."""


def _bytes(n) -> str:
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024


def _declared(shape, dtype) -> int:
    return math.prod(int(d) for d in shape) * int(dtype.itemsize)


def _internal_shape(name, user_shape):
    """The optimizer-block shape of refinable ``name`` from its user-layout shape (see REFINABLES)."""
    if name == "obj":
        y, x, s, m = user_shape
        return (s, m, y, x)
    if name == "probe":
        y, x, m = user_shape[:3]
        return (user_shape[3] if len(user_shape) == 4 else 1, m, y, x)
    return tuple(user_shape)


def run_geometry(p) -> dict:
    """Number of patterns ``n``, detector and probe ``window`` of a run, from the data's shape only.

    Values are None where the data cannot be opened or have an unexpected
    rank (the set-up then reports the data's problem itself).
    """
    out = {"n": None, "detector": None, "window": None}
    data = p.get("dataset")
    h5 = None
    try:
        if data is not None:
            shape = tuple(np.shape(data))
        elif p.get("data_path"):
            raw, h5 = open_measurements(str(p["data_path"]))
            shape = tuple(raw.shape)
        else:
            return out
    except Exception:  # DataError, unreadable file: left to the set-up
        return out
    finally:
        if h5 is not None:
            h5.close()
    if p["algorithm"] == "lsq_compressed":
        if len(shape) == 2:
            out["n"] = int(shape[0])
        if p.get("masks") is not None and np.ndim(p["masks"]) == 3:
            out["detector"] = tuple(int(v) for v in np.shape(p["masks"])[1:])
    elif len(shape) in (3, 4):
        out["n"] = int(shape[0]) if len(shape) == 3 else int(shape[0]) * int(shape[1])
        try:  # the preprocessed shape, exactly as the data source computes it
            prep = Preprocessing(pad=int(p["data_pad"]), bin=int(p["data_bin"]))
            out["detector"] = tuple(preprocess(np.zeros((1,) + shape[-2:]), prep).shape[1:])
        except Exception:  # data_bin does not divide the detector: left to the set-up
            pass
    if out["detector"] is not None:
        up = int(p["upsample_pattern"])
        out["window"] = (out["detector"][0] * up, out["detector"][1] * up)
    return out


class _Reader:
    """One restart read: plan (metadata checks), then read with value checks."""

    def __init__(self, p, path):
        self.p, self.path = p, path
        geo = run_geometry(p)
        self.n, self.window, self.detector = geo["n"], geo["window"], geo["detector"]
        self.n_why = f"the data hold {self.n} patterns" if self.n is not None else ""
        self.win_why = ("the probe window of this run (the preprocessed pattern after data_bin/data_pad, times "
                        "upsample_pattern)")
        self.limit = host_memory_bytes()
        self.total = 0
        self.plan = {}  # dataset name -> NaN/inf forbidden
        self.shapes = {}  # refinable name -> user-layout shape under /arrays/
        self.desc = {}  # dataset name -> "shape (...) dtype (size)" as declared

    def error(self, msg) -> RestartError:
        return RestartError(f"parameter 'restart_from' ({self.path}): {msg}")

    # ------------------------------------------------------------------ metadata
    def _member(self, parent, name, cls, what):
        """``(parent/name, its full path)``; it must exist and be an instance of ``cls`` (``what``: "a group", ...)."""
        full = f"{parent.name.rstrip('/')}/{name}"
        if name not in parent:
            raise self.error(f"'{full}' is missing")
        obj = parent.get(name)
        if not isinstance(obj, cls):
            raise self.error(f"'{full}' is not {what}")
        return obj, full

    def group(self, parent, name):
        """``parent/name``, which must be an HDF5 group (a dataset in its place would be read by iterating)."""
        return self._member(parent, name, h5py.Group, "a group")[0]

    def meta(self, parent, name, kind, ndim, finite=True):
        """Check one dataset from its metadata (type, declared size, dtype, rank); return its shape."""
        ds, full = self._member(parent, name, h5py.Dataset, "a dataset")
        shape = ds.shape
        if shape is None:
            raise self.error(f"dataset '{full}' has no dataspace (an empty HDF5 dataset)")
        nbytes = _declared(shape, ds.dtype)
        desc = self.desc[full] = f"shape {tuple(int(d) for d in shape)} {ds.dtype} ({_bytes(nbytes)})"
        if nbytes > self.limit:
            raise self.error(f"dataset '{full}' declares {desc}, more than the {_bytes(self.limit)} of memory "
                             f"available: refused before reading it")
        codes, text = _KINDS[kind]
        ok = (ds.dtype.kind in codes and ds.dtype.itemsize <= 16) if kind != "text" else \
            h5py.check_string_dtype(ds.dtype) is not None
        if ok and kind in ("complex", "real") and ds.dtype.itemsize not in ((8, 16) if kind == "complex" else (4, 8)):
            ok = False
        if not ok:
            raise self.error(f"dataset '{full}' has dtype {ds.dtype}; expected {text}")
        ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if len(shape) not in ndims:
            raise self.error(f"dataset '{full}' has shape {tuple(shape)}; expected "
                             f"{' or '.join(str(d) for d in ndims)} dimension(s)")
        self.total += nbytes
        self.plan[ds.name] = finite
        return tuple(int(d) for d in shape)

    def expect(self, full, shape, expected, why):
        """Every fixed entry of ``expected`` (None = free) equals the dimension of ``shape``."""
        if len(shape) != len(expected) or any(e is not None and e != s for s, e in zip(shape, expected)):
            want = "(" + ", ".join("any" if e is None else str(e) for e in expected) + ")"
            raise self.error(f"dataset '{full}' has shape {shape} but this run needs {want}: {why}")

    def bound(self, full, shape, axis, limit, why):
        if shape[axis] > limit:
            raise self.error(f"dataset '{full}' declares {self.desc[full]}: dimension {axis} "
                             f"({shape[axis]}) is more than {GROWTH} x {why} ({limit // GROWTH}): refused before "
                             f"reading it")

    def n_rows(self, full, shape, what="one (y, x) row per pattern"):
        if self.n is None:  # data not readable here: the first positions array sets N
            self.n, self.n_why = shape[0], f"'/arrays/positions' has {shape[0]} rows"
        self.expect(full, shape, (self.n,) + shape[1:], f"{what}; {self.n_why}")

    def refinable(self, group, name):
        """Plan ``group/name``, a refinable array in the user layout; return its shape."""
        r = BY_NAME[name]
        full = f"{group.name.rstrip('/')}/{name}"
        ndim = {"obj": 4, "probe": (3, 4), "positions": 2, "tilts": 2, "beam_current": 1,
                "static_background": 2, "aberrations_array": 2}[name]
        shape = self.meta(group, name, r.kind, ndim)
        if name == "positions":
            self.n_rows(full, shape)
        elif name == "obj":
            ns = int(self.p["num_slices"])
            self.expect(full, shape, (None, None, ns, None), f"num_slices = {ns} (y, x, slices, modes)")
        elif name == "probe":
            if self.window is not None:
                self.expect(full, shape, self.window + (None,) * (len(shape) - 2), self.win_why)
            if len(shape) == 4 and self.n is not None:
                self.bound(full, shape, 3, self.n * GROWTH, "the number of patterns N")
        elif name == "tilts":
            self.expect(full, shape, (None, 6), "(N or 1, 6) mrad")
            if self.n is not None and shape[0] not in (1, self.n):
                raise self.error(f"dataset '{full}' has shape {shape} but this run needs (1, 6) or ({self.n}, 6): "
                                 f"{self.n_why}")
        elif name == "beam_current":
            self.n_rows(full, shape, "one value per pattern")
        elif name == "static_background":
            if self.detector is not None:
                self.expect(full, shape, self.detector, "the preprocessed pattern of this run (after "
                                                        "data_bin/data_pad)")
        elif name == "aberrations_array":
            # scipy is loaded with optics: imported only when needed
            from ..operators.optics import KRIVANEK_NAMES

            if shape[1] > len(KRIVANEK_NAMES):
                raise self.error(f"dataset '{full}' has {shape[1]} columns; at most {len(KRIVANEK_NAMES)} "
                                 f"aberration coefficients exist")
            if self.n is not None and shape[0] > max(self.n, 1):
                raise self.error(f"dataset '{full}' has {shape[0]} rows, more than the {self.n} patterns")
        return shape

    def block(self, group, name):
        """Plan an optimizer block (s, y, cached gradient or kept value): its shape is that of its array."""
        full = f"{group.name}/{name}"
        if name in BY_NAME:
            array, kind = name, BY_NAME[name].kind
        elif name in REPARAMS:
            array, kind = REPARAMS[name].array, "block"
        else:
            raise self.error(f"dataset '{full}': '{name}' is not an optimizer block of pypty "
                             f"(expected one of {sorted(set(BY_NAME) | set(REPARAMS))})")
        if array not in self.shapes:
            raise self.error(f"dataset '{full}' is a block of '{array}', which is not under '/arrays/'")
        want = _internal_shape(array, self.shapes[array])
        shape = self.meta(group, name, kind, len(want))
        self.expect(full, shape, want, f"the block of '/arrays/{array}' {self.shapes[array]} (internal layout)")

    # ------------------------------------------------------------------ attributes
    def attr(self, obj, key, conv, check, what):
        full = f"attribute '{key}' of '{obj.name}'"
        if key not in obj.attrs:
            raise self.error(f"{full} is missing")
        raw = obj.attrs[key]
        try:
            if isinstance(raw, bytes):
                raw = raw.decode()
            if isinstance(raw, np.ndarray) and raw.ndim == 0:
                raw = raw[()]
            val = conv(raw)
            ok = check(val)
        except (TypeError, ValueError, OverflowError, UnicodeDecodeError, json.JSONDecodeError):
            ok = False
        if not ok:
            raise self.error(f"{full} is {str(raw)[:80]!r}; expected {what}")
        return val

    # ------------------------------------------------------------------ plan
    def plan_file(self, f):
        self.epochs = self.attr(f, "epochs_done", _int, lambda v: v >= 0, "an integer >= 0 (epochs done)")
        if "restart" not in f:
            raise self.error("the file holds no restart state (no '/restart' group), so it cannot be continued "
                             "exactly; start a new run from its arrays with pypty.results.params_from_results")
        arrays = self.group(f, "arrays")
        for name in ("positions", "obj", "probe"):  # positions first: they fix N when the data are unreadable
            self.shapes[name] = self.refinable(arrays, name)
        self.positions = self.read(arrays["positions"])  # (N, 2) checked above: small
        self.check_extent(self.positions)  # before any larger dataset is planned or read
        for r in REFINABLES:
            if r.name not in self.shapes and r.name in arrays:
                self.shapes[r.name] = self.refinable(arrays, r.name)
        self.expect("/position_offset", self.meta(f, "position_offset", "real", 1), (2,), "(2,) px")
        self.plan_restart(self.group(f, "restart"))
        loss = self.group(f, "loss")
        rows = None
        for k in loss:
            shape = self.meta(loss, k, "text" if k == "refined" else "number", 1, finite=False)
            if rows is None:
                rows = shape[0]
            if shape[0] != rows or shape[0] > self.epochs:
                raise self.error(f"dataset '/loss/{k}' has {shape[0]} rows; the loss columns must have the same "
                                 f"number of rows, at most epochs_done = {self.epochs}")
        if "convergence" in f:
            conv = self.group(f, "convergence")
            for k in conv:
                shape = self.meta(conv, k, "number", 1, finite=False)
                self.bound(f"/convergence/{k}", shape, 0, GROWTH * (self.epochs + 1),
                           "epochs_done + 1 (one row per save point)")
        if "initial" in f and "positions" in self.group(f, "initial"):
            self.refinable(f["initial"], "positions")
        self.meta(f, "provenance", "text", 0)
        if self.total > self.limit:
            raise self.error(f"the datasets a restart reads declare {_bytes(self.total)} together, more than the "
                             f"{_bytes(self.limit)} of memory available: refused before reading them")

    def plan_restart(self, g):
        n = self.shapes["positions"][0]
        for name in ("positions_canvas", "given_positions"):
            if name in g or name == "positions_canvas":
                shape = self.meta(g, name, "real", 2)
                self.expect(f"/restart/{name}", shape, (n, 2), "the shape of '/arrays/positions'")
        part = str(_text(g.attrs.get("probe_part", "")))
        if part not in _PROBE_PARTS:
            raise self.error(f"attribute 'probe_part' of '/restart' is {part!r}; expected one of {_PROBE_PARTS}")
        if "blocks" in g:
            for name in self.group(g, "blocks"):
                if name == "_probe_ref":  # spectrum of the probe, or I0 per subscan for probe_normed
                    probe = _internal_shape("probe", self.shapes["probe"])
                    if part == "normed":
                        shape = self.meta(g["blocks"], name, "real", 1)
                        self.expect("/restart/blocks/_probe_ref", shape, probe[:1], "I0 per probe subscan")
                    else:
                        shape = self.meta(g["blocks"], name, "complex", 4)
                        self.expect("/restart/blocks/_probe_ref", shape, probe, "the spectrum of the probe")
                elif name in REPARAMS:
                    self.block(g["blocks"], name)
                else:
                    raise self.error(f"dataset '/restart/blocks/{name}' is not a reparametrised block of pypty "
                                     f"(expected one of {sorted(REPARAMS)} or _probe_ref)")
        if "optimizer" in g:
            og = self.group(g, "optimizer")
            self.attr(og, "hist_length", _int, lambda v: v >= -1, "an integer >= -1 (-1: unlimited)")
            self.attr(og, "bb_gamma", float, lambda v: math.isnan(v) or (math.isfinite(v) and v > 0),
                      "a finite number > 0, or NaN (none)")
            self.attr(og, "signature", json.loads, _signature_ok, "JSON null or [[block, [dims], dtype], ...]")
            self.attr(og, "last_reset_reason", _str, lambda v: True, "text")
            pairs = self.attr(og, "n_pairs", _int, lambda v: 0 <= v <= len(og),
                              f"an integer in [0, {len(og)}] (the pair groups present)")
            for i in range(pairs):
                key = f"pair_{i:04d}"
                pg = self.group(og, key)
                for a in ("rho", "gamma"):
                    self.attr(pg, a, float, math.isfinite, "a finite number")
                self.attr(pg, "gamma_k", json.loads, _float_dict_ok, "JSON {block: finite number}")
                for side in ("s", "y"):
                    for name in self.group(pg, side):
                        self.block(pg[side], name)
                if set(pg["s"]) != set(pg["y"]):
                    raise self.error(f"'/restart/optimizer/{key}': s and y hold different blocks "
                                     f"({sorted(pg['s'])} vs {sorted(pg['y'])})")
        if "cache" in g:
            cg = self.group(g, "cache")
            self.attr(cg, "names", json.loads, lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
                      "a JSON list of block names")
            self.attr(cg, "weight", float, math.isfinite, "a finite number")
            self.attr(cg, "subpixel", _bool, lambda v: True, "a bool")
            self.attr(cg, "f", float, math.isfinite, "a finite number (the cached loss)")
            if "terms" in cg.attrs:
                self.attr(cg, "terms", _str, lambda v: True, "text")
            if "parts" in cg.attrs:
                self.attr(cg, "parts", json.loads, _float_dict_ok, "JSON {part: finite number}")
            shape = self.meta(cg, "sequence", "int", 1)
            self.bound("/restart/cache/sequence", shape, 0, GROWTH * max(n, 1), "the number of patterns N")
            for name in self.group(cg, "g"):
                self.block(cg["g"], name)

    def check_extent(self, positions):
        """The object canvas against the extent of the saved positions (before the object is read)."""
        shape = self.shapes["obj"]
        win = self.window or self.shapes["probe"][:2]
        margin = int(self.p["extra_space_on_side_px"])
        top = np.floor(positions.max(axis=0) + 0.5) if positions.size else np.zeros(2)
        for axis in (0, 1):
            need = max(int(top[axis]), 0) + int(win[axis]) + 2 * margin
            self.bound("/arrays/obj", shape, axis, GROWTH * need,
                       f"the extent of the saved positions plus the probe window and margins "
                       f"along {'yx'[axis]}")

    # ------------------------------------------------------------------ reading
    def read(self, ds):
        """Read a planned dataset and check its values."""
        if ds.name not in self.plan:  # every dataset read was planned
            raise self.error(f"dataset '{ds.name}' was not expected in a results file")
        if h5py.check_string_dtype(ds.dtype) is not None:
            return ds.asstr()[()]
        arr = ds[()]
        if self.plan[ds.name] and arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            raise self.error(f"dataset '{ds.name}' holds {bad} NaN/inf value(s) of {arr.size}")
        return arr


def _int(v):
    if isinstance(v, (bool, np.bool_)) or not float(v).is_integer():
        raise ValueError
    return int(v)


def _bool(v):
    if not isinstance(v, (bool, np.bool_)) and v not in (0, 1):
        raise ValueError
    return bool(v)


def _str(v):
    if not isinstance(v, str):
        raise ValueError
    return v


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def _signature_ok(sig):
    if sig is None:
        return True
    return isinstance(sig, list) and all(
        isinstance(e, list) and len(e) == 3 and isinstance(e[0], str) and isinstance(e[2], str)
        and isinstance(e[1], list) and all(isinstance(d, int) and d >= 0 for d in e[1]) for e in sig)


def _float_dict_ok(d):
    return isinstance(d, dict) and all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                                       and math.isfinite(v) for k, v in d.items())


def _provenance_ok(h):
    comps = {r.component for r in REFINABLES}
    return isinstance(h, dict) and all(k in comps and isinstance(v, list) and all(isinstance(e, dict) for e in v)
                                       for k, v in h.items())


def load_restart(p: dict) -> dict:
    """Read and check the results file ``p["restart_from"]`` for an exact continuation of the run ``p``.

    Parameters
    ----------
    p : dict
        Validated parameters (only read): ``restart_from`` and what fixes the
        shapes (the data, data_bin/data_pad/upsample_pattern, num_slices,
        extra_space_on_side_px, algorithm/masks).

    Returns
    -------
    dict
        The parts of :func:`pypty.output.results.load_results` a restart
        uses: ``path`` (absolute), ``attrs`` {"epochs_done"}, ``arrays``
        (refinable arrays only), ``initial`` ({"positions"} or {}),
        ``position_offset``, ``loss``, ``convergence``, ``provenance``,
        ``positions_canvas``, ``restart``; ``params`` and ``timing`` are empty.

    Raises
    ------
    RestartError
        Missing, unreadable, incomplete or corrupted file, no restart state,
        a dataset of the wrong dtype, shape or declared size, NaN/inf values,
        malformed attributes (see the module docstring).
    """
    path = os.path.abspath(results_path(p["restart_from"]))
    rd = _Reader(p, path)
    try:
        f = _open(path)
    except (FileNotFoundError, ResultsFileError) as exc:
        raise rd.error(str(exc)) from None
    try:
        with f:
            rd.plan_file(f)
            arrays = {"positions": rd.positions}
            for r in REFINABLES:
                if r.name in rd.shapes and r.name not in arrays:
                    arrays[r.name] = rd.read(f["arrays"][r.name])
            restart = _read_restart(f["restart"], read=rd.read)
            loss = {k: rd.read(f["loss"][k]) for k in f["loss"]}
            out = {"path": path, "attrs": {"epochs_done": rd.epochs}, "arrays": arrays,
                   "initial": ({"positions": rd.read(f["initial/positions"])}
                               if "initial" in f and "positions" in f["initial"] else {}),
                   "position_offset": rd.read(f["position_offset"]), "loss": loss,
                   "convergence": {k: rd.read(f["convergence"][k]) for k in f["convergence"]}
                   if "convergence" in f else {},
                   "params": {}, "timing": {}, "positions_canvas": restart["positions_canvas"], "restart": restart}
            try:
                out["provenance"] = json.loads(rd.read(f["provenance"]))
            except json.JSONDecodeError as exc:
                raise rd.error(f"dataset '/provenance' is not valid JSON: {exc}") from None
    except RestartError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise rd.error(f"the file is corrupted: {exc}") from None
    if not _provenance_ok(out["provenance"]):
        raise rd.error("dataset '/provenance' is not {component: [entry, ...]} with pypty's components "
                       f"({sorted(r.component for r in REFINABLES)})")
    _check_values(rd, out)
    return out


def _check_values(rd, parent):
    arrays, n = parent["arrays"], rd.shapes["positions"][0]
    probe = arrays["probe"]
    if not np.any(probe != 0):
        raise rd.error("dataset '/arrays/probe' is zero everywhere")
    bg = arrays.get("static_background")
    if bg is not None and bg.size and bg.min() < 0:
        raise rd.error(f"dataset '/arrays/static_background' has negative counts (smallest {bg.min():.3g})")
    cache = parent["restart"].get("cache")
    if cache is not None:
        seq = np.asarray(cache["sequence"])
        if seq.size and (seq.min() < 0 or seq.max() >= n):
            raise rd.error(f"dataset '/restart/cache/sequence' holds pattern indices outside [0, {n})")
    p = rd.p
    k = probe.shape[3] if probe.ndim == 4 else 1
    if p["probe_marker"] is not None and int(np.max(p["probe_marker"])) >= k:
        raise rd.error(f"the saved probe has {k} subscan probe(s) but probe_marker uses probe "
                       f"{int(np.max(p['probe_marker']))}")
    ab = arrays.get("aberrations_array")
    if ab is not None and p["aberration_marker"] is not None and int(np.max(p["aberration_marker"])) >= ab.shape[0]:
        raise rd.error(f"the saved aberrations_array has {ab.shape[0]} row(s) but aberration_marker uses row "
                       f"{int(np.max(p['aberration_marker']))}")


def apply_restart(p: dict, parent: dict) -> None:
    """Put the arrays of ``parent`` (:func:`load_restart`) into the validated parameters ``p``.

    Only the refinable arrays, ``epoch_prev`` (epochs done) and
    ``parent_results`` change; ``positions`` are those of the saved object's
    frame (no further shift).  The parameters are then checked again with the
    saved arrays (:func:`pypty.parameters.consistency.check_consistency`); a
    failure is reported as a :class:`RestartError`.
    """
    from ..parameters.consistency import check_consistency

    for name, arr in parent["arrays"].items():  # refinable arrays only (load_restart reads nothing else)
        p[name] = arr
    p["epoch_prev"] = int(parent["attrs"]["epochs_done"])
    p["parent_results"] = parent["path"]
    try:
        with warnings.catch_warnings():  # the caller checks again and warns then
            warnings.simplefilter("ignore")
            check_consistency(p)
    except PyptyParameterError as exc:
        raise RestartError(f"parameter 'restart_from' ({parent['path']}): the saved arrays do not fit the "
                           f"parameters of this run: {exc}") from None


def check_canvas(parent: dict, canvas_yx) -> None:
    """Raise :class:`RestartError` unless the run's canvas is the saved object's (y, x) size."""
    obj = parent["arrays"]["obj"]
    if tuple(canvas_yx) != tuple(obj.shape[:2]):
        raise RestartError(f"parameter 'restart_from' ({parent['path']}): the saved object '/arrays/obj' is "
                           f"{tuple(obj.shape[:2])} px but the scan needs a {tuple(canvas_yx)} px canvas "
                           f"(different positions, probe window or extra_space_on_side_px?)")
