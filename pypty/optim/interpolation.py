"""Safeguarded interpolation for the zoom phase of the strong-Wolfe line search.

Nocedal & Wright, *Numerical Optimization*, 2nd ed., Sec. 3.5: the minimiser
of the cubic through two values and slopes (eq. 3.59) or of the quadratic
through two values and one slope (eq. 3.58), and the safeguarded trial step
of the zoom phase (Alg. 3.6) built from them.  The minimisers are returned as
a fraction ``theta`` of the interval ``[a, b]`` (the minimiser is ``a + theta
(b - a)``), which is the quantity the safeguard clips.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Trial", "cubic_min_fraction", "quadratic_min_fraction", "interpolate_step"]


@dataclass(frozen=True)
class Trial:
    """One evaluated step length of the scalar search.

    Attributes
    ----------
    a : float
        Step length.
    f : float
        ``phi(a)``.
    dphi : float or None
        ``phi'(a)``; None when ``f`` or the slope is not finite (unusable).
    """

    a: float
    f: float
    dphi: float | None


def cubic_min_fraction(a: float, fa: float, da: float, b: float, fb: float, db: float) -> float | None:
    """Minimiser of the cubic interpolating ``phi, phi'`` at ``a`` and ``b`` (N&W eq. 3.59).

    Parameters
    ----------
    a, b : float
        The two step lengths (``a`` plays ``alpha_{i-1}``, ``b`` plays
        ``alpha_i`` of eq. 3.59; either order on the real line).
    fa, da, fb, db : float
        ``phi`` and ``phi'`` at ``a`` and at ``b``.

    Returns
    -------
    float or None
        ``theta`` such that the minimiser is ``a + theta (b - a)``; None when
        ``a == b``, the cubic has no local minimiser (negative discriminant
        ``d1^2 - phi'(a) phi'(b)``), the denominator vanishes or the result is
        not finite.
    """
    L = b - a
    if L == 0.0:
        return None
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    if not disc >= 0.0:
        return None
    d2 = math.copysign(math.sqrt(disc), L)
    den = db - da + 2.0 * d2
    if den == 0.0:
        return None
    theta = (b - L * (db + d2 - d1) / den - a) / L
    return theta if math.isfinite(theta) else None


def quadratic_min_fraction(a: float, fa: float, da: float, b: float, fb: float) -> float | None:
    """Minimiser of the quadratic interpolating ``phi(a), phi'(a), phi(b)`` (N&W eq. 3.58).

    Eq. 3.58 is written for the interval ``[0, alpha_0]``; here it is shifted
    to ``[a, b]``.

    Parameters
    ----------
    a, b : float
        The two step lengths.
    fa, da : float
        ``phi`` and ``phi'`` at ``a``.
    fb : float
        ``phi`` at ``b``.

    Returns
    -------
    float or None
        ``theta`` such that the minimiser is ``a + theta (b - a)``; None when
        ``a == b``, the quadratic is not strictly convex or the result is not
        finite.
    """
    L = b - a
    if L == 0.0:
        return None
    den = 2.0 * (fb - fa - da * L)
    if not den > 0.0:
        return None
    theta = -da * L / den
    return theta if math.isfinite(theta) else None


def interpolate_step(lo: Trial, hi: Trial, f0: float, dphi0: float, c1: float, reduce_factor: float) -> float:
    """Safeguarded trial step of the zoom phase between ``lo`` and ``hi``.

    The cubic (:func:`cubic_min_fraction`) is tried when both slopes are
    usable, then the quadratic (:func:`quadratic_min_fraction`).  If ``hi``
    violates ``hi.f <= f0 + c1 hi.a dphi0``, is not finite or has no usable
    slope, the ratio ``theta = (a - lo.a)/(hi.a - lo.a)`` is clipped to
    ``[min(reduce_factor, 0.5), 0.5]`` (``min(reduce_factor, 0.5)`` itself
    when interpolation is unusable); otherwise to ``[0.1, 0.9]`` (bisection
    when unusable).

    Parameters
    ----------
    lo, hi : Trial
        Ends of the bracket (:class:`Trial`: ``a``,
        ``f``, ``dphi``); ``lo`` satisfies sufficient decrease, ``lo.a !=
        hi.a``.
    f0, dphi0 : float
        ``phi(0)`` and ``phi'(0)``.
    c1 : float
        Sufficient-decrease constant.
    reduce_factor : float in (0, 1)
        Shrink safeguard, see :class:`pypty.optim.linesearch.WolfeOptions`.

    Returns
    -------
    float
        ``lo.a + theta (hi.a - lo.a)``.
    """
    L = hi.a - lo.a
    finite_hi = math.isfinite(hi.f)
    shrink = (not finite_hi) or hi.dphi is None or hi.f > f0 + c1 * hi.a * dphi0
    rf = min(reduce_factor, 0.5)
    lo_c, hi_c, default = (rf, 0.5, rf) if shrink else (0.1, 0.9, 0.5)
    theta = None
    if finite_hi and lo.dphi is not None:
        if hi.dphi is not None:
            theta = cubic_min_fraction(lo.a, lo.f, lo.dphi, hi.a, hi.f, hi.dphi)
        if theta is None:
            theta = quadratic_min_fraction(lo.a, lo.f, lo.dphi, hi.a, hi.f)
    if theta is None:
        theta = default
    theta = min(max(theta, lo_c), hi_c)
    return lo.a + theta * L
