"""Hostile or broken inputs (issue 15, classes 5-8): refused at once, with the project's error types and a message
naming the file or the parameter.

Classes: 5 unbounded resources from small inputs (far positions, canvases, probe modes, upsampling, padding,
declared dataset sizes); 6 silent corruption by an integer ``force_dataset_dtype``; 7 raw NumPy/h5py/OS errors in
the data and initialize paths; 8 HDF5 inputs that read other files, and saved lambdas.
"""
import time
import warnings

import h5py
import numpy as np
import pytest

import pypty.initialize as ini
from pypty.backend import get_backend
from pypty.data import DataError, memory
from pypty.data.sources import PatternSource, Preprocessing, SignalSource
from pypty.initialize import DatasetError
from pypty.initialize.probe import check_hermite_orders, hermite_modes, make_probe
from pypty.model.canvas import far_positions
from pypty.model.setup import build_setup
from pypty.parameters import PyptyParameterError, to_jsonable, validate

K = 8


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(0).random((16, K, K)) * 10


def grid(n=4, step=2.0):
    iy, ix = np.mgrid[:n, :n]
    return np.stack([iy.ravel() * step, ix.ravel() * step], axis=1).astype(float)


def setup(data, **kw):
    p = dict(dataset=data, positions=grid(), probe=np.ones((K, K, 1), complex))
    p.update(kw)
    return build_setup(validate(p), get_backend("numpy"))


def refused(exc_type, *names, fn, limit_s=2.0):
    """Call ``fn``; it must raise ``exc_type`` within ``limit_s`` with every one of ``names`` in the message."""
    t0 = time.perf_counter()
    with pytest.raises(exc_type) as info:
        res = fn()
        if hasattr(res, "close"):
            res.close()
    assert time.perf_counter() - t0 < limit_s
    msg = str(info.value)
    for name in names:
        assert name in msg, (name, msg)
    return msg


@pytest.fixture
def small_host(monkeypatch):
    """Pretend the host has 1 GiB available (the checks read it through pypty.data.memory)."""
    monkeypatch.setattr(memory, "host_memory_bytes", lambda: 2**30)


# ============================================================== 5: far positions and memory
def test_one_far_position_is_refused_before_the_canvas_is_built(data):
    pos = grid()
    pos[5] = [3e5, 2e5]  # would ask for a 300008 x 200008 px canvas (894 GiB)
    msg = refused(PyptyParameterError, "parameter 'positions'", "#5", "300008 x 200008", "GiB",
                  fn=lambda: setup(data, positions=pos))
    assert "obj" in msg  # the way to use such positions on purpose


def test_far_negative_position_is_refused(data):
    pos = grid()
    pos[0] = [-400.0, 3.0]
    refused(PyptyParameterError, "parameter 'positions'", "#0", fn=lambda: setup(data, positions=pos))


@pytest.mark.filterwarnings("ignore:parameter 'probe'")
def test_far_position_inside_a_given_object_is_kept(data):
    pos = grid()
    pos[15] = [300.0, 300.0]
    st = setup(data, positions=pos, obj=np.ones((320, 320, 1, 1), complex))
    try:
        assert st.canvas_yx == (320, 320)
    finally:
        st.close()


def test_far_positions_criterion():
    rng = np.random.default_rng(1)
    jittered = grid(20, 3.0) + rng.normal(0, 0.5, (400, 2))
    assert far_positions(jittered, (32, 32))[0].size == 0
    line = np.stack([np.zeros(50), np.arange(50) * 4.0], axis=1)  # a line scan: no extent along y
    assert far_positions(line, (16, 16))[0].size == 0
    two = np.vstack([grid(6, 2.0), grid(6, 2.0) + 500])  # two equal sub-scans far apart
    assert far_positions(two, (16, 16))[0].size == 0
    wild = grid(6, 2.0)
    wild[[3, 17]] = [[900, 0], [0, -700]]
    assert far_positions(wild, (16, 16))[0].tolist() == [3, 17]


