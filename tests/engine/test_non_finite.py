"""A run never ends as 'final' with a non-finite loss (issue 15, class 4).

* epoch-dependent values are checked when the epoch resolves them (a NaN ``loss_weight`` at epoch 3 stops the
  run with a message naming the parameter and the epoch);
* a NaN or inf in the loss, one of its parts or the gradient stops the run with
  :class:`pypty.engine.errors.NonFiniteLossError` before the step is accepted, and the interrupted save holds
  the last finite state;
* a negative ``beam_current`` and non-finite phase plates are refused at set-up, naming the parameter.
"""
import math

import h5py
import numpy as np
import pytest

import pypty.iterative
from conftest import host, test_backend
from pypty.constraints import Change
from pypty.engine.driver import reconstruct
from pypty.engine.errors import NonFiniteLossError
from pypty.engine.session import Reconstruction
from pypty.model.setup import build_setup
from pypty.parameters import PyptyParameterError, validate
from pypty.results import load_results
from synthetic import base_params, dataset

ARRAYS = ("obj", "probe", "positions")
QUIET = dict(save_figures=(), update_probe_pos=1)


@pytest.fixture(scope="module")
def small():
    _, probe, pos, data = dataset(4, 3.0, 44, seed=1)
    return pos, probe, data


def _params(small, **kw):
    pos, probe, data = small
    return validate(base_params(data, pos, probe, **{**QUIET, **kw}))


def _rec(small, terms=(), constraints=(), **kw):
    p = _params(small, **kw)
    return Reconstruction(p, build_setup(p, test_backend()), terms, constraints)


