"""Object loss terms (pypty.regularizers.object_terms): gradients, zero cases, exact properties, behaviour.

Design reference: design/regularizers.md sections 3.1 (mixed variance), 3.4
(smooth L1 of phase and absorption), 3.5 (adaptive TV), 3.10 (missing wedge)
and the test plan of section 9.  Every check runs on each backend of the
``bk`` fixture (NumPy; CuPy where a GPU exists).
"""
import math
import zlib

import numpy as np
import pytest
from conftest import vdot

from pypty.optim import LBFGS
from pypty.regularizers.object_terms import TERMS, AbsNorm, AdaptiveTV, MissingWedge, MixedVariance, PhaseNorm

#: every key the object terms read, at non-trivial values
BASE = dict(mixed_variance_weight=0.7, mixed_variance_sigma=0.3,
            phase_norm_weight=0.4, phase_norm_eps=1e-2, abs_norm_weight=0.3, abs_norm_eps=1e-2,
            atv_weight=0.2, atv_q=1.0, atv_p=2.0, atv_eps=1e-3,
            wedge_mu=0.8, beta_wedge=1.5, pixel_size_y_A=0.5, pixel_size_x_A=0.4, slice_distances=np.array([2.0]))


def _term(cls, bk, **over):
    return cls({k: over.get(k, v) for k, v in BASE.items()}, bk)


def _vg(term, bk, obj, epoch=0):
    """(value, gradient as NumPy) of a term at a NumPy object."""
    value, g = term.value_and_grad({"obj": bk.asarray(obj)}, epoch)
    assert isinstance(value, float) and set(g) == {"obj"}
    return value, bk.to_numpy(g["obj"])


def _fd(term, bk, obj, rng, h=1e-6):
    """(analytic, central-difference) directional derivative along a random complex direction."""
    _, g = _vg(term, bk, obj)
    d = rng.standard_normal(obj.shape) + 1j * rng.standard_normal(obj.shape)
    num = (_vg(term, bk, obj + h * d)[0] - _vg(term, bk, obj - h * d)[0]) / (2 * h)
    return vdot(g, d), num


def _rand_obj(rng, shape, phase=0.5, amp=0.1):
    return np.exp(1j * phase * rng.standard_normal(shape)) * (1 + amp * rng.random(shape))


def _minimise(term, bk, target, iters=400):
    """argmin_O norm(O - target)^2 + R(O) by pypty.optim.LBFGS, started at the target; NumPy result."""
    t = bk.asarray(target)

    def fun(x):
        r, g = term.value_and_grad(x, 0)
        diff = x["obj"] - t
        return float(bk.xp.sum(abs(diff) ** 2)) + r, {"obj": 2 * diff + g["obj"]}

    opt = LBFGS(hist_length=10)
    x = {"obj": t.copy()}
    f, g = fun(x)
    for _ in range(iters):
        res = opt.step(fun, x, f, g)
        if not res.accepted:  # converged: the line search finds no further decrease
            break
        x, f, g = res.x, res.f, res.g
    return bk.to_numpy(x["obj"])


# ----------------------------------------------------------------------------- gradients
FD_CASES = [
    ("mixed_variance", MixedVariance, {}, (2, 3, 16, 18), "rand", 1e-6),
    ("mixed_variance_wide", MixedVariance, dict(mixed_variance_sigma=2.0), (1, 2, 16, 18), "rand", 1e-6),
    ("phase_norm", PhaseNorm, {}, (2, 2, 16, 18), "l1", 1e-5),
    ("abs_norm", AbsNorm, {}, (2, 2, 16, 18), "l1", 1e-5),
    ("wedge", MissingWedge, {}, (4, 2, 16, 18), "rand", 1e-6),
    ("wedge_S3", MissingWedge, dict(beta_wedge=0.7), (3, 1, 16, 18), "rand", 1e-6),
] + [("atv_q%g_p%g_%s" % (q, p, kind), AdaptiveTV, dict(atv_q=q, atv_p=p), (2, 2, 16, 18), kind, 1e-6)
     for q, p in [(1, 2), (2, 2), (1, 1), (0.5, 1), (1.5, 1.3)] for kind in ("rand", "flat")]


