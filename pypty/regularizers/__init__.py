"""Loss terms: differentiable regularizers that the optimizer sees next to the data term.

The objective of epoch e is (:mod:`pypty.engine.objective`)::

    L_e(x) = loss_weight(e) * data term + sum_j R_j(arrays(x); e)

A loss term is one small class that follows :class:`LossTerm`: it names the
parameter-table rows it implements (``PARAMS``), says when it is active and
returns its value and its gradients (the convention of :mod:`pypty.optim`:
``2 dL/d(conj z)`` for complex arrays, ``dL/dx`` for real ones) with respect
to arrays in the internal layout (:mod:`pypty.model.refinables`).  Gradients
are added to the data gradients before the reparametrisation chain rule, so a
term works with ``phase_only_obj`` and ``tune_only_probe_*`` without special
cases.  Each active term gets its own column ``reg_<name>`` in ``loss.csv``
and ``/loss/`` of results.h5.

To add a term: write the class (``from_params`` builds it from the validated
parameters, or returns None when it can never act), add it to
:data:`REGISTRY`, mark its rows ``supported=True`` in the parameter table, and
add a row to the finite-difference table of ``tests/regularizers/``.

:data:`REGISTRY` is empty today: every regularizer row of the parameter
contract is still marked "not supported" (``tests/parameters/test_claims.py``
checks that every row is implemented by the core, claimed by exactly one
registered term or constraint, or still refused).
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Protocol, runtime_checkable

__all__ = ["LossTerm", "REGISTRY", "build_terms"]


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


#: name -> loss-term class (with a ``from_params(p, backend)`` classmethod).  Read-only.
REGISTRY = MappingProxyType({})


def build_terms(p: dict, bk, registry=REGISTRY) -> list:
    """The loss terms of a run: ``cls.from_params(p, bk)`` of every registered class that can act.

    Parameters
    ----------
    p : dict
        Validated parameters.
    bk : pypty.backend.Backend
    registry : mapping name -> class
        :data:`REGISTRY` (tests pass their own).

    Returns
    -------
    list of :class:`LossTerm`, in registry order.
    """
    return [obj for obj in (cls.from_params(p, bk) for cls in registry.values()) if obj is not None]
