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
decline; measured with the constant ``ml`` loss before the schedule below was
added).  The smooth L1 penalties pull the phase and the absorptive
potential of the vacuum and of the noise towards 0 (a soft threshold).  The
weights are in loss units of the Poisson loss; they were tuned at these
doses (``phase_norm_weight`` 16, ``abs_norm_weight`` 30): raise them for
noisier data, lower them when weak features disappear.  Positions are
refined with the mean correction held at zero (``pos_recenter``), which
removes the unobservable global shift.

Loss and schedule for counted data (``benchmarks/convergence.py``, table in
``docs/performance.md``): ``lsq_sqrt`` alone is biased where pixels hold about
one count (the square root of a Poisson count underestimates the square root of
its mean, and its ``eps`` is far below one count): with positions refined its
correlation falls from 0.94 to 0.78 at full dose and from 0.85 to 0.68 at 1/20,
while the scan expands (positions 0.7-1.4 px off).  The Poisson loss ``ml`` is
the right finish; six epochs of ``lsq_sqrt`` first reach r 0.90 sooner at full
dose (epoch 2 instead of 4) and end higher at 1/20 and 1/100 of the dose
(final r 0.947 vs 0.944 at 1/20 and 0.878 vs 0.853 at 1/100 with these
object regularizers and positions refined from epoch 6).  Positions refined
that early at low dose end further from the truth than they started (0.7 px
at 1/20, 1.3 px at 1/100, from 0.40 px); from epoch 20 with
``deformation_reg_weight_positions=2`` they end at 0.41 and 0.45 px, with
final r 0.953 (1/20) and 0.876 (1/100), every epoch after the best within
0.003.  At full dose the thin-2D preset stops refining the probe at epoch 20
(it removes a slow decline there); at 1/100 that costs 0.03 in r (0.845 vs
0.878), so this preset keeps refining the probe.

Use::

    import runpy
    preset = runpy.run_path("presets/low_dose_thin.py")
    params = preset["pypty_params"]("scan.h5", output_folder="runs/low_dose", defocus_A=100)

Keyword arguments go to :func:`pypty.initialize.pypty_params_from_dataset`;
``settings`` overrides entries of :data:`SETTINGS`.
"""
from pypty.initialize import counted_data_settings, pypty_params_from_dataset

#: Reconstruction settings independent of the dataset: the measured low-dose recipe of
#: :func:`pypty.initialize.counted_data_settings` (``lsq_sqrt`` for six epochs, then ``ml``; the probe refined
#: throughout; positions from epoch 20 with ``pos_recenter`` and ``deformation_reg_weight_positions=2``; smooth
#: L1 of phase (16) and absorption (30)), see above and its docstring.
SETTINGS = {
    **counted_data_settings(regime="low"),
    "epoch_max": 60,
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
