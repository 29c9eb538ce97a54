"""restart_from reads only what a restart needs and checks it (issue 15, class 1; restart parts of 5 and 7).

Every case tampers a copy of one results file with h5py: the parameters of the
restarting run decide what it does and where it writes, every array taken is
checked (dtype, shape, declared size, NaN/inf) and every error names
``restart_from`` and the file.
"""
import os
import shutil
import time

import h5py
import numpy as np
import pytest

import pypty.iterative
import pypty.parameters
from pypty.data.memory import host_memory_bytes
from pypty.output.restart import RestartError, load_restart
from pypty.parameters import PyptyParameterError
from pypty.results import ResultsFileError, load_results, params_from_results
from synthetic import base_params, dataset

KW = dict(update_probe_pos="lambda e: e >= 2", hist_length=5, save_figures=())
HUGE = (10**6, 10**5)  # complex128: 1.46 TiB declared, a few KiB on disk


@pytest.fixture(scope="module")
def small():
    _, probe, pos, data = dataset(4, 3.0, 44, seed=1)
    return pos, probe, data


@pytest.fixture(scope="module")
def saved(small, tmp_path_factory):
    """A 3-epoch run saved with its restart state, and the 6-epoch run it continues into."""
    out = str(tmp_path_factory.mktemp("saved") / "run")
    _run(small, epoch_max=3, output_folder=out)
    return os.path.join(out, "results.h5"), _run(small, epoch_max=6)


def _run(small, **kw):
    pos, probe, data = small
    kw = {**KW, **kw}
    return pypty.iterative.run(base_params(kw.pop("dataset", data), kw.pop("positions", pos), probe, **kw))


def _copy(saved, tmp_path, edit=None):
    """A copy of the saved run folder (results.h5 tampered by ``edit(h5py.File)``); returns its folder."""
    folder = str(tmp_path / "copy")
    os.makedirs(folder)
    path = os.path.join(folder, "results.h5")
    shutil.copy(saved[0], path)
    if edit is not None:
        with h5py.File(path, "r+") as f:
            edit(f)
    return folder


def _names(folder):
    return rf"^parameter 'restart_from' \({os.path.abspath(os.path.join(folder, 'results.h5'))}\): "


# ------------------------------------------------------------------ non-array datasets never steer a restart
def _steer(elsewhere):
    def edit(f):
        f["arrays/epoch_max"] = 100
        f["arrays/loss_weight"] = np.nan
        f["arrays/output_folder"] = np.array(elsewhere, dtype=h5py.string_dtype())
        f["arrays/print_flag"] = 4
        f["arrays/hist_length"] = 0
        f["arrays/restart_from"] = np.array(elsewhere, dtype=h5py.string_dtype())
    return edit


def test_non_array_datasets_do_not_steer_the_restart(small, saved, tmp_path):
    elsewhere = str(tmp_path / "elsewhere")
    folder = _copy(saved, tmp_path, _steer(elsewhere))
    res = _run(small, epoch_max=6, output_folder=folder, restart_from=folder)
    full = saved[1]
    assert res["loss"] == full["loss"][3:]  # 3 epochs (epoch_max 6, not 100), loss_weight 1, hist_length 5
    for k in ("obj", "probe", "positions"):
        assert np.array_equal(res[k], full[k]), k
    assert res["output_folder"] == folder and res["results_file"] == os.path.join(folder, "results.h5")
    assert load_results(folder)["attrs"]["epochs_done"] == 6
    assert not os.path.exists(elsewhere)


def test_non_array_datasets_are_not_read_by_params_from_results(saved, tmp_path):
    follow = params_from_results(_copy(saved, tmp_path, _steer(str(tmp_path / "x"))))
    assert set(follow) == {"obj", "probe", "positions", "epoch_prev", "parent_results"}
    assert follow["epoch_prev"] == 3


# ------------------------------------------------------------------ NaN / inf
@pytest.mark.parametrize("dataset,index,value", [
    ("arrays/obj", (0, 0, 0, 0), np.nan),
    ("arrays/probe", (3, 4, 0), np.inf),
    ("arrays/positions", (2, 1), np.nan),
    ("restart/positions_canvas", (0, 0), -np.inf),
    ("position_offset", (1,), np.nan),
    ("restart/optimizer/pair_0000/s/obj", (0, 0, 5, 5), np.nan),
    ("restart/cache/g/probe", (0, 0, 1, 1), np.inf),
])
def test_nan_or_inf_in_a_saved_array_is_refused(small, saved, tmp_path, dataset, index, value):
    def edit(f):
        f[dataset][index] = value

    folder = _copy(saved, tmp_path, edit)
    with pytest.raises(RestartError, match=_names(folder) + f"dataset '/{dataset}' holds 1 NaN/inf value") as info:
        _run(small, epoch_max=6, output_folder=folder, restart_from=folder)
    assert isinstance(info.value, PyptyParameterError) and isinstance(info.value, ResultsFileError)


