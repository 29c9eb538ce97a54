"""Tests for pypty.optim.linesearch / interpolation: the scalar strong-Wolfe search on 1-D functions."""
import math

import numpy as np
import pytest

from pypty.optim.interpolation import cubic_min_fraction, interpolate_step, quadratic_min_fraction
from pypty.optim.linesearch import (LineSearchResult, StrongWolfeSearch, Trial, WolfeOptions, line_search,
                                    scalar_search_wolfe, sufficient_decrease)


class Recorder:
    """``phi(a) -> (value, slope)`` from two callables, recording the trial steps."""

    def __init__(self, f, df):
        self.f, self.df, self.calls = f, df, []

    def __call__(self, a):
        self.calls.append(a)
        return self.f(a), self.df(a)

    def search(self, a0, **options):
        return scalar_search_wolfe(self, self.f(0.0), self.df(0.0), a0, WolfeOptions(**options))


def strong_wolfe_holds(phi, res, c1, c2):
    a, f0, d0 = res.step, phi.f(0.0), phi.df(0.0)
    return (res.f == phi.f(a) and res.dphi == phi.df(a) and res.f < f0
            and res.f <= f0 + c1 * a * d0 and abs(res.dphi) <= c2 * abs(d0))


# ------------------------------------------------------------------ the search
@pytest.mark.parametrize("a0", [1e-3, 0.3, 1.0, 7.0, 1e3])
@pytest.mark.parametrize("c1,c2", [(1e-4, 0.9), (0.1, 0.2), (0.3, 0.4)])
def test_returned_step_satisfies_strong_wolfe(a0, c1, c2):
    phi = Recorder(lambda a: (a - 2.0) ** 4 - 3.0 * a + math.sin(3.0 * a),
                   lambda a: 4.0 * (a - 2.0) ** 3 - 3.0 + 3.0 * math.cos(3.0 * a))
    res = phi.search(a0, c1=c1, c2=c2, max_count=50)
    assert isinstance(res, LineSearchResult)
    assert res.message == "" and res.step is not None
    assert res.step == phi.calls[-1] and res.n_evals == len(phi.calls)
    assert strong_wolfe_holds(phi, res, c1, c2)


@pytest.mark.parametrize("optimism,expected", [(3.0, [1.0, 3.0, 9.0, 27.0]), (2.0, [1.0, 2.0, 4.0, 8.0, 16.0])])
def test_bracketing_expands_by_optimism_while_slope_is_steep(optimism, expected):
    phi = Recorder(lambda a: (a - 100.0) ** 2, lambda a: 2.0 * (a - 100.0))
    res = phi.search(1.0, optimism=optimism)
    assert phi.calls == expected
    assert res.step == expected[-1] and res.message == ""


def test_zoom_shrinks_after_failed_sufficient_decrease():
    phi = Recorder(lambda a: (a - 1.0) ** 2, lambda a: 2.0 * (a - 1.0))
    res = phi.search(10.0, reduce_factor=0.05)
    # phi(10) = 81 > phi(0): the cubic through (0, 1, -2) and (10, 81, 18) is exact, minimiser 1
    assert phi.calls == [10.0, 1.0]
    assert res.step == 1.0 and res.f == 0.0 and res.n_evals == 2


def test_shrink_is_clipped_to_half_and_to_reduce_factor():
    # hi fails sufficient decrease, no slope: quadratic theta = 1/22, clipped below at reduce_factor
    lo, hi = Trial(0.0, 0.0, -1.0), Trial(1.0, 10.0, None)
    assert interpolate_step(lo, hi, 0.0, -1.0, 0.1, 0.2) == 0.2
    assert interpolate_step(lo, hi, 0.0, -1.0, 0.1, 0.01) == pytest.approx(1.0 / 22.0)
    assert interpolate_step(lo, hi, 0.0, -1.0, 0.1, 0.9) == 0.5  # reduce_factor capped at 0.5
    hi = Trial(1.0, -0.1, None)  # sufficient decrease but unusable slope -> shrink: 1/(2*0.9) ~ 0.556 -> 0.5
    assert interpolate_step(lo, hi, 0.0, -1.0, 0.01, 0.1) == pytest.approx(0.5)
    hi = Trial(1.0, -0.5, 0.5)  # both fine: cubic result, clipped to [0.1, 0.9]
    a = interpolate_step(lo, hi, 0.0, -1.0, 0.1, 0.1)
    assert 0.1 <= a <= 0.9 and a == pytest.approx(cubic_min_fraction(0.0, 0.0, -1.0, 1.0, -0.5, 0.5))


