"""Point-wise object edits (class D): complex ratio, mirrored amplitude, z recentring, amplitude bounds, phase
positivity.

Ports of PtyRAD's object constraints ``complex_ratio``, ``mirrored_amp``,
``obj_z_recenter``, ``obja_thresh`` and ``objp_postiv`` (Lee et al., *PtyRAD:
A high-performance and flexible ptychographic reconstruction framework with
automatic differentiation*, 2025; formulas and defects in
``design/regularizers.md`` sections 4.1 and 4.2), applied in that order at the
start of an epoch.

PtyRAD stores the object as amplitude and phase; pypty's object is the
complex transmission O (S, K, Ny, Nx).  Every edit here reads

    A = abs(O),  phi = arg(O)   (phi in (-pi, pi])

computes the new (A', phi') point by point, and writes back
``O' = A' exp(i phi')``; pixels where (A', phi') equal (A, phi) exactly
keep their value bit for bit, so an edit that changes nothing returns
:data:`~pypty.constraints.base.UNCHANGED` (no history reset).  The relaxed
blends ``relax x + (1 - relax) y`` are evaluated as ``x + (1 - relax)(y - x)``
(the same number, and exactly x where y = x).

These edits act only in an epoch where ``"obj"`` is in
``ctx.settings.refine`` (the object is refined); otherwise they return
UNCHANGED.  Each one that changed the object returns ``Change("reset", ...)``
(class D, design section 2.2).
"""
from __future__ import annotations

import math

import numpy as np

from .. import operators as ops
from ..parameters.errors import parameter_error
from ..parameters.schedule import may_be_on
from .base import UNCHANGED, Change, ParamsConstraint

__all__ = ["ComplexRatio", "MirroredAmplitude", "ObjectAmplitudeBounds", "ObjectPhasePositivity", "ObjectZRecenter",
           "uniform_slice_distance"]

OBJ_TYPES = ("phase", "amplitude", "both")


# ----------------------------------------------------------------------------- helpers (shared with resets, tilts)

def _constant(value) -> tuple:
    """``(True, value)`` for a constant parameter value, ``(False, value)`` for a callable / lambda expression."""
    return (not callable(value) or isinstance(value, type)), value


def _range_messages(p: dict, ranges: dict) -> list:
    """Messages for constant values outside their range.

    ``ranges``: name -> (lo, hi, lo_open, text); None for an open end.
    Values that are epoch-dependent, missing or not numbers are skipped.
    """
    out = []
    for name, (lo, hi, lo_open, text) in ranges.items():
        const, v = _constant(p.get(name))
        if not const or v is None or isinstance(v, (bool, np.bool_)):
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            out.append(f"parameter '{name}': expected {text}, got {v!r}")
            continue
        bad = not math.isfinite(x) or (lo is not None and (x <= lo if lo_open else x < lo)) \
            or (hi is not None and x > hi)
        if bad:
            out.append(f"parameter '{name}': expected {text}, got {v!r}")
    return out


def _relax(c: ParamsConstraint, key: str, epoch: int) -> float:
    """The relaxation weight ``key`` at ``epoch``, in [0, 1] (PyptyParameterError otherwise)."""
    r = float(c.at(key, epoch))
    if not 0.0 <= r <= 1.0:
        raise parameter_error(key, f"expected a relaxation weight in [0, 1], got {r!r} at epoch {epoch}")
    return r


def _write_polar(xp, obj, amp, phase, new_amp, new_phase):
    """``O' = A' exp(i phi')``, keeping O where (A', phi') == (A, phi); None when nothing changed.

    obj : complex (S, K, Ny, Nx); amp, phase, new_amp, new_phase : real, same shape.
    """
    keep = (new_amp == amp) & (new_phase == phase)
    if bool(xp.all(keep)):
        return None
    polar = (new_amp * xp.exp(1j * new_phase)).astype(obj.dtype, copy=False)
    return xp.where(keep, obj, polar)


