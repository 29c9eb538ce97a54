"""Results file, exact restart, provenance, interruption, atomic writes, naming, figures, exports."""
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import pypty.iterative
from pypty.optim import LBFGS
from pypty.provenance import export_history_json, load_history
from pypty.results import ResultsFileError, load_results, params_from_results, validate_results
from synthetic import base_params, dataset

ARRAYS = ("obj", "probe", "positions")
QUIET = dict(save_figures=())  # figures are tested once, below; they cost ~0.3 s per run


@pytest.fixture(scope="module")
def small():
    _, probe, pos, data = dataset(4, 3.0, 44, seed=1)
    return pos, probe, data


def _run(small, **kw):
    pos, probe, data = small
    return pypty.iterative.run(base_params(data, pos, probe, **{**QUIET, **kw}))


REFINE = dict(update_probe_pos="lambda e: e >= 2", hist_length=5)


def test_restart_is_bit_identical(small, tmp_path):
    out = str(tmp_path / "r")
    full = _run(small, epoch_max=6, **REFINE)
    first = _run(small, epoch_max=3, output_folder=out, **REFINE)
    second = _run(small, epoch_max=6, output_folder=out, restart_from=out, **REFINE)
    assert first["loss"] + second["loss"] == full["loss"]
    for k in ARRAYS:
        assert np.array_equal(second[k], full[k]), k
    res = load_results(out)
    assert res["attrs"]["epochs_done"] == 6 and res["attrs"]["status"] == "final"
    assert list(res["loss"]["epoch"]) == [1, 2, 3, 4, 5, 6]
    assert list(res["loss"]["loss"]) == full["loss"]
    for k in ARRAYS:
        assert np.array_equal(res["arrays"][k], full[k])


