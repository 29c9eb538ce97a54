"""Object filters (class D): charge flipping, Gaussian filters in xy and z, kr and kz filters, DCT threshold."""
from __future__ import annotations

#: constraint classes of this module, in order of application
CONSTRAINTS: tuple = ()
