"""The parameter table of ``pypty.iterative.run(pypty_params)`` and its validation.

Every key that ``pypty_params`` may contain is described once, in
:data:`PARAMETERS` (insertion order follows the sections of the parameter
contract).  :func:`validate` turns a user dict into a complete, checked and
normalised copy; the rest of pypty reads only that copy.

Epoch-dependent ("pypty_lambda") parameters accept a constant, a callable
``f(epoch)`` or a string such as ``"lambda epoch: 1 if epoch > 20 else 0"``;
strings are compiled by :func:`pypty.epoch_eval.compile_epoch_expression`
during validation, and :func:`pypty.epoch_eval.resolve` (or
:func:`resolve_epoch_parameters`) gives their value at a given epoch.

Parameters that are not implemented yet (``supported=False``) are accepted
only when absent or equal to their default; a few supported parameters have
values that are not implemented yet (e.g. ``propmethod="yoshida"``).

Public API: :class:`Parameter`, :data:`PARAMETERS`, :data:`SECTIONS`,
:class:`PyptyParameterError`, :func:`default_value`, :func:`validate`,
:func:`describe`, :func:`resolve_epoch_parameters`, :func:`to_jsonable`,
:func:`parameter_reference_markdown`.
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
import os
import types as _types
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np

from .epoch_eval import EpochExpression, compile_epoch_expression, resolve

__all__ = [
    "ArrayDefault",
    "Parameter",
    "PARAMETERS",
    "SECTIONS",
    "PyptyParameterError",
    "default_value",
    "validate",
    "describe",
    "resolve_epoch_parameters",
    "to_jsonable",
    "parameter_reference_markdown",
]

#: Default of ``compute_batch``: sized from free memory (see :mod:`pypty.memory`).
DEFAULT_COMPUTE_BATCH = "auto"


class PyptyParameterError(ValueError):
    """A key or value of ``pypty_params`` is unknown, malformed or not supported yet."""


class _Invalid(Exception):
    """Internal: value has the wrong type or range (optional extra detail)."""


class _Unsupported(Exception):
    """Internal: value is valid but not implemented yet (message is a hint)."""


# --------------------------------------------------------------------------
# building blocks: checks and array defaults
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """A value check: ``fn(value) -> normalised value``.

    ``expects`` completes the sentence "parameter 'x' expects ...".  ``fn``
    raises ``_Invalid`` for a wrong type/range and ``_Unsupported`` for a
    valid value that is not implemented yet.
    """

    expects: str
    fn: Callable[[Any], Any]

    def __call__(self, value: Any) -> Any:
        return self.fn(value)


@dataclass(frozen=True)
class ArrayDefault:
    """Immutable description of an array default; :meth:`make` builds a fresh array."""

    values: tuple
    dtype: str = "float64"

    def make(self) -> np.ndarray:
        """A new numpy array holding ``values`` (never shared)."""
        return np.array(self.values, dtype=self.dtype)

    def __repr__(self) -> str:
        return "np.array(%r)" % (self.make().tolist(),)


def _is_bool(v: Any) -> bool:
    return isinstance(v, (bool, np.bool_))


def _is_int(v: Any) -> bool:
    """True for Python/numpy integers, False for bools."""
    return isinstance(v, (numbers.Integral, np.integer)) and not _is_bool(v)


def _is_real(v: Any) -> bool:
    """True for Python/numpy ints and floats, False for bools and complex."""
    return isinstance(v, (numbers.Real, np.integer, np.floating)) and not _is_bool(v)


def _bounds_text(ge=None, gt=None, le=None, lt=None) -> str:
    """' >= 0', ' in (0, 1]' ... for messages."""
    lo, hi = (ge, "[") if ge is not None else (gt, "(")
    up, close = (le, "]") if le is not None else (lt, ")")
    if lo is not None and up is not None:
        if hi == "[" and close == "]" and all(_is_int(x) for x in (lo, up)):
            return " in %s..%s" % (lo, up)
        return " in %s%s, %s%s" % (hi, lo, up, close)
    if lo is not None:
        return " %s %s" % (">=" if hi == "[" else ">", lo)
    if up is not None:
        return " %s %s" % ("<=" if close == "]" else "<", up)
    return ""


def _in_bounds(v, ge=None, gt=None, le=None, lt=None) -> bool:
    return ((ge is None or v >= ge) and (gt is None or v > gt)
            and (le is None or v <= le) and (lt is None or v < lt))


def _int(ge=None, gt=None, le=None, lt=None) -> Check:
    """An int (numpy ints accepted, bools rejected) within the bounds -> int."""
    def fn(v):
        if not _is_int(v) or not _in_bounds(int(v), ge, gt, le, lt):
            raise _Invalid()
        return int(v)
    return Check("an int" + _bounds_text(ge, gt, le, lt), fn)


def _float(ge=None, gt=None, le=None, lt=None, allow_inf=False) -> Check:
    """A finite real number (ints accepted, bools rejected) within the bounds -> float."""
    def fn(v):
        if not _is_real(v):
            raise _Invalid()
        f = float(v)
        if math.isnan(f) or (math.isinf(f) and not allow_inf) or not _in_bounds(f, ge, gt, le, lt):
            raise _Invalid()
        return f
    return Check("a float" + _bounds_text(ge, gt, le, lt), fn)


def _flag() -> Check:
    """A bool, or the ints 0/1 -> bool."""
    def fn(v):
        if _is_bool(v) or (_is_int(v) and int(v) in (0, 1)):
            return bool(v)
        raise _Invalid()
    return Check("a bool (or 0/1)", fn)


def _bool_or_int(ge=0) -> Check:
    """A bool (kept as bool) or an int >= ge (kept as int)."""
    def fn(v):
        if _is_bool(v):
            return bool(v)
        if _is_int(v) and int(v) >= ge:
            return int(v)
        raise _Invalid()
    return Check("a bool or an int >= %d" % ge, fn)


def _path() -> Check:
    """A str or os.PathLike -> str."""
    def fn(v):
        if isinstance(v, os.PathLike):
            v = os.fspath(v)
        if not isinstance(v, str):
            raise _Invalid()
        return v
    return Check("a str (path)", fn)


def _choice(choices: Tuple[str, ...], supported: Optional[Tuple[str, ...]] = None) -> Check:
    """One of ``choices``; values outside ``supported`` raise _Unsupported."""
    def fn(v):
        if not isinstance(v, str) or v not in choices:
            raise _Invalid()
        if supported is not None and v not in supported:
            raise _Unsupported("supported for now: %s" % ", ".join(repr(c) for c in supported))
        return v
    return Check("one of " + ", ".join(repr(c) for c in choices), fn)


def _optional(check: Check) -> Check:
    """None or whatever ``check`` accepts."""
    return Check(check.expects + " or None", lambda v: None if v is None else check(v))


def _array(ndim=None, last=None, kinds="biufc", optional=False, scalar_to_1d=False,
           finite=False, readonly_view=False, what=None) -> Check:
    """A numpy array or nested list -> a new numpy array (``np.array(copy=True)``).

    ndim: None, an int or a tuple of allowed ndims; last: required size of the
    last axis; kinds: allowed dtype kinds; scalar_to_1d: a number becomes a
    1-element array; finite: reject NaN/inf; readonly_view: no copy, return a
    read-only view instead (for the possibly huge dataset).
    """
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if what is None:
        what = "an array"
        if ndims:
            what = "a " + " or ".join("%dD" % n for n in ndims) + " array"
        if last is not None:
            what += " of shape (N, %d)" % last
        if kinds == "iuf":
            what += " of real numbers"

    def fn(v):
        if v is None and optional:
            return None
        if not (isinstance(v, (np.ndarray, list, tuple)) or (scalar_to_1d and _is_real(v))):
            raise _Invalid()
        try:
            arr = np.asarray(v) if readonly_view else np.array(v, copy=True)
        except (ValueError, TypeError):
            raise _Invalid("it cannot be converted to a numeric array") from None
        if arr.dtype.kind not in kinds:
            raise _Invalid("dtype %s is not allowed here" % arr.dtype)
        if scalar_to_1d and arr.ndim == 0:
            arr = arr.reshape(1)
        if ndims and arr.ndim not in ndims:
            raise _Invalid("it has %d dimension(s), shape %s" % (arr.ndim, arr.shape))
        if last is not None and arr.shape[-1] != last:
            raise _Invalid("shape is %s" % (arr.shape,))
        if arr.size == 0:
            raise _Invalid("it is empty")
        if finite and arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            raise _Invalid("it contains NaN or inf")
        if readonly_view:
            arr = arr.view()
            arr.flags.writeable = False
        return arr
    return Check(what + (" or None" if optional else ""), fn)


def _custom(expects: str, fn: Callable[[Any], Any]) -> Check:
    return Check(expects, fn)


def _str_list(choices: Tuple[str, ...], what: str) -> Check:
    """A list/tuple of strings from ``choices`` (ints accepted for numeric choices) -> tuple of str."""
    def fn(v):
        if isinstance(v, (str, int)) and not _is_bool(v):
            v = [v]
        if not isinstance(v, (list, tuple)):
            raise _Invalid()
        out = []
        for item in v:
            s = str(item) if _is_int(item) else item
            if not isinstance(s, str) or s not in choices:
                raise _Invalid("%r is not one of %s" % (item, ", ".join(repr(c) for c in choices)))
            if s not in out:
                out.append(s)
        return tuple(out)
    return Check("a list of %s from %s" % (what, ", ".join(repr(c) for c in choices)), fn)


def _str() -> Check:
    def fn(v):
        if not isinstance(v, str):
            raise _Invalid()
        return v
    return Check("a str", fn)


def _time_prefix(v):
    if _is_bool(v) or v is None:
        return bool(v)
    if isinstance(v, str) and (v in ("", "date", "time", "datetime") or "%" in v):
        return v
    raise _Invalid()


def _percentiles(v):
    try:
        lo, hi = (float(x) for x in v)
    except (TypeError, ValueError):
        raise _Invalid() from None
    if not 0 <= lo < hi <= 100:
        raise _Invalid("need 0 <= low < high <= 100")
    return (lo, hi)


def _origins(v):
    if v is None:
        return None
    if not isinstance(v, Mapping) or not all(isinstance(k, str) and isinstance(x, (str, Mapping))
                                             for k, x in v.items()):
        raise _Invalid()
    return {k: (x if isinstance(x, str) else dict(x)) for k, x in v.items()}


# Choices of the pypty-extension output parameters (kept here so that importing the
# parameter table does not import matplotlib or tifffile).
FIGURE_CHOICES = ("loss", "object_phase", "probe", "positions", "patterns", "all")
TIFF_CHOICES = ("object_phase", "object_amplitude", "probe_amplitude", "probe_phase")
AFFIX_CHOICES = ("minimal", "default", "all", "patterns", "window", "pmode", "omode", "slices", "algorithm",
                 "hist", "batch", "refine", "precision", "kv", "pixel", "sequence", "epochs")


# ---- parameter-specific checks ---------------------------------------------

def _backend(v):
    if v is None:
        return None
    raise _Unsupported("pypty picks CuPy when a GPU is available and NumPy otherwise; "
                       "leave 'backend' unset or None")


def _real_pair(v):
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if not isinstance(v, (list, tuple)) or len(v) != 2 or not all(_is_real(x) for x in v):
        raise _Invalid()
    out = tuple(int(x) if _is_int(x) else float(x) for x in v)
    if not all(math.isfinite(x) for x in out):
        raise _Invalid()
    return out


def _int_pair(minimum):
    def fn(v):
        if v is None:
            return None
        if isinstance(v, np.ndarray):
            v = v.tolist()
        if not isinstance(v, (list, tuple)) or len(v) != 2 \
                or not all(_is_int(x) and int(x) >= minimum for x in v):
            raise _Invalid()
        return tuple(int(x) for x in v)
    return fn


def _sequence(v):
    if v is None:
        return None
    if isinstance(v, np.ndarray):
        if v.ndim != 1:
            raise _Invalid("it has shape %s" % (v.shape,))
        v = v.tolist()
    if not isinstance(v, (list, tuple, range)) or not all(_is_int(x) and int(x) >= 0 for x in v):
        raise _Invalid()
    if len(v) == 0:
        raise _Invalid("it is empty")
    return [int(x) for x in v]


def _is_pos_inf(v) -> bool:
    return _is_real(v) and math.isinf(float(v)) and float(v) > 0


def _hist_length(v):
    if _is_pos_inf(v):
        return math.inf
    if _is_int(v) and int(v) >= 0:
        return int(v)
    raise _Invalid()


def _max_count(v):
    if v is None:
        return None
    if _is_pos_inf(v):
        return math.inf
    if _is_int(v) and int(v) > 0:
        return int(v)
    raise _Invalid()


def _compute_batch(v):
    if isinstance(v, str) and v == "auto":
        return "auto"
    if _is_int(v) and int(v) >= 1:
        return int(v)
    raise _Invalid()


def _dtype_or_none(v):
    if v is None:
        return None
    if isinstance(v, (bool, int, float)) or _is_bool(v):
        raise _Invalid()
    try:
        dt = np.dtype(v)
    except TypeError:
        raise _Invalid() from None
    if dt.kind not in "biufc":
        raise _Invalid("dtype %s is not numeric" % dt)
    return dt


_background_array = _array(ndim=2, kinds="iuf")


def _static_background(v):
    if _is_real(v):
        f = float(v)
        if not (math.isfinite(f) and f >= 0):
            raise _Invalid()
        return f
    return _background_array(v)


_window_array = _array(ndim=2, kinds="iuf")


def _window(v):
    if v is None:
        return None
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_real(x) for x in v):
        inner, outer = float(v[0]), float(v[1])
        if not 0 <= inner <= outer:
            raise _Invalid("radii must satisfy 0 <= inner <= outer")
        return [inner, outer]
    return _window_array(v)


def _phase_plate(v):
    if v is None:
        return None
    return _path()(v)


def _all_zero(v) -> bool:
    """True when ``v`` is a number or array whose entries are all zero."""
    try:
        return bool(np.all(np.asarray(v) == 0))
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Parameter:
    """One entry of the parameter table.

    Attributes: ``name``; ``default`` (an immutable value or an
    :class:`ArrayDefault`; use :func:`default_value` for a fresh copy);
    ``types`` (short human description such as "float"); ``section`` (the
    contract's section heading); ``unit`` ("Å", "kV", "px" or ""); ``doc``
    (one line); ``epoch_dependent`` (accepts callables / lambda strings);
    ``supported`` (False: accepted only at the default); ``choices`` (allowed
    strings) and ``supported_choices`` (the implemented subset);
    ``support_note`` (what is implemented, for the docs); ``check`` (the
    value check); ``default_equivalent`` (optional predicate telling that a
    value has the same effect as the default); ``extension`` (True for
    parameters pypty adds to the contract; their doc starts with
    "pypty extension").
    """

    name: str
    default: Any
    types: str
    section: str
    doc: str
    check: Check
    unit: str = ""
    epoch_dependent: bool = False
    supported: bool = False
    choices: Optional[Tuple[str, ...]] = None
    supported_choices: Optional[Tuple[str, ...]] = None
    support_note: str = ""
    default_equivalent: Optional[Callable[[Any], bool]] = None
    extension: bool = False

    @property
    def expects(self) -> str:
        """Completion of "parameter 'x' expects ..." for error messages."""
        text = self.check.expects
        if self.epoch_dependent:
            text += ", a callable f(epoch) or a 'lambda epoch: ...' string"
        return text

    @property
    def default_text(self) -> str:
        """The default as shown in messages and docs."""
        if isinstance(self.default, str):
            return '"%s"' % self.default
        return repr(self.default)


def _p(name, default, types, doc, check=None, *, unit="", epoch=False, supported=False,
       choices=None, supported_choices=None, support_note="", default_equivalent=None, extension=False):
    """Keyword bundle for one table row (the section is added by _section)."""
    if check is None:
        if choices is None:
            raise AssertionError("parameter %s needs a check" % name)
        check = _choice(choices, supported_choices)
    if supported_choices and not support_note:
        support_note = "only " + ", ".join('"%s"' % c for c in supported_choices)
    return dict(name=name, default=default, types=types, doc=doc, check=check, unit=unit,
                epoch_dependent=epoch, supported=supported, choices=choices,
                supported_choices=supported_choices, support_note=support_note,
                default_equivalent=default_equivalent, extension=extension)


_WEIGHT = _float(ge=0)
_ANY_FLOAT = _float()
_FLAG = _flag()

_TABLE = [
    ("Backend Settings", [
        _p("backend", None, "None", "Array backend; None picks CuPy when a GPU is available, "
           "else NumPy (the contract's default is the CuPy module).",
           _custom("None", _backend), supported=True, support_note="default only"),
        _p("default_dtype", "double", "str", "Floating-point precision of the computation.",
           choices=("double", "single"), supported=True),
    ]),
    ("Dataset", [
        _p("data_path", "", "str", "Path of the measurements: .h5 file with a 'data' dataset "
           "(N, ky, kx), or a 3D/4D .npy file.", _path(), supported=True),
        _p("dataset", None, "array or None", "In-memory measurements (N, ky, kx) or "
           "(scan_y, scan_x, ky, kx), or compressed signals (N, n_masks) for 'lsq_compressed'; when "
           "given, data_path is ignored (kept as a read-only view, not copied).",
           _array(ndim=(2, 3, 4), kinds="iuf", optional=True, readonly_view=True),
           supported=True),
        _p("masks", None, "array or None", "Virtual-detector masks (n_masks, ky, kx), centred like "
           "the patterns, for compressed data (N, n_masks) with algorithm 'lsq_compressed': the "
           "model patterns are projected onto the masks; None for ordinary patterns.",
           _array(ndim=3, kinds="iuf", optional=True, finite=True), supported=True),
        _p("data_multiplier", 1, "float", "Factor applied to every pattern when it is read.",
           _float(gt=0), supported=True),
        _p("data_pad", 0, "int", "Padding added around every pattern when read (a quarter of "
           "the pattern width gives good far-field sampling).", _int(ge=0), unit="px",
           supported=True),
        _p("data_bin", 1, "int", "Binning factor applied to the patterns when read.",
           _int(ge=1), supported=True),
        _p("flip_ky", False, "bool", "Flip the patterns along ky when read.", _FLAG,
           supported=True),
        _p("data_shift_vector", (0, 0), "pair of numbers", "Shift (y, x) applied to every "
           "pattern when read.", _custom("a list of two numbers (y, x)", _real_pair), unit="px",
           supported=True),
        _p("upsample_pattern", 1, "int", "Reciprocal-space upsampling factor u of the beam, for "
           "beams wider than the pattern extent: the probe window has u times the pattern's pixels "
           "and u x u model pixels are summed into one detector pixel.", _int(ge=1), supported=True),
        _p("sequence", None, "list of int or None", "Indices of the measurements used in the "
           "refinement; None uses all of them.",
           _custom("a list of ints >= 0 or None", _sequence), epoch=True, supported=True),
        _p("use_full_FOV", True, "bool", "With a sequence: size the object for all measurements "
           "(True) or only for the selected ones (False).", _FLAG, supported=True),
    ]),
    ("Saving and Printing", [
        _p("output_folder", "", "str", "Folder for outputs, logs and checkpoints.", _path(),
           supported=True),
        _p("save_loss_log", True, "bool", "Write the loss history to loss.csv.", _FLAG,
           supported=True),
        _p("epoch_prev", 0, "int", "Number of epochs already done (for restarts).", _int(ge=0),
           supported=True),
        _p("save_checkpoints_every_epoch", False, "bool or int", "Save numbered checkpoints: "
           "True every epoch, an int n every n-th epoch.", _bool_or_int(0), supported=True),
        _p("save_inter_checkpoints", True, "bool or int", "Save overwritable checkpoints "
           "(co.npy object, cp.npy probe, cg.npy positions, ...): True every epoch, an int n "
           "every n-th epoch.", _bool_or_int(0), supported=True),
        _p("print_flag", 3, "int", "Verbosity: 0 silent, 1 one updating line, 2-3 moderate, "
           "4 most detailed.", _int(ge=0, le=4), supported=True),
    ]),
    ("Results, Figures and Provenance (pypty extensions)", [
        _p("save_results_every", 10, "int", "pypty extension: write results.h5 (every refined array, loss "
           "history, parameters, provenance, convergence summary, optimizer state for an exact restart) "
           "after every n-th epoch (0: only at the end); it is always written at the end and when the run "
           "is interrupted.", _int(ge=0), epoch=True, supported=True, extension=True),
        _p("save_figures", ("loss", "object_phase", "probe", "positions"), "list of str", "pypty "
           "extension: PNG figures made at the end and at the save_figures_every cadence, into figures/: "
           "loss, object_phase (sum over slices and per slice), probe (real and reciprocal amplitude), "
           "positions (initial vs refined), patterns (model vs measured), or all; [] for none.",
           _str_list(FIGURE_CHOICES, "figure names"), supported=True, extension=True),
        _p("save_figures_every", 0, "int", "pypty extension: also make figures and TIFF exports after "
           "every n-th epoch (0: only at the end).", _int(ge=0), epoch=True, supported=True,
           extension=True),
        _p("save_tiff", (), "list of str", "pypty extension: TIFF exports into tiff/ (at the end and at "
           "the save_figures_every cadence): object_phase, object_amplitude (stacks over slices plus "
           "the projection), probe_amplitude, probe_phase; [] for none.",
           _str_list(TIFF_CHOICES, "quantities"), supported=True, extension=True),
        _p("tiff_bit_depths", ("raw",), "list of str", "pypty extension: TIFF bit depths: raw "
           "(float32 values), 32 (float32 scaled to 0..1), 16 (uint16 0..65535), 8 (uint8 0..255).",
           _str_list(("raw", "32", "16", "8"), "bit depths"), supported=True, extension=True),
        _p("tiff_fov", ("crop",), "list of str", "pypty extension: object field of view in TIFF "
           "exports: crop (the region scanned by the probe-window centres) and/or full (the canvas).",
           _str_list(("crop", "full"), "fields of view"), supported=True, extension=True),
        _p("convergence_percentiles", (15.0, 85.0), "pair of numbers", "pypty extension: phase "
           "percentiles separating background (below the first) and signal (above the second) in the "
           "convergence summary of results.h5.", _custom("two numbers 0 <= low < high <= 100",
                                                        _percentiles), supported=True, extension=True),
        _p("output_prefix_time", False, "bool or str", "pypty extension: start the run folder name "
           "with the time: True or 'date' (%Y%m%d), 'time', 'datetime' or a strftime format; when any "
           "naming option is set, output_folder is the parent of a new run folder.",
           _custom("a bool, 'date', 'time', 'datetime' or a strftime format", _time_prefix),
           supported=True, extension=True),
        _p("output_prefix", "", "str", "pypty extension: prefix of the run folder name (after the time).",
           _str(), supported=True, extension=True),
        _p("output_postfix", "", "str", "pypty extension: postfix of the run folder name.", _str(),
           supported=True, extension=True),
        _p("output_affixes", (), "list of str", "pypty extension: key settings encoded in the run "
           "folder name (presets minimal, default, all, or single affixes patterns, window, pmode, omode, "
           "slices, algorithm, hist, batch, refine, precision, kv, pixel, sequence, epochs).",
           _str_list(AFFIX_CHOICES, "affixes"), supported=True, extension=True),
        _p("overwrite_output", False, "bool", "pypty extension: allow writing into a folder that holds "
           "another run (otherwise a plain output_folder is refused and a named one gets _2, _3, ...).",
           _FLAG, supported=True, extension=True),
        _p("restart_from", "", "str", "pypty extension: results.h5 (or its run folder) to continue "
           "exactly: its arrays, epoch_prev, optimizer history and provenance replace obj, probe, "
           "positions and epoch_prev.", _path(), supported=True, extension=True),
        _p("parent_results", "", "str", "pypty extension: results file this run starts from (set by "
           "pypty.results.params_from_results); components whose initial array is the one saved there "
           "inherit its provenance history.", _path(), supported=True, extension=True),
        _p("provenance_note", "", "str", "pypty extension: note stored in this run's provenance entries.",
           _str(), supported=True, extension=True),
        _p("provenance_origins", None, "dict or None", "pypty extension: how initial arrays were made, "
           "per component (object, probe, positions, ...): a text such as 'simulated with abTEM' or a dict "
           "with action, source, note, metadata.", _custom("a dict {component: str or dict} or None",
                                                           _origins), supported=True, extension=True),
    ]),
    ("Experimental Parameters", [
        _p("acc_voltage", 60, "float", "Accelerating voltage of the microscope.", _float(gt=0),
           unit="kV", supported=True),
        _p("aperture_mask", None, "array or None", "Aperture mask, usable by a reciprocal-space "
           "probe constraint.", _array(optional=True)),
        _p("recon_type", "far_field", "str", "Reconstruction geometry.",
           choices=("far_field", "near_field"), supported=True),
        _p("alpha_near_field", 0.0, "float", "Near field: illumination semi-angle of the "
           "spatial-coherence envelope exp(-(pi alpha/lambda)^2 (lambda df k + Cs lambda^3 k^3)^2), "
           "which is 1 at k = 0 (the unscattered flux is preserved).", _float(ge=0), unit="mrad",
           supported=True),
        _p("defocus_array", ArrayDefault((0.0,)), "array", "Near-field defocus (propagation "
           "distance from the exit plane to the image plane, positive downstream), one common value "
           "or one per measurement; not used in far field.",
           _array(ndim=1, kinds="iuf", scalar_to_1d=True, finite=True), unit="Å", supported=True),
        _p("Cs", 0.0, "float", "Near field: spherical aberration of the imaging lens.", _ANY_FLOAT,
           unit="Å", supported=True),
    ]),
    ("Spatial Calibration", [
        _p("slice_distances", ArrayDefault((10.0,)), "array", "Distance between object slices, "
           "one common value or one per slice (a number is taken as a 1-element array).",
           _array(ndim=1, kinds="iuf", scalar_to_1d=True, finite=True), unit="Å",
           supported=True),
        _p("pixel_size_x_A", 1.0, "float", "Object pixel size along x.", _float(gt=0),
           unit="Å", supported=True),
        _p("pixel_size_y_A", 1.0, "float", "Object pixel size along y.", _float(gt=0),
           unit="Å", supported=True),
        _p("scan_size", None, "tuple of 2 ints or None", "Number of scan points (y, x); needed "
           "by the position and tilt grid constraints.",
           _custom("a pair of ints >= 1 (scan_y, scan_x) or None", _int_pair(1)),
           supported=True),
        _p("num_slices", 1, "int", "Number of object slices.", _int(ge=1), supported=True),
    ]),
    ("Refinable Arrays", [
        _p("obj", None, "array or None", "Initial transmission function (y, x, slices, modes); "
           "None means ones sized to fit the scan (contract: np.ones((1, 1, num_slices, 1)), "
           "padded with ones).", _array(ndim=4, kinds="iufc", optional=True, finite=True),
           supported=True),
        _p("probe", None, "array or None", "Initial real-space probe (y, x, modes) or "
           "(y, x, modes, subscans); None builds it from the data.",
           _array(ndim=(3, 4), kinds="iufc", optional=True, finite=True), supported=True),
        _p("positions", ArrayDefault(((0.0, 0.0),)), "array", "Scan positions (N, 2) as "
           "[[y0, x0], ...] in reconstruction pixels; one row for a single common point.",
           _array(ndim=2, last=2, kinds="iuf", finite=True), unit="px", supported=True),
        _p("tilts", ArrayDefault(((0.0,) * 6,)), "array", "Beam tilts (N, 6) in mrad: (y, x) "
           "before the specimen (a shift in the aperture plane), inside (a tilted Fresnel propagator "
           "between slices) and after (a shift in the detector plane); one row for a common tilt. "
           "Columns not used by tilt_mode must be zero.",
           _array(ndim=2, last=6, kinds="iuf", finite=True), unit="mrad", supported=True),
        _p("tilt_mode", 0, "int", "Which tilts are in the model (and refined): 0 inside; 1 after; "
           "2 before; 3 inside and after; 4 all three.", _int(ge=0, le=4), supported=True),
        _p("static_background", 0, "float or array", "Static background (counts per detector "
           "pixel) added to every model pattern, zero in the data_pad border; an array has the "
           "padded pattern shape or the shape before data_pad, a positive number creates a flat one, "
           "0 disables (refined as b^2, so start from a small positive value to refine it).",
           _custom("a float >= 0 or a 2D array", _static_background), unit="counts",
           supported=True),
        _p("beam_current", None, "array or None", "Relative beam current (or dwell time) per "
           "measurement, 1D of length N, multiplying the model pattern; None is all ones (created "
           "when update_beam_current can be on).", _array(ndim=1, kinds="iuf", optional=True,
                                                   finite=True), supported=True),
    ]),
    ("Propagation, Shifting, and Resizing", [
        _p("propmethod", "multislice", "str", "Propagation scheme; the two others are more "
           "accurate and slower: better_multislice is second order (Strang), yoshida fourth order "
           "(3x the propagations).", choices=("multislice", "better_multislice", "yoshida"),
           supported=True),
        _p("allow_subPixel_shift", True, "bool", "Use sub-pixel shifts; if False positions are "
           "rounded until they are refined.", _FLAG, supported=True),
        _p("dynamically_resize_yx_object", False, "bool or int", "Pad the object (with vacuum) "
           "when refined positions move a probe window out of it; an int n tolerates n px outside "
           "before padding. The optimizer history is kept (padded with zeros).",
           _bool_or_int(0), unit="px", epoch=True, supported=True),
        _p("extra_space_on_side_px", 0, "int", "Smallest margin between any probe window and the "
           "object edge; the canvas is padded with vacuum (and positions shifted) to provide it.",
           _int(ge=0), unit="px", supported=True),
    ]),
    ("Bandwidth Limitation", [
        _p("damping_cutoff_multislice", 2 / 3, "float", "Frequency cutoff (fraction of Nyquist) "
           "of the multislice propagation; above 2/3 aliasing may appear.",
           _float(gt=0, le=1), supported=True),
        _p("smooth_rolloff", 0, "float", "Width of a smooth roll-off at the frequency cutoff; "
           "0 gives a hard edge.", _float(ge=0), supported=True),
        _p("update_extra_cut", 0.005, "float", "Extra frequency cutoff applied to the full "
           "object beyond the cropped regions.", _float(ge=0)),
        _p("lazy_clean", False, "bool", "Bandwidth-limit only the cropped regions, not the full "
           "object (not recommended).", _FLAG),
    ]),
    ("Optimization Settings", [
        _p("algorithm", "lsq_sqrt", "str", "Loss: lsq_sqrt (Gaussian on amplitudes), ml "
           "(Poisson), lsq (squared intensities), lsq_sqrt_2 (modified Gaussian), lsq_compressed "
           "(virtual-detector signals).",
           choices=("lsq_sqrt", "ml", "lsq", "lsq_sqrt_2", "lsq_compressed"), supported=True),
        _p("epoch_max", 200, "int", "Number of epochs to run.", _int(ge=0), supported=True),
        _p("wolfe_c1_constant", 0.1, "float", "Sufficient-decrease (first Wolfe) constant; "
           "0 < c1 < c2.", _float(gt=0, lt=1), epoch=True, supported=True),
        _p("wolfe_c2_constant", 0.9, "float", "Curvature (second Wolfe) constant; c1 < c2 < 1.",
           _float(gt=0, lt=1), epoch=True, supported=True),
        _p("loss_weight", 1, "float", "Factor multiplying the data loss.", _WEIGHT, epoch=True,
           supported=True),
        _p("max_count", 20, "int or None", "Largest number of loss evaluations in one line "
           "search before the step is rejected and the history reset; None or inf: no limit.",
           _custom("an int > 0, None or inf", _max_count), supported=True),
        _p("reduce_factor", 0.1, "float", "Step shrink factor when the first Wolfe condition "
           "fails.", _float(gt=0, lt=1), supported=True),
        _p("optimism", 3.0, "float", "Step growth factor when the second Wolfe condition fails.",
           _float(gt=1), supported=True),
        _p("min_step", 1e-20, "float", "Steps below this reset the history; 0 disables.",
           _float(ge=0), supported=True),
        _p("hist_length", 10, "int or inf", "Quasi-Newton memory: 0 gradient descent, 1 "
           "conjugate gradient, N L-BFGS, inf full BFGS.",
           _custom("an int >= 0 or inf", _hist_length), epoch=True, supported=True),
        _p("update_step_bfgs", 1, "float", "Initial step length tried by the line search.",
           _float(gt=0), epoch=True, supported=True),
        _p("phase_only_obj", False, "bool", "Refine only the phase of the object.", _FLAG,
           epoch=True, supported=True),
        _p("tune_only_probe_phase", False, "bool", "Refine only the reciprocal-space phase of "
           "the probe (its CTF); both this and tune_only_probe_abs on refines the whole probe.",
           _FLAG, epoch=True, supported=True),
        _p("tune_only_probe_abs", False, "bool", "Refine only the reciprocal-space amplitude of "
           "the probe (its aperture).", _FLAG, epoch=True, supported=True),
        _p("reset_history_flag", False, "bool", "Clear the optimiser history when true.", _FLAG,
           epoch=True, supported=True),
    ]),
    ("Updating Refinable Arrays", [
        _p("update_probe", 1, "bool", "Refine the probe.", _FLAG, epoch=True, supported=True),
        _p("update_obj", 1, "bool", "Refine the object.", _FLAG, epoch=True, supported=True),
        _p("update_probe_pos", 0, "bool", "Refine the scan positions.", _FLAG, epoch=True,
           supported=True),
        _p("update_tilts", 0, "bool", "Refine the tilts (the types selected by tilt_mode).", _FLAG,
           epoch=True, supported=True),
        _p("update_beam_current", 0, "bool", "Refine the beam current.", _FLAG, epoch=True,
           supported=True),
        _p("update_aberrations_array", 0, "bool", "Refine the aberrations array.", _FLAG,
           epoch=True, supported=True),
        _p("update_static_background", 0, "bool", "Refine the static background.", _FLAG,
           epoch=True, supported=True),
    ]),
    ("Multiple Illumination Functions", [
        _p("aberrations_array", ArrayDefault(((0.0,),)), "array", "Aberrations per subscan "
           "(N_subscans, N_aberrations) in Krivanek notation (columns C10, C12a, C12b, C21a, ...), "
           "each row a CTF exp(-i chi) applied to the probe of the measurements that use it; for "
           "beams that change across the field of view.",
           _array(ndim=2, kinds="iuf", finite=True), unit="Å", supported=True),
        _p("phase_plate_in_h5", None, "str or None", "HDF5 file whose 'configs' dataset holds "
           "one phase plate per measurement (N, y, x) in the probe's reciprocal space, centred: "
           "real values are phases (rad), complex values multiply the probe.",
           _custom("a str (path) or None", _phase_plate), supported=True),
        _p("aberration_marker", None, "array or None", "Row of aberrations_array used by each "
           "measurement, 1D of length N (needed when it has several rows).",
           _array(ndim=1, kinds="iu", optional=True), supported=True),
        _p("probe_marker", None, "array or None", "Probe (last axis of a 4D probe) used by each "
           "measurement, 1D of length N.", _array(ndim=1, kinds="iu", optional=True),
           supported=True),
    ]),
    ("Memory Usage", [
        _p("load_one_by_one", True, "bool", "Stream patterns to the device batch by batch "
           "instead of loading them all at once.", _FLAG, supported=True),
        _p("smart_memory", True, "bool", "Free cached device memory when needed to avoid "
           "fragmentation.", _FLAG, epoch=True, supported=True),
        _p("remove_fft_cache", False, "bool", "Periodically drop the FFT plan cache "
           "(experimental).", _FLAG),
        _p("compute_batch", DEFAULT_COMPUTE_BATCH, "int or str", "Measurements per multislice "
           'batch; "auto" picks the largest batch whose estimated working memory fits into '
           "memory_saturation of the free device (GPU) or host (CPU) memory (pypty/memory.py).",
           _custom('an int >= 1 or "auto"', _compute_batch), supported=True),
        _p("force_dataset_dtype", None, "dtype or None", "Storage dtype of the dataset; None "
           "uses the float type of default_dtype.",
           _custom("a numeric numpy dtype or None", _dtype_or_none), supported=True),
        _p("preload_to_cpu", False, "bool", "Read the whole dataset into host memory first "
           "(faster for .h5 files).", _FLAG, supported=True),
        _p("force_pad", False, "bool", "Pad the stored data once at start (more memory, faster) "
           "instead of on the fly.", _FLAG, supported=True),
        _p("memory_saturation", 0.7, "float", 'Fraction of free device memory targeted by '
           'compute_batch="auto".', _float(gt=0, le=1), supported=True),
    ]),
    ("Constraints Contributing to the Loss", [
        _p("mixed_variance_weight", 0, "float", "Penalty on low-frequency differences between "
           "object modes.", _WEIGHT, epoch=True),
        _p("mixed_variance_sigma", 0.5, "float", "Frequency range of the mixed-variance penalty.",
           _float(gt=0), epoch=True),
        _p("probe_constraint_mask", None, "array or None", "Reciprocal-space mask of probe "
           "pixels penalised with an L2 norm.", _array(optional=True)),
        _p("probe_reg_constraint_weight", 0, "float", "Weight of the reciprocal-space L2 probe "
           "penalty.", _WEIGHT),
        _p("window_weight", 0, "float", "Weight of the real-space L2 probe penalty.", _WEIGHT,
           epoch=True),
        _p("window", None, "array, [inner, outer] or None", "Real-space probe window: a 2D "
           "array, or inner and outer radii as fractions of half the probe width.",
           _custom("a 2D array, a list [inner, outer] or None", _window), epoch=True),
        _p("abs_norm_weight", 0, "float", "L1 penalty on the absorptive potential "
           "(-log|transmission|).", _WEIGHT),
        _p("phase_norm_weight", 0, "float", "L1 penalty on the object phase.", _WEIGHT,
           epoch=True),
        _p("atv_weight", 0, "float", "Weight of the adaptive total-variation penalty.", _WEIGHT,
           epoch=True),
        _p("atv_q", 1, "float", "Adaptive total-variation exponent q (smoothing strength).",
           _float(gt=0), epoch=True),
        _p("atv_p", 2, "float", "Adaptive total-variation exponent p (1 L1-like, 2 L2-like).",
           _float(gt=0), epoch=True),
        _p("fast_axis_reg_weight_positions", 0, "float", "Penalty on position acceleration "
           "along the fast scan axis.", _WEIGHT, epoch=True),
        _p("slow_axis_reg_weight_positions", 0, "float", "Penalty on position acceleration "
           "along the slow scan axis.", _WEIGHT, epoch=True),
        _p("fast_axis_reg_weight_tilts", 0, "float", "Penalty on tilt acceleration along the "
           "fast scan axis.", _WEIGHT, epoch=True),
        _p("slow_axis_reg_weight_tilts", 0, "float", "Penalty on tilt acceleration along the "
           "slow scan axis.", _WEIGHT, epoch=True),
        _p("deformation_reg_weight_positions", 0, "float", "Penalty pulling positions towards a "
           "regular but deformed grid.", _WEIGHT, epoch=True),
        _p("deformation_reg_weight_tilts", 0, "float", "Penalty pulling tilts towards a regular "
           "but deformed grid.", _WEIGHT, epoch=True),
    ]),
    ("Constraints That Modify the Object and Probe 'By Hand'", [
        _p("apply_gaussian_filter", False, "bool", "Gaussian-filter the object phase.", _FLAG,
           epoch=True),
        _p("apply_gaussian_filter_amplitude", False, "bool", "Gaussian-filter the object "
           "amplitude.", _FLAG, epoch=True),
        _p("beta_wedge", 0, "float", "Suppress high kz at low kx, ky in the 3D object spectrum.",
           _WEIGHT, epoch=True),
        _p("keep_probe_states_orthogonal", False, "bool", "Orthogonalise the probe modes.",
           _FLAG, epoch=True),
        _p("do_charge_flip", False, "bool", "Apply charge flipping to the object.", _FLAG,
           epoch=True),
        _p("cf_delta_phase", 0.1, "float", "Phase threshold of charge flipping.", _ANY_FLOAT,
           epoch=True),
        _p("cf_delta_abs", 0.01, "float", "Amplitude threshold of charge flipping.", _ANY_FLOAT,
           epoch=True),
        _p("cf_beta_phase", -0.95, "float", "Phase feedback factor of charge flipping.",
           _ANY_FLOAT, epoch=True),
        _p("cf_beta_abs", -0.95, "float", "Amplitude feedback factor of charge flipping.",
           _ANY_FLOAT, epoch=True),
        _p("fancy_sigma", None, "float or None", "Width used to push the object towards "
           "atomic-like features; None disables.", _optional(_float(gt=0)), epoch=True),
        _p("restart_from_vacuum", False, "bool", "Reset the object to 1, keeping everything "
           "else.", _FLAG, epoch=True),
        _p("reset_positions", False, "bool", "Reset positions to their initial values, keeping "
           "everything else.", _FLAG, epoch=True),
    ]),
    ("Beam Initialization", [
        _p("n_hermite_probe_modes", None, "tuple of 2 ints or None", "Hermite mode orders "
           "(nx, ny) used to create probe modes when probe is None: the probe times H_m(x) H_n(y), "
           "m < nx, n < ny (nx * ny modes, orthogonalised); None: one mode.",
           _custom("a pair of ints >= 1 or None", _int_pair(1)), supported=True),
        _p("defocus_spread_modes", None, "array or None", "Extra defocus (Å, > 0 underfocus) of "
           "each initial probe mode (1D), equal power, to model defocus spread when probe is None.",
           _array(ndim=1, kinds="iuf", optional=True, finite=True), unit="Å", supported=True),
        _p("aberrations", None, "array or None", "Initial aberrations, Krivanek order C10, C12a, "
           "C12b, C21a, C21b, C23a, C23b, C30, ... (1D).",
           _array(ndim=1, kinds="iuf", optional=True, finite=True), unit="Å", supported=True),
        _p("extra_probe_defocus", 0, "float", "Extra defocus added to the initial probe.",
           _ANY_FLOAT, unit="Å", supported=True),
        _p("estimate_aperture_based_on_binary", 0, "float", "If > 0 (and probe is None), the "
           "initial beam amplitude is the binary aperture of mean-pattern pixels above this factor "
           "times the data mean.", _float(ge=0), supported=True),
        _p("beam_ctf", None, "array or None", "Reciprocal-space beam (CTF), 2D with the "
           "(upsampled, padded) pattern shape, zero frequency at the centre; used as the initial "
           "beam when probe is None (aberrations are applied on top).",
           _array(ndim=2, kinds="iufc", optional=True, finite=True), supported=True),
        _p("mean_pattern", None, "array or None", "Mean diffraction pattern (2D) from which the "
           "initial probe is made by inverse Fourier transform.",
           _array(ndim=2, kinds="iuf", optional=True, finite=True), supported=True),
    ]),
]

#: Section headings in contract order.
SECTIONS: Tuple[str, ...] = tuple(title for title, _ in _TABLE)

#: Every parameter, keyed by name, in contract order.
PARAMETERS: Dict[str, Parameter] = {}
for _title, _rows in _TABLE:
    for _row in _rows:
        if _row["name"] in PARAMETERS:  # pragma: no cover - table consistency
            raise AssertionError("duplicate parameter %s" % _row["name"])
        PARAMETERS[_row["name"]] = Parameter(section=_title, **_row)
del _title, _rows, _row


# --------------------------------------------------------------------------
# public functions
# --------------------------------------------------------------------------

def _short(value: Any) -> str:
    """Type and short repr of a value for messages: "str 'ten'", "ndarray of shape (3,) ..."."""
    if isinstance(value, np.ndarray):
        return "ndarray of shape %s and dtype %s" % (value.shape, value.dtype)
    return "%s %s" % (type(value).__name__, _brief(value))


def _brief(value: Any) -> str:
    """Short repr of a value for messages (arrays by shape)."""
    if isinstance(value, np.ndarray):
        return "array of shape %s" % (value.shape,)
    if isinstance(value, _types.ModuleType):
        return "module %r" % value.__name__
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_message(key: Any) -> str:
    """"unknown parameter 'x'; did you mean 'y'?" or a hint about where to look."""
    names = list(PARAMETERS)
    if not isinstance(key, str):
        return "unknown parameter %r (parameter names are strings)" % (key,)
    lower = {n.lower(): n for n in names}
    close = ([lower[key.lower()]] if key.lower() in lower
             else difflib.get_close_matches(key, names, n=3, cutoff=0.7))
    if close:
        return "unknown parameter %r; did you mean %s?" % (
            key, " or ".join("'%s'" % c for c in close))
    tokens = {t for t in key.lower().split("_") if len(t) > 2}
    sections = []
    for p in PARAMETERS.values():
        if tokens & set(p.name.lower().split("_")) and p.section not in sections:
            sections.append(p.section)
    if not sections:
        sections = list(SECTIONS)
    return "unknown parameter %r; see docs/parameters.md, sections: %s" % (
        key, "; ".join(sections[:4] if len(sections) < len(SECTIONS) else sections))


def _get(name: str) -> Parameter:
    try:
        return PARAMETERS[name]
    except (KeyError, TypeError):
        raise PyptyParameterError(_unknown_message(name)) from None


def default_value(name: str) -> Any:
    """Default of parameter ``name`` (arrays are freshly allocated each call).

    Raises PyptyParameterError for an unknown name.
    """
    default = _get(name).default
    return default.make() if isinstance(default, ArrayDefault) else default


def _equal(a: Any, b: Any) -> bool:
    """Equality that understands numpy arrays, lists and tuples."""
    if a is b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        try:
            return bool(np.array_equal(np.asarray(a), np.asarray(b)))
        except (TypeError, ValueError):
            return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if callable(a) or callable(b):
        return False
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _check_value(p: Parameter, value: Any) -> Any:
    """Check and normalise one value of parameter ``p``; raise PyptyParameterError."""
    if p.epoch_dependent:
        if isinstance(value, EpochExpression):
            return value
        if isinstance(value, str):
            try:
                return compile_epoch_expression(value, p.name)
            except ValueError as exc:
                raise PyptyParameterError(str(exc)) from None
        if callable(value) and not isinstance(value, type):
            return value
    try:
        return p.check(value)
    except _Invalid as exc:
        detail = "; %s" % exc if str(exc) else ""
        raise PyptyParameterError("parameter '%s' expects %s, got %s%s"
                                  % (p.name, p.expects, _short(value), detail)) from None
    except _Unsupported as exc:
        raise PyptyParameterError("parameter '%s' value %s is not supported yet (%s)"
                                  % (p.name, _brief(value), exc)) from None


def validate(params: Mapping[str, Any]) -> Dict[str, Any]:
    """Check ``params`` and return a new, complete dict of normalised values.

    Every parameter of :data:`PARAMETERS` is present in the result (missing
    ones get their default).  The input mapping and the arrays in it are
    never modified: arrays are copied (``dataset`` is returned as a read-only
    view instead, to avoid duplicating large data), lists become numpy arrays
    where the table says "array", epoch-dependent strings become compiled
    :class:`~pypty.epoch_eval.EpochExpression` objects, numpy scalars become
    Python numbers and flags become bools.

    Raises
    ------
    PyptyParameterError
        For an unknown key (with a suggestion), a value of the wrong type,
        shape or range (naming the key, what is expected and what was given),
        a lambda string outside the whitelist, a value that is not supported
        yet, or inconsistent Wolfe constants.
    """
    if not isinstance(params, Mapping):
        raise PyptyParameterError("pypty_params must be a dict, got %s" % _short(params))
    unknown = [k for k in params if k not in PARAMETERS]
    if unknown:
        raise PyptyParameterError("; ".join(_unknown_message(k) for k in unknown))

    out: Dict[str, Any] = {}
    for name, p in PARAMETERS.items():
        if name not in params:
            out[name] = _check_value(p, default_value(name))
            continue
        value = _check_value(p, params[name])
        if not p.supported:
            default = _check_value(p, default_value(name))
            same = _equal(value, default) or (
                p.default_equivalent is not None and not callable(value)
                and p.default_equivalent(value))
            if not same:
                also = ", or with all entries zero" if p.default_equivalent is _all_zero else ""
                raise PyptyParameterError(
                    "parameter '%s' is not supported yet (it is accepted only at its default "
                    "%s%s), got %s" % (name, p.default_text, also, _brief(params[name])))
        out[name] = value

    c1, c2 = out["wolfe_c1_constant"], out["wolfe_c2_constant"]
    if not callable(c1) and not callable(c2) and not c1 < c2:
        raise PyptyParameterError(
            "parameters 'wolfe_c1_constant' (%r) and 'wolfe_c2_constant' (%r) must satisfy "
            "0 < wolfe_c1_constant < wolfe_c2_constant < 1" % (c1, c2))
    return out


def resolve_epoch_parameters(params: Mapping[str, Any], epoch: int) -> Dict[str, Any]:
    """Values at ``epoch`` of the epoch-dependent parameters of a validated dict.

    Returns ``{name: value}`` for every epoch-dependent parameter present in
    ``params``; raises RuntimeError (via :func:`pypty.epoch_eval.resolve`) if
    one of the callables raises.
    """
    return {name: resolve(name, params[name], epoch)
            for name, p in PARAMETERS.items() if p.epoch_dependent and name in params}


def describe(name: str) -> str:
    """One line about parameter ``name``: type, default, unit, section, support, doc.

    Raises PyptyParameterError for an unknown name.
    """
    p = _get(name)
    bits = [p.types + (", epoch-dependent" if p.epoch_dependent else ""),
            "default " + p.default_text]
    if p.unit:
        bits.append("unit " + p.unit)
    bits.append("section '%s'" % p.section)
    if not p.supported:
        bits.append("not supported yet")
    elif p.support_note:
        bits.append("supported: " + p.support_note)
    return "%s (%s): %s" % (p.name, "; ".join(bits), p.doc)


# --------------------------------------------------------------------------
# JSON export and Markdown reference
# --------------------------------------------------------------------------

#: Arrays up to this many elements are exported with their values.
JSON_MAX_ARRAY_VALUES = 64
#: Arrays larger than this get no min/max/mean summary (too slow to compute).
_JSON_MAX_SUMMARY_SIZE = 50_000_000


def _json_float(x: float) -> Any:
    return x if math.isfinite(x) else ("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))


def _json_array(arr: np.ndarray) -> Dict[str, Any]:
    """{"array": shape, "dtype": ..., "values": ...} or a min/max/mean summary."""
    out: Dict[str, Any] = {"array": list(arr.shape), "dtype": str(arr.dtype)}
    if arr.size <= JSON_MAX_ARRAY_VALUES:
        out["values"] = _jsonable(arr.tolist())
    elif arr.size <= _JSON_MAX_SUMMARY_SIZE and arr.dtype.kind in "biufc":
        if arr.dtype.kind == "c":
            mag = np.abs(arr)
            out["abs_min"], out["abs_max"] = _jsonable(mag.min()), _jsonable(mag.max())
        else:
            out["min"], out["max"] = _jsonable(arr.min()), _jsonable(arr.max())
        out["mean"] = _jsonable(arr.mean())
    return out


def _jsonable(value: Any) -> Any:
    """JSON-serialisable version of one value (see :func:`to_jsonable`)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, EpochExpression):
        return value.source
    if isinstance(value, (numbers.Integral, np.integer)):
        return int(value)
    if isinstance(value, (numbers.Real, np.floating)):
        return _json_float(float(value))
    if isinstance(value, (numbers.Complex, np.complexfloating)):
        c = complex(value)
        return {"real": _json_float(c.real), "imag": _json_float(c.imag)}
    if isinstance(value, np.ndarray):
        return _json_array(value)
    if isinstance(value, np.dtype):
        return str(value)
    if isinstance(value, type) and issubclass(value, np.generic):
        return np.dtype(value).name
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, range)):
        return [_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, _types.ModuleType):
        return value.__name__
    if callable(value):
        try:
            return inspect.getsource(value).strip()
        except (OSError, TypeError):
            return repr(value)
    return repr(value)