def test_interrupt_writes_results_and_restart_matches(small, tmp_path, capsys):
    out = str(tmp_path / "i")

    def stop(epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return 1

    with pytest.raises(KeyboardInterrupt) as info:
        _run(small, epoch_max=5, output_folder=out, update_probe=stop)
    msg = " ".join(getattr(info.value, "__notes__", [])) or capsys.readouterr().out
    assert os.path.join(os.path.abspath(out), "results.h5") in msg and "restart_from" in msg
    res = load_results(out)
    assert res["attrs"]["status"] == "interrupted" and res["attrs"]["epochs_done"] == 2
    cont = _run(small, epoch_max=5, output_folder=out, restart_from=out)
    full = _run(small, epoch_max=5)
    assert list(load_results(out)["loss"]["loss"]) == full["loss"]
    for k in ARRAYS:
        assert np.array_equal(cont[k], full[k]), k


def test_roundtrip_save_load_continue(small, tmp_path):
    out = str(tmp_path / "a")
    res = _run(small, epoch_max=2, output_folder=out, save_results_every=1)
    assert res["results_file"] == os.path.join(out, "results.h5")
    loaded = load_results(out)
    for k in ARRAYS:
        assert np.array_equal(loaded["arrays"][k], res[k]) and loaded["arrays"][k].dtype == res[k].dtype
    assert loaded["params"]["update_probe_pos"] == 0 and loaded["params"]["epoch_max"] == 2
    assert loaded["attrs"]["pypty_version"] and loaded["timing"]["epochs"] == 2
    follow = params_from_results(out)
    assert follow["epoch_prev"] == 2 and follow["parent_results"] == os.path.abspath(os.path.join(out, "results.h5"))
    pos, probe, data = small
    nxt = pypty.iterative.run({**base_params(data, pos, probe, **QUIET), **follow, "epoch_max": 4,
                               "output_folder": str(tmp_path / "b")})
    assert len(nxt["loss"]) == 2 and nxt["loss"][-1] < res["loss"][-1]


def test_provenance_three_run_chain(small, tmp_path):
    pos, probe, data = small
    params = base_params(data, pos, probe, update_probe_pos=1, **QUIET)
    folders = [str(tmp_path / f"run{i}") for i in range(3)]
    pypty.iterative.run({**params, "epoch_max": 2, "output_folder": folders[0],
                         "provenance_origins": {"probe": "simulated", "positions": {"source": "scan.txt"}}})
    for i in (1, 2):
        pypty.iterative.run({**params, **params_from_results(folders[i - 1]), "epoch_max": 2 * (i + 1),
                             "output_folder": folders[i], "provenance_note": f"step {i}"})
    hist = load_history(folders[2])
    assert set(hist) == {"object", "probe", "positions"}
    for comp, entries in hist.items():
        runs = entries[1:]
        assert len(runs) == 3, comp
        assert [os.path.dirname(e["result_path"]) for e in runs] == [os.path.abspath(f) for f in folders]
        assert [e["epochs"] for e in runs] == [[0, 2], [2, 4], [4, 6]]
        assert [e["note"] for e in runs] == ["", "step 1", "step 2"]
        assert len({e["uid"] for e in runs}) == 3
        assert [e["timestamp"] for e in runs] == sorted(e["timestamp"] for e in runs)
    assert hist["probe"][0]["action"] == "simulated"
    assert hist["positions"][0]["source"] == "scan.txt" and hist["object"][0]["action"].startswith("initialised")
    js = export_history_json(folders[2])
    assert js.endswith("results_provenance.json") and json.load(open(js)) == hist
    # a component given as a different array starts a new history; the others still inherit
    follow = params_from_results(folders[2])
    follow["probe"] = probe
    pypty.iterative.run({**params, **follow, "epoch_max": 7, "output_folder": str(tmp_path / "x")})
    h = load_history(str(tmp_path / "x"))
    assert len(h["probe"]) == 2 and h["probe"][0]["action"] == "loaded from array"
    assert len(h["object"]) == 5


def test_corrupt_truncated_and_foreign_files_named(small, tmp_path):
    out = str(tmp_path / "c")
    _run(small, epoch_max=1, output_folder=out)
    good = os.path.join(out, "results.h5")
    raw = open(good, "rb").read()
    trunc = str(tmp_path / "trunc.h5")
    open(trunc, "wb").write(raw[: len(raw) // 2])
    with pytest.raises(ResultsFileError, match="trunc.h5"):
        load_results(trunc)
    # flip bytes inside the object data: the Fletcher-32 checksum catches it
    with h5py.File(good, "r") as f:
        ds = f["arrays/obj"]
        offset = ds.id.get_chunk_info(0).byte_offset
    bad = bytearray(raw)
    bad[offset + 100: offset + 108] = bytes(255 - b for b in bad[offset + 100: offset + 108])
    flipped = str(tmp_path / "flipped.h5")
    open(flipped, "wb").write(bytes(bad))
    with pytest.raises(ResultsFileError, match="flipped.h5"):
        validate_results(flipped)
    foreign = str(tmp_path / "foreign.h5")
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    with pytest.raises(ResultsFileError, match="foreign.h5.*not a pypty results file"):
        load_results(foreign)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        load_results(str(tmp_path / "missing.h5"))
    with pytest.raises(ResultsFileError, match="restart_from|trunc.h5"):
        _run(small, epoch_max=2, restart_from=trunc)


_CHILD = r"""
import sys, numpy as np
from pypty.output.atomic import save_npy_atomic
from pypty.results import write_results
folder = sys.argv[1]
i = 0
while True:
    i += 1
    a = np.full((256, 256, 2, 1), i, dtype=np.complex128)
    write_results(folder + "/results.h5", {"arrays": {"obj": a, "positions": np.full((500, 2), float(i))},
                  "attrs": {"counter": i}, "loss": {"loss": np.arange(i, dtype=float)}})
    save_npy_atomic(folder + "/co.npy", a)
    print(i, flush=True)
"""


def test_kill_mid_write_never_leaves_a_corrupt_latest_file(tmp_path):
    folder = str(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))}
    rng = np.random.default_rng(0)
    last, leftovers = 0, 0
    for trial in range(5):
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, folder], stdout=subprocess.PIPE, env=env)
        first = proc.stdout.readline()  # at least one complete write happened
        assert first
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        res = load_results(os.path.join(folder, "results.h5"))
        n = res["attrs"]["counter"]
        assert np.all(res["arrays"]["obj"] == n) and np.all(res["arrays"]["positions"] == n)
        assert res["loss"]["loss"].size == n
        co = np.load(os.path.join(folder, "co.npy"))
        assert co.shape == (256, 256, 2, 1) and np.all(co == co.flat[0])
        assert n >= 1  # each child counts from 1; at least one write completed
        last = n
        leftovers += len([f for f in os.listdir(folder) if f.endswith(".tmp")])
    assert last >= 1
    print(f"kill test: {leftovers} temporary file(s) left by kills during a write; latest files always complete")
    # the next run in that folder removes them (and only them)
    from pypty.output.atomic import remove_stale_temporaries

    open(os.path.join(folder, ".hidden_user_file"), "w").close()
    before = {f for f in os.listdir(folder) if f.endswith(".tmp")}
    removed = set(remove_stale_temporaries(folder))
    assert removed == before
    assert not [f for f in os.listdir(folder) if f.endswith(".tmp")]
    assert {"results.h5", "co.npy", ".hidden_user_file"} <= set(os.listdir(folder))


