"""Run-level resets: ``restart_from_vacuum`` and ``reset_positions`` (class D).

Both act at the start of every epoch in which their (epoch-dependent) switch
is truthy, before every other hand constraint
(``design/regularizers.md`` section 2.3), and return
``Change("reset", ...)`` when they changed the arrays, so that the engine
forgets the L-BFGS pairs and the cached loss and gradient
(:meth:`pypty.engine.session.Reconstruction.replace_arrays`).  Use a
cadence such as ``"lambda epoch: epoch == 20"``: a switch that is constantly
True resets every epoch.
"""
from __future__ import annotations

import numpy as np

from ..parameters.errors import parameter_error
from ..parameters.schedule import may_be_on
from .base import UNCHANGED, Change, ParamsConstraint
from .object_pointwise import _constant

__all__ = ["ResetPositions", "RestartFromVacuum"]


class RestartFromVacuum(ParamsConstraint):
    """``restart_from_vacuum``: the object becomes vacuum, O <- 1.

    Map (``design/regularizers.md`` section 3.14, after PyPty's
    ``restart_from_vacuum``)::

        O'[s, k, y, x] = 1   for every slice s, mode k and pixel (y, x)

    The probe, positions and all other arrays are untouched.  It acts
    whenever the switch is on, also in an epoch where the object is not
    refined (it is a run-level reset, as in PyPty), and returns
    :data:`~pypty.constraints.base.UNCHANGED` when the object is already
    exactly 1.

    With K > 1 object modes the modes become identical, and since identical
    modes get identical gradients they stay identical for the rest of the run
    (:meth:`warnings`).
    """

    name = "restart_from_vacuum"
    PARAMS = ("restart_from_vacuum", "obj")
    SWITCH = "restart_from_vacuum"
    RESETS_HISTORY = True

    def apply(self, arrays: dict, epoch: int, ctx) -> tuple:
        """Replace the object by ones.

        Parameters
        ----------
        arrays : dict
            ``"obj"``: complex (S, K, Ny, Nx) transmission.
        epoch : int
        ctx : pypty.constraints.base.Context
            Not used.

        Returns
        -------
        ({"obj": complex (S, K, Ny, Nx) ones, dtype of the input}, Change("reset", ...)),
        or ({}, UNCHANGED) when the object already is 1 everywhere.
        """
        xp = self.xp
        obj = arrays["obj"]
        if bool(xp.all(obj == 1)):
            return {}, UNCHANGED
        return {"obj": xp.ones_like(obj)}, Change("reset", "object set to 1")

    @classmethod
    def check_params(cls, p: dict) -> list:
        """No cross-parameter rule (the value check is the table's)."""
        return []

    @classmethod
    def warnings(cls, p: dict) -> list:
        """Warnings of design section 3.14 (c).

        - a constant True: the object is reset at the start of every epoch and
          never gets past one step;
        - K > 1 object modes (``obj`` of shape (y, x, S, K)): after the reset
          the modes are identical and stay so.
        """
        out = []
        const, v = _constant(p.get(cls.SWITCH))
        if const and v is not None and v is not False and bool(v):
            out.append(f"parameter '{cls.SWITCH}': constantly True resets the object to vacuum at the start of "
                       f"every epoch, so it never gets past one step; use a cadence such as "
                       f"\"lambda epoch: epoch == 10\"")
        if may_be_on(p.get(cls.SWITCH)):
            obj = p.get("obj")
            k = int(np.shape(obj)[3]) if obj is not None and np.ndim(obj) == 4 else 1
            if k > 1:
                out.append(f"parameter '{cls.SWITCH}': with {k} object modes the reset makes the modes "
                           f"identical, and they stay identical for the rest of the run")
        return out


class ResetPositions(ParamsConstraint):
    """``reset_positions``: the positions go back to the given ones, in the current canvas frame.

    Map (``design/regularizers.md`` section 3.15)::

        p'[n, c] = p_given[n, c] - position_offset[c]

    with ``p_given = ctx.given_positions`` (N, 2) px, the positions as given at
    the start of the run (given frame), and ``ctx.position_offset`` (2,) px,
    the offset of the current canvas (``positions + position_offset`` is the
    given frame; the canvas may have grown since the start, e.g. with
    ``dynamically_resize_yx_object``).  PyPty restored its stored initial
    positions, which are in the old frame after a canvas resize.

    It acts whenever the switch is on, refined positions or not, and returns
    :data:`~pypty.constraints.base.UNCHANGED` when the positions already are
    exactly the given ones.
    """

    name = "reset_positions"
    PARAMS = ("reset_positions",)
    SWITCH = "reset_positions"
    RESETS_HISTORY = True

    def apply(self, arrays: dict, epoch: int, ctx) -> tuple:
        """Map the given positions into the current canvas frame.

        Parameters
        ----------
        arrays : dict
            ``"positions"``: float64 (N, 2) px, window corners (y, x) on the canvas.
        epoch : int
        ctx : pypty.constraints.base.Context
            ``given_positions`` (N, 2) float64 px and ``position_offset`` (2,) float64 px.

        Returns
        -------
        ({"positions": (N, 2) px, dtype of the input}, Change("reset", ...)), or ({}, UNCHANGED).

        Raises
        ------
        PyptyParameterError
            The given positions do not have the shape of the positions.
        """
        xp = self.xp
        pos = arrays["positions"]
        given = np.asarray(ctx.given_positions, dtype=np.float64)
        if given.shape != tuple(pos.shape):
            raise parameter_error(self.name, f"the given positions have shape {given.shape}, the positions "
                                             f"{tuple(pos.shape)}")
        new = self.bk.asarray(given - np.asarray(ctx.position_offset, dtype=np.float64).reshape(1, 2),
                              dtype=pos.dtype)
        if bool(xp.array_equal(new, pos)):
            return {}, UNCHANGED
        return {"positions": new}, Change("reset", "positions set to the given ones")

    @classmethod
    def check_params(cls, p: dict) -> list:
        """No cross-parameter rule (the value check is the table's)."""
        return []

    @classmethod
    def warnings(cls, p: dict) -> list:
        """A constant True puts the positions back at every epoch (their refinement then does nothing)."""
        const, v = _constant(p.get(cls.SWITCH))
        if const and v is not None and v is not False and bool(v):
            return [(f"parameter '{cls.SWITCH}': constantly True puts the positions back at the start of every "
                     "epoch, so their refinement has no lasting effect; use a cadence such as "
                     "\"lambda epoch: epoch == 10\"")]
        return []


#: constraint classes of this module, in order of application
CONSTRAINTS: tuple = (RestartFromVacuum, ResetPositions)
