"""Distributed runs under ``mpiexec`` against the one-process run of the same reconstruction.

Every test starts subprocesses (``tests/distributed/mpi_script.py``); they
are skipped where mpi4py or an ``mpiexec`` is missing.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mpi4py")

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "mpi_script.py")
REPO = os.path.dirname(os.path.dirname(HERE))
TIMEOUT = 120


def _mpiexec():
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return local if os.path.exists(local) else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (install the 'mpi' extra)")


def _env(**extra):
    env = dict(os.environ)
    for k in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PYPTY_MPI"):
        env.pop(k, None)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYPTY_FFT_WORKERS="1")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _launcher(n):
    cmd = [MPIEXEC, "-n", str(n)]
    try:
        if "Open MPI" in subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True, timeout=20).stdout:
            cmd.append("--oversubscribe")
    except (OSError, subprocess.SubprocessError):
        pass
    return cmd


def run_script(out, case, n=0, restart="", **env):
    """Run the script with n MPI ranks (n = 0: one plain process); returns the CompletedProcess."""
    os.makedirs(out, exist_ok=True)
    args = [sys.executable] + (["-m", "mpi4py"] if n else []) + [SCRIPT, str(out), case]
    args += [restart] if restart else []
    cmd = (_launcher(n) if n else []) + args
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=_env(**env), cwd=str(out))


def load(out, rank):
    return dict(np.load(os.path.join(out, f"rank{rank}.npz")))


def check_against_serial(ref, ranks):
    """Loss history and arrays within 1e-10 (relative) of the one-process run; ranks bit-identical."""
    r0 = ranks[0]
    arrays = ("obj", "probe", "positions") + (("beam_current",) if ref["beam_current"].size else ())
    for other in ranks[1:]:
        for k in arrays + ("loss",):
            assert np.array_equal(r0[k], other[k]), f"ranks differ in {k}"
    assert r0["loss"].shape == ref["loss"].shape
    np.testing.assert_allclose(r0["loss"], ref["loss"], rtol=1e-10, atol=0)
    for k in arrays:
        scale = np.max(np.abs(ref[k]))
        assert np.max(np.abs(r0[k] - ref[k])) <= 1e-10 * scale, k
    assert not np.array_equal(ref["positions"], ref["positions"][0])  # positions were refined (not a dull test)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = {}
    for case in ("basic", "terms"):
        d = tmp_path_factory.mktemp(f"serial_{case}")
        res = run_script(d, case)
        assert res.returncode == 0, res.stderr[-3000:]
        out[case] = load(d, 0)
    assert np.all(np.diff(out["terms"]["loss"]) != 0)
    return out


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    d = tmp_path_factory.mktemp("mpi2")
    res = run_script(d, "basic", n=2)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return d


def test_two_ranks_match_one_process(serial, two_ranks):
    ranks = [load(two_ranks, r) for r in range(2)]
    check_against_serial(serial["basic"], ranks)
    # only rank 0 wrote; every rank returns rank 0's results file
    run = os.path.join(two_ranks, "run")
    assert {"params.json", "loss.csv", "results.h5", "co.npy"} <= set(os.listdir(run))
    assert str(ranks[1]["results_file"]) == os.path.join(run, "results.h5")
    assert json.load(open(os.path.join(run, "params.json")))["mpi_ranks"] == 2


@pytest.mark.parametrize("case", ["basic", "terms"])
def test_three_ranks_uneven_shards(serial, tmp_path, case):
    # 25 patterns over 3 ranks: shards of 9, 8, 8; "terms": see mpi_script.params
    res = run_script(tmp_path, case, n=3)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    check_against_serial(serial[case], [load(tmp_path, r) for r in range(3)])


def test_device_path_with_the_strict_stand_in(serial, tmp_path):
    """The GPU branches (buffer packed on the device, explicit copies to and from the host) on the CPU stand-in."""
    res = run_script(tmp_path, "terms", n=3, PYPTY_DEVICE="strict")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    check_against_serial(serial["terms"], [load(tmp_path, r) for r in range(3)])


def test_fault_on_one_rank_then_restart(two_ranks, tmp_path):
    fault = tmp_path / "fault"
    # rank 1 raises in its 6th loss evaluation (epoch 3): both ranks must raise the same error after the collective
    res = run_script(fault, "fault", n=2, PYPTY_TEST_FAULT_RANK="1", PYPTY_TEST_FAULT_AT="6")
    assert res.returncode != 0
    errors = [open(fault / f"error{r}.txt").read() for r in range(2)]
    assert errors[0] == errors[1], errors
    assert errors[0].startswith("DistributedError: rank 1 of 2 failed during a loss evaluation")
    assert "injected fault in the loss evaluation" in errors[0]
    run = fault / "run"
    assert {"results.h5", "co.npy", "cp.npy", "cg.npy"} <= set(os.listdir(run))
    from pypty.output.results import load_results

    saved = load_results(str(run / "results.h5"))
    assert saved["attrs"]["epochs_done"] == 2 and saved["attrs"]["status"] == "interrupted"
    # restart_from resumes the interrupted run: the same bits as the uninterrupted run with the same ranks
    again = tmp_path / "again"
    res = run_script(again, "basic", n=2, restart=str(run))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    full, resumed = load(two_ranks, 0), [load(again, r) for r in range(2)]
    np.testing.assert_array_equal(resumed[0]["loss"], full["loss"][2:])
    for k in ("obj", "probe", "positions"):
        np.testing.assert_array_equal(resumed[0][k], full[k])
        np.testing.assert_array_equal(resumed[1][k], full[k])


@pytest.mark.parametrize("case, name", [("signal", "SIGTERM"), ("sigint", "SIGINT")])
def test_stop_signal_on_one_rank_stops_every_rank_together(tmp_path, case, name):
    """SIGTERM or SIGINT on rank 1 only (deferred to the next reduction): both ranks stop, rank 0 saves."""
    res = run_script(tmp_path, case, n=2)
    assert res.returncode != 0
    errors = [open(tmp_path / f"error{r}.txt").read() for r in range(2)]
    assert errors[0] == errors[1] == f"RunInterrupted: pypty run stopped by {name}", errors
    from pypty.output.results import load_results

    saved = load_results(str(tmp_path / "run" / "results.h5"))
    assert saved["attrs"]["status"] == "interrupted" and 1 <= saved["attrs"]["epochs_done"] < 8


def test_bad_data_in_one_shard_is_reported_on_every_rank(tmp_path):
    res = run_script(tmp_path, "badshard", n=2)
    assert res.returncode != 0
    errors = [open(tmp_path / f"error{r}.txt").read() for r in range(2)]
    assert errors[0] == errors[1], errors
    assert errors[0].startswith("DistributedError: rank 1 of 2 failed during reading the data: DataError:")
    assert "NaN" in errors[0]
    assert not os.path.exists(tmp_path / "run" / "results.h5")


def test_diverged_ranks_are_stopped_by_the_checksum(tmp_path):
    res = run_script(tmp_path, "diverge", n=2)
    assert res.returncode != 0
    errors = [open(tmp_path / f"error{r}.txt").read() for r in range(2)]
    assert errors[0] == errors[1], errors
    assert errors[0].startswith("DistributedError: the parameters of the ranks diverged after epoch 5: rank(s) [1] "
                                "differ from rank 0 in ['obj']"), errors[0]


def test_cli_launch(tmp_path):
    """``mpiexec -n 2 python -m mpi4py -m pypty run params.json``: one summary (rank 0), one results file.

    No probe is given: it is built from the mean pattern, which the ranks reduce from their shards.
    """
    sys.path.insert(0, os.path.dirname(HERE))
    from synthetic import dataset

    _, _, pos, data = dataset(4, 3.0, 36, seed=2)
    np.save(tmp_path / "data.npy", data)
    params = {"data_path": "data.npy", "positions": pos.tolist(), "acc_voltage": 200.0, "pixel_size_x_A": 0.4,
              "pixel_size_y_A": 0.4, "epoch_max": 3, "print_flag": 1, "compute_batch": 4, "output_folder": "out",
              "default_dtype": "double"}
    with open(tmp_path / "params.json", "w") as f:
        json.dump(params, f)
    summaries = {}
    for n in (0, 2):
        cmd = (_launcher(n) + [sys.executable, "-m", "mpi4py"] if n else [sys.executable]) + \
            ["-m", "pypty", "run", "params.json"]
        shutil.rmtree(tmp_path / "out", ignore_errors=True)
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=_env(), cwd=str(tmp_path))
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        assert res.stdout.count("final_loss") == 1, res.stdout  # rank 0 alone prints the summary
        summaries[n] = json.loads(res.stdout[res.stdout.index("{"):])
        assert os.path.exists(tmp_path / "out" / "results.h5")
    assert summaries[2]["epochs"] == 3
    for k in ("first_loss", "final_loss"):
        assert summaries[2][k] == pytest.approx(summaries[0][k], rel=1e-10)