# ------------------------------------------------------------------ shapes that do not fit the run
def test_fewer_patterns_than_saved_positions_blame_restart_from(small, saved, tmp_path):
    pos, _, data = small
    folder = _copy(saved, tmp_path)
    with pytest.raises(PyptyParameterError, match=_names(folder) + r"dataset '/arrays/positions' has shape "
                                                  r"\(16, 2\) but this run needs \(15, 2\).*data hold 15 patterns"):
        _run(small, epoch_max=6, output_folder=folder, restart_from=folder, dataset=data[:-1], positions=pos[:-1])


def test_probe_window_mismatch_blames_restart_from(small, saved, tmp_path):
    folder = _copy(saved, tmp_path)
    with pytest.raises(PyptyParameterError, match=_names(folder) + r"dataset '/arrays/probe' has shape \(32, 32, 1\) "
                                                  r"but this run needs \(36, 36, any\)"):
        _run(small, epoch_max=6, output_folder=folder, restart_from=folder, data_pad=2)


def test_slices_mismatch_blames_restart_from(small, saved, tmp_path):
    folder = _copy(saved, tmp_path)
    with pytest.raises(PyptyParameterError, match=_names(folder) + r"dataset '/arrays/obj' .*num_slices = 2"):
        _run(small, epoch_max=6, output_folder=folder, restart_from=folder, num_slices=2)


def test_tampered_shapes_blame_restart_from(small, saved, tmp_path):
    def edit(f):
        del f["restart/positions_canvas"]
        f["restart/positions_canvas"] = np.zeros((15, 2))

    folder = _copy(saved, tmp_path, edit)
    with pytest.raises(RestartError, match=_names(folder) + r"dataset '/restart/positions_canvas' has shape \(15, 2\)"):
        _run(small, epoch_max=6, output_folder=folder, restart_from=folder)


def test_optimizer_block_of_the_wrong_shape_or_name_is_refused(small, saved, tmp_path):
    def edit(f):
        g = f["restart/optimizer/pair_0000"]
        del g["s/probe"], g["y/probe"]
        g["s/probe"] = g["y/probe"] = np.zeros((1, 1, 31, 32), complex)

    folder = _copy(saved, tmp_path, edit)
    with pytest.raises(RestartError, match=_names(folder) + r"dataset '/restart/optimizer/pair_0000/s/probe' has "
                                                            r"shape \(1, 1, 31, 32\) but this run needs "
                                                            r"\(1, 1, 32, 32\)"):
        _run(small, epoch_max=6, output_folder=folder, restart_from=folder)

    def rename(f):
        g = f["restart/optimizer/pair_0000"]
        g["s"].move("obj", "epoch_max")
        g["y"].move("obj", "epoch_max")

    folder = str(tmp_path / "copy")
    shutil.rmtree(folder)
    folder = _copy(saved, tmp_path, rename)
    with pytest.raises(RestartError, match=_names(folder) + r".*'epoch_max' is not an optimizer block"):
        _run(small, epoch_max=6, output_folder=folder, restart_from=folder)


def test_saved_arrays_that_contradict_the_parameters_blame_restart_from(small, saved, tmp_path):
    """Non-zero 'before' tilts saved, tilt_mode 0 here: the consistency rule is reported for restart_from."""
    def edit(f):
        f["arrays/tilts"] = np.array([[0.1, 0.0, 0.0, 0.0, 0.0, 0.0]])

    folder = _copy(saved, tmp_path, edit)
    with pytest.raises(RestartError, match=_names(folder) + r"the saved arrays do not fit the parameters of this run: "
                                                            r"parameter 'tilts'"):
        _run(small, epoch_max=6, output_folder=folder, restart_from=folder)


def test_canvas_mismatch_names_restart_from_and_the_file(small, saved, tmp_path):
    folder = _copy(saved, tmp_path)
    with pytest.raises(RestartError, match=_names(folder) + r"the saved object '/arrays/obj' is"):
        _run(small, epoch_max=6, output_folder=folder, restart_from=folder, extra_space_on_side_px=40)


# ------------------------------------------------------------------ declared sizes, refused before allocation
def _huge(name, shape=HUGE):
    def edit(f):
        parent, _, leaf = name.rpartition("/")
        del f[name]
        f[parent].create_dataset(leaf, shape=shape, dtype=np.complex128, chunks=True, compression="gzip")
    return edit