class _PolarEdit(ParamsConstraint):
    """Base of a point-wise edit of (A, phi) = (abs(O), arg(O)); subclasses implement ``_edit``."""

    #: the text of the Change's reason
    WHAT = ""

    def apply(self, arrays: dict, epoch: int, ctx) -> tuple:
        """Edit the object point-wise when it is refined in this epoch.

        Parameters
        ----------
        arrays : dict
            ``"obj"``: complex (S, K, Ny, Nx) transmission (not modified).
        epoch : int
            0-based epoch (for the epoch-dependent values).
        ctx : pypty.constraints.base.Context
            ``ctx.settings.refine``: the edit acts only when it holds ``"obj"``.

        Returns
        -------
        ({"obj": complex (S, K, Ny, Nx), dtype of the input}, Change("reset", reason)),
        or ({}, UNCHANGED) when the object is not refined or nothing changed.
        """
        if "obj" not in ctx.settings.refine:
            return {}, UNCHANGED
        xp = self.xp
        obj = arrays["obj"]
        amp, phase = xp.abs(obj), xp.angle(obj)
        new_amp, new_phase = self._edit(amp, phase, epoch)
        new = _write_polar(xp, obj, amp, phase, new_amp, new_phase)
        if new is None:
            return {}, UNCHANGED
        return {"obj": new}, Change("reset", self.WHAT)

    def _edit(self, amp, phase, epoch):  # pragma: no cover - abstract
        raise NotImplementedError


# ----------------------------------------------------------------------------- complex ratio

class ComplexRatio(_PolarEdit):
    """``complex_ratio``: couple the amplitude and the phase of the object through their global ratio.

    With ``L = ln A`` (A clamped at the smallest normal float, so that a zero
    amplitude gives a large negative L instead of -inf), the global ratio::

        Cbar = sum |L| / (sum |phi| + 1e-8)           (sums over s, k, y, x; float64)
        A'   = exp((1 - a1) L - a1 Cbar phi)          (obj_type "amplitude" or "both")
        phi' = (1 - a2) phi - a2 / (Cbar + 1e-8) L    (obj_type "phase" or "both")

    with ``a1 = complex_ratio_alpha1``, ``a2 = complex_ratio_alpha2``; the part
    that ``complex_ratio_obj_type`` excludes is kept.  Both are computed from
    the same (A, phi).  With a1 = 1, a2 = 0 (the defaults) the amplitude
    becomes ``exp(-Cbar phi)``: a weak-phase-object prior where a positive
    phase goes with an amplitude below 1 (for phi < 0, A' > 1).

    Source: ``design/regularizers.md`` sections 4.1, 4.2 (PtyRAD's
    ``complex_ratio``, Lee et al. 2025, which cites the complex constraint of
    Clark et al., Opt. Express 18 (2010) 1981).  Acts only when the object is
    refined.
    """

    name = "complex_ratio"
    PARAMS = ("complex_ratio", "complex_ratio_alpha1", "complex_ratio_alpha2", "complex_ratio_obj_type")
    SWITCH = "complex_ratio"
    RESETS_HISTORY = True
    WHAT = "amplitude and phase coupled by their global ratio"

    def _edit(self, amp, phase, epoch):
        xp = self.xp
        a1 = float(self.at("complex_ratio_alpha1", epoch))
        a2 = float(self.at("complex_ratio_alpha2", epoch))
        kind = self.at("complex_ratio_obj_type", epoch)
        if kind not in OBJ_TYPES:
            raise parameter_error("complex_ratio_obj_type", f"expected one of {OBJ_TYPES}, got {kind!r}")
        log_amp = xp.log(xp.maximum(amp, np.finfo(amp.dtype).tiny))
        cbar = float(xp.sum(xp.abs(log_amp), dtype=xp.float64)) / (float(xp.sum(xp.abs(phase), dtype=xp.float64))
                                                                     + 1e-8)
        new_amp, new_phase = amp, phase
        if kind in ("amplitude", "both"):
            new_amp = xp.exp((1.0 - a1) * log_amp - (a1 * cbar) * phase)
        if kind in ("phase", "both"):
            new_phase = (1.0 - a2) * phase - (a2 / (cbar + 1e-8)) * log_amp
        return new_amp, new_phase

    @classmethod
    def check_params(cls, p: dict) -> list:
        """``complex_ratio_obj_type`` in {"phase", "amplitude", "both"}; alpha1, alpha2 in [0, 1]."""
        out = _range_messages(p, {"complex_ratio_alpha1": (0.0, 1.0, False, "a float in [0, 1]"),
                                  "complex_ratio_alpha2": (0.0, 1.0, False, "a float in [0, 1]")})
        const, kind = _constant(p.get("complex_ratio_obj_type", "both"))
        if const and kind not in OBJ_TYPES:
            out.append(f"parameter 'complex_ratio_obj_type': expected one of {', '.join(OBJ_TYPES)}, got {kind!r}")
        return out


