"""Point-wise object edits (class D): complex ratio, mirrored amplitude, z recentring, amplitude bounds, phase positivity."""
from __future__ import annotations

#: constraint classes of this module, in order of application
CONSTRAINTS: tuple = ()
