"""Epoch schedules as ``pypty_lambda`` strings: a peer's (start, step, end) settings carried over one to one."""
from __future__ import annotations

import math
import numbers

__all__ = ["epoch_schedule"]


def epoch_schedule(value, start: int = 1, step: int = 1, end=None, off=0) -> str:
    """A whitelisted lambda string that is ``value`` at epochs ``start, start + step, ...`` before ``end``.

    The result is ``"lambda epoch: value if (epoch >= start and epoch < end
    and (epoch - start) % step == 0) else off"``, for any epoch-dependent
    parameter (``apply_gaussian_filter``, ``do_charge_flip``,
    ``pos_recenter``, a weight, ...).  pypty's epochs count from 0 and hand
    constraints act at the start of an epoch, so a constraint that PtyRAD
    applies after iteration ``n`` (its iterations count from 1) acts at the
    start of pypty epoch ``n``: PtyRAD's ``{start_iter: s, step: k,
    end_iter: t}`` is ``epoch_schedule(value, s, k, t)`` (``end`` exclusive in
    both; ``start_iter: null`` means off: do not set the parameter).

    Parameters
    ----------
    value : bool, int, float or str
        The value while the schedule is on (a string is quoted, e.g. a loss name).
    start : int >= 0
        First epoch (0-based) at which it is on.
    step : int >= 1
        Cadence in epochs.
    end : int or None
        First epoch at which it is off for good (exclusive); None = never.
    off : bool, int, float or str
        The value at the other epochs (0 by default).

    Returns
    -------
    str
        A string accepted by the restricted evaluator of
        :mod:`pypty.parameters.epoch_eval`.

    Raises
    ------
    ValueError
        ``start`` < 0, ``step`` < 1, ``end`` <= ``start``, or a value that is
        not a finite number, a bool or a string.

    Examples
    --------
    >>> epoch_schedule(True, start=10, step=10)
    'lambda epoch: True if (epoch >= 10 and (epoch - 10) % 10 == 0) else 0'
    """
    def literal(v, what):
        if isinstance(v, bool) or isinstance(v, str):
            return repr(v)
        if isinstance(v, numbers.Real) and math.isfinite(float(v)):
            return repr(float(v)) if isinstance(v, float) else repr(int(v))
        raise ValueError(f"epoch_schedule: {what} must be a bool, a finite number or a str, got {v!r}")

    if not isinstance(start, numbers.Integral) or start < 0:
        raise ValueError(f"epoch_schedule: start must be an int >= 0, got {start!r}")
    if not isinstance(step, numbers.Integral) or step < 1:
        raise ValueError(f"epoch_schedule: step must be an int >= 1, got {step!r}")
    if end is not None and (not isinstance(end, numbers.Integral) or end <= start):
        raise ValueError(f"epoch_schedule: end must be None or an int > start ({start}), got {end!r}")
    cond = [f"epoch >= {int(start)}"]
    if end is not None:
        cond.append(f"epoch < {int(end)}")
    if step > 1:
        cond.append(f"(epoch - {int(start)}) % {int(step)} == 0")
    return f"lambda epoch: {literal(value, 'value')} if ({' and '.join(cond)}) else {literal(off, 'off')}"
