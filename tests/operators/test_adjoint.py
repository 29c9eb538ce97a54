"""Dot-product tests <A x, y> = <x, A^H y> for every operator of pypty.operators, from one table.

Each row builds, for a backend and a random generator, a forward map ``fwd``,
the adjoint ``adj`` that the model uses, and random ``x`` and ``y``.  For the
linear operators ``fwd`` is the operator itself; for the nonlinear steps
(detection, CTF, shifts and tilts, fractional transmission) it is the
derivative at a random point and ``adj`` the gradient operator of
:mod:`pypty.operators` (the transpose of that derivative).  The inner product
is ``Re sum conj(a) b`` (real arrays: ``sum a b``).  Adding an operator is
one row.
"""
import numpy as np
import pytest

from pypty import operators as ops
from conftest import rand_complex

SHAPE = (12, 10)
B, MO, MP = 4, 2, 3
PIX, LAM = (0.3, 0.35), 0.025


def _vd(xp, a, b):
    return float(xp.real(xp.vdot(a.ravel(), b.ravel())))


def _kyx(xp, pix=None):
    d = (1.0, 1.0) if pix is None else pix
    return (xp.asarray(np.fft.fftfreq(SHAPE[0], d[0])[:, None]), xp.asarray(np.fft.fftfreq(SHAPE[1], d[1])[None, :]))


def _c(bk, rng, shape):
    return bk.asarray(rand_complex(rng, shape))


def _r(bk, rng, shape):
    return bk.asarray(rng.standard_normal(shape))


# ------------------------------------------------------------------ rows: bk, rng -> (fwd, adj, x, y)
def fft_pair(bk, rng):
    return bk.fft2, bk.ifft2, _c(bk, rng, (3,) + SHAPE), _c(bk, rng, (3,) + SHAPE)


def propagate(bk, rng, rolloff=0.0, tilted=False):
    k = bk.asarray(ops.fresnel_kernel(SHAPE, PIX, LAM, 7.0, cutoff=2 / 3, rolloff=rolloff))
    if tilted:  # the kernel of a tilted propagation step: one per pattern, broadcast over the modes
        k = k * ops.tilt_ramp(bk.xp, _kyx(bk.xp, PIX), _r(bk, rng, (B, 2)) * 5, 7.0, np.complex128)[:, None, None]
    shape = (B, MO, MP) + SHAPE
    return (lambda x: ops.propagate(bk, x, k), lambda y: ops.propagate_adjoint(bk, y, k),
            _c(bk, rng, shape), _c(bk, rng, shape))


def shift_probe(bk, rng, shared=False):
    ramp = ops.shift_ramp(bk.xp, _kyx(bk.xp), _r(bk, rng, (B, 2)) * 0.7, np.complex128)
    if shared:  # one spectrum for all patterns: the adjoint sums over the patterns
        return (lambda x: ops.shift_probe(bk, x, ramp),
                lambda y: bk.xp.sum(ops.shift_probe_adjoint(bk, y, ramp), axis=0),
                _c(bk, rng, (MP,) + SHAPE), _c(bk, rng, (B, MP) + SHAPE))
    return (lambda x: ops.shift_probe(bk, x, ramp), lambda y: ops.shift_probe_adjoint(bk, y, ramp),
            _c(bk, rng, (B, MP) + SHAPE), _c(bk, rng, (B, MP) + SHAPE))


def modulate(bk, rng, mode_axes=1):
    ryx = tuple(bk.asarray(v) for v in ops.window_coordinates_A(SHAPE, PIX))
    e = ops.tilt_phase(bk.xp, ryx, _r(bk, rng, (B, 2)) * 5, LAM, np.complex128)
    shape = (B,) + (MO, MP)[2 - mode_axes:] + SHAPE
    return (lambda x: ops.modulate(x, e), lambda y: ops.modulate_adjoint(y, e), _c(bk, rng, shape),
            _c(bk, rng, shape))


def transmit_wave(bk, rng):
    u = _c(bk, rng, (B, MO) + SHAPE)
    return (lambda x: ops.transmit(x, u), lambda y: ops.transmit_adjoint(y, u),
            _c(bk, rng, (B, MO, MP) + SHAPE), _c(bk, rng, (B, MO, MP) + SHAPE))


def transmit_patches(bk, rng):
    psi = _c(bk, rng, (B, 1, MP) + SHAPE)
    return (lambda x: ops.transmit(psi, x), lambda y: ops.transmit_patches_adjoint(bk.xp, y, psi),
            _c(bk, rng, (B, MO) + SHAPE), _c(bk, rng, (B, MO, MP) + SHAPE))


