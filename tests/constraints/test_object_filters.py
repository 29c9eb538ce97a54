"""Class-D object filters (pypty/constraints/object_filters.py): exact maps against direct NumPy transcriptions
of the formulas of design/regularizers.md (sections 3.9, 3.12, 3.13, 4.2) and the properties of sections 3.9 (d),
3.12 (d), 3.13 (d) and 4.3, on every backend of the ``bk`` fixture."""
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.fft
import scipy.ndimage

from pypty.constraints.base import UNCHANGED
from pypty.constraints.object_filters import (
    CONSTRAINTS, ChargeFlip, DctThreshold, GaussianFilter, GaussianFilterZ, KrFilter, KzFilter,
    gaussian_convolve, gaussian_filter1d_nearest, gaussian_otf, wiener_deconvolve)

#: the rows the classes read, at the defaults of design section 8 (all filters off)
DEFAULTS = dict(
    do_charge_flip=False, cf_delta_phase=0.1, cf_delta_abs=0.01, cf_beta_phase=-0.95, cf_beta_abs=-0.95,
    fancy_sigma=None, fancy_sigma_eps=1e-3,
    apply_gaussian_filter=False, apply_gaussian_filter_amplitude=False,
    apply_gaussian_filter_z=False, apply_gaussian_filter_z_amplitude=False,
    kr_filter_radius=0, kr_filter_width=0.05, kr_filter_obj_type="both",
    kz_filter_beta=0, kz_filter_alpha=1.0, kz_filter_obj_type="both", kz_filter_amplitude_factor=0.9,
    dct_keep_fraction=1.0, dct_obj_type="both",
    slice_distances=np.array([2.0]), pixel_size_y_A=0.5, pixel_size_x_A=0.4,
)


def params(**kw):
    return dict(DEFAULTS, **kw)


def ctx(n_slices=3, refine=("obj", "probe"), phase_only=False, pix=(0.5, 0.4), dz=2.0):
    dzs = tuple(dz for _ in range(n_slices)) if np.isscalar(dz) else tuple(dz)
    model = SimpleNamespace(pixel_size_yx_A=pix, slice_distances=dzs, wavelength_A=0.0251)
    return SimpleNamespace(settings=SimpleNamespace(refine=refine, phase_only_obj=phase_only),
                           setup=SimpleNamespace(model=model))


def rand_obj(rng, shape=(3, 2, 12, 10), phase=0.6, absorb=0.2):
    """O = exp(-a + i phi) with a, phi smooth-ish random fields (S, K, Ny, Nx) complex128."""
    phi = phase * rng.standard_normal(shape)
    a = absorb * rng.standard_normal(shape)
    return np.exp(-a + 1j * phi)


def run(cls, bk, obj, p, c=None, epoch=0):
    """Apply ``cls`` to the NumPy array ``obj`` on ``bk``; check the input is untouched; NumPy result or None."""
    inst = cls(p, bk)
    dev = bk.asarray(obj)
    before = bk.to_numpy(dev).copy()
    new, change = inst.apply({"obj": dev}, epoch, c if c is not None else ctx(obj.shape[0]))
    np.testing.assert_array_equal(bk.to_numpy(dev), before)  # never modified in place
    if change is UNCHANGED or change.kind == "none":
        assert new == {}
        return None
    assert change.kind == "reset" and change.reason
    assert set(new) == {"obj"} and new["obj"] is not dev
    out = bk.to_numpy(new["obj"])
    assert out.shape == obj.shape and out.dtype == obj.dtype
    return out


def compose(a, phi):
    return np.exp(-a) * np.exp(1j * phi)


