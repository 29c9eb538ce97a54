"""Value checks of the parameter table: :class:`Check`, its builders and the parameter-specific checks.

A :class:`Check` turns one user value into its normalised form, or raises
:class:`_Invalid` (wrong type or range; the message may add a detail) or
:class:`_Unsupported` (a valid value that is not implemented yet; the message
is a hint).  The builders (``_int``, ``_float``, ``_flag``, ``_array``,
``_choice``, ...) make the checks of the rows in :mod:`pypty.parameters.table`;
:func:`pypty.parameters.validate` turns the two exceptions into
:class:`~pypty.parameters.PyptyParameterError` messages that name the key.
The names keep their leading underscore: they are the table's vocabulary, not
part of the public API of :mod:`pypty.parameters`.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Tuple

import numpy as np


class _Invalid(Exception):
    """Internal: value has the wrong type or range (optional extra detail)."""


class _Unsupported(Exception):
    """Internal: value is valid but not implemented yet (message is a hint)."""


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


# ---- building blocks -------------------------------------------------------

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


# ---- parameter-specific checks ---------------------------------------------

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


_NON_NEGATIVE_INT = _int(ge=0)
_POSITIVE_INT = _int(ge=1)


def _hist_length(v):
    return math.inf if _is_pos_inf(v) else _NON_NEGATIVE_INT(v)


def _max_count(v):
    if v is None:
        return None
    return math.inf if _is_pos_inf(v) else _POSITIVE_INT(v)


def _compute_batch(v):
    return "auto" if isinstance(v, str) and v == "auto" else _POSITIVE_INT(v)


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
        if not (math.isfinite(outer) and 0 <= inner < outer):
            raise _Invalid("radii must satisfy 0 <= inner < outer")
        return [inner, outer]
    a = _window_array(v)
    if not np.all(np.isfinite(a)) or a.min() < 0:
        raise _Invalid("a penalty map must be finite and >= 0")
    return a


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


def _sigma_flag(v):
    """False/0 (off), True (1 px) or a float sigma > 0 -> False or float."""
    if v is None or (_is_bool(v) and not v):
        return False
    if _is_bool(v):
        return 1.0
    if _is_real(v):
        f = float(v)
        if math.isfinite(f) and f >= 0:
            return f if f > 0 else False
    raise _Invalid()


def _fancy_sigma(v):
    """None, a float sigma > 0 (px), or a pair (sigma_phase or None, sigma_abs or None)."""
    if v is None:
        return None
    if _is_real(v) and not _is_bool(v):
        f = float(v)
        if math.isfinite(f) and f > 0:
            return f
        raise _Invalid("sigma must be a finite float > 0")
    if isinstance(v, (list, tuple)) and len(v) == 2:
        out = []
        for x in v:
            if x is None:
                out.append(None)
            elif _is_real(x) and not _is_bool(x) and math.isfinite(float(x)) and float(x) > 0:
                out.append(float(x))
            else:
                raise _Invalid("each entry must be a float > 0 or None")
        return tuple(out)
    raise _Invalid()


def _amplitude_bounds(v):
    """None or [lo, hi] with 0 <= lo < hi, finite -> (lo, hi)."""
    if v is None:
        return None
    if isinstance(v, (list, tuple, np.ndarray)) and len(v) == 2 and all(_is_real(x) for x in v):
        lo, hi = float(v[0]), float(v[1])
        if math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi:
            return (lo, hi)
        raise _Invalid("bounds must satisfy 0 <= lo < hi")
    raise _Invalid()


def _probe_mask(v):
    """None or a 2D real array with finite values in [0, 1] (1 = allowed) -> float64 array copy."""
    if v is None:
        return None
    try:
        a = np.array(v, dtype=np.float64, copy=True)
    except (TypeError, ValueError):
        raise _Invalid() from None
    if a.ndim != 2 or a.size == 0:
        raise _Invalid("got %d dimensions" % a.ndim)
    if not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1:
        raise _Invalid("values must be finite and in [0, 1]")
    return a
