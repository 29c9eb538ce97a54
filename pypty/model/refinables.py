"""The registry of refinable arrays: everything pypty says about one array, said once.

Each :class:`Refinable` gives an array's name (the ``pypty_params`` key and
the key of the internal arrays dict), its ``update_*`` switch, its checkpoint
file, its provenance component name, its dtype kind, its user and internal
layouts and the map from the internal to the user layout.  Every other module
derives its lists from :data:`REFINABLES`: the optimizer blocks of an epoch,
checkpoint names, provenance components, the arrays of a results file.

The order of :data:`REFINABLES` is the order of the optimizer blocks (it fixes
the summation order of the inner products, so it is part of the bit-exact
behaviour).

Tilts have three types, each a column pair of the tilts array
(:data:`TILT_TYPES`); ``tilt_mode`` selects which are in the model
(:func:`tilt_types_for_mode`); both are defined with the parameters
(:mod:`pypty.parameters.conventions`) and re-exported here.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable

import numpy as np

from ..parameters.conventions import TILT_TYPES, tilt_types_for_mode

__all__ = ["Refinable", "REFINABLES", "BY_NAME", "ARRAY_NAMES", "checkpoint_name", "component_name",
           "arrays_to_user", "TILT_TYPES", "tilt_types_for_mode"]

def _copy(a, probe_4d):
    return np.array(a, copy=True)


def _obj_to_user(a, probe_4d):
    return np.transpose(a, (2, 3, 0, 1)).copy()


def _probe_to_user(a, probe_4d):
    probe = np.transpose(a, (2, 3, 1, 0))
    return probe.copy() if probe_4d else probe[..., 0].copy()


def _background_to_user(a, probe_4d):
    return np.fft.fftshift(a)


@dataclass(frozen=True)
class Refinable:
    """One refinable array.

    Attributes
    ----------
    name : str
        Array name: the ``pypty_params`` key, the key of the internal arrays
        dict, of the ``run`` result and of ``/arrays/`` in results.h5.
    switch : str
        The epoch-dependent ``update_*`` parameter that refines it.
    checkpoint : str
        File name of its overwritable checkpoint (``save_inter_checkpoints``).
    component : str
        Provenance component name.
    kind : {"complex", "real"}
        Dtype kind of the internal array (and of its optimizer block).
    internal : str
        Internal layout (FFT axes last) with units.
    user : str
        User layout with units (``pypty_params``, results).
    to_user : callable(ndarray, probe_4d) -> ndarray
        Internal (NumPy) -> user layout, a new array.
    """

    name: str
    switch: str
    checkpoint: str
    component: str
    kind: str
    internal: str
    user: str
    to_user: Callable = _copy


#: Every refinable array, in optimizer-block order.
REFINABLES = (
    Refinable("obj", "update_obj", "co.npy", "object", "complex", "(S, Mo, Ny, Nx) transmission",
              "(y, x, slices, modes) transmission", _obj_to_user),
    Refinable("probe", "update_probe", "cp.npy", "probe", "complex", "(K, Mp, Y, X) real space, counts",
              "(y, x, modes) or (y, x, modes, subscans) real space, sum |probe|^2 = counts", _probe_to_user),
    Refinable("positions", "update_probe_pos", "cg.npy", "positions", "real", "(N, 2) canvas px",
              "(N, 2) (y, x) window corners, px"),
    Refinable("tilts", "update_tilts", "ct.npy", "tilts", "real", "(N or 1, 6) mrad",
              "(N or 1, 6) mrad: (y, x) before, inside, after"),
    Refinable("beam_current", "update_beam_current", "cb.npy", "beam_current", "real", "(N,)",
              "(N,) relative beam current"),
    Refinable("static_background", "update_static_background", "cs.npy", "static_background", "real",
              "(Yd, Xd) counts, FFT order", "(Yd, Xd) counts, centred", _background_to_user),
    Refinable("aberrations_array", "update_aberrations_array", "ca.npy", "aberrations_array", "real",
              "(A, J) Å, Krivanek order", "(A, J) Å, Krivanek order"),
)

#: name -> :class:`Refinable` (read-only).
BY_NAME = MappingProxyType({r.name: r for r in REFINABLES})
#: Names of the refinable arrays, in optimizer-block order.
ARRAY_NAMES = tuple(BY_NAME)


def checkpoint_name(array_name: str) -> str:
    """Checkpoint file name of a refinable array (``obj`` -> ``co.npy``). Raises KeyError for another name."""
    return BY_NAME[array_name].checkpoint


def component_name(array_name: str) -> str:
    """Provenance component name of a refinable array (``obj`` -> ``object``). Raises KeyError for another name."""
    return BY_NAME[array_name].component


def arrays_to_user(arrays: dict, to_numpy, probe_4d: bool) -> dict:
    """User-layout NumPy copies of the internal arrays present in ``arrays`` (registry order).

    ``to_numpy`` converts a device array (e.g. :meth:`pypty.backend.Backend.to_numpy`).
    """
    return {r.name: r.to_user(to_numpy(arrays[r.name]), probe_4d) for r in REFINABLES if r.name in arrays}