# ================================================================== Gaussian kernel against scipy.ndimage
@pytest.mark.parametrize("sigma, n, axis", [(0.4, 9, 0), (1.0, 12, 1), (2.5, 16, 2), (6.0, 8, 0), (1.7, 1, 1)])
def test_gaussian_filter1d_matches_scipy(bk, sigma, n, axis):
    rng = np.random.default_rng(0)
    shape = [5, 6, 7]
    shape[axis] = n
    a = rng.standard_normal(shape)
    z = a + 1j * rng.standard_normal(shape)
    ref = scipy.ndimage.gaussian_filter1d(a, sigma, axis=axis, mode="nearest", truncate=4.0)
    got = bk.to_numpy(gaussian_filter1d_nearest(bk.xp, bk.asarray(a), sigma, axis))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-14)
    refz = ref + 1j * scipy.ndimage.gaussian_filter1d(z.imag, sigma, axis=axis, mode="nearest", truncate=4.0)
    gotz = bk.to_numpy(gaussian_filter1d_nearest(bk.xp, bk.asarray(z), sigma, axis))
    np.testing.assert_allclose(gotz, refz, rtol=0, atol=1e-14)
    assert gaussian_filter1d_nearest(bk.xp, a, 0.0, axis) is a


# ================================================================== 1. charge flipping
def _flip_ref(x, delta, beta):
    """Direct transcription of design 3.12 (c), per (s, k)."""
    out = x.copy()
    for s in range(x.shape[0]):
        for k in range(x.shape[1]):
            m = x[s, k].max()
            if m > 0:
                sel = x[s, k] < delta * m
                out[s, k][sel] = beta * x[s, k][sel]
    return out


def test_charge_flip_exact_map(bk):
    rng = np.random.default_rng(1)
    ramp = np.linspace(-0.2, 1.0, 256).reshape(16, 16)
    phi = np.stack([np.stack([ramp, ramp.T[::-1] * 0.5]), np.stack([-np.abs(ramp) - 0.1, ramp * 2])])  # (2,2,16,16)
    a = 0.05 * rng.standard_normal(phi.shape)
    a[1, 1] = -np.abs(a[1, 1])  # an absorption slice with max <= 0: untouched
    obj = compose(a, phi)
    p = params(do_charge_flip=True, cf_delta_phase=0.3, cf_beta_phase=-0.8, cf_delta_abs=0.2, cf_beta_abs=-0.5)
    out = run(ChargeFlip, bk, obj, p, ctx(2))
    phi0, a0 = np.angle(obj), -np.log(np.abs(obj))
    ref = compose(_flip_ref(a0, 0.2, -0.5), _flip_ref(phi0, 0.3, -0.8))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-13)
    # phase slice (1, 0) has max <= 0: its phase is untouched; the unflipped pixels are bit-identical
    np.testing.assert_allclose(np.angle(out[1, 0]), phi0[1, 0], atol=1e-14)
    untouched = (phi0 >= 0.3 * phi0.max(axis=(-2, -1), keepdims=True)) | (phi0.max(axis=(-2, -1), keepdims=True) <= 0)
    untouched &= (a0 >= 0.2 * a0.max(axis=(-2, -1), keepdims=True)) | (a0.max(axis=(-2, -1), keepdims=True) <= 0)
    assert np.array_equal(out[untouched], obj[untouched])
    # the ramp of the design: entries below delta max are scaled by beta, the rest unchanged
    sel = ramp < 0.3 * ramp.max()
    np.testing.assert_allclose(np.angle(out[0, 0])[sel], -0.8 * ramp[sel], atol=1e-14)
    np.testing.assert_allclose(np.angle(out[0, 0])[~sel], ramp[~sel], atol=1e-14)