@pytest.mark.parametrize("name", ["arrays/obj", "restart/optimizer/pair_0000/s/obj", "restart/cache/g/probe"])
def test_a_huge_declared_dataset_is_refused_before_allocation(small, saved, tmp_path, name):
    if host_memory_bytes() > 16 * HUGE[0] * HUGE[1]:  # pragma: no cover - a machine with more than 1.46 TiB free
        pytest.skip("the declared dataset would fit in memory here")
    folder = _copy(saved, tmp_path, _huge(name))
    assert os.path.getsize(os.path.join(folder, "results.h5")) < 10 * os.path.getsize(saved[0])
    pos, probe, data = small
    t0 = time.perf_counter()
    with pytest.raises(RestartError, match=_names(folder) + rf"dataset '/{name}' declares shape \(1000000, 100000\) "
                                                            r"complex128 \(1.46 TiB\), more than the .* of memory "
                                                            r"available: refused before reading it"):
        load_restart(pypty.parameters.validate(base_params(data, pos, probe, restart_from=folder)))
    assert time.perf_counter() - t0 < 1.0
    with pytest.raises(RestartError, match=r"declares shape \(1000000, 100000\) complex128 \(1.46 TiB\)"):
        _run(small, epoch_max=6, output_folder=folder, restart_from=folder)
    if name == "arrays/obj":  # reading the file for anything else refuses it too
        with pytest.raises(ResultsFileError, match=r"dataset '/arrays/obj' declares shape \(1000000, 100000\)"):
            load_results(folder)


def test_an_object_canvas_far_larger_than_the_scan_is_refused_before_reading(small, saved, tmp_path):
    """64 MiB fits in memory, but no scan of 4 x 4 positions 3 px apart with a 32 px window needs it."""
    folder = _copy(saved, tmp_path, _huge("arrays/obj", (2000, 2000, 1, 1)))
    with pytest.raises(RestartError, match=_names(folder) + r"dataset '/arrays/obj' declares shape \(2000, 2000, 1, "
                                                            r"1\) complex128 \(61 MiB\): dimension 0 \(2000\) is "
                                                            r"more than 4 x the extent"):
        _run(small, epoch_max=6, output_folder=folder, restart_from=folder)


def test_loss_rows_beyond_the_epochs_done_are_refused(small, saved, tmp_path):
    def edit(f):
        for k in list(f["loss"]):
            del f["loss"][k]
        f["loss"].create_dataset("loss", shape=(10**8,), dtype=float, chunks=(4096,), compression="gzip")

    folder = _copy(saved, tmp_path, edit)
    with pytest.raises(RestartError, match=_names(folder) + r"dataset '/loss/loss' has 100000000 rows"):
        _run(small, epoch_max=6, output_folder=folder, restart_from=folder)


# ------------------------------------------------------------------ missing state, attributes, files
def test_missing_restart_group_is_a_clear_error(small, saved, tmp_path):
    def edit(f):
        del f["restart"]

    folder = _copy(saved, tmp_path, edit)
    with pytest.raises(RestartError, match=_names(folder) + r"the file holds no restart state \(no '/restart' group\)"):
        _run(small, epoch_max=6, output_folder=folder, restart_from=folder)


@pytest.mark.parametrize("edit,match", [
    (lambda f: f.attrs.__setitem__("epochs_done", -2), r"attribute 'epochs_done' of '/' is '-2'"),
    (lambda f: f.attrs.__setitem__("epochs_done", "three"), r"attribute 'epochs_done' of '/' is 'three'"),
    (lambda f: f["restart/optimizer"].attrs.__setitem__("n_pairs", 10**9),
     r"attribute 'n_pairs' of '/restart/optimizer' is '1000000000'"),
    (lambda f: f["restart/cache"].attrs.__setitem__("f", np.nan), r"attribute 'f' of '/restart/cache' is 'nan'"),
    (lambda f: f["restart/optimizer/pair_0000"].attrs.__setitem__("gamma_k", "{"),
     r"attribute 'gamma_k' of '/restart/optimizer/pair_0000' is '\{'"),
    (lambda f: f.__delitem__("arrays/probe"), r"'/arrays/probe' is missing"),
])
def test_malformed_state_is_named(small, saved, tmp_path, edit, match):
    folder = _copy(saved, tmp_path, edit)
    with pytest.raises(RestartError, match=_names(folder) + match):
        _run(small, epoch_max=6, output_folder=folder, restart_from=folder)


def test_missing_file_names_restart_from(small, tmp_path):
    missing = str(tmp_path / "nothing.h5")
    with pytest.raises(RestartError, match=rf"^parameter 'restart_from' \({missing}\): results file .* does not exist"):
        _run(small, epoch_max=2, restart_from=missing)


def test_untampered_copy_restarts_bit_identically(small, saved, tmp_path):
    folder = _copy(saved, tmp_path)
    res = _run(small, epoch_max=6, output_folder=folder, restart_from=folder)
    assert res["loss"] == saved[1]["loss"][3:]
    for k in ("obj", "probe", "positions"):
        assert np.array_equal(res[k], saved[1][k]), k
