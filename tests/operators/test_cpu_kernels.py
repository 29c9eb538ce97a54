"""The fused CPU kernels (pypty/operators/cpu_kernels.py) against the NumPy expressions they replace.

One row per kernel: the kernel's result and the reference NumPy expression of the operator it fuses, on
random inputs in both precisions, to rounding (NumPy's SIMD loops use fused multiply-adds for complex products, Numba's code does not, so
the last bit can differ; each kernel is deterministic on its own).  Then the whole model: the gradients of the fused path
equal those of the NumPy expressions to rounding in double precision.
"""
import numpy as np
import pytest

from pypty.operators import cpu_kernels

pytestmark = pytest.mark.skipif(cpu_kernels.kernels() is None, reason="Numba is not installed")

RNG = np.random.default_rng(7)


def crand(shape, dtype):
    return (RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)).astype(dtype)


def _scatter(k, dt, mo=2, mp=3, shared=False):
    corners = np.array([[0, 0], [3, 5], [12, 15], [3, 5], [2, 6]])  # overlapping and repeated windows
    g = crand((5, mo, mp, 8, 8), dt)
    psi = crand((5, 1 if shared else mo, mp, 8, 8), dt)
    acc = crand((mo, 20, 23), dt)
    ref = acc.copy().reshape(mo, -1)
    k.scatter_conj_product(acc, g, psi, corners)
    rows = corners[:, 0, None] + np.arange(8)[None]
    cols = corners[:, 1, None] + np.arange(8)[None]
    idx = (rows[:, :, None] * 23 + cols[:, None, :]).ravel()
    v = np.sum(psi.conj() * g, axis=2)
    for m in range(mo):
        np.add.at(ref[m], idx, v[:, m].ravel())
    return acc.reshape(mo, -1), ref


def _multiply_conj(k, dt):
    g, u = crand((3, 2, 3, 8, 8), dt), crand((3, 2, 8, 8), dt)
    ref = g * u.conj()[:, :, None]
    k.multiply_conj_patches(g, u)
    return g, ref


def _multiply_kernel(k, dt):
    h, kern = crand((6, 8, 8), dt), crand((8, 8), dt)
    ref = h * kern
    k.multiply_kernel(h, kern)
    return h, ref


def _intensity(k, dt):
    psi = crand((3, 2, 3, 8, 8), dt)
    out = np.empty((3, 8, 8), np.finfo(dt).dtype)
    k.intensity(out, psi, out.dtype.type(0.25))
    return out, 0.25 * np.sum(psi.real**2 + psi.imag**2, axis=(1, 2))


def _scale_by_pattern(k, dt):
    psi = crand((3, 2, 3, 8, 8), dt)
    dl = RNG.standard_normal((3, 8, 8)).astype(np.finfo(dt).dtype)
    ref = (np.finfo(dt).dtype.type(0.5) * dl)[:, None, None] * psi
    k.scale_by_pattern(psi, dl, dl.dtype.type(0.5))
    return psi, ref


def _shift_moments(k, dt, shared=False):
    from pypty.operators.shift import shift_gradient

    g, ph = crand((3, 2, 8, 10), dt), crand((1 if shared else 3, 2, 8, 10), dt)
    ky, kx = np.fft.fftfreq(8)[:, None], np.fft.fftfreq(10)[None, :]
    out = np.empty((3, 2))
    k.shift_moments(out, g, ph, ky[:, 0], kx[0], 2 * np.pi)
    return out, shift_gradient(np, g, ph, (ky, kx))


def _transmit_windows(k, dt, shared=True):
    obj = crand((2, 20, 23), dt)
    corners = np.array([[0, 0], [3, 5], [12, 15]])
    psi = crand((3, 1 if shared else 2, 2, 8, 8), dt)
    out = np.empty((3, 2, 2, 8, 8), dt)
    k.transmit_windows(out, psi, obj, corners)
    u = np.stack([obj[:, y:y + 8, x:x + 8] for y, x in corners])  # (B, Mo, Y, X)
    return out, psi * u[:, :, None]