# ----------------------------------------------------------------------------- mirrored amplitude

class MirroredAmplitude(_PolarEdit):
    """``mirrored_amp``: set the amplitude from the phase (absorption grows with the potential).

    ::

        target = max(1 - scale * max(phi, 0)^power, 0)
        A'     = relax A + (1 - relax) target,    phi' = phi

    with ``relax = mirrored_amp_relax`` (1 = no constraint),
    ``scale = mirrored_amp_scale`` (rad^-power) and
    ``power = mirrored_amp_power``.  PtyRAD's target goes negative for
    ``phi > scale^(-1/power)`` (about 2.4 rad at the defaults), which flips the
    phase by pi when O is rebuilt; here the target is clamped at 0, so A' >= 0.

    Source: ``design/regularizers.md`` sections 4.1, 4.2 (PtyRAD's
    ``mirrored_amp``, Lee et al. 2025).  Acts only when the object is refined.
    """

    name = "mirrored_amp"
    PARAMS = ("mirrored_amp", "mirrored_amp_relax", "mirrored_amp_scale", "mirrored_amp_power")
    SWITCH = "mirrored_amp"
    RESETS_HISTORY = True
    WHAT = "amplitude set from the positive phase"

    def _edit(self, amp, phase, epoch):
        xp = self.xp
        relax = _relax(self, "mirrored_amp_relax", epoch)
        scale = float(self.at("mirrored_amp_scale", epoch))
        power = float(self.at("mirrored_amp_power", epoch))
        target = xp.maximum(1.0 - scale * xp.maximum(phase, 0.0) ** power, 0.0)
        return amp + (1.0 - relax) * (target - amp), phase

    @classmethod
    def check_params(cls, p: dict) -> list:
        """relax in [0, 1], scale >= 0, power > 0."""
        return _range_messages(p, {"mirrored_amp_relax": (0.0, 1.0, False, "a float in [0, 1]"),
                                   "mirrored_amp_scale": (0.0, None, False, "a float >= 0"),
                                   "mirrored_amp_power": (0.0, None, True, "a float > 0")})


# ----------------------------------------------------------------------------- z recentring

