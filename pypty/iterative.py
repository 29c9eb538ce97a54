"""``pypty.iterative.run``: iterative ptychographic reconstruction with L-BFGS.

One flat dict (``pypty_params``) drives the run; its keys are described in
``docs/parameters.md`` (generated from :mod:`pypty.parameters`).  An epoch is
one L-BFGS iteration: a search direction over all refined arrays followed by
a Wolfe line search, each trial of which evaluates the loss and gradient over
all patterns of the current ``sequence``.
"""
from __future__ import annotations

import os
import time
from typing import Mapping

import numpy as np
from tqdm.auto import tqdm

from . import __version__
from .backend import get_backend
from .epoch_eval import resolve
from .io import LossLog, checkpoint_name, save_npy_atomic, write_json_atomic
from .optimizer import LBFGS, norm
from .outputs import check_plain_folder, resolve_output_folder
from .parameters import to_jsonable, validate
from .prepare import Setup, build_setup
from .results import load_results, results_path
from .savepoints import SavePoints

__all__ = ["run"]

_BLOCKS = ("obj", "probe", "positions")


class _Run:
    """State of one reconstruction: arrays on the device, optimizer, outputs."""

    def __init__(self, p: dict, st: Setup):
        self.p, self.st, self.bk = p, st, st.bk
        xp = self.bk.xp
        self.obj = st.obj
        self.probe = st.probe
        self.positions = st.positions
        self.opt = LBFGS(hist_length=_hist(resolve("hist_length", p["hist_length"], p["epoch_prev"])),
                         c1=0.1, c2=0.9, reduce_factor=p["reduce_factor"], optimism=p["optimism"],
                         max_count=p["max_count"], min_step=p["min_step"])
        self.loss_history: list[float] = []
        self.cache = None  # (key, f, g) at the current point
        self.xp = xp

    # ------------------------------------------------------------ objective
    def _epoch_settings(self, epoch):
        p = self.p
        r = lambda k: resolve(k, p[k], epoch)  # noqa: E731
        need = []
        if r("update_obj"):
            need.append("obj")
        if r("update_probe"):
            need.append("probe")
        if r("update_probe_pos"):
            need.append("positions")
        seq = r("sequence")
        seq = np.arange(self.st.n_patterns) if seq is None else np.asarray(seq, dtype=np.int64)
        if seq.size == 0 or seq.min() < 0 or seq.max() >= self.st.n_patterns:
            raise ValueError(f"parameter 'sequence' at epoch {epoch} must hold pattern indices in "
                             f"[0, {self.st.n_patterns - 1}], got {seq.size} values "
                             f"(min {seq.min() if seq.size else '-'}, max {seq.max() if seq.size else '-'})")
        return dict(
            need=need, seq=seq, phase_only=bool(r("phase_only_obj")), weight=float(r("loss_weight")),
            hist=_hist(r("hist_length")), c1=float(r("wolfe_c1_constant")), c2=float(r("wolfe_c2_constant")),
            update_step=float(r("update_step_bfgs")), reset=bool(r("reset_history_flag")),
            subpixel=bool(p["allow_subPixel_shift"]) or "positions" in need,
            smart_memory=bool(r("smart_memory")),
        )

    def _blocks(self, es):
        x = {}
        for name in es["need"]:
            if name == "obj" and es["phase_only"]:
                x["obj_phase"] = self.xp.angle(self.obj).astype(self.st.real_dtype)
            else:
                x[name] = getattr(self, name)
        return x

    def _arrays(self, x):
        obj = self.obj
        if "obj_phase" in x:
            obj = self.xp.exp(1j * x["obj_phase"]).astype(self.st.complex_dtype)
        elif "obj" in x:
            obj = x["obj"]
        return obj, x.get("probe", self.probe), x.get("positions", self.positions)

    def _objective(self, es):
        st = self.st
        batch = st.compute_batch
        batches = [es["seq"][i:i + batch] for i in range(0, es["seq"].size, batch)]
        need = es["need"]

        def fun(x):
            obj, probe, pos = self._arrays(x)
            loss, g = st.model.loss_and_grad(obj, probe, pos, batches, st.get_data, need=need,
                                             weight=es["weight"], subpixel=es["subpixel"])
            grads = {}
            for k in x:
                if k == "obj_phase":
                    # O = exp(i phi): G_phi = Re(conj(G_O) i O) = -Im(conj(G_O) O)
                    grads[k] = (-(g["obj"].conj() * obj).imag).astype(x[k].dtype)
                else:
                    grads[k] = g[k]
            return loss, grads

        return fun

    # ------------------------------------------------------------ epochs
    def step(self, epoch):
        es = self._epoch_settings(epoch)
        if es["reset"]:
            self.opt.reset("reset_history_flag")
        fun = self._objective(es)
        x = self._blocks(es)
        key = (tuple(sorted(x)), es["weight"], es["seq"].tobytes(), es["subpixel"])
        if not x:  # nothing refined: evaluate the loss only
            loss, _ = fun({})
            return es, loss, 0.0, True, 1, ""
        f0 = g0 = None
        if self.cache is not None and self.cache[0] == key:
            f0, g0 = self.cache[1], self.cache[2]
        res = self.opt.step(fun, x, f0, g0, update_step=es["update_step"], hist_length=es["hist"],
                            c1=es["c1"], c2=es["c2"])
        if res.accepted:
            obj, probe, pos = self._arrays(res.x)
            self.obj, self.probe, self.positions = obj, probe, pos
        self.cache = (key, res.f, res.g)
        if es["smart_memory"]:
            self.bk.free_memory_pool()
        return es, res.f, res.step, res.accepted, res.n_evals, res.message

    # ------------------------------------------------------------ outputs
    def arrays_numpy(self):
        """Current arrays in the user layout: obj (y, x, slices, modes), probe (y, x, modes), positions (N, 2)."""
        to = self.bk.to_numpy
        return {
            "obj": np.transpose(to(self.obj), (2, 3, 0, 1)).copy(),
            "probe": np.transpose(to(self.probe), (1, 2, 0)).copy(),
            "positions": to(self.positions) + self.st.position_offset,
        }

    def save_checkpoint(self, folder):
        os.makedirs(folder, exist_ok=True)
        for name, arr in self.arrays_numpy().items():
            save_npy_atomic(os.path.join(folder, checkpoint_name(name)), arr)

    # ------------------------------------------------------------ restart (see pypty.results)
    def restart_state(self):
        """Canvas positions, L-BFGS history and cached (f, g): what an exact continuation needs."""
        to = self.bk.to_numpy
        out = {"positions_canvas": to(self.positions), "optimizer": self.opt.state_dict(to), "cache": None}
        if self.cache is not None:
            (names, weight, seq, subpixel), f, g = self.cache
            out["cache"] = {"names": list(names), "weight": weight, "sequence": np.frombuffer(seq, dtype=np.int64),
                            "subpixel": subpixel, "f": f, "g": {k: to(v) for k, v in g.items()}}
        return out

    def load_restart_state(self, state):
        """Restore :meth:`restart_state` (the arrays themselves come through the Setup)."""
        self.opt.load_state_dict(state["optimizer"], self.bk.asarray)
        c = state["cache"]
        if c is not None:
            key = (tuple(c["names"]), c["weight"], np.asarray(c["sequence"], dtype=np.int64).tobytes(), c["subpixel"])
            self.cache = (key, c["f"], {k: self.bk.asarray(v) for k, v in c["g"].items()})

    def model_patterns(self, idx):
        """Model intensities (K, Y, X), zero frequency at the centre, for pattern indices ``idx``."""
        pos = self.positions[self.xp.asarray(np.asarray(idx, dtype=np.int64))]
        return np.fft.fftshift(self.bk.to_numpy(self.st.model.intensities(self.obj, self.probe, pos)), axes=(1, 2))


