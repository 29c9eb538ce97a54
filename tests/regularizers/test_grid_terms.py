"""Scan-grid loss terms on positions and tilts (design/regularizers.md 3.6-3.8)."""
import numpy as np
import pytest

from pypty.optim import LBFGS
from pypty.regularizers import REGISTRY
from pypty.regularizers.grid_terms import (
    DeformationPositions,
    DeformationTilts,
    FastAxisPositions,
    FastAxisTilts,
    SlowAxisPositions,
    SlowAxisTilts,
    affine_basis,
)

SY, SX = 5, 6
N = SY * SX
ALL = (FastAxisPositions, SlowAxisPositions, DeformationPositions, FastAxisTilts, SlowAxisTilts, DeformationTilts)


def _p(**kw):
    p = {"scan_size": (SY, SX), "positions": np.zeros((N, 2)), "tilts": np.zeros((N, 6)), "tilt_mode": 3,
         "update_tilts": 1}
    for cls in ALL:
        p[cls.WEIGHT] = 0.0
    p.update(kw)
    return p


def _term(cls, bk, w=1.0, **kw):
    return cls(_p(**{cls.WEIGHT: w}, **kw), bk)


def _vg(term, bk, a, epoch=0):
    v, g = term.value_and_grad({term.ARRAY: bk.asarray(a)}, epoch)
    return v, (bk.to_numpy(g[term.ARRAY]) if g else None)


def _grid_yx(i, j):
    """An (N, 2) array from grid index arrays of shape (SY, SX) (raster order)."""
    return np.stack([i, j], axis=-1).reshape(N, 2)


def _ij():
    return np.meshgrid(np.arange(SY, dtype=float), np.arange(SX, dtype=float), indexing="ij")


def _affine(rng, cols=2):
    i, j = _ij()
    m = rng.standard_normal((3, cols)) * 5
    return (m[0] + i[..., None] * m[1] + j[..., None] * m[2]).reshape(N, cols)


@pytest.mark.parametrize("cls", ALL)
def test_gradient_matches_central_differences(bk, cls):
    rng = np.random.default_rng(0)
    cols = 2 if cls.ARRAY == "positions" else 6
    a = 10 * rng.standard_normal((N, cols))
    term = _term(cls, bk, w=0.7)
    d = rng.standard_normal(a.shape)
    h = 1e-6
    _, g = _vg(term, bk, a)
    ana = float(np.sum(g * d))
    num = (_vg(term, bk, a + h * d)[0] - _vg(term, bk, a - h * d)[0]) / (2 * h)
    assert abs(num - ana) <= 1e-6 * max(1.0, abs(ana)), (ana, num)
    assert abs(ana) > 1e-3 and g.dtype == np.float64 and g.shape == a.shape


def test_registered_names_and_params():
    for cls in ALL:
        assert REGISTRY[cls.name] is cls
        assert cls.PARAMS == (cls.WEIGHT,) and "scan_size" in cls.READS
        assert cls.name == cls.WEIGHT.replace("_reg_weight", "")
    assert len({cls.name for cls in ALL}) == 6


@pytest.mark.parametrize("cls", [FastAxisPositions, SlowAxisPositions, DeformationPositions])
def test_translation_invariant(bk, cls):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((N, 2))
    term = _term(cls, bk)
    r0, g0 = _vg(term, bk, a)
    r1, g1 = _vg(term, bk, a + np.array([3.7, -12.5]))
    assert r1 == pytest.approx(r0, rel=1e-12) and np.allclose(g1, g0, atol=1e-12)


def test_fast_axis_zero_for_line_wise_affine_grids(bk):
    rng = np.random.default_rng(2)
    _, j = _ij()
    q = rng.standard_normal((SY, 1, 2)) + rng.standard_normal((SY, 1, 2)) * j[..., None]  # per-line slope, offset
    r, g = _vg(_term(FastAxisPositions, bk), bk, q.reshape(N, 2))
    assert r < 1e-20 and np.abs(g).max() < 1e-10
    assert _vg(_term(SlowAxisPositions, bk), bk, q.reshape(N, 2))[0] > 0  # not linear along the columns