@pytest.mark.parametrize("kw, name", [
    (dict(extra_space_on_side_px=20000), "extra_space_on_side_px"),
    (dict(probe=None, upsample_pattern=1500), "upsample_pattern"),
    (dict(probe=None, defocus_spread_modes=np.arange(200000.0)), "defocus_spread_modes"),
    (dict(probe=None, probe_marker=np.array([0] * 15 + [10**7])), "probe_marker"),
    (dict(positions=grid(4, 2.0) * 3000), "positions"),  # a regular but huge scan: no outlier, too large
])
def test_runs_larger_than_memory_name_the_parameter(data, small_host, kw, name):
    msg = refused(PyptyParameterError, f"parameter '{name}'", "GiB", "1 GiB available", fn=lambda: setup(data, **kw))
    assert "host memory" in msg


def test_device_memory_is_checked_on_a_gpu(data):
    """The strict stand-in is a device with 4 GiB free: the canvas estimate is compared with it."""
    p = validate(dict(dataset=data, positions=grid(4, 2.0) * 800, probe=np.ones((K, K, 1), complex)))
    refused(PyptyParameterError, "parameter 'positions'", "device memory",
            fn=lambda: build_setup(p, get_backend("strict")))


def test_huge_data_pad_is_refused_before_preprocessing(data, small_host):
    refused(PyptyParameterError, "parameter 'data_pad'", "GiB", fn=lambda: setup(data, data_pad=20000))


def test_hermite_mode_counts_that_would_hang(data):
    # 60 x 60 = 3600 modes on a 64 x 64 window: quadratic Gram-Schmidt for many minutes
    big = np.random.default_rng(2).random((16, 64, 64))
    refused(PyptyParameterError, "parameter 'n_hermite_probe_modes'", "3600 modes",
            fn=lambda: setup(big, probe=None, n_hermite_probe_modes=(60, 60)))
    refused(PyptyParameterError, "parameter 'n_hermite_probe_modes'", "exceed the probe window",
            fn=lambda: setup(data, probe=None, n_hermite_probe_modes=(9, 1)))
    with pytest.raises(PyptyParameterError, match="n_hermite_probe_modes"):
        check_hermite_orders((200, 200), (256, 256))
    assert check_hermite_orders((4, 3), (64, 64)) == (4, 3)
    assert check_hermite_orders((30, 30), (64, 64)) == (30, 30)  # 900 modes: a few seconds
    msg = refused(PyptyParameterError, "e.g. (", fn=lambda: check_hermite_orders((64, 64), (64, 64)))
    k = int(msg.split("e.g. (")[1].split(",")[0])  # the suggested count is within HERMITE_MAX_WORK
    assert check_hermite_orders((k, k), (64, 64)) == (k, k)
    refused(PyptyParameterError, fn=lambda: check_hermite_orders((k + 1, k + 1), (64, 64)))


def test_hermite_overflow_is_reported():
    probe = np.zeros((64, 64), complex)
    probe[32, 32], probe[32, 33] = 1, 1e-3  # rms width ~0.001 px: H_63 overflows at the window's edge
    refused(PyptyParameterError, "parameter 'n_hermite_probe_modes'", "overflow",
            fn=lambda: hermite_modes(probe, (64, 1)))


def test_declared_pattern_count_checked_before_reading(tmp_path):
    path = tmp_path / "declared.h5"
    with h5py.File(path, "w") as f:  # a 1.4 kB file declaring 1e8 patterns (no chunk written)
        f.create_dataset("data", shape=(10**8, K, K), dtype="f4", chunks=(64, K, K))
    assert path.stat().st_size < 4096
    p = validate(dict(data_path=str(path), positions=grid(), probe=np.ones((K, K, 1), complex)))
    msg = refused(PyptyParameterError, "parameter 'positions'", "data_path", str(path), "100000000", limit_s=1.0,
                  fn=lambda: build_setup(p, get_backend("numpy")))
    assert "before any pattern is read" in msg


