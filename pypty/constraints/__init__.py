"""Hand constraints: edits of the arrays between epochs, outside the optimizer's objective.

A constraint is one small class that follows :class:`Constraint`.  At the
start of every epoch in which it is active, the engine calls
``apply(arrays, epoch)`` with the current arrays (internal layout, device
arrays; never modify them in place) and receives the edited arrays and a
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

:data:`REGISTRY` is empty today (see :mod:`pypty.regularizers`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

__all__ = ["Change", "Constraint", "REGISTRY", "build_constraints", "HISTORY_RULES"]

#: Change kind -> history rule of :meth:`pypty.engine.session.Reconstruction.replace_arrays`.
HISTORY_RULES = MappingProxyType({"reset": "reset", "map": "map", "keep": "keep"})


@dataclass(frozen=True)
class Change:
    """What a constraint did to the arrays.

    Attributes
    ----------
    kind : {"none", "reset", "map", "keep"}
        See the module docstring.
    reason : str
        Recorded in the epoch message and the optimizer's reset reason.
    maps : dict block name -> callable
        For ``kind="map"``: the map applied to the stored (s, y) pairs (and
        the kept reparametrised block of that name).
    """

    kind: str = "none"
    reason: str = ""
    maps: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind != "none" and self.kind not in HISTORY_RULES:
            raise ValueError(f"Change.kind must be 'none' or one of {sorted(HISTORY_RULES)}, got {self.kind!r}")
        if self.kind == "map" and not self.maps:
            raise ValueError("Change(kind='map') needs the maps of the changed blocks")


@runtime_checkable
class Constraint(Protocol):
    """A hand constraint (see the module docstring).

    Attributes
    ----------
    name : str
    PARAMS : tuple of str
        Parameter-table rows this constraint implements.
    """

    name: str
    PARAMS: tuple

    def active(self, epoch: int) -> bool:
        """True when the constraint acts at the start of ``epoch``."""

    def apply(self, arrays: dict, epoch: int) -> tuple:
        """``(new arrays, Change)``: the edited arrays (only those that changed need be present)."""


#: name -> constraint class (with a ``from_params(p, backend)`` classmethod), in order of application.
REGISTRY = MappingProxyType({})


def build_constraints(p: dict, bk, registry=REGISTRY) -> list:
    """The hand constraints of a run, in registry order (see :func:`pypty.regularizers.build_terms`)."""
    return [obj for obj in (cls.from_params(p, bk) for cls in registry.values()) if obj is not None]