def test_output_folder_naming_and_no_overwrite(small, tmp_path):
    base = str(tmp_path / "out")
    kw = dict(epoch_max=1, output_folder=base, output_prefix_time="date", output_prefix="sto",
              output_postfix="try", output_affixes=["minimal", "hist"])
    r1 = _run(small, **kw)
    name = os.path.basename(r1["output_folder"])
    date = time.strftime("%Y%m%d")
    assert name == f"{date}_sto_N16_dp32_p1_1slice_hist10_try"
    r2 = _run(small, **kw)
    assert r2["output_folder"] == r1["output_folder"] + "_2"
    plain = str(tmp_path / "plain")
    _run(small, epoch_max=1, output_folder=plain)
    with pytest.raises(FileExistsError, match="output_folder.*overwrite_output"):
        _run(small, epoch_max=1, output_folder=plain)
    assert _run(small, epoch_max=1, output_folder=plain, overwrite_output=True)["output_folder"] == plain


def test_figures_tiffs_and_convergence(small, tmp_path):
    import tifffile

    out = str(tmp_path / "f")
    res = _run(small, epoch_max=4, output_folder=out, update_probe_pos=1, save_results_every=2,
               save_figures="all", save_tiff=["object_phase", "probe_amplitude"],
               tiff_bit_depths=["raw", 32, "16", "8"], tiff_fov=["crop", "full"])
    figs = sorted(os.listdir(os.path.join(out, "figures")))
    for name in ("loss", "object_phase", "probe", "positions", "patterns"):
        f = os.path.join(out, "figures", f"{name}_epoch0004.png")
        assert open(f, "rb").read(8) == b"\x89PNG\r\n\x1a\n", figs
    assert len(figs) == 5  # figures only at the end by default
    tdir = os.path.join(out, "tiff")
    dtypes = {"raw": np.float32, "32": np.float32, "16": np.uint16, "8": np.uint8}
    for bit, dt in dtypes.items():
        full = tifffile.imread(os.path.join(tdir, f"object_phase_sum_full_{bit}_epoch0004.tif"))
        crop = tifffile.imread(os.path.join(tdir, f"object_phase_sum_crop_{bit}_epoch0004.tif"))
        assert full.dtype == dt and crop.dtype == dt
        assert full.shape == res["obj"].shape[:2] and crop.shape[0] < full.shape[0]
    raw = tifffile.imread(os.path.join(tdir, "object_phase_sum_full_raw_epoch0004.tif"))
    np.testing.assert_allclose(raw, np.angle(res["obj"][..., 0, 0]), atol=1e-6)
    assert tifffile.imread(os.path.join(tdir, "object_phase_sum_crop_8_epoch0004.tif")).max() == 255
    assert tifffile.imread(os.path.join(tdir, "probe_amplitude_16_epoch0004.tif")).shape == (1, 32, 32)
    conv = load_results(out)["convergence"]
    assert list(conv["epoch"]) == [2, 4]
    for k in ("object_phase_bg", "object_phase_fg", "probe_intensity", "positions_rms_px"):
        assert np.all(np.isfinite(conv[k])) and np.all(conv[k] > 0), k


def test_epoch_dependent_save_cadence(small, tmp_path):
    out = str(tmp_path / "cad")
    _run(small, epoch_max=6, output_folder=out, save_results_every="lambda epoch: 1 if epoch < 2 else 3",
         save_figures=["loss"], save_figures_every="lambda epoch: 0 if epoch < 3 else 2")
    assert list(load_results(out)["convergence"]["epoch"]) == [1, 2, 3, 4, 6]
    assert sorted(os.listdir(os.path.join(out, "figures"))) == ["loss_epoch0004.png", "loss_epoch0006.png"]


