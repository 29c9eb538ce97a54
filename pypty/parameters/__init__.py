"""The parameter table of ``pypty.iterative.run(pypty_params)`` and its validation.

Every key that ``pypty_params`` may contain is described once, in
:data:`PARAMETERS` (insertion order follows the sections of the parameter
contract).  :func:`validate` turns a user dict into a complete, checked and
normalised copy; the rest of pypty reads only that copy.

Epoch-dependent ("pypty_lambda") parameters accept a constant, a callable
``f(epoch)`` or a string such as ``"lambda epoch: 1 if epoch > 20 else 0"``;
strings are compiled by
:func:`pypty.parameters.epoch_eval.compile_epoch_expression` during
validation, and :func:`pypty.parameters.schedule.resolve` (or
:func:`resolve_epoch_parameters`) gives their value at a given epoch.

Parameters that are not implemented yet (``supported=False``) are accepted
only when absent or equal to their default; a few supported parameters have
values that are not implemented yet (e.g. ``backend`` other than None).

Modules:

* :mod:`~pypty.parameters.table` -- the rows (:data:`PARAMETERS`, :data:`SECTIONS`);
* :mod:`~pypty.parameters.row` -- :class:`Parameter`, :class:`ArrayDefault`;
* :mod:`~pypty.parameters.checks` -- the value checks the rows use;
* :mod:`~pypty.parameters.validation` -- :func:`validate`, :func:`describe`, ...;
* :mod:`~pypty.parameters.consistency` -- rules relating parameters to each other;
* :mod:`~pypty.parameters.errors` -- :class:`PyptyParameterError`, :func:`parameter_error`;
* :mod:`~pypty.parameters.reference` -- JSON export and the Markdown reference;
* :mod:`~pypty.parameters.epoch_eval`, :mod:`~pypty.parameters.schedule` --
  epoch-dependent values.

Importing this package loads numpy and pypty's own modules only (no
matplotlib, tifffile or h5py).

Public API: :class:`Parameter`, :class:`ArrayDefault`, :data:`PARAMETERS`,
:data:`SECTIONS`, :class:`PyptyParameterError`, :func:`parameter_error`,
:func:`default_value`, :func:`validate`, :func:`describe`,
:func:`resolve_epoch_parameters`, :func:`to_jsonable`,
:func:`parameter_reference_markdown`.
"""

from __future__ import annotations

# The choices are defined where they are implemented and re-exported here.
from ..output.exports import TIFF_QUANTITIES as TIFF_CHOICES
from ..output.figures import FIGURE_CHOICES
from ..output.folders import AFFIX_CHOICES
from .errors import PyptyParameterError, parameter_error
from .reference import JSON_MAX_ARRAY_VALUES, parameter_reference_markdown, to_jsonable
from .row import ArrayDefault, Parameter
from .table import DEFAULT_COMPUTE_BATCH, PARAMETERS, SECTIONS
from .validation import default_value, describe, resolve_epoch_parameters, validate

__all__ = [
    "ArrayDefault",
    "Parameter",
    "PARAMETERS",
    "SECTIONS",
    "PyptyParameterError",
    "parameter_error",
    "default_value",
    "validate",
    "describe",
    "resolve_epoch_parameters",
    "to_jsonable",
    "parameter_reference_markdown",
    "AFFIX_CHOICES",
    "FIGURE_CHOICES",
    "TIFF_CHOICES",
    "DEFAULT_COMPUTE_BATCH",
    "JSON_MAX_ARRAY_VALUES",
]
