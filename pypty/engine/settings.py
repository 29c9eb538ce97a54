"""Per-epoch settings: the epoch-dependent parameters of one epoch, resolved and typed."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..distributed.shard import filter_sequence
from ..model.refinables import REFINABLES
from ..model.reparam import block_reparam
from ..parameters.consistency import check_wolfe
from ..parameters.errors import PyptyParameterError
from ..parameters.schedule import resolve

__all__ = ["EpochSettings", "hist_length"]


def hist_length(value):
    """``hist_length`` for :class:`pypty.optim.LBFGS`: None/inf -> ``math.inf``, else the value."""
    return math.inf if value is None or (isinstance(value, float) and math.isinf(value)) else value


@dataclass(frozen=True)
class EpochSettings:
    """What one epoch does (all epoch-dependent parameters resolved at ``epoch``).

    Attributes
    ----------
    epoch : int
        0-based epoch number.
    refine : tuple of str
        Refinable arrays refined in this epoch, in registry order.
    sequence : int64 ndarray (B,)
        Pattern indices of this epoch (``sequence``; all patterns if None).
    phase_only_obj : bool
    probe_part : {"", "phase", "abs", "normed"}
        Refined half of the probe's spectrum (``tune_only_probe_phase`` /
        ``tune_only_probe_abs``), "normed" for the probe at fixed intensity
        (``fix_probe_intensity``), "" = the whole probe.
    loss_weight : float
        Weight of the data term.
    hist_length : int or math.inf
    wolfe_c1, wolfe_c2 : float
    update_step : float
        Initial trial step of the line search (``update_step_bfgs``).
    reset_history : bool
        ``reset_history_flag``.
    subpixel : bool
        Sub-pixel probe shifts (``allow_subPixel_shift``, or always while
        positions are refined).
    smart_memory : bool
    remove_fft_cache : bool
        Drop the FFT plans after the epoch's step (:meth:`pypty.backend.Backend.clear_fft_plans`).
    resize : bool or int
        ``dynamically_resize_yx_object``.
    loss_name : str
        Data loss of this epoch (``algorithm``, which may be epoch-dependent:
        a lambda returning a loss name; compressed data keep "lsq_compressed").
    """

    epoch: int
    refine: tuple
    sequence: np.ndarray
    phase_only_obj: bool
    probe_part: str
    loss_weight: float
    hist_length: object
    wolfe_c1: float
    wolfe_c2: float
    update_step: float
    reset_history: bool
    subpixel: bool
    smart_memory: bool
    resize: object
    loss_name: str = "lsq_sqrt"
    remove_fft_cache: bool = False

    @classmethod
    def resolve(cls, p: dict, epoch: int, present, n_patterns: int) -> "EpochSettings":
        """Settings of ``epoch`` from validated parameters ``p``.

        ``present``: names of the arrays in the model.  Every epoch-dependent
        value is resolved with :func:`pypty.parameters.schedule.resolve`,
        which checks what a callable or lambda string returns like a constant.

        Raises
        ------
        PyptyParameterError
            A callable or lambda string returned a value its parameter does not
            accept (e.g. a NaN or negative ``loss_weight``, a string for
            ``update_obj``), or ``wolfe_c1_constant >= wolfe_c2_constant`` at
            this epoch; the message names the parameter and the epoch.
        ValueError
            A switch is on for an array that is not in the model, or
            ``sequence`` holds indices outside ``[0, n_patterns)``.
        RuntimeError
            An epoch-dependent callable raised (the parameter is named).
        """
        def r(k):
            return resolve(k, p[k], epoch)

        refine = []
        for a in REFINABLES:
            if r(a.switch):
                if a.name not in present:  # only static_background can get here
                    raise ValueError(f"parameter '{a.switch}' is on at epoch {epoch} but '{a.name}' is not in the "
                                     f"model")
                refine.append(a.name)
        seq = r("sequence")
        seq = np.arange(n_patterns) if seq is None else np.asarray(seq, dtype=np.int64)
        if seq.size == 0 or seq.min() < 0 or seq.max() >= n_patterns:
            raise ValueError(f"parameter 'sequence' at epoch {epoch} must hold pattern indices in "
                             f"[0, {n_patterns - 1}], got {seq.size} values "
                             f"(min {seq.min() if seq.size else '-'}, max {seq.max() if seq.size else '-'})")
        only_phase, only_abs = bool(r("tune_only_probe_phase")), bool(r("tune_only_probe_abs"))
        part = "phase" if only_phase and not only_abs else "abs" if only_abs and not only_phase else ""
        if not part and bool(r("fix_probe_intensity")):
            part = "normed"
        loss = str(r("algorithm"))
        if callable(p["algorithm"]) and loss == "lsq_compressed":
            raise PyptyParameterError(f"parameter 'algorithm' at epoch {epoch}: an epoch-dependent loss may not "
                                      f"return 'lsq_compressed' (compressed data keep the constant loss)")
        c1, c2 = float(r("wolfe_c1_constant")), float(r("wolfe_c2_constant"))
        check_wolfe(c1, c2, epoch)  # constants are checked by validate too
        return cls(
            epoch=int(epoch), refine=tuple(refine), sequence=seq, phase_only_obj=bool(r("phase_only_obj")),
            probe_part=part,
            loss_weight=float(r("loss_weight")), hist_length=hist_length(r("hist_length")),
            wolfe_c1=c1, wolfe_c2=c2,
            update_step=float(r("update_step_bfgs")), reset_history=bool(r("reset_history_flag")),
            subpixel=bool(p["allow_subPixel_shift"]) or "positions" in refine,
            smart_memory=bool(r("smart_memory")), resize=r("dynamically_resize_yx_object"),
            loss_name=loss, remove_fft_cache=bool(p["remove_fft_cache"]))

    def reparam(self, name: str):
        """The reparametrisation of array ``name`` in this epoch, or None (see :mod:`pypty.model.reparam`)."""
        return block_reparam(name, self.phase_only_obj, self.probe_part if "probe" in self.refine else "")

    def block_name(self, name: str) -> str:
        """Optimizer block name of array ``name`` in this epoch (``obj`` or ``obj_phase``, ...)."""
        rp = self.reparam(name)
        return rp.block if rp is not None else name

    def batches(self, compute_batch: int, shard=None) -> list:
        """The sequence cut into batches of ``compute_batch`` patterns (NumPy int arrays).

        ``shard``: ``(start, stop)`` of a distributed rank: only the sequence's entries in that range, in
        the sequence's order (:func:`pypty.distributed.shard.filter_sequence`); None: the whole sequence.
        """
        seq = self.sequence if shard is None else filter_sequence(self.sequence, *shard)
        b = int(compute_batch)
        return [seq[i:i + b] for i in range(0, seq.size, b)]
