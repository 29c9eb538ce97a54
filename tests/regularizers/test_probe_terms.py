"""Probe loss terms (design/regularizers.md 3.2, 3.3, 4.2): gradients, properties, behaviour; sigmoid_mask."""
import math

import numpy as np
import pytest

from pypty.initialize.masks import sigmoid_mask
from pypty.optim import LBFGS
from pypty.regularizers import REGISTRY
from pypty.regularizers.probe_terms import (
    ProbeMaskTerm,
    ProbeWindowTerm,
    dominant_modes,
    window_map,
)

Y, X = 12, 14


def _p(**kw):
    p = {"probe_reg_constraint_weight": 0.0, "probe_constraint_mask": None, "aperture_mask": None,
         "probe_constraint_power_thresh": 1.0, "window_weight": 0.0, "window": None}
    p.update(kw)
    return p


def _probe(rng, shape=(2, 3, Y, X)):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _soft_mask(rng):
    return np.clip(sigmoid_mask((Y, X), 0.6, 0.1) + 0.1 * rng.random((Y, X)), 0, 1)


def _vg(term, bk, probe, epoch=0):
    v, g = term.value_and_grad({"probe": bk.asarray(probe)}, epoch)
    return v, (bk.to_numpy(g["probe"]) if "probe" in g else None)


def _fd_check(term, bk, probe, epoch=0, h=1e-6):
    """Central difference along a random complex direction against <G, d> (design section 0)."""
    rng = np.random.default_rng(5)
    d = _probe(rng, probe.shape)
    _, g = _vg(term, bk, probe, epoch)
    ana = float(np.real(np.vdot(g.ravel(), d.ravel())))
    num = (_vg(term, bk, probe + h * d, epoch)[0] - _vg(term, bk, probe - h * d, epoch)[0]) / (2 * h)
    assert abs(num - ana) <= 1e-6 * max(1.0, abs(ana)), (ana, num)
    assert abs(ana) > 1e-3


# ------------------------------------------------------------------ sigmoid_mask
def test_sigmoid_mask_values_centre_and_edge():
    m = sigmoid_mask((16, 20), 0.5, 0.05)
    assert m.shape == (16, 20) and m.dtype == np.float64
    assert m.min() >= 0 and m.max() <= 1
    assert m[8, 10] == m.max() and m[8, 10] > 0.999
    # 1/2 at abs(f) = radius/2 = 0.25 cycles/px: 4 px along y (16 px), 5 px along x (20 px)
    assert m[8 + 4, 10] == pytest.approx(0.5) and m[8, 10 + 5] == pytest.approx(0.5)
    # the edge spans about `width` cycles/px: 0.993 -> 0.007 over [f0 - w/2, f0 + w/2]
    assert sigmoid_mask((200, 200), 0.5, 0.05)[100, 100 + 45] == pytest.approx(1 / (1 + math.exp(-5)))
    assert m[0, 0] < 1e-6  # beyond Nyquist in the corner


def test_sigmoid_mask_rejects_bad_input():
    for args in [((0, 4), 0.5, 0.1), ((4,), 0.5, 0.1), ((4, 4), 0, 0.1), ((4, 4), 0.5, -1), ((4, 4), math.nan, 1)]:
        with pytest.raises(ValueError):
            sigmoid_mask(*args)


# ------------------------------------------------------------------ reciprocal-space term
def test_registered_and_params():
    assert REGISTRY["probe_mask"] is ProbeMaskTerm and REGISTRY["probe_window"] is ProbeWindowTerm
    assert set(ProbeMaskTerm.PARAMS) == {"probe_reg_constraint_weight", "probe_constraint_mask", "aperture_mask",
                                         "probe_constraint_power_thresh"}
    assert set(ProbeWindowTerm.PARAMS) == {"window_weight", "window"}


def test_mask_gradient_matches_central_differences(bk):
    rng = np.random.default_rng(0)
    term = ProbeMaskTerm(_p(probe_reg_constraint_weight=0.7, aperture_mask=_soft_mask(rng)), bk)
    _fd_check(term, bk, _probe(rng))


def test_mask_gradient_with_frozen_modes_matches_central_differences(bk):
    rng = np.random.default_rng(1)
    probe = _probe(rng) * np.array([3.0, 1.0, 0.1])[None, :, None, None]
    term = ProbeMaskTerm(_p(probe_reg_constraint_weight=0.7, aperture_mask=_soft_mask(rng),
                            probe_constraint_power_thresh=0.8), bk)
    term.begin_epoch({"probe": bk.asarray(probe)}, 0)
    _fd_check(term, bk, probe)


