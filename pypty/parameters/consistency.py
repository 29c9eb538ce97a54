"""Rules that relate parameters to each other, checked without the data.

:func:`check_consistency` is called at the end of
:func:`pypty.parameters.validate`, after every single value has been checked
and normalised, and again by :func:`pypty.engine.driver.reconstruct` after
``restart_from`` has put the saved arrays into the validated dict.  Checks that need the data (number of
patterns N, detector shape) stay in :mod:`pypty.model.setup`; all of them use
:func:`pypty.parameters.parameter_error` for their messages.

Switches that may be epoch-dependent count as "on" unless they are constantly
off (:func:`pypty.parameters.schedule.may_be_on`).
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np

from .checks import _all_zero
from .conventions import TILT_TYPES, tilt_types_for_mode
from .errors import PyptyParameterError, parameter_error
from .epoch_eval import EpochExpression
from .schedule import may_be_on, resolve

__all__ = ["check_consistency", "check_wolfe"]

#: Preprocessing parameters that compressed data (algorithm "lsq_compressed") leaves at their defaults.
_COMPRESSED_DEFAULTS = (("data_bin", 1), ("data_pad", 0), ("flip_ky", False), ("upsample_pattern", 1))


def check_wolfe(c1, c2, epoch=None) -> None:
    """Raise unless ``c1 < c2`` (the Wolfe constants; ``epoch``: where epoch-dependent values were resolved)."""
    if not c1 < c2:
        at = "" if epoch is None else f" at epoch {epoch}"
        raise PyptyParameterError(
            f"parameters 'wolfe_c1_constant' ({c1!r}) and 'wolfe_c2_constant' ({c2!r}){at} must satisfy "
            f"0 < wolfe_c1_constant < wolfe_c2_constant < 1")


def _wolfe_constants(p):
    c1, c2 = p["wolfe_c1_constant"], p["wolfe_c2_constant"]
    if not callable(c1) and not callable(c2):  # epoch-dependent ones: EpochSettings.resolve, per epoch
        check_wolfe(c1, c2)


def _compressed_data(p):
    if callable(p["algorithm"]) and p["masks"] is not None:
        raise parameter_error("algorithm", "compressed data (masks given) keep the constant loss 'lsq_compressed'; "
                                           "an epoch-dependent algorithm is for ordinary patterns only")
    compressed = p["algorithm"] == "lsq_compressed"
    if compressed != (p["masks"] is not None):
        raise parameter_error("masks", "virtual-detector masks and algorithm 'lsq_compressed' go together; got "
                                       f"masks {'set' if p['masks'] is not None else 'None'} with algorithm "
                                       f"{p['algorithm']!r}")
    if compressed:
        for key, default in _COMPRESSED_DEFAULTS:
            if p[key] != default:
                raise parameter_error(key, f"must stay {default!r} for compressed data (apply it to the masks "
                                           f"instead)")


def _near_field_upsampling(p):
    if p["recon_type"] == "near_field" and int(p["upsample_pattern"]) != 1:
        raise parameter_error("upsample_pattern", "must be 1 for recon_type 'near_field' (patterns are images)")


def _initial_probe_modes(p):
    if p["defocus_spread_modes"] is not None and p["n_hermite_probe_modes"] is not None:
        raise parameter_error("defocus_spread_modes",
                              "give either defocus_spread_modes or n_hermite_probe_modes, not both")


def _tilts_in_model(p):
    tilts = np.asarray(p["tilts"])
    if _all_zero(tilts):
        return
    tilt_types = tilt_types_for_mode(p["tilt_mode"])
    for kind, (a, b) in TILT_TYPES.items():
        if kind not in tilt_types and np.any(tilts[:, a:b] != 0):
            raise parameter_error("tilts", f"has non-zero '{kind}' tilts (columns {a}, {b - 1}) but tilt_mode "
                                           f"{p['tilt_mode']} uses only {', '.join(tilt_types)}")


def _static_background(p):
    if _all_zero(p["static_background"]):
        if may_be_on(p["update_static_background"]):
            raise parameter_error("static_background", "is 0 but update_static_background is on: start from a "
                                                       "small positive value (e.g. 1e-3 counts), 0 means 'no "
                                                       "background'")
    elif p["recon_type"] == "near_field":
        raise parameter_error("static_background", "is not available for recon_type 'near_field'")


def _aberrations_array(p):
    ab = np.asarray(p["aberrations_array"])
    marker = p["aberration_marker"]
    if _all_zero(ab) and not may_be_on(p["update_aberrations_array"]) and marker is None:
        return  # not in the model
    from ..operators.optics import KRIVANEK_NAMES  # a lower layer; imported only when used (loads scipy)

    if ab.shape[1] > len(KRIVANEK_NAMES):
        raise parameter_error("aberrations_array", f"at most {len(KRIVANEK_NAMES)} columns ({KRIVANEK_NAMES[0]} ... "
                                                   f"{KRIVANEK_NAMES[-1]}), got {ab.shape[1]}")
    if marker is None and ab.shape[0] > 1:
        raise parameter_error("aberration_marker", f"is None but aberrations_array has {ab.shape[0]} rows: say "
                                                   f"which row each measurement uses")


def _subscan_probes(p):
    probe = p["probe"]
    if probe is not None and np.ndim(probe) == 4 and np.shape(probe)[3] > 1 and p["probe_marker"] is None:
        raise parameter_error("probe", f"is 4D with {np.shape(probe)[3]} subscan probes but probe_marker is None")


def _probe_intensity(p):
    if may_be_on(p["fix_probe_intensity"]) and may_be_on(p["tune_only_probe_abs"]):
        raise parameter_error("fix_probe_intensity", "cannot be combined with tune_only_probe_abs (which refines the "
                                                     "spectrum amplitude freely); with tune_only_probe_phase the "
                                                     "intensity is fixed anyway")


def _mask_shapes(p):
    """The probe masks have the probe-window shape (known here when the probe is given)."""
    if p["probe"] is None:
        return
    shape = tuple(np.shape(p["probe"])[:2])
    for key in ("probe_constraint_mask", "aperture_mask"):
        m = p[key]
        if m is not None and tuple(np.shape(m)) != shape:
            raise parameter_error(key, f"must have the probe-window shape {shape[0]} x {shape[1]} px, got "
                                       f"{np.shape(m)[0]} x {np.shape(m)[1]}")
    w = p["window"]
    if isinstance(w, np.ndarray) and tuple(w.shape) != shape:
        raise parameter_error("window", f"a penalty map must have the probe-window shape {shape[0]} x {shape[1]} "
                                        f"px, got {w.shape[0]} x {w.shape[1]}")


def _regularizer_rules(p):
    """The rules of the registered loss terms and constraints (their ``check_params`` classmethods)."""
    from .. import constraints, regularizers  # registries sit above this package: imported when checked

    for registry in (regularizers.REGISTRY, constraints.REGISTRY):
        for cls in registry.values():
            check = getattr(cls, "check_params", None)
            if check is not None:
                problems = check(p)
                if problems:
                    raise PyptyParameterError(problems[0])
            for message in (getattr(cls, "warnings", None) or (lambda _: ()))(p):
                warnings.warn(message, stacklevel=4)


def _class_d_cadence(p):
    """Warn when a class-D edit (a registered constraint with ``RESETS_HISTORY``) is on in two consecutive epochs
    while L-BFGS keeps a history (the on/off rule is the constraint's own ``switched_on``)."""
    hist = p["hist_length"]
    if not callable(hist) and not isinstance(hist, EpochExpression) and hist is not None and hist == 0:
        return
    from .. import constraints  # the registry sits above this package: imported when checked

    first, last = int(p["epoch_prev"]), int(p["epoch_max"])
    epochs = range(first, min(last, first + 2000))
    switches = [(row, cls) for cls in constraints.REGISTRY.values() if getattr(cls, "RESETS_HISTORY", False)
                for row in cls.switch_rows()]
    for key, cls in switches:
        value = p[key]
        if not may_be_on(value):
            continue
        previous = False
        for epoch in epochs:
            try:
                now = bool(cls.switched_on(key, resolve(key, value, epoch)))
            except Exception:  # a failing callable is reported when the run resolves it
                break
            if now and previous:
                warnings.warn(f"parameter '{key}' is on at epochs {epoch - 1} and {epoch}: each application resets "
                              f"the L-BFGS history, which then works like steepest descent; apply it every few "
                              f"epochs instead, e.g. pypty.initialize.epoch_schedule(value, start=10, step=10)",
                              stacklevel=4)
                break
            previous = now

#: The rules, in the order in which a run used to meet them.
_RULES = (_wolfe_constants, _compressed_data, _near_field_upsampling, _initial_probe_modes, _tilts_in_model,
          _static_background, _aberrations_array, _subscan_probes, _probe_intensity, _mask_shapes,
          _regularizer_rules, _class_d_cadence)


def check_consistency(p: Mapping[str, Any]) -> None:
    """Raise when validated parameters do not fit together (checks that need no data).

    The rules: ``wolfe_c1_constant < wolfe_c2_constant`` (unless one is
    epoch-dependent); ``masks`` given exactly when ``algorithm`` is
    "lsq_compressed" (a constant then: an epoch-dependent ``algorithm`` is for
    ordinary patterns only), and then ``data_bin``, ``data_pad``, ``flip_ky`` and
    ``upsample_pattern`` at their defaults; ``upsample_pattern`` 1 for
    ``recon_type`` "near_field"; not both ``defocus_spread_modes`` and
    ``n_hermite_probe_modes``; ``tilts`` zero in the columns of the tilt types
    that ``tilt_mode`` leaves out; ``static_background`` non-zero when
    ``update_static_background`` may be on, and zero for "near_field"; when
    the aberrations array is used (non-zero, refined or with a marker), at
    most as many columns as Krivanek coefficients and one row unless
    ``aberration_marker`` is given; a 4D ``probe`` with several subscan
    probes only with ``probe_marker``; not both ``fix_probe_intensity`` and
    ``tune_only_probe_abs``; probe masks and a window map of the probe-window
    shape (when the probe is given); and the rules of every registered loss
    term and hand constraint (their ``check_params``: scan grids, masks,
    slice spacing, ...).  Warns when a class-D hand constraint (one that
    resets the L-BFGS history) is on in two consecutive epochs while
    ``hist_length`` > 0.

    Parameters
    ----------
    p : mapping
        Output of the single-value checks of :func:`pypty.parameters.validate`
        (every parameter present and normalised).

    Raises
    ------
    PyptyParameterError
        For the first rule that fails; the message names the parameter.
    """
    for rule in _RULES:
        rule(p)
