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
from .io import LossLog, checkpoint_name, remove_stale_temporaries, save_npy_atomic, write_json_atomic
from .optimizer import LBFGS, norm
from .outputs import check_plain_folder, resolve_output_folder
from .parameters import to_jsonable, validate
from .prepare import Setup, build_setup, ensure_margin
from .results import load_results, results_path
from .savepoints import SavePoints

__all__ = ["run"]

#: pypty_params switch of each refinable array.
_SWITCHES = (("obj", "update_obj"), ("probe", "update_probe"), ("positions", "update_probe_pos"),
             ("tilts", "update_tilts"), ("beam_current", "update_beam_current"),
             ("static_background", "update_static_background"), ("aberrations_array", "update_aberrations_array"))


class _Run:
    """State of one reconstruction: arrays on the device, optimizer, outputs.

    The optimizer sees *blocks*: the arrays themselves, or a
    reparametrisation of them (``obj_phase`` for a phase-only object,
    ``probe_phase`` / ``probe_abs`` for the reciprocal-space phase or
    amplitude of the probe, ``background_sqrt`` b with background = b^2 >= 0).
    """

    def __init__(self, p: dict, st: Setup):
        self.p, self.st, self.bk = p, st, st.bk
        self.xp = self.bk.xp
        self.arrays = dict(st.arrays)
        self.opt = LBFGS(hist_length=_hist(resolve("hist_length", p["hist_length"], p["epoch_prev"])),
                         c1=0.1, c2=0.9, reduce_factor=p["reduce_factor"], optimism=p["optimism"],
                         max_count=p["max_count"], min_step=p["min_step"])
        self.loss_history: list[float] = []
        self.cache = None  # (key, f, g) at the current point
        self.x_last: dict = {}  # block values after the last accepted step (keeps reparametrised blocks exact)
        self.probe_ref = None  # (key, fft2(probe)) fixing the amplitude/phase for tune_only_probe_*
        self.resize_log: list = []

    # ------------------------------------------------------------ objective
    def _epoch_settings(self, epoch):
        p = self.p
        r = lambda k: resolve(k, p[k], epoch)  # noqa: E731
        need = [name for name, switch in _SWITCHES if r(switch) and name in self.arrays]
        for name, switch in _SWITCHES:
            if r(switch) and name not in self.arrays:  # only static_background can get here
                raise ValueError(f"parameter '{switch}' is on at epoch {epoch} but '{name}' is not in the model")
        seq = r("sequence")
        seq = np.arange(self.st.n_patterns) if seq is None else np.asarray(seq, dtype=np.int64)
        if seq.size == 0 or seq.min() < 0 or seq.max() >= self.st.n_patterns:
            raise ValueError(f"parameter 'sequence' at epoch {epoch} must hold pattern indices in "
                             f"[0, {self.st.n_patterns - 1}], got {seq.size} values "
                             f"(min {seq.min() if seq.size else '-'}, max {seq.max() if seq.size else '-'})")
        only_phase, only_abs = bool(r("tune_only_probe_phase")), bool(r("tune_only_probe_abs"))
        return dict(
            need=need, seq=seq, phase_only=bool(r("phase_only_obj")), weight=float(r("loss_weight")),
            probe_part="phase" if only_phase and not only_abs else "abs" if only_abs and not only_phase else "",
            hist=_hist(r("hist_length")), c1=float(r("wolfe_c1_constant")), c2=float(r("wolfe_c2_constant")),
            update_step=float(r("update_step_bfgs")), reset=bool(r("reset_history_flag")),
            subpixel=bool(p["allow_subPixel_shift"]) or "positions" in need,
            smart_memory=bool(r("smart_memory")), resize=r("dynamically_resize_yx_object"),
        )

    def _block_name(self, name, es):
        if name == "obj" and es["phase_only"]:
            return "obj_phase"
        if name == "probe" and es["probe_part"]:
            return "probe_" + es["probe_part"]
        if name == "static_background":
            return "background_sqrt"
        return name

    def _blocks(self, es):
        xp, x = self.xp, {}
        part = es["probe_part"] if "probe" in es["need"] else ""
        if part and (self.probe_ref is None or self.probe_ref[0] != part):
            # the fixed half (amplitude or phase) is taken from the probe as it is now
            self.probe_ref = (part, self.bk.fft2(self.arrays["probe"]))
            self.x_last.pop("probe_" + part, None)
        for name in es["need"]:
            block = self._block_name(name, es)
            if block in self.x_last:
                x[block] = self.x_last[block]
            elif block == "obj_phase":
                x[block] = xp.angle(self.arrays["obj"]).astype(self.st.real_dtype)
            elif block == "probe_phase":
                x[block] = xp.angle(self.bk.fft2(self.arrays["probe"])).astype(self.st.real_dtype)
            elif block == "probe_abs":
                x[block] = xp.abs(self.bk.fft2(self.arrays["probe"])).astype(self.st.real_dtype)
            elif block == "background_sqrt":
                x[block] = xp.sqrt(self.arrays["static_background"])
            else:
                x[block] = self.arrays[name]
        return x

    def _accept(self, x):
        """Adopt the block values of an accepted step; forget reparametrisations made stale by it."""
        self.arrays = self._arrays(x)
        for block, val in x.items():
            if block in _REPARAMETRISED:
                self.x_last[block] = val
        stale = {"obj": ("obj_phase",), "probe": ("probe_phase", "probe_abs"),
                 "probe_phase": ("probe_abs",), "probe_abs": ("probe_phase",)}
        for block in x:
            for other in stale.get(block, ()):
                self.x_last.pop(other, None)
        if "probe" in x:  # the fixed half of a later tune_only_probe_* is taken afresh (see _blocks)
            self.probe_ref = None

    def _arrays(self, x):
        """Model arrays for block values ``x`` (unrefined arrays from the current state)."""
        xp, a = self.xp, dict(self.arrays)
        for block, val in x.items():
            if block == "obj_phase":
                a["obj"] = xp.exp(1j * val).astype(self.st.complex_dtype)
            elif block == "probe_phase":
                a["probe"] = self.bk.ifft2(xp.abs(self.probe_ref[1]) * xp.exp(1j * val)).astype(self.st.complex_dtype)
            elif block == "probe_abs":
                ph = xp.exp(1j * xp.angle(self.probe_ref[1]))
                a["probe"] = self.bk.ifft2(val * ph).astype(self.st.complex_dtype)
            elif block == "background_sqrt":
                a["static_background"] = val * val
            else:
                a[block] = val
        return a

    def _objective(self, es):
        st, xp = self.st, self.xp
        batch = st.compute_batch
        batches = [es["seq"][i:i + batch] for i in range(0, es["seq"].size, batch)]
        need = es["need"]

        def fun(x):
            a = self._arrays(x)
            loss, g = st.model.loss_and_grad(a, batches, st.get_data, need=need, weight=es["weight"],
                                             subpixel=es["subpixel"])
            grads = {}
            for name in need:
                block = self._block_name(name, es)
                gn = g[name]
                if block == "obj_phase":
                    # O = exp(i phi): dL/dphi = Re(conj(G) i O) = -Im(conj(G) O)
                    gn = -(gn.conj() * a["obj"]).imag
                elif block in ("probe_phase", "probe_abs"):
                    g_hat = self.bk.fft2(gn)
                    ref = self.probe_ref[1]
                    if block == "probe_phase":  # P = |P0| exp(i phi): dL/dphi = -Im(conj(G) P)
                        gn = -(g_hat.conj() * (xp.abs(ref) * xp.exp(1j * x[block]))).imag
                    else:  # P = a exp(i phi0): dL/da = Re(conj(G) exp(i phi0))
                        gn = (g_hat.conj() * xp.exp(1j * xp.angle(ref))).real
                elif block == "background_sqrt":
                    gn = 2.0 * x[block] * gn
                grads[block] = gn.astype(x[block].dtype, copy=False)
            return loss, grads

        return fun

    # ------------------------------------------------------------ canvas
    def _maybe_resize(self, es, epoch):
        """Pad the object when refined positions leave the canvas (``dynamically_resize_yx_object``)."""
        flag = es["resize"]
        if flag is False or flag is None or (not isinstance(flag, bool) and int(flag) <= 0):
            return
        tol = 0 if isinstance(flag, (bool, np.bool_)) else int(flag)
        pos = self.bk.to_numpy(self.arrays["positions"])
        win, canvas = self.st.model.window_yx, self.st.model.canvas_yx
        lo = pos.min(axis=0)
        hi = np.floor(pos.max(axis=0) + 0.5) + np.asarray(win)
        if not (np.any(lo < -tol - 0.5) or np.any(hi > np.asarray(canvas) + tol)):
            return
        margin = max(2, tol)
        obj, positions, shift = ensure_margin(self.xp, self.arrays["obj"], self.arrays["positions"], win, margin)
        new_canvas = tuple(int(v) for v in obj.shape[-2:])
        sy, sx = int(shift[0]), int(shift[1])
        old = tuple(canvas)

        def pad(v, fill=0):
            out = self.xp.full(v.shape[:-2] + new_canvas, fill, dtype=v.dtype)
            out[..., sy:sy + old[0], sx:sx + old[1]] = v
            return out

        self.arrays["obj"], self.arrays["positions"] = obj, positions
        for block in ("obj", "obj_phase"):
            self.opt.map_history(block, pad)
            if block in self.x_last:
                self.x_last[block] = pad(self.x_last[block], 1 if block == "obj" else 0)
        self.x_last.pop("positions", None)
        self.cache = None  # windows that were clipped now see new pixels: the loss changes
        self.st.model.canvas_yx = new_canvas
        self.st.position_offset = self.st.position_offset - shift
        msg = (f"epoch {epoch + 1}: positions left the object canvas; padded {old[0]} x {old[1]} -> "
               f"{new_canvas[0]} x {new_canvas[1]} px (shift {sy}, {sx} px), optimizer history kept")
        self.resize_log.append(msg)
        if int(self.p["print_flag"]) >= 2:
            tqdm.write(msg)

    # ------------------------------------------------------------ epochs
    def step(self, epoch):
        es = self._epoch_settings(epoch)
        self._maybe_resize(es, epoch)
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
            self._accept(res.x)
        self.cache = (key, res.f, res.g)
        if es["smart_memory"]:
            self.bk.free_memory_pool()
        return es, res.f, res.step, res.accepted, res.n_evals, res.message

    # ------------------------------------------------------------ outputs
    def arrays_numpy(self):
        """Current arrays in the user layout.

        obj (y, x, slices, modes); probe (y, x, modes) or (y, x, modes,
        subscans); positions (N, 2) in px of the returned object; and, when
        in the model, tilts (N or 1, 6) mrad, beam_current (N,),
        static_background (Yd, Xd) centred, aberrations_array (A, J) Å.
        """
        to, a = self.bk.to_numpy, self.arrays
        probe = np.transpose(to(a["probe"]), (2, 3, 1, 0))
        out = {
            "obj": np.transpose(to(a["obj"]), (2, 3, 0, 1)).copy(),
            "probe": probe.copy() if self.st.probe_4d else probe[..., 0].copy(),
            "positions": to(a["positions"]).copy(),
        }
        for name in ("tilts", "beam_current", "aberrations_array"):
            if name in a:
                out[name] = to(a[name]).copy()
        if "static_background" in a:
            out["static_background"] = np.fft.fftshift(to(a["static_background"]))
        return out

    def save_checkpoint(self, folder):
        os.makedirs(folder, exist_ok=True)
        for name, arr in self.arrays_numpy().items():
            save_npy_atomic(os.path.join(folder, checkpoint_name(name)), arr)

    # ------------------------------------------------------------ restart (see pypty.results)
    def restart_state(self):
        """Canvas positions, L-BFGS history, cached (f, g) and reparametrised blocks: an exact continuation."""
        to = self.bk.to_numpy
        out = {"positions_canvas": to(self.arrays["positions"]), "optimizer": self.opt.state_dict(to),
               "cache": None, "blocks": {k: to(v) for k, v in self.x_last.items()},
               "probe_part": self.probe_ref[0] if self.probe_ref is not None else ""}
        if self.probe_ref is not None:
            out["blocks"]["_probe_ref"] = to(self.probe_ref[1])
        if self.cache is not None:
            (names, weight, seq, subpixel), f, g = self.cache
            out["cache"] = {"names": list(names), "weight": weight, "sequence": np.frombuffer(seq, dtype=np.int64),
                            "subpixel": subpixel, "f": f, "g": {k: to(v) for k, v in g.items()}}
        return out

    def load_restart_state(self, state):
        """Restore :meth:`restart_state` (the arrays themselves come through the Setup)."""
        self.opt.load_state_dict(state["optimizer"], self.bk.asarray)
        blocks = {k: self.bk.asarray(v) for k, v in (state.get("blocks") or {}).items()}
        ref = blocks.pop("_probe_ref", None)
        self.x_last = blocks
        if ref is not None and state.get("probe_part"):
            self.probe_ref = (state["probe_part"], ref)
        c = state["cache"]
        if c is not None:
            key = (tuple(c["names"]), c["weight"], np.asarray(c["sequence"], dtype=np.int64).tobytes(), c["subpixel"])
            self.cache = (key, c["f"], {k: self.bk.asarray(v) for k, v in c["g"].items()})

    def model_patterns(self, idx):
        """Model patterns (K, Yd, Xd), zero frequency at the centre, for pattern indices ``idx``."""
        pred = self.bk.to_numpy(self.st.model.predict(self.arrays, np.asarray(idx, dtype=np.int64)))
        return np.fft.fftshift(pred, axes=(1, 2)) if pred.ndim == 3 else pred


