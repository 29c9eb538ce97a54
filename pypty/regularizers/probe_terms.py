"""Loss terms on the probe: reciprocal-space mask and real-space window."""
from __future__ import annotations

#: loss-term classes of this module, in registry order
TERMS: tuple = ()