def test_mask_is_quadratic_zero_when_band_limited_and_mode_invariant(bk):
    rng = np.random.default_rng(2)
    a = (sigmoid_mask((Y, X), 0.6, 0.01) > 0.5).astype(float)
    term = ProbeMaskTerm(_p(probe_reg_constraint_weight=1.3, probe_constraint_mask=a), bk)
    probe = _probe(rng)
    r1 = _vg(term, bk, probe)[0]
    assert r1 > 0
    assert _vg(term, bk, 2 * probe)[0] == pytest.approx(4 * r1, rel=1e-12)
    # band-limited inside A: R = 0 and G = 0
    inside = np.fft.ifft2(np.fft.ifftshift(a) * np.fft.fft2(probe, norm="ortho"), norm="ortho")
    r0, g0 = _vg(term, bk, inside)
    assert abs(r0) < 1e-20 and np.abs(g0).max() < 1e-12
    # unitary mixing of the modes: P -> V P over m
    v, _ = np.linalg.qr(rng.standard_normal((3, 3)) + 1j * rng.standard_normal((3, 3)))
    assert _vg(term, bk, np.einsum("nm,umyx->unyx", v, probe))[0] == pytest.approx(r1, rel=1e-12)
    # R is the power outside the aperture, in counts, times w (unitary FFT)
    fp = np.fft.fft2(probe, norm="ortho")
    assert r1 == pytest.approx(1.3 * np.sum(np.fft.ifftshift(1 - a) * np.abs(fp) ** 2), rel=1e-12)


def test_mask_precedence_and_user_mask_untouched(bk):
    rng = np.random.default_rng(3)
    a, b = _soft_mask(rng), _soft_mask(rng)
    a0 = a.copy()
    probe = _probe(rng)
    only_ap = ProbeMaskTerm(_p(probe_reg_constraint_weight=1.0, aperture_mask=a), bk)
    only_pc = ProbeMaskTerm(_p(probe_reg_constraint_weight=1.0, probe_constraint_mask=a, aperture_mask=b), bk)
    assert _vg(only_ap, bk, probe)[0] == _vg(only_pc, bk, probe)[0]
    assert only_ap.key(0) == only_pc.key(0)
    assert np.array_equal(a, a0)


def test_mask_from_params_active_and_check_params(bk):
    a = np.ones((Y, X))
    assert ProbeMaskTerm.from_params(_p(aperture_mask=a), bk) is None  # w = 0
    assert ProbeMaskTerm.from_params(_p(probe_reg_constraint_weight=math.inf, aperture_mask=a), bk) is None
    t = ProbeMaskTerm.from_params(_p(probe_reg_constraint_weight=lambda e: [0.0, 2.0, math.inf][e],
                                     aperture_mask=a), bk)
    assert [t.active(e) for e in range(3)] == [False, True, False]
    assert ProbeMaskTerm.check_params(_p()) == []
    assert ProbeMaskTerm.check_params(_p(probe_reg_constraint_weight=math.inf)) == []  # left to the constraint
    errs = ProbeMaskTerm.check_params(_p(probe_reg_constraint_weight=1.0))
    assert len(errs) == 1 and "probe_reg_constraint_weight" in errs[0] and "aperture_mask" in errs[0]
    errs = ProbeMaskTerm.check_params(_p(probe_reg_constraint_weight=1.0, probe_constraint_mask=2 * a))
    assert len(errs) == 1 and errs[0].startswith("parameter 'probe_constraint_mask'")
    errs = ProbeMaskTerm.check_params(_p(probe_reg_constraint_weight=1.0, aperture_mask=np.ones(4)))
    assert len(errs) == 1 and errs[0].startswith("parameter 'aperture_mask'")
    errs = ProbeMaskTerm.check_params(_p(probe_reg_constraint_weight=1.0, aperture_mask=a,
                                         probe_constraint_power_thresh=1.5))
    assert len(errs) == 1 and "probe_constraint_power_thresh" in errs[0]
    p = _p(probe_reg_constraint_weight=1.0, aperture_mask=a)
    del p["probe_constraint_power_thresh"]  # an extension row the table may not have yet: default 1
    assert ProbeMaskTerm.check_params(p) == [] and ProbeMaskTerm(p, bk).key(0)[2] == "1.0"
    with pytest.raises(ValueError, match="aperture_mask"):  # wrong shape at evaluation
        _vg(ProbeMaskTerm(_p(probe_reg_constraint_weight=1.0, aperture_mask=np.ones((4, 4))), bk), bk,
            np.ones((1, 1, Y, X), complex))