_REPARAMETRISED = ("obj_phase", "probe_phase", "probe_abs", "background_sqrt")


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
        p["positions"] = parent["arrays"]["positions"]  # frame of the saved object: no further shift
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
    st.arrays["positions"] = st.bk.asarray(parent["restart"]["positions_canvas"])
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
        ``probe`` complex (y, x, modes) (or (y, x, modes, subscans) with
        ``probe_marker``), real space, centred in its window,
        ``sum |probe|^2`` = counts per pattern; ``positions`` float64 (N, 2)
        top-left corners (y, x) of the probe window in object px;
        ``loss`` list of float (one per epoch run); ``epochs`` (last epoch
        number); ``wall_time_s``; ``output_folder`` (the run folder, see
        :mod:`pypty.outputs`); ``results_file`` (path of ``results.h5`` or "");
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
    st = build_setup(p, bk, log=(lambda m: tqdm.write(m)) if pf >= 2 else None, keep_canvas=restart)
    if restart:
        _apply_restart(st, parent)
    info = dict(n_patterns=st.n_patterns, window=tuple(st.model.window_yx),
                probe_modes=int(st.arrays["probe"].shape[1]), obj_modes=int(st.arrays["obj"].shape[1]))
    out = resolve_output_folder(p, info)
    if out:
        stale = remove_stale_temporaries(out)  # left by a run killed mid-write (never the latest files)
        if stale and pf >= 2:
            tqdm.write(f"removed {len(stale)} temporary file(s) of an interrupted write from {out}")
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
                  position_offset=np.asarray(st.position_offset, dtype=np.float64).copy())
    return result
