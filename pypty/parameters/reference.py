"""Parameters as JSON (:func:`to_jsonable`) and the Markdown reference page (:func:`parameter_reference_markdown`).

``scripts/generate_parameter_docs.py`` writes the page to ``docs/parameters.md``.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import math
import numbers
import os
import textwrap
import types as _types
from typing import Any, Dict, Mapping

import numpy as np

from .epoch_eval import EpochExpression
from .table import PARAMETERS, SECTIONS

__all__ = ["JSON_MAX_ARRAY_VALUES", "to_jsonable", "parameter_reference_markdown"]

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


def _lambda_text(code) -> Any:
    """The text of the lambda expression whose code object is ``code``, or None when it cannot be isolated.

    The lambda's file (or notebook cell, through :mod:`linecache`) is parsed
    and the ``Lambda`` node on the code's first line is taken; several on
    that line are told apart by the code's instruction positions (Python >=
    3.11: the innermost lambda that contains them all).  Only that node's
    text is returned, never the rest of the line.
    """
    lines = linecache.getlines(code.co_filename)
    if not lines:
        return None
    source = "".join(lines)
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda) and n.lineno == code.co_firstlineno]
    if len(nodes) > 1 and hasattr(code, "co_positions"):
        pos = [q for a, b, c, d in code.co_positions()
               if None not in (a, b, c, d) and (b, d) > (a, c) for q in ((a, c), (b, d))]  # non-empty spans
        if not pos:
            return None

        def inside(n):
            return all((n.lineno, n.col_offset) <= q <= (n.end_lineno, n.end_col_offset) for q in pos)

        nodes = [n for n in nodes if inside(n)]
        nodes = [n for n in nodes if not any(m is not n and inside(m) and
                                             (n.lineno, n.col_offset) <= (m.lineno, m.col_offset) and
                                             (m.end_lineno, m.end_col_offset) <= (n.end_lineno, n.end_col_offset)
                                             for m in nodes)]  # the innermost
    if len(nodes) != 1:
        return None
    return ast.get_source_segment(source, nodes[0])


def _callable_text(value: Any) -> str:
    """Saved form of a callable: a lambda's expression alone, a function's definition, else its repr.

    ``inspect.getsource`` of a lambda returns every line of the statement
    around it (other parameters, names, anything written there); only the
    lambda expression is kept (:func:`_lambda_text`), and the repr when it
    cannot be isolated.
    """
    code = getattr(value, "__code__", None)
    if code is None or not isinstance(code, _types.CodeType):  # callable objects, builtins, partials
        return repr(value)
    if getattr(value, "__name__", "") == "<lambda>":
        text = _lambda_text(code)
        return repr(value) if text is None else text
    try:
        return textwrap.dedent(inspect.getsource(value)).strip()
    except (OSError, TypeError):
        return repr(value)


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
        return _callable_text(value)
    return repr(value)


def to_jsonable(params: Mapping[str, Any]) -> Dict[str, Any]:
    """JSON-serialisable copy of a parameter dict (e.g. the output of :func:`validate`).

    Arrays become ``{"array": shape, "dtype": str, "values": [...]}`` (at most
    64 elements) or ``{"array": shape, "dtype": str, "min", "max", "mean"}``
    (complex: ``abs_min``, ``abs_max``, ``mean`` as ``{"real", "imag"}``);
    compiled epoch expressions become their source text, lambdas the text
    of the lambda expression alone (not the rest of its line), functions
    their definition, other callables their repr; numpy scalars become Python numbers;
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
        "<!-- Generated by scripts/generate_parameter_docs.py from pypty/parameters/table.py; "
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
