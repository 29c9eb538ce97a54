"""Run-level checks of the issue-3 features: reparametrised blocks, array safety, geometry options."""
import copy

import h5py
import numpy as np
import pytest

import pypty.iterative
from conftest import host, test_backend
from pypty.engine.session import Reconstruction
from pypty.parameters import PyptyParameterError, validate
from pypty.model.setup import build_setup
from synthetic import WIN, base_params, corr, default_probe, phase_object, raster, simulate


@pytest.fixture(scope="module")
def small():
    pos = raster(4, 3.0)
    obj = phase_object((44, 44), seed=2, strength=0.4)
    probe = default_probe()
    return obj, probe, pos, simulate(obj, probe, pos)


def _run_state(params):
    p = validate(params)
    st = build_setup(p, test_backend())
    return Reconstruction(p, st)


@pytest.mark.parametrize("block, switches", [
    ("obj_phase", dict(phase_only_obj=1, update_probe=0)),
    ("probe_phase", dict(tune_only_probe_phase=1, update_obj=0)),
    ("probe_abs", dict(tune_only_probe_abs=1, update_obj=0)),
    ("background_sqrt", dict(update_static_background=1, update_obj=0, update_probe=0, static_background=0.3)),
])
def test_reparametrised_block_gradients_match_central_differences(small, block, switches):
    obj, probe, pos, data = small
    start = default_probe(defocus=45.0)
    r = _run_state(base_params(data, pos, start, obj=obj * np.exp(0.05j), **switches))
    es = r.settings(0)
    x = r.blocks(es)
    assert block in x
    fun = r.objective(es)
    f0, g = fun(x)
    rng = np.random.default_rng(1)
    d = rng.standard_normal(x[block].shape)
    h = 1e-6 * max(1.0, float(np.abs(host(x[block])).max()))
    dd = r.bk.asarray(d)
    fp = fun(dict(x, **{block: x[block] + h * dd}))[0]
    fm = fun(dict(x, **{block: x[block] - h * dd}))[0]
    num = (fp - fm) / (2 * h)
    ana = float(np.sum(host(g[block]) * d))
    assert abs(num) > 1e-8
    assert np.isclose(ana, num, rtol=1e-5), (ana, num)


def test_tune_only_probe_phase_keeps_the_aperture(small):
    obj, probe, pos, data = small
    start = default_probe(defocus=45.0)
    res = pypty.iterative.run(base_params(data, pos, start, obj=obj, update_obj=0, tune_only_probe_phase=1,
                                          epoch_max=10))
    amp0 = np.abs(np.fft.fft2(start[..., 0]))
    amp1 = np.abs(np.fft.fft2(res["probe"][..., 0]))
    np.testing.assert_allclose(amp1, amp0, rtol=1e-9, atol=1e-9 * amp0.max())
    assert res["loss"][-1] < 0.2 * res["loss"][0]
    res = pypty.iterative.run(base_params(data, pos, start, obj=obj, update_obj=0, tune_only_probe_abs=1,
                                          epoch_max=5))
    ph0 = np.angle(np.fft.fft2(start[..., 0]))
    p1 = np.fft.fft2(res["probe"][..., 0])
    ok = np.abs(np.fft.fft2(start[..., 0])) > 1e-6 * np.abs(p1).max()  # where the start's phase is defined
    np.testing.assert_allclose(np.exp(1j * (np.angle(p1) - ph0))[ok].imag, 0, atol=1e-8)