@pytest.mark.parametrize("label, cls, over, shape, kind, rtol", FD_CASES, ids=[c[0] for c in FD_CASES])
def test_gradient_matches_central_differences(bk, label, cls, over, shape, kind, rtol):
    rng = np.random.default_rng(zlib.crc32(label.encode()))
    h = 1e-6
    if kind == "l1":  # abs(O) in [0.8, 1.2], phase in [-1, 1]
        obj = rng.uniform(0.8, 1.2, shape) * np.exp(1j * rng.uniform(-1, 1, shape))
    elif kind == "flat":  # differences ~ eps: the smoothing region of the TV
        obj = 0.9 * np.exp(1j * 1e-3 * rng.standard_normal(shape))
        h = 1e-8
    else:
        obj = _rand_obj(rng, shape)
    ana, num = _fd(_term(cls, bk, **over), bk, obj, rng, h)
    assert abs(num) > 1e-8
    assert abs(ana - num) <= rtol * max(1.0, abs(ana)), (ana, num)


@pytest.mark.parametrize("cls", TERMS)
def test_input_unchanged_and_dtypes(bk, cls):
    rng = np.random.default_rng(5)
    for dtype in (np.complex128, np.complex64):
        obj = bk.asarray(_rand_obj(rng, (4, 2, 16, 18)).astype(dtype))
        before = obj.copy()
        term = _term(cls, bk)
        value, g = term.value_and_grad({"obj": obj}, 0)
        assert bk.xp.array_equal(obj, before)
        assert isinstance(value, float) and math.isfinite(value) and value > 0
        assert g["obj"].dtype == dtype and g["obj"].shape == obj.shape
        assert bool(bk.xp.all(bk.xp.isfinite(g["obj"])))
        if dtype == np.complex64:  # float32 agrees with float64 to single precision
            v64, g64 = _vg(term, bk, bk.to_numpy(obj).astype(np.complex128))
            assert abs(value - v64) <= 1e-4 * abs(v64)
            assert np.abs(bk.to_numpy(g["obj"]) - g64).max() <= 1e-4 * np.abs(g64).max()


def test_registry_metadata():
    names = [cls.name for cls in TERMS]
    assert names == ["mixed_variance", "phase_norm", "abs_norm", "atv", "wedge"]
    for cls in TERMS:
        assert isinstance(cls.PARAMS, tuple) and cls.WEIGHT in cls.PARAMS
        assert set(cls.PARAMS) <= set(BASE)
    assert set(MissingWedge.READS) <= set(BASE)


# ----------------------------------------------------------------------------- switching, epochs, keys
def test_from_params_and_epoch_resolution(bk):
    p = dict(BASE, mixed_variance_weight=0)
    assert MixedVariance.from_params(p, bk) is None
    p["mixed_variance_weight"] = lambda e: 0.0 if e < 2 else 1.5
    term = MixedVariance.from_params(p, bk)
    assert term is not None and not term.active(0) and term.active(3)
    assert term.key(0) != term.key(3) and term.key(3) == term.key(4)
    obj = _rand_obj(np.random.default_rng(1), (1, 2, 16, 18))
    v3, g3 = _vg(term, bk, obj, epoch=3)
    v1, g1 = _vg(_term(MixedVariance, bk, mixed_variance_weight=1.0), bk, obj)
    assert np.isclose(v3, 1.5 * v1, rtol=1e-13) and np.allclose(g3, 1.5 * g1, rtol=1e-13, atol=0)
    # an epoch-dependent exponent is resolved too
    tv = _term(AdaptiveTV, bk, atv_q=lambda e: 1.0 if e == 0 else 2.0)
    assert tv.key(0) != tv.key(1)
    assert _vg(tv, bk, obj, 1)[0] == _vg(_term(AdaptiveTV, bk, atv_q=2.0), bk, obj)[0]


