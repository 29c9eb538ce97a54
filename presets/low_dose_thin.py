"""Preset: thin specimen at low dose (a few hundred electrons per pattern or fewer), one slice, regularized.

Without regularization a low-dose reconstruction reaches its best agreement
with the truth after a few epochs and then fits the noise.  Measured on the
shared MoS2 monolayer data thinned binomially to 1/20 and 1/100 of the dose
(800 and 160 electrons per pattern; ``benchmarks/regularization_demo.py``,
``docs/regularization_results.md``), with the Poisson loss:

==========  =====================================  ==========================
dose        unregularized: best (epoch) / final     these settings: final (60)
==========  =====================================  ==========================
1/20        0.927 (9) / 0.914                      0.954 (best = final)
1/100       0.795 (16) / 0.765                     0.879 (best = final)
==========  =====================================  ==========================

(phase correlation with the ground truth; the regularized runs do not
decline).  The smooth L1 penalties pull the phase and the absorptive
potential of the vacuum and of the noise towards 0 (a soft threshold).  The
weights are in loss units of the Poisson loss; they were tuned at these
doses (``phase_norm_weight`` 16, ``abs_norm_weight`` 30): raise them for
noisier data, lower them when weak features disappear.  Positions are
refined with the mean correction held at zero (``pos_recenter``), which
removes the unobservable global shift.

Use::

    import runpy
    preset = runpy.run_path("presets/low_dose_thin.py")
    params = preset["pypty_params"]("scan.h5", output_folder="runs/low_dose", defocus_A=100)

Keyword arguments go to :func:`pypty.initialize.pypty_params_from_dataset`;
``settings`` overrides entries of :data:`SETTINGS`.
"""
from pypty.initialize import pypty_params_from_dataset

#: Reconstruction settings independent of the dataset.
SETTINGS = {
    "algorithm": "ml",                 # Poisson likelihood: 0.08 higher correlation than lsq_sqrt at 1/100 dose
    "num_slices": 1,
    "lazy_clean": True,                # one slice: keep the object's full band (docs/regularization.md)
    "epoch_max": 60,
    "update_obj": 1,
    "update_probe": 1,
    "update_probe_pos": "lambda epoch: 1 if epoch >= 10 else 0",
    "pos_recenter": True,
    "phase_norm_weight": 16.0,
    "abs_norm_weight": 30.0,
    "compute_batch": "auto",
    "print_flag": 1,
}


def pypty_params(data_path, output_folder="", settings=None, **experiment):
    """Complete ``pypty_params`` for a thin specimen at low dose; see the module docstring.

    Parameters
    ----------
    data_path : str
        A pypty dataset (:func:`pypty.initialize.create_dataset`).
    output_folder : str
    settings : dict or None
        Overrides of :data:`SETTINGS`.
    **experiment
        Passed to :func:`pypty.initialize.pypty_params_from_dataset`.

    Returns
    -------
    dict
        ``pypty_params`` for :func:`pypty.iterative.run`.
    """
    experiment.setdefault("thickness_A", 10.0)   # irrelevant for one slice (no propagation)
    experiment["num_slices"] = 1
    params = pypty_params_from_dataset(data_path, **experiment)
    params.update(SETTINGS)
    params.update(settings or {})
    params["output_folder"] = output_folder
    return params
