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
cases.  Regularizers are not multiplied by ``loss_weight``.  Each active term
gets its own column ``reg_<name>`` in ``loss.csv`` and ``/loss/`` of
results.h5.

Where the terms are:

* :mod:`.object_terms` -- object: mixed-state variance, L1 norms of phase and
  absorption, adaptive total variation, missing wedge;
* :mod:`.probe_terms` -- probe: reciprocal-space mask, real-space window;
* :mod:`.grid_terms` -- positions and tilts on the scan grid: fast axis, slow
  axis, deformation;
* :mod:`.pacbed` -- the position-averaged diffraction pattern.

To add a term: write the class (``from_params`` builds it from the validated
parameters, or returns None when it can never act), add it to its module's
``TERMS``, mark its rows ``supported=True`` in the parameter table, and add a
row to the finite-difference table of ``tests/regularizers/``.
"""
from __future__ import annotations

from types import MappingProxyType

from . import grid_terms, object_terms, pacbed, probe_terms
from .base import LossTerm, ParamsTerm, value_key

__all__ = ["LossTerm", "ParamsTerm", "REGISTRY", "build_terms", "value_key"]

#: name -> loss-term class (with a ``from_params(p, backend)`` classmethod).  Read-only.
REGISTRY = MappingProxyType({cls.name: cls for mod in (object_terms, probe_terms, grid_terms, pacbed)
                             for cls in mod.TERMS})


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
