"""Validation of ``pypty_params``: :func:`validate`, :func:`describe`, :func:`default_value`.

:func:`validate` checks every key against the table
(:mod:`pypty.parameters.table`: unknown keys get a suggestion, each value its
row's check, rows not implemented yet are accepted only at their default)
and then the rules that relate parameters to each other
(:func:`pypty.parameters.consistency.check_consistency`).
:func:`resolve_epoch_parameters` gives the values of the epoch-dependent
parameters at one epoch.
"""

from __future__ import annotations

import difflib
import types as _types
from typing import Any, Dict, Mapping

import numpy as np

from .checks import _Invalid, _Unsupported, _all_zero
from .consistency import check_consistency
from .epoch_eval import EpochExpression, compile_epoch_expression
from .schedule import resolve
from .errors import PyptyParameterError
from .row import ArrayDefault, Parameter
from .table import PARAMETERS, SECTIONS

__all__ = ["PyptyParameterError", "default_value", "validate", "describe", "resolve_epoch_parameters"]


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
        if isinstance(value, str) and p.choices and not value.lstrip().startswith("lambda"):
            try:  # a row with choices (algorithm): a plain string is a constant choice
                return p.check(value)
            except _Invalid:
                raise PyptyParameterError("parameter '%s' expects %s, got %s; or a 'lambda epoch: ...' string "
                                          "returning one of them" % (p.name, p.check.expects, _short(value))) from None
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
    :class:`~pypty.parameters.epoch_eval.EpochExpression` objects, numpy scalars become
    Python numbers and flags become bools.

    Raises
    ------
    PyptyParameterError
        For an unknown key (with a suggestion), a value of the wrong type,
        shape or range (naming the key, what is expected and what was given),
        a lambda string outside the whitelist, a value that is not supported
        yet, or parameters that do not fit together (for example the Wolfe
        constants, or masks without algorithm 'lsq_compressed'; see
        :func:`pypty.parameters.consistency.check_consistency`).
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
    check_consistency(out)
    return out


def resolve_epoch_parameters(params: Mapping[str, Any], epoch: int) -> Dict[str, Any]:
    """Values at ``epoch`` of the epoch-dependent parameters of a validated dict.

    Returns ``{name: value}`` for every epoch-dependent parameter present in
    ``params``, each checked like a constant (:func:`pypty.parameters.schedule.resolve`).

    Raises
    ------
    RuntimeError
        One of the callables raises.
    PyptyParameterError
        A callable or lambda returns a value the parameter's check refuses.
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
