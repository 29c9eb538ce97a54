"""`pypty.iterative.run`: outputs, switches, dtypes, error handling."""
import copy
import csv
import json
import os

import numpy as np
import pytest

import pypty.iterative
from pypty.parameters import PyptyParameterError
from synthetic import base_params, dataset, default_probe


@pytest.fixture(scope="module")
def small():
    _, probe, pos, data = dataset(5, 3.0, 46, seed=1)
    return pos, probe, data


def test_outputs_written(small, tmp_path):
    pos, probe, data = small
    out = str(tmp_path / "run1") + "/"  # trailing slash is fine; folder created
    res = pypty.iterative.run(base_params(data, pos, probe, epoch_max=4, output_folder=out,
                                          update_obj="lambda e: 1", update_probe="lambda x: 1 if x >= 2 else 0"))
    files = set(os.listdir(out))
    assert {"params.json", "loss.csv", "co.npy", "cp.npy", "cg.npy"} <= files
    assert not [f for f in files if f.endswith(".tmp")]
    np.testing.assert_array_equal(np.load(os.path.join(out, "co.npy")), res["obj"])
    np.testing.assert_array_equal(np.load(os.path.join(out, "cp.npy")), res["probe"])
    np.testing.assert_array_equal(np.load(os.path.join(out, "cg.npy")), res["positions"])
    rows = list(csv.DictReader(open(os.path.join(out, "loss.csv"))))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    np.testing.assert_allclose([float(r["loss"]) for r in rows], res["loss"])
    assert [r["refined"] for r in rows] == ["obj", "obj", "obj+probe", "obj+probe"]
    rec = json.load(open(os.path.join(out, "params.json")))
    assert rec["params"]["update_probe"] == "lambda x: 1 if x >= 2 else 0"
    assert rec["params"]["epoch_max"] == 4


def test_checkpoints_every_epoch_and_cadence(small, tmp_path):
    pos, probe, data = small
    out = str(tmp_path / "run2")
    pypty.iterative.run(base_params(data, pos, probe, epoch_max=4, output_folder=out,
                                    save_checkpoints_every_epoch=2, save_loss_log=False))
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["epoch_0002", "epoch_0004"]
    assert not os.path.exists(os.path.join(out, "loss.csv"))


def test_input_not_modified_and_result_shapes(small):
    pos, probe, data = small
    params = base_params(data, pos, probe, epoch_max=2, update_probe_pos=1)
    before = copy.deepcopy(params)
    res = pypty.iterative.run(params)
    for k, v in before.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(params[k], v)
        else:
            assert params[k] == v
    assert res["obj"].ndim == 4 and res["obj"].shape[2:] == (1, 1)
    assert res["probe"].shape == probe.shape and res["positions"].shape == pos.shape
    assert len(res["loss"]) == 2


def test_loss_never_increases(small):
    pos, probe, data = small
    res = pypty.iterative.run(base_params(data, pos, default_probe(defocus=45.0), epoch_max=12,
                                          update_probe_pos="lambda e: e >= 6"))
    assert all(b <= a for a, b in zip(res["loss"], res["loss"][1:]))
    assert res["loss"][-1] < res["loss"][0]


@pytest.mark.parametrize("hist", [0, 1, 5, np.inf])
def test_history_lengths_reduce_loss(small, hist):
    pos, probe, data = small
    res = pypty.iterative.run(base_params(data, pos, probe, epoch_max=6, hist_length=hist, update_probe=0))
    assert res["loss"][-1] < 0.7 * res["loss"][0]


def test_single_precision(small):
    pos, probe, data = small
    res = pypty.iterative.run(base_params(data, pos, probe, epoch_max=6, default_dtype="single"))
    assert res["obj"].dtype == np.complex64 and res["probe"].dtype == np.complex64
    ref = pypty.iterative.run(base_params(data, pos, probe, epoch_max=6))
    assert res["loss"][-1] < 0.5 * res["loss"][0]
    np.testing.assert_allclose(res["loss"][0], ref["loss"][0], rtol=1e-3)


def test_phase_only_object_keeps_unit_modulus(small):
    pos, probe, data = small
    res = pypty.iterative.run(base_params(data, pos, probe, epoch_max=5, phase_only_obj=1, update_probe=0))
    np.testing.assert_allclose(np.abs(res["obj"]), 1.0, atol=1e-12)
    assert res["loss"][-1] < 0.5 * res["loss"][0]


def test_nothing_refined_evaluates_loss_only(small):
    pos, probe, data = small
    res = pypty.iterative.run(base_params(data, pos, probe, epoch_max=2, update_obj=0, update_probe=0))
    assert res["loss"][0] == res["loss"][1] > 0