def patches(bk, rng):
    xp = bk.xp
    canvas, win = (20, 18), (7, 6)
    idx = ops.patch_indices(xp, xp.asarray([[0, 0], [13, 12], [5, 7], [5, 8]]), win, canvas)  # overlapping too

    def adj(y):
        acc = xp.zeros((2, MO, canvas[0] * canvas[1]), complex)
        for s in range(2):
            ops.scatter_patches(xp, acc[s], y[s], idx)
        return acc.reshape((2, MO) + canvas)

    return lambda x: ops.extract_patches(xp, x, idx), adj, _c(bk, rng, (2, MO) + canvas), _c(bk, rng, (2, 4, MO) + win)


def gather_rows(bk, rng):
    rows = np.array([1, 0, 1, 1, 2, 0])

    def adj(y):
        acc = bk.xp.zeros((3, MP) + SHAPE, complex)
        ops.scatter_rows(bk.xp, acc, rows, y)
        return acc

    return (lambda x: x[bk.xp.asarray(rows)], adj, _c(bk, rng, (3, MP) + SHAPE),
            _c(bk, rng, (len(rows), MP) + SHAPE))


def bin_pattern(bk, rng, u=2):
    return (lambda x: ops.bin_pattern(bk.xp, x, u), lambda y: ops.bin_pattern_adjoint(bk.xp, y, u),
            _r(bk, rng, (3, 6 * u, 4 * u)), _r(bk, rng, (3, 6, 4)))


def blur_pattern(bk, rng, sigma=1.3, shape=(3, 9, 8)):
    """Periodic Gaussian blur of the detector: symmetric, so its adjoint is itself."""
    t = bk.asarray(ops.blur_transfer(shape[1:], sigma))
    return (lambda x: ops.blur_pattern(bk, x, t), lambda y: ops.blur_pattern_adjoint(bk, y, t),
            _r(bk, rng, shape), _r(bk, rng, shape))


def compress(bk, rng):
    masks = bk.asarray(rng.uniform(0, 1, (5,) + SHAPE))
    return (lambda x: ops.compress(bk.xp, x, masks), lambda y: ops.compress_adjoint(bk.xp, y, masks),
            _r(bk, rng, (3,) + SHAPE), _r(bk, rng, (3, 5)))


def farfield(bk, rng):
    """Derivative of I = sum |fft2(psi)|^2 at psi: dI = sum 2 Re(conj(Psi) fft2(dpsi))."""
    xp = bk.xp
    _, psi_hat = ops.farfield(bk, _c(bk, rng, (B, MO, MP) + SHAPE))
    fwd = lambda x: xp.sum(2 * (psi_hat.conj() * bk.fft2(x)).real, axis=(1, 2))  # noqa: E731
    return (fwd, lambda y: ops.farfield_adjoint(bk, y, psi_hat), _c(bk, rng, (B, MO, MP) + SHAPE),
            _r(bk, rng, (B,) + SHAPE))


def near_field(bk, rng):
    """Derivative of the near-field image intensity at psi."""
    xp = bk.xp
    h = bk.asarray(ops.near_field_transfer(SHAPE, PIX, LAM, rng.uniform(20, 80, B), 1e3, 0.5))
    _, field = ops.near_field(bk, _c(bk, rng, (B, MO, MP) + SHAPE), h)

    def fwd(x):
        d_field = bk.ifft2(bk.fft2(x) * h[:, None, None])
        return xp.fft.ifftshift(xp.sum(2 * (field.conj() * d_field).real, axis=(1, 2)), axes=(-2, -1))

    return (fwd, lambda y: ops.near_field_adjoint(bk, y, field, h), _c(bk, rng, (B, MO, MP) + SHAPE),
            _r(bk, rng, (B,) + SHAPE))


def aberration_ctf(bk, rng):
    """Derivative of P = P0 * aberration_ctf(A) in A: dP = -i P sum_j chi_j dA_j."""
    xp = bk.xp
    basis = bk.asarray(np.stack([ops.aberration_phase(SHAPE, PIX, 80.0, {k: 1.0}) for k in ("C10", "C12a", "C12b")]))
    rows = _r(bk, rng, (B, 3)) * 20
    spectra = ops.modulate(_c(bk, rng, (B, MP) + SHAPE), ops.aberration_ctf(xp, rows, basis, np.complex128))
    fwd = lambda x: -1j * spectra * xp.tensordot(x, basis, axes=(1, 0))[:, None]  # noqa: E731
    return (fwd, lambda y: ops.aberration_gradient(xp, y, spectra, basis), _r(bk, rng, (B, 3)),
            _c(bk, rng, (B, MP) + SHAPE))


