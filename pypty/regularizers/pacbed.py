"""The position-averaged diffraction pattern (PACBED) term.

For the N patterns of the epoch's ``sequence`` (the patterns the data term
uses in that epoch), with model patterns ``M_n`` (the modelled measured
quantity, after binning, detector blur, beam current and background; see
:mod:`pypty.model.multislice`) and measured patterns ``D_n``::

    Ibar(k) = (1/N) sum_n M_n(k),        Dbar(k) = (1/N) sum_n D_n(k)
    R       = w sum_k ((Ibar(k) + eps)^p - (Dbar(k) + eps)^p)^2
    dR/dM_n(k) = (1/N) dR/dIbar(k) = (2 w p / N) r(k) (Ibar(k) + eps)^(p - 1),
                 r = (Ibar + eps)^p - (Dbar + eps)^p

with ``w = pacbed_weight`` (>= 0, epoch-dependent), ``p = pacbed_dp_pow``
(0 < p <= 1) and ``eps`` the data loss's regulariser
(:attr:`pypty.model.MultisliceModel.eps`, counts).  R is in counts^(2p) times
w.  It compares the position-averaged patterns, so it constrains what the
per-pattern data term sees only on average (the probe's intensity
distribution, the mean object absorption and thickness): PtyRAD's
``loss_pacbed`` (``ptyrad@8ef86bd:src/ptyrad/core/losses.py:77-89``) with
three changes (design reference ``regularizers.md`` section 5): the mean runs
over the epoch's whole sequence instead of the mini-batch, the residual is
squared with no outer square root (the root is singular at zero residual, a
kink for the line search) and without PtyRAD's normalisation by
``mean(D^p)``, and ``eps`` keeps the power finite at empty pixels.

R is not a sum over patterns, so it cannot be a plain loss term
(``value_and_grad(arrays, epoch)`` on the arrays): it needs the model.  Its
gradient flows through the model's ordinary adjoint:

1. :meth:`PacbedTerm.pattern_hook` (called by the objective before the data
   term) runs a forward-only pass over the sequence
   (:meth:`pypty.model.MultisliceModel.mean_pattern`) for Ibar, takes Dbar
   from the data (once per sequence), and returns a :class:`PacbedHook`
   holding the value R and ``dR/dIbar``;
2. :meth:`pypty.model.MultisliceModel.loss_and_grad` with
   ``pattern_term=hook`` back-propagates ``w_data dL/dM_n + dR/dM_n`` per
   batch in its usual single adjoint pass, with ``w_data = loss_weight``
   applied there (so R is *not* multiplied by ``loss_weight``, as for every
   loss term, and ``loss_weight = 0`` works);
3. the objective reports ``hook.value`` as the part ``reg_pacbed``.

The cost is one extra forward pass over the sequence per evaluation (about
1.3-1.5x a data-only evaluation).  In a distributed run
(:mod:`pypty.distributed`) each rank runs that pass over its own patterns and
one extra reduction of ``[N, sum M_n, sum D_n]`` (``2 Yd Xd + 1`` float64)
per evaluation gives every rank the same Ibar and Dbar.  Compressed data (``lsq_compressed``) have
no patterns to average: the term is refused there (:meth:`PacbedTerm.check_params`).
"""
from __future__ import annotations

import numpy as np

from ..parameters.errors import PyptyParameterError
from ..parameters.schedule import may_be_on
from .base import ParamsTerm

__all__ = ["PacbedTerm", "PacbedHook", "measured_mean", "pacbed_value_and_derivative"]


def measured_mean(xp, get_data, batches):
    """Mean measured pattern ``Dbar = (1/N) sum_n D_n`` over the patterns of ``batches``.

    Parameters
    ----------
    xp : array module
    get_data : callable(idx) -> real device array (B, Yd, Xd), FFT order
    batches : iterable of int index arrays (NumPy)

    Returns
    -------
    float64 device array (Yd, Xd), counts per pattern.
    """
    acc, n = None, 0
    for bidx in batches:
        part = xp.sum(get_data(np.asarray(bidx)), axis=0, dtype=xp.float64)
        acc = part if acc is None else acc + part
        n += len(bidx)
    if n == 0:
        raise ValueError("measured_mean: no patterns in the batches")
    return acc / n


def pacbed_value_and_derivative(xp, ibar, dbar, weight, power, eps):
    """``R = w sum ((Ibar + eps)^p - (Dbar + eps)^p)^2`` and ``dR/dIbar``.

    Parameters
    ----------
    xp : array module
    ibar, dbar : float64 device arrays (Yd, Xd)
        Mean model and mean measured patterns (counts, >= 0).
    weight : float >= 0
    power : float in (0, 1]
    eps : float > 0, counts

    Returns
    -------
    value : float
    d_ibar : float64 device array (Yd, Xd): ``2 w p r (Ibar + eps)^(p - 1)``.
    """
    a = ibar + eps
    ap = a ** power
    r = ap - (dbar + eps) ** power
    value = weight * float(xp.sum(r * r, dtype=xp.float64))
    return value, (2.0 * weight * power) * r * ap / a


class PacbedHook:
    """The PACBED term evaluated at one point, for :meth:`pypty.model.MultisliceModel.loss_and_grad`.

    Attributes
    ----------
    term : PacbedTerm
        The term it was made by (the objective reports ``value`` for it).
    value : float
        R at the arrays it was made for.
    data_weight : float
        ``loss_weight`` of the epoch: the model weights the data term's
        derivative by it, per batch, before adding :meth:`dl`.
    d_pattern : device array (Yd, Xd)
        ``dR/dM_n = (1/N) dR/dIbar``, the same for every pattern of the
        sequence (dtype of the model patterns).
    """

    def __init__(self, term, value, data_weight, d_pattern, xp):
        self.term, self.value, self.data_weight, self.d_pattern, self._xp = term, value, data_weight, d_pattern, xp

    def dl(self, model_batch, bidx):
        """``dR/dM_n`` for the B patterns of a batch: (B, Yd, Xd), a broadcast view (read only)."""
        return self._xp.broadcast_to(self.d_pattern, (len(bidx),) + tuple(self.d_pattern.shape))


