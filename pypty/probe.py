"""``pypty.probe``: the names of the README and docs, kept for user scripts.

:func:`make_probe` lives in :mod:`pypty.initialize.probe` (initial guesses);
the Krivanek aberration functions in :mod:`pypty.operators.optics`.
"""
from .initialize.probe import make_probe
from .operators.optics import KRIVANEK_NAMES, aberration_phase, aberrations_as_dict

__all__ = ["KRIVANEK_NAMES", "aberrations_as_dict", "aberration_phase", "make_probe"]
