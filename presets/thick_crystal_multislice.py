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

Positions are refined with the mean correction held at zero
(``pos_recenter``) and pulled towards an affine scan grid
(``deformation_reg_weight_positions``): on the MoS2 data with the
``lsq_sqrt`` loss this kept the rms position error at 0.14 px where the
unregularized refinement drifted to 0.70 px
(``docs/regularization_results.md``; the weight is in loss units, tuned at
16,000 electrons per pattern).  The patterns are padded so that the
propagator's band limit covers the whole detector: without it, scattering
beyond the band limit can only come from the last slice, which then takes
up structure of the others (``docs/regularization_depth.md``).  The z
regularizers (``beta_wedge`` with ``wedge_mu``, ``kz_filter_beta``,
``apply_gaussian_filter_z``) are off by default, because a crystal has
little to separate along z and they were not measured on one.  For layered
specimens switch the kz filter on::

    settings={"kz_filter_beta": pypty.initialize.epoch_schedule(10.0, start=5, step=5, end=epoch_max - 5),
              "kz_filter_alpha": 0.0}

On a simulated MoS2 bilayer with layers 1 nm apart (4.8 Å slices) it halved
the cross-talk between the layers at 16,000 e/pattern (0.25 to 0.12; every
five epochs, beta 5-10); with 3 nm between the layers there was no
cross-talk to remove.  At 1,600 e/pattern it did not lower it; there a light
phase sparsity term did (``phase_norm_weight`` 3-5: 0.28 to 0.12).
Stronger settings (beta 20-40, every epoch) smooth the object along z and
mix the layers (``docs/regularization_depth.md``).

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
    "pos_recenter": True,                  # no drift of the whole scan (a projection: no optimizer resets)
    "deformation_reg_weight_positions": 2.0,   # towards an affine scan grid (loss units per px^2)
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