def test_charge_flip_slices_independent_and_identity(bk):
    rng = np.random.default_rng(2)
    obj = rand_obj(rng, (3, 2, 10, 10))
    p = params(do_charge_flip=True)
    out = run(ChargeFlip, bk, obj, p)
    obj2 = obj.copy()
    obj2[1, 0] = rand_obj(rng, (1, 1, 10, 10))[0, 0]  # change one (slice, mode) only
    out2 = run(ChargeFlip, bk, obj2, p)
    keep = np.ones((3, 2), bool)
    keep[1, 0] = False
    assert np.array_equal(out[keep], out2[keep])
    # beta = 1 is the identity: nothing changes, no reset
    assert run(ChargeFlip, bk, obj, params(do_charge_flip=True, cf_beta_phase=1.0, cf_beta_abs=1.0)) is None
    # only one part at beta = 1: that part is untouched (to rounding)
    out3 = run(ChargeFlip, bk, obj, params(do_charge_flip=True, cf_beta_phase=1.0))
    np.testing.assert_allclose(np.angle(out3), np.angle(obj), atol=1e-14)
    # object not refined: no action
    assert run(ChargeFlip, bk, obj, p, ctx(3, refine=("probe",))) is None
    # phase_only_obj: the absorption is not flipped
    out4 = run(ChargeFlip, bk, obj, p, ctx(3, phase_only=True))
    np.testing.assert_allclose(np.abs(out4), np.abs(obj), rtol=1e-14)


def test_charge_flip_removes_negative_background(bk):
    rng = np.random.default_rng(3)
    phi = np.full((1, 1, 32, 32), -0.05) + 0.005 * rng.standard_normal((1, 1, 32, 32))
    atoms = [(5, 7), (20, 12), (27, 27), (11, 24)]
    for y, x in atoms:
        phi[0, 0, y, x] = 1.0
    obj = np.exp(1j * phi)
    out = run(ChargeFlip, bk, obj, params(do_charge_flip=True, cf_beta_phase=-1.0, cf_delta_phase=0.1,
                                          cf_beta_abs=1.0))
    phi2 = np.angle(out)[0, 0]
    mask = np.ones((32, 32), bool)
    for y, x in atoms:
        mask[y, x] = False
        assert phi2[y, x] == pytest.approx(1.0, abs=1e-14)
    assert phi2[mask].min() >= 0


