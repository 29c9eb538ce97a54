"""Recommended refinement settings for counted (electron-counting) data: loss schedule, refinement order, regularizers.

The numbers behind every choice were measured with ``benchmarks/convergence.py``
on the shared MoS2 monolayer (abTEM, 80 kV, 16,000 electrons per pattern,
Poisson noise, frozen phonons, jittered scan) and on binomially thinned copies
of it; the tables are in ``docs/performance.md`` ("Convergence per loss and
schedule") and the loss trade-off is explained in ``docs/parameters.md`` (row
``algorithm``).
"""
from __future__ import annotations

import math
import numbers

from .schedules import epoch_schedule

__all__ = ["counted_data_settings", "LOW_DOSE_E_PER_PATTERN"]

#: Below this many electrons per pattern the low-dose recipe is chosen (measured boundary, see
#: :func:`counted_data_settings`).
LOW_DOSE_E_PER_PATTERN = 2000.0

_REGIMES = ("high", "low")


def counted_data_settings(electrons_per_pattern=None, *, regime=None, switch_epoch: int = 6) -> dict:
    """Recommended ``pypty_params`` entries for counted data on a thin specimen (one slice, full object band).

    Two recipes, chosen by the dose per pattern (or given by ``regime``):

    ``"high"`` (at least :data:`LOW_DOSE_E_PER_PATTERN` electrons per pattern):
        ``lsq_sqrt`` for ``switch_epoch`` epochs, then the Poisson likelihood
        ``ml``; the probe refined in the first 20 epochs only; positions from
        ``switch_epoch`` on, their mean correction held at zero
        (``pos_recenter``); smooth L1 penalties on the phase (16) and the
        absorptive part (30).
    ``"low"`` (fewer electrons):
        the same loss schedule and penalties; the probe refined throughout;
        positions only from epoch 20, with ``deformation_reg_weight_positions``
        = 2 (towards an affine scan grid).

    Why (``benchmarks/convergence.py``, MoS2 80 kV, positions refined, 80
    epochs, phase correlation r with the ground truth; ``docs/performance.md``):

    - ``lsq_sqrt`` alone fits fast (r 0.90 at epoch 2) but is biased where
      pixels hold about one count: with positions refined its r falls to 0.78
      at 16,000 e/pattern and 0.68 at 800 while the scan expands (positions
      0.7-1.4 px off).  ``ml`` is unbiased but starts slower.  The switch gets
      both: at 16,000 e/pattern r 0.90 at epoch 2, 0.95 at epoch 7, final
      0.990 without decline, positions 0.125 px; at 800 e/pattern final r
      0.95 against 0.68 for ``lsq_sqrt``.
    - Stopping probe refinement after epoch 20 removes a slow late decline of
      r at high dose, but costs 0.03 in r at 160 e/pattern, where the probe
      settles late.
    - Positions refined early at low dose end further from the truth than
      they started (0.7 px at 800 e/pattern); from epoch 20 with the
      deformation term they end at 0.41 px (800) and 0.45 px (160).
    - The boundary :data:`LOW_DOSE_E_PER_PATTERN` lies between 800 and 3,200
      electrons per pattern, where both recipes were measured.

    The object band limit is off (``lazy_clean=True``): on thin specimens the
    default band limit to 2/3 of Nyquist costs detail (r 0.912 against 0.987
    at 30 epochs).  For thick, multislice specimens keep the band limit and
    see ``presets/thick_crystal_multislice.py``.

    Parameters
    ----------
    electrons_per_pattern : float or None
        Mean electron count per diffraction pattern (the data's mean pattern
        sum, in counts).  Required unless ``regime`` is given.
    regime : {"high", "low"} or None
        Choose the recipe directly instead of by dose.
    switch_epoch : int >= 1
        Epoch (0-based) at which the loss switches from ``lsq_sqrt`` to ``ml``.

    Returns
    -------
    dict
        ``algorithm``, ``num_slices``, ``lazy_clean``, ``update_obj``,
        ``update_probe``, ``update_probe_pos``, ``pos_recenter``,
        ``phase_norm_weight``, ``abs_norm_weight`` and, at low dose,
        ``deformation_reg_weight_positions``; epoch-dependent values as
        whitelisted lambda strings.  A new dict on every call.

    Raises
    ------
    ValueError
        Neither ``electrons_per_pattern`` nor ``regime`` given, a count that is
        not a positive finite number, an unknown ``regime``, or
        ``switch_epoch`` not an int >= 1.
    """
    if regime is None:
        if electrons_per_pattern is None:
            raise ValueError("counted_data_settings: give electrons_per_pattern (mean counts per pattern) or regime")
        if (isinstance(electrons_per_pattern, bool) or not isinstance(electrons_per_pattern, numbers.Real)
                or not math.isfinite(float(electrons_per_pattern)) or electrons_per_pattern <= 0):
            raise ValueError("counted_data_settings: electrons_per_pattern must be a positive finite number, got "
                             f"{electrons_per_pattern!r}")
        regime = "low" if float(electrons_per_pattern) < LOW_DOSE_E_PER_PATTERN else "high"
    elif regime not in _REGIMES:
        raise ValueError(f"counted_data_settings: regime must be one of {_REGIMES}, got {regime!r}")
    if isinstance(switch_epoch, bool) or not isinstance(switch_epoch, numbers.Integral) or switch_epoch < 1:
        raise ValueError(f"counted_data_settings: switch_epoch must be an int >= 1, got {switch_epoch!r}")
    s = int(switch_epoch)
    settings = {
        "algorithm": epoch_schedule("ml", start=s, off="lsq_sqrt"),
        "num_slices": 1,
        "lazy_clean": True,
        "update_obj": 1,
        "pos_recenter": True,
        "phase_norm_weight": 16.0,
        "abs_norm_weight": 30.0,
    }
    if regime == "high":
        settings["update_probe"] = "lambda epoch: 1 if epoch < 20 else 0"
        settings["update_probe_pos"] = f"lambda epoch: 1 if epoch >= {s} else 0"
    else:
        settings["update_probe"] = 1
        settings["update_probe_pos"] = f"lambda epoch: 1 if epoch >= {max(s, 20)} else 0"
        settings["deformation_reg_weight_positions"] = 2.0
    return settings
