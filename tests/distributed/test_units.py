"""Sharding, the flat buffer, the serial communicator, detection and the sharded data source (no MPI needed)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from pypty.data import PatternSource, Preprocessing
from pypty.distributed import comm as C
from pypty.distributed.shard import BufferLayout, filter_sequence, pack, shard_bounds, shard_of, unpack


@pytest.mark.parametrize("n,size", [(10, 3), (25, 3), (7, 2), (2, 3), (0, 2), (12, 4), (5, 1)])
def test_shard_bounds_cover_all_patterns_once(n, size):
    bounds = [shard_bounds(n, size, r) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    for (a, b), (c, _) in zip(bounds, bounds[1:]):
        assert b == c  # contiguous, in rank order
    counts = [b - a for a, b in bounds]
    assert max(counts) - min(counts) <= 1 and counts == sorted(counts, reverse=True)
    owner = shard_of(n, size)
    assert np.array_equal(np.bincount(owner, minlength=size), counts)


def test_shard_bounds_uneven_example_and_errors():
    assert [shard_bounds(10, 3, r) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]
    with pytest.raises(ValueError):
        shard_bounds(10, 3, 3)
    with pytest.raises(ValueError):
        shard_bounds(10, 0, 0)


def test_filter_sequence_keeps_order_and_repeats():
    seq = np.array([9, 0, 3, 3, 7, 4, 12])
    assert filter_sequence(seq, 3, 8).tolist() == [3, 3, 7, 4]
    parts = [filter_sequence(seq, *shard_bounds(13, 3, r)) for r in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == sorted(seq.tolist())  # every entry once, repeats kept


def test_buffer_round_trip_all_dtypes():
    rng = np.random.default_rng(0)
    grads = {"obj": (rng.normal(size=(2, 3, 4)) + 1j * rng.normal(size=(2, 3, 4))).astype(np.complex64),
             "probe": rng.normal(size=(1, 5)) + 1j * rng.normal(size=(1, 5)),
             "positions": rng.normal(size=(6, 2)),
             "beam_current": rng.normal(size=6).astype(np.float32)}
    layout = BufferLayout([(k, v.shape, v.dtype) for k, v in grads.items()])
    assert layout.size == 2 + 2 * 24 + 2 * 5 + 12 + 6
    buf = pack(np, layout, 3.5, 0.0, grads)
    assert buf.dtype == np.float64 and buf.shape == (layout.size,)
    loss, err, back = unpack(np, layout, buf)
    assert (loss, err) == (3.5, 0.0)
    for k, v in grads.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)
    failed = pack(np, layout, 0.0, 1.0, None)  # a failing rank: same size, flag set, zeros
    assert failed.shape == buf.shape and failed[1] == 1.0 and not failed[2:].any()
    with pytest.raises(ValueError, match="shape"):
        pack(np, layout, 0.0, 0.0, dict(grads, positions=np.zeros((5, 2))))


def test_serial_comm_is_the_identity():
    comm = C.SerialComm()
    assert (comm.size, comm.rank, comm.is_root, comm.distributed) == (1, 0, True, False)
    assert comm.shard(17) == (0, 17)
    g = {"obj": np.ones(3)}
    out = comm.evaluate(np, None, None, [("obj", (3,), np.float64)], lambda: (2.0, g))
    assert out[0] == 2.0 and out[1] is g  # nothing packed or copied
    a = np.arange(4.0)
    assert comm.allsum(a) is a and comm.agree(lambda: 5) == 5 and comm.allgather(1) == [1]

    def boom():
        raise KeyError("x")

    with pytest.raises(KeyError):  # serial errors keep their own type
        comm.evaluate(np, None, None, [], boom)
    with pytest.raises(KeyError):
        comm.agree(boom)
    comm.check_replicated(np, g)
    assert C.resolve(comm) is comm
    with pytest.raises(TypeError):
        C.resolve(42)


def test_checksum_sees_one_bit():
    a = np.linspace(0, 1, 101)
    b = a.copy()
    b[50] = np.nextafter(b[50], 2.0)
    assert C.checksum(np, {"a": a}) != C.checksum(np, {"a": b})
    assert C.checksum(np, {"a": a, "z": None}) == C.checksum(np, {"a": a.copy()})


def test_detection_off_without_launcher(monkeypatch):
    for k in C.SIZE_VARIABLES + ("PMIX_RANK",):
        monkeypatch.delenv(k, raising=False)
    if "mpi4py.MPI" not in sys.modules:
        assert isinstance(C.detect(), C.SerialComm)
    monkeypatch.setenv("PMI_SIZE", "1")
    if "mpi4py.MPI" not in sys.modules:
        assert isinstance(C.detect(), C.SerialComm)
    monkeypatch.setenv("PYPTY_MPI", "0")
    monkeypatch.setenv("PMI_SIZE", "4")
    assert isinstance(C.detect(), C.SerialComm)


def test_importing_pypty_does_not_import_mpi4py():
    code = ("import sys, pypty, pypty.iterative, pypty.cli, pypty.distributed; "
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'")
    env = {k: v for k, v in os.environ.items() if k not in C.SIZE_VARIABLES + ("PMIX_RANK",)}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=env)


def test_fft_workers_and_engine(monkeypatch):
    monkeypatch.delenv(C.WORKERS_ENV, raising=False)
    monkeypatch.delenv("PYPTY_FFT", raising=False)
    serial = C.SerialComm()
    assert C.fft_workers(serial) is None and C.fft_engine(serial) is None

    class Two(C.SerialComm):
        distributed, size, local_size = True, 2, 2

    assert C.fft_workers(Two()) == max(1, (os.cpu_count() or 1) // 2)
    assert C.fft_engine(Two()) in ("ducc0", "scipy")  # never timed FFTW plans unless asked for
    monkeypatch.setenv("PYPTY_FFT", "scipy")
    assert C.fft_engine(Two()) == "scipy"
    monkeypatch.setenv(C.WORKERS_ENV, "3")
    assert C.fft_workers(serial) == 3
    monkeypatch.setenv(C.WORKERS_ENV, "zero")
    with pytest.raises(ValueError, match=C.WORKERS_ENV):
        C.fft_workers(serial)


def test_pattern_source_shard_reads_only_its_rows():
    rng = np.random.default_rng(1)
    data = rng.poisson(5.0, size=(10, 6, 6)).astype(float)
    prep = Preprocessing(pad=1)
    whole = PatternSource(dataset=data, prep=prep)
    parts = [PatternSource(dataset=data, prep=prep, rows=shard_bounds(10, 3, r)) for r in range(3)]
    assert [p.n_local for p in parts] == [4, 3, 3] and all(p.n == 10 for p in parts)
    assert parts[1].preprocessed().shape == (3, 8, 8)
    np.testing.assert_array_equal(parts[1].batch([6, 4, 4]), whole.batch([6, 4, 4]))
    out = np.empty((2, 8, 8))
    np.testing.assert_array_equal(parts[2].batch_into([9, 7], out), whole.batch([9, 7]))
    assert all(p.foreign_reads == 0 for p in parts)
    assert parts[1].preprocessed_rows == 1 + 3  # the sizing pattern and its own rows, never the others
    # a pattern of another shard (the patterns figure of rank 0) is read on the fly
    np.testing.assert_array_equal(parts[0].batch([0, 9]), whole.batch([0, 9]))
    assert parts[0].foreign_reads == 2
    total = sum(p.pattern_sum() for p in parts)
    np.testing.assert_allclose(total / 10, whole.mean_pattern(), rtol=1e-14)
    with pytest.raises(ValueError):
        PatternSource(dataset=data, prep=prep, rows=(4, 11))


def test_bad_values_are_checked_in_the_own_shard_only():
    from pypty.data import DataError

    data = np.ones((6, 4, 4))
    data[5, 0, 0] = np.nan
    PatternSource(dataset=data, rows=(0, 3))  # rank 0's shard is clean
    with pytest.raises(DataError, match="NaN"):
        PatternSource(dataset=data, rows=(3, 6))
