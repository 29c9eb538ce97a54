"""Run-level resets: ``restart_from_vacuum`` and ``reset_positions`` (class D)."""
from __future__ import annotations

#: constraint classes of this module, in order of application
CONSTRAINTS: tuple = ()