def _multiply_conj_windows(k, dt):
    obj = crand((2, 20, 23), dt)
    corners = np.array([[0, 0], [3, 5], [12, 15]])
    g = crand((3, 2, 2, 8, 8), dt)
    u = np.stack([obj[:, y:y + 8, x:x + 8] for y, x in corners])
    ref = g * u.conj()[:, :, None]
    k.multiply_conj_windows(g, obj, corners)
    return g, ref


CASES = [  # (name, function)
    ("scatter_conj_product", _scatter),
    ("scatter_conj_product, one mode", lambda k, dt: _scatter(k, dt, 1, 1)),
    ("scatter_conj_product, shared incoming wave", lambda k, dt: _scatter(k, dt, 2, 2, True)),
    ("multiply_conj_patches", _multiply_conj),
    ("transmit_windows, shared incoming wave", _transmit_windows),
    ("transmit_windows", lambda k, dt: _transmit_windows(k, dt, False)),
    ("multiply_conj_windows", _multiply_conj_windows),
    ("multiply_kernel", _multiply_kernel),
    ("intensity", _intensity),
    ("scale_by_pattern", _scale_by_pattern),
    ("shift_moments", _shift_moments),
    ("shift_moments, one probe for all", lambda k, dt: _shift_moments(k, dt, True)),
]


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("name,fn", CASES, ids=[c[0] for c in CASES])
def test_kernel_matches_numpy_expression(name, fn, dtype):
    got, ref = fn(cpu_kernels.kernels(), dtype)
    assert got.shape == ref.shape
    tol = 2e-6 if dtype == np.complex64 else 1e-13
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.abs(ref).max(), err_msg=name)


def test_switch_off_by_environment(monkeypatch):
    monkeypatch.setenv(cpu_kernels.KERNELS_ENV, "0")
    assert not cpu_kernels.available()
    monkeypatch.setenv(cpu_kernels.KERNELS_ENV, "1")
    assert cpu_kernels.available()


@pytest.mark.parametrize("loss", ["lsq_sqrt", "ml"])
def test_model_gradients_fused_equal_numpy_expressions(monkeypatch, loss):
    """Two slices, two probe modes, two object modes, positions: fused and NumPy-expression models agree."""
    from pypty.backend import get_backend
    from pypty.model.setup import build_setup
    from pypty.parameters import validate
    from synthetic import WIN, base_params, default_probe, phase_object, raster, simulate

    pos = raster(4, 1.5)
    data = simulate(phase_object((WIN + 8, WIN + 8), seed=4), default_probe(), pos)
    obj = np.exp(0.2j * RNG.standard_normal((WIN + 8, WIN + 8, 2, 2)))  # not uniform: positions matter
    p0 = default_probe().reshape(WIN, WIN, 1)
    probe = np.concatenate([p0, 0.3 * np.roll(p0, 1, axis=0)], axis=2)
    p = validate(base_params(data, pos, probe, num_slices=2, obj=obj, slice_distances=[2.0], algorithm=loss))
    batches = [np.arange(i, min(i + 6, len(pos))) for i in range(0, len(pos), 6)]
    need = {"obj", "probe", "positions"}
    out = {}
    for flag in ("1", "0"):
        monkeypatch.setenv(cpu_kernels.KERNELS_ENV, flag)
        st = build_setup(p, get_backend("numpy"))
        try:
            assert (st.model._fz is not None) == (flag == "1")
            out[flag] = st.model.loss_and_grad(st.arrays, batches, st.get_data, need=need)
        finally:
            st.close()
    (l1, g1), (l0, g0) = out["1"], out["0"]
    assert l1 == pytest.approx(l0, rel=1e-12)
    for name in need:
        np.testing.assert_allclose(g1[name], g0[name], rtol=1e-10, atol=1e-12 * np.abs(g0[name]).max())
