"""Class A (projections), B (fixed probe intensity) and C (orthogonal probe modes): the maps and the history contract.

design/regularizers.md sections 2.2, 3.2 (hard aperture), 3.11, 3.17, 4.2 (fix_probe_int, pos_recenter).
"""
import numpy as np
import pytest

from conftest import host, test_backend
from pypty.constraints import build_constraints
from pypty.constraints.probe import HardAperture, OrthogonalProbeModes
from pypty.constraints.projections import ObjectBandLimit, PositionRecenter
from pypty.engine.session import Reconstruction
from pypty.model.reparam import REPARAMS
from pypty.model.setup import build_setup
from pypty.operators.fresnel import bandlimit_mask
from pypty.parameters import validate
from synthetic import base_params, dataset


@pytest.fixture(scope="module")
def small():
    _, probe, pos, data = dataset(4, 3.0, 44, seed=1)
    return pos, probe, data


def _rec(small, constraints=None, **kw):
    pos, probe, data = small
    p = validate(base_params(data, kw.pop("positions", pos), kw.pop("probe", probe), **kw))
    bk = test_backend()
    cons = build_constraints(p, bk) if constraints is None else constraints
    return Reconstruction(p, build_setup(p, bk), (), cons), p


def _out_of_band(obj, cutoff):
    m = bandlimit_mask(obj.shape[-2:], cutoff)
    spec = np.fft.fft2(host(obj), norm="ortho")
    return np.sqrt(np.sum(np.abs(spec * (1 - m)) ** 2, axis=(-2, -1)) / np.sum(np.abs(spec) ** 2, axis=(-2, -1)))


# ------------------------------------------------------------------ class A: object band limit
def test_band_limit_holds_every_epoch_without_resets(small):
    rng = np.random.default_rng(0)
    obj = np.exp(1j * 0.05 * rng.standard_normal((44, 44, 1, 1)))  # white phase noise: far outside the band
    r, p = _rec(small, obj=obj)
    assert any(isinstance(c, ObjectBandLimit) for c in r.constraints)  # on by default (lazy_clean=False)
    cutoff = p["damping_cutoff_multislice"] - p["update_extra_cut"]
    assert _out_of_band(r.arrays["obj"], cutoff).max() > 0.01
    sizes = []
    for e in range(6):
        rep = r.step(e)
        sizes.append(rep.history_size)
        assert _out_of_band(r.arrays["obj"], cutoff).max() <= 1e-12
        assert ("band_limit" in rep.message) == (e == 0)  # projected once, at activation
    assert sizes == sorted(sizes) and sizes[-1] >= 4  # the history grows: no resets after activation


def test_band_limit_phase_only(small):
    r, p = _rec(small, phase_only_obj=True)
    cutoff = p["damping_cutoff_multislice"] - p["update_extra_cut"]
    for e in range(4):
        r.step(e)
        assert _out_of_band(np.angle(host(r.arrays["obj"])), cutoff).max() <= 1e-9


def test_lazy_clean_builds_no_band_limit_and_matches_an_unconstrained_run(small):
    r1, _ = _rec(small, lazy_clean=True)
    assert not any(isinstance(c, ObjectBandLimit) for c in r1.constraints)
    r2, _ = _rec(small, lazy_clean=True, constraints=[])
    l1 = [r1.step(e).loss for e in range(4)]
    l2 = [r2.step(e).loss for e in range(4)]
    assert l1 == l2


def test_projected_gradient_is_the_gradient_of_the_restricted_objective(small):
    """<Pi G, d> equals the central difference of the loss along a direction d = Pi d0 inside the band."""
    r, _ = _rec(small)
    r.step(0)
    s = r.settings(1)
    x = r.blocks(s)
    fun = r.objective(s)
    f0, g = fun(x)
    band = next(c for c in r.constraints if isinstance(c, ObjectBandLimit))
    rng = np.random.default_rng(3)
    d0 = rng.standard_normal(x["obj"].shape) + 1j * rng.standard_normal(x["obj"].shape)
    d = band.project("obj", r.bk.asarray(d0), 1)
    h = 1e-6
    num = (fun(dict(x, obj=x["obj"] + h * d))[0] - fun(dict(x, obj=x["obj"] - h * d))[0]) / (2 * h)
    ana = float(np.real(np.vdot(host(g["obj"]).ravel(), host(d).ravel())))
    assert abs(num - ana) <= 1e-6 * max(1.0, abs(ana))
    assert np.abs(host(band.project("obj", g["obj"], 1) - g["obj"])).max() <= 1e-12 * np.abs(host(g["obj"])).max()