def _hist(v):
    return np.inf if v is None or (isinstance(v, float) and np.isinf(v)) else v


def _every(flag, epoch_done):
    """True when a bool-or-int cadence fires after ``epoch_done`` epochs."""
    if isinstance(flag, (bool, np.bool_)):
        return bool(flag)
    return int(flag) > 0 and epoch_done % int(flag) == 0


def _restart_params(p):
    """Load ``restart_from`` / ``parent_results``; with ``restart_from`` take arrays and epoch_prev from it."""
    if p["restart_from"]:
        parent = load_results(results_path(p["restart_from"]), restart_state=True)
        if parent["restart"] is None:
            raise ValueError(f"parameter 'restart_from': '{parent['path']}' holds no restart state")
        for name, arr in parent["arrays"].items():
            if name in p and name != "positions":
                p[name] = arr
        p["positions"] = parent["arrays"]["positions"]  # user frame: the same crop is made again
        p["epoch_prev"] = int(parent["attrs"]["epochs_done"])
        p["parent_results"] = parent["path"]
        return parent, True
    if p["parent_results"]:
        return load_results(results_path(p["parent_results"]), restart_state=False), False
    return None, False


def _apply_restart(st, parent):
    """Put the saved canvas positions and offset into the Setup; check the canvas matches."""
    obj = parent["arrays"]["obj"]
    if tuple(st.model.canvas_yx) != tuple(obj.shape[:2]):
        raise ValueError(f"parameter 'restart_from': the saved object is {obj.shape[:2]} px but the scan needs a "
                         f"{tuple(st.model.canvas_yx)} px canvas")
    st.positions = st.bk.asarray(parent["restart"]["positions_canvas"])
    st.position_offset = np.asarray(parent["position_offset"], dtype=np.float64)