def test_dominant_modes():
    sel = dominant_modes([[10.0, 1.0, 0.01], [0.01, 1.0, 10.0], [0.0, 0.0, 0.0]], 0.9)
    assert sel.tolist() == [[True, False, False], [False, False, True], [True, True, True]]
    assert dominant_modes([[1.0, 1.0, 2.0]], 0.5).tolist() == [[False, False, True]]  # exactly reaches t
    assert dominant_modes([[1.0, 1.0, 2.0]], 0.75).tolist() == [[True, False, True]]
    assert dominant_modes([[1.0, 2.0]], 1.0).all()


def test_power_thresh_freezes_the_mode_set_per_epoch(bk):
    rng = np.random.default_rng(4)
    a = _soft_mask(rng)
    probe = _probe(rng, (1, 3, Y, X)) * np.array([3.0, 1.0, 0.1])[None, :, None, None]
    term = ProbeMaskTerm(_p(probe_reg_constraint_weight=1.0, aperture_mask=a,
                            probe_constraint_power_thresh=lambda e: 0.8), bk)
    with pytest.raises(RuntimeError, match="begin_epoch"):
        _vg(term, bk, probe)
    term.begin_epoch({"probe": bk.asarray(probe)}, 0)
    full = ProbeMaskTerm(_p(probe_reg_constraint_weight=1.0, aperture_mask=a), bk)
    r, g = _vg(term, bk, probe)
    assert r == pytest.approx(_vg(full, bk, probe[:, :1])[0], rel=1e-12)  # only the dominant mode
    assert np.all(g[:, 1:] == 0)
    # a trial point where mode 1 dominates: the set stays frozen for the epoch
    swapped = probe[:, [1, 0, 2]]
    assert _vg(term, bk, swapped)[0] == pytest.approx(_vg(full, bk, swapped[:, :1])[0], rel=1e-12)
    key0 = term.key(0)
    term.begin_epoch({"probe": bk.asarray(swapped)}, 1)  # the next epoch recomputes it, and the key says so
    assert term.key(1) != key0
    assert _vg(term, bk, swapped, epoch=1)[0] == pytest.approx(_vg(full, bk, swapped[:, 1:2])[0], rel=1e-12)


def test_mask_removes_out_of_aperture_power(bk):
    """Behaviour: minimise ||P - P0||^2 + R; P0 carries 10% of its power outside A."""
    rng = np.random.default_rng(6)
    a = (sigmoid_mask((Y, X), 0.6, 0.01) > 0.5).astype(float)
    ab = np.fft.ifftshift(a)
    inside = np.fft.ifft2(ab * np.fft.fft2(_probe(rng, (1, 2, Y, X))))
    outside = np.fft.ifft2((1 - ab) * np.fft.fft2(_probe(rng, (1, 2, Y, X))))
    outside *= np.sqrt(0.1 / 0.9 * np.sum(np.abs(inside) ** 2) / np.sum(np.abs(outside) ** 2))
    p0 = inside + outside

    def frac_out(p):
        fp = np.fft.fft2(p)
        return np.sum((1 - ab) * np.abs(fp) ** 2) / np.sum(np.abs(fp) ** 2)

    assert frac_out(p0) == pytest.approx(0.1)
    term = ProbeMaskTerm(_p(probe_reg_constraint_weight=100.0, aperture_mask=a), bk)
    p0d = bk.asarray(p0)

    def fun(x):
        d = x["probe"] - p0d
        r, g = term.value_and_grad(x, 0)
        return float(bk.xp.sum(bk.xp.abs(d) ** 2)) + r, {"probe": 2 * d + g["probe"]}

    opt, x = LBFGS(hist_length=5), {"probe": p0d}
    f, g = fun(x)
    for _ in range(10):
        res = opt.step(fun, x, f, g)
        x, f, g = res.x, res.f, res.g
    p = bk.to_numpy(x["probe"])
    assert frac_out(p) < 1e-3
    assert np.abs(np.fft.ifft2(ab * np.fft.fft2(p - p0))).max() < 1e-6  # the aperture content is kept


# ------------------------------------------------------------------ real-space window
def test_window_gradient_matches_central_differences(bk):
    rng = np.random.default_rng(7)
    _fd_check(ProbeWindowTerm(_p(window_weight=0.9, window=[0.3, 0.8]), bk), bk, _probe(rng))
    _fd_check(ProbeWindowTerm(_p(window_weight=0.9, window=rng.random((Y, X))), bk), bk, _probe(rng))