def test_bracket_ends_are_ordered_lo_first():
    phi = Recorder(lambda a: (a - 1.0) ** 2, lambda a: 2.0 * (a - 1.0))
    search = StrongWolfeSearch(phi, 1.0, -2.0, WolfeOptions(c1=1e-4, c2=0.5))
    lo, hi = search.bracket(1.9)  # decrease, but the slope turned positive: lo is the new trial
    assert (lo.a, hi.a) == (1.9, 0.0) and lo.f == phi.f(1.9) and lo.dphi == phi.df(1.9) and hi.f == 1.0
    lo, hi = search.bracket(5.0)  # no decrease: lo is the start
    assert (lo.a, hi.a) == (0.0, 5.0) and hi.f == 16.0


def test_zoom_moves_hi_to_lo_when_the_minimiser_is_behind():
    # zoom trial 3 overshoots the minimiser 2 (positive slope): the bracket becomes [3, 0], next trial 2
    phi = Recorder(lambda a: math.inf if a > 5.0 else -2.0 * a + 0.5 * a * a,
                   lambda a: math.nan if a > 5.0 else a - 2.0)
    res = phi.search(10.0, reduce_factor=0.3, c1=0.01, c2=0.1)
    assert phi.calls[:2] == [10.0, 3.0] and len(phi.calls) == 3
    assert phi.calls[2] == pytest.approx(2.0) and res.step == phi.calls[2]


def test_zoom_never_returns_a_point_above_lo():
    # the second zoom trial (about 2.63) decreases sufficiently and is flat enough, but lies above lo
    phi = Recorder(lambda a: (a - 2.0) ** 2 - 4.0, lambda a: 2.0 * (a - 2.0))
    search = StrongWolfeSearch(phi, 0.0, -4.0, WolfeOptions(c1=1e-4, c2=0.5, reduce_factor=0.3))
    lo = Trial(1.9, phi.f(1.9), phi.df(1.9))
    res = search.zoom(lo, Trial(10.0, phi.f(10.0), phi.df(10.0)))
    assert phi.calls[:2] == pytest.approx([4.33, 2.629]) and phi.f(phi.calls[1]) > lo.f
    assert res.f < lo.f and res.step == pytest.approx(2.0)


@pytest.mark.parametrize("bad,second", [((math.inf, 1.0), 3.0), ((math.nan, math.nan), 3.0),
                                        ((-1.0, math.nan), 5.0)])
def test_non_finite_trial_is_handled(bad, second):
    def f(a):
        return bad[0] if a > 2.0 else (a - 1.0) ** 2

    def df(a):
        return bad[1] if a > 2.0 else 2.0 * (a - 1.0)

    phi = Recorder(f, df)
    res = phi.search(10.0, reduce_factor=0.3)
    # non-finite value: theta = reduce_factor; finite value, NaN slope: quadratic, clipped at 0.5
    assert phi.calls[:2] == [10.0, second]
    assert res.message == "" and math.isfinite(res.f) and res.step <= 2.0
    assert strong_wolfe_holds(phi, res, 0.1, 0.9)


def test_max_count_stops_with_message():
    phi = Recorder(lambda a: -a - a * a, lambda a: -1.0 - 2.0 * a)  # never flat: curvature never holds
    res = phi.search(1.0, max_count=3)
    assert phi.calls == [1.0, 3.0, 9.0]
    assert res.step is None and res.f is None and res.n_evals == 3
    assert res.message == "max_count=3 evaluations reached"


def test_min_step_stops_with_message():
    phi = Recorder(lambda a: 0.0 if a == 0.0 else math.inf, lambda a: -1.0 if a == 0.0 else math.nan)
    res = phi.search(0.5, min_step=1e-3, max_count=math.inf)
    assert phi.calls == pytest.approx([0.5, 0.05, 0.005])
    assert res.step is None and res.n_evals == 3 and res.message == "step below min_step=0.001"
    res = phi.search(1e-4, min_step=1e-3)
    assert res.n_evals == 0 and res.message == "step below min_step=0.001"


def test_overflow_and_collapsed_bracket_messages():
    phi = Recorder(lambda a: -a, lambda a: -1.0)
    res = phi.search(1.0, max_count=math.inf)
    assert res.message == "step length overflow" and res.step is None
    assert math.isfinite(phi.calls[-1]) and phi.calls[-1] * 3.0 == math.inf
    flat = Recorder(lambda a: 1.0 - a, lambda a: -1.0)
    res = flat.search(0.0, min_step=0.0)  # phi(0) == phi(0): not a decrease, bracket [0, 0]
    assert res.message == "bracket collapsed" and res.n_evals == 1


