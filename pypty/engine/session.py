"""The reconstruction object: the mutable state of one run and the one way to change it.

:class:`Reconstruction` owns the arrays being refined (internal layout, on
the device), the object canvas and ``position_offset``, the L-BFGS optimizer,
the loss and gradient cached at the current point, the kept values of
reparametrised blocks and the reference spectrum of ``tune_only_probe_*``.
Everything else (model, data access, dtypes) is the immutable
:class:`pypty.model.setup.Setup`.

* :meth:`Reconstruction.step` runs one epoch (:class:`StepReport`).
* :meth:`Reconstruction.replace_arrays` is the only way to edit the iterate
  between steps (canvas growth, hand constraints): it clears the cached loss
  and gradient and the kept blocks made stale, and resets, maps or keeps the
  L-BFGS history.
* :meth:`Reconstruction.snapshot` is what save points receive
  (:class:`Snapshot`); they never reach into the reconstruction's state.
* :meth:`Reconstruction.restart_state` / :meth:`load_restart_state`: the exact
  continuation state stored in results.h5.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..constraints import HISTORY_RULES, Context
from ..device_hints import device_memory_use, should_free_pool
from ..model.canvas import ensure_margin, pad_canvas, windows_outside
from ..model.refinables import arrays_to_user
from ..model.reparam import REPARAMS
from ..optim import LBFGS, norm
from ..parameters.schedule import resolve
from .errors import NonFiniteLossError
from .objective import Objective
from .settings import EpochSettings, hist_length

__all__ = ["Reconstruction", "StepReport", "Snapshot"]


def _cache_key(blocks, weight, sequence_bytes, subpixel, terms) -> tuple:
    """Key of the cached loss and gradient: block names, then :attr:`Objective.key` (also rebuilt on restart)."""
    return (tuple(sorted(blocks)), float(weight), bytes(sequence_bytes), bool(subpixel), str(terms))


@dataclass(frozen=True)
class StepReport:
    """Outcome of one epoch.

    ``settings`` (:class:`pypty.engine.settings.EpochSettings`); ``loss`` at
    the current point after the step; ``parts`` {``loss_data``,
    ``reg_<name>``: float} summing to ``loss``; ``step`` accepted step length
    (0 if rejected); ``accepted``; ``n_evals`` loss+gradient evaluations;
    ``message`` (resets, rejections, edits of the arrays); ``grad`` {block:
    gradient} at the current point; ``history_size`` stored L-BFGS pairs.
    """

    settings: EpochSettings
    loss: float
    parts: dict
    step: float
    accepted: bool
    n_evals: int
    message: str
    grad: dict
    history_size: int


@dataclass(frozen=True)
class Snapshot:
    """The state a save point needs, as NumPy arrays (see :mod:`pypty.output.savepoints`).

    ``arrays`` user layout (:func:`pypty.model.refinables.arrays_to_user`);
    ``positions_canvas`` (N, 2) px in the current canvas; ``canvas_yx``;
    ``position_offset`` (2,) px; ``restart`` (:meth:`Reconstruction.restart_state`);
    ``model_patterns`` callable(idx) -> model patterns (K, Yd, Xd), centred.
    """

    arrays: dict
    positions_canvas: np.ndarray
    canvas_yx: tuple
    position_offset: np.ndarray
    restart: dict
    model_patterns: Callable


class Reconstruction:
    """State of one reconstruction (see the module docstring).

    Parameters
    ----------
    p : dict
        Validated parameters.
    setup : pypty.model.setup.Setup
    terms : sequence of :class:`pypty.regularizers.LossTerm`
    constraints : sequence of :class:`pypty.constraints.Constraint`
    log : callable(str) or None
        Receives messages about edits of the arrays (canvas growth, constraints).
    """

    def __init__(self, p: dict, setup, terms=(), constraints=(), log=None):
        self.p, self.setup, self.bk = p, setup, setup.bk
        self.xp = self.bk.xp
        self.terms, self.constraints = list(terms), list(constraints)
        self.log = log or (lambda msg: None)
        self.arrays = dict(setup.arrays)
        self.position_offset = np.array(setup.position_offset, dtype=np.float64)
        # positions as given (given frame), for reset_positions; kept through restarts
        self.given_positions = self.bk.to_numpy(self.arrays["positions"]).astype(np.float64) + self.position_offset
        self.opt = LBFGS(hist_length=hist_length(resolve("hist_length", p["hist_length"], p["epoch_prev"])),
                         c1=0.1, c2=0.9, reduce_factor=p["reduce_factor"], optimism=p["optimism"],
                         max_count=p["max_count"], min_step=p["min_step"])
        self.loss_history: list = []
        self.cache = None  # (key, f, g, parts) at the current point
        self.kept: dict = {}  # reparametrised block values of the last accepted step (exact continuation)
        self.reference = None  # (probe part, reference): fft2(probe) for tune_only_probe_*, I0 (U,) for probe_normed
        self.resize_log: list = []
        self._edits: list = []  # messages of edits since the last step report

    # ------------------------------------------------------------ geometry
    @property
    def canvas_yx(self) -> tuple:
        """Current object canvas (Ny, Nx) in px."""
        return tuple(int(v) for v in self.arrays["obj"].shape[-2:])

    # ------------------------------------------------------------ epoch pieces
    def settings(self, epoch: int) -> EpochSettings:
        """:class:`EpochSettings` of ``epoch``."""
        return EpochSettings.resolve(self.p, epoch, self.arrays, self.setup.n_patterns)

    def blocks(self, settings: EpochSettings) -> dict:
        """Optimizer blocks of an epoch at the current point (kept reparametrised values where valid)."""
        part = settings.probe_part if "probe" in settings.refine else ""
        if part and (self.reference is None or self.reference[0] != part):
            # the fixed half (amplitude or phase), or the intensity, is taken from the probe as it is now
            self.reference = (part, REPARAMS["probe_" + part].reference(self.bk, self.arrays))
            self.kept.pop("probe_" + part, None)
        x = {}
        for name in settings.refine:
            rp = settings.reparam(name)
            block = rp.block if rp is not None else name
            if block in self.kept:
                x[block] = self.kept[block]
            elif rp is not None:
                x[block] = rp.initial(self.bk, self.arrays, self.setup.real_dtype)
            else:
                x[block] = self.arrays[name]
        return x

    def objective(self, settings: EpochSettings) -> Objective:
        """The :class:`pypty.engine.objective.Objective` of an epoch at the current arrays."""
        ref = self.reference[1] if self.reference is not None else None
        projections = [c for c in self.constraints if hasattr(c, "project")]
        return Objective(self.setup, settings, self.arrays, ref, self.terms, projections)

    def _accept(self, x: dict, fun: Objective) -> None:
        """Adopt the block values of an accepted step; forget kept blocks made stale by it."""
        self.arrays = fun.arrays(x)
        for block, val in x.items():
            if block in REPARAMS:
                self.kept[block] = val
        for block in list(self.kept):
            if any(b in x for b in REPARAMS[block].stale_on):
                del self.kept[block]
        if "probe" in x:  # the fixed half of a later tune_only_probe_* (or I0) is taken afresh (see blocks)
            self.reference = None

    # ------------------------------------------------------------ editing the iterate
    def replace_arrays(self, new: dict, reason: str, history: str = "reset", maps: dict | None = None,
                       cache: str = "clear") -> None:
        """Replace arrays between steps; the only way to edit the iterate outside the optimizer.

        Parameters
        ----------
        new : dict name -> device array (internal layout)
            The arrays that change (others are kept).
        reason : str
            Recorded in the step report's message (and as the optimizer's
            reset reason).
        history : {"reset", "map", "keep"}
            What happens to the stored L-BFGS pairs: forgotten; mapped by
            ``maps`` (block -> function applied to every s and y, e.g. zero
            padding when the canvas grows, or a unitary change of basis); kept
            as they are.
        maps : dict block -> callable, for ``history="map"``
            With "map", a kept reparametrised block of a changed array is
            mapped too (its map must then suit values as well as differences,
            as zero padding of a phase does); without a map it is dropped.
        cache : {"clear", "map"}
            The cached loss and gradient are cleared, or (for loss-invariant
            maps) kept with the gradient blocks mapped.

        Raises
        ------
        ValueError
            Unknown array name, history rule or cache rule, or "map" without maps.
        """
        if history not in HISTORY_RULES.values() or cache not in ("clear", "map"):
            raise ValueError(f"replace_arrays: history must be one of {sorted(set(HISTORY_RULES.values()))} and "
                             f"cache 'clear' or 'map', got {history!r}, {cache!r}")
        maps = dict(maps or {})
        if (history == "map" or cache == "map") and not maps:
            raise ValueError("replace_arrays: history='map' or cache='map' needs maps")
        unknown = sorted(set(new) - set(self.arrays))
        if unknown:
            raise ValueError(f"replace_arrays: {unknown} are not arrays of this reconstruction")
        self.arrays = {**self.arrays, **new}
        if history == "reset":
            self.opt.reset(reason)
        elif history == "map":
            for block, fn in maps.items():
                self.opt.map_history(block, fn)
        for block in list(self.kept):
            if REPARAMS[block].array in new:
                if history == "map" and block in maps:
                    self.kept[block] = maps[block](self.kept[block])
                else:
                    del self.kept[block]
        if "probe" in new:
            self.reference = None
        if cache == "map" and self.cache is not None:
            key, f, g, parts = self.cache
            self.cache = (key, f, {k: (maps[k](v) if k in maps else v) for k, v in g.items()}, parts)
        else:
            self.cache = None
        self._edits.append(reason)

    def _maybe_resize(self, settings: EpochSettings) -> None:
        """Pad the object when refined positions leave the canvas (``dynamically_resize_yx_object``)."""
        flag = settings.resize
        if flag is False or flag is None or (not isinstance(flag, bool) and int(flag) <= 0):
            return
        tol = 0 if isinstance(flag, (bool, np.bool_)) else int(flag)
        win, old = self.setup.model.window_yx, self.canvas_yx
        if not windows_outside(self.bk.to_numpy(self.arrays["positions"]), win, old, tol):
            return
        obj, positions, shift = ensure_margin(self.xp, self.arrays["obj"], self.arrays["positions"], win,
                                              max(2, tol))
        new = tuple(int(v) for v in obj.shape[-2:])

        def pad(v):  # zero padding: differences of obj and obj_phase, and the phase of vacuum
            return pad_canvas(self.xp, v, new, shift)

        msg = (f"epoch {settings.epoch + 1}: positions left the object canvas; padded {old[0]} x {old[1]} -> "
               f"{new[0]} x {new[1]} px (shift {int(shift[0])}, {int(shift[1])} px), optimizer history kept")
        self.replace_arrays({"obj": obj, "positions": positions}, msg, history="map",
                            maps={"obj": pad, "obj_phase": pad})
        self.position_offset = self.position_offset - shift
        self.resize_log.append(msg)
        self.log(msg)

    def _apply_constraints(self, settings: EpochSettings) -> None:
        """Hand constraints active at the start of the epoch, in order, each through :meth:`replace_arrays`."""
        epoch = settings.epoch
        for c in self.constraints:
            if not c.active(epoch):
                continue
            ctx = Context(settings=settings, setup=self.setup, position_offset=self.position_offset.copy(),
                          given_positions=self.given_positions)
            new, change = c.apply(dict(self.arrays), epoch, ctx)
            if change.kind == "none":
                continue
            changed = {k: v for k, v in new.items() if v is not self.arrays.get(k)}
            rule = HISTORY_RULES[change.kind]  # a "map" change is loss-invariant: the cached gradient is mapped too
            self.replace_arrays(changed, f"{c.name}: {change.reason}" if change.reason else c.name,
                                history=rule, maps=change.maps or None, cache="map" if rule == "map" else "clear")

    # ------------------------------------------------------------ epochs
    def step(self, epoch: int) -> StepReport:
        """Run epoch ``epoch``: canvas growth, hand constraints, one L-BFGS step with its line search.

        Raises
        ------
        pypty.engine.errors.NonFiniteLossError
            The loss, one of its parts or the gradient at the point the epoch
            ends on is NaN or infinite.  Raised before the step is accepted:
            edits made at the start of the epoch (canvas growth, hand
            constraints) are undone, so the reconstruction keeps the state of
            the last completed epoch (the L-BFGS history is reset when edits
            were undone) and an interrupted save writes that state.
        pypty.parameters.PyptyParameterError
            An epoch-dependent parameter returned a value its row does not
            accept at this epoch (see :meth:`settings`).
        """
        s = self.settings(epoch)
        before = (self.arrays, self.position_offset.copy(), dict(self.kept), self.reference, self.cache,
                  len(self.resize_log), len(self._edits))
        self._maybe_resize(s)
        self._apply_constraints(s)
        for term in self.terms:  # terms whose definition is fixed per epoch (e.g. the probe modes a mask acts on)
            if hasattr(term, "begin_epoch") and term.active(epoch):
                term.begin_epoch(self.arrays, epoch)
        if s.reset_history:
            self.opt.reset("reset_history_flag")
        switched = self._loss_switch(s)
        if switched:
            self.opt.reset(switched)
            self._edits.append(switched)
            self.log(switched)
        edits, self._edits = self._edits, []
        x = self.blocks(s)
        fun = self.objective(s)
        if not x:  # nothing refined: evaluate the loss only
            loss, g = fun({})
            self._check_finite(epoch, loss, g, fun.parts_at(g), edits[before[-1]:], before)
            return StepReport(s, loss, fun.parts_at(g), 0.0, True, 1, "; ".join(edits), g, self.opt.history_size)
        key = _cache_key(x, *fun.key)
        f0 = g0 = parts0 = None
        if self.cache is not None and self.cache[0] == key:
            _, f0, g0, parts0 = self.cache
        res = self.opt.step(fun, x, f0, g0, update_step=s.update_step, hist_length=s.hist_length,
                            c1=s.wolfe_c1, c2=s.wolfe_c2)
        parts = fun.parts_at(res.g) or parts0 or {"loss_data": res.f}
        self._check_finite(epoch, res.f, res.g, parts, edits[before[-1]:], before)  # before accepting anything
        if res.accepted:
            self._accept(res.x, fun)
        self.cache = (key, res.f, res.g, parts)
        if s.smart_memory and self.bk.is_gpu:  # free cached device blocks only under memory pressure
            use = device_memory_use(self.bk)
            if use is not None and should_free_pool(*use):
                self.bk.free_memory_pool()
        if s.remove_fft_cache:
            self.bk.clear_fft_plans()
        msg = "; ".join(edits + ([res.message] if res.message else []))
        return StepReport(s, res.f, parts, res.step, res.accepted, res.n_evals, msg, res.g, res.history_size)

    def _loss_switch(self, settings: EpochSettings) -> str:
        """Message when the data loss of ``settings`` differs from that of the epoch before, else "".

        The loss of the previous epoch is resolved from the schedule (not
        remembered), so that a restart between any two epochs resets the
        L-BFGS history at the same epoch as an uninterrupted run.  The pairs
        stored under the old loss describe the curvature of another function:
        they are forgotten.  (The cached loss and gradient are re-evaluated
        anyway: the loss name is part of their key.)
        """
        if not callable(self.p["algorithm"]) or settings.epoch <= 0:
            return ""
        before = str(resolve("algorithm", self.p["algorithm"], settings.epoch - 1))
        if before == settings.loss_name:
            return ""
        return (f"epoch {settings.epoch + 1}: the loss changes from {before} to {settings.loss_name}; L-BFGS history "
                f"reset")

    def _check_finite(self, epoch: int, f, g: dict, parts, edits: list, before: tuple) -> None:
        """Raise :class:`NonFiniteLossError` when ``f``, a part or a gradient block is not finite.

        Before raising, the state saved in ``before`` (arrays, offset, kept
        blocks, reference, cache at the start of the step) is put back when
        the epoch's edits changed the arrays, and the L-BFGS history is reset.
        """
        f = float(f)
        if math.isfinite(f) and math.isfinite(norm(g)):
            return
        xp = self.xp
        blocks = tuple(k for k, v in g.items() if not bool(xp.all(xp.isfinite(v))))
        if math.isfinite(f) and not blocks:  # a finite gradient whose norm overflowed
            return
        bad = {k: float(v) for k, v in (parts or {}).items() if not math.isfinite(float(v))}
        if not math.isfinite(f) and not bad:
            bad = {"loss": f}
        arrays, offset, kept, reference, cache, n_resize, _ = before
        undone = self.arrays is not arrays
        if undone:
            self.arrays, self.position_offset, self.kept, self.reference, self.cache = \
                arrays, offset, kept, reference, cache
            del self.resize_log[n_resize:]
            self.opt.reset(f"non-finite loss in epoch {epoch + 1}: its edits were undone")
        what = []
        if bad:
            what.append("the loss is not finite (" + ", ".join(f"{k} = {v}" for k, v in bad.items()) + ")")
        if blocks:
            what.append("the gradient of block(s) " + ", ".join(blocks) + " holds NaN or inf")
        msg = f"pypty: during epoch {epoch + 1} (epoch index {epoch}) " + " and ".join(what)
        if edits:
            msg += (f"; the arrays were edited at the start of this epoch ({'; '.join(edits)})"
                    + (", and these edits were undone" if undone else ""))
        msg += ("; the step was not accepted and the state of the last completed epoch is kept. Check the loss "
                "weights and loss terms of this epoch, the hand constraints, and the data for NaN or inf values")
        raise NonFiniteLossError(msg, epoch, bad, blocks)

    # ------------------------------------------------------------ outputs
    def arrays_numpy(self) -> dict:
        """Current arrays in the user layout (NumPy copies; see :mod:`pypty.model.refinables`).

        obj (y, x, slices, modes); probe (y, x, modes) or (y, x, modes,
        subscans); positions (N, 2) in px of the returned object; and, when
        in the model, tilts (N or 1, 6) mrad, beam_current (N,),
        static_background (Yd, Xd) centred, aberrations_array (A, J) Å.
        """
        return arrays_to_user(self.arrays, self.bk.to_numpy, self.setup.probe_4d)

    def model_patterns(self, idx) -> np.ndarray:
        """Model patterns (K, Yd, Xd), zero frequency at the centre, for pattern indices ``idx``."""
        pred = self.bk.to_numpy(self.setup.model.predict(self.arrays, np.asarray(idx, dtype=np.int64)))
        return np.fft.fftshift(pred, axes=(1, 2)) if pred.ndim == 3 else pred

    def snapshot(self) -> Snapshot:
        """The current state for a save point (NumPy copies and the exact restart state)."""
        return Snapshot(arrays=self.arrays_numpy(), positions_canvas=self.bk.to_numpy(self.arrays["positions"]),
                        canvas_yx=self.canvas_yx, position_offset=self.position_offset.copy(),
                        restart=self.restart_state(), model_patterns=self.model_patterns)

    # ------------------------------------------------------------ restart (see pypty.output.results)
    def restart_state(self) -> dict:
        """Canvas positions, L-BFGS history, cached (f, g), kept blocks and reference: an exact continuation."""
        to = self.bk.to_numpy
        out = {"positions_canvas": to(self.arrays["positions"]), "optimizer": self.opt.state_dict(to),
               "cache": None, "blocks": {k: to(v) for k, v in self.kept.items()},
               "probe_part": self.reference[0] if self.reference is not None else "",
               "given_positions": self.given_positions.copy()}
        if self.reference is not None:
            out["blocks"]["_probe_ref"] = to(self.reference[1])
        if self.cache is not None:
            (names, weight, seq, subpixel, terms), f, g, parts = self.cache
            out["cache"] = {"names": list(names), "weight": weight, "sequence": np.frombuffer(seq, dtype=np.int64),
                            "subpixel": subpixel, "terms": terms, "f": f, "parts": dict(parts),
                            "g": {k: to(v) for k, v in g.items()}}
        return out

    def load_restart_state(self, state: dict, position_offset) -> None:
        """Continue from :meth:`restart_state` (the other arrays come through the Setup).

        ``position_offset``: the saved (2,) px offset of the saved canvas.
        """
        self.arrays["positions"] = self.bk.asarray(state["positions_canvas"])
        self.position_offset = np.asarray(position_offset, dtype=np.float64)
        if state.get("given_positions") is not None:
            self.given_positions = np.asarray(state["given_positions"], dtype=np.float64)
        self.opt.load_state_dict(state["optimizer"], self.bk.asarray)
        blocks = {k: self.bk.asarray(v) for k, v in (state.get("blocks") or {}).items()}
        ref = blocks.pop("_probe_ref", None)
        self.kept = blocks
        if ref is not None and state.get("probe_part"):
            self.reference = (state["probe_part"], ref)
        c = state["cache"]
        if c is not None:
            key = _cache_key(c["names"], c["weight"], np.asarray(c["sequence"], dtype=np.int64).tobytes(), c["subpixel"],
                             c.get("terms", "()"))
            parts = c.get("parts") or {"loss_data": c["f"]}
            self.cache = (key, c["f"], {k: self.bk.asarray(v) for k, v in c["g"].items()}, parts)