def test_cropped_fov_offset_recorded(small, tmp_path):
    pos, probe, data = small
    seq = [5, 6, 9, 10]
    out = str(tmp_path / "crop")
    res = pypty.iterative.run(base_params(data, pos, probe, epoch_max=1, sequence=seq, use_full_FOV=False,
                                          output_folder=out, **QUIET))
    saved = load_results(out)
    off = saved["position_offset"]
    assert np.all(off > 0) and np.array_equal(off, res["position_offset"])
    canvas = saved["positions_canvas"]
    np.testing.assert_allclose(canvas, res["positions"], atol=1e-12)  # returned positions index the object
    np.testing.assert_allclose(canvas + off, pos, atol=1e-12)  # ... and + offset gives the user's frame
    assert canvas[seq].min() >= 0 and canvas[seq].min() < 1
    # an exact restart of a cropped run continues bit-identically
    full = pypty.iterative.run(base_params(data, pos, probe, epoch_max=3, sequence=seq, use_full_FOV=False,
                                           **QUIET))
    cont = pypty.iterative.run(base_params(data, pos, probe, epoch_max=3, sequence=seq, use_full_FOV=False,
                                           output_folder=out, restart_from=out, **QUIET))
    assert res["loss"] + cont["loss"] == full["loss"]
    assert all(np.array_equal(cont[k], full[k]) for k in ARRAYS)


def test_lbfgs_state_dict_continues_identically():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 6))
    h = a @ a.T + 6 * np.eye(6)

    def fun(x):
        v = x["v"]
        return 0.5 * v @ h @ v + np.sin(v).sum(), {"v": h @ v + np.cos(v)}

    x = {"v": rng.normal(size=6)}
    o1 = LBFGS(hist_length=3)
    for _ in range(3):
        x = o1.step(fun, x).x
    o2 = LBFGS(hist_length=3)
    o2.load_state_dict(json.loads(json.dumps(o1.state_dict(), default=lambda z: z.tolist())))
    x1, x2 = dict(x), dict(x)
    for _ in range(3):
        x1, x2 = o1.step(fun, x1).x, o2.step(fun, x2).x
        assert np.array_equal(x1["v"], x2["v"])
    with pytest.raises(ValueError, match="pair 0"):
        LBFGS().load_state_dict({"pairs": [{"s": {}}]})


def test_affix_choices_match_parameter_table():
    from pypty.output.folders import AFFIX_PRESETS, AFFIXES
    from pypty.parameters import AFFIX_CHOICES, FIGURE_CHOICES, TIFF_CHOICES
    from pypty.output.exports import TIFF_QUANTITIES
    from pypty.output.figures import FIGURES

    assert set(AFFIX_CHOICES) == set(AFFIX_PRESETS) | set(AFFIXES)
    assert set(FIGURE_CHOICES) == set(FIGURES) | {"all"} and set(TIFF_CHOICES) == set(TIFF_QUANTITIES)


@pytest.mark.filterwarnings("ignore:parameter 'tilt_mode'")  # inside tilts with one slice: warned, by design
def test_restart_is_bit_identical_with_every_refinable_array(small, tmp_path):
    """Reparametrised blocks (phase-only object, probe CTF, background b^2) and the issue-3 arrays restart exactly."""
    out = str(tmp_path / "all")
    n = len(small[0])
    kw = dict(phase_only_obj=1, tune_only_probe_phase="lambda e: e < 3", update_probe_pos="lambda e: e >= 2",
              update_tilts=1, tilt_mode=4, tilts=np.zeros((1, 6)), update_beam_current=1,
              update_static_background=1, static_background=0.01, update_aberrations_array=1,
              aberrations_array=np.zeros((1, 3)), hist_length=4)
    full = _run(small, epoch_max=6, **kw)
    first = _run(small, epoch_max=3, output_folder=out, **kw)
    second = _run(small, epoch_max=6, output_folder=out, restart_from=out, **kw)
    assert first["loss"] + second["loss"] == full["loss"]
    for k in ARRAYS + ("tilts", "beam_current", "static_background", "aberrations_array"):
        assert np.array_equal(second[k], full[k]), k
    assert full["beam_current"].shape == (n,)
    saved = load_results(out)
    assert set(saved["arrays"]) >= {"tilts", "beam_current", "static_background", "aberrations_array"}


def test_results_and_params_name_the_computing_libraries(small, tmp_path):
    from pypty.backend import get_backend

    out = str(tmp_path / "c")
    _run(small, epoch_max=1, output_folder=out)
    compute = load_results(out)["attrs"]["compute"]
    bk = get_backend()
    assert compute == bk.describe() and f"FFT: {bk.fft_name}" in compute
    with open(os.path.join(out, "params.json")) as f:
        assert json.load(f)["compute"] == compute
