"""Recovery of tilts, beam current, static background and aberrations on synthetic data.

Each test simulates data with pypty's own model and a known value of one
array, starts from a wrong value and refines it with the L-BFGS of
``pypty.iterative.run`` (object and probe known unless said otherwise).
"""
import numpy as np
import pytest

import pypty.iterative
from synthetic import WIN, base_params, default_probe, phase_object, raster, simulate


@pytest.fixture(scope="module")
def scene():
    pos = raster(6, 3.0)
    obj = phase_object((50, 50), seed=11, strength=0.5)
    return obj, default_probe(), pos


def _internal(**arrays):
    return {k: np.asarray(v, float) for k, v in arrays.items()}


def test_global_beam_tilt_before_specimen_recovered(scene):
    obj, probe, pos = scene
    true = np.array([[3.0, -2.0, 0, 0, 0, 0]])  # mrad, a shift of the disk in the aperture plane
    data = simulate(obj, probe, pos, extra=_internal(tilts=true), tilt_types=("before",))
    p = base_params(data, pos, probe, obj=obj, update_obj=0, update_probe=0, update_tilts=1, tilt_mode=2,
                    tilts=np.zeros((1, 6)), epoch_max=15)
    res = pypty.iterative.run(p)
    rec = res["tilts"][0, :2]
    assert np.all(np.abs(rec - true[0, :2]) < 0.1 * np.abs(true[0, :2])), rec
    assert np.all(res["tilts"][0, 2:] == 0)


def test_global_specimen_tilt_inside_recovered():
    """Tilted propagation between slices of a thick two-slice object (tilt_mode 0)."""
    pos = raster(6, 3.0)
    obj = phase_object((50, 50), n_slices=2, seed=12, strength=0.8)
    probe = default_probe()
    true = np.array([[0, 0, 4.0, -3.0, 0, 0]])
    kw = dict(slice_distance=40.0)
    data = simulate(obj, probe, pos, extra=_internal(tilts=true), tilt_types=("inside",), **kw)
    p = base_params(data, pos, probe, obj=obj, num_slices=2, slice_distances=np.array([40.0]), update_obj=0,
                    update_probe=0, update_tilts=1, tilt_mode=0, tilts=np.zeros((1, 6)), epoch_max=20)
    res = pypty.iterative.run(p)
    rec = res["tilts"][0, 2:4]
    assert np.all(np.abs(rec - true[0, 2:4]) < 0.1 * np.abs(true[0, 2:4])), rec


def test_beam_current_fluctuation_recovered_with_the_object(scene):
    obj, probe, pos = scene
    rng = np.random.default_rng(4)
    current = 1 + 0.1 * rng.standard_normal(len(pos))
    data = simulate(obj, probe, pos, extra=_internal(beam_current=current))
    p = base_params(data, pos, probe, update_probe=0, update_beam_current=1, epoch_max=40)
    res = pypty.iterative.run(p)
    rec = res["beam_current"] / np.mean(res["beam_current"])  # the mean trades off with the object's amplitude
    ref = current / np.mean(current)
    err = np.max(np.abs(rec - ref) / ref)
    assert err < 0.01, err
    assert np.max(np.abs(1 / np.mean(current) - ref)) > 0.1  # the start was wrong by ~10 %


def test_static_background_recovered(scene):
    obj, probe, pos = scene
    yy, xx = np.mgrid[:WIN, :WIN] - WIN // 2
    true = 0.5 + 0.3 * np.exp(-(yy**2 + xx**2) / (2 * 8.0**2))  # counts per detector pixel
    data = simulate(obj, probe, pos, extra=_internal(static_background=np.fft.ifftshift(true)),
                    background_mask=np.ones((WIN, WIN)))
    p = base_params(data, pos, probe, obj=obj, update_obj=0, update_probe=0, update_static_background=1,
                    static_background=1e-2, epoch_max=30)
    res = pypty.iterative.run(p)
    err = np.linalg.norm(res["static_background"] - true) / np.linalg.norm(true)
    assert err < 0.05, err


def test_defocus_error_recovered_through_the_aberrations_array(scene):
    obj, probe, pos = scene  # the data's probe has C10 = -60 Å
    start = default_probe(defocus=10.0)  # 50 Å defocus error
    data = simulate(obj, probe, pos)
    p = base_params(data, pos, start, obj=obj, update_obj=0, update_probe=0, update_aberrations_array=1,
                    aberrations_array=np.zeros((1, 1)), epoch_max=20)
    res = pypty.iterative.run(p)
    c10 = res["aberrations_array"][0, 0]
    assert abs(c10 - (-50.0)) < 5.0, c10
