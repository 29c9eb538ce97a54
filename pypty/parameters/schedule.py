"""Epoch schedules: the value of an epoch-dependent parameter at an epoch, and cadences.

* :func:`resolve` -- value of a ``pypty_lambda`` parameter at an epoch (a
  constant, a callable ``f(epoch)`` or a compiled whitelisted string, see
  :mod:`pypty.parameters.epoch_eval`), checked by the parameter's row like a
  constant (type, range, finiteness);
* :func:`may_be_on` -- False only for a switch that is constantly off, so
  that arrays and terms that can never act are not created;
* :func:`every` -- a bool-or-int cadence (``save_inter_checkpoints``,
  ``save_results_every``, ...) at an epoch.

Epochs are counted from 0 (the first epoch of a fresh run is epoch 0); a
cadence ``n`` fires after epochs 0-based ``n-1, 2n-1, ...``, that is when the
number of epochs done (``epoch + 1``, counted from the start of the
reconstruction, restarts included) is a multiple of ``n``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .checks import _Invalid, _Unsupported
from .epoch_eval import EpochExpression
from .epoch_eval import resolve as _evaluate
from .errors import PyptyParameterError
from .table import PARAMETERS

__all__ = ["resolve", "may_be_on", "every", "ParamsDriven"]


def _brief(value: Any) -> str:
    """Short text of a returned value for messages: "nan (float)", "'yes' (str)", "array of shape (3,)"."""
    if isinstance(value, np.ndarray):
        return "an array of shape %s and dtype %s" % (value.shape, value.dtype)
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return "%s (%s)" % (text, type(value).__name__)


def _what(value: Any) -> str:
    """How the epoch-dependent value was given, for messages: "lambda 'lambda e: ...'" or "callable f"."""
    if isinstance(value, EpochExpression):
        return "lambda %r" % value.source
    return "callable %s" % getattr(value, "__qualname__", type(value).__name__)


def resolve(name: str, value: Any, epoch: int) -> Any:
    """Value of parameter ``name`` at ``epoch``, checked and normalised like a constant.

    ``value`` is a validated value: a constant (returned unchanged: constants
    were checked by :func:`pypty.parameters.validate`), a callable
    ``f(epoch)`` or a compiled :class:`~pypty.parameters.epoch_eval.EpochExpression`.
    What a callable or expression returns is checked with the row of
    ``name`` in :data:`pypty.parameters.PARAMETERS` (the same check a
    constant gets: type, range, finiteness) and normalised the same way
    (flags become bools, ...).  Names outside the table are not checked.

    Raises
    ------
    PyptyParameterError
        The returned value fails the row's check; the message names the
        parameter, the epoch, the callable and what is expected, e.g.
        "parameter 'loss_weight' at epoch 7: lambda 'lambda e: ...' returned
        nan (float), expected a float >= 0".
    RuntimeError
        The callable raised (see :func:`pypty.parameters.epoch_eval.resolve`).
    """
    if not callable(value) or isinstance(value, type):
        return value
    raw = _evaluate(name, value, epoch)
    row = PARAMETERS.get(name) if isinstance(name, str) else None
    if row is None:
        return raw
    try:
        return row.check(raw)
    except _Invalid as exc:
        detail = "; %s" % exc if str(exc) else ""
        raise PyptyParameterError("parameter '%s' at epoch %s: %s returned %s, expected %s%s"
                                  % (name, epoch, _what(value), _brief(raw), row.check.expects,
                                     detail)) from None
    except _Unsupported as exc:
        raise PyptyParameterError("parameter '%s' at epoch %s: %s returned %s, which is not supported yet (%s)"
                                  % (name, epoch, _what(value), _brief(raw), exc)) from None


def may_be_on(value) -> bool:
    """False only for an epoch-dependent switch that is constantly off (0/False/None)."""
    if callable(value) or isinstance(value, EpochExpression):
        return True
    return bool(value)


def every(flag, epoch: int) -> bool:
    """True when the cadence ``flag`` fires after ``epoch`` (0-based).

    ``flag``: True (every epoch), False/None/0 (never) or an int n (when
    ``epoch + 1`` is a multiple of n).
    """
    if flag is None:
        return False
    if isinstance(flag, (bool, np.bool_)):
        return bool(flag)
    n = int(flag)
    return n > 0 and (epoch + 1) % n == 0


class ParamsDriven:
    """Shared base of loss terms and hand constraints driven by parameter-table rows.

    Holds the validated parameters ``p`` and the backend (``bk``, ``xp``);
    :meth:`at` resolves a row at an epoch; :meth:`from_params` builds the
    object unless its switch row (:meth:`switch_row`) is constantly off.
    Subclasses: :class:`pypty.regularizers.base.ParamsTerm` (switch = its
    weight) and :class:`pypty.constraints.base.ParamsConstraint`.
    """

    def __init__(self, p: dict, bk):
        self.p, self.bk, self.xp = p, bk, bk.xp

    @classmethod
    def switch_row(cls) -> str:
        """The row whose value switches the object on."""
        raise NotImplementedError

    @classmethod
    def from_params(cls, p: dict, bk):
        return cls(p, bk) if may_be_on(p[cls.switch_row()]) else None

    def at(self, key: str, epoch: int):
        """The value of parameter ``key`` at ``epoch``.

        Epoch-dependent values are resolved and checked like constants by
        :func:`resolve` (a callable returning a NaN or negative weight raises
        PyptyParameterError naming the key and the epoch).
        """
        return resolve(key, self.p[key], epoch)