# ---------------------------------------------------------------- fancy_sigma
def _gauss_np(shape, sigma):
    ny, nx = shape
    y = np.fft.fftfreq(ny) * ny
    x = np.fft.fftfreq(nx) * nx
    g = np.exp(-(y[:, None] ** 2 + x[None] ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def test_gaussian_otf_and_round_trip(bk):
    g = _gauss_np((24, 20), 1.5)
    np.testing.assert_allclose(gaussian_otf((24, 20), 1.5), np.fft.fft2(g).real, atol=1e-15)
    assert abs(np.fft.fft2(g).imag).max() < 1e-15
    rng = np.random.default_rng(4)
    for sigma in (1.0, 2.0):
        sparse = np.zeros((1, 1, 32, 32))
        idx = rng.choice(32 * 32, 12, replace=False)
        sparse.reshape(-1)[idx] = rng.uniform(0.5, 1.0, 12)
        x = np.real(np.fft.ifft2(np.fft.fft2(sparse) * np.fft.fft2(_gauss_np((32, 32), sigma))))
        xd = wiener_deconvolve(bk, bk.asarray(x), sigma, 1e-6)
        back = bk.to_numpy(gaussian_convolve(bk, xd, sigma))
        assert np.linalg.norm(back - x) <= 2e-3 * np.linalg.norm(x)


def test_fancy_sigma_exact_map(bk):
    rng = np.random.default_rng(5)
    obj = rand_obj(rng, (2, 2, 16, 12), phase=0.3, absorb=0.1)
    kappa = 1e-2
    p = params(do_charge_flip=True, fancy_sigma=(1.2, None), fancy_sigma_eps=kappa, cf_delta_abs=0.2)
    out = run(ChargeFlip, bk, obj, p, ctx(2))
    ghat = np.fft.fft2(_gauss_np((16, 12), 1.2))
    phi = np.angle(obj)
    xd = np.real(np.fft.ifft2(np.conj(ghat) * np.fft.fft2(phi) / (np.abs(ghat) ** 2 + kappa)))
    ref_phi = np.real(np.fft.ifft2(ghat * np.fft.fft2(_flip_ref(xd, 0.1, -0.95))))
    ref_a = _flip_ref(-np.log(np.abs(obj)), 0.2, -0.95)  # no sigma for the absorption: plain flip
    np.testing.assert_allclose(out, compose(ref_a, ref_phi), rtol=0, atol=1e-12)


def test_fancy_sigma_float_no_translation_sharper(bk):
    shape = (1, 1, 32, 32)
    delta = np.zeros(shape)
    delta[0, 0, 8, 8] = 1.0
    sigma = 1.5
    x = np.real(np.fft.ifft2(np.fft.fft2(delta) * np.fft.fft2(_gauss_np((32, 32), sigma))))
    obj = np.exp(1j * x)
    out = run(ChargeFlip, bk, obj, params(do_charge_flip=True, fancy_sigma=sigma, cf_beta_abs=1.0))  # a float
    phi = np.angle(out)[0, 0]
    assert np.unravel_index(np.argmax(phi), phi.shape) == (8, 8)
    xd = bk.to_numpy(wiener_deconvolve(bk, bk.asarray(x), sigma, 1e-3))[0, 0]
    assert np.unravel_index(np.argmax(xd), xd.shape) == (8, 8)
    assert xd.max() > 2.5 * x.max()  # sharper: a higher peak at the same pixel


# ================================================================== 2. Gaussian filters in (y, x)
def _gf2(x, sigma):
    """scipy.ndimage per (s, k), 2-D over (y, x), 'nearest', truncate 4."""
    out = np.empty_like(x)
    for s in range(x.shape[0]):
        for k in range(x.shape[1]):
            if np.iscomplexobj(x):
                out[s, k] = (scipy.ndimage.gaussian_filter(x[s, k].real, sigma, mode="nearest", truncate=4.0)
                             + 1j * scipy.ndimage.gaussian_filter(x[s, k].imag, sigma, mode="nearest", truncate=4.0))
            else:
                out[s, k] = scipy.ndimage.gaussian_filter(x[s, k], sigma, mode="nearest", truncate=4.0)
    return out


def test_gaussian_filter_exact_map(bk):
    rng = np.random.default_rng(6)
    obj = rand_obj(rng, (2, 2, 14, 11))
    p = params(apply_gaussian_filter=1.3, apply_gaussian_filter_amplitude=(0.7, 2.0))
    out = run(GaussianFilter, bk, obj, p, ctx(2))
    ref_phi = np.angle(_gf2(np.exp(1j * np.angle(obj)), 1.3))
    ref_a = _gf2(-np.log(np.abs(obj)), (0.7, 2.0))
    np.testing.assert_allclose(out, compose(ref_a, ref_phi), rtol=0, atol=1e-13)
    # True = 1 px
    out_t = run(GaussianFilter, bk, obj, params(apply_gaussian_filter=True), ctx(2))
    out_1 = run(GaussianFilter, bk, obj, params(apply_gaussian_filter=1.0), ctx(2))
    np.testing.assert_array_equal(out_t, out_1)


def test_gaussian_filter_parts_and_leaks(bk):
    rng = np.random.default_rng(7)
    obj = rand_obj(rng, (3, 2, 12, 12))
    only_phase = run(GaussianFilter, bk, obj, params(apply_gaussian_filter=2.0))
    np.testing.assert_allclose(np.abs(only_phase), np.abs(obj), rtol=1e-15, atol=0)
    only_amp = run(GaussianFilter, bk, obj, params(apply_gaussian_filter_amplitude=2.0))
    np.testing.assert_allclose(np.angle(only_amp), np.angle(obj), rtol=0, atol=1e-15)
    # phase_only_obj: the amplitude filter is skipped
    assert run(GaussianFilter, bk, obj, params(apply_gaussian_filter_amplitude=2.0), ctx(3, phase_only=True)) is None
    assert run(GaussianFilter, bk, obj, params(apply_gaussian_filter=2.0), ctx(3, refine=())) is None
    # delta in (slice 1, mode 0): no leak into other slices or modes
    d = np.ones((3, 2, 16, 16), complex)
    d[1, 0, 8, 8] = np.exp(-0.5 + 1.0j)
    out = run(GaussianFilter, bk, d, params(apply_gaussian_filter=2.0, apply_gaussian_filter_amplitude=2.0))
    keep = np.ones((3, 2), bool)
    keep[1, 0] = False
    assert np.array_equal(out[keep], d[keep])
    assert np.abs(out[1, 0] - 1).max() > 1e-3


def test_gaussian_filter_wrap_and_noise(bk):
    # wrap test: pi - 0.05 on the left, -pi + 0.05 on the right stays near +-pi
    phi = np.where(np.arange(16)[None, :] < 8, np.pi - 0.05, -np.pi + 0.05) * np.ones((16, 1))
    out = run(GaussianFilter, bk, np.exp(1j * phi)[None, None], params(apply_gaussian_filter=2.0), ctx(1))
    assert np.abs(np.abs(np.angle(out)) - np.pi).max() <= 0.1
    # vacuum with phase noise 0.05 rad, sigma = 2 px: variance ratio about 1 / (4 pi sigma^2)
    rng = np.random.default_rng(8)
    noise = 0.05 * rng.standard_normal((1, 1, 128, 128))
    out = run(GaussianFilter, bk, np.exp(1j * noise), params(apply_gaussian_filter=2.0), ctx(1))
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    ratio = np.var(np.angle(out)[inner]) / np.var(noise[inner])
    assert ratio == pytest.approx(1 / (4 * np.pi * 4.0), rel=0.2)


# ================================================================== 3. Gaussian filter in z
def test_gaussian_filter_z_exact_map(bk):
    rng = np.random.default_rng(9)
    obj = rand_obj(rng, (6, 2, 5, 4))
    p = params(apply_gaussian_filter_z=1.4, apply_gaussian_filter_z_amplitude=0.8)
    out = run(GaussianFilterZ, bk, obj, p, ctx(6))
    u = np.exp(1j * np.angle(obj))
    def gz(x, s):
        return scipy.ndimage.gaussian_filter1d(x, s, axis=0, mode="nearest", truncate=4.0)

    ref_phi = np.angle(gz(u.real, 1.4) + 1j * gz(u.imag, 1.4))
    ref_a = gz(-np.log(np.abs(obj)), 0.8)
    np.testing.assert_allclose(out, compose(ref_a, ref_phi), rtol=0, atol=1e-13)
    # no leak across modes; |O'| = |O| with the phase filter only; S = 1 is the identity
    obj2 = obj.copy()
    obj2[:, 1] = 1.0
    out2 = run(GaussianFilterZ, bk, obj2, params(apply_gaussian_filter_z=True), ctx(6))
    np.testing.assert_allclose(out2[:, 1], 1.0, atol=1e-15)
    np.testing.assert_allclose(np.abs(out2), np.abs(obj2), rtol=1e-15)
    assert run(GaussianFilterZ, bk, obj[:1], p, ctx(1)) is None


# ================================================================== 4. kr filter
def test_kr_filter_exact_map(bk):
    rng = np.random.default_rng(10)
    obj = rand_obj(rng, (2, 2, 12, 15), phase=0.4, absorb=0.1)
    p = params(kr_filter_radius=0.4, kr_filter_width=0.07)
    out = run(KrFilter, bk, obj, p, ctx(2))
    fy, fx = np.fft.fftfreq(12)[:, None], np.fft.fftfreq(15)[None, :]
    s = 1.0 / (1.0 + np.exp(10.0 * (np.sqrt(fy ** 2 + fx ** 2) - 0.4 / 2) / 0.07))

    def filt(x):
        return np.real(np.fft.ifft2(s * np.fft.fft2(x)))

    ref = filt(np.abs(obj)) * np.exp(1j * filt(np.angle(obj)))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-13)
    ph = run(KrFilter, bk, obj, params(kr_filter_radius=0.4, kr_filter_width=0.07, kr_filter_obj_type="phase"), ctx(2))
    np.testing.assert_allclose(np.abs(ph), np.abs(obj), rtol=1e-14)
    am = run(KrFilter, bk, obj, params(kr_filter_radius=0.4, kr_filter_width=0.07, kr_filter_obj_type="amplitude"),
             ctx(2))
    np.testing.assert_allclose(np.angle(am), np.angle(obj), atol=1e-14)
    # per (slice, mode): a constant plane stays constant, next to a random one
    obj[1, 0] = np.exp(0.3j)
    out = run(KrFilter, bk, obj, p, ctx(2))
    np.testing.assert_allclose(out[1, 0], np.exp(0.3j), atol=1e-14)


# ================================================================== 5. kz filter
def _kz_ref(x, pix, dz, beta, alpha):
    """Direct transcription of design 4.2 (kz_filter port) and 3.10 (W_beta), with a full complex FFT."""
    S, K, ny, nx = x.shape
    qz = np.fft.fftfreq(S, dz)
    qy, qx = np.fft.fftfreq(ny, pix[0]), np.fft.fftfreq(nx, pix[1])
    q0 = 0.5 * min(1 / (ny * pix[0]), 1 / (nx * pix[1]))
    QZ, QY, QX = np.meshgrid(qz, qy, qx, indexing="ij")
    wb = 2 / np.pi * np.arctan(beta ** 2 * QZ ** 2 / (QX ** 2 + QY ** 2 + q0 ** 2))
    _, FY, FX = np.meshgrid(np.arange(S), np.fft.fftfreq(ny), np.fft.fftfreq(nx), indexing="ij")
    wa = (1 - wb) * np.exp(-alpha * (FX ** 2 + FY ** 2))
    out = np.empty_like(x)
    for k in range(K):
        out[:, k] = np.real(np.fft.ifftn(wa * np.fft.fftn(x[:, k])))
    return out


def test_kz_filter_exact_map(bk):
    rng = np.random.default_rng(11)
    obj = rand_obj(rng, (5, 2, 8, 10), phase=0.3, absorb=0.1)
    p = params(kz_filter_beta=1.7, kz_filter_alpha=2.0, kz_filter_amplitude_factor=0.8)
    c = ctx(5, pix=(0.5, 0.4), dz=2.0)
    out = run(KzFilter, bk, obj, p, c)
    phi = _kz_ref(np.angle(obj), (0.5, 0.4), 2.0, 1.7, 2.0)
    amp = 1 + 0.8 * (_kz_ref(np.abs(obj), (0.5, 0.4), 2.0, 1.7, 2.0) - 1)
    np.testing.assert_allclose(out, amp * np.exp(1j * phi), rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="kz_filter_beta"):
        run(KzFilter, bk, obj, p, ctx(5, dz=(2.0, 2.0, 2.0, 2.0, 3.0)))


def test_kz_filter_properties(bk):
    rng = np.random.default_rng(12)
    phi = 0.2 * rng.standard_normal((4, 1, 12, 12))
    obj = np.exp(1j * phi)
    p = params(kz_filter_beta=2.0, kz_filter_alpha=0.0, kz_filter_obj_type="phase")
    out = run(KzFilter, bk, obj, p, ctx(4))
    phi2 = np.angle(out)
    assert np.linalg.norm(phi2) < np.linalg.norm(phi)  # alpha = 0 contracts
    np.testing.assert_allclose(phi2.sum(axis=0), phi.sum(axis=0), atol=1e-13)  # q_z = 0 plane kept
    np.testing.assert_allclose(np.abs(out), 1.0, atol=1e-15)
    # a z-invariant object is unchanged with alpha = 0
    same = np.repeat(obj[:1], 4, axis=0)
    np.testing.assert_allclose(run(KzFilter, bk, same, p, ctx(4)), same, atol=1e-14)
    # S = 1, alpha = 0, phase only: identity, no reset
    assert run(KzFilter, bk, obj[:1], p, ctx(1)) is None
    assert run(KzFilter, bk, obj, p, ctx(4, refine=("positions",))) is None


# ================================================================== 6. DCT threshold
def test_dct_threshold_exact_map_and_idempotent(bk):
    rng = np.random.default_rng(13)
    obj = rand_obj(rng, (2, 2, 8, 9), phase=0.3, absorb=0.1)
    frac = 0.1
    p = params(dct_keep_fraction=frac)
    out = run(DctThreshold, bk, obj, p, ctx(2))

    def ref(x):
        c = scipy.fft.dctn(x, type=2, axes=(-2, -1), norm="ortho")
        k = max(1, int(frac * c.size))
        t = np.sort(np.abs(c).ravel())[::-1][k - 1]
        kept = np.abs(c) >= t
        assert kept.sum() == k
        return scipy.fft.idctn(np.where(kept, c, 0), type=2, axes=(-2, -1), norm="ortho")

    np.testing.assert_allclose(out, ref(np.abs(obj)) * np.exp(1j * ref(np.angle(obj))), rtol=0, atol=1e-13)
    again = run(DctThreshold, bk, out, p, ctx(2))
    np.testing.assert_allclose(again, out, rtol=0, atol=1e-12)
    ph = run(DctThreshold, bk, obj, params(dct_keep_fraction=frac, dct_obj_type="phase"), ctx(2))
    np.testing.assert_allclose(np.abs(ph), np.abs(obj), rtol=1e-14)


# ================================================================== switches, dtypes, registry, checks
def test_switches_and_order():
    assert CONSTRAINTS == (ChargeFlip, GaussianFilter, GaussianFilterZ, KrFilter, KzFilter, DctThreshold)
    names = [c.name for c in CONSTRAINTS]
    assert len(set(names)) == len(names)
    claimed = [r for c in CONSTRAINTS for r in c.PARAMS]
    assert len(set(claimed)) == len(claimed) and set(claimed) <= set(DEFAULTS)
    from pypty.backend import get_backend
    bk = get_backend("numpy")
    assert all(c.from_params(params(), bk) is None for c in CONSTRAINTS)  # the defaults are all off

    def lam(e):
        return 0.5 if e % 2 else 1.0

    cases = [(ChargeFlip, dict(do_charge_flip=True)), (GaussianFilter, dict(apply_gaussian_filter_amplitude=0.5)),
             (GaussianFilterZ, dict(apply_gaussian_filter_z_amplitude=True)), (KrFilter, dict(kr_filter_radius=0.3)),
             (KzFilter, dict(kz_filter_beta=1.0)), (DctThreshold, dict(dct_keep_fraction=lam))]
    for cls, kw in cases:
        inst = cls.from_params(params(**kw), bk)
        assert inst is not None and inst.active(1), cls
    dct = DctThreshold.from_params(params(dct_keep_fraction=lam), bk)
    assert not dct.active(0) and dct.active(1)
    assert not GaussianFilter(params(apply_gaussian_filter=0), bk).active(0)


def test_float32_objects(bk):
    rng = np.random.default_rng(14)
    obj = rand_obj(rng, (3, 1, 12, 12), phase=0.3, absorb=0.1).astype(np.complex64)
    cases = [(ChargeFlip, dict(do_charge_flip=True, fancy_sigma=1.0)),
             (GaussianFilter, dict(apply_gaussian_filter=1.0, apply_gaussian_filter_amplitude=1.0)),
             (GaussianFilterZ, dict(apply_gaussian_filter_z=1.0, apply_gaussian_filter_z_amplitude=1.0)),
             (KrFilter, dict(kr_filter_radius=0.5)), (KzFilter, dict(kz_filter_beta=1.0)),
             (DctThreshold, dict(dct_keep_fraction=0.5))]
    for cls, kw in cases:
        out = run(cls, bk, obj, params(**kw))
        assert out.dtype == np.complex64 and np.all(np.isfinite(out)), cls


@pytest.mark.parametrize("cls, kw, names", [
    (ChargeFlip, dict(fancy_sigma=-1.0), ["fancy_sigma"]),
    (ChargeFlip, dict(fancy_sigma=(1.0, "x"), fancy_sigma_eps=0), ["fancy_sigma", "fancy_sigma_eps"]),
    (GaussianFilter, dict(apply_gaussian_filter=-2.0, apply_gaussian_filter_amplitude=(1.0, -1.0)),
     ["apply_gaussian_filter", "apply_gaussian_filter_amplitude"]),
    (GaussianFilterZ, dict(apply_gaussian_filter_z=(1.0, 1.0)), ["apply_gaussian_filter_z"]),
    (GaussianFilterZ, dict(apply_gaussian_filter_z_amplitude=1.0, slice_distances=np.array([1.0, 2.0])),
     ["apply_gaussian_filter_z_amplitude"]),
    (KrFilter, dict(kr_filter_radius=-0.1, kr_filter_width=0, kr_filter_obj_type="real"),
     ["kr_filter_radius", "kr_filter_width", "kr_filter_obj_type"]),
    (KzFilter, dict(kz_filter_beta=1.0, kz_filter_alpha=-1, kz_filter_amplitude_factor=1.5,
                    kz_filter_obj_type="abs", slice_distances=np.array([1.0, 1.0, 1.5])),
     ["kz_filter_alpha", "kz_filter_amplitude_factor", "kz_filter_obj_type", "kz_filter_beta"]),
    (DctThreshold, dict(dct_keep_fraction=0.0, dct_obj_type="x"), ["dct_keep_fraction", "dct_obj_type"]),
    (DctThreshold, dict(dct_keep_fraction=1.5), ["dct_keep_fraction"]),
])
def test_check_params(cls, kw, names):
    msgs = cls.check_params(params(**kw))
    assert len(msgs) == len(names), msgs
    for m, n in zip(msgs, names, strict=True):
        assert m.startswith(f"parameter '{n}'"), msgs


def test_check_params_accept_defaults_and_good_values():
    for cls in CONSTRAINTS:
        assert cls.check_params(params()) == [], cls
    good = params(fancy_sigma=(1.0, None), apply_gaussian_filter=(1.0, 2.0), apply_gaussian_filter_z=2,
                  kz_filter_beta=lambda e: 1.0, slice_distances=np.array([2.0, 2.0, 2.0]), dct_keep_fraction=0.2,
                  kr_filter_radius=0.3, kr_filter_obj_type="phase")
    for cls in CONSTRAINTS:
        assert cls.check_params(good) == [], cls
    # a filter on in every epoch warns (it resets the L-BFGS history each time); a cadence does not
    assert _cadence_warnings(do_charge_flip=True)
    assert not _cadence_warnings(do_charge_flip=lambda e: e % 10 == 0)
    assert _cadence_warnings(dct_keep_fraction=0.5) and not _cadence_warnings()


def _cadence_warnings(**kw):
    """Warnings of validation's class-D cadence rule (pypty.parameters.consistency) for these values."""
    import warnings

    from pypty.parameters import PARAMETERS, default_value
    from pypty.parameters.consistency import _class_d_cadence

    p = {name: default_value(name) for name in PARAMETERS}
    p.update(epoch_prev=0, epoch_max=30, **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _class_d_cadence(p)
    return [str(w.message) for w in caught]