class PacbedTerm(ParamsTerm):
    """The PACBED loss term (see the module docstring): ``pacbed_weight``, ``pacbed_dp_pow``.

    A *pattern term*: it has :meth:`pattern_hook` instead of a usable
    ``value_and_grad``; the objective passes the hook to the model.
    """

    name = "pacbed"
    PARAMS = ("pacbed_weight", "pacbed_dp_pow")
    WEIGHT = "pacbed_weight"

    def __init__(self, p: dict, bk):
        super().__init__(p, bk)
        self._dbar = None  # (sequence bytes, Dbar): the measured mean of the last sequence

    @classmethod
    def check_params(cls, p: dict) -> list:
        """Messages for parameters the term cannot work with (empty: fine).

        The term needs patterns: it is refused for compressed data
        (``algorithm = "lsq_compressed"``).
        """
        msgs = []
        if may_be_on(p.get(cls.WEIGHT, 0)) and p.get("algorithm") == "lsq_compressed":
            msgs.append("parameter 'pacbed_weight': the PACBED term compares mean diffraction patterns and "
                        "compressed data (algorithm 'lsq_compressed') have none; set pacbed_weight = 0")
        return msgs

    @classmethod
    def from_params(cls, p: dict, bk):
        """The term, or None when ``pacbed_weight`` is constantly 0.

        Raises
        ------
        PyptyParameterError
            :meth:`check_params` found a problem (compressed data).
        """
        if not may_be_on(p[cls.WEIGHT]):
            return None
        msgs = cls.check_params(p)
        if msgs:
            raise PyptyParameterError("; ".join(msgs))
        return cls(p, bk)

    def value_and_grad(self, arrays: dict, epoch: int):
        """Not available: R needs the model (use :meth:`pattern_hook`, as the objective does)."""
        raise TypeError("the PACBED term is a pattern term: its value and gradient come from pattern_hook() and "
                        "MultisliceModel.loss_and_grad(pattern_term=...)")

    def _measured(self, setup, batches, sequence):
        key = np.asarray(sequence).tobytes()
        if self._dbar is None or self._dbar[0] != key:
            self._dbar = (key, measured_mean(self.xp, setup.get_data, batches))
        return self._dbar[1]

    def _distributed_means(self, setup, arrays, batches, settings, comm):
        """Ibar, Dbar (float64 device arrays, the same bits on every rank) and N of a distributed run.

        Each rank sums the model and measured patterns of its own batches
        (possibly none); one reduction of ``[N_r, sum M, sum D]`` gives the
        sums over all patterns of the sequence.  Collective.
        """
        bk, model = setup.bk, setup.model
        n_local = sum(len(b) for b in batches)
        if n_local:
            m_sum = bk.to_numpy(model.mean_pattern(arrays, batches, settings.subpixel) * n_local)
            d_sum = bk.to_numpy(self._measured(setup, batches, settings.sequence) * n_local)
        else:  # no pattern of this rank in the sequence: zeros of the (preprocessed) pattern's shape
            m_sum = d_sum = np.zeros(tuple(setup.source.pattern_shape))
        flat = np.concatenate([[float(n_local)], np.ravel(m_sum), np.ravel(d_sum)])
        total = comm.allsum(flat)
        n = int(round(total[0]))
        size = m_sum.size
        ibar = bk.asarray(total[1:1 + size].reshape(m_sum.shape) / n)
        dbar = bk.asarray(total[1 + size:].reshape(m_sum.shape) / n)
        return ibar, dbar, n

    def pattern_hook(self, setup, arrays: dict, batches, settings) -> PacbedHook:
        """Evaluate R at ``arrays`` and return the hook for the model's adjoint pass.

        Parameters
        ----------
        setup : pypty.model.setup.Setup
            ``setup.model`` (forward pass, ``eps``) and ``setup.get_data``.
        arrays : dict
            Model arrays (internal layout).
        batches : list of int arrays
            The epoch's sequence cut into batches (those of the data term).
        settings : pypty.engine.settings.EpochSettings
            ``epoch``, ``sequence``, ``subpixel``, ``loss_weight``.

        Returns
        -------
        PacbedHook
        """
        model, xp = setup.model, self.xp
        if model.compressed:
            raise ValueError(self.check_params({"pacbed_weight": 1, "algorithm": "lsq_compressed"})[0])
        comm = getattr(setup, "comm", None)
        if comm is not None and comm.distributed:  # batches: this rank's patterns; the means are over all ranks
            ibar, dbar, n = self._distributed_means(setup, arrays, batches, settings, comm)
        else:
            ibar = model.mean_pattern(arrays, batches, settings.subpixel)
            dbar = self._measured(setup, batches, settings.sequence)
            n = sum(len(b) for b in batches)
        value, d_ibar = pacbed_value_and_derivative(xp, ibar, dbar, self.weight(settings.epoch),
                                                    float(self.at("pacbed_dp_pow", settings.epoch)), model.eps)
        d_pattern = (d_ibar / n).astype(setup.real_dtype, copy=False)
        return PacbedHook(self, value, float(settings.loss_weight), d_pattern, xp)


#: loss-term classes of this module, in registry order
TERMS: tuple = (PacbedTerm,)
