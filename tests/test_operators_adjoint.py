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


# ---------------------------------------------------------------- detector-side operators
from pypty import detector as det  # noqa: E402
from pypty import propagation as prop  # noqa: E402


@pytest.mark.parametrize("u", [2, 3])
def test_bin_pattern_adjoint_and_centre(bk, u):
    rng = np.random.default_rng(5)
    xp = bk.xp
    x = bk.asarray(rng.standard_normal((3, 6 * u, 4 * u)))
    y = bk.asarray(rng.standard_normal((3, 6, 4)))
    assert np.isclose(_vd(xp, det.bin_pattern(xp, x, u), y), _vd(xp, x, det.bin_pattern_adjoint(xp, y, u)),
                      rtol=1e-12)
    # counts are conserved and the zero frequency lands on the detector's zero frequency
    d = xp.zeros((1, 6 * u, 4 * u))
    d[0, 0, 0] = 1.0
    b = bk.to_numpy(det.bin_pattern(xp, d, u))
    assert b.sum() == 1.0 and b[0, 0, 0] == 1.0


def test_compress_adjoint(bk):
    rng = np.random.default_rng(6)
    xp = bk.xp
    masks = bk.asarray(rng.uniform(0, 1, (5,) + SHAPE))
    x = bk.asarray(rng.standard_normal((3,) + SHAPE))
    y = bk.asarray(rng.standard_normal((3, 5)))
    assert np.isclose(_vd(xp, det.compress(xp, x, masks), y), _vd(xp, x, det.compress_adjoint(xp, y, masks)),
                      rtol=1e-12)


def test_tilted_propagation_and_near_field_are_unitary_products(bk):
    """The tilt factors and the near-field transfer (without envelope) have modulus one: adjoint = inverse."""
    rng = np.random.default_rng(7)
    xp = bk.xp
    kyx = (xp.asarray(np.fft.fftfreq(SHAPE[0], 0.3)[:, None]), xp.asarray(np.fft.fftfreq(SHAPE[1], 0.35)[None, :]))
    r = prop.tilt_ramp(xp, kyx, xp.asarray(rng.normal(0, 5, (4, 2))), 7.0, np.complex128)
    np.testing.assert_allclose(bk.to_numpy(xp.abs(r)), 1.0, rtol=1e-12)
    ryx = tuple(xp.asarray(v) for v in det.window_coordinates_A(SHAPE, (0.3, 0.35)))
    e = det.tilt_phase(xp, ryx, xp.asarray(rng.normal(0, 5, (4, 2))), 0.025, np.complex128)
    np.testing.assert_allclose(bk.to_numpy(xp.abs(e)), 1.0, rtol=1e-12)
    h = det.near_field_transfer(SHAPE, (0.3, 0.35), 0.025, np.array([50.0, -20.0]), 1e4, 0.0)
    np.testing.assert_allclose(np.abs(h), 1.0, rtol=1e-12)
    h_env = det.near_field_transfer(SHAPE, (0.3, 0.35), 0.025, 50.0, 1e4, 1.0)
    assert h_env[0, 0] == 1.0 and np.all(np.abs(h_env) <= 1.0) and np.abs(h_env).min() < 1.0
    # a defocus df equals Fresnel propagation over df (same sign convention as the multislice kernel)
    h0 = det.near_field_transfer(SHAPE, (0.3, 0.35), 0.025, 50.0)
    np.testing.assert_allclose(h0, ops.fresnel_kernel(SHAPE, (0.3, 0.35), 0.025, 50.0, cutoff=10.0), atol=1e-12)


def test_tilted_propagation_shifts_by_distance_times_angle(bk):
    xp = bk.xp
    shape, pix = (64, 64), (0.2, 0.2)
    kyx = (xp.asarray(np.fft.fftfreq(shape[0], pix[0])[:, None]), xp.asarray(np.fft.fftfreq(shape[1], pix[1])[None, :]))
    f = np.zeros(shape, complex)
    f[20, 30] = 1
    # 10 mrad over 40 Å = 0.4 Å = 2 px along +y
    r = prop.tilt_ramp(xp, kyx, xp.asarray([[10.0, 0.0]]), 40.0, np.complex128)[0]
    g = bk.to_numpy(bk.ifft2(bk.fft2(bk.asarray(f)) * r))
    assert np.unravel_index(np.argmax(np.abs(g)), shape) == (22, 30)