def run(pypty_params: Mapping) -> dict:
    """Reconstruct object, probe and scan positions from 4D-STEM data.

    Parameters
    ----------
    pypty_params : Mapping
        Flat dict of parameters; see ``docs/parameters.md`` for every key,
        its default, unit and meaning.  The dict and the arrays in it are
        never modified.

    Returns
    -------
    dict
        ``obj`` complex (y, x, slices, modes) transmission function;
        ``probe`` complex (y, x, modes), real space, centred in its window,
        ``sum |probe|^2`` = counts per pattern; ``positions`` float64 (N, 2)
        top-left corners (y, x) of the probe window in object px;
        ``loss`` list of float (one per epoch run); ``epochs`` (last epoch
        number); ``wall_time_s``; ``output_folder`` (the run folder, see
        :mod:`pypty.outputs`); ``results_file`` (path of ``results.h5`` or "");
        ``position_offset`` (2,) px (``positions - position_offset`` index the
        returned object; non-zero only with ``use_full_FOV=False``).

    Raises
    ------
    pypty.parameters.PyptyParameterError
        Invalid parameters (unknown key, wrong type/shape, unsupported value).
    pypty.data.DataError
        Unusable data (rank, NaN/inf, negative counts, size mismatch).
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
    (:mod:`pypty.savepoints`).  On an exception or Ctrl-C inside the epoch
    loop the arrays of the last completed epoch are saved to
    ``co.npy``/``cp.npy``/``cg.npy`` and ``results.h5`` (status
    "interrupted") before the error propagates; the message (printed and
    added as a note to the exception) says where, and ``restart_from`` continues
    the run bit-identically.  ``FileExistsError`` is raised when a plain
    ``output_folder`` holds another run (see :mod:`pypty.outputs`).
    """
    t0 = time.perf_counter()
    p = validate(pypty_params)
    check_plain_folder(p)
    parent, restart = _restart_params(p)
    bk = get_backend()
    pf = int(p["print_flag"])
    st = build_setup(p, bk, log=(lambda m: tqdm.write(m)) if pf >= 2 else None)
    if restart:
        _apply_restart(st, parent)
    info = dict(n_patterns=st.n_patterns, window=tuple(st.model.window_yx), probe_modes=int(st.probe.shape[0]),
                obj_modes=int(st.obj.shape[1]))
    out = resolve_output_folder(p, info)
    if out:
        record = {"pypty_version": __version__, "backend": bk.name, "params": to_jsonable(p)}
        write_json_atomic(os.path.join(out, "params.json"), record)
    r = _Run(p, st)
    if restart:
        r.load_restart_state(parent["restart"])
    sp = SavePoints(p, st, out, r.arrays_numpy(), parent, restart)
    log = LossLog(os.path.join(out, "loss.csv"), append=p["epoch_prev"] > 0) if (out and p["save_loss_log"]) else None
    first, last = int(p["epoch_prev"]), int(p["epoch_max"])
    bar = tqdm(range(first, last), disable=pf == 0, desc="pypty", unit="epoch", dynamic_ncols=True,
               leave=pf >= 2)
    epoch = first
    results_file = ""
    try:
        for epoch in bar:
            te = time.perf_counter()
            es, loss, step, accepted, n_evals, msg = r.step(epoch)
            r.loss_history.append(loss)
            sp.epoch_done(epoch, es["need"], loss, step, accepted, n_evals, time.perf_counter() - te)
            bar.set_postfix(loss=f"{loss:.6g}", step=f"{step:.3g}", evals=n_evals, refresh=False)
            if pf >= 3:
                tqdm.write(f"epoch {epoch + 1:5d}  loss {loss:.8g}  step {step:.3g}  evals {n_evals}"
                           f"  {'accepted' if accepted else 'REJECTED'}  [{'+'.join(es['need'])}]")
            if pf >= 4:
                g = r.cache[2] if r.cache else {}
                tqdm.write("    |g| per block: " + ", ".join(f"{k} {norm({k: v}):.3e}" for k, v in g.items())
                           + f"; history {r.opt.history_size}; {msg}")
            if log is not None:
                log.write(epoch + 1, time.perf_counter() - t0, loss, step, accepted, n_evals, es["need"])
            done = epoch + 1 - first
            if out and p["save_inter_checkpoints"] and _every(p["save_inter_checkpoints"], done):
                r.save_checkpoint(out)
            if out and p["save_checkpoints_every_epoch"] and _every(p["save_checkpoints_every_epoch"], done):
                r.save_checkpoint(os.path.join(out, "checkpoints", f"epoch_{epoch + 1:04d}"))
            results_due, figures_due = sp.due(epoch)
            if results_due or figures_due:
                results_file = sp.save(r, epoch + 1, "save point", figures=figures_due)
        done = first + len(r.loss_history)
        if out and p["save_inter_checkpoints"]:
            r.save_checkpoint(out)
        results_file = sp.save(r, done, "final", figures=bool(p["save_figures"] or p["save_tiff"]))
    except BaseException as exc:
        if out:
            done = first + len(r.loss_history)
            where = os.path.abspath(out)
            try:
                r.save_checkpoint(out)
                where = f"{where} (checkpoints co/cp/cg.npy and {sp.save(r, done, 'interrupted')})"
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
        st.close()
    result = r.arrays_numpy()
    result.update(loss=list(r.loss_history), epochs=last if last > first else first,
                  wall_time_s=time.perf_counter() - t0, output_folder=out, results_file=results_file,
                  position_offset=np.asarray(st.position_offset, dtype=np.float64))
    return result
