"""Meanings of coded parameter values that the model relies on.

``tilts`` is an (N or 1, 6) array in mrad whose column pairs are the (y, x)
tilts of three types (:data:`TILT_TYPES`); ``tilt_mode`` selects which types
are in the model (:func:`tilt_types_for_mode`).  Both the consistency rules
(:mod:`pypty.parameters.consistency`) and the model
(:mod:`pypty.model.refinables`) read them from here.
"""
from __future__ import annotations

__all__ = ["TILT_TYPES", "TILT_MODES", "tilt_types_for_mode"]

#: Column pairs (y, x) of the tilts array per tilt type.
TILT_TYPES = {"before": (0, 2), "inside": (2, 4), "after": (4, 6)}

#: ``tilt_mode`` -> tilt types in the model.
TILT_MODES = {0: ("inside",), 1: ("after",), 2: ("before",), 3: ("inside", "after"),
              4: ("before", "inside", "after")}


def tilt_types_for_mode(tilt_mode: int) -> tuple:
    """Tilt types used by ``tilt_mode`` (0 inside, 1 after, 2 before, 3 inside+after, 4 all).

    Raises ValueError for another value.
    """
    try:
        return TILT_MODES[int(tilt_mode)]
    except KeyError:
        raise ValueError(f"tilt_mode must be one of {sorted(TILT_MODES)}, got {tilt_mode!r}") from None