class NanObject:
    """A hand constraint that writes a NaN into the object at one epoch (a broken edit)."""

    name, PARAMS = "nan_object", ()

    def __init__(self, at):
        self.at = at

    def active(self, epoch):
        return epoch == self.at

    def apply(self, arrays, epoch, ctx):
        obj = arrays["obj"].copy()
        obj[0, 0, obj.shape[2] // 2, obj.shape[3] // 2] = np.nan
        return {"obj": obj}, Change("reset", "wrote a NaN")


class BadTerm:
    """A loss term whose value (or only its gradient) becomes NaN from epoch ``at`` on."""

    PARAMS = ()

    def __init__(self, at, grad_only=False, name="bad"):
        self.at, self.grad_only, self.name = at, grad_only, name

    def active(self, epoch):
        return True

    def key(self, epoch):
        return (epoch >= self.at,)

    def value_and_grad(self, arrays, epoch):
        pos = arrays["positions"]
        if epoch < self.at:
            return 0.0, {"positions": 0 * pos}
        if self.grad_only:
            return 0.0, {"positions": pos * np.nan}
        return math.nan, {"positions": 0 * pos}


# ------------------------------------------------------------------ a schedule returning NaN
def test_loss_weight_nan_at_epoch_3_stops_the_run_with_interrupted_save(small, tmp_path):
    out = str(tmp_path / "w")
    p = _params(small, epoch_max=6, output_folder=out, loss_weight=lambda e: math.nan if e == 3 else 1.0)
    with pytest.raises(PyptyParameterError, match=r"parameter 'loss_weight' at epoch 3: callable .* returned nan "
                                                  r"\(float\), expected a float >= 0"):
        reconstruct(p)
    res = load_results(out)
    assert res["attrs"]["status"] == "interrupted" and res["attrs"]["epochs_done"] == 3
    assert np.all(np.isfinite(res["loss"]["loss"]))
    for k in ARRAYS:
        assert np.all(np.isfinite(res["arrays"][k])), k


def test_string_switch_and_wolfe_order_at_an_epoch(small):
    r = _rec(small, update_obj="lambda e: 'no' if e == 1 else 1")
    r.step(0)
    with pytest.raises(PyptyParameterError, match=r"'update_obj' at epoch 1: lambda .* returned 'no' \(str\)"):
        r.step(1)
    r = _rec(small, wolfe_c1_constant="lambda e: 0.95 if e == 1 else 0.1")
    r.step(0)
    with pytest.raises(PyptyParameterError, match=r"'wolfe_c1_constant' \(0.95\) and 'wolfe_c2_constant' \(0.9\) at "
                                                  r"epoch 1 must satisfy"):
        r.step(1)


# ------------------------------------------------------------------ non-finite loss or gradient
def test_nan_from_a_constraint_stops_the_run_and_saves_the_last_finite_state(small, tmp_path):
    out = str(tmp_path / "c")
    p = _params(small, epoch_max=5, output_folder=out, save_results_every=1)
    with pytest.raises(NonFiniteLossError) as info:
        reconstruct(p, constraints=[NanObject(at=2)])
    err = info.value
    msg = str(err)
    assert err.epoch == 2 and "loss_data" in err.parts and math.isnan(err.parts["loss_data"])
    assert isinstance(err, RuntimeError)
    assert "during epoch 3 (epoch index 2)" in msg and "loss_data = nan" in msg
    assert "nan_object: wrote a NaN" in msg and "edits were undone" in msg
    res = load_results(out)
    assert res["attrs"]["status"] == "interrupted" and res["attrs"]["epochs_done"] == 2
    assert np.all(np.isfinite(res["loss"]["loss"]))
    ref = reconstruct(_params(small, epoch_max=2), constraints=[NanObject(at=99)])  # the same two epochs
    for k in ARRAYS:
        assert np.all(np.isfinite(res["arrays"][k])), k
        np.testing.assert_array_equal(res["arrays"][k], ref[k], err_msg=k)


def test_failed_step_keeps_the_arrays_of_the_last_epoch(small):
    r = _rec(small, constraints=[NanObject(at=1)])
    r.step(0)
    arrays, offset = dict(r.arrays), r.position_offset.copy()
    with pytest.raises(NonFiniteLossError):
        r.step(1)
    assert all(r.arrays[k] is v for k, v in arrays.items())
    assert np.array_equal(offset, r.position_offset) and r.opt.history_size == 0
    assert np.all(np.isfinite(host(r.arrays["obj"])))


@pytest.mark.parametrize("grad_only", [False, True])
def test_nan_from_a_loss_term_names_the_part_or_block(small, tmp_path, grad_only):
    out = str(tmp_path / "t")
    p = _params(small, epoch_max=5, output_folder=out)
    with pytest.raises(NonFiniteLossError) as info:
        reconstruct(p, terms=[BadTerm(at=3, grad_only=grad_only)])
    err, msg = info.value, str(info.value)
    assert err.epoch == 3 and "during epoch 4" in msg
    if grad_only:
        assert err.blocks == ("positions",) and "gradient of block(s) positions holds NaN or inf" in msg
        assert not err.parts
    else:
        assert list(err.parts) == ["reg_bad"] and "reg_bad = nan" in msg
    res = load_results(out)
    assert res["attrs"]["status"] == "interrupted" and res["attrs"]["epochs_done"] == 3


def test_nothing_refined_and_nan_loss(small):
    r = _rec(small, [BadTerm(at=0)], update_obj=0, update_probe=0, update_probe_pos=0)
    with pytest.raises(NonFiniteLossError, match="reg_bad = nan"):
        r.step(0)


# ------------------------------------------------------------------ set-up checks
def test_negative_or_nan_beam_current_is_refused(small):
    pos, probe, data = small
    bc = np.ones(len(pos))
    bc[5] = -0.5
    with pytest.raises(PyptyParameterError, match=r"parameter 'beam_current': must be finite and >= 0 .* 1 bad "
                                                  r"value\(s\), the first -0.5 at pattern 5"):
        pypty.iterative.run(base_params(data, pos, probe, epoch_max=1, beam_current=bc))
    bc[5] = np.nan
    with pytest.raises(PyptyParameterError, match="parameter 'beam_current' expects"):
        pypty.iterative.run(base_params(data, pos, probe, epoch_max=1, beam_current=bc))
    bc[5] = 0.0  # a pattern without current is allowed
    res = pypty.iterative.run(base_params(data, pos, probe, epoch_max=1, beam_current=bc))
    assert np.isfinite(res["loss"][0])


def test_nan_phase_plate_is_refused(small, tmp_path):
    pos, probe, data = small
    plates = np.zeros((len(pos), 32, 32))
    plates[4, 3, 7] = np.nan
    path = str(tmp_path / "plates.h5")
    with h5py.File(path, "w") as fh:
        fh["configs"] = plates
    with pytest.raises(PyptyParameterError, match=r"parameter 'phase_plate_in_h5': .* holds 1 NaN or inf value\(s\), "
                                                  r"the first in the plate of pattern 4"):
        pypty.iterative.run(base_params(data, pos, probe, epoch_max=1, phase_plate_in_h5=path))