class ObjectZRecenter(ParamsConstraint):
    """``obj_z_recenter``: move the object by whole slices so that its phase sits in the middle of the stack.

    Object O (S, K, Ny, Nx), phase phi = arg O::

        phi+   = max(phi, 0), set to 0 where phi+ < percentile(phi+, thresh)   (exact percentile)
        m_s    = mean_{k,y,x} phi+[s]
        com    = sum_s s m_s / (sum_s m_s + 1e-8)
        lim    = min(max_shift, (S - 1) / 2)
        shift  = clip(scale ((S - 1)/2 - com), -lim, lim)
        n      = round(shift) (halves away from 0), |n| <= floor(lim)
        O'[s]  = O[s - n]   for 0 <= s - n < S,   1 (vacuum) otherwise
        P'     = F^-1[F(P) K(-n dz)]

    with ``thresh = obj_z_recenter_thresh`` (percent),
    ``scale = obj_z_recenter_scale``, ``max_shift = obj_z_recenter_max_shift``
    (slices), dz the (uniform) slice distance in Å and
    ``K(d) = exp(-i pi lambda d |k|^2) * mask`` pypty's band-limited Fresnel
    kernel (:func:`pypty.operators.fresnel_kernel`, with the model's window,
    pixel size, wavelength, ``cutoff`` and ``rolloff``, as
    :class:`pypty.model.MultisliceModel` builds its kernels).  An object moved
    down by n slices meets the probe n dz later, so the probe is propagated
    back by n dz: when the n slices pushed out of the stack are vacuum, the
    far-field patterns stay the same inside the band limit of the propagator
    (tested).  Outside it they can change: the model applies no propagation
    (hence no band limit) after the exit slice, so features moved away from
    the last slice lose their diffraction beyond the band limit, and features
    moved into it gain some.

    Differences from PtyRAD (``design/regularizers.md`` section 4.2): an
    exact percentile instead of a randomly subsampled one (determinism,
    section 2.5); an integer shift with vacuum filling instead of a periodic
    Fourier sub-slice shift (no wrap-around of the top and bottom slices, no
    ringing); pypty's own Fresnel kernel instead of one on a half-sample offset
    frequency grid (which adds a small lateral probe shift); no shift when the
    thresholded positive phase is zero everywhere (PtyRAD's com is then 0 and
    it shifts a featureless object by (S-1)/2 slices).

    Edits the object and the probe, and acts only when the object is refined
    (the probe moves with it whether or not it is refined).  Requires uniform
    slice distances.  Source: PtyRAD's ``obj_z_recenter`` (Lee et al. 2025).
    """

    name = "obj_z_recenter"
    PARAMS = ("obj_z_recenter", "obj_z_recenter_thresh", "obj_z_recenter_scale", "obj_z_recenter_max_shift",
              "slice_distances", "num_slices")
    SWITCH = "obj_z_recenter"
    RESETS_HISTORY = True

    def slice_shift(self, obj, epoch: int) -> int:
        """The integer shift n (slices, > 0 = deeper) of the object ``obj`` (S, K, Ny, Nx) at ``epoch``."""
        xp = self.xp
        n_slices = int(obj.shape[0])
        if n_slices < 2:
            return 0
        thresh = float(self.at("obj_z_recenter_thresh", epoch))
        scale = float(self.at("obj_z_recenter_scale", epoch))
        max_shift = float(self.at("obj_z_recenter_max_shift", epoch))
        pos = xp.maximum(xp.angle(obj), 0.0)
        cutoff = xp.percentile(pos, thresh)
        pos = xp.where(pos < cutoff, 0.0, pos)
        m = np.asarray(self.bk.to_numpy(xp.mean(pos, axis=(1, 2, 3), dtype=xp.float64)), dtype=np.float64)
        total = float(m.sum())
        if not total > 0:
            return 0
        com = float(np.sum(np.arange(n_slices) * m)) / (total + 1e-8)
        lim = min(max_shift, (n_slices - 1) / 2)
        shift = min(max(scale * ((n_slices - 1) / 2 - com), -lim), lim)
        n = int(math.copysign(math.floor(abs(shift) + 0.5), shift))
        cap = math.floor(lim)
        return max(-cap, min(cap, n))

    def apply(self, arrays: dict, epoch: int, ctx) -> tuple:
        """Shift the object by whole slices and propagate the probe to match.

        Parameters
        ----------
        arrays : dict
            ``"obj"``: complex (S, K, Ny, Nx) transmission; ``"probe"``:
            complex (U, M, Y, X) real-space probe (sqrt(counts)).
        epoch : int
        ctx : pypty.constraints.base.Context
            ``ctx.settings.refine`` (acts only with ``"obj"``) and
            ``ctx.setup.model`` (window, pixel size, wavelength, slice
            distances, band limit).

        Returns
        -------
        ({"obj": complex (S, K, Ny, Nx), "probe": complex (U, M, Y, X)}, Change("reset", reason)),
        or ({}, UNCHANGED) when the object is not refined or n = 0.

        Raises
        ------
        PyptyParameterError
            Slice distances that are not all equal.
        """
        if "obj" not in ctx.settings.refine:
            return {}, UNCHANGED
        xp = self.xp
        obj, probe = arrays["obj"], arrays["probe"]
        n = self.slice_shift(obj, epoch)
        if n == 0:
            return {}, UNCHANGED
        model = ctx.setup.model
        dz = uniform_slice_distance(model.slice_distances)
        n_slices = int(obj.shape[0])
        new_obj = xp.ones_like(obj)
        if n > 0:
            new_obj[n:] = obj[:n_slices - n]
        else:
            new_obj[:n_slices + n] = obj[-n:]
        distance = -n * dz
        kernel = ops.fresnel_kernel(tuple(probe.shape[-2:]), model.pixel_size_yx_A, model.wavelength_A, distance,
                                    model.cutoff, model.rolloff)
        new_probe = ops.propagate(self.bk, probe, self.bk.asarray(kernel, dtype=probe.dtype))
        return ({"obj": new_obj, "probe": new_probe},
                Change("reset", f"object shifted by {n:+d} slices, probe propagated by "
                                f"{distance:+.4g} Å"))

    @classmethod
    def check_params(cls, p: dict) -> list:
        """Uniform ``slice_distances`` (1 value, or ``num_slices`` equal values); thresh in [0, 100];
        scale in [0, 1]; max_shift >= 0.  Only when the switch may be on."""
        if not may_be_on(p.get(cls.SWITCH)):
            return []
        out = _range_messages(p, {"obj_z_recenter_thresh": (0.0, 100.0, False, "a percentile in [0, 100]"),
                                  "obj_z_recenter_scale": (0.0, 1.0, False, "a float in [0, 1]"),
                                  "obj_z_recenter_max_shift": (0.0, None, False, "a number of slices >= 0")})
        dz = p.get("slice_distances")
        if dz is not None:
            try:
                uniform_slice_distance(dz)
            except ValueError as exc:
                out.append(str(exc))
        return out

    @classmethod
    def warnings(cls, p: dict) -> list:
        """One slice (``num_slices = 1``): nothing to recentre."""
        if may_be_on(p.get(cls.SWITCH)) and int(p.get("num_slices", 1) or 1) < 2:
            return [f"parameter '{cls.SWITCH}': has no effect with num_slices = 1"]
        return []