def test_wedge_switch_key_and_check_params(bk):
    assert MissingWedge.from_params(dict(BASE, beta_wedge=0), bk) is None
    assert MissingWedge.from_params(dict(BASE, wedge_mu=0), bk) is None
    term = _term(MissingWedge, bk, beta_wedge=lambda e: 0.0 if e < 1 else 1.0)
    assert not term.active(0) and term.active(1)
    assert not _term(MissingWedge, bk, wedge_mu=0.0).active(0)
    # the geometry is part of the key
    assert _term(MissingWedge, bk).key(0) != _term(MissingWedge, bk, pixel_size_x_A=0.41).key(0)
    assert _term(MissingWedge, bk).key(0) != _term(MissingWedge, bk, slice_distances=np.array([2.5])).key(0)
    ok = MissingWedge.check_params
    assert ok(BASE) == [] and ok(dict(BASE, wedge_mu=0.5, beta_wedge=0)) == []
    assert ok(dict(BASE, slice_distances=np.array([2.0, 2.0, 2.0]))) == []
    err = ok(dict(BASE, wedge_mu=0))
    assert len(err) == 1 and "beta_wedge" in err[0] and "wedge_mu" in err[0]
    err = ok(dict(BASE, slice_distances=np.array([2.0, 3.0])))
    assert len(err) == 1 and "slice_distances" in err[0]
    assert ok(dict(BASE, wedge_mu=lambda e: 1.0)) == []


def test_atv_check_params_and_runtime_range(bk):
    assert AdaptiveTV.check_params(BASE) == []
    assert AdaptiveTV.check_params(dict(BASE, atv_q=lambda e: 5.0)) == []  # checked per epoch instead
    for key, bad in (("atv_p", 0.5), ("atv_q", 2.5), ("atv_q", 0.0), ("atv_eps", 0.0)):
        err = AdaptiveTV.check_params(dict(BASE, **{key: bad}))
        assert len(err) == 1 and key in err[0]
    term = _term(AdaptiveTV, bk, atv_p=lambda e: 0.5)
    with pytest.raises(ValueError, match="atv_p"):
        term.value_and_grad({"obj": bk.asarray(np.ones((1, 1, 4, 4), complex))}, 0)


# ----------------------------------------------------------------------------- 3.1 mixed variance
def test_mixed_variance_zero_cases_and_mode_mean(bk):
    rng = np.random.default_rng(2)
    term = _term(MixedVariance, bk)
    one = _rand_obj(rng, (2, 1, 16, 18))
    v, g = _vg(term, bk, one)
    assert v == 0.0 and not g.any()
    same = np.repeat(one, 3, axis=1)
    v, g = _vg(term, bk, same)
    assert v <= 1e-26 and np.abs(g).max() <= 1e-14
    obj = _rand_obj(rng, (2, 3, 16, 18))
    v, g = _vg(term, bk, obj)
    assert np.linalg.norm(g.sum(axis=1)) <= 1e-12 * np.linalg.norm(g)
    shifted = obj + _rand_obj(rng, (2, 1, 16, 18))  # the same array added to every mode
    assert np.isclose(_vg(term, bk, shifted)[0], v, rtol=1e-12)


def test_mixed_variance_frequency_selectivity(bk):
    """Equal-power mode differences at f_y = 1/16 and at Nyquist: R_high / R_low = exp(-2 (1/4 - 1/256) / sigma^2)."""
    sigma = 0.3
    term = _term(MixedVariance, bk, mixed_variance_sigma=sigma)
    y = np.arange(16)[:, None] * np.ones((1, 18))
    base = np.exp(0.3j * np.random.default_rng(0).standard_normal((16, 18)))
    values = []
    for delta in (np.cos(2 * np.pi * y / 16), np.cos(np.pi * y)):
        delta = delta / np.linalg.norm(delta)
        values.append(_vg(term, bk, np.stack([base + delta, base - delta])[None])[0])
    assert np.isclose(values[1] / values[0], np.exp(-2 * (0.25 - 1 / 256) / sigma**2), rtol=1e-10, atol=0)


