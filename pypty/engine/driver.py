"""The epoch loop of a reconstruction: set-up, restart, epochs, logs, save points, final save.

:func:`reconstruct` is what :func:`pypty.iterative.run` calls after
validation.  It builds the static problem (:func:`pypty.model.setup.build_setup`),
the loss terms and hand constraints of the run (:mod:`pypty.regularizers`,
:mod:`pypty.constraints`), the :class:`pypty.engine.session.Reconstruction`
that holds the state, and the outputs (:mod:`pypty.output`), then runs the
epochs.  On an exception or Ctrl-C inside the loop the state of the last
completed epoch is saved before the error propagates.
"""
from __future__ import annotations

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
from ..output.folders import check_plain_folder, resolve_output_folder
from ..output.logs import LossLog, save_checkpoints
from ..output.results import load_results, results_path
from ..output.savepoints import SavePoints
from ..parameters import to_jsonable
from ..parameters.consistency import check_consistency
from ..parameters.schedule import every
from ..regularizers import build_terms
from .objective import part_names
from .session import Reconstruction

__all__ = ["reconstruct"]


def _restart_params(p):
    """Load ``restart_from`` / ``parent_results``; with ``restart_from`` take arrays and epoch_prev from it."""
    if p["restart_from"]:
        parent = load_results(results_path(p["restart_from"]), restart_state=True)
        if parent["restart"] is None:
            raise ValueError(f"parameter 'restart_from': '{parent['path']}' holds no restart state")
        for name, arr in parent["arrays"].items():
            if name in p and name != "positions":
                p[name] = arr
        p["positions"] = parent["arrays"]["positions"]  # frame of the saved object: no further shift
        p["epoch_prev"] = int(parent["attrs"]["epochs_done"])
        p["parent_results"] = parent["path"]
        return parent, True
    if p["parent_results"]:
        return load_results(results_path(p["parent_results"]), restart_state=False), False
    return None, False


def _continue(rec, parent):
    """Put the saved canvas positions, offset and optimizer state into the reconstruction."""
    obj = parent["arrays"]["obj"]
    if rec.canvas_yx != tuple(obj.shape[:2]):
        raise ValueError(f"parameter 'restart_from': the saved object is {obj.shape[:2]} px but the scan needs a "
                         f"{rec.canvas_yx} px canvas")
    rec.load_restart_state(parent["restart"], parent["position_offset"])


def reconstruct(p: dict, terms=None, constraints=None) -> dict:
    """Run a reconstruction from validated parameters (see :func:`pypty.iterative.run`).

    Parameters
    ----------
    p : dict
        Output of :func:`pypty.parameters.validate` (modified: restart
        settings are written into it).
    terms, constraints : sequence or None
        Loss terms and hand constraints; None builds those of the
        parameters from :data:`pypty.regularizers.REGISTRY` and
        :data:`pypty.constraints.REGISTRY` (tests pass their own).

    Returns
    -------
    dict
        As :func:`pypty.iterative.run`.
    """
    t0 = time.perf_counter()
    check_plain_folder(p)
    parent, restart = _restart_params(p)
    if restart:
        check_consistency(p)  # the saved arrays replaced validated ones
    bk = get_backend()
    notice = gpu_dtype_notice(bk, p["default_dtype"])
    if notice:
        warnings.warn("pypty: " + notice, RuntimeWarning, stacklevel=3)
    pf = int(p["print_flag"])
    say = (lambda m: tqdm.write(m)) if pf >= 2 else None
    st = build_setup(p, bk, log=say, keep_canvas=restart)
    try:
        terms = build_terms(p, bk) if terms is None else list(terms)
        constraints = build_constraints(p, bk) if constraints is None else list(constraints)
        rec = Reconstruction(p, st, terms, constraints, log=say)
        if restart:
            _continue(rec, parent)
        info = dict(n_patterns=st.n_patterns, window=tuple(st.model.window_yx),
                    probe_modes=int(st.arrays["probe"].shape[1]), obj_modes=int(st.arrays["obj"].shape[1]))
        out = resolve_output_folder(p, info)
        if out:
            stale = remove_stale_temporaries(out)  # left by a run killed mid-write (never the latest files)
            if stale and pf >= 2:
                tqdm.write(f"removed {len(stale)} temporary file(s) of an interrupted write from {out}")
            record = {"pypty_version": __version__, "backend": bk.name, "params": to_jsonable(p)}
            write_json_atomic(os.path.join(out, "params.json"), record)
        return _epochs(p, st, rec, out, parent, restart, part_names(terms), t0)
    finally:
        st.close()


def _epochs(p, st, rec, out, parent, restart, parts, t0):
    pf = int(p["print_flag"])
    sp = SavePoints(p, st, out, rec.arrays_numpy(), parent, restart, parts)
    log = LossLog(os.path.join(out, "loss.csv"), p["epoch_prev"] > 0, parts) \
        if (out and p["save_loss_log"]) else None
    first, last = int(p["epoch_prev"]), int(p["epoch_max"])
    bar = tqdm(range(first, last), disable=pf == 0, desc="pypty", unit="epoch", dynamic_ncols=True, leave=pf >= 2)
    epoch = first
    results_file = ""
    try:
        for epoch in bar:
            te = time.perf_counter()
            rep = rec.step(epoch)
            rec.loss_history.append(rep.loss)
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
        done = first + len(rec.loss_history)
        if out and p["save_inter_checkpoints"]:
            save_checkpoints(out, rec.arrays_numpy())
        results_file = sp.save(rec.snapshot, done, "final", figures=bool(p["save_figures"] or p["save_tiff"]))
    except BaseException as exc:
        if out:
            done = first + len(rec.loss_history)
            where = os.path.abspath(out)
            try:
                save_checkpoints(out, rec.arrays_numpy())
                where = f"{where} (checkpoints co/cp/cg.npy and {sp.save(rec.snapshot, done, 'interrupted')})"
            except Exception as save_exc:  # keep the original error; say what failed
                where += f" (final save failed: {save_exc!r})"
            msg = (f"pypty: run stopped during epoch {epoch + 1} after {done} completed epoch(s); state saved to "
                   f"{where}; continue with restart_from='{os.path.abspath(out)}'")
            if hasattr(exc, "add_note"):
                exc.add_note(msg)
            tqdm.write(msg)
        raise
    finally:
        bar.close()
        if log is not None:
            log.close()
    result = rec.arrays_numpy()
    result.update(loss=list(rec.loss_history), epochs=last if last > first else first,
                  wall_time_s=time.perf_counter() - t0, output_folder=out, results_file=results_file,
                  position_offset=np.asarray(rec.position_offset, dtype=np.float64).copy())
    return result
