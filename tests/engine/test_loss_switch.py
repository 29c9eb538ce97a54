"""An epoch-dependent loss (``algorithm`` as a lambda returning a loss name): gradient, history reset, loss column,
exact restart across the switch, and refusal for compressed data."""
import numpy as np
import pytest

import pypty.iterative
from conftest import fd_check, test_backend
from pypty.engine.session import Reconstruction
from pypty.model.setup import build_setup
from pypty.parameters import PyptyParameterError, validate
from synthetic import base_params, dataset

SWITCH = "lambda x: 'lsq_sqrt' if x < 3 else 'ml'"
QUIET = dict(save_figures=())


@pytest.fixture(scope="module")
def small():
    _, probe, pos, data = dataset(4, 3.0, 44, seed=1)
    return pos, probe, data


def _rec(small, **kw):
    pos, probe, data = small
    p = validate(base_params(data, pos, probe, **kw))
    return Reconstruction(p, build_setup(p, test_backend()))


@pytest.mark.parametrize("epoch, name", [(0, "lsq_sqrt"), (5, "ml")])
def test_gradient_matches_central_differences_on_both_sides(small, epoch, name):
    obj = np.exp(0.3j * np.random.default_rng(5).random((44, 44, 1, 1)))
    r = _rec(small, algorithm=SWITCH, update_probe_pos=1, obj=obj)
    s = r.settings(epoch)
    assert s.loss_name == name
    x = r.blocks(s)
    fun = r.objective(s)
    for block in ("obj", "positions"):
        ana, num = fd_check(fun, x, block, np.random.default_rng(2))
        assert abs(num) > 1e-8
        assert np.isclose(ana, num, rtol=1e-5), (block, ana, num)
    # the value is that of the constant loss of the same name
    const = _rec(small, algorithm=name, update_probe_pos=1, obj=obj)
    assert fun(x)[0] == const.objective(const.settings(epoch))(const.blocks(const.settings(epoch)))[0]


def test_history_reset_exactly_at_the_switch_and_cache_reevaluated(small):
    r = _rec(small, algorithm=SWITCH, hist_length=5)
    reps = [r.step(e) for e in range(6)]
    const = _rec(small, algorithm="lsq_sqrt", hist_length=5)
    quiet = [const.step(e) for e in range(6)]
    assert [x.history_size for x in reps[:3]] == [x.history_size for x in quiet[:3]]
    assert reps[2].history_size >= 2
    assert reps[3].history_size <= 1  # reset at the start of epoch index 3, then at most the new pair
    assert "loss changes from lsq_sqrt to ml" in reps[3].message and "L-BFGS history reset" in reps[3].message
    assert r.opt.last_reset_reason is None or "loss changes" in str(r.opt.last_reset_reason)
    assert reps[3].n_evals >= 2  # the cached lsq_sqrt value is not reused for ml: one evaluation afresh
    assert reps[4].history_size > reps[3].history_size
    assert all("loss changes" not in x.message for x in reps[:3] + reps[4:])
    assert [x.settings.loss_name for x in reps] == ["lsq_sqrt"] * 3 + ["ml"] * 3


def test_loss_column_is_continuous_per_definition(small):
    """Each epoch's loss is the loss of that epoch's definition at the point reached (recomputed independently)."""
    r = _rec(small, algorithm=SWITCH, hist_length=5)
    for e in range(5):
        rep = r.step(e)
        s = r.settings(e)
        fun = r.objective(s)
        f, _ = fun(r.blocks(s))
        assert np.isclose(rep.loss, f, rtol=1e-12), (e, rep.loss, f)
    # at the switch: the ml value at the end of epoch 3 is below ml at the point epoch 2 ended on
    r2 = _rec(small, algorithm=SWITCH, hist_length=5)
    for e in range(3):
        r2.step(e)
    s3 = r2.settings(3)
    before = r2.objective(s3)(r2.blocks(s3))[0]
    after = r2.step(3).loss
    assert after < before


def test_restart_across_the_switch_is_bit_identical(small, tmp_path):
    pos, probe, data = small
    kw = dict(algorithm=SWITCH, update_probe_pos="lambda e: e >= 1", hist_length=4, **QUIET)
    full = pypty.iterative.run(base_params(data, pos, probe, epoch_max=6, **kw))
    for stop in (2, 3):  # restart right before the switch and right after it
        out = str(tmp_path / f"r{stop}")
        first = pypty.iterative.run(base_params(data, pos, probe, epoch_max=stop, output_folder=out, **kw))
        second = pypty.iterative.run(base_params(data, pos, probe, epoch_max=6, output_folder=out,
                                                 restart_from=out, **kw))
        assert first["loss"] + second["loss"] == full["loss"]
        for k in ("obj", "probe", "positions"):
            assert np.array_equal(second[k], full[k]), (stop, k)


def test_compressed_data_refuse_an_epoch_dependent_loss(small):
    pos, probe, data = small
    masks = np.ones((2, data.shape[1], data.shape[2]))
    signals = np.ones((data.shape[0], 2))
    with pytest.raises(PyptyParameterError, match="compressed data"):
        validate(base_params(signals, pos, probe, masks=masks, algorithm="lambda x: 'lsq_compressed'"))
    # an ordinary run may not switch to the compressed loss
    r = _rec(small, algorithm="lambda x: 'ml' if x < 1 else 'lsq_compressed'")
    r.step(0)
    with pytest.raises(PyptyParameterError, match="lsq_compressed"):
        r.step(1)
    with pytest.raises(PyptyParameterError, match="algorithm"):
        _rec(small, algorithm="lambda x: 'poisson'").step(0)
