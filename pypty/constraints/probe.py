"""Probe constraints: hard aperture (class A), fixed intensity (class B), orthogonal modes (class C)."""
from __future__ import annotations

#: constraint classes of this module, in order of application
CONSTRAINTS: tuple = ()
