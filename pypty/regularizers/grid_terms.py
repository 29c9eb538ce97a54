"""Loss terms on positions and tilts seen on the scan grid: fast axis, slow axis, deformation."""
from __future__ import annotations

#: loss-term classes of this module, in registry order
TERMS: tuple = ()
