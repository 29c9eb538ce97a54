"""The preprocessed-once data path (issue 11 part 4): same bits as per-batch preprocessing, preprocessing once per run.

The reference of every comparison is the per-batch path of earlier versions,
written out here: ``ifftshift(preprocess(raw[idx]))`` for each batch.
"""
import os
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

import pypty.iterative
from pypty.backend import get_backend
from pypty.data import memory
from pypty.data import sources
from pypty.data.sources import DeviceBatches, PatternSource, Preprocessing, SignalSource, make_get_data, preprocess
from synthetic import base_params, default_probe, phase_object, raster, simulate, WIN

PREPS = {
    "none": Preprocessing(),
    "bin2": Preprocessing(bin=2),
    "bin4": Preprocessing(bin=4),
    "pad3": Preprocessing(pad=3),
    "flip": Preprocessing(flip_ky=True),
    "shift_int": Preprocessing(shift=(2.0, -1.0)),
    "shift_subpx": Preprocessing(shift=(0.37, -1.61)),
    "multiplier": Preprocessing(multiplier=1.7),
    "all": Preprocessing(multiplier=0.9, pad=2, bin=2, flip_ky=True, shift=(-0.25, 0.6)),
}


@pytest.fixture(scope="module")
def raw():
    rng = np.random.default_rng(5)
    return (rng.random((37, 16, 16)) * 50).astype(np.float32)  # non-integer counts: rounding order matters


def _reference(raw, idx, prep, dtype):
    return np.fft.ifftshift(preprocess(np.asarray(raw)[np.asarray(idx)], prep, dtype), axes=(1, 2))


def _open(kind, raw, tmp_path, **kw):
    if kind == "array":
        return PatternSource(dataset=raw, **kw)
    if kind == "npy":
        path = tmp_path / "d.npy"
        np.save(path, raw)
    else:
        path = tmp_path / "d.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("data", data=raw, chunks=(8, 16, 16), compression="gzip")
    return PatternSource(str(path), **kw)


def _batches(n, size, seed):
    order = np.random.default_rng(seed).permutation(n)
    return [order[i:i + size] for i in range(0, n, size)]