def to_jsonable(params: Mapping[str, Any]) -> Dict[str, Any]:
    """JSON-serialisable copy of a parameter dict (e.g. the output of :func:`validate`).

    Arrays become ``{"array": shape, "dtype": str, "values": [...]}`` (at most
    64 elements) or ``{"array": shape, "dtype": str, "min", "max", "mean"}``
    (complex: ``abs_min``, ``abs_max``, ``mean`` as ``{"real", "imag"}``);
    compiled epoch expressions become their source text, other callables
    their source code (or repr); numpy scalars become Python numbers;
    non-finite floats become "inf", "-inf" or "nan"; dtypes become strings.
    """
    return {str(k): _jsonable(v) for k, v in params.items()}


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def parameter_reference_markdown() -> str:
    """The Markdown reference page (``docs/parameters.md``): one table per section."""
    lines = [
        "# pypty parameters",
        "",
        "<!-- Generated by scripts/generate_parameter_docs.py from pypty/parameters.py; "
        "do not edit by hand. -->",
        "",
        "`pypty.iterative.run(pypty_params)` takes one flat dict. "
        "`pypty.parameters.validate` checks it, fills in defaults and rejects unknown keys.",
        "",
        "- **Epoch-dependent** parameters also accept a callable `f(epoch)` or a string such as "
        "`\"lambda epoch: 1 if epoch > 20 else 0\"`. Strings are checked against a whitelist "
        "(numbers, the argument, arithmetic, comparisons, `and`/`or`/`not`, `a if c else b`, "
        "`min`, `max`, `abs`, `round`, `int`, `float`, `bool` and math functions such as `sqrt`, "
        "`exp`, `log`) and evaluated without `eval`.",
        "- Parameters marked **no** under *Supported* are accepted only at their default; "
        "notes list the values implemented so far.",
        "",
    ]
    for section in SECTIONS:
        lines += ["## " + section, "",
                  "| Parameter | Default | Type | Unit | Epoch-dependent | Supported | Description |",
                  "|---|---|---|---|---|---|---|"]
        for p in PARAMETERS.values():
            if p.section != section:
                continue
            support = ("yes" + (" (%s)" % p.support_note if p.support_note else "")
                       if p.supported else "no")
            cells = ["`%s`" % p.name, "`%s`" % p.default_text, p.types, p.unit,
                     "yes" if p.epoch_dependent else "", support, p.doc]
            lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)