def test_user_callable_error_names_parameter(small):
    pos, probe, data = small

    def bad(epoch):
        raise ZeroDivisionError("boom")

    with pytest.raises(RuntimeError, match="update_probe"):
        pypty.iterative.run(base_params(data, pos, probe, epoch_max=2, update_probe=bad))


def test_interrupt_saves_checkpoint(small, tmp_path):
    pos, probe, data = small
    out = str(tmp_path / "int")

    def stop(epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return 1

    with pytest.raises(KeyboardInterrupt):
        pypty.iterative.run(base_params(data, pos, probe, epoch_max=5, output_folder=out, update_probe=stop,
                                        save_inter_checkpoints=False))
    assert os.path.exists(os.path.join(out, "co.npy"))
    rows = list(csv.DictReader(open(os.path.join(out, "loss.csv"))))
    assert len(rows) == 2


def test_print_flag_zero_is_silent(small, capsys):
    pos, probe, data = small
    pypty.iterative.run(base_params(data, pos, probe, epoch_max=2, print_flag=0))
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == ""


def test_bad_parameters_fail_before_work(small):
    pos, probe, data = small
    with pytest.raises(PyptyParameterError, match="epoch_max"):
        pypty.iterative.run(base_params(data, pos, probe, epoch_maxx=3))
    with pytest.raises(PyptyParameterError, match="positions"):
        pypty.iterative.run(base_params(data, pos[:-1], probe))
    with pytest.raises(PyptyParameterError, match="probe"):
        pypty.iterative.run(base_params(data, pos, probe[:16]))
    with pytest.raises(PyptyParameterError, match="slice_distances"):
        pypty.iterative.run(base_params(data, pos, probe, num_slices=2, slice_distances=np.array([1.0, 2, 3])))
    with pytest.raises(ValueError, match="update_obj"):
        pypty.iterative.run(base_params(data, pos, probe, update_obj="lambda x: __import__('os')"))


def test_probe_built_from_data_when_none(small):
    pos, probe, data = small
    with pytest.warns(UserWarning, match="probe"):  # a unit-intensity probe is rescaled, loudly
        pypty.iterative.run(base_params(data, pos, probe / 100.0, epoch_max=1))
    res = pypty.iterative.run(base_params(data, pos, None, epoch_max=8, aberrations=np.array([-60.0])))
    np.testing.assert_allclose(np.sum(np.abs(res["probe"]) ** 2), data.sum(axis=(1, 2)).mean(), rtol=0.05)
    assert res["loss"][-1] < res["loss"][0]


def test_restart_from_checkpoint_continues(small, tmp_path):
    pos, probe, data = small
    out = str(tmp_path / "r")
    full = pypty.iterative.run(base_params(data, pos, probe, epoch_max=6))
    pypty.iterative.run(base_params(data, pos, probe, epoch_max=3, output_folder=out))
    cont = pypty.iterative.run(base_params(data, np.load(out + "/cg.npy"), np.load(out + "/cp.npy"),
                                           obj=np.load(out + "/co.npy"), epoch_prev=3, epoch_max=6,
                                           output_folder=out))
    assert len(cont["loss"]) == 3
    assert cont["loss"][-1] < full["loss"][2]
    rows = list(csv.DictReader(open(os.path.join(out, "loss.csv"))))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]


def test_negative_positions_and_extra_space_shift_the_canvas(small):
    """Positions below 0 or an extra margin move the scan into the canvas; positions index the result."""
    pos, probe, data = small
    # lazy_clean: the object band limit acts on the canvas grid, so canvases of other sizes differ in the last bits
    a = pypty.iterative.run(base_params(data, pos - 10, probe, epoch_max=2, lazy_clean=True))
    b = pypty.iterative.run(base_params(data, pos, probe, epoch_max=2, extra_space_on_side_px=3, lazy_clean=True))
    assert np.isfinite(a["loss"]).all() and np.isfinite(b["loss"]).all()
    np.testing.assert_allclose(a["positions"] + a["position_offset"], pos - 10, atol=1e-12)
    np.testing.assert_allclose(b["positions"] + b["position_offset"], pos, atol=1e-12)
    for res in (a, b):
        margin = 3 if res is b else 0
        win = probe.shape[0]
        assert res["positions"].min() >= margin
        assert np.floor(res["positions"].max(axis=0) + 0.5).max() + win + margin <= max(res["obj"].shape[:2])
    # same scan, same result: the margin only adds vacuum around it
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-9)
