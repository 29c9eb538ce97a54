"""``pypty.iterative.run``: iterative ptychographic reconstruction with L-BFGS.

One flat dict (``pypty_params``) drives the run; its keys are described in
``docs/parameters.md`` (generated from :mod:`pypty.parameters`).  An epoch is
one L-BFGS iteration: a search direction over all refined arrays followed by
a Wolfe line search, each trial of which evaluates the loss and gradient over
all patterns of the current ``sequence``.  ``docs/architecture.md`` follows a
run through the subpackages: :mod:`pypty.parameters` (validation),
:mod:`pypty.model` (set-up and the multislice model), :mod:`pypty.engine`
(the epoch loop, the state, the objective), :mod:`pypty.optim` (L-BFGS) and
:mod:`pypty.output` (logs, checkpoints, results.h5, figures).
"""
from __future__ import annotations

from typing import Mapping

from .engine.driver import reconstruct
from .parameters import validate

__all__ = ["run"]


def run(pypty_params: Mapping, *, comm=None) -> dict:
    """Reconstruct object, probe and scan positions from 4D-STEM data.

    Parameters
    ----------
    pypty_params : Mapping
        Flat dict of parameters; see ``docs/parameters.md`` for every key,
        its default, unit and meaning.  The dict and the arrays in it are
        never modified.
    comm : None or mpi4py communicator, keyword
        Distributed runs (``docs/distributed.md``): None detects an MPI
        launch (``mpiexec -n R python -m mpi4py -m pypty run params.json``;
        one process otherwise); an mpi4py communicator of R > 1 ranks runs
        this reconstruction on those ranks (every rank calls ``run`` with the
        same parameters): the patterns are sharded, each loss evaluation is
        reduced so every rank holds the same bits, and only rank 0 prints
        and writes files.

    Returns
    -------
    dict
        ``obj`` complex (y, x, slices, modes) transmission function;
        ``probe`` complex (y, x, modes) (or (y, x, modes, subscans) with
        ``probe_marker``), real space, centred in its window,
        ``sum |probe|^2`` = counts per pattern; ``positions`` float64 (N, 2)
        top-left corners (y, x) of the probe window in object px;
        ``loss`` list of float (one per epoch run); ``epochs`` (last epoch
        number); ``wall_time_s``; ``output_folder`` (the run folder, see
        :mod:`pypty.output.folders`); ``results_file`` (path of ``results.h5`` or "");
        ``position_offset`` (2,) px: ``positions`` index the returned object and
        ``positions + position_offset`` are in the frame the positions were
        given in (non-zero when the canvas was shifted or cropped:
        ``use_full_FOV=False``, negative positions, ``extra_space_on_side_px``,
        ``dynamically_resize_yx_object``); further arrays when in the model:
        ``tilts`` (N or 1, 6) mrad, ``beam_current`` (N,),
        ``static_background`` (Yd, Xd) counts, centred, ``aberrations_array``
        (A, J) Å.

    Raises
    ------
    pypty.parameters.PyptyParameterError
        Invalid parameters (unknown key, wrong type/shape, unsupported value).
    pypty.data.DataError
        Unusable data (rank, NaN/inf, negative counts, size mismatch).
    pypty.distributed.DistributedError
        Distributed runs: an error on one rank (its message names the rank
        and the original error), raised on every rank; rank 0 has saved the
        state as for any error in the epoch loop.
    RuntimeError
        An epoch-dependent user callable raised (the parameter is named).

    Notes
    -----
    Output files (when ``output_folder`` is set): ``params.json`` (the
    parameters used, epoch-dependent ones as source text), ``loss.csv``,
    ``co.npy``/``cp.npy``/``cg.npy`` (atomic, overwritten) and, with
    ``save_checkpoints_every_epoch``, ``checkpoints/epoch_NNNN/``;
    ``results.h5`` (:mod:`pypty.results`, at the ``save_results_every``
    cadence and at the end), ``figures/`` and ``tiff/``
    (:mod:`pypty.output.savepoints`).  On an exception or Ctrl-C inside the epoch
    loop the arrays of the last completed epoch are saved to
    ``co.npy``/``cp.npy``/``cg.npy`` and ``results.h5`` (status
    "interrupted") before the error propagates; the message (printed and
    added as a note to the exception) says where, and ``restart_from`` continues
    the run bit-identically.  ``FileExistsError`` is raised when a plain
    ``output_folder`` holds another run (see :mod:`pypty.output.folders`).
    """
    return reconstruct(validate(pypty_params), comm=comm)