def test_fast_axis_value(bk):
    """One bump of 1 px at an interior point: L = (1 at j-1, -2 at j, 1 at j+1) -> R = w (1 + 4 + 1)."""
    a = np.zeros((N, 2))
    a[2 * SX + 3, 1] = 1.0
    assert _vg(_term(FastAxisPositions, bk, w=0.5), bk, a)[0] == pytest.approx(3.0)


def test_slow_axis_per_column(bk):
    rng = np.random.default_rng(3)
    i, _ = _ij()
    q = rng.standard_normal((1, SX, 2)) + rng.standard_normal((1, SX, 2)) * i[..., None]  # per-column linear
    r, g = _vg(_term(SlowAxisPositions, bk), bk, q.reshape(N, 2))
    assert r < 1e-20 and np.abs(g).max() < 1e-10
    # a column zig-zag that keeps every row sum (PyPty's row-sum term sees nothing): R > 0
    zig = np.zeros((SY, SX, 2))
    zig[:, :, 1] = np.where(np.arange(SX) % 2 == 0, 1.0, -1.0)[None, :] * np.where(np.arange(SY) % 2 == 0, 1, -1)[:,
                                                                                                              None]
    assert np.allclose(zig.sum(axis=1), 0)
    assert _vg(_term(SlowAxisPositions, bk), bk, zig.reshape(N, 2))[0] > 0
    # a one-row jump of 1 px: R = w * 6 per column (not 6 Sx^2)
    jump = np.zeros((SY, SX, 2))
    jump[2, :, 1] = 1.0
    assert _vg(_term(SlowAxisPositions, bk), bk, jump.reshape(N, 2))[0] == pytest.approx(6.0 * SX)


def test_tilts_weight_independent_of_positions_weight(bk):
    p = _p(slow_axis_reg_weight_tilts=2.0)
    assert SlowAxisPositions.from_params(p, bk) is None
    t = SlowAxisTilts.from_params(p, bk)
    assert t is not None and t.weight(0) == 2.0
    p = _p(slow_axis_reg_weight_positions=3.0)
    assert SlowAxisTilts.from_params(p, bk) is None and SlowAxisPositions.from_params(p, bk).weight(0) == 3.0


def test_tilts_only_used_columns_and_absent_array(bk):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((N, 6))
    for mode, used in [(0, [2, 3]), (1, [4, 5]), (2, [0, 1]), (3, [2, 3, 4, 5]), (4, list(range(6)))]:
        for cls in (FastAxisTilts, SlowAxisTilts, DeformationTilts):
            r, g = _vg(_term(cls, bk, tilt_mode=mode), bk, a)
            unused = [c for c in range(6) if c not in used]
            assert np.all(g[:, unused] == 0) and np.abs(g[:, used]).max() > 0
            b = a.copy()
            b[:, unused] = 100 * rng.standard_normal((N, len(unused)))
            assert _vg(_term(cls, bk, tilt_mode=mode), bk, b)[0] == r
    for cls in ALL:
        assert cls(_p(**{cls.WEIGHT: 1.0}), bk).value_and_grad({}, 0) == (0.0, {})


def test_from_params_without_tilts_in_model(bk):
    p = _p(update_tilts=0, fast_axis_reg_weight_tilts=1.0)
    assert FastAxisTilts.from_params(p, bk) is None and FastAxisTilts.check_params(p) == []
    p["tilts"] = np.ones((N, 6))  # non-zero tilts are in the model
    assert FastAxisTilts.from_params(p, bk) is not None
    assert FastAxisTilts.from_params(_p(fast_axis_reg_weight_tilts=lambda e: e), bk) is not None
    assert FastAxisTilts.from_params(_p(), bk) is None


def test_check_params():
    for cls in ALL:
        assert cls.check_params(_p()) == []  # weight 0: nothing to check
        assert cls.check_params(_p(**{cls.WEIGHT: 1.0})) == []
        errs = cls.check_params(_p(scan_size=None, **{cls.WEIGHT: 1.0}))
        assert len(errs) == 1 and f"parameter '{cls.WEIGHT}'" in errs[0] and "scan_size" in errs[0]
        errs = cls.check_params(_p(scan_size=(SY, SX + 1), **{cls.WEIGHT: "on"}))
        assert len(errs) == 1 and errs[0].startswith("parameter 'scan_size'") and cls.WEIGHT in errs[0]
    for cls in (FastAxisTilts, SlowAxisTilts, DeformationTilts):
        errs = cls.check_params(_p(tilts=np.ones((1, 6)), **{cls.WEIGHT: 1.0}))
        assert len(errs) == 1 and "'tilts' has 1 row" in errs[0]
    for cls in (FastAxisPositions, SlowAxisPositions, DeformationPositions):
        assert cls.check_params(_p(tilts=np.ones((1, 6)), **{cls.WEIGHT: 1.0})) == []


