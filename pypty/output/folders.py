"""Output folder naming: time prefix, prefix, postfix and affixes that encode the key settings.

Two modes, chosen by the parameters:

* **Plain** (default; none of ``output_prefix_time``, ``output_prefix``,
  ``output_postfix``, ``output_affixes`` set): ``output_folder`` is the run
  folder itself, as in pypty's contract.  If it already holds a run (a
  ``results.h5``, ``params.json``, ``loss.csv`` or ``co.npy``) the run is
  refused with :class:`FileExistsError` unless ``overwrite_output=True`` or
  the run continues that one (``epoch_prev > 0`` or ``restart_from``).
* **Named**: ``output_folder`` is the parent folder and the run folder is
  ``<time>_<prefix>_<affixes...>_<postfix>`` inside it (empty parts are left
  out).  If that folder already holds a run, ``_2``, ``_3``, ... is appended
  unless ``overwrite_output=True``; an existing run is never overwritten
  silently.

Public API: :data:`AFFIXES`, :data:`AFFIX_PRESETS`, :data:`AFFIX_CHOICES`, :func:`naming_active`,
:func:`run_folder_name`, :func:`is_run_folder`, :func:`check_plain_folder`,
:func:`resolve_output_folder`.
"""
from __future__ import annotations

import datetime
import math
import os

import numpy as np

__all__ = ["AFFIXES", "AFFIX_PRESETS", "AFFIX_CHOICES", "naming_active", "run_folder_name", "is_run_folder",
           "check_plain_folder", "resolve_output_folder"]

_RUN_MARKERS = ("results.h5", "params.json", "loss.csv", "co.npy")


def _g(v) -> str:
    return f"{float(v):g}"


def _flag_text(p, name, short):
    v = p[name]
    if callable(v):
        return short + "~"  # epoch-dependent
    return short if v else ""


def _refine(p, info):
    parts = [_flag_text(p, "update_obj", "o"), _flag_text(p, "update_probe", "p"),
             _flag_text(p, "update_probe_pos", "g")]
    s = "".join(parts)
    return "ref" + s if s else "refnone"


def _hist(p, info):
    h = p["hist_length"]
    if callable(h):
        return "hist~"
    return "histinf" if h is None or (isinstance(h, float) and math.isinf(h)) else f"hist{int(h)}"


def _slices(p, info):
    n = int(p["num_slices"])
    if n == 1:
        return "1slice"
    dz = np.atleast_1d(np.asarray(p["slice_distances"], dtype=float))
    return f"{n}slice_dz{_g(dz[0])}" if np.all(dz == dz[0]) else f"{n}slice_dzvar"


#: Affix name -> function(validated params, info) -> text ("" = left out).  ``info`` holds
#: ``n_patterns``, ``window`` (Y, X) px, ``probe_modes`` and ``obj_modes``.
AFFIXES = {
    "patterns": lambda p, i: f"N{i['n_patterns']}",
    "window": lambda p, i: f"dp{i['window'][0]}" if i["window"][0] == i["window"][1]
    else f"dp{i['window'][0]}x{i['window'][1]}",
    "pmode": lambda p, i: f"p{i['probe_modes']}",
    "omode": lambda p, i: f"{i['obj_modes']}obj",
    "slices": _slices,
    "algorithm": lambda p, i: str(p["algorithm"]),
    "hist": _hist,
    "batch": lambda p, i: f"b{int(p['compute_batch'])}",
    "refine": _refine,
    "precision": lambda p, i: str(p["default_dtype"]),
    "kv": lambda p, i: f"{_g(p['acc_voltage'])}kV",
    "pixel": lambda p, i: f"px{_g(p['pixel_size_x_A'])}A",
    "sequence": lambda p, i: "" if p["sequence"] is None else ("seq~" if callable(p["sequence"])
                                                                else f"seq{len(p['sequence'])}"),
    "epochs": lambda p, i: f"ep{int(p['epoch_max'])}",
}
#: Presets usable in ``output_affixes`` (combinable with single affixes).
AFFIX_PRESETS = {
    "minimal": ("patterns", "window", "pmode", "slices"),
    "default": ("patterns", "window", "pmode", "omode", "slices", "algorithm", "hist", "refine"),
    "all": tuple(AFFIXES),
}
#: Values of ``output_affixes`` (the parameter table's choices): presets, then single affixes.
AFFIX_CHOICES = tuple(AFFIX_PRESETS) + tuple(AFFIXES)


