"""Loss terms on the object: mixed-state variance, L1 norms, adaptive TV, missing wedge."""
from __future__ import annotations

#: loss-term classes of this module, in registry order
TERMS: tuple = ()