def test_scan_size_mismatch_at_evaluation(bk):
    with pytest.raises(ValueError, match="scan_size"):
        _vg(_term(FastAxisPositions, bk), bk, np.zeros((N + 1, 2)))


def test_deformation_zero_for_affine_grids(bk):
    rng = np.random.default_rng(5)
    for _ in range(3):
        r, g = _vg(_term(DeformationPositions, bk), bk, _affine(rng))
        assert r < 1e-20 and np.abs(g).max() < 1e-9
        r, _ = _vg(_term(DeformationTilts, bk, tilt_mode=4), bk, _affine(rng, 6))
        assert r < 1e-20
    b = affine_basis((SY, SX))
    assert b.shape == (N, 3) and np.allclose(b.T @ b, np.eye(3))
    assert affine_basis((1, SX)).shape == (SX, 2) and affine_basis((1, 1)).shape == (1, 1)


def test_deformation_lbfgs_reaches_the_affine_fit(bk):
    """L-BFGS on R alone: a quadratic with a projector as Hessian; the minimiser nearest the start is H q0."""
    rng = np.random.default_rng(6)
    i, j = _ij()
    q0 = _affine(rng) + _grid_yx(np.sin(j / 2.0), np.cos(i / 1.5 + j / 3.0))  # amplitude 1 px
    a = np.column_stack([np.ones(N), i.ravel(), j.ravel()])
    fit = a @ np.linalg.lstsq(a, q0, rcond=None)[0]
    term = _term(DeformationPositions, bk, w=0.5)

    def fun(x):
        r, g = term.value_and_grad(x, 0)
        return r, g

    opt, x = LBFGS(hist_length=5), {"positions": bk.asarray(q0)}
    f, g = fun(x)
    for _ in range(3):
        res = opt.step(fun, x, f, g)
        x, f, g = res.x, res.f, res.g
        if f < 1e-24:
            break
    assert np.abs(bk.to_numpy(x["positions"]) - fit).max() <= 1e-8


@pytest.mark.parametrize("cls, axis", [(FastAxisPositions, 1), (SlowAxisPositions, 0)])
def test_denoising_a_smooth_grid(bk, cls, axis):
    """Behaviour: minimise ||Q - Q_noisy||^2 + R; the error against the true smooth grid drops."""
    rng = np.random.default_rng(7)
    sy, sx = 12, 12
    i, j = np.meshgrid(np.arange(sy, dtype=float), np.arange(sx, dtype=float), indexing="ij")
    true = np.stack([4 * i + 0.3 * np.sin(j / 4), 4 * j + 0.3 * np.cos(i / 5)], axis=-1).reshape(-1, 2)
    noisy = true + 0.5 * rng.standard_normal(true.shape)
    p = {"scan_size": (sy, sx), "positions": true, "tilts": np.zeros((1, 6)), "tilt_mode": 0, "update_tilts": 0,
         cls.WEIGHT: 2.0}
    term = cls(p, bk)
    nd = bk.asarray(noisy)

    def fun(x):
        d = x["positions"] - nd
        r, g = term.value_and_grad(x, 0)
        return float(bk.xp.sum(d * d)) + r, {"positions": 2 * d + g["positions"]}

    opt, x = LBFGS(hist_length=10), {"positions": nd}
    f, g = fun(x)
    for _ in range(40):
        res = opt.step(fun, x, f, g)
        x, f, g = res.x, res.f, res.g
    out = bk.to_numpy(x["positions"])
    err_before = np.sqrt(np.mean((noisy - true) ** 2))
    err_after = np.sqrt(np.mean((out - true) ** 2))
    assert err_after < 0.7 * err_before

    # the noise is removed along the regularised axis: second differences there shrink
    def d2(q):
        return np.diff(q.reshape(sy, sx, 2), n=2, axis=axis)

    assert np.sqrt(np.mean(d2(out) ** 2)) < 0.3 * np.sqrt(np.mean(d2(noisy) ** 2))
