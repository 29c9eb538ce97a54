"""The position-averaged diffraction pattern (PACBED) term."""
from __future__ import annotations

#: loss-term classes of this module, in registry order
TERMS: tuple = ()
