"""The loss-term protocol and small helpers shared by the terms (see :mod:`pypty.regularizers`)."""
from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

import numpy as np

from ..parameters.schedule import ParamsDriven

__all__ = ["LossTerm", "ParamsTerm", "value_key"]


@runtime_checkable
class LossTerm(Protocol):
    """A differentiable loss term (see the module docstring).

    Attributes
    ----------
    name : str
        Short name; its loss column is ``reg_<name>``.
    PARAMS : tuple of str
        Parameter-table rows this term implements.
    """

    name: str
    PARAMS: tuple

    def active(self, epoch: int) -> bool:
        """True when the term contributes at ``epoch`` (e.g. its weight is non-zero there)."""

    def key(self, epoch: int) -> tuple:
        """Hashable summary of everything the term's value depends on at ``epoch`` (resolved weights, ...).

        Part of the key of the cached loss and gradient: a change forces a new evaluation.
        """

    def value_and_grad(self, arrays: dict, epoch: int) -> tuple:
        """``(value, {array name: gradient})`` at ``arrays`` (internal layout, device arrays).

        ``value`` is a Python float; gradients have the shape and dtype of the arrays.
        """



def value_key(value):
    """A short hashable text of a resolved parameter value (arrays by shape, dtype and sha1 of their bytes)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    arr = np.asarray(value)
    if arr.ndim == 0:
        return repr(arr.item())
    if arr.size <= 8:
        return repr(arr.tolist())
    digest = hashlib.sha1(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16]
    return "array%s:%s:%s" % (arr.shape, arr.dtype, digest)


class ParamsTerm(ParamsDriven):
    """Base of a loss term driven by parameter-table rows (optional; terms only need :class:`LossTerm`).

    Subclasses set ``name``, ``PARAMS`` (the rows they implement) and
    ``WEIGHT`` (the row whose value switches the term on); they implement
    ``value_and_grad``.  ``from_params`` returns None when the weight is
    constantly 0 (the term can never act).
    """

    name = ""
    PARAMS: tuple = ()
    WEIGHT = ""

    @classmethod
    def switch_row(cls) -> str:
        return cls.WEIGHT

    def weight(self, epoch: int) -> float:
        return float(self.at(self.WEIGHT, epoch))

    def active(self, epoch: int) -> bool:
        return self.weight(epoch) > 0

    def key(self, epoch: int) -> tuple:
        return tuple(value_key(self.at(k, epoch)) for k in self.PARAMS)
