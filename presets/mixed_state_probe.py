"""Preset: mixed-state probe (partial spatial coherence, vibrations, defocus spread).

A partially coherent beam is modelled as an incoherent sum of probe modes
(Thibault & Menzel, Nature 494 (2013) 68).  The probe is started from the
data (``probe`` None) as Hermite modes: ``n_hermite_probe_modes = (2, 2)``
gives four orthogonal modes, the first with most of the power.  Give
``defocus_spread`` (Å, e.g. ``[-30, 0, 30]``) instead to start from
defocus-spread modes (chromatic spread).

Use::

    import runpy
    preset = runpy.run_path("presets/mixed_state_probe.py")
    params = preset["pypty_params"]("scan.h5", output_folder="runs/mixed", defocus_A=80)

Keyword arguments go to :func:`pypty.initialize.pypty_params_from_dataset`
(``thickness_A`` and ``num_slices`` included), ``settings`` overrides
:data:`SETTINGS`.
"""
import numpy as np

from pypty.initialize import pypty_params_from_dataset

SETTINGS = {
    "algorithm": "lsq_sqrt",
    "epoch_max": 80,
    "probe": None,                        # built from the mean pattern and aberrations by run
    "n_hermite_probe_modes": (2, 2),
    "update_obj": 1,
    "update_probe": 1,
    "update_probe_pos": "lambda epoch: 1 if epoch >= 20 else 0",
    "compute_batch": "auto",
    "print_flag": 1,
}


def pypty_params(data_path, output_folder="", defocus_spread=None, settings=None, **experiment):
    """Complete ``pypty_params`` with a mixed-state probe; see the module docstring."""
    params = pypty_params_from_dataset(data_path, **experiment)
    params.update(SETTINGS)
    if defocus_spread is not None:
        params["n_hermite_probe_modes"] = None
        params["defocus_spread_modes"] = np.asarray(defocus_spread, dtype=float)
    params.update(settings or {})
    params["output_folder"] = output_folder
    return params