def test_declared_count_of_compressed_signals(tmp_path):
    path = tmp_path / "signals.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", shape=(10**9, 4), dtype="f4", chunks=(1024, 4))
    refused(PyptyParameterError, "parameter 'positions'", str(path),
            fn=lambda: SignalSource(str(path), expected_n=16))
    refused(DataError, str(path), "GiB", fn=lambda: SignalSource(str(path)))  # 15 GiB of signals (x float64: 30)


def test_huge_declared_detector_refused(tmp_path):
    path = tmp_path / "detector.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", shape=(4, 10**6, 10**6), dtype="f4", chunks=(1, 64, 64))
    refused(DataError, "GiB", fn=lambda: PatternSource(str(path)))


def test_sequence_index_outside_the_data(data):
    refused(PyptyParameterError, "parameter 'sequence'", "100", fn=lambda: setup(data, sequence=[0, 1, 100]))
    refused(PyptyParameterError, "parameter 'sequence'",
            fn=lambda: setup(data, sequence=[0, 1, 100], use_full_FOV=False))


# ============================================================== 6: integer force_dataset_dtype
def test_integer_dtype_refuses_fractional_counts(data):
    refused(DataError, "force_dataset_dtype int32", "whole numbers", "pattern 0",
            fn=lambda: setup(data, force_dataset_dtype="int32"))


def test_integer_dtype_refuses_values_out_of_range(data):
    counts = np.round(data) + 40000  # whole numbers above int16's 32767
    refused(DataError, "force_dataset_dtype int16", "32767", "wrap",
            fn=lambda: setup(counts, force_dataset_dtype="int16"))
    refused(DataError, "force_dataset_dtype uint8", "data_bin 2",  # 4 x 100 counts after binning
            fn=lambda: PatternSource(dataset=np.full((4, 8, 8), 100.0), dtype=np.uint8, prep=Preprocessing(bin=2)))
    refused(DataError, "force_dataset_dtype float16", "inf", fn=lambda: setup(data * 1e5, force_dataset_dtype="float16"))
    refused(DataError, "force_dataset_dtype bool", fn=lambda: setup(np.round(data), force_dataset_dtype="bool"))


def test_integer_dtype_refuses_fractional_preprocessing(data):
    counts = np.round(data)
    refused(PyptyParameterError, "parameter 'force_dataset_dtype'", "data_multiplier",
            fn=lambda: setup(counts, force_dataset_dtype="int32", data_multiplier=0.5))
    refused(PyptyParameterError, "parameter 'force_dataset_dtype'", "data_shift_vector",
            fn=lambda: setup(counts, force_dataset_dtype="int32", data_shift_vector=(0.5, 0)))


def test_integer_dtype_keeps_whole_counts_exactly(data):
    counts = np.round(data)
    src = PatternSource(dataset=counts, dtype=np.int16, prep=Preprocessing(bin=2, pad=1, multiplier=3.0,
                                                                           shift=(1.0, 0.0)))
    ref = PatternSource(dataset=counts, dtype=np.float64, prep=src.prep)
    try:
        got = src.batch(np.arange(16))
        assert got.dtype == np.int16
        np.testing.assert_array_equal(got, ref.batch(np.arange(16)))
    finally:
        src.close()
        ref.close()


