"""Tests for pypty.optim (physics-free L-BFGS with a strong-Wolfe line search)."""
import math

import numpy as np
import pytest

from pypty.optim import LBFGS, StepResult, axpy, norm, scale, vdot


# ----------------------------------------------------------------- objectives
def rosen(x):
    """n-D Rosenbrock split into blocks "a" (x[0], shape (1,)) and "b" (x[1:])."""
    v = np.concatenate([x["a"], x["b"]])
    f = np.sum(100.0 * (v[1:] - v[:-1] ** 2) ** 2 + (1.0 - v[:-1]) ** 2)
    g = np.zeros_like(v)
    g[:-1] += -400.0 * v[:-1] * (v[1:] - v[:-1] ** 2) - 2.0 * (1.0 - v[:-1])
    g[1:] += 200.0 * (v[1:] - v[:-1] ** 2)
    return float(f), {"a": g[:1].copy(), "b": g[1:].copy()}


def rosen_x0(n=6):
    v = np.tile([-1.2, 1.0], n // 2)
    return {"a": v[:1].copy(), "b": v[1:].copy()}


def make_complex_quadratic(dtype=np.complex128, seed=0):
    """L = sum_k sum w_k |z_k - z*_k|^2, weights 1e-3..1e3 over two blocks."""
    rng = np.random.default_rng(seed)
    w = {"obj": np.logspace(-3, 0, 12).reshape(3, 4), "probe": np.logspace(0, 3, 5)}
    zs = {"obj": rng.normal(size=(3, 4)) + 1j * rng.normal(size=(3, 4)),
          "probe": 100.0 * (rng.normal(size=5) + 1j * rng.normal(size=5))}
    zs = {k: v.astype(dtype) for k, v in zs.items()}

    def fun(z):
        f = sum(float(np.sum(w[k] * np.abs(z[k] - zs[k]) ** 2)) for k in z)
        g = {k: (2.0 * w[k] * (z[k] - zs[k])).astype(z[k].dtype) for k in z}
        return f, g

    z0 = {k: np.zeros_like(v) for k, v in zs.items()}
    return fun, z0, zs


def run(opt, fun, x, n_steps, **kw):
    f, g = fun(x)
    losses = [f]
    results = []
    for _ in range(n_steps):
        r = opt.step(fun, x, f, g, **kw)
        results.append(r)
        x, f, g = r.x, r.f, r.g
        losses.append(f)
        if norm(g) < 1e-12:
            break
    return x, losses, results


# -------------------------------------------------------------------- helpers
def test_helpers_real_and_complex():
    a = {"r": np.array([1.0, 2.0]), "c": np.array([1 + 2j, 3 - 1j], dtype=np.complex64)}
    b = {"r": np.array([3.0, -1.0]), "c": np.array([2 - 1j, 1j], dtype=np.complex64)}
    expected = 1 * 3 + 2 * -1 + np.real(np.conj(1 + 2j) * (2 - 1j) + np.conj(3 - 1j) * 1j)
    assert vdot(a, b) == pytest.approx(expected)
    assert isinstance(vdot(a, b), float)
    assert norm(a) == pytest.approx(math.sqrt(1 + 4 + 5 + 10))
    y = axpy(np.float64(0.5), b, a)
    assert y["c"].dtype == np.complex64 and y["r"].dtype == np.float64
    np.testing.assert_allclose(y["c"], a["c"] + 0.5 * b["c"], rtol=1e-6)
    assert y["c"] is not a["c"]
    assert scale(np.float64(2.0), a)["c"].dtype == np.complex64
    with pytest.raises(TypeError):
        axpy(1.0, {"r": b["c"], "c": b["c"]}, a)
    with pytest.raises(KeyError):
        vdot(a, {"r": b["r"]})


def test_invalid_parameters():
    with pytest.raises(ValueError):
        LBFGS(c1=0.9, c2=0.1)
    with pytest.raises(ValueError):
        LBFGS(hist_length=-1)
    with pytest.raises(ValueError):
        LBFGS(reduce_factor=1.5)
    opt = LBFGS()
    fun, z0, _ = make_complex_quadratic()
    with pytest.raises(ValueError):
        opt.step(lambda z: (0.0, {"obj": z["obj"]}), z0)


# ---------------------------------------------------------------- convergence
@pytest.mark.parametrize("m", [10, math.inf])
def test_rosenbrock_converges(m):
    opt = LBFGS(hist_length=m)
    x, losses, results = run(opt, rosen, rosen_x0(6), 300)
    v = np.concatenate([x["a"], x["b"]])
    np.testing.assert_allclose(v, 1.0, atol=1e-5)
    assert losses[-1] < 1e-10
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    if m == math.inf:
        assert max(r.history_size for r in results) > 10  # nothing trimmed
    else:
        assert max(r.history_size for r in results) == 10


def test_steepest_descent_monotone():
    opt = LBFGS(hist_length=0)
    x, losses, results = run(opt, rosen, rosen_x0(2), 200)
    assert all(r.history_size == 0 for r in results)
    assert all(r.accepted for r in results)
    assert all(b < a for a, b in zip(losses, losses[1:]))
    assert losses[-1] < 0.1 * losses[0]


def test_complex_gradient_convention_finite_difference():
    fun, _, zs = make_complex_quadratic()
    rng = np.random.default_rng(1)
    z = {k: v + rng.normal(size=v.shape) + 1j * rng.normal(size=v.shape) for k, v in zs.items()}
    d = {k: rng.normal(size=v.shape) + 1j * rng.normal(size=v.shape) for k, v in zs.items()}
    _, g = fun(z)
    h = 1e-6
    fd = (fun(axpy(h, d, z))[0] - fun(axpy(-h, d, z))[0]) / (2 * h)
    assert fd == pytest.approx(vdot(g, d), rel=1e-6)


@pytest.mark.parametrize("m", [10, math.inf])
def test_ill_conditioned_complex_quadratic(m):
    fun, z0, zs = make_complex_quadratic()
    opt = LBFGS(hist_length=m)
    z, losses, _ = run(opt, fun, z0, 400)
    for k in zs:
        np.testing.assert_allclose(z[k], zs[k], atol=1e-5 * max(1.0, np.abs(zs[k]).max()))
    assert losses[-1] < 1e-8 * losses[0]


def test_mixed_real_and_complex_blocks():
    c = 1.0 + 1.0j
    t = np.array([0.5, -2.0, 3.0])

    def fun(x):
        r, z = x["r"], x["z"]
        res = z - c * r
        f = float(np.sum(np.abs(res) ** 2) + 10.0 * np.sum((r - t) ** 2))
        gr = -2.0 * np.real(np.conj(c) * res) + 20.0 * (r - t)
        return f, {"r": gr, "z": 2.0 * res}

    x0 = {"r": np.zeros(3), "z": np.full(3, 5.0 - 1.0j)}
    # check the convention on the real block too
    d = {"r": np.array([1.0, -0.5, 0.3]), "z": np.array([0.2j, 1.0, -1 + 1j])}
    h = 1e-6
    fd = (fun(axpy(h, d, x0))[0] - fun(axpy(-h, d, x0))[0]) / (2 * h)
    assert fd == pytest.approx(vdot(fun(x0)[1], d), rel=1e-6)
    x, losses, _ = run(LBFGS(), fun, x0, 100)
    np.testing.assert_allclose(x["r"], t, atol=1e-6)
    np.testing.assert_allclose(x["z"], c * t, atol=1e-6)
    assert x["r"].dtype == np.float64 and x["z"].dtype == np.complex128


def test_never_increases_loss_on_nasty_function():
    def fun(x):
        v = x["v"]
        s = np.sin(5.0 * v)
        f = float(np.sum(v ** 2) + 3.0 * np.sum(s) ** 2 + np.sum(np.abs(v) ** 3))
        g = 2.0 * v + 30.0 * np.sum(s) * np.cos(5.0 * v) + 3.0 * v * np.abs(v)
        return f, {"v": g}

    x = {"v": np.linspace(-3.0, 4.0, 7)}
    opt = LBFGS(hist_length=5, max_count=6)
    _, losses, results = run(opt, fun, x, 60)
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    for r in results:
        assert r.f == fun(r.x)[0]
        if r.accepted:
            assert r.step > 0.0
        else:
            assert r.step == 0.0


# ------------------------------------------------------------ rejection paths
def _build_history(opt):
    fun, z0, _ = make_complex_quadratic()
    z, _, results = run(opt, fun, z0, 3)
    assert opt.history_size > 0
    return fun, z


def test_max_count_exhaustion_rejects_and_resets():
    opt = LBFGS(max_count=5)
    quad, z = _build_history(opt)
    f0, g0 = quad(z)

    def wall(x):  # +inf anywhere except at the current point
        same = all(np.array_equal(x[k], z[k]) for k in z)
        return (f0 if same else math.inf), g0

    r = opt.step(wall, z, f0, g0)
    assert isinstance(r, StepResult)
    assert not r.accepted and r.step == 0.0
    assert r.x is z and r.f == f0 and r.n_evals == 5
    assert r.history_size == 0 and opt.history_size == 0
    assert "max_count" in r.message


def test_max_count_accepts_best_armijo_point():
    # concave 1-D: sufficient decrease always holds, curvature never does
    def fun(x):
        return float(-np.sum(x["v"] ** 2)), {"v": -2.0 * x["v"]}

    opt = LBFGS(max_count=3)
    x0 = {"v": np.array([1.0, -2.0])}
    r = opt.step(fun, x0)
    assert r.accepted and r.n_evals == 4  # initial evaluation + 3
    assert r.f < fun(x0)[0]
    # the pair has negative curvature: not stored
    assert r.history_size == 0 and "non-positive curvature" in r.message


def test_min_step_rejection():
    x0 = {"v": np.array([1.0, 2.0])}

    def fun(x):
        same = np.array_equal(x["v"], x0["v"])
        return (1.0 if same else math.inf), {"v": np.array([1.0, 1.0])}

    opt = LBFGS(max_count=None, min_step=1e-3)
    r = opt.step(fun, x0)
    assert not r.accepted and r.x is x0 and r.f == 1.0
    assert "min_step" in r.message
    assert r.n_evals == 1 + 3  # fun(x0), then trials 0.707.., 0.0707.., 0.00707..


def test_equal_loss_is_rejected():
    def fun(x):
        return 1.0, {"v": np.ones_like(x["v"])}

    r = LBFGS(max_count=4).step(fun, {"v": np.zeros(3)})
    assert not r.accepted and r.step == 0.0


# --------------------------------------------------------------- history logic
def test_history_reset_when_block_set_changes():
    opt = LBFGS()
    x, _, _ = run(opt, rosen, rosen_x0(4), 5)
    assert opt.history_size > 0
    # stop refining block "a": only "b" is optimized
    a_fixed = x["a"]

    def fun_b(xb):
        f, g = rosen({"a": a_fixed, "b": xb["b"]})
        return f, {"b": g["b"]}

    r = opt.step(fun_b, {"b": x["b"]})
    assert "block set changed" in r.message
    assert r.accepted and r.history_size <= 1
    # a shape change also resets
    opt.step(rosen, rosen_x0(4))
    r = opt.step(rosen, rosen_x0(6))
    assert "block set changed" in r.message


def test_hist_length_trimming_and_override():
    opt = LBFGS(hist_length=3)
    _, _, results = run(opt, rosen, rosen_x0(6), 12)
    sizes = [r.history_size for r in results]
    assert max(sizes) == 3
    x = results[-1].x
    r = opt.step(rosen, x, hist_length=1)
    assert r.history_size <= 1
    r = opt.step(rosen, r.x, hist_length=0)
    assert r.history_size == 0


def test_positive_curvature_pair_stored():
    fun, z0, _ = make_complex_quadratic()
    r = LBFGS().step(fun, z0)
    assert r.accepted and r.history_size == 1 and r.message == ""


def test_reset_method():
    opt = LBFGS()
    run(opt, rosen, rosen_x0(4), 4)
    assert opt.history_size > 0
    opt.reset("user")
    assert opt.history_size == 0 and opt.last_reset_reason == "user"


# ------------------------------------------------------------- dtypes, determinism
def test_complex64_dtype_preserved():
    fun, z0, zs = make_complex_quadratic(dtype=np.complex64)
    opt = LBFGS()
    z, losses, results = run(opt, fun, z0, 30)
    for r in results:
        assert all(r.x[k].dtype == np.complex64 for k in r.x)
        assert all(r.g[k].dtype == np.complex64 for k in r.g)
    for p in opt._hist:
        assert all(v.dtype == np.complex64 for v in p.s.values())
        assert all(v.dtype == np.complex64 for v in p.y.values())
    assert losses[-1] < 1e-3 * losses[0]


def test_deterministic():
    def once():
        fun, z0, _ = make_complex_quadratic(dtype=np.complex64)
        opt = LBFGS(hist_length=4)
        z, losses, results = run(opt, fun, z0, 25)
        x, l2, r2 = run(LBFGS(), rosen, rosen_x0(6), 40)
        return z, losses, [r.step for r in results], x, l2

    a, b = once(), once()
    for k in a[0]:
        assert np.array_equal(a[0][k], b[0][k])
    assert a[1] == b[1] and a[2] == b[2] and a[4] == b[4]
    for k in a[3]:
        assert np.array_equal(a[3][k], b[3][k])


def test_non_descent_direction_falls_back_to_gradient():
    opt = LBFGS()
    x, _, _ = run(opt, rosen, rosen_x0(4), 3)
    assert opt.history_size > 0
    opt._direction = lambda g: g  # sabotage the two-loop: ascent direction
    r = opt.step(rosen, x)
    assert "not a descent direction" in r.message
    assert r.accepted and r.f < rosen(x)[0] and r.history_size <= 1


def test_per_step_overrides():
    fun, z0, _ = make_complex_quadratic()
    opt = LBFGS()
    f0, g0 = fun(z0)
    # update_step scales the first trial: with max_count=1 the trial either is accepted or not
    r_small = LBFGS(max_count=1).step(fun, z0, f0, g0, update_step=1e-3)
    assert r_small.accepted and r_small.n_evals == 1
    assert r_small.step == pytest.approx(1e-3 * min(1.0, 1.0 / norm(g0)))
    with pytest.raises(ValueError):
        opt.step(fun, z0, f0, g0, c1=0.95)
    with pytest.raises(ValueError):
        opt.step(fun, z0, f0, g0, hist_length=2.5)
