"""Strong-Wolfe line search: a scalar search and its adapter to block dicts.

Layers (Nocedal & Wright, *Numerical Optimization*, 2nd ed., Sec. 3.5):

* :mod:`pypty.optim.interpolation`: safeguarded trial steps of the zoom
  (cubic eq. 3.59, quadratic eq. 3.58).
* :class:`StrongWolfeSearch` (:meth:`~StrongWolfeSearch.bracket` = Alg. 3.5,
  :meth:`~StrongWolfeSearch.zoom` = Alg. 3.6) on ``phi(a) -> (phi, phi')``;
  :func:`scalar_search_wolfe` runs it.
* :class:`BlockLine` and :func:`line_search`: the adapter used by
  :class:`pypty.optim.LBFGS` over block dicts.

Sufficient decrease: ``phi(a)`` finite, ``phi(a) <= phi(0) + c1 a phi'(0)``
and ``phi(a) < phi(0)`` (a step that does not strictly lower the value is
never accepted).  Curvature: ``|phi'(a)| <= -c2 phi'(0)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy

from .blocks import axpy, check_grad, vdot
from .interpolation import Trial, interpolate_step

__all__ = ["WolfeOptions", "Trial", "LineSearchResult", "sufficient_decrease", "StrongWolfeSearch",
           "scalar_search_wolfe", "LinePoint", "BlockLine", "line_search"]


@dataclass(frozen=True)
class WolfeOptions:
    """Constants of the strong-Wolfe line search.

    Parameters
    ----------
    c1, c2 : float
        Wolfe constants, ``0 < c1 < c2 < 1`` (sufficient decrease, curvature).
    reduce_factor : float in (0, 1)
        Lower safeguard on the shrink ratio when the upper end of the bracket
        fails sufficient decrease; the ratio used when interpolation is
        unusable there (e.g. NaN/inf value).
    optimism : float > 1
        Growth factor of the trial step in the bracketing phase.
    max_count : int or math.inf
        Maximum number of evaluations of ``phi``.
    min_step : float >= 0
        A trial step below this ends the search.

    Raises
    ------
    ValueError
        A constant is out of range.
    """

    c1: float = 0.1
    c2: float = 0.9
    reduce_factor: float = 0.1
    optimism: float = 3.0
    max_count: float = 20
    min_step: float = 1e-20

    def __post_init__(self):
        if not 0.0 < self.c1 < self.c2 < 1.0:
            raise ValueError("need 0 < c1 < c2 < 1")
        if not 0.0 < self.reduce_factor < 1.0:
            raise ValueError("reduce_factor must be in (0, 1)")
        if not self.optimism > 1.0:
            raise ValueError("optimism must be > 1")
        if not self.max_count >= 1:
            raise ValueError("max_count must be >= 1, None or inf")
        if not self.min_step >= 0.0:
            raise ValueError("min_step must be >= 0")


@dataclass(frozen=True)
class LineSearchResult:
    """Outcome of :func:`scalar_search_wolfe`.

    Attributes
    ----------
    step : float or None
        Step satisfying the strong Wolfe conditions (and ``phi(step) <
        phi(0)``), or None when the search stopped without one.
    f, dphi : float or None
        ``phi`` and ``phi'`` at ``step`` (None when ``step`` is None).
    n_evals : int
        Number of calls of ``phi``.
    message : str
        ``""`` on success, otherwise why the search stopped: ``"step length
        overflow"``, ``"step below min_step=..."``, ``"max_count=...
        evaluations reached"`` or ``"bracket collapsed"``.
    """

    step: float | None
    f: float | None
    dphi: float | None
    n_evals: int
    message: str


def sufficient_decrease(a: float, f: float, f0: float, dphi0: float, c1: float) -> bool:
    """Armijo test (N&W eq. 3.6a) ``f <= f0 + c1 a dphi0``, plus finite ``f`` and ``f < f0``.

    Parameters
    ----------
    a, f : float
        Step length and ``phi(a)``.
    f0, dphi0 : float
        ``phi(0)`` and ``phi'(0) < 0``.
    c1 : float
        Sufficient-decrease constant.

    Returns
    -------
    bool
    """
    return math.isfinite(f) and f <= f0 + c1 * a * dphi0 and f < f0


class StrongWolfeSearch:
    """Strong-Wolfe search on a scalar function (N&W Alg. 3.5 bracketing + Alg. 3.6 zoom).

    Parameters
    ----------
    phi : callable
        ``phi(a) -> (value, slope)`` for a step length ``a >= 0`` (value and
        slope come from one evaluation); non-finite values or slopes are
        allowed and make the trial unusable.
    f0, dphi0 : float
        ``phi(0)`` (finite) and ``phi'(0) < 0``.
    options : WolfeOptions
        Constants of the search.

    Attributes
    ----------
    n_evals : int
        Calls of ``phi`` so far.
    """

    def __init__(self, phi, f0: float, dphi0: float, options: WolfeOptions):
        self.phi = phi
        self.f0, self.dphi0 = float(f0), float(dphi0)
        self.options = options
        self.n_evals = 0

    def run(self, a0: float) -> LineSearchResult:
        """Bracket from the first trial step ``a0``, then zoom.

        Returns
        -------
        LineSearchResult
            The first trial that satisfies both strong Wolfe conditions and
            ``phi(a) < phi(0)``, or ``step=None`` with the stop reason.
        """
        found = self.bracket(float(a0))
        return found if isinstance(found, LineSearchResult) else self.zoom(*found)

    def _evaluate(self, a: float) -> Trial:
        f, dphi = self.phi(a)
        self.n_evals += 1
        f = float(f)
        usable = math.isfinite(f) and dphi is not None and math.isfinite(dphi)
        return Trial(a, f, float(dphi) if usable else None)

    def _sufficient(self, t: Trial) -> bool:
        return t.dphi is not None and sufficient_decrease(t.a, t.f, self.f0, self.dphi0, self.options.c1)

    def _curvature(self, t: Trial) -> bool:  # strong Wolfe, N&W eq. 3.7b
        return abs(t.dphi) <= -self.options.c2 * self.dphi0

    def _blocked(self, a: float) -> str:
        """Why trial ``a`` may not be evaluated, or ``""``."""
        if not math.isfinite(a):
            return "step length overflow"
        if a < self.options.min_step:
            return f"step below min_step={self.options.min_step:g}"
        if not self.n_evals < self.options.max_count:
            return f"max_count={self.options.max_count} evaluations reached"
        return ""

    def _result(self, t: Trial | None, why: str = "") -> LineSearchResult:
        if t is None:
            return LineSearchResult(None, None, None, self.n_evals, why)
        return LineSearchResult(t.a, t.f, t.dphi, self.n_evals, "")

    def bracket(self, a0: float) -> tuple[Trial, Trial] | LineSearchResult:
        """Bracketing phase (N&W Alg. 3.5).

        Trial steps ``a0, optimism a0, optimism^2 a0, ...`` while they
        decrease sufficiently, lower the value and keep a steep negative slope.

        Returns
        -------
        (Trial, Trial) or LineSearchResult
            ``(lo, hi)`` for :meth:`zoom` (``lo`` is the end with sufficient
            decrease, possibly the point ``a = 0``), or the final result when
            a trial satisfies the strong Wolfe conditions or the search stops.
        """
        prev = Trial(0.0, self.f0, self.dphi0)
        a = a0
        while True:
            why = self._blocked(a)
            if why:
                return self._result(None, why)
            t = self._evaluate(a)
            if not self._sufficient(t) or (prev.a > 0 and t.f >= prev.f):
                return prev, t
            if self._curvature(t):
                return self._result(t)
            if t.dphi >= 0.0:
                return t, prev
            prev, a = t, self.options.optimism * a

    def zoom(self, lo: Trial, hi: Trial) -> LineSearchResult:
        """Zoom phase (N&W Alg. 3.6) inside the bracket ``(lo, hi)``.

        Trial steps come from :func:`interpolate_step`.  The search stops
        with ``"bracket collapsed"`` when ``|hi.a - lo.a| <= 1e-14 max(lo.a,
        hi.a)``.

        Returns
        -------
        LineSearchResult
        """
        while True:
            if abs(hi.a - lo.a) <= 1e-14 * max(lo.a, hi.a):
                return self._result(None, "bracket collapsed")
            a = interpolate_step(lo, hi, self.f0, self.dphi0, self.options.c1, self.options.reduce_factor)
            why = self._blocked(a)
            if why:
                return self._result(None, why)
            t = self._evaluate(a)
            if not self._sufficient(t) or t.f >= lo.f:
                hi = t
            elif self._curvature(t):
                return self._result(t)
            else:
                if t.dphi * (hi.a - lo.a) >= 0.0:
                    hi = lo
                lo = t


def scalar_search_wolfe(phi, f0: float, dphi0: float, a0: float, options: WolfeOptions | None = None
                        ) -> LineSearchResult:
    """Find a step satisfying the strong Wolfe conditions for a scalar function.

    Parameters
    ----------
    phi : callable
        ``phi(a) -> (value, slope)``, see :class:`StrongWolfeSearch`.
    f0, dphi0 : float
        ``phi(0)`` (finite) and ``phi'(0) < 0``.
    a0 : float
        First trial step, ``> 0``.
    options : WolfeOptions or None
        Constants; the defaults of :class:`WolfeOptions` if None.

    Returns
    -------
    LineSearchResult
    """
    options = WolfeOptions() if options is None else options
    return StrongWolfeSearch(phi, f0, dphi0, options).run(a0)


@dataclass(frozen=True)
class LinePoint:
    """An evaluated point of a block-dict line search.

    Attributes
    ----------
    a : float
        Step length along the direction.
    x : dict[str, array]
        ``x0 + a d``.
    f : float
        Loss at ``x``.
    g : dict[str, array]
        Gradient at ``x``.
    """

    a: float
    x: dict
    f: float
    g: dict


class BlockLine:
    """``phi(a) = fun(x + a d)`` over block dicts, as seen by the scalar search.

    Each call evaluates the objective once, keeps the point as :attr:`last`
    and, if it has a usable slope and decreases sufficiently with a lower loss
    than the previous best, as :attr:`best`.  Only these two points' arrays
    are kept.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> (loss, grad)`` on block dicts (see :mod:`pypty.optim`).
    x, d : dict[str, array]
        Start point and search direction (same keys and shapes).
    f0, dphi0 : float
        Loss at ``x`` and ``vdot(grad(x), d) < 0``.
    c1 : float
        Sufficient-decrease constant.

    Attributes
    ----------
    n_evals : int
        Calls of ``fun``.
    last, best : LinePoint or None
        Last evaluated point; best sufficient-decrease point so far.
    """

    def __init__(self, fun, x: dict, d: dict, f0: float, dphi0: float, c1: float):
        self.fun, self.x, self.d = fun, x, d
        self.f0, self.dphi0, self.c1 = f0, dphi0, c1
        self.n_evals = 0
        self.last: LinePoint | None = None
        self.best: LinePoint | None = None

    def __call__(self, a: float) -> tuple[float, float]:
        """Evaluate ``fun(x + a d)``; return the loss and the slope ``vdot(g, d)`` (NaN if the loss is not finite).

        Raises
        ------
        ValueError
            The gradient's keys or shapes do not match ``x``.
        """
        with numpy.errstate(over="ignore", invalid="ignore"):
            xa = axpy(a, self.d, self.x)
        f, g = self.fun(xa)
        self.n_evals += 1
        f = float(f)
        check_grad(self.x, g)
        dphi = vdot(g, self.d) if math.isfinite(f) else math.nan
        self.last = LinePoint(a, xa, f, g)
        if (math.isfinite(dphi) and sufficient_decrease(a, f, self.f0, self.dphi0, self.c1)
                and (self.best is None or f < self.best.f)):
            self.best = self.last
        return f, dphi


def line_search(fun, x: dict, d: dict, f0: float, dphi0: float, a0: float, options: WolfeOptions
                ) -> tuple[LinePoint | None, int, str]:
    """Strong-Wolfe line search along a block-dict direction.

    Runs :func:`scalar_search_wolfe` on :class:`BlockLine`.  When the scalar
    search stops without a strong-Wolfe step, the best sufficient-decrease
    point evaluated is accepted instead, if there is one.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> (loss, grad)`` on block dicts.
    x, d : dict[str, array]
        Start point and descent direction.
    f0, dphi0 : float
        Loss at ``x`` (finite) and ``vdot(grad(x), d) < 0``.
    a0 : float
        First trial step.
    options : WolfeOptions
        Constants of the search.

    Returns
    -------
    point : LinePoint or None
        Accepted point (its ``f < f0``), or None.
    n_evals : int
        Calls of ``fun``.
    message : str
        ``""`` for a strong-Wolfe step; ``"line search stopped (<why>);
        accepted best sufficient-decrease point"`` for the fallback; ``<why>``
        (see :class:`LineSearchResult`) when nothing is accepted.

    Raises
    ------
    ValueError
        A gradient returned by ``fun`` does not match ``x``.
    """
    line = BlockLine(fun, x, d, f0, dphi0, options.c1)
    res = scalar_search_wolfe(line, f0, dphi0, a0, options)
    if res.step is not None:
        return line.last, line.n_evals, ""
    if line.best is not None:
        return line.best, line.n_evals, f"line search stopped ({res.message}); accepted best sufficient-decrease point"
    return None, line.n_evals, res.message
