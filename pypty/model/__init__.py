"""The model of the experiment: set-up, the multislice forward model, data losses, refinable arrays.

* :mod:`~pypty.model.setup` -- validated parameters to the initial arrays, data access and model;
* :mod:`~pypty.model.multislice` -- :class:`MultisliceModel`: forward pass, data loss and gradients;
* :mod:`~pypty.model.schemes` -- splitting schemes (``propmethod``);
* :mod:`~pypty.model.losses` -- data-fidelity losses (``algorithm``);
* :mod:`~pypty.model.refinables` -- the registry of refinable arrays;
* :mod:`~pypty.model.reparam` -- reparametrisations (phase-only object, probe CTF, background b^2);
* :mod:`~pypty.model.canvas` -- geometry of the object canvas.
"""
from .multislice import MultisliceModel
from .refinables import ARRAY_NAMES, REFINABLES, TILT_TYPES, tilt_types_for_mode

__all__ = ["MultisliceModel", "REFINABLES", "ARRAY_NAMES", "TILT_TYPES", "tilt_types_for_mode"]
