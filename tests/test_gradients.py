"""Central finite-difference checks of every gradient of the far-field model.

Double precision, tiny sizes, several slices and probe/object modes, batches
larger than one, every loss.  For a random direction d the directional
derivative Re<G, d> must match (L(x + h d) - L(x - h d)) / (2 h).
"""
import numpy as np
import pytest

from pypty import operators as ops
from pypty.model import FarFieldModel
from conftest import rand_complex

WIN, CANVAS, S, MO, MP, N = (12, 12), (20, 22), 2, 2, 2, 5


def _problem(bk, loss, seed=0):
    rng = np.random.default_rng(seed)
    kern = [bk.asarray(ops.fresnel_kernel(WIN, (0.4, 0.4), 0.025, 5.0, 2 / 3, 0.1))]
    model = FarFieldModel(bk, WIN, CANVAS, kern, np.complex128, loss_name=loss, eps=1e-3)
    obj = bk.asarray(np.exp(1j * 0.3 * rng.standard_normal((S, MO) + CANVAS))
                     * (1 - 0.1 * rng.random((S, MO) + CANVAS)))
    probe = bk.asarray(rand_complex(rng, (MP,) + WIN, 0.5))
    pos = bk.asarray(rng.uniform(0.3, 7.7, (N, 2)))
    data = bk.asarray(rng.poisson(3.0, (N,) + WIN).astype(float))
    batches = [np.array([0, 3]), np.array([1, 2, 4])]
    return model, obj, probe, pos, data, batches, rng


@pytest.mark.parametrize("loss", ["lsq_sqrt", "ml", "lsq", "lsq_sqrt_2"])
@pytest.mark.parametrize("name", ["obj", "probe", "positions"])
def test_gradient_matches_central_differences(bk, loss, name):
    model, obj, probe, pos, data, batches, rng = _problem(bk, loss)
    xp = bk.xp
    get = lambda i: data[xp.asarray(i)]
    arrays = {"obj": obj, "probe": probe, "positions": pos}
    weight = 0.7

    def f(x):
        a = dict(arrays, **{name: x})
        return model.loss_and_grad(a["obj"], a["probe"], a["positions"], batches, get, need=(), weight=weight)[0]

    _, grads = model.loss_and_grad(obj, probe, pos, batches, get, need=(name,), weight=weight)
    x0 = arrays[name]
    if name == "positions":
        d = bk.asarray(rng.standard_normal(x0.shape))
        h = 1e-5
    else:
        d = bk.asarray(rand_complex(rng, x0.shape))
        h = 1e-6
    num = (f(x0 + h * d) - f(x0 - h * d)) / (2 * h)
    ana = float(xp.real(xp.vdot(grads[name].ravel(), d.ravel())))
    assert np.isclose(ana, num, rtol=1e-5, atol=1e-7 * abs(num) + 1e-9), (ana, num)


def test_intensities_conserve_counts_for_vacuum(bk):
    model, obj, probe, pos, data, batches, rng = _problem(bk, "lsq")
    xp = bk.xp
    vac = xp.zeros_like(obj)
    vac[:, 0] = 1.0  # one object mode of unit transmission, the other empty
    # the propagator's band limit removes power between slices; without it, counts are exact
    model_nobl = FarFieldModel(bk, WIN, CANVAS, [bk.asarray(ops.fresnel_kernel(WIN, (0.4, 0.4), 0.025, 5.0, 2.0))],
                               np.complex128)
    inten = model_nobl.intensities(vac, probe, pos)
    expected = float(xp.sum(xp.abs(probe) ** 2))
    np.testing.assert_allclose(bk.to_numpy(xp.sum(inten, axis=(1, 2))), expected, rtol=1e-12)