def test_options_are_validated():
    for bad in (dict(c1=0.9, c2=0.1), dict(reduce_factor=1.0), dict(optimism=1.0), dict(max_count=0),
                dict(min_step=-1.0)):
        with pytest.raises(ValueError):
            WolfeOptions(**bad)


def test_sufficient_decrease_needs_strict_decrease_and_finite_value():
    assert sufficient_decrease(1.0, -0.2, 0.0, -1.0, 0.1)
    assert not sufficient_decrease(1.0, -0.05, 0.0, -1.0, 0.1)  # Armijo fails
    assert not sufficient_decrease(1.0, 0.0, 0.0, 0.0, 0.1)  # equal value
    assert not sufficient_decrease(1.0, -math.inf, 0.0, -1.0, 0.1)


# -------------------------------------------------------- interpolation helpers
def test_cubic_minimiser_of_a_known_cubic():
    def phi(a):
        return a ** 3 - 3.0 * a, 3.0 * a ** 2 - 3.0  # local minimiser at a = 1

    for a, b in [(0.0, 2.0), (2.0, 0.0), (0.0, 3.0), (0.5, 1.2)]:
        theta = cubic_min_fraction(a, *phi(a), b, *phi(b))
        assert a + theta * (b - a) == pytest.approx(1.0, rel=1e-12)


def test_quadratic_minimiser_of_a_known_quadratic():
    def q(a):
        return 3.0 * (a - 1.0) ** 2 + 2.0, 6.0 * (a - 1.0)

    for a, b in [(0.0, 4.0), (2.0, -2.0), (-5.0, 0.5)]:
        theta = quadratic_min_fraction(a, *q(a), b, q(b)[0])
        assert a + theta * (b - a) == pytest.approx(1.0, rel=1e-12)


def test_interpolation_helpers_return_none_when_unusable():
    assert cubic_min_fraction(1.0, 0.0, -1.0, 1.0, 0.0, 1.0) is None  # a == b
    assert cubic_min_fraction(0.0, 0.0, -1.0, 1.0, -0.5, -1.0) is None  # negative discriminant
    assert cubic_min_fraction(0.0, 0.0, -1.0, 1.0, math.nan, 1.0) is None
    assert cubic_min_fraction(0.0, 0.0, -1.0, 1.0, math.inf, 1.0) is None
    assert cubic_min_fraction(0.0, 0.0, -1.0, 1.0, -1.0, -1.0) is None  # linear: vanishing denominator
    assert quadratic_min_fraction(1.0, 0.0, -1.0, 1.0, 3.0) is None  # a == b
    assert quadratic_min_fraction(0.0, 0.0, -1.0, 1.0, -2.0) is None  # concave
    assert quadratic_min_fraction(0.0, 0.0, -1.0, 1.0, -1.0) is None  # linear
    assert quadratic_min_fraction(0.0, 0.0, -1.0, 1.0, math.nan) is None


# ---------------------------------------------------------- block-dict adapter
def test_line_search_falls_back_to_best_point_and_returns_its_arrays():
    x0 = {"v": np.zeros(3), "z": np.zeros(2, dtype=np.complex128)}
    d = {"v": np.ones(3), "z": np.array([1j, -1.0])}
    evaluated = []

    def fun(x):  # linear loss -<d, x> inside a ball, +inf outside
        evaluated.append(x)
        g = {k: -v for k, v in d.items()}
        inside = sum(float(np.sum(np.abs(v) ** 2)) for v in x.values()) < 20.0
        return (-sum(float(np.real(np.vdot(d[k], x[k]))) for k in x) if inside else math.inf), g

    opt = WolfeOptions(max_count=2)
    pt, n, msg = line_search(fun, x0, d, 0.0, -5.0, 1.0, opt)
    assert n == 2 and len(evaluated) == 2  # trials 1 (steep decrease) and 3 (inf), then the budget is spent
    assert msg == "line search stopped (max_count=2 evaluations reached); accepted best sufficient-decrease point"
    assert pt.a == 1.0 and pt.f == -5.0 and pt.x is evaluated[0]
    assert np.array_equal(pt.g["v"], -d["v"])
    pt, n, msg = line_search(lambda x: (math.inf, x), x0, d, 0.0, -5.0, 1.0, opt)
    assert pt is None and n == 2 and msg == "max_count=2 evaluations reached"
