"""Tilt smoothing (pypty.constraints.tilts, design 4.1/4.2 "tilt_smooth"): the xp Gaussian against SciPy,
the exact map on the model's tilt columns, error reduction on a noisy smooth grid, skips and validation.
"""
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d as sp_gauss1d

from pypty.constraints import REGISTRY, UNCHANGED
from pypty.constraints.tilts import TiltSmooth, gaussian_filter1d
from pypty.parameters.errors import PyptyParameterError


def _ctx(refine=("tilts",)):
    return SimpleNamespace(settings=SimpleNamespace(refine=tuple(refine)), setup=None,
                           position_offset=np.zeros(2), given_positions=None)


def _p(sigma=2.0, scan=(5, 7), mode=3, **kw):
    return dict(tilt_smooth_sigma=sigma, scan_size=scan, tilt_mode=mode, **kw)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.0, 3.3])
def test_gaussian_matches_scipy(bk, sigma):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 11, 4))  # axis 0 shorter than the kernel radius for sigma >= 1
    for axis in (0, 1, 2):
        out = bk.to_numpy(gaussian_filter1d(bk.xp, bk.asarray(a), sigma, axis))
        ref = sp_gauss1d(a, sigma, axis=axis, mode="nearest", truncate=4.0)
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-13)


def test_exact_map(bk):
    rng = np.random.default_rng(1)
    sy, sx, sigma = 5, 7, 1.5
    tilts = rng.normal(0, 2, (sy * sx, 6))
    tilts[:, :2] = 0  # tilt_mode 3: inside and after; "before" columns are zero
    t_dev = bk.asarray(tilts)
    c = TiltSmooth(_p(sigma, (sy, sx), 3), bk)
    new, change = c.apply({"tilts": t_dev}, 0, _ctx())
    assert change.kind == "reset" and set(new) == {"tilts"}
    out = bk.to_numpy(new["tilts"])
    ref = tilts.copy()
    q = tilts.reshape(sy, sx, 6)  # Q[i, j] = t[i * Sx + j]
    for col in range(2, 6):
        ref[:, col] = sp_gauss1d(sp_gauss1d(q[..., col], sigma, axis=0, mode="nearest", truncate=4),
                                 sigma, axis=1, mode="nearest", truncate=4).ravel()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(bk.to_numpy(t_dev), tilts)  # input not modified
    # only the model's columns: with tilt_mode 0 (inside) columns 4, 5 are kept
    out0 = bk.to_numpy(TiltSmooth(_p(sigma, (sy, sx), 0), bk).apply({"tilts": t_dev}, 0, _ctx())[0]["tilts"])
    np.testing.assert_array_equal(out0[:, 4:], tilts[:, 4:])
    np.testing.assert_allclose(out0[:, 2:4], ref[:, 2:4], rtol=0, atol=1e-12)


def test_lowers_error_of_noisy_smooth_grid(bk):
    rng = np.random.default_rng(2)
    sy, sx = 12, 10
    iy, ix = np.mgrid[:sy, :sx]
    truth = np.zeros((sy * sx, 6))
    truth[:, 2] = (3 * np.sin(iy / 4.0) + 0.2 * ix).ravel()
    truth[:, 3] = (2 * np.cos(ix / 5.0) - 0.1 * iy).ravel()
    noisy = truth.copy()
    noisy[:, 2:4] += rng.normal(0, 1.0, (sy * sx, 2))
    new, _ = TiltSmooth(_p(1.5, (sy, sx), 0), bk).apply({"tilts": bk.asarray(noisy)}, 0, _ctx())
    err_before = np.sqrt(np.mean((noisy - truth) ** 2))
    err_after = np.sqrt(np.mean((bk.to_numpy(new["tilts"]) - truth) ** 2))
    assert err_after < 0.5 * err_before


def test_skips(bk):
    tilts = bk.asarray(np.random.default_rng(3).normal(size=(35, 6)))
    c = TiltSmooth(_p(), bk)
    assert c.apply({"tilts": tilts}, 0, _ctx(refine=("obj",))) == ({}, UNCHANGED)  # tilts not refined
    assert c.apply({"tilts": tilts[:1]}, 0, _ctx()) == ({}, UNCHANGED)  # global tilt
    assert c.apply({"obj": None}, 0, _ctx()) == ({}, UNCHANGED)  # no tilts array
    assert TiltSmooth(_p(sigma=0.1), bk).apply({"tilts": tilts}, 0, _ctx()) == ({}, UNCHANGED)  # one tap
    const = np.tile(np.array([[0.0, 0.0, 1.0, -2.0, 0.3, 0.0]]), (35, 1))  # a constant grid stays (to rounding)
    new = c.apply({"tilts": bk.asarray(const)}, 0, _ctx())[0]
    np.testing.assert_allclose(bk.to_numpy(new.get("tilts", const)), const, rtol=1e-14, atol=0)
    with pytest.raises(PyptyParameterError, match="scan_size"):
        TiltSmooth(_p(scan=None), bk).apply({"tilts": tilts}, 0, _ctx())
    with pytest.raises(PyptyParameterError, match="scan_size"):
        TiltSmooth(_p(scan=(6, 6)), bk).apply({"tilts": tilts}, 0, _ctx())


def test_switch_and_registry(bk):
    assert "tilt_smooth" in REGISTRY and list(REGISTRY)[-1] == "tilt_smooth"
    assert TiltSmooth.from_params(_p(sigma=0), bk) is None
    c = TiltSmooth.from_params(_p(sigma=lambda e: 2.0 if e % 10 == 0 else 0), bk)
    assert [c.active(e) for e in (0, 1, 10)] == [True, False, True]


def test_check_params_and_warnings():
    tilts = np.zeros((35, 6))
    assert TiltSmooth.check_params(_p(tilts=tilts)) == []
    assert TiltSmooth.check_params(_p(sigma=0, scan=None, tilts=tilts)) == []  # off
    msg = TiltSmooth.check_params(_p(scan=None, tilts=tilts))
    assert len(msg) == 1 and "scan_size" in msg[0]
    msg = TiltSmooth.check_params(_p(scan=(6, 6), tilts=tilts))
    assert len(msg) == 1 and "scan_size" in msg[0] and "35" in msg[0]
    assert "tilt_smooth_sigma" in TiltSmooth.check_params(_p(sigma=-1.0, tilts=tilts))[0]
    assert TiltSmooth.check_params(_p(scan=None, tilts=np.zeros((1, 6)))) == []  # global: skipped, warned
    w = TiltSmooth.warnings(_p(tilts=np.zeros((1, 6))))
    assert len(w) == 1 and "global" in w[0]
    assert TiltSmooth.warnings(_p(tilts=tilts)) == []
    assert TiltSmooth.warnings(_p(sigma=0, tilts=np.zeros((1, 6)))) == []
