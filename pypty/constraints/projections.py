"""Subspace projections (class A): object band limit, mean-free position updates."""
from __future__ import annotations

#: constraint classes of this module, in order of application
CONSTRAINTS: tuple = ()