def test_mixed_variance_removes_low_frequency_mode_differences(bk):
    rng = np.random.default_rng(3)
    n = 32
    f = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :])

    def band(mask):
        z = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) * mask)
        return 0.1 * z / np.abs(z).std()

    base = np.exp(0.2j * rng.standard_normal((n, n)))
    low = band(f < 0.05)
    target = np.stack([base + low / 2 + band(f > 0.35), base - low / 2 + band(f > 0.35)])[None]
    term = _term(MixedVariance, bk, mixed_variance_weight=20.0, mixed_variance_sigma=0.1)
    out = _minimise(term, bk, target)

    def energies(o):
        spec = np.abs(np.fft.fft2(o[0, 0] - o[0, 1])) ** 2
        return spec[f < 0.1].sum(), spec[f > 0.3].sum()

    (l0, h0), (l1, h1) = energies(target), energies(out)
    assert l1 < 0.1 * l0  # low-pass energy of the differences falls by > 90%
    assert abs(h1 / h0 - 1) < 0.1  # high-pass energy changes by < 10%
    assert np.abs(out.mean(axis=1) - target.mean(axis=1)).max() < 1e-10  # the mode mean is kept


# ----------------------------------------------------------------------------- 3.4 smooth L1 norms
def test_l1_zero_cases(bk):
    rng = np.random.default_rng(4)
    real_pos = rng.uniform(0.5, 1.5, (2, 2, 16, 18)).astype(complex)  # phase 0
    v, g = _vg(_term(PhaseNorm, bk), bk, real_pos)
    assert v == 0.0 and not g.any()
    unit = np.exp(1j * rng.uniform(-1, 1, (2, 2, 16, 18)))  # abs(O) = 1
    v, g = _vg(_term(AbsNorm, bk), bk, unit)
    assert v <= 1e-24 and np.abs(g).max() <= 1e-12


def test_l1_tangential_radial_split_and_eps_bound(bk):
    rng = np.random.default_rng(6)
    obj = rng.uniform(0.8, 1.2, (2, 2, 16, 18)) * np.exp(1j * rng.uniform(-1, 1, (2, 2, 16, 18)))
    eps = 1e-2
    vp, gp = _vg(_term(PhaseNorm, bk, phase_norm_weight=1.0, phase_norm_eps=eps), bk, obj)
    va, ga = _vg(_term(AbsNorm, bk, abs_norm_weight=1.0, abs_norm_eps=eps), bk, obj)
    scale = np.abs(obj).max()
    assert np.abs((np.conj(gp) * obj).real).max() <= 1e-14 * np.abs(gp).max() * scale  # phase only
    assert np.abs((np.conj(ga) * obj).imag).max() <= 1e-14 * np.abs(ga).max() * scale  # modulus only
    for v, l1 in ((vp, np.abs(np.angle(obj)).sum()), (va, np.abs(np.log(np.abs(obj))).sum())):
        assert 0 <= l1 - v <= eps * obj.size


def test_phase_norm_soft_thresholds_vacuum_noise(bk):
    """argmin norm(O - exp(i phi_n))^2 + w sum rho(arg O): vacuum noise (3 sigma below w/2) goes to 0.

    Per pixel (O = r exp(i phi), r = cos(phi - phi_n) at the optimum) the crystal phase is
    phi_n - asin(w)/2 exactly, up to O(eps^2 / phi^2).
    """
    rng = np.random.default_rng(2)
    phi = np.zeros((32, 32))
    phi[:, 16:] = 0.5
    noisy = phi + rng.normal(0, 0.05, phi.shape)
    w = 0.3
    out = np.angle(_minimise(_term(PhaseNorm, bk, phase_norm_weight=w, phase_norm_eps=1e-3), bk,
                             np.exp(1j * noisy)[None, None])[0, 0])
    assert np.mean(np.abs(out[:, :16]) < 0.01) >= 0.99
    assert abs(out[:, 16:].mean() - 0.35) <= 0.01
    assert np.abs(out[:, 16:] - (noisy[:, 16:] - np.arcsin(w) / 2)).max() < 1e-3