def naming_active(p: dict) -> bool:
    """True when any folder-naming parameter is set (``output_folder`` is then the parent)."""
    return bool(p["output_prefix_time"]) or bool(p["output_prefix"]) or bool(p["output_postfix"]) \
        or bool(p["output_affixes"])


def _time_text(v, when: datetime.datetime) -> str:
    if v is False or v is None or v == "":
        return ""
    fmt = {True: "%Y%m%d", "date": "%Y%m%d", "time": "%H%M%S", "datetime": "%Y%m%d_%H%M%S"}.get(v, v)
    return when.strftime(fmt)


def run_folder_name(p: dict, info: dict, when: datetime.datetime | None = None) -> str:
    """Run folder name ``<time>_<prefix>_<affixes...>_<postfix>`` (see the module docstring).

    Parameters
    ----------
    p : dict
        Validated parameters.
    info : dict
        ``n_patterns`` int, ``window`` (Y, X) px, ``probe_modes`` int, ``obj_modes`` int.
    when : datetime or None
        Time used for ``output_prefix_time`` (now if None).

    Returns
    -------
    str
        The name; never empty ("run" if every part is empty).  Affixes appear
        in the order of :data:`AFFIXES`, whatever their order in
        ``output_affixes``.
    """
    when = when or datetime.datetime.now()
    wanted = set()
    for a in p["output_affixes"]:
        wanted.update(AFFIX_PRESETS.get(a, (a,)))
    parts = [_time_text(p["output_prefix_time"], when), p["output_prefix"]]
    parts += [AFFIXES[a](p, info) for a in AFFIXES if a in wanted]
    parts.append(p["output_postfix"])
    name = "_".join(s for s in parts if s)
    return name.replace(os.sep, "-") or "run"


def is_run_folder(folder: str) -> bool:
    """True when ``folder`` holds outputs of a pypty run (results.h5, params.json, loss.csv or co.npy)."""
    return os.path.isdir(folder) and any(os.path.exists(os.path.join(folder, m)) for m in _RUN_MARKERS)


def _continuing(p) -> bool:
    return int(p["epoch_prev"]) > 0 or bool(p["restart_from"])


def check_plain_folder(p: dict) -> None:
    """In plain mode, refuse an ``output_folder`` that holds another run (before any heavy work).

    Raises
    ------
    FileExistsError
        ``output_folder`` holds a run, and neither ``overwrite_output`` nor a
        continuation (``epoch_prev > 0``, ``restart_from``) was asked for.
    """
    out = p["output_folder"]
    if out and not naming_active(p) and is_run_folder(out) and not p["overwrite_output"] and not _continuing(p):
        raise FileExistsError(
            f"parameter 'output_folder': '{out}' already holds a pypty run; set overwrite_output=True to "
            f"replace it, epoch_prev/restart_from to continue it, or output_prefix_time/output_affixes to "
            f"make a new run folder inside it")


def resolve_output_folder(p: dict, info: dict, when: datetime.datetime | None = None) -> str:
    """Create and return the run folder ("" when ``output_folder`` is empty).

    Plain mode returns ``output_folder`` (after :func:`check_plain_folder`);
    named mode returns ``output_folder/<run_folder_name>``, with ``_2``,
    ``_3``, ... appended while that folder holds another run (unless
    ``overwrite_output``).
    """
    out = p["output_folder"]
    if not out:
        return ""
    if not naming_active(p):
        check_plain_folder(p)
        os.makedirs(out, exist_ok=True)
        return out
    base = os.path.join(out, run_folder_name(p, info, when))
    folder, k = base, 1
    while is_run_folder(folder) and not p["overwrite_output"]:
        k += 1
        folder = f"{base}_{k}"
    os.makedirs(folder, exist_ok=True)
    return folder
