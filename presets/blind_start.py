"""Preset: blind start -- no defocus (and no scan rotation) given; both, and an initial object, come
from the data.

:func:`pypty.initialize.from_data` (docs/direct_methods.md) measures the scan rotation and
transposition from the curl of the centre-of-mass field, fits C10 and two-fold astigmatism (Krivanek,
Å) and refines the rotation from the parallax shifts of the virtual bright-field images, rotates the
nominal scan positions accordingly when the rotation differs significantly from the nominal one,
and can build an initial object from the iDPC (or tilt-corrected bright-field) phase (off by default).  The reconstruction then runs as for a thin specimen (one slice, Poisson
likelihood, probe refinement from the start, positions from epoch 20).  On the shared MoS2 data
(``data_pad=0``, positions fixed, 6 epochs) this preset reaches r = 0.824 against the ground truth,
the same settings with the known C10 (-47.6 Å), the nominal positions and no initial object 0.821
(docs/direct_methods.md).  Parallax needs some defocus (tens of Å or more): at C10 = 0 there are no
shifts to measure and the fit means nothing; check ``report["sigma"]``.

A ``C10_A`` attribute of the file is *not* used (it is returned in the report as ``file_C10_A`` for
comparison); a ``defocus_A`` keyword is refused (use the thin-specimen preset when the defocus is
known).

Use::

    import runpy
    preset = runpy.run_path("presets/blind_start.py")
    params, report = preset["pypty_params"]("scan.h5", output_folder="runs/blind", return_report=True)
    print(report["C10"], report["sigma"]["C10"], report["rotation_deg"])
    result = pypty.iterative.run(params)

Keyword arguments go to :func:`pypty.initialize.pypty_params_from_dataset` (``data_pad``,
``data_bin``, calibrations, ...); ``settings`` overrides entries of :data:`SETTINGS`, ``blind``
entries of :data:`BLIND` (the options of :func:`pypty.initialize.from_data`).
"""
import h5py

from pypty.initialize import from_data, pypty_params_from_dataset

#: Reconstruction settings independent of the dataset.
SETTINGS = {
    "algorithm": "ml",                 # Poisson likelihood for counted data
    "num_slices": 1,
    "lazy_clean": True,                # one slice: keep the object's full band (docs/regularization.md)
    "epoch_max": 60,
    "update_obj": 1,
    "update_probe": 1,
    "update_probe_pos": "lambda epoch: 1 if epoch >= 20 else 0",
    "compute_batch": "auto",
    "print_flag": 1,
}

#: Options of :func:`pypty.initialize.from_data`.
BLIND = {
    "fit_c12": True,                   # two-fold astigmatism as well as C10
    "estimate_rotation": True,         # scan rotation / transposition from COM curl + parallax
    # no initial object (vacuum): on the MoS2 data a vacuum start reached r 0.975 after 6 epochs, an iDPC start
    # 0.912 (benchmarks/blind_start_mos2.py); "idpc" or "tcbf" give an initial phase from the data
    "object_from": None,
}


def pypty_params(data_path, output_folder="", settings=None, blind=None, return_report=False, **experiment):
    """Complete ``pypty_params`` with aberrations, positions and object estimated from the data.

    Parameters
    ----------
    data_path : str
        A pypty dataset (:func:`pypty.initialize.create_dataset`); ``semiangle_mrad`` is read from it
        unless given.
    output_folder : str
    settings : dict or None
        Overrides of :data:`SETTINGS`.
    blind : dict or None
        Overrides of :data:`BLIND`.
    return_report : bool
        Return ``(params, report)``; ``report`` is the one of :func:`pypty.initialize.from_data` plus
        ``file_C10_A`` (the file's C10, not used; None when absent).
    **experiment
        Passed to :func:`pypty.initialize.pypty_params_from_dataset` (no ``defocus_A``).
    """
    if experiment.get("defocus_A") is not None:
        raise ValueError("blind_start: defocus_A is estimated from the data; use thin_2d_single_slice to give it")
    experiment.setdefault("thickness_A", 10.0)   # irrelevant for one slice (no propagation)
    experiment["num_slices"] = 1
    with h5py.File(data_path, "r") as f:
        file_c10 = float(f.attrs["C10_A"]) if "C10_A" in f.attrs else None
        semiangle = experiment.get("semiangle_mrad", f.attrs.get("semiangle_mrad"))
    if semiangle is None:
        raise ValueError(f"blind_start: semiangle_mrad is neither an attribute of {data_path!r} nor given")
    params = pypty_params_from_dataset(data_path, **experiment)
    params.pop("aberrations", None)              # a C10_A attribute of the file is not used
    options = dict(BLIND)
    options.update(blind or {})
    est = from_data(params, semiangle_mrad=float(semiangle), **options)
    params.update(aberrations=est["aberrations"], positions=est["positions"])
    if est["obj"] is not None:
        params["obj"] = est["obj"]
    params.update(SETTINGS)
    params.update(settings or {})
    params["output_folder"] = output_folder
    report = dict(est["report"], file_C10_A=file_c10)
    return (params, report) if return_report else params
