"""Dot-product tests <A x, y> = <x, A^H y> for every linear operator of the model."""
import numpy as np
import pytest

from pypty import operators as ops
from conftest import rand_complex

SHAPE = (12, 10)


def _vd(xp, a, b):
    return float(xp.real(xp.vdot(a.ravel(), b.ravel())))


def test_fft_pair_is_adjoint(bk):
    rng = np.random.default_rng(0)
    x = bk.asarray(rand_complex(rng, (3,) + SHAPE))
    y = bk.asarray(rand_complex(rng, (3,) + SHAPE))
    assert np.isclose(_vd(bk.xp, bk.fft2(x), y), _vd(bk.xp, x, bk.ifft2(y)), rtol=1e-12)


@pytest.mark.parametrize("rolloff", [0.0, 0.2])
def test_propagate_adjoint(bk, rolloff):
    rng = np.random.default_rng(1)
    k = bk.asarray(ops.fresnel_kernel(SHAPE, (0.3, 0.35), 0.025, 7.0, cutoff=2 / 3, rolloff=rolloff))
    x = bk.asarray(rand_complex(rng, (2, 3) + SHAPE))
    y = bk.asarray(rand_complex(rng, (2, 3) + SHAPE))
    lhs = _vd(bk.xp, ops.propagate(bk, x, k), y)
    rhs = _vd(bk.xp, x, ops.propagate_adjoint(bk, y, k))
    assert np.isclose(lhs, rhs, rtol=1e-12)


def test_shift_probe_adjoint(bk):
    rng = np.random.default_rng(2)
    xp = bk.xp
    kyx = (xp.asarray(np.fft.fftfreq(SHAPE[0])[:, None]), xp.asarray(np.fft.fftfreq(SHAPE[1])[None, :]))
    shifts = xp.asarray(rng.uniform(-0.7, 0.7, (4, 2)))
    ramp = ops.shift_ramp(xp, kyx, shifts, np.complex128)
    p = bk.asarray(rand_complex(rng, (2,) + SHAPE))  # probe (Mp, Y, X)
    y = bk.asarray(rand_complex(rng, (4, 2) + SHAPE))
    # forward: probe -> ifft2(fft2(probe) * ramp)
    lhs = _vd(xp, ops.shift_probe(bk, bk.fft2(p), ramp), y)
    adj = bk.ifft2(xp.sum(ops.shift_probe_adjoint(bk, y) * ramp[:, None].conj(), axis=0))
    assert np.isclose(lhs, _vd(xp, p, adj), rtol=1e-12)


def test_shift_moves_towards_larger_indices(bk):
    xp = bk.xp
    f = np.zeros(SHAPE, complex)
    f[3, 4] = 1
    kyx = (xp.asarray(np.fft.fftfreq(SHAPE[0])[:, None]), xp.asarray(np.fft.fftfreq(SHAPE[1])[None, :]))
    ramp = ops.shift_ramp(xp, kyx, xp.asarray([[2.0, -1.0]]), np.complex128)
    out = bk.to_numpy(ops.shift_probe(bk, bk.fft2(bk.asarray(f[None])), ramp))[0, 0]
    assert np.unravel_index(np.argmax(np.abs(out)), SHAPE) == (5, 3)
    assert np.isclose(np.abs(out[5, 3]), 1.0)


def test_extract_scatter_adjoint(bk):
    rng = np.random.default_rng(3)
    xp = bk.xp
    canvas, win = (20, 18), (7, 6)
    obj = bk.asarray(rand_complex(rng, (2, 3) + canvas))
    corners = xp.asarray([[0, 0], [13, 12], [5, 7], [5, 8]])  # overlapping windows too
    idx = ops.patch_indices(xp, corners, win, canvas)
    y = bk.asarray(rand_complex(rng, (2, 4, 3) + win))  # (S, B, Mo, Y, X)
    lhs = _vd(xp, ops.extract_patches(xp, obj, idx), y)
    acc = xp.zeros((2, 3, canvas[0] * canvas[1]), complex)
    for s in range(2):
        ops.scatter_patches(xp, acc[s], y[s], idx)
    assert np.isclose(lhs, _vd(xp, obj, acc.reshape(obj.shape)), rtol=1e-12)
    # the gather itself takes the right pixels
    p = bk.to_numpy(ops.extract_patches(xp, obj, idx))
    o = bk.to_numpy(obj)
    np.testing.assert_array_equal(p[1, 2, 0], o[1, 0, 5:12, 7:13])


def test_bandlimit_mask_values():
    m = ops.bandlimit_mask((32, 32), 2 / 3)
    f = np.sqrt(np.fft.fftfreq(32)[:, None] ** 2 + np.fft.fftfreq(32)[None] ** 2) / 0.5
    np.testing.assert_array_equal(m, (f <= 2 / 3).astype(float))
    soft = ops.bandlimit_mask((32, 32), 2 / 3, 0.2)
    assert soft[0, 0] == 1.0 and np.all(soft[f > 2 / 3] == 0) and np.all(soft[f < 2 / 3 - 0.2] == 1)
    assert np.all((soft >= 0) & (soft <= 1))
