"""Hand constraints: edits of the arrays between epochs, outside the optimizer's objective.

A constraint is one small class that follows :class:`Constraint`.  At the
start of every epoch in which it is active, the engine calls
``apply(arrays, epoch, ctx)`` with the current arrays (internal layout, device
arrays; never modify them in place) and a :class:`Context`, and receives the edited arrays and a
:class:`Change` that says what the edit does to the optimizer's state
(classes of ``design/regularizers.md``, section 2.2):

========  ======================================================  ==========================
kind      meaning                                                 L-BFGS history
========  ======================================================  ==========================
none      nothing changed                                         untouched
reset     a nonlinear edit (filters, charge flip, vacuum restart)  reset
map       a loss-invariant change of basis T (mode orthogonality)  T applied to every (s, y) and the cached gradient
keep      an edit after which the pairs stay valid                kept
========  ======================================================  ==========================

Every change goes through
:meth:`pypty.engine.session.Reconstruction.replace_arrays`, which also
clears the cached loss and gradient and the kept reparametrised blocks that
the edit made stale.  To add a constraint: write the class (``from_params``
builds it from the validated parameters, or returns None when it can never
act), add it to :data:`REGISTRY`, mark its rows ``supported=True`` in the
parameter table, and add a row to the table of ``tests/constraints/``.

Order of application (one module each): run-level resets; probe (hard
aperture, orthogonal modes); object filters; point-wise object edits;
projections (object band limit last for the object, mean-free positions);
tilt smoothing.

Class A constraints (subspace projections) also define
``project(block, g, epoch)`` and ``projected_blocks(epoch)``: the objective
projects the gradient of those blocks, so that the iterates stay in the
subspace without history resets.
"""
from __future__ import annotations

from types import MappingProxyType

from . import object_filters, object_pointwise, probe, projections, resets, tilts
from .base import HISTORY_RULES, UNCHANGED, Change, Constraint, Context, ParamsConstraint

__all__ = ["Change", "Constraint", "Context", "ParamsConstraint", "REGISTRY", "build_constraints", "HISTORY_RULES", "UNCHANGED"]

#: modules in order of application (``design/regularizers.md`` section 2.3)
_ORDER = (resets, probe, object_filters, object_pointwise, projections, tilts)


#: name -> constraint class (with a ``from_params(p, backend)`` classmethod), in order of application.  Read-only.
REGISTRY = MappingProxyType({cls.name: cls for mod in _ORDER for cls in mod.CONSTRAINTS})


def build_constraints(p: dict, bk, registry=REGISTRY) -> list:
    """The hand constraints of a run, in registry order (see :func:`pypty.regularizers.build_terms`)."""
    return [obj for obj in (cls.from_params(p, bk) for cls in registry.values()) if obj is not None]
