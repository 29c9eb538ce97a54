"""Deterministic object-gradient scatter (issue 11 part 3).

The GPU path (:func:`pypty.operators.patches.scatter_patches_windows`, one
indexed add per window in batch order) is written against ``xp``; here it
runs with NumPy as ``xp`` and must equal ``numpy.add.at`` bit for bit (the
same additions in the same order), whatever the overlaps.
"""
import numpy as np
import pytest

from pypty.operators import patches
from pypty.operators.patches import patch_indices, scatter_patches, scatter_patches_windows


def _geometry(kind, rng):
    """corners (B, 2), window, canvas"""
    win, canvas = (12, 10), (40, 44)
    if kind == "dense":  # raster with a 2 px step: every pixel covered by many windows
        yy, xx = np.mgrid[0:8, 0:8]
        corners = np.stack([yy.ravel(), xx.ravel()], 1) * 2
    elif kind == "sparse":  # no overlaps at all
        yy, xx = np.mgrid[0:3, 0:3]
        corners = np.stack([yy.ravel() * 13, xx.ravel() * 11], 1)
    elif kind == "random":
        corners = np.stack([rng.integers(0, canvas[0] - win[0] + 1, 50),
                            rng.integers(0, canvas[1] - win[1] + 1, 50)], 1)
    else:  # repeated positions: the same window several times in one batch
        corners = np.array([[3, 4], [3, 4], [10, 2], [3, 4], [0, 0]])
    return corners.astype(np.int64), win, canvas


def _inputs(kind, modes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    corners, win, canvas = _geometry(kind, rng)
    idx = patch_indices(np, corners, win, canvas)
    g = (rng.standard_normal((len(corners), modes) + win)
         + 1j * rng.standard_normal((len(corners), modes) + win)).astype(dtype)
    acc = (rng.standard_normal((modes, canvas[0] * canvas[1]))
           + 1j * rng.standard_normal((modes, canvas[0] * canvas[1]))).astype(dtype)
    return acc, g, idx


@pytest.mark.parametrize("kind", ["dense", "sparse", "random", "repeated"])
@pytest.mark.parametrize("modes", [1, 3])
@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
def test_window_path_equals_add_at_bit_for_bit(kind, modes, dtype):
    acc, g, idx = _inputs(kind, modes, dtype)
    ref, out = acc.copy(), acc.copy()
    scatter_patches(np, ref, g, idx)  # numpy.add.at
    scatter_patches_windows(np, out, g, idx)
    assert np.array_equal(out, ref)
    again = acc.copy()
    scatter_patches_windows(np, again, g, idx)
    assert np.array_equal(again, out)


def test_other_array_modules_take_the_window_path(monkeypatch):
    calls = []
    monkeypatch.setattr(patches, "scatter_patches_windows", lambda *a: calls.append(a[0]))

    class FakeXp:  # any module that is not numpy
        pass

    acc, g, idx = _inputs("dense", 1, np.complex128)
    scatter_patches(FakeXp, acc, g, idx)
    assert calls == [FakeXp]


def test_empty_batch_is_a_no_op():
    acc = np.ones((1, 16), complex)
    scatter_patches_windows(np, acc, np.zeros((0, 1, 2, 2), complex), np.zeros((0, 2, 2), np.int64))
    assert np.array_equal(acc, np.ones((1, 16), complex))


def test_object_gradient_of_the_model_with_the_window_scatter(monkeypatch):
    """Through MultisliceModel.loss_and_grad (two slices, two object modes): the window scatter gives the
    object gradient of numpy.add.at bit for bit."""
    import pypty.operators as ops
    from pypty.backend import get_backend
    from pypty.model.setup import build_setup
    from pypty.parameters import validate
    from synthetic import WIN, base_params, default_probe, phase_object, raster, simulate

    from pypty.operators.cpu_kernels import KERNELS_ENV

    monkeypatch.setenv(KERNELS_ENV, "0")  # the NumPy expressions (ops.scatter_patches), not the fused CPU kernels
    pos = raster(4, 1.5)
    data = simulate(phase_object((WIN + 8, WIN + 8), seed=4), default_probe(), pos)
    obj = np.ones((WIN + 8, WIN + 8, 2, 2), complex) * np.exp(0.1j)
    p = validate(base_params(data, pos, default_probe(), num_slices=2, obj=obj, slice_distances=[2.0]))
    st = build_setup(p, get_backend("numpy"))
    assert st.model._fz is None
    batches = [np.arange(i, min(i + 6, len(pos))) for i in range(0, len(pos), 6)]
    try:
        ref = st.model.loss_and_grad(st.arrays, batches, st.get_data, need={"obj"})[1]["obj"]
        monkeypatch.setattr(ops, "scatter_patches", lambda xp, *a: scatter_patches_windows(xp, *a))
        a = st.model.loss_and_grad(st.arrays, batches, st.get_data, need={"obj"})[1]["obj"]
    finally:
        st.close()
    assert np.array_equal(a, ref)
