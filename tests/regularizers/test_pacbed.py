"""The PACBED term (pypty.regularizers.pacbed) through the objective: value, gradient, zero case, refusal.

R = w sum_k ((Ibar + eps)^p - (Dbar + eps)^p)^2 over the epoch's sequence; its gradient flows through the
model's adjoint together with the data term's (MultisliceModel.loss_and_grad(pattern_term=...)), and it is
not multiplied by loss_weight.
"""
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import fd_check, host, test_backend
from pypty.engine.session import Reconstruction
from pypty.model.setup import build_setup
from pypty.parameters import validate
from pypty.parameters.errors import PyptyParameterError
from pypty.regularizers import REGISTRY, build_terms
from pypty.regularizers.pacbed import PacbedTerm
from synthetic import base_params, dataset


@pytest.fixture(scope="module")
def small():
    obj, probe, pos, data = dataset(4, 3.0, 44, seed=1)
    return pos, probe, data, obj


def _rec(small, **kw):
    """A float64 reconstruction on a vacuum start (model != data) with the PACBED term of the parameters."""
    pos, probe, data, _ = small
    kw.setdefault("obj", np.exp(0.05j) * np.ones((44, 44, 1, 1)))
    p = validate(base_params(data, pos, kw.pop("probe", probe), compute_batch=5, **kw))
    bk = test_backend()
    return Reconstruction(p, build_setup(p, bk), build_terms(p, bk), ())


def test_registered_and_built_only_when_on(small):
    assert REGISTRY["pacbed"] is PacbedTerm
    pos, probe, data, _ = small
    p = validate(base_params(data, pos, probe))
    assert not any(t.name == "pacbed" for t in build_terms(p, test_backend()))
    p = validate(base_params(data, pos, probe, pacbed_weight="lambda epoch: 0.5 if epoch > 2 else 0"))
    (term,) = [t for t in build_terms(p, test_backend()) if t.name == "pacbed"]
    assert not term.active(0) and term.active(3)
    assert term.key(3) != term.key(0)


@pytest.mark.parametrize("block, kw", [
    ("obj", dict(loss_weight=0.0, update_obj=1)),  # R alone
    ("probe", dict(loss_weight=0.0, update_probe=1, pacbed_dp_pow=1.0)),
    ("obj", dict(loss_weight=0.7, update_obj=1, detector_blur_sigma=0.8)),  # data + R, data weighted
    ("probe", dict(loss_weight=2.5, update_probe=1, sequence=list(range(3, 14)))),
    ("positions", dict(loss_weight=0.7, update_probe_pos=1, obj="half")),  # half the true phase
])
def test_objective_gradient_matches_central_differences(small, block, kw):
    """Data + PACBED through the objective (loss_weight on the data only), float64, several batches."""
    kw.setdefault("pacbed_dp_pow", 0.3)
    if kw.get("obj") == "half":
        kw["obj"] = np.exp(0.5j * np.angle(small[3]))
    r = _rec(small, pacbed_weight=30.0, **kw)
    s = r.settings(0)
    fun = r.objective(s)
    x = r.blocks(s)
    _, g = fun(x)
    parts = fun.parts_at(g)
    assert parts["reg_pacbed"] > 0 and set(parts) == {"loss_data", "reg_pacbed"}
    ana, num = fd_check(fun, x, block, np.random.default_rng(5))
    assert abs(num) > 1e-8
    assert np.isclose(ana, num, rtol=1e-5), (ana, num)


