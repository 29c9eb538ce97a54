"""Recovery of object, probe and positions on synthetic data with a known answer."""
import numpy as np
import pytest

import pypty.iterative
from synthetic import base_params, corr, dataset, default_probe, phase_object, raster, simulate


@pytest.fixture(scope="module")
def truth():
    return dataset(8, 2.0, 50, seed=3)


def _scanned(pos, win=32):
    """Pixels covered by probe centres (plus 2 px): where the data constrain the object."""
    lo = int(pos.min()) + win // 2 - 2
    hi = int(pos.max()) + win // 2 + 3
    return slice(lo, hi)


@pytest.mark.parametrize("algorithm", ["lsq_sqrt", "ml", "lsq", "lsq_sqrt_2"])
def test_object_recovered_from_vacuum(truth, algorithm):
    obj, probe, pos, data = truth
    p = base_params(data, pos, probe, update_probe=0, epoch_max=25, algorithm=algorithm)
    res = pypty.iterative.run(p)
    sl = _scanned(pos)
    rec = np.angle(res["obj"][sl, sl, 0, 0])
    ref = np.angle(obj[sl, sl, 0, 0])
    assert corr(rec, ref) > 0.99
    assert res["loss"][-1] < 0.05 * res["loss"][0] or algorithm == "ml"
    assert all(b <= a for a, b in zip(res["loss"], res["loss"][1:]))


def test_probe_recovered_with_known_object(truth):
    obj, probe, pos, data = truth
    start = default_probe(defocus=40.0)  # 20 Å defocus error
    p = base_params(data, pos, start, obj=obj, update_obj=0, update_probe=1, epoch_max=150)
    res = pypty.iterative.run(p)

    def err(a, b):  # relative error up to the unobservable global phase
        c = np.vdot(a, b)
        return np.linalg.norm(a * c / abs(c) - b) / np.linalg.norm(b)

    err0, err1 = err(start, probe), err(res["probe"], probe)
    assert err0 > 0.4
    assert err1 < 0.03, (err0, err1)


def test_positions_recovered_with_known_object_and_probe(truth):
    obj, probe, pos, data = truth
    rng = np.random.default_rng(7)
    start = pos + rng.normal(0, 0.3, pos.shape)
    p = base_params(data, start, probe, obj=obj, update_obj=0, update_probe=0, update_probe_pos=1, epoch_max=15)
    res = pypty.iterative.run(p)
    rms0 = np.sqrt(np.mean((start - pos) ** 2))
    rms1 = np.sqrt(np.mean((res["positions"] - pos) ** 2))
    assert rms0 > 0.2
    assert rms1 < 0.02, (rms0, rms1)


def test_joint_object_probe_two_slices_two_probe_modes():
    pos = raster(8, 2.0)
    obj = phase_object((50, 50), n_slices=2, seed=5, strength=0.25)
    probe = default_probe(n_modes=2)
    data = simulate(obj, probe, pos, slice_distance=3.0)
    p = base_params(data, pos, default_probe(defocus=50.0, n_modes=2), num_slices=2,
                    slice_distances=np.array([3.0]), epoch_max=30, compute_batch=32)
    res = pypty.iterative.run(p)
    assert res["obj"].shape[2:] == (2, 1) and res["probe"].shape == (32, 32, 2)
    assert res["loss"][-1] < 0.1 * res["loss"][0]
    sl = _scanned(pos)
    rec = np.angle(res["obj"][sl, sl, :, 0]).sum(-1)
    ref = np.angle(obj[sl, sl, :, 0]).sum(-1)
    assert corr(rec, ref) > 0.9