def test_create_dataset_integer_rounding_warns_with_the_change(tmp_path, data):
    with pytest.warns(UserWarning, match=r"largest change 0\.\d+"):
        ini.create_dataset(data, tmp_path / "r.h5", dtype="int16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ini.create_dataset(np.round(data), tmp_path / "w.h5", dtype="int16")  # whole numbers: no warning


# ============================================================== 7: errors name the file or parameter
def _garbage(tmp_path, name, payload=b"not a data file " * 8):
    path = tmp_path / name
    path.write_bytes(payload)
    return path


def test_unreadable_files_name_data_path(tmp_path):
    cases = [_garbage(tmp_path, "garbage.h5"), _garbage(tmp_path, "garbage.npy")]
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    cases.append(tmp_path / "objects.npy")
    np.save(tmp_path / "whole.npy", np.ones((16, K, K)))
    cases.append(_garbage(tmp_path, "truncated.npy", (tmp_path / "whole.npy").read_bytes()[:600]))
    (tmp_path / "folder.h5").mkdir()
    cases.append(tmp_path / "folder.h5")
    with h5py.File(tmp_path / "group.h5", "w") as f:
        f.create_group("data")
    cases.append(tmp_path / "group.h5")
    with h5py.File(tmp_path / "dangling.h5", "w") as f:
        f["data"] = h5py.SoftLink("/nothing")
    cases.append(tmp_path / "dangling.h5")
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f.create_dataset("data", shape=(0, K, K), dtype="f4")
    cases.append(tmp_path / "empty.h5")
    with h5py.File(tmp_path / "text.h5", "w") as f:
        f["data"] = np.array([b"ab"] * 4)
    cases.append(tmp_path / "text.h5")
    for path in cases:
        refused(DataError, "data_path", str(path), fn=lambda: PatternSource(str(path)))
        refused(DataError, "data_path", str(path), fn=lambda: SignalSource(str(path)))


def test_damaged_chunk_names_the_file_and_the_patterns(tmp_path, data):
    path = tmp_path / "damaged.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data, chunks=(4, K, K), compression="gzip")
    with h5py.File(path, "r") as f:
        info = f["data"].id.get_chunk_info(2)  # patterns 8..11
    raw = bytearray(path.read_bytes())
    raw[info.byte_offset:info.byte_offset + info.size] = b"\xff" * info.size
    path.write_bytes(bytes(raw))
    refused(DataError, "data_path", str(path), "8..", fn=lambda: PatternSource(str(path), check_chunk=4))
    refused(DatasetError, str(path), fn=lambda: ini.create_dataset(path, tmp_path / "out.h5", chunk_size=4))
    assert not (tmp_path / "out.h5").exists()


def test_create_dataset_errors_name_the_argument(tmp_path, data):
    for name in ("garbage.h5", "garbage.npy"):
        path = _garbage(tmp_path, name)
        refused(DatasetError, str(path), fn=lambda: ini.create_dataset(path, tmp_path / "o.h5"))
    with h5py.File(tmp_path / "dangling.h5", "w") as f:
        f["data"] = h5py.SoftLink("/nothing")
    refused(DatasetError, "dataset_path", fn=lambda: ini.create_dataset(tmp_path / "dangling.h5", tmp_path / "o.h5"))
    blocker = _garbage(tmp_path, "a_file")
    refused(DatasetError, "output_path", fn=lambda: ini.create_dataset(data, blocker / "sub" / "o.h5"))
    refused(DatasetError, "scan_shape", fn=lambda: ini.create_dataset(data, tmp_path / "o.h5", scan_shape=5))
    refused(DatasetError, "extra_attrs['bad']",
            fn=lambda: ini.create_dataset(data, tmp_path / "o.h5", extra_attrs={"bad": object()}))
    assert not (tmp_path / "o.h5").exists()
    refused(DatasetError, "holds no patterns", fn=lambda: ini.create_dataset(np.ones((0, 4, 4)), tmp_path / "o.h5"))


def test_probe_helpers_name_the_argument(small_host):
    refused(PyptyParameterError, "parameter 'shape_yx'", "GiB", fn=lambda: make_probe((10**5, 10**5), 1.0, 200, 20))
    refused(PyptyParameterError, "parameter 'semiangle_mrad'", fn=lambda: make_probe((8, 8), 1.0, 200, 0))
    refused(PyptyParameterError, "parameter 'n_modes'", fn=lambda: make_probe((8, 8), 1.0, 200, 20, n_modes=0))
    refused(PyptyParameterError, "parameter 'n_hermite_probe_modes'", fn=lambda: hermite_modes(np.ones((8, 8)), 3))


# ============================================================== 8: HDF5 data kept in other files
def _target(tmp_path, data):
    path = tmp_path / "target.h5"
    with h5py.File(path, "w") as f:
        f["data"] = data
    return path


def _external_files(tmp_path, data):
    """{kind: path} of files whose 'data' reads another file."""
    target = _target(tmp_path, data)
    out = {}
    with h5py.File(tmp_path / "link.h5", "w") as f:
        f["data"] = h5py.ExternalLink(str(target), "data")
    out["external link"] = tmp_path / "link.h5"
    with h5py.File(tmp_path / "soft_to_link.h5", "w") as f:
        f["g"] = h5py.ExternalLink(str(target), "/")
        f["data"] = h5py.SoftLink("/g/data")
    out["soft link through an external link"] = tmp_path / "soft_to_link.h5"
    raw = tmp_path / "values.bin"
    data.astype("<f8").tofile(raw)
    with h5py.File(tmp_path / "storage.h5", "w") as f:
        f.create_dataset("data", shape=data.shape, dtype="<f8", external=[(str(raw), 0, data.nbytes)])
    out["external storage"] = tmp_path / "storage.h5"
    layout = h5py.VirtualLayout(shape=data.shape, dtype="f8")
    layout[:] = h5py.VirtualSource(str(target), "data", shape=data.shape)
    with h5py.File(tmp_path / "virtual.h5", "w") as f:
        f.create_virtual_dataset("data", layout)
    out["virtual dataset"] = tmp_path / "virtual.h5"
    return out


def test_hdf5_data_in_other_files_refused_unless_allowed(tmp_path, data):
    for kind, path in _external_files(tmp_path, data).items():
        refused(DataError, "data_path", str(path), "allow_external_hdf5", fn=lambda: PatternSource(str(path)))
        p = validate(dict(data_path=str(path), positions=grid(), probe=np.ones((K, K, 1), complex)))
        refused(DataError, str(path), "allow_external_hdf5", fn=lambda: build_setup(p, get_backend("numpy")))
        refused(DatasetError, str(path), "allow_external_hdf5",
                fn=lambda: ini.create_dataset(path, tmp_path / "o.h5", overwrite=True))
        src = PatternSource(str(path), allow_external_hdf5=True)
        try:
            np.testing.assert_allclose(src.mean_pattern(), data.mean(axis=0), err_msg=kind)
        finally:
            src.close()
        out = ini.create_dataset(path, tmp_path / "o.h5", allow_external_hdf5=True, overwrite=True)
        with h5py.File(out, "r") as f:
            np.testing.assert_allclose(f["data"][...], data, rtol=1e-6, err_msg=kind)


def test_local_links_and_local_virtual_datasets_are_fine(tmp_path, data):
    with h5py.File(tmp_path / "local.h5", "w") as f:
        f["raw/frames"] = data
        f["data"] = h5py.SoftLink("/raw/frames")
    src = PatternSource(str(tmp_path / "local.h5"))
    src.close()
    layout = h5py.VirtualLayout(shape=data.shape, dtype="f8")
    layout[:] = h5py.VirtualSource(".", "frames", shape=data.shape)
    with h5py.File(tmp_path / "vlocal.h5", "w") as f:
        f["frames"] = data
        f.create_virtual_dataset("data", layout)
    src = PatternSource(str(tmp_path / "vlocal.h5"))
    src.close()


# ============================================================== 8: saved lambdas
def test_saved_lambda_keeps_only_the_expression():
    secret = "hunter2"
    params = dict(update_obj=lambda epoch: epoch > 3, token=secret, other=lambda e: (lambda q: q)(e) * 2)  # note
    two = {"multi": lambda epoch: (epoch
                                   + 1),
           "n": 5}

    def schedule(epoch):
        return 0.5

    out = to_jsonable(dict(a=params["update_obj"], b=params["other"], c=two["multi"], d=schedule,
                           e=eval("lambda x: x"), f=max))
    assert out["a"] == "lambda epoch: epoch > 3"
    assert out["b"] == "lambda e: (lambda q: q)(e) * 2"
    assert out["c"].startswith("lambda epoch: (epoch") and out["c"].endswith("+ 1)") and "multi" not in out["c"]
    assert out["d"].startswith("def schedule(epoch):") and "return 0.5" in out["d"]
    assert out["e"].startswith("<function <lambda>")  # no source: the repr
    assert "max" in out["f"]
    for text in out.values():
        assert "hunter2" not in text and "secret" not in text and "note" not in text