@pytest.mark.parametrize("name", sorted(PREPS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunk_rows", [1, 7, None])  # about that many rows per build step (None: default)
def test_preprocessed_once_equals_per_batch_bit_for_bit(raw, tmp_path, monkeypatch, name, dtype, chunk_rows):
    prep = PREPS[name]
    if chunk_rows is not None:
        monkeypatch.setattr(sources, "BUILD_CHUNK_BYTES", chunk_rows * raw[0].size * 8 * 2)
    for kind in ("array", "npy", "h5"):
        for one in (True, False):
            src = _open(kind, raw, tmp_path, prep=prep, dtype=dtype, load_one_by_one=one)
            try:
                for size in (1, 5, 37):
                    for bidx in _batches(src.n, size, seed=size):
                        got = src.batch(bidx)
                        ref = _reference(raw, bidx, prep, dtype)
                        assert got.dtype == np.dtype(dtype)
                        assert np.array_equal(got, ref), (kind, one, size)
                        assert np.array_equal(src._read(bidx), ref)  # the per-batch path, kept for reference
            finally:
                src.close()


@pytest.mark.parametrize("name", ["none", "all"])
def test_file_copy_equals_memory_copy_and_leaves_no_file(raw, tmp_path, name):
    tmp = tmp_path / "scratch"
    tmp.mkdir()
    mem = PatternSource(dataset=raw, prep=PREPS[name], host_copy="memory")
    fil = PatternSource(dataset=raw, prep=PREPS[name], host_copy="file", tmp_dir=str(tmp))
    idx = np.arange(raw.shape[0])[::-1]
    assert np.array_equal(mem.batch(idx), fil.batch(idx))
    assert mem.copy_location == "memory" and fil.copy_location == "file"
    assert isinstance(fil.preprocessed(), np.memmap)
    assert os.listdir(tmp) == []  # unlinked at once: nothing left behind, even after a crash
    np.testing.assert_array_equal(mem.mean_pattern(), fil.mean_pattern())


def test_auto_copy_goes_to_a_file_when_host_memory_is_short(raw, monkeypatch, tmp_path):
    src = PatternSource(dataset=raw, tmp_dir=str(tmp_path))
    monkeypatch.setattr(memory, "host_memory_bytes", lambda: 2 * src.nbytes - 1)  # copy > HOST_COPY_FRACTION
    src.batch([0])
    assert src.copy_location == "file"
    src2 = PatternSource(dataset=raw)
    monkeypatch.setattr(memory, "host_memory_bytes", lambda: 2 * src2.nbytes)
    src2.batch([0])
    assert src2.copy_location == "memory"
    assert memory.host_copy_fits(50, available=100) and not memory.host_copy_fits(51, available=100)


def test_host_copy_option_checked():
    with pytest.raises(ValueError, match="host_copy"):
        PatternSource(dataset=np.ones((2, 4, 4)), host_copy="gpu")


class _Counter:
    """Wraps sources.preprocess and counts the patterns it is given."""

    def __init__(self):
        self.rows = 0
        self.calls = 0

    def __call__(self, patterns, prep, dtype=np.float64):
        self.calls += 1
        self.rows += len(patterns)
        return preprocess(patterns, prep, dtype)


@pytest.mark.parametrize("one", [True, False])
def test_preprocessing_runs_once_per_source(raw, tmp_path, monkeypatch, one):
    count = _Counter()
    monkeypatch.setattr(sources, "preprocess", count)
    src = _open("h5", raw, tmp_path, prep=PREPS["all"], load_one_by_one=one)
    n = src.n
    assert count.rows == 1 + (0 if one else n)  # one pattern sizes the output
    src.mean_pattern()
    src.mean_total_counts()
    for _epoch in range(3):  # epochs, line-search trials: no preprocessing
        for bidx in _batches(n, 6, seed=_epoch):
            src.batch(bidx)
    assert count.rows == 1 + n
    assert src.preprocessed_rows == 1 + n
    src.close()


def test_preprocessing_runs_once_per_run(monkeypatch, tmp_path):
    """Through ``run``: a file with a sub-pixel shift and padding, 4 epochs of L-BFGS with line searches."""
    pos = raster(4, 2.0)
    obj = phase_object((WIN + 8, WIN + 8), seed=3)
    data = simulate(obj, default_probe(), pos)
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f["data"] = data
    count = _Counter()
    monkeypatch.setattr(sources, "preprocess", count)
    p = base_params(None, pos, default_probe(), data_path=str(path), epoch_max=4, data_shift_vector=[0.3, -0.2],
                    load_one_by_one=True, compute_batch=5)
    res = pypty.iterative.run(p)
    assert len(res["loss"]) == 4 and np.all(np.isfinite(res["loss"]))
    assert count.rows == len(data) + 1, count.rows


def test_device_batches_numpy_backend(raw):
    bk = get_backend("numpy")
    src = PatternSource(dataset=raw, prep=PREPS["all"])
    get, why = make_get_data(bk, src, load_one_by_one=False)
    assert isinstance(get, DeviceBatches) and not get.on_device and get.device_bytes == 0
    assert "host copy" in why
    for bidx in _batches(src.n, 4, seed=0):
        a = get(bidx)
        assert np.array_equal(a, _reference(raw, bidx, PREPS["all"], np.float64))
        a[...] = -1  # the caller may modify what it gets
    assert np.array_equal(get([3]), _reference(raw, [3], PREPS["all"], np.float64))


def _fake_gpu():
    """A backend that says it is a GPU but computes with NumPy (the device-resident path has no CuPy call)."""
    return SimpleNamespace(is_gpu=True, xp=np, name="fake-gpu", asarray=lambda a, dtype=None: np.array(a, dtype=dtype))


def test_device_resident_path_and_index_cache(raw):
    bk = _fake_gpu()
    src = PatternSource(dataset=raw, prep=PREPS["shift_subpx"])
    get = DeviceBatches(bk, src, keep_on_device=True)
    assert get.on_device and get.device_bytes == src.nbytes
    batches = _batches(src.n, 8, seed=1)
    for _epoch in range(2):
        for bidx in batches:
            assert np.array_equal(get(bidx), _reference(raw, bidx, PREPS["shift_subpx"], np.float64))
    assert len(get._dev_idx) == len(batches)  # index arrays crossed once, not once per epoch


def test_place_data_rules():
    gpu = _fake_gpu()
    cpu = get_backend("numpy")
    assert memory.place_data(cpu, 10, False)[0] is False
    assert memory.place_data(gpu, 10, True, free_bytes=10**9)[0] is False  # load_one_by_one: streamed
    ok, why = memory.place_data(gpu, 100, False, 1.0, working_bytes=0, free_bytes=int(100 * memory.SAFETY))
    assert ok and "device memory" in why
    ok, why = memory.place_data(gpu, 100, False, 0.5, working_bytes=0, free_bytes=int(100 * memory.SAFETY))
    assert not ok and "streamed" in why


def test_signal_source_through_device_batches():
    sig = np.random.default_rng(0).random((9, 3))
    src = SignalSource(dataset=sig)
    get = DeviceBatches(get_backend("numpy"), src)
    np.testing.assert_array_equal(get([4, 1]), sig[[4, 1]])
    out = np.empty((2, 3))
    np.testing.assert_array_equal(src.batch_into([4, 1], out), sig[[4, 1]])
    assert src.nbytes == sig.nbytes


def test_gpu_memory_estimate_counts_the_prefetch():
    cpu = memory.bytes_per_pattern((32, 32), 2, 1, 1, np.complex64)
    gpu = memory.bytes_per_pattern((32, 32), 2, 1, 1, np.complex64, gpu=True)
    assert gpu - cpu == 32 * 32 * (memory.GPU_SCATTER_BYTES_PER_PX + 8)
    p = {"compute_batch": "auto", "hist_length": 10, "memory_saturation": 0.7}
    b_gpu = memory.resolve_compute_batch(p, _fake_gpu(), 10**6, (32, 32), (200, 200), 2, 1, 1,
                                         np.complex64, free_bytes=2**30)[0]
    fixed = memory.fixed_bytes((200, 200), (32, 32), 2, 1, 1, 10**6, np.complex64, 10)
    assert b_gpu == memory.auto_compute_batch(2**30, gpu, fixed, 0.7, 10**6) < \
        memory.auto_compute_batch(2**30, cpu, fixed, 0.7, 10**6)