def shift_gradient(bk, rng):
    """Derivative of the shifted probe in the shifts s (px), with the adjoint the model uses."""
    xp = bk.xp
    kyx = _kyx(xp)
    ramp = ops.shift_ramp(xp, kyx, _r(bk, rng, (B, 2)) * 0.7, np.complex128)
    spectra = _c(bk, rng, (B, MP) + SHAPE)

    def fwd(x):
        k_dot = kyx[0][None] * x[:, 0, None, None] + kyx[1][None] * x[:, 1, None, None]
        return ops.shift_probe(bk, spectra * (-2j * np.pi * k_dot)[:, None], ramp)

    return (fwd, lambda y: ops.shift_gradient(xp, ops.shift_probe_adjoint(bk, y, ramp), spectra, kyx),
            _r(bk, rng, (B, 2)), _c(bk, rng, (B, MP) + SHAPE))


def tilt_phase_gradient(bk, rng):
    """Derivative of psi * E(t) in t (mrad): d wave = wave * 2 pi i 1e-3 (r . dt) / lambda."""
    xp = bk.xp
    ryx = tuple(bk.asarray(v) for v in ops.window_coordinates_A(SHAPE, PIX))
    wave = ops.modulate(_c(bk, rng, (B, MP) + SHAPE), ops.tilt_phase(xp, ryx, _r(bk, rng, (B, 2)), LAM,
                                                                      np.complex128))

    def fwd(x):
        r_dot = ryx[0][None] * x[:, 0, None, None] + ryx[1][None] * x[:, 1, None, None]
        return ops.modulate(wave, 2j * np.pi * 1e-3 * r_dot / LAM)

    return (fwd, lambda y: ops.tilt_phase_gradient(xp, y, wave, ryx, LAM), _r(bk, rng, (B, 2)),
            _c(bk, rng, (B, MP) + SHAPE))


def tilt_gradient(bk, rng):
    """Derivative of the tilted propagated spectrum W = F(psi) K R_t in t (mrad)."""
    xp = bk.xp
    kyx, dz = _kyx(xp, PIX), 7.0
    w_hat = _c(bk, rng, (B, MO, MP) + SHAPE)

    def fwd(x):
        k_dot = kyx[0][None] * x[:, 0, None, None] + kyx[1][None] * x[:, 1, None, None]
        return ops.modulate(w_hat, -2j * np.pi * dz * 1e-3 * k_dot)

    return (fwd, lambda y: ops.tilt_gradient(xp, y, w_hat, kyx, dz), _r(bk, rng, (B, 2)),
            _c(bk, rng, (B, MO, MP) + SHAPE))


def transmission_power(bk, rng, w=-0.7):
    """Derivative of u = O^w (holomorphic): du = w u / O dO."""
    obj = bk.asarray(np.exp(1j * rng.uniform(-1, 1, (2, MO) + SHAPE)) * rng.uniform(0.5, 1.0, (2, MO) + SHAPE))
    u = ops.transmission_power(bk.xp, obj, w)
    return (lambda x: w * u / obj * x, lambda y: ops.transmission_power_grad(bk.xp, obj, u, w, y),
            _c(bk, rng, (2, MO) + SHAPE), _c(bk, rng, (2, MO) + SHAPE))


TABLE = {
    "fft2/ifft2": fft_pair,
    "propagate": propagate,
    "propagate_rolloff": lambda bk, rng: propagate(bk, rng, rolloff=0.2),
    "propagate_tilted": lambda bk, rng: propagate(bk, rng, tilted=True),
    "shift_probe": shift_probe,
    "shift_probe_shared_spectrum": lambda bk, rng: shift_probe(bk, rng, shared=True),
    "modulate_probe": modulate,
    "modulate_exit_wave": lambda bk, rng: modulate(bk, rng, mode_axes=2),
    "transmit_wave": transmit_wave,
    "transmit_patches": transmit_patches,
    "extract_scatter_patches": patches,
    "gather_scatter_rows": gather_rows,
    "bin_pattern_2": bin_pattern,
    "bin_pattern_3": lambda bk, rng: bin_pattern(bk, rng, u=3),
    "blur_pattern": blur_pattern,
    "blur_pattern_wide_odd": lambda bk, rng: blur_pattern(bk, rng, sigma=4.0, shape=(2, 7, 9)),
    "compress": compress,
    "farfield": farfield,
    "near_field": near_field,
    "aberration_ctf": aberration_ctf,
    "shift_gradient": shift_gradient,
    "tilt_phase_gradient": tilt_phase_gradient,
    "tilt_gradient": tilt_gradient,
    "transmission_power": transmission_power,
}


