"""The epoch loop of a reconstruction: set-up, restart, epochs, logs, save points, final save.

:func:`reconstruct` is what :func:`pypty.iterative.run` calls after
validation.  It builds the static problem (:func:`pypty.model.setup.build_setup`),
the loss terms and hand constraints of the run (:mod:`pypty.regularizers`,
:mod:`pypty.constraints`), the :class:`pypty.engine.session.Reconstruction`
that holds the state, and the outputs (:mod:`pypty.output`), then runs the
epochs.  On an exception, Ctrl-C or a stop signal (SIGTERM, SIGHUP, SIGUSR1) inside the loop the
state of the last completed epoch is saved before the error propagates.
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings

import numpy as np
from tqdm.auto import tqdm

from .. import __version__
from ..backend import get_backend
from ..device_hints import gpu_dtype_notice
from ..constraints import build_constraints
from ..model.setup import build_setup
from ..optim import norm
from ..output.atomic import remove_stale_temporaries, write_json_atomic
from ..output.folders import claim_output_folder, naming_active
from ..output.logs import LossLog, save_checkpoints
from ..output.results import RESULTS_NAME, load_results, results_path
from ..output.savepoints import SavePoints
from ..parameters import to_jsonable
from ..parameters.consistency import check_consistency
from ..parameters.schedule import every
from ..regularizers import build_terms
from ..distributed.comm import SerialComm, fft_engine, fft_workers, resolve, select_gpu
from .errors import NonFiniteLossError
from .interrupts import DISTRIBUTED_STOP_SIGNALS, STOP_SIGNALS, RunInterrupted, stop_signals
from .objective import part_names
from .session import Reconstruction

__all__ = ["reconstruct"]

#: Distributed runs compare a checksum of the parameters across ranks every this many epochs (and at the end).
CHECK_EVERY = 5


def _restart_params(p):
    """Load ``restart_from`` / ``parent_results``; with ``restart_from`` take arrays and epoch_prev from it.

    ``restart_from``: :mod:`pypty.output.restart` reads only the refinable arrays, the restart
    state and what the results file carries on, checks each against this run and puts the arrays,
    ``epoch_prev`` and ``parent_results`` into ``p``; nothing else in the file changes ``p``.
    """
    if p["restart_from"]:
        from ..output.restart import apply_restart, load_restart

        parent = load_restart(p)
        apply_restart(p, parent)  # positions: frame of the saved object, no further shift
        return parent, True
    if p["parent_results"]:
        return load_results(results_path(p["parent_results"]), restart_state=False), False
    return None, False


def _continue(rec, parent):
    """Put the saved canvas positions, offset and optimizer state into the reconstruction."""
    from ..output.restart import check_canvas

    check_canvas(parent, rec.canvas_yx)
    rec.load_restart_state(parent["restart"], parent["position_offset"])


def reconstruct(p: dict, terms=None, constraints=None, comm=None) -> dict:
    """Run a reconstruction from validated parameters (see :func:`pypty.iterative.run`).

    The run claims its output folder before it writes anything and releases
    it when it ends (:mod:`pypty.output.folders`: a second run into the same
    folder is refused); meanwhile SIGTERM, SIGHUP and SIGUSR1 stop it like
    Ctrl-C (:mod:`pypty.engine.interrupts`), with the state saved.  A run
    that stops before completing an epoch removes the files it created, so
    a corrected rerun into the same folder is not refused.

    Parameters
    ----------
    p : dict
        Output of :func:`pypty.parameters.validate` (modified: restart
        settings are written into it).
    terms, constraints : sequence or None
        Loss terms and hand constraints; None builds those of the
        parameters from :data:`pypty.regularizers.REGISTRY` and
        :data:`pypty.constraints.REGISTRY` (tests pass their own).
    comm : None, mpi4py communicator or pypty communicator
        :func:`pypty.distributed.resolve`: None detects an MPI launch
        (``docs/distributed.md``).  Distributed, every rank runs this
        function; the patterns are sharded, each loss evaluation is reduced,
        and only rank 0 prints and writes files.

    Returns
    -------
    dict
        As :func:`pypty.iterative.run` (the same on every rank).
    """
    t0 = time.perf_counter()
    owned = not isinstance(comm, SerialComm)  # made here (detected, or from an mpi4py communicator): freed here
    comm = resolve(comm)
    with contextlib.ExitStack() as quiet:
        if owned:
            quiet.callback(comm.close)
        if not comm.is_root:  # only rank 0 prints (its warnings are those of every rank)
            quiet.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
        root = comm.is_root  # only rank 0 prints and writes
        pf = int(p["print_flag"]) if root else 0
        say = (lambda m: tqdm.write(m)) if pf >= 2 else None
        note = (lambda m: tqdm.write(m)) if pf >= 1 else None
        claim = None
        with stop_signals(DISTRIBUTED_STOP_SIGNALS if comm.distributed else STOP_SIGNALS,
                          defer=comm.distributed) as received:
            if comm.distributed:  # a signal is raised on every rank together, at the next loss evaluation
                comm.pending_signals, comm.on_stop = received, RunInterrupted
            try:
                def start():
                    nonlocal claim
                    if root and p["output_folder"] and not naming_active(p):
                        claim = claim_output_folder(p, say=note)  # before any heavy work and any write
                    return _restart_params(p)

                parent, restart = comm.agree(start, "the start of the run")
                if restart:
                    check_consistency(p)  # the saved arrays replaced validated ones

                def backend():
                    select_gpu(comm)  # distributed with CuPy: GPU (node-local rank) % (GPUs), before any allocation
                    engine = fft_engine(comm)  # distributed: an FFT whose bits do not depend on the process
                    if engine == "fftw" and root:
                        warnings.warn("pypty: PYPTY_FFT=fftw in a distributed run: FFTW_MEASURE plans are timed per "
                                      "process, so the ranks may compute different last bits and the parameter "
                                      "checksum may stop the run; use ducc0 or scipy", RuntimeWarning, stacklevel=2)
                    workers = fft_workers(comm)  # distributed: the node's cores shared by its ranks
                    return get_backend(workers=workers, fft=engine)  # fft=None: the default choice

                bk = comm.agree(backend, "choosing the backend")
                notice = gpu_dtype_notice(bk, p["default_dtype"])
                if notice and root:
                    warnings.warn("pypty: " + notice, RuntimeWarning, stacklevel=3)
                if say is not None and comm.distributed:
                    say(f"distributed run: {comm.size} MPI processes, this is rank 0 (patterns sharded, one reduction "
                        f"per loss evaluation; docs/distributed.md)")
                st = build_setup(p, bk, log=say, keep_canvas=restart, comm=comm)
                try:
                    def prepare():
                        nonlocal claim
                        run_terms = build_terms(p, bk) if terms is None else list(terms)
                        run_constraints = build_constraints(p, bk) if constraints is None else list(constraints)
                        rec = Reconstruction(p, st, run_terms, run_constraints, log=say)
                        if restart:
                            _continue(rec, parent)
                        if root and p["output_folder"] and claim is None:  # named run folder: its name needs the set-up
                            info = dict(n_patterns=st.n_patterns, window=tuple(st.model.window_yx),
                                        probe_modes=int(st.arrays["probe"].shape[1]),
                                        obj_modes=int(st.arrays["obj"].shape[1]))
                            claim = claim_output_folder(p, info, say=note)
                        out = claim.folder if claim is not None else ""
                        if out:
                            stale = remove_stale_temporaries(out)  # of writers that are gone (never a live run's)
                            if stale and pf >= 2:
                                tqdm.write(f"removed {len(stale)} temporary file(s) of an interrupted write from {out}")
                            record = {"pypty_version": __version__, "backend": bk.name, "compute": bk.describe(),
                                      "params": to_jsonable(p)}
                            if comm.distributed:
                                record["mpi_ranks"] = comm.size
                            write_json_atomic(os.path.join(out, "params.json"), record)
                        return run_terms, rec, out

                    run_terms, rec, out = comm.agree(prepare, "the set-up")
                    return _epochs(p, st, rec, out, parent, restart, part_names(run_terms), t0, claim, comm)
                finally:
                    st.close()
            finally:
                if claim is not None:
                    claim.release()  # without progress: also the files this run created


def _epochs(p, st, rec, out, parent, restart, parts, t0, claim=None, comm=None):
    comm = comm if comm is not None else SerialComm()
    pf = int(p["print_flag"]) if comm.is_root else 0
    sp = SavePoints(p, st, out, rec.arrays_numpy(), parent, restart, parts)
    first, last = int(p["epoch_prev"]), int(p["epoch_max"])
    # a continuation drops the rows after its restart epoch (left by the earlier run after its last save point)
    log = LossLog(os.path.join(out, "loss.csv"), first > 0, parts, keep_until=first) \
        if (out and p["save_loss_log"]) else None
    bar = tqdm(range(first, last), disable=pf == 0, desc="pypty", unit="epoch", dynamic_ncols=True, leave=pf >= 2)
    epoch = first
    results_file = ""
    try:
        for epoch in bar:
            te = time.perf_counter()
            rep = rec.step(epoch)
            rec.loss_history.append(rep.loss)

            def outputs():  # rank 0's logs and files (distributed: a failure there is reported on every rank)
                nonlocal results_file
                if claim is not None:
                    claim.progress = True  # an epoch completed: the run's files are kept from now on
                    claim.touch()
                refined = rep.settings.refine
                sp.epoch_done(epoch, refined, rep.loss, rep.parts, rep.step, rep.accepted, rep.n_evals,
                              time.perf_counter() - te)
                bar.set_postfix(loss=f"{rep.loss:.6g}", step=f"{rep.step:.3g}", evals=rep.n_evals, refresh=False)
                if pf >= 3:
                    tqdm.write(f"epoch {epoch + 1:5d}  loss {rep.loss:.8g}  step {rep.step:.3g}  evals {rep.n_evals}"
                               f"  {'accepted' if rep.accepted else 'REJECTED'}  [{'+'.join(refined)}]")
                if pf >= 4:
                    tqdm.write("    |g| per block: " + ", ".join(f"{k} {norm({k: v}):.3e}" for k, v in rep.grad.items())
                               + "; " + ", ".join(f"{k} {v:.6g}" for k, v in rep.parts.items())
                               + f"; history {rep.history_size}; {rep.message}")
                if log is not None:
                    log.write(epoch + 1, time.perf_counter() - t0, rep.loss, rep.parts, rep.step, rep.accepted,
                              rep.n_evals, refined)
                folders = [f for f, flag in ((out, p["save_inter_checkpoints"]),
                                             (os.path.join(out, "checkpoints", f"epoch_{epoch + 1:04d}"),
                                              p["save_checkpoints_every_epoch"])) if out and every(flag, epoch)]
                if folders:
                    user = rec.arrays_numpy()  # one device -> host copy for both kinds of checkpoint
                    for folder in folders:
                        save_checkpoints(folder, user)
                results_due, figures_due = sp.due(epoch)
                if results_due or figures_due:
                    results_file = sp.save(rec.snapshot, epoch + 1, "save point", figures=figures_due)
                elif sp.restart_point_due(epoch):  # a state restart_from accepts, from the first epoch on
                    results_file = sp.save(rec.snapshot, epoch + 1, "save point", convergence=False)

            comm.agree(outputs, f"the outputs of epoch {epoch + 1}")
            if comm.distributed and ((epoch + 1 - first) % CHECK_EVERY == 0 or epoch + 1 == last):
                comm.check_replicated(rec.xp, rec.arrays, f"after epoch {epoch + 1}")

        def final():
            nonlocal results_file
            done = first + len(rec.loss_history)
            if out and p["save_inter_checkpoints"]:
                save_checkpoints(out, rec.arrays_numpy())
            results_file = sp.save(rec.snapshot, done, "final", figures=bool(p["save_figures"] or p["save_tiff"]))
            if claim is not None and results_file:
                claim.progress = True

        comm.agree(final, "the final save")
    except BaseException as exc:
        if out:
            msg = _save_after_stop(exc, sp, rec, out, first, last, restart, claim)
            if hasattr(exc, "add_note"):
                exc.add_note(msg)
            tqdm.write(msg)
        if comm.distributed and (getattr(exc, "agreed", False) or isinstance(exc, NonFiniteLossError)):
            comm.barrier()  # every rank raises this error: the others leave only once rank 0 has saved
        raise
    finally:
        bar.close()
        if log is not None:
            log.close()
    if comm.distributed:  # every rank returns rank 0's file names
        out, results_file = comm.allgather((out, results_file))[0]
    result = rec.arrays_numpy()
    result.update(loss=list(rec.loss_history), epochs=last if last > first else first,
                  wall_time_s=time.perf_counter() - t0, output_folder=out, results_file=results_file,
                  position_offset=np.asarray(rec.position_offset, dtype=np.float64).copy())
    if comm.distributed:
        result["comm_stats"] = comm.stats.as_dict()
    return result


def _save_after_stop(exc, sp, rec, out, first, last, restart, claim):
    """Save the state after an exception in the epoch loop; returns the message saying what was (not) saved.

    Nothing is written when no epoch completed (the files of an earlier run
    stay as they were; a new run's files are removed when its claim is
    released).  Otherwise results.h5 (status "interrupted") is written
    first, then the ``.npy`` checkpoints; the message names what was saved
    and, when the save failed, the last complete results file.
    """
    folder = os.path.abspath(out)
    done = first + len(rec.loss_history)
    how = f" by {exc.signame}" if isinstance(exc, RunInterrupted) else ""
    head = f"pypty: run stopped{how}"
    if done == first:
        if restart or first > 0:
            return (f"{head} before completing an epoch, so nothing was saved; the results file and checkpoints "
                    f"in {folder} are as they were")
        return (f"{head} before completing an epoch, so nothing was saved; the files it had created in {folder} "
                f"are removed, so the folder can be used again")
    head += " after the last epoch" if done >= last else ""
    saved, failed = [], []
    try:
        saved.append(sp.save(rec.snapshot, done, "interrupted"))
        if claim is not None:
            claim.progress = True
    except Exception as err:  # keep the original error; say what failed
        failed.append(f"results.h5: {err}")
    try:
        save_checkpoints(out, rec.arrays_numpy())
        saved.append("checkpoints co/cp/cg.npy")
    except Exception as err:
        failed.append(f"checkpoints: {err}")
    results_saved = sp.last_written is not None and sp.last_written[1] == done and not any(
        f.startswith("results.h5") for f in failed)
    if results_saved:
        msg = (f"{head} after {done} completed epoch(s); state saved to {folder} ({' and '.join(saved)}); "
               f"continue with restart_from='{folder}'")
        return msg + (f" (not saved: {'; '.join(failed)})" if failed else "")
    msg = f"{head} after {done} completed epoch(s); the state could NOT be saved ({'; '.join(failed)})"
    if sp.last_written is not None:
        return msg + (f"; the last complete results file, '{sp.last_written[0]}', holds the state after epoch "
                      f"{sp.last_written[1]}: restart_from='{folder}' continues from there")
    if os.path.exists(os.path.join(out, RESULTS_NAME)):
        return msg + f"; the earlier results file in {folder} is unchanged"
    return msg + "; no results file was written, so restart_from has nothing to continue from"