@pytest.mark.filterwarnings("ignore:parameter 'tilt_mode'")  # inside tilts with one slice: warned, by design
def test_user_arrays_are_never_modified(small, tmp_path):
    """Every array parameter is left untouched by a run that refines everything."""
    obj, probe, pos, data = small
    n = len(pos)
    probe4 = np.repeat(default_probe(defocus=50.0)[..., None], 2, axis=3)
    plates = tmp_path / "plates.h5"
    with h5py.File(plates, "w") as fh:
        fh["configs"] = np.zeros((n, WIN, WIN))
    arrays = dict(dataset=data, positions=pos + 0.2, obj=obj * 0.99, probe=probe4,
                  tilts=np.full((n, 6), 0.5), beam_current=np.full(n, 1.05),
                  static_background=np.full((WIN, WIN), 0.01), aberrations_array=np.array([[1.0, 0.5], [2.0, 0.0]]),
                  aberration_marker=np.arange(n) % 2, probe_marker=(np.arange(n) // 2) % 2,
                  slice_distances=np.array([3.0]), mean_pattern=None)
    before = copy.deepcopy(arrays)
    p = base_params(data, pos, probe4, tilt_mode=4, update_probe_pos=1, update_tilts=1, update_beam_current=1,
                    update_static_background=1, update_aberrations_array=1, phase_plate_in_h5=str(plates),
                    epoch_max=2, dynamically_resize_yx_object=True, extra_space_on_side_px=2)
    p.update(arrays)
    res = pypty.iterative.run(p)
    assert np.isfinite(res["loss"]).all()
    assert res["probe"].shape == probe4.shape and res["tilts"].shape == (n, 6)
    for key, val in before.items():
        if val is not None:
            np.testing.assert_array_equal(arrays[key], val, err_msg=key)
    # the results are fresh arrays, not views of the inputs
    for key in ("obj", "probe", "tilts", "beam_current", "aberrations_array"):
        assert not np.shares_memory(res[key], arrays[key])


def test_near_field_reconstruction(small):
    """Near-field (in-line holography) data of a phase object: the object is recovered."""
    rng = np.random.default_rng(3)
    obj = phase_object((48, 48), seed=6, strength=0.6)
    pos = rng.uniform(0, 16, (12, 2))
    yy, xx = np.mgrid[:WIN, :WIN] - WIN / 2
    probe = (np.exp(-(yy**2 + xx**2) / (2 * 9.0**2)) * np.exp(0.3j * xx / WIN))[..., None] * 10
    defocus = np.linspace(80, 200, len(pos))
    nf = {"defocus": defocus, "cs": 0.0, "alpha": 0.0}
    data = simulate(obj, probe, pos, near_field=nf)
    res = pypty.iterative.run(base_params(data, pos, probe, recon_type="near_field", defocus_array=defocus,
                                          update_probe=0, epoch_max=30))
    assert res["loss"][-1] < 0.05 * res["loss"][0]
    lo, hi = int(pos.min()) + 8, int(pos.max()) + WIN - 8
    assert corr(np.angle(res["obj"][lo:hi, lo:hi, 0, 0]), np.angle(obj[lo:hi, lo:hi, 0, 0])) > 0.9


def test_compressed_data_reconstruction(small):
    """lsq_compressed: 16 annular/segmented virtual detectors per position are enough to recover a phase object."""
    obj, probe, pos, _ = small
    ky, kx = np.mgrid[:WIN, :WIN] - WIN // 2
    r, phi = np.hypot(ky, kx), np.arctan2(ky, kx)
    masks = np.stack([((r >= a) & (r < b) & (np.floor((phi + np.pi) / (np.pi / 2)) % 4 == q)).astype(float)
                      for a, b in ((0, 4), (4, 8), (8, 12), (12, 16)) for q in range(4)])
    patterns = simulate(obj, probe, pos)
    signals = np.einsum("nyx,myx->nm", patterns, masks)
    res = pypty.iterative.run(base_params(signals, pos, probe, algorithm="lsq_compressed", masks=masks,
                                          update_probe=0, epoch_max=30))
    assert res["loss"][-1] < 0.01 * res["loss"][0]
    sl = slice(int(pos.min()) + WIN // 2 - 2, int(pos.max()) + WIN // 2 + 3)
    assert corr(np.angle(res["obj"][sl, sl, 0, 0]), np.angle(obj[sl, sl, 0, 0])) > 0.8
    with pytest.raises(PyptyParameterError, match="masks"):
        pypty.iterative.run(base_params(signals, pos, probe, masks=masks, epoch_max=1))


def test_upsampled_pattern_reconstruction():
    """A beam whose window is twice the detector extent (upsample_pattern=2)."""
    pos = raster(4, 3.0)
    obj = phase_object((60, 60), seed=8, strength=0.4)
    probe = default_probe()  # 32 x 32 window, simulated patterns binned 2 x 2 onto 16 x 16 detector pixels
    data = simulate(obj, probe, pos, upsample=2)
    assert data.shape[1:] == (16, 16)
    res = pypty.iterative.run(base_params(data, pos, probe, upsample_pattern=2, update_probe=0, epoch_max=25))
    assert res["loss"][-1] < 0.05 * res["loss"][0]
    sl = slice(int(pos.min()) + WIN // 2 - 2, int(pos.max()) + WIN // 2 + 3)
    assert corr(np.angle(res["obj"][sl, sl, 0, 0]), np.angle(obj[sl, sl, 0, 0])) > 0.95
    res = pypty.iterative.run(base_params(data, pos, None, upsample_pattern=2, epoch_max=1))
    assert res["probe"].shape == (32, 32, 1)


def test_dynamic_resize_pads_object_and_keeps_history(small):
    obj, probe, pos, data = small
    r = _run_state(base_params(data, pos, probe, update_probe=0, update_probe_pos=1,
                               dynamically_resize_yx_object=1, print_flag=0))
    for epoch in range(2):
        r.step(epoch)
    hist = r.opt.history_size
    assert hist >= 1
    old = r.arrays["obj"].copy()
    canvas = r.canvas_yx
    r.arrays["positions"] = r.arrays["positions"] - r.bk.asarray(np.array([6.0, 0.0]))  # windows 4 px above the canvas
    loss = r.step(2).loss
    new = r.arrays["obj"]
    assert new.shape[-2] > canvas[0] and r.canvas_yx == new.shape[-2:]
    assert r.resize_log and "history kept" in r.resize_log[0]
    assert r.opt.history_size >= hist  # not reset by the resize
    assert host(r.arrays["positions"]).min() >= 0 and np.isfinite(loss)
    assert np.array_equal(r.position_offset[0] < 0, True)
    shift = -int(r.position_offset[0])
    np.testing.assert_allclose(np.abs(host(new)[..., shift:shift + canvas[0], :canvas[1]]).mean(),
                               np.abs(host(old)).mean(), rtol=0.05)


def test_bad_combinations_name_the_parameter(small, tmp_path):
    obj, probe, pos, data = small
    n = len(pos)
    cases = [
        (dict(tilts=np.array([[1.0, 0, 0, 0, 0, 0]]), tilt_mode=0), "tilts"),
        (dict(tilts=np.zeros((3, 6))), "tilts"),
        (dict(beam_current=np.ones(n - 1)), "beam_current"),
        (dict(update_static_background=1), "static_background"),
        (dict(static_background=np.ones((5, 5))), "static_background"),
        (dict(aberrations_array=np.ones((2, 1))), "aberration_marker"),
        (dict(aberrations_array=np.ones((2, 1)), aberration_marker=np.full(n, 2)), "aberration_marker"),
        (dict(probe=np.repeat(probe[..., None], 2, axis=3)), "probe"),
        (dict(probe_marker=np.full(n, 1)), "probe_marker"),
        (dict(phase_plate_in_h5=str(tmp_path / "missing.h5")), "phase_plate_in_h5"),
        (dict(recon_type="near_field", upsample_pattern=2), "upsample_pattern"),
        (dict(recon_type="near_field", defocus_array=np.ones(3)), "defocus_array"),
    ]
    for kw, name in cases:
        p = base_params(data, pos, probe, epoch_max=1)
        p.update(kw)
        with pytest.raises(PyptyParameterError, match=f"'{name}'"):
            pypty.iterative.run(p)


def test_remaining_array_parameters_are_never_modified(small):
    """masks and 2D compressed data, defocus_array, mean_pattern, beam_ctf are left untouched too."""
    obj, probe, pos, data = small
    masks = np.random.default_rng(0).uniform(0, 1, (3, WIN, WIN))
    signals = np.einsum("nyx,myx->nm", data, masks)
    defocus = np.linspace(50, 90, len(pos))
    mean = data.mean(axis=0)
    ctf = np.sqrt(mean) * np.exp(0.1j)
    kept = {"masks": masks, "signals": signals, "defocus": defocus, "mean": mean, "ctf": ctf, "data": data}
    before = copy.deepcopy(kept)
    pypty.iterative.run(base_params(signals, pos, probe, algorithm="lsq_compressed", masks=masks, epoch_max=1))
    pypty.iterative.run(base_params(data, pos, probe, recon_type="near_field", defocus_array=defocus, epoch_max=1))
    pypty.iterative.run(base_params(data, pos, None, mean_pattern=mean, epoch_max=1))
    pypty.iterative.run(base_params(data, pos, None, beam_ctf=ctf, epoch_max=1))
    for key, val in before.items():
        np.testing.assert_array_equal(kept[key], val, err_msg=key)


def test_inside_tilts_without_propagation_warn(small):
    obj, probe, pos, data = small
    with pytest.warns(UserWarning, match="tilt_mode"):
        pypty.iterative.run(base_params(data, pos, probe, update_tilts=1, tilt_mode=0, epoch_max=1))


def test_keep_canvas_does_not_crop_a_restarted_object(small):
    """use_full_FOV=False crops to the sequence, but an exact restart keeps the saved canvas."""
    obj, probe, pos, data = small
    seq = [5, 6, 9, 10]
    moved = pos + 1.3  # the sequence now starts 1.3 px inside the canvas of `obj`
    p = validate(base_params(data, moved, probe, obj=obj, sequence=seq, use_full_FOV=False))
    cropped = build_setup(p, test_backend())
    kept = build_setup(p, test_backend(), keep_canvas=True)
    cropped.close(), kept.close()
    assert cropped.canvas_yx != obj.shape[:2]
    assert kept.canvas_yx == obj.shape[:2]
    np.testing.assert_allclose(host(kept.arrays["positions"]), moved)


def test_remove_fft_cache_drops_the_plans_every_epoch_and_changes_nothing(small, monkeypatch):
    from pypty.backend import Backend

    _, probe, pos, data = small
    calls = []
    plain = pypty.iterative.run(base_params(data, pos, probe, epoch_max=3))
    real = Backend.clear_fft_plans
    monkeypatch.setattr(Backend, "clear_fft_plans", lambda self: calls.append(self.name) or real(self))
    dropped = pypty.iterative.run(base_params(data, pos, probe, epoch_max=3, remove_fft_cache=True))
    assert len(calls) == 3  # once per epoch
    assert np.array_equal(plain["obj"], dropped["obj"]) and np.array_equal(plain["probe"], dropped["probe"])