@pytest.mark.parametrize("name", list(TABLE))
def test_dot_product(bk, name):
    rng = np.random.default_rng(sorted(TABLE).index(name))
    fwd, adj, x, y = TABLE[name](bk, rng)
    lhs, rhs = _vd(bk.xp, fwd(x), y), _vd(bk.xp, x, adj(y))
    assert abs(lhs) > 1e-6  # a vacuous test (zero maps) would pass anything
    assert np.isclose(lhs, rhs, rtol=1e-12), (lhs, rhs)


def test_every_operator_is_in_the_table():
    """Every forward operator of pypty.operators (and the gradient that pairs with it) has a row."""
    paired = {"fft2/ifft2", "propagate", "shift_probe", "modulate_probe", "transmit_wave", "extract_scatter_patches",
              "gather_scatter_rows", "bin_pattern_2", "blur_pattern", "compress", "farfield", "near_field", "aberration_ctf",
              "shift_gradient", "tilt_phase_gradient", "tilt_gradient", "transmission_power"}
    assert paired <= set(TABLE)
    adjoints = {n for n in ops.__all__ if n.endswith(("_adjoint", "_gradient", "_grad")) or n.startswith("scatter_")}
    assert adjoints == {"shift_probe_adjoint", "shift_gradient", "modulate_adjoint", "tilt_phase_gradient",
                        "scatter_patches", "scatter_rows", "transmit_adjoint", "transmit_patches_adjoint",
                        "transmission_power_grad",
                        "propagate_adjoint", "tilt_gradient", "farfield_adjoint", "near_field_adjoint",
                        "bin_pattern_adjoint", "blur_pattern_adjoint", "compress_adjoint",
                        "aberration_gradient"}, "new adjoint: add a row"


# ---------------------------------------------------------------- values of single operators
def test_shift_moves_towards_larger_indices(bk):
    xp = bk.xp
    f = np.zeros(SHAPE, complex)
    f[3, 4] = 1
    ramp = ops.shift_ramp(xp, _kyx(xp), xp.asarray([[2.0, -1.0]]), np.complex128)
    out = bk.to_numpy(ops.shift_probe(bk, bk.fft2(bk.asarray(f[None])), ramp))[0, 0]
    assert np.unravel_index(np.argmax(np.abs(out)), SHAPE) == (5, 3)
    assert np.isclose(np.abs(out[5, 3]), 1.0)


def test_extract_patches_takes_the_window(bk):
    xp = bk.xp
    canvas, win = (20, 18), (7, 6)
    obj = bk.asarray(rand_complex(np.random.default_rng(3), (2, 3) + canvas))
    idx = ops.patch_indices(xp, xp.asarray([[0, 0], [13, 12], [5, 7], [5, 8]]), win, canvas)
    p = bk.to_numpy(ops.extract_patches(xp, obj, idx))
    np.testing.assert_array_equal(p[1, 2, 0], bk.to_numpy(obj)[1, 0, 5:12, 7:13])


def test_bandlimit_mask_values():
    m = ops.bandlimit_mask((32, 32), 2 / 3)
    f = np.sqrt(np.fft.fftfreq(32)[:, None] ** 2 + np.fft.fftfreq(32)[None] ** 2) / 0.5
    np.testing.assert_array_equal(m, (f <= 2 / 3).astype(float))
    soft = ops.bandlimit_mask((32, 32), 2 / 3, 0.2)
    assert soft[0, 0] == 1.0 and np.all(soft[f > 2 / 3] == 0) and np.all(soft[f < 2 / 3 - 0.2] == 1)
    assert np.all((soft >= 0) & (soft <= 1))


@pytest.mark.parametrize("u", [2, 3])
def test_bin_pattern_centre(bk, u):
    xp = bk.xp
    # counts are conserved and the zero frequency lands on the detector's zero frequency
    d = xp.zeros((1, 6 * u, 4 * u))
    d[0, 0, 0] = 1.0
    b = bk.to_numpy(ops.bin_pattern(xp, d, u))
    assert b.sum() == 1.0 and b[0, 0, 0] == 1.0


