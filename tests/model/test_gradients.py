"""Central finite-difference checks of every gradient of the multislice model.

Double precision, tiny sizes, two slices, two probe and two object modes,
batches larger than one.  For a random direction d the directional derivative
Re<G, d> (complex arrays, Wirtinger convention) or <G, d> (real arrays) must
match (L(x + h d) - L(x - h d)) / (2 h).  Each model feature (tilts of every
type, beam current, static background, aberrations array with marker, probe
marker with a 4D probe, phase plates, propagation schemes, near field,
upsampled patterns, detector blur, compressed data) is checked for every array it touches.
"""
import numpy as np
import pytest

from pypty.model import MultisliceModel
from conftest import rand_complex

WIN, CANVAS, S, MO, MP, N = (12, 12), (20, 22), 2, 2, 2, 5
PIX, LAM = (0.4, 0.4), 0.025


def _problem(bk, loss="lsq_sqrt", seed=0, **cfg):
    """Model and arrays for one feature configuration (see the parametrisations below)."""
    rng = np.random.default_rng(seed)
    up = cfg.pop("upsample", 1)
    win = WIN  # the detector has WIN / up pixels
    det = (win[0] // up, win[1] // up)
    kw = dict(propmethod=cfg.pop("propmethod", "multislice"), upsample=up, rolloff=0.1, loss_name=loss, eps=1e-3)
    arrays = {}
    n_probes = cfg.pop("probe_marker", 0)
    if n_probes:
        kw["probe_marker"] = np.array([0, 1, 1, 0, 1])
    tilts = cfg.pop("tilts", None)
    if tilts is not None:
        kw["tilt_types"] = ("before", "inside", "after") if tilts is True else (tilts,)
    tilt_rows = cfg.pop("tilt_rows", N)
    if "tilt_types" in kw:
        arrays["tilts"] = bk.asarray(rng.normal(0, 4.0, (tilt_rows, 6)))
    if cfg.pop("beam_current", False):
        arrays["beam_current"] = bk.asarray(rng.uniform(0.7, 1.3, N))
    if cfg.pop("background", False):
        mask = np.ones(det)
        mask[0, :] = 0  # a padded row: no background there
        kw["background_mask"] = bk.asarray(mask)
        arrays["static_background"] = bk.asarray(rng.uniform(0.1, 1.0, det))
    if cfg.pop("aberrations", False):
        kw["n_aberrations"] = 3
        kw["aberration_marker"] = np.array([1, 0, 1, 1, 0])
        arrays["aberrations_array"] = bk.asarray(rng.normal(0, 15.0, (2, 3)))
    if cfg.pop("plates", False):
        kw["phase_plates"] = np.exp(1j * rng.normal(0, 1.0, (N,) + win))
    if cfg.pop("near_field", False):
        kw["near_field"] = {"defocus": rng.uniform(20, 80, N), "cs": 1e3, "alpha": 0.5}
    blur = cfg.pop("blur", 0.0)
    if blur:
        kw["detector_blur_sigma"] = blur
    masks = None
    if cfg.pop("compressed", False):
        masks = rng.uniform(0, 1, (4,) + det)
        kw["masks"] = bk.asarray(masks)
    assert not cfg, cfg
    model = MultisliceModel(bk, win, PIX, LAM, (5.0, 4.0), np.complex128, **kw)
    arrays["obj"] = bk.asarray(np.exp(1j * 0.3 * rng.standard_normal((S, MO) + CANVAS))
                               * (1 - 0.1 * rng.random((S, MO) + CANVAS)))
    arrays["probe"] = bk.asarray(rand_complex(rng, (max(n_probes, 1), MP) + win, 0.5))
    arrays["positions"] = bk.asarray(rng.uniform(0.3, CANVAS[0] - win[0] - 0.3, (N, 2)))
    if masks is not None:
        data = bk.asarray(rng.uniform(0, 30.0, (N, 4)))
    else:
        data = bk.asarray(rng.poisson(3.0, (N,) + det).astype(float))
    batches = [np.array([0, 3]), np.array([1, 2, 4])]
    return model, arrays, data, batches, rng


def _check(bk, model, arrays, data, batches, rng, name):
    xp = bk.xp
    get = lambda i: data[xp.asarray(i)]  # noqa: E731

    def f(x):
        return model.loss_and_grad(dict(arrays, **{name: x}), batches, get, need=())[0]

    loss, grads = model.loss_and_grad(arrays, batches, get, need=(name,))
    assert np.isclose(loss, f(arrays[name]))
    x0 = arrays[name]
    if np.iscomplexobj(x0):
        d = bk.asarray(rand_complex(rng, x0.shape))
        h = 1e-6
    else:
        d = bk.asarray(rng.standard_normal(x0.shape))
        h = 1e-5 * max(1.0, float(xp.max(xp.abs(x0))))
    num = (f(x0 + h * d) - f(x0 - h * d)) / (2 * h)
    assert grads[name].shape == x0.shape and grads[name].dtype == x0.dtype
    ana = float(xp.real(xp.vdot(grads[name].ravel(), d.ravel())))
    assert abs(num) > 1e-8, "direction with no effect: the check would be vacuous"
    assert np.isclose(ana, num, rtol=2e-5, atol=1e-9), (ana, num)


@pytest.mark.parametrize("loss", ["lsq_sqrt", "ml", "lsq", "lsq_sqrt_2"])
@pytest.mark.parametrize("name", ["obj", "probe", "positions"])
def test_gradient_matches_central_differences(bk, loss, name):
    _check(bk, *_problem(bk, loss), name)


FEATURES = {
    "tilts": (dict(tilts=True), ["tilts", "obj", "probe", "positions"]),
    "global_tilt": (dict(tilts=True, tilt_rows=1), ["tilts"]),
    "tilt_before_only": (dict(tilts="before"), ["tilts", "probe"]),
    "tilt_inside_only": (dict(tilts="inside"), ["tilts", "obj"]),
    "tilt_after_only": (dict(tilts="after"), ["tilts", "positions"]),
    "beam_current": (dict(beam_current=True), ["beam_current", "obj", "probe"]),
    "background": (dict(background=True), ["static_background", "obj"]),
    "aberrations": (dict(aberrations=True), ["aberrations_array", "probe", "positions"]),
    "probe_marker": (dict(probe_marker=2, aberrations=True), ["probe", "positions", "aberrations_array"]),
    "plates": (dict(plates=True), ["probe", "obj"]),
    "better_multislice": (dict(propmethod="better_multislice", tilts=True), ["obj", "probe", "tilts"]),
    "yoshida": (dict(propmethod="yoshida", tilts=True), ["obj", "probe", "positions", "tilts"]),
    "near_field": (dict(near_field=True, tilts=True), ["obj", "probe", "positions", "tilts"]),
    "upsample2": (dict(upsample=2, background=True), ["obj", "probe", "static_background"]),
    "upsample3": (dict(upsample=3), ["obj", "probe"]),
    "detector_blur": (dict(blur=0.8, beam_current=True, background=True),
                      ["obj", "probe", "positions", "beam_current", "static_background"]),
    "detector_blur_upsample2": (dict(blur=1.5, upsample=2), ["obj", "probe"]),
    "detector_blur_compressed": (dict(blur=0.8, compressed=True), ["obj", "probe"]),
    "compressed": (dict(compressed=True, beam_current=True, background=True),
                   ["obj", "probe", "beam_current", "static_background"]),
    "everything": (dict(tilts=True, beam_current=True, background=True, aberrations=True, probe_marker=2,
                        plates=True, propmethod="yoshida"),
                   ["obj", "probe", "positions", "tilts", "beam_current", "static_background",
                    "aberrations_array"]),
}
_CASES = [(feat, name) for feat, (_, names) in FEATURES.items() for name in names]


@pytest.mark.parametrize("feature,name", _CASES, ids=[f"{f}-{n}" for f, n in _CASES])
def test_feature_gradients_match_central_differences(bk, feature, name):
    cfg, _ = FEATURES[feature]
    loss = "lsq_compressed" if cfg.get("compressed") else "ml"
    _check(bk, *_problem(bk, loss, **dict(cfg)), name)


def test_intensities_conserve_counts_for_vacuum(bk):
    model, arrays, data, batches, rng = _problem(bk, "lsq")
    xp = bk.xp
    vac = xp.zeros_like(arrays["obj"])
    vac[:, 0] = 1.0  # one object mode of unit transmission, the other empty
    # the propagator's band limit removes power between slices; without it, counts are exact
    nobl = MultisliceModel(bk, WIN, PIX, LAM, (5.0, 4.0), np.complex128, cutoff=2.0)
    inten = nobl.predict(dict(arrays, obj=vac), np.arange(N))
    expected = float(xp.sum(xp.abs(arrays["probe"]) ** 2))
    np.testing.assert_allclose(bk.to_numpy(xp.sum(inten, axis=(1, 2))), expected, rtol=1e-12)


def test_beam_current_and_background_enter_the_model_as_documented(bk):
    model, arrays, data, batches, rng = _problem(bk, "lsq", beam_current=True, background=True)
    bare = dict(arrays, beam_current=None, static_background=None)
    i0 = bk.to_numpy(model.predict(bare, np.arange(N)))
    i1 = bk.to_numpy(model.predict(arrays, np.arange(N)))
    expect = (i0 * bk.to_numpy(arrays["beam_current"])[:, None, None]
              + bk.to_numpy(arrays["static_background"] * model.background_mask)[None])
    np.testing.assert_allclose(i1, expect, rtol=1e-12)


def test_detector_blur_enters_the_model_as_documented(bk):
    """M = c * blur(bin(I)) + b; sigma = 0 is bit-identical to a model without the blur."""
    from pypty import operators as ops
    model, arrays, data, batches, rng = _problem(bk, "lsq", beam_current=True, background=True)
    blurred, *_ = _problem(bk, "lsq", beam_current=True, background=True, blur=1.2)
    off = MultisliceModel(bk, WIN, PIX, LAM, (5.0, 4.0), np.complex128, rolloff=0.1, loss_name="lsq", eps=1e-3,
                          background_mask=model.background_mask, detector_blur_sigma=0.0)
    assert off._blur is None
    idx = np.arange(N)
    np.testing.assert_array_equal(bk.to_numpy(off.predict(arrays, idx)), bk.to_numpy(model.predict(arrays, idx)))
    bare = dict(arrays, beam_current=None, static_background=None)
    i0 = model.predict(bare, idx)
    t = bk.asarray(ops.blur_transfer(WIN, 1.2))
    expect = (bk.to_numpy(ops.blur_pattern(bk, i0, t)) * bk.to_numpy(arrays["beam_current"])[:, None, None]
              + bk.to_numpy(arrays["static_background"] * model.background_mask)[None])
    np.testing.assert_allclose(bk.to_numpy(blurred.predict(arrays, idx)), expect, rtol=1e-12)
    with pytest.raises(ValueError):
        MultisliceModel(bk, WIN, PIX, LAM, (5.0, 4.0), np.complex128, detector_blur_sigma=-1.0)