def test_band_limit_refuses_a_cut_beyond_the_cutoff(small):
    pos, probe, data = small
    with pytest.raises(Exception, match="update_extra_cut"):
        validate(base_params(data, pos, probe, update_extra_cut=0.7))


# ------------------------------------------------------------------ class A: position recentring
def test_pos_recenter_keeps_the_mean_correction_zero_without_resets(small):
    pos, probe, data = small
    rng = np.random.default_rng(1)
    start = pos + 0.3 + 0.2 * rng.standard_normal(pos.shape)  # a global offset plus jitter
    r, _ = _rec(small, positions=start, update_probe_pos=True, update_obj=True, pos_recenter=True, lazy_clean=True)
    assert any(isinstance(c, PositionRecenter) for c in r.constraints)
    sizes = []
    for e in range(5):
        sizes.append(r.step(e).history_size)
        p0 = r.given_positions - r.position_offset
        assert np.abs(np.mean(host(r.arrays["positions"]) - p0, axis=0)).max() <= 1e-12
    assert sizes == sorted(sizes) and sizes[-1] >= 3


# ------------------------------------------------------------------ class A: hard aperture
def test_hard_aperture_holds_every_epoch_without_resets(small):
    pos, probe, data = small
    y, x = np.mgrid[:32, :32]
    aperture = (np.hypot(y - 16, x - 16) <= 9).astype(float)
    rng = np.random.default_rng(2)
    start = probe * (1 + 0.05 * rng.standard_normal(probe.shape))  # leaks power outside the aperture
    r, _ = _rec(small, probe=start, update_probe=True, probe_reg_constraint_weight=np.inf, aperture_mask=aperture,
                lazy_clean=True)
    assert any(isinstance(c, HardAperture) for c in r.constraints)
    outside = np.fft.ifftshift(1 - aperture)
    sizes = []
    for e in range(5):
        sizes.append(r.step(e).history_size)
        spec = np.fft.fft2(host(r.arrays["probe"]), norm="ortho")
        assert np.sum(np.abs(spec * outside) ** 2) <= 1e-20 * np.sum(np.abs(spec) ** 2)
    assert sizes == sorted(sizes) and sizes[-1] >= 3


def test_hard_aperture_needs_a_binary_mask(small):
    pos, probe, data = small
    with pytest.raises(Exception, match="binary"):
        validate(base_params(data, pos, probe, probe_reg_constraint_weight=np.inf,
                             aperture_mask=np.full((32, 32), 0.5)))
    with pytest.raises(Exception, match="aperture_mask"):
        validate(base_params(data, pos, probe, probe_reg_constraint_weight=np.inf))


# ------------------------------------------------------------------ class B: fixed probe intensity
def test_probe_normed_gradient_matches_finite_differences():
    bk = test_backend()
    rp = REPARAMS["probe_normed"]
    rng = np.random.default_rng(4)
    shape = (2, 3, 6, 5)
    target = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    ref = np.array([7.0, 3.0])

    dev = bk.asarray

    def loss(x):
        return float(np.sum(np.abs(host(rp.to_array(bk, dev(x), dev(ref), np.complex128)) - target) ** 2))

    x = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    p = host(rp.to_array(bk, dev(x), dev(ref), np.complex128))
    np.testing.assert_allclose(np.sum(np.abs(p) ** 2, axis=(1, 2, 3)), ref, rtol=1e-13)
    g = host(rp.grad(bk, dev(2 * (p - target)), dev(x), dev(p), dev(ref)))
    d = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    h = 1e-6
    num = (loss(x + h * d) - loss(x - h * d)) / (2 * h)
    ana = float(np.real(np.vdot(g.ravel(), d.ravel())))
    assert abs(num - ana) <= 1e-7 * max(1.0, abs(ana))


def test_fix_probe_intensity_keeps_the_intensity_without_resets(small):
    pos, probe, data = small
    r, _ = _rec(small, probe=probe * 1.3, update_probe=True, fix_probe_intensity=True, lazy_clean=True)
    i0 = np.sum(np.abs(host(r.arrays["probe"])) ** 2)
    sizes = []
    for e in range(5):
        sizes.append(r.step(e).history_size)
        assert abs(np.sum(np.abs(host(r.arrays["probe"])) ** 2) / i0 - 1) <= 1e-12
    assert sizes == sorted(sizes) and sizes[-1] >= 3
    # without it the probe intensity moves towards the data's (the start is 1.69x too bright)
    r2, _ = _rec(small, probe=probe * 1.3, update_probe=True, lazy_clean=True)
    for e in range(5):
        r2.step(e)
    assert abs(np.sum(np.abs(host(r2.arrays["probe"])) ** 2) / i0 - 1) > 1e-3