def uniform_slice_distance(slice_distances) -> float:
    """The common slice distance (Å) of ``slice_distances`` (1 value or S equal ones, to 1e-9 relative).

    Raises
    ------
    PyptyParameterError
        The distances differ (``obj_z_recenter`` shifts the object by whole slices).
    """
    dz = np.atleast_1d(np.asarray(slice_distances, dtype=np.float64))
    if dz.size == 0 or np.any(np.abs(dz - dz[0]) > 1e-9 * abs(dz[0])):
        raise parameter_error("slice_distances", f"obj_z_recenter needs equal slice distances, got {dz.tolist()}")
    return float(dz[0])


# ----------------------------------------------------------------------------- amplitude bounds

class ObjectAmplitudeBounds(_PolarEdit):
    """``obj_amplitude_bounds``: clip the object amplitude to [lo, hi].

    ::

        A'   = relax A + (1 - relax) clip(A, lo, hi),    phi' = phi

    with ``[lo, hi] = obj_amplitude_bounds`` (None = off, epoch-dependent) and
    ``relax = obj_amplitude_bounds_relax`` (1 = no constraint).  With
    relax = 0 the edit is a projection (idempotent).  A box projection, but not
    in the optimizer's geometry, hence class D.

    Source: ``design/regularizers.md`` sections 4.1, 4.2 (PtyRAD's
    ``obja_thresh``, Lee et al. 2025).  Acts only when the object is refined.
    """

    name = "obj_amplitude_bounds"
    PARAMS = ("obj_amplitude_bounds", "obj_amplitude_bounds_relax")
    SWITCH = "obj_amplitude_bounds"
    RESETS_HISTORY = True
    WHAT = "amplitude clipped to its bounds"

    @classmethod
    def switched_on(cls, row, value) -> bool:
        """On when the bounds are not None (nor False / 0)."""
        return not (value is None or isinstance(value, (bool, np.bool_)) or (np.ndim(value) == 0 and not value))

    def _edit(self, amp, phase, epoch):
        xp = self.xp
        bounds = self.at(self.SWITCH, epoch)
        try:
            lo, hi = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise parameter_error(self.SWITCH, f"expected None or [lo, hi], got {bounds!r} at epoch {epoch}") \
                from None
        if not (0.0 <= lo < hi and math.isfinite(hi)):
            raise parameter_error(self.SWITCH, f"expected 0 <= lo < hi, got {bounds!r} at epoch {epoch}")
        relax = _relax(self, "obj_amplitude_bounds_relax", epoch)
        return amp + (1.0 - relax) * (xp.clip(amp, lo, hi) - amp), phase

    @classmethod
    def check_params(cls, p: dict) -> list:
        """A constant ``obj_amplitude_bounds`` is None or [lo, hi] with 0 <= lo < hi; relax in [0, 1]."""
        out = _range_messages(p, {"obj_amplitude_bounds_relax": (0.0, 1.0, False, "a float in [0, 1]")})
        const, b = _constant(p.get(cls.SWITCH))
        if const and b is not None:
            try:
                lo, hi = (float(x) for x in b)
                ok = math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo < hi
            except (TypeError, ValueError):
                ok = False
            if not ok:
                out.append(f"parameter '{cls.SWITCH}': expected None or [lo, hi] with 0 <= lo < hi, got {b!r}")
        return out


