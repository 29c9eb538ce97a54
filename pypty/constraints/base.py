"""The hand-constraint protocol, :class:`Change` and shared helpers (see :mod:`pypty.constraints`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from ..parameters.schedule import ParamsDriven

__all__ = ["Change", "Constraint", "Context", "HISTORY_RULES", "ParamsConstraint", "UNCHANGED"]

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

    def apply(self, arrays: dict, epoch: int, ctx: "Context") -> tuple:
        """``(new arrays, Change)``: the edited arrays (only those that changed need be present)."""


@dataclass(frozen=True)
class Context:
    """What a constraint may read besides the arrays (never modify it).

    Attributes
    ----------
    settings : pypty.engine.settings.EpochSettings
        The epoch's resolved settings: ``settings.refine`` (names of the
        arrays refined in this epoch), ``settings.block_name(name)`` (the
        optimizer block of an array, e.g. ``obj_phase`` for a phase-only
        object), ``settings.hist_length``.
    setup : pypty.model.setup.Setup
        Model (``setup.model``: window, pixel sizes, wavelength, slice
        distances, Fresnel kernels), backend, dtypes, initial arrays.
    position_offset : numpy.ndarray (2,) float64, px
        ``positions + position_offset`` is the frame of the given positions
        (the canvas may have grown since the start).
    given_positions : numpy.ndarray (N, 2) float64, px
        The positions as given at the start of the run (given frame), for
        ``reset_positions``.
    """

    settings: object
    setup: object
    position_offset: object
    given_positions: object



#: The change of a constraint that left the arrays as they were.
UNCHANGED = Change()


class ParamsConstraint(ParamsDriven):
    """Base of a constraint driven by parameter-table rows (optional; constraints only need :class:`Constraint`).

    Subclasses set ``name``, ``PARAMS`` and ``SWITCH`` (the row whose value
    switches the constraint on at an epoch) and implement ``apply``.
    ``from_params`` returns None when the switch is constantly off.  The
    constraint acts at an epoch when :meth:`switched_on` holds for the value
    of one of its :meth:`switch_rows` there; ``RESETS_HISTORY`` marks the
    class-D edits (nonlinear, the L-BFGS history is reset), whose cadence the
    parameter validation checks (:mod:`pypty.parameters.consistency`).
    """

    name = ""
    PARAMS: tuple = ()
    SWITCH = ""
    RESETS_HISTORY = False

    @classmethod
    def switch_row(cls) -> str:
        return cls.SWITCH

    @classmethod
    def switch_rows(cls) -> tuple:
        """The parameter rows that switch the constraint on (default: ``SWITCH`` alone)."""
        return (cls.SWITCH,)

    @classmethod
    def switched_on(cls, row: str, value) -> bool:
        """Whether ``value`` (of ``row`` at one epoch) switches the constraint on (default: truthy)."""
        return value is not None and value is not False and bool(value)

    def active(self, epoch: int) -> bool:
        return any(self.switched_on(row, self.at(row, epoch)) for row in self.switch_rows())