def test_value_is_the_direct_numpy_pacbed_and_a_separate_part(small):
    """reg_pacbed = w sum((mean M + eps)^p - (mean D + eps)^p)^2 over the sequence, from model.predict; the
    data part is loss_weight * data loss alone."""
    pos, probe, data, _ = small
    seq = np.arange(2, 15)
    w, pw, lw = 7.0, 0.25, 0.6
    r = _rec(small, pacbed_weight=w, pacbed_dp_pow=pw, loss_weight=lw, sequence=list(seq), update_obj=1)
    s = r.settings(0)
    fun = r.objective(s)
    loss, g = fun(r.blocks(s))
    parts = fun.parts_at(g)
    model = r.setup.model
    pred = host(model.predict(r.arrays, seq))
    meas = np.fft.ifftshift(data[seq], axes=(1, 2))  # the model's FFT order
    eps = model.eps
    expect = w * np.sum(((pred.mean(0) + eps) ** pw - (meas.mean(0) + eps) ** pw) ** 2)
    assert np.isclose(parts["reg_pacbed"], expect, rtol=1e-10), (parts["reg_pacbed"], expect)
    d, _ = model.loss_and_grad(r.arrays, s.batches(r.setup.compute_batch), r.setup.get_data)
    assert parts["loss_data"] == lw * d
    assert np.isclose(loss, parts["loss_data"] + parts["reg_pacbed"], rtol=1e-15)
    assert fun.part_names == ("loss_data", "reg_pacbed")


def test_zero_when_model_equals_data(small):
    """Data = the model's own patterns: R = 0 and dR/dM = 0 exactly (same batches, same summation)."""
    r = _rec(small, pacbed_weight=3.0)
    model = r.setup.model
    arrays = r.arrays
    setup = SimpleNamespace(model=model, get_data=lambda idx: model.predict(arrays, idx), real_dtype=np.float64)
    seq = np.arange(16)
    settings = SimpleNamespace(epoch=0, sequence=seq, subpixel=True, loss_weight=1.0)
    (term,) = r.terms
    hook = term.pattern_hook(setup, arrays, [seq[:5], seq[5:10], seq[10:]], settings)
    assert hook.value == 0.0 and not np.any(host(hook.d_pattern))


def test_refused_for_compressed_data():
    p = {"pacbed_weight": 0.5, "pacbed_dp_pow": 0.2, "algorithm": "lsq_compressed"}
    msgs = PacbedTerm.check_params(p)
    assert len(msgs) == 1 and "lsq_compressed" in msgs[0] and "pacbed_weight" in msgs[0]
    with pytest.raises(PyptyParameterError, match="lsq_compressed"):
        PacbedTerm.from_params(p, test_backend())
    assert PacbedTerm.check_params(dict(p, pacbed_weight=0)) == []
    assert PacbedTerm.check_params(dict(p, algorithm="lsq_sqrt")) == []
    with pytest.raises(TypeError):
        PacbedTerm(p, test_backend()).value_and_grad({}, 0)
    # validate() runs the rule (pypty.parameters.consistency)
    compressed = dict(dataset=np.ones((4, 3)), masks=np.ones((3, 8, 8)), algorithm="lsq_compressed",
                      positions=np.zeros((4, 2)), probe=np.ones((8, 8, 1), complex), output_folder="")
    with pytest.raises(PyptyParameterError, match="pacbed_weight"):
        validate(dict(compressed, pacbed_weight=0.5))
    validate(dict(compressed, pacbed_weight=0))


def test_pacbed_alone_corrects_the_probe_intensity(small):
    """Behaviour: with the data term off, refining the probe against the PACBED term alone brings the mean
    model pattern to the measured one (a probe with 1.3x the amplitude: 1.69x the counts)."""
    pos, probe, data, _ = small
    r = _rec(small, probe=1.3 * probe, obj=None, pacbed_weight=1.0, pacbed_dp_pow=0.5, loss_weight=0.0,
             update_probe=1, update_obj=0)
    counts = lambda: float(np.sum(np.abs(host(r.arrays["probe"])) ** 2))  # noqa: E731
    c0, target = counts(), float(data.sum(axis=(1, 2)).mean())
    losses = [r.step(e).loss for e in range(10)]
    assert losses[-1] < 1e-2 * losses[0], losses
    assert abs(c0 / target - 1.69) < 0.01 and abs(counts() / target - 1) < 0.01, (c0 / target, counts() / target)

