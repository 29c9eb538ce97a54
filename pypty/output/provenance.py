"""Provenance: where each refined component came from and which runs refined it.

The history is a dict ``{component: [entry, ...]}``, oldest entry first, with
one list per refined array (components ``object``, ``probe``, ``positions``
and, when refined, ``tilts``, ``beam_current``, ``static_background``,
``aberrations_array``...).  The first entry says how the component was born
(``action`` e.g. "built from the mean pattern and aberrations", "loaded from
array", "initialised as vacuum", or what the user wrote in the
``provenance_origins`` parameter such as "simulated"), with ``metadata``.
Every run that refined the component appends one entry: ``uid`` (unique per
run), ``timestamp`` (ISO 8601, start of the run), ``pypty_version``,
``result_path``, ``note``, ``epochs`` ([first, last] epoch numbers of the
run), ``refined_epochs``, ``params`` (the parameters, JSON form).

A run started from a previous results file (``parent_results`` /
``restart_from``) inherits the history of every component whose initial array
is the one stored in that file; a component given as a different array starts
a new history.  The history is stored as JSON text in the results file
(``/provenance``).

Public API: :data:`COMPONENT_NAMES`, :func:`component_name`,
:func:`birth_entry`, :func:`initial_history`, :func:`run_entry`,
:func:`with_run`, :func:`load_history`, :func:`export_history_json`.
"""
from __future__ import annotations

import datetime
import hashlib
import os
import uuid

import numpy as np

from ..model.refinables import REFINABLES, component_name
from .atomic import write_json_atomic
from .results import load_results, results_path

__all__ = ["COMPONENT_NAMES", "component_name", "new_uid", "birth_entry", "initial_history", "run_entry",
           "with_run", "load_history", "export_history_json"]

#: Provenance component name of every refinable array (from :data:`pypty.model.refinables.REFINABLES`).
COMPONENT_NAMES = {r.name: r.component for r in REFINABLES}
_ORIGIN_KEYS = {"action", "source", "metadata", "note"}


def new_uid() -> str:
    """A new random run identifier (12 hex digits of a UUID4)."""
    return uuid.uuid4().hex[:12]


def now() -> str:
    """Current local time, ISO 8601 with microseconds."""
    return datetime.datetime.now().isoformat()


def _digest(arr) -> str:
    a = np.ascontiguousarray(arr)
    return "sha256:" + hashlib.sha256(str((a.shape, a.dtype.str)).encode() + a.tobytes()).hexdigest()[:16]


def _array_meta(arr) -> dict:
    a = np.asarray(arr)
    return {"shape": list(a.shape), "dtype": str(a.dtype), "digest": _digest(a)}


def birth_entry(action: str, source: str = "", metadata: dict | None = None, timestamp: str | None = None) -> dict:
    """First entry of a component's history: how it was born.

    Parameters
    ----------
    action : str
        What happened, e.g. "simulated", "loaded from array", "loaded from file".
    source : str
        Where from (a file name, a program), "" if not known.
    metadata : dict or None
        JSON-serialisable details (shapes, aberrations, a digest of the array).
    """
    return {"uid": new_uid(), "timestamp": timestamp or now(), "action": str(action), "source": str(source),
            "metadata": dict(metadata or {})}


def _born(name: str, p: dict, initial: np.ndarray) -> dict:
    """Birth entry of array ``name`` from the validated parameters ``p``."""
    given = p.get(name)
    meta = _array_meta(initial)
    if name == "obj" and given is None:
        return birth_entry("initialised as vacuum (ones)", "", {**meta, "num_slices": int(p["num_slices"])})
    if name == "probe" and given is None:
        ab = p.get("aberrations")
        return birth_entry(
            "built from the mean pattern and aberrations", "mean_pattern" if p.get("mean_pattern") is not None
            else "mean of the measured patterns",
            {**meta, "acc_voltage_kV": float(p["acc_voltage"]),
             "aberrations_A": None if ab is None else np.asarray(ab, dtype=float).ravel().tolist(),
             "extra_probe_defocus_A": float(p.get("extra_probe_defocus", 0.0)),
             "pixel_size_yx_A": [float(p["pixel_size_y_A"]), float(p["pixel_size_x_A"])]})
    if given is None:
        return birth_entry("initialised by pypty", "", meta)
    return birth_entry("loaded from array", "pypty_params['%s']" % name, meta)


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.array_equal(a, b))