def test_abs_norm_soft_thresholds_vacuum_noise(bk):
    """The same for -ln abs(O); in the crystal r = (r_n + sqrt(r_n^2 + 2w)) / 2 exactly (r < 1, eps -> 0)."""
    rng = np.random.default_rng(2)
    a = np.zeros((32, 32))
    a[:, 16:] = 0.5
    noisy = a + rng.normal(0, 0.05, a.shape)
    w = 0.3
    out = np.abs(_minimise(_term(AbsNorm, bk, abs_norm_weight=w, abs_norm_eps=1e-3), bk,
                           np.exp(-noisy).astype(complex)[None, None])[0, 0])
    assert np.mean(np.abs(np.log(out[:, :16])) < 0.01) >= 0.99
    rn = np.exp(-noisy[:, 16:])
    assert np.abs(out[:, 16:] - (rn + np.sqrt(rn**2 + 2 * w)) / 2).max() < 1e-3


# ----------------------------------------------------------------------------- 3.5 adaptive TV
@pytest.mark.parametrize("q, p", [(1, 2), (2, 2), (1, 1), (0.5, 1)])
def test_atv_zero_for_constant_object(bk, q, p):
    obj = np.full((2, 2, 16, 18), 0.8 * np.exp(0.3j))
    for dtype in (np.complex128, np.complex64):
        v, g = _vg(_term(AdaptiveTV, bk, atv_q=q, atv_p=p), bk, obj.astype(dtype))
        assert v == 0.0 and not g.any()


def test_atv_neumann_boundary(bk):
    """No coupling across the canvas edges: a ramp in x has R = w (Nx - 1) Ny (|slope| + ...) with no wrap jump."""
    term = _term(AdaptiveTV, bk, atv_weight=1.0, atv_q=1.0, atv_p=1.0, atv_eps=1e-9)
    obj = (np.arange(18) * 0.1 * np.ones((16, 1))).astype(complex)[None, None]
    v, _ = _vg(term, bk, obj)
    assert np.isclose(v, 16 * 17 * 0.1, rtol=1e-7)  # a periodic difference would add 16 * 1.7


def test_atv_denoises_vacuum_and_keeps_the_edge(bk):
    """64 x 64, phase 0 | 0.5 rad plus phase noise 0.1 rad: q = 1 halves the vacuum std or better and keeps the edge.

    q = 2 (quadratic smoothing) at a similar vacuum std smears the edge over several pixels.
    """
    rng = np.random.default_rng(1)
    phi = np.zeros((64, 64))
    phi[:, 32:] = 0.5
    noise = rng.normal(0, 0.1, phi.shape)
    target = np.exp(1j * (phi + noise))[None, None]
    profiles = {}
    for q, w in ((1.0, 0.1), (2.0, 1.0)):
        out = np.angle(_minimise(_term(AdaptiveTV, bk, atv_weight=w, atv_q=q, atv_p=2.0, atv_eps=1e-3),
                                 bk, target)[0, 0])
        assert out[:, :28].std() <= 0.5 * noise[:, :28].std()
        profiles[q] = out.mean(axis=0)
    tv = profiles[1.0]
    assert abs((tv[34:38].mean() - tv[26:30].mean()) - 0.5) <= 0.05 * 0.5  # the jump, 2-5 px off the edge
    assert tv[32] - tv[31] > 0.8 * 0.5  # sharp: most of the jump within one pixel
    assert profiles[2.0][32] - profiles[2.0][31] < 0.6 * 0.5  # quadratic smoothing blurs it


