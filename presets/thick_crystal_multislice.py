"""Preset: thick crystal, multislice (e.g. 10-50 nm of an oxide along a zone axis).

Specimens thicker than the depth of field need several slices; slices of
about 10-20 Å are a common compromise between depth resolution and cost.
The amplitude (sqrt) least-squares loss is robust at moderate dose; the probe
is refined from the start, positions after the first 30 epochs.  Padding the
patterns ("auto": a quarter of their width per side) keeps the multislice
propagation well sampled.

Use::

    import runpy
    preset = runpy.run_path("presets/thick_crystal_multislice.py")
    params = preset["pypty_params"]("scan.h5", thickness_A=200, output_folder="runs/thick",
                                    defocus_A=100)

``thickness_A`` is required; ``slice_thickness_A`` (default 15 Å) sets the
number of slices; other keyword arguments go to
:func:`pypty.initialize.pypty_params_from_dataset`, ``settings`` overrides
:data:`SETTINGS`.
"""
import math

from pypty.initialize import pypty_params_from_dataset

SETTINGS = {
    "algorithm": "lsq_sqrt",
    "epoch_max": 120,
    "update_obj": 1,
    "update_probe": 1,
    "update_probe_pos": "lambda epoch: 1 if epoch >= 30 else 0",
    "damping_cutoff_multislice": 2 / 3,    # band limit of the propagator against aliasing
    "compute_batch": "auto",
    "print_flag": 1,
}


def pypty_params(data_path, thickness_A, output_folder="", slice_thickness_A=15.0, settings=None, **experiment):
    """Complete ``pypty_params`` for a thick specimen; see the module docstring."""
    if not thickness_A > 0 or not slice_thickness_A > 0:
        raise ValueError(f"thickness_A and slice_thickness_A must be > 0, got {thickness_A!r}, "
                         f"{slice_thickness_A!r}")
    experiment["num_slices"] = max(1, math.ceil(thickness_A / slice_thickness_A - 1e-9))
    experiment.setdefault("data_pad", "auto")
    params = pypty_params_from_dataset(data_path, thickness_A=thickness_A, **experiment)
    params.update(SETTINGS)
    params.update(settings or {})
    params["output_folder"] = output_folder
    return params