def initial_history(p: dict, initial_arrays: dict, parent: dict | None = None) -> dict:
    """History of every component at the start of a run.

    Parameters
    ----------
    p : dict
        Validated parameters (``provenance_origins`` is honoured).
    initial_arrays : dict
        {array name: ndarray} at the start of the run, user layout; for
        ``positions`` the frame of the saved object.
    parent : dict or None
        :func:`pypty.results.load_results` output of the parent results
        file; a component inherits the parent's history when its initial
        array equals the parent's final array (positions: in either frame).

    Returns
    -------
    dict
        {component: [entry, ...]}.

    Raises
    ------
    ValueError
        ``provenance_origins`` names an unknown component or key.
    """
    origins = p.get("provenance_origins") or {}
    comps = {component_name(n): n for n in initial_arrays}
    unknown = sorted(set(origins) - set(comps))
    if unknown:
        raise ValueError(f"parameter 'provenance_origins': unknown component(s) {unknown}; "
                         f"expected some of {sorted(comps)}")
    hist = {}
    for comp, name in comps.items():
        arr = initial_arrays[name]
        if parent is not None and comp in parent["provenance"] and name in parent["arrays"]:
            candidates = [parent["arrays"][name]]
            if name == "positions" and parent.get("positions_canvas") is not None:
                candidates.append(parent["positions_canvas"])
            if any(_same(arr, c) for c in candidates):
                hist[comp] = [dict(e) for e in parent["provenance"][comp]]
                continue
        entry = _born(name, p, arr)
        if parent is not None:
            entry["metadata"]["note"] = f"differs from the array in parent results '{parent['path']}'"
        o = origins.get(comp)
        if isinstance(o, str):
            entry["action"] = o
        elif isinstance(o, dict):
            bad = sorted(set(o) - _ORIGIN_KEYS)
            if bad:
                raise ValueError(f"parameter 'provenance_origins'['{comp}']: unknown key(s) {bad}; "
                                 f"allowed {sorted(_ORIGIN_KEYS)}")
            entry.update({k: v for k, v in o.items() if k != "metadata"})
            entry["metadata"].update(o.get("metadata", {}))
        hist[comp] = [entry]
    return hist


def run_entry(uid: str, timestamp: str, version: str, result_path: str, note: str, params: dict,
              epochs: tuple, refined_epochs: int, continued_from: str = "") -> dict:
    """One run's entry in a component's history (see the module docstring for the fields)."""
    e = {"uid": uid, "timestamp": timestamp, "pypty_version": version, "action": "refined by pypty run",
         "result_path": os.path.abspath(result_path) if result_path else "", "note": note,
         "epochs": [int(epochs[0]), int(epochs[1])], "refined_epochs": int(refined_epochs), "params": params}
    if continued_from:
        e["continued_from"] = continued_from
    return e


def with_run(history: dict, entry: dict, refined_epochs: dict) -> dict:
    """Copy of ``history`` with ``entry`` appended to every component refined at least once.

    ``refined_epochs`` maps component names to the number of epochs in which
    this run refined them; the appended entry carries that count.
    """
    out = {}
    for comp, entries in history.items():
        out[comp] = list(entries)
        n = int(refined_epochs.get(comp, 0))
        if n > 0:
            out[comp].append({**entry, "refined_epochs": n})
    return out


def load_history(path: str) -> dict:
    """Provenance history {component: [entry, ...]} stored in a results file (or run folder).

    Raises FileNotFoundError / :class:`pypty.results.ResultsFileError` for a
    missing or unreadable file.
    """
    return load_results(path, restart_state=False)["provenance"]


def export_history_json(path: str, out: str | None = None) -> str:
    """Write the provenance history of a results file as indented JSON (atomically).

    Parameters
    ----------
    path : str
        Results file or run folder.
    out : str or None
        Target JSON file; None writes ``<results file stem>_provenance.json``
        next to the results file.

    Returns
    -------
    str
        The JSON file written.
    """
    src = results_path(path)
    hist = load_history(src)
    if out is None:
        out = os.path.splitext(src)[0] + "_provenance.json"
    write_json_atomic(out, hist)
    return out
