"""Preset: thin 2D material (e.g. a MoS2 or graphene monolayer), one slice, counted data.

Starting point for specimens much thinner than the depth of field
(``lambda / alpha^2``, about 50-100 Å at 20-30 mrad) recorded with a few
thousand electrons per pattern or more: a single slice, the amplitude metric
for six epochs and then the Poisson maximum-likelihood loss (counted data),
probe refinement in the first 20 epochs, position refinement from epoch 6 and
weak smooth-L1 penalties on phase and absorption
(:func:`pypty.initialize.counted_data_settings`, ``regime="high"``; below
about 2,000 electrons per pattern use ``presets/low_dose_thin.py``).
Measured on the shared MoS2 monolayer (16,000 e per pattern, positions
refined; ``benchmarks/convergence.py``, table in ``docs/performance.md``):
r 0.90 at epoch 2, 0.95 at epoch 7, 0.99 from
epoch 20 on without decline, positions 0.125 px rms; ``lsq_sqrt`` alone
peaks at 0.94 and falls to 0.78 as the scan expands (0.69 px).

Use::

    import runpy
    preset = runpy.run_path("presets/thin_2d_single_slice.py")
    params = preset["pypty_params"]("scan.h5", output_folder="runs/thin", defocus_A=100)
    result = pypty.iterative.run(params)

``pypty_params`` reads the acquisition metadata written by
:func:`pypty.initialize.create_dataset`; keyword arguments go to
:func:`pypty.initialize.pypty_params_from_dataset` (``defocus_A``,
``data_pad``, ``scan_rotation_deg``, calibrations, ...) and ``settings``
overrides entries of :data:`SETTINGS`.
"""
from pypty.initialize import counted_data_settings, pypty_params_from_dataset

#: Reconstruction settings independent of the dataset: the measured high-dose recipe of
#: :func:`pypty.initialize.counted_data_settings` (``lsq_sqrt`` for six epochs, then ``ml``; probe refined in the
#: first 20 epochs; positions from epoch 6 with ``pos_recenter``; smooth L1 of phase and absorption), see its
#: docstring for the numbers.
SETTINGS = {
    **counted_data_settings(regime="high"),
    "epoch_max": 60,
    "compute_batch": "auto",
    "print_flag": 1,
}


def pypty_params(data_path, output_folder="", settings=None, **experiment):
    """Complete ``pypty_params`` for a thin specimen; see the module docstring."""
    experiment.setdefault("thickness_A", 10.0)   # irrelevant for one slice (no propagation)
    experiment["num_slices"] = 1
    params = pypty_params_from_dataset(data_path, **experiment)
    params.update(SETTINGS)
    params.update(settings or {})
    params["output_folder"] = output_folder
    return params
