"""Epoch schedules: the value of an epoch-dependent parameter at an epoch, and cadences.

* :func:`resolve` -- value of a ``pypty_lambda`` parameter at an epoch (a
  constant, a callable ``f(epoch)`` or a compiled whitelisted string, see
  :mod:`pypty.parameters.epoch_eval`);
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

import numpy as np

from .epoch_eval import EpochExpression, resolve

__all__ = ["resolve", "may_be_on", "every"]


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