# ----------------------------------------------------------------------------- 3.10 missing wedge
def test_wedge_zero_cases_and_slice_sum(bk):
    rng = np.random.default_rng(7)
    term = _term(MissingWedge, bk)
    same = np.repeat(_rand_obj(rng, (1, 2, 16, 18)), 4, axis=0)  # z-invariant
    v, g = _vg(term, bk, same)
    assert v <= 1e-25 and np.abs(g).max() <= 1e-14
    assert _vg(term, bk, _rand_obj(rng, (1, 2, 16, 18)))[0] == 0.0  # S = 1
    v, g = _vg(term, bk, _rand_obj(rng, (4, 2, 16, 18)))
    assert v > 0 and np.abs(g.sum(axis=0)).max() <= 1e-14


def test_wedge_filter_values(bk):
    """W = (2/pi) atan(beta^2 q_z^2 / (q_r^2 + q0^2)): 0 at q_z = 0, largest at q_r = 0, the q0 limit there."""
    beta, dz, dy, dx = 1.5, 2.0, 0.5, 0.4
    shape = (4, 2, 16, 18)
    term = _term(MissingWedge, bk, beta_wedge=beta)
    wgt = bk.to_numpy(term.filter(shape, beta, np.dtype(np.float64)))
    assert wgt.shape == (4, 1, 16, 18) and not wgt[0].any()
    qz = np.fft.fftfreq(4, dz)
    q0 = 0.5 * min(1 / (16 * dy), 1 / (18 * dx))
    assert np.allclose(wgt[:, 0, 0, 0], 2 / np.pi * np.arctan(beta**2 * qz**2 / q0**2), rtol=1e-14, atol=0)
    assert wgt[2, 0, 0, 0] > 0.85  # no 1/Å^2 artefact at q_r = 0
    assert np.all(wgt[:, 0] <= wgt[:, :, :1, :1][:, 0] + 1e-15)
    # W = 1/2 on the cone q_z / q_r = 1 / beta (q0 aside: compare with the analytic value)
    qy = np.fft.fftfreq(16, dy)
    assert np.isclose(wgt[1, 0, 3, 0], 2 / np.pi * np.arctan(beta**2 * qz[1]**2 / (qy[3]**2 + q0**2)), rtol=1e-14)
    # one gradient step of length 1 / (2 mu) multiplies F3 O by (1 - W) (the kz filter with alpha = 0)
    obj = _rand_obj(np.random.default_rng(8), shape)
    _, g = _vg(term, bk, obj)
    stepped = obj - g / (2 * BASE["wedge_mu"])
    expected = np.fft.ifftn((1 - wgt) * np.fft.fftn(obj, axes=(0, 2, 3)), axes=(0, 2, 3))
    assert np.allclose(stepped, expected, rtol=0, atol=1e-13)


def test_wedge_halves_an_alternating_component(bk):
    """4 slices: a laterally smooth z-alternating pattern is halved or better; a z-invariant sharp column is kept."""
    S, n = 4, 24
    y, x = np.mgrid[:n, :n]
    smooth = 0.1 * np.cos(2 * np.pi * y / n) * np.cos(2 * np.pi * x / n)
    sign = np.array([(-1) ** s for s in range(S)])[:, None, None]
    column = np.zeros((n, n))
    column[10:12, 10:12] = 0.3
    target = (1 + sign * smooth + 1j * column)[:, None]
    term = _term(MissingWedge, bk, wedge_mu=2.0, beta_wedge=1.0, pixel_size_y_A=0.5, pixel_size_x_A=0.5)
    out = _minimise(term, bk, target)
    alternating = (out[:, 0] * sign).mean(axis=0)
    assert np.abs(alternating).max() <= 0.5 * np.abs(smooth).max()
    assert np.abs(out[:, 0].imag - column).max() <= 0.01 * 0.3
    assert np.abs(out.sum(axis=0) - target.sum(axis=0)).max() <= 1e-12