def test_fix_probe_intensity_refuses_tune_only_probe_abs(small):
    pos, probe, data = small
    with pytest.raises(Exception, match="fix_probe_intensity"):
        validate(base_params(data, pos, probe, fix_probe_intensity=True, tune_only_probe_abs=True))


# ------------------------------------------------------------------ class C: orthogonal probe modes
def _correlated_modes(probe, rng):
    p2 = np.stack([probe[..., 0], 0.6 * probe[..., 0] * np.exp(0.4j) + 0.3 * np.roll(probe[..., 0], 2, 0),
                   0.2 * np.roll(probe[..., 0], 3, 1)], axis=-1)
    return p2 * (1 + 0.01 * rng.standard_normal(p2.shape))


def test_orthogonalisation_is_unitary_sorted_and_keeps_the_model(small):
    pos, probe, data = small
    rng = np.random.default_rng(5)
    r, p = _rec(small, probe=_correlated_modes(probe, rng), update_probe=True, keep_probe_states_orthogonal=True,
                lazy_clean=True)
    c = next(c for c in r.constraints if isinstance(c, OrthogonalProbeModes))
    before = r.arrays["probe"]
    pred_before = r.setup.model.predict(r.arrays, np.arange(len(pos)))
    from pypty.constraints import Context
    ctx = Context(settings=r.settings(0), setup=r.setup, position_offset=r.position_offset,
                  given_positions=r.given_positions)
    new, change = c.apply(dict(r.arrays), 0, ctx)
    after = new["probe"]
    assert change.kind == "map" and np.shares_memory(before, r.arrays["probe"])
    before, after, pred_before = host(before), host(after), host(pred_before)
    flat = after.reshape(after.shape[0], after.shape[1], -1)
    gram = np.einsum("umk,unk->umn", flat.conj(), flat)[0]
    lam = np.real(np.diag(gram))
    assert np.abs(gram - np.diag(np.diag(gram))).max() <= 1e-10 * lam[0]
    assert np.all(np.diff(lam) <= 0)
    assert abs(np.sum(np.abs(after) ** 2) / np.sum(np.abs(before) ** 2) - 1) <= 1e-12
    pred_after = host(r.setup.model.predict(dict(r.arrays, probe=r.bk.asarray(after)), np.arange(len(pos))))
    assert np.abs(pred_after - pred_before).max() <= 1e-10 * np.abs(pred_before).max()
    # applied twice: the basis is already the eigenbasis
    _, again = c.apply(dict(r.arrays, probe=r.bk.asarray(after)), 0, ctx)
    assert again.kind == "none"


def test_orthogonalisation_leaves_the_trajectory_unchanged(small):
    """Same losses (to 1e-9) and history sizes with and without it: a unitary map of state, pairs and cache."""
    pos, probe, data = small
    rng = np.random.default_rng(6)
    start = _correlated_modes(probe, rng)
    runs = {}
    for flag in (False, True):
        r, _ = _rec(small, probe=start, update_probe=True, keep_probe_states_orthogonal=flag, lazy_clean=True)
        reps = [r.step(e) for e in range(8)]
        runs[flag] = ([x.loss for x in reps], [x.history_size for x in reps], [x.message for x in reps])
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-9)
    assert runs[True][1] == runs[False][1]
    assert any("orthogonal_probe_modes" in m for m in runs[True][2])


def test_class_d_switch_rows_come_from_the_registry():
    """The cadence warning of the validation covers exactly the class-D edits (RESETS_HISTORY) and their rows."""
    from pypty.constraints import REGISTRY

    rows = {row for cls in REGISTRY.values() if cls.RESETS_HISTORY for row in cls.switch_rows()}
    assert rows == {"apply_gaussian_filter", "apply_gaussian_filter_amplitude", "apply_gaussian_filter_z",
                    "apply_gaussian_filter_z_amplitude", "do_charge_flip", "restart_from_vacuum", "reset_positions",
                    "kr_filter_radius", "kz_filter_beta", "dct_keep_fraction", "complex_ratio", "mirrored_amp",
                    "obj_z_recenter", "obj_amplitude_bounds", "obj_phase_positivity", "tilt_smooth_sigma"}
    kr, dct = REGISTRY["kr_filter"], REGISTRY["dct_threshold"]
    assert kr.switched_on("kr_filter_radius", 0.3) and not kr.switched_on("kr_filter_radius", 0)
    assert dct.switched_on("dct_keep_fraction", 0.5) and not dct.switched_on("dct_keep_fraction", 1.0)