def test_window_map_properties():
    w = window_map([0.4, 0.8], (Y, X))
    h = min(Y, X) / 2
    assert w[Y // 2, X // 2] == 0
    yy, xx = np.meshgrid(np.arange(Y) - Y // 2, np.arange(X) - X // 2, indexing="ij")
    rho = np.hypot(yy, xx) / h
    assert np.all(w[rho >= 0.8] == 1) and np.all(w[rho <= 0.4] == 0)
    assert np.all((w >= 0) & (w <= 1))
    for d in range(1, min(Y, X) // 2):
        assert w[Y // 2 + d, X // 2] == w[Y // 2, X // 2 + d] == w[Y // 2 - d, X // 2] == w[Y // 2, X // 2 - d]
    ring = (rho > 0.4) & (rho < 0.8)
    assert np.allclose(w[ring], (1 - np.cos(np.pi * (rho[ring] - 0.4) / 0.4)) / 2)
    for bad in ([0.8, 0.4], np.ones((Y, X + 1)), -np.ones((Y, X)), np.ones((2, Y, X))):
        with pytest.raises(ValueError, match="window"):
            window_map(bad, (Y, X))


def test_window_value_repeatable_inputs_untouched_and_zero_inside(bk):
    rng = np.random.default_rng(8)
    user = rng.random((Y, X))
    keep = user.copy()
    term = ProbeWindowTerm(_p(window_weight=2.0, window=user), bk)
    probe = _probe(rng)
    pd = bk.asarray(probe)
    r1, g1 = term.value_and_grad({"probe": pd}, 0)
    r2, g2 = term.value_and_grad({"probe": pd}, 0)
    assert r1 == r2 and np.array_equal(bk.to_numpy(g1["probe"]), bk.to_numpy(g2["probe"]))
    assert np.array_equal(user, keep) and np.array_equal(bk.to_numpy(pd), probe)
    assert r1 == pytest.approx(2.0 * np.sum(user * np.abs(probe) ** 2), rel=1e-12)
    # P supported inside r0: R = 0, G = 0; invariant under unitary mode mixing
    radial = ProbeWindowTerm(_p(window_weight=2.0, window=[0.5, 0.9]), bk)
    small = probe * (window_map([0.5, 0.9], (Y, X)) == 0)
    r0, g0 = _vg(radial, bk, small)
    assert r0 == 0 and np.all(g0 == 0)
    v, _ = np.linalg.qr(rng.standard_normal((3, 3)) + 1j * rng.standard_normal((3, 3)))
    assert _vg(radial, bk, np.einsum("nm,umyx->unyx", v, probe))[0] == pytest.approx(_vg(radial, bk, probe)[0],
                                                                                        rel=1e-12)


def test_window_epoch_dependent_and_check_params(bk):
    rng = np.random.default_rng(9)
    probe = _probe(rng)
    term = ProbeWindowTerm.from_params(_p(window_weight=lambda e: 1.0 + e, window=lambda e: [0.2 + 0.1 * e, 0.9]), bk)
    r = [_vg(term, bk, probe, e)[0] for e in (0, 1, 0)]
    assert r[0] == r[2] != r[1]
    assert term.key(0) != term.key(1) and term.key(0) == term.key(0)
    assert ProbeWindowTerm.from_params(_p(window=[0.2, 0.9]), bk) is None
    assert ProbeWindowTerm.check_params(_p(window=None)) == []
    errs = ProbeWindowTerm.check_params(_p(window_weight=1.0))
    assert len(errs) == 1 and "window_weight" in errs[0] and "'window'" in errs[0]


def test_window_removes_ring_power(bk):
    """Behaviour: minimise ||P - P0||^2 + R; P0 has a ring with 5% of its power beyond r1."""
    rng = np.random.default_rng(10)
    w_map = window_map([0.4, 0.7], (Y, X))
    core = _probe(rng, (1, 2, Y, X)) * (w_map == 0)
    ring = _probe(rng, (1, 2, Y, X)) * (w_map == 1)
    ring *= np.sqrt(0.05 / 0.95 * np.sum(np.abs(core) ** 2) / np.sum(np.abs(ring) ** 2))
    p0 = core + ring

    def frac_out(p):
        return np.sum(np.abs(p * (w_map == 1)) ** 2) / np.sum(np.abs(p) ** 2)

    term = ProbeWindowTerm(_p(window_weight=50.0, window=[0.4, 0.7]), bk)
    p0d = bk.asarray(p0)

    def fun(x):
        d = x["probe"] - p0d
        r, g = term.value_and_grad(x, 0)
        return float(bk.xp.sum(bk.xp.abs(d) ** 2)) + r, {"probe": 2 * d + g["probe"]}

    opt, x = LBFGS(hist_length=5), {"probe": p0d}
    f, g = fun(x)
    for _ in range(10):
        res = opt.step(fun, x, f, g)
        x, f, g = res.x, res.f, res.g
    p = bk.to_numpy(x["probe"])
    assert frac_out(p0) == pytest.approx(0.05) and frac_out(p) < 0.005 * 0.05
    assert np.allclose(p * (w_map == 0), core, atol=1e-8)  # the core is left alone