# ----------------------------------------------------------------------------- phase positivity

class ObjectPhasePositivity(_PolarEdit):
    """``obj_phase_positivity``: clip negative object phases to 0.

    ::

        phi' = relax phi + (1 - relax) max(phi, 0),    A' = A

    with ``relax = obj_phase_positivity_relax`` (1 = no constraint); phi =
    arg O in (-pi, pi].  With relax = 0 the edit is idempotent (a pixel with
    phi < 0 becomes the real number A, whose phase is 0).

    Source: ``design/regularizers.md`` sections 4.1, 4.2 (PtyRAD's
    ``objp_postiv`` in its reachable ``clip_neg`` mode, Lee et al. 2025).
    Acts only when the object is refined.
    """

    name = "obj_phase_positivity"
    PARAMS = ("obj_phase_positivity", "obj_phase_positivity_relax")
    SWITCH = "obj_phase_positivity"
    RESETS_HISTORY = True
    WHAT = "negative phases clipped to 0"

    def _edit(self, amp, phase, epoch):
        xp = self.xp
        relax = _relax(self, "obj_phase_positivity_relax", epoch)
        return amp, phase + (1.0 - relax) * (xp.maximum(phase, 0.0) - phase)

    @classmethod
    def check_params(cls, p: dict) -> list:
        """relax in [0, 1]."""
        return _range_messages(p, {"obj_phase_positivity_relax": (0.0, 1.0, False, "a float in [0, 1]")})


#: constraint classes of this module, in order of application
CONSTRAINTS: tuple = (ComplexRatio, MirroredAmplitude, ObjectZRecenter, ObjectAmplitudeBounds, ObjectPhasePositivity)