def test_blur_is_the_normalised_periodic_gaussian(bk):
    """blur_pattern = direct periodic convolution with the unit-sum sampled Gaussian, in any pattern order."""
    rng = np.random.default_rng(11)
    shape, sigma = (9, 8), 1.1
    x = rng.uniform(0, 5, (2,) + shape)
    dy = np.fft.fftfreq(shape[0]) * shape[0]
    dx = np.fft.fftfreq(shape[1]) * shape[1]
    g = np.exp(-(dy[:, None] ** 2 + dx[None] ** 2) / (2 * sigma**2))
    g /= g.sum()
    direct = np.zeros_like(x)
    for i in range(shape[0]):
        for j in range(shape[1]):
            direct += g[i, j] * np.roll(x, (i, j), axis=(1, 2))
    t = bk.asarray(ops.blur_transfer(shape, sigma))
    out = bk.to_numpy(ops.blur_pattern(bk, bk.asarray(x), t))
    np.testing.assert_allclose(out, direct, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.sum(axis=(1, 2)), x.sum(axis=(1, 2)), rtol=1e-12)  # counts conserved
    assert out.min() >= 0  # a non-negative kernel: no negative intensities
    # FFT order or centred: the same blurred pattern
    cen = bk.to_numpy(ops.blur_pattern(bk, bk.asarray(np.fft.fftshift(x, axes=(1, 2))), t))
    np.testing.assert_allclose(np.fft.ifftshift(cen, axes=(1, 2)), out, atol=1e-12)
    with pytest.raises(ValueError):
        ops.blur_transfer(shape, 0.0)


def test_farfield_conserves_counts(bk):
    psi = bk.asarray(rand_complex(np.random.default_rng(4), (B, MO, MP) + SHAPE))
    inten, _ = ops.farfield(bk, psi)
    np.testing.assert_allclose(bk.to_numpy(inten.sum(axis=(1, 2))),
                               bk.to_numpy(bk.xp.sum(bk.xp.abs(psi) ** 2, axis=(1, 2, 3, 4))), rtol=1e-12)


def test_tilted_propagation_and_near_field_are_unitary_products(bk):
    """The tilt factors and the near-field transfer (without envelope) have modulus one: adjoint = inverse."""
    rng = np.random.default_rng(7)
    xp = bk.xp
    r = ops.tilt_ramp(xp, _kyx(xp, PIX), xp.asarray(rng.normal(0, 5, (4, 2))), 7.0, np.complex128)
    np.testing.assert_allclose(bk.to_numpy(xp.abs(r)), 1.0, rtol=1e-12)
    ryx = tuple(xp.asarray(v) for v in ops.window_coordinates_A(SHAPE, PIX))
    e = ops.tilt_phase(xp, ryx, xp.asarray(rng.normal(0, 5, (4, 2))), 0.025, np.complex128)
    np.testing.assert_allclose(bk.to_numpy(xp.abs(e)), 1.0, rtol=1e-12)
    h = ops.near_field_transfer(SHAPE, PIX, 0.025, np.array([50.0, -20.0]), 1e4, 0.0)
    np.testing.assert_allclose(np.abs(h), 1.0, rtol=1e-12)
    h_env = ops.near_field_transfer(SHAPE, PIX, 0.025, 50.0, 1e4, 1.0)
    assert h_env[0, 0] == 1.0 and np.all(np.abs(h_env) <= 1.0) and np.abs(h_env).min() < 1.0
    # a defocus df equals Fresnel propagation over df (same sign convention as the multislice kernel)
    h0 = ops.near_field_transfer(SHAPE, PIX, 0.025, 50.0)
    np.testing.assert_allclose(h0, ops.fresnel_kernel(SHAPE, PIX, 0.025, 50.0, cutoff=10.0), atol=1e-12)


def test_tilted_propagation_shifts_by_distance_times_angle(bk):
    xp = bk.xp
    shape, pix = (64, 64), (0.2, 0.2)
    kyx = (xp.asarray(np.fft.fftfreq(shape[0], pix[0])[:, None]), xp.asarray(np.fft.fftfreq(shape[1], pix[1])[None, :]))
    f = np.zeros(shape, complex)
    f[20, 30] = 1
    # 10 mrad over 40 Å = 0.4 Å = 2 px along +y
    r = ops.tilt_ramp(xp, kyx, xp.asarray([[10.0, 0.0]]), 40.0, np.complex128)[0]
    g = bk.to_numpy(bk.ifft2(bk.fft2(bk.asarray(f)) * r))
    assert np.unravel_index(np.argmax(np.abs(g)), shape) == (22, 30)
