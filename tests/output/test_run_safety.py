"""Run safety (issue 15, classes 2 and 3): folder claims, stop signals, restart points, loss.csv, write errors.

Child processes run the reconstructions that must be started together,
signalled or killed; they use the same small dataset as the parent, so the
parent can compare with an uninterrupted run.
"""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import pypty.iterative
from pypty.engine.interrupts import RunInterrupted, stop_signals
from pypty.output.atomic import OutputWriteError, host_tag, remove_stale_temporaries
from pypty.output.folders import CLAIM_NAME, FolderBusyError, claim_folder
from pypty.results import load_results, params_from_results, write_results
from synthetic import base_params, dataset

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TESTS)
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, TESTS, os.environ.get("PYTHONPATH", "")]),
       "PYPTY_FORCE_CPU": "1"}
QUIET = dict(save_figures=())
ARRAYS = ("obj", "probe", "positions")

# prologue of every child: the parent's dataset and a quiet run() with keyword overrides
_PROLOGUE = """
import json, os, signal, sys, time
import numpy as np
import pypty.iterative
from synthetic import base_params, dataset
_, probe, pos, data = dataset(4, 3.0, 44, seed=1)
def run(**kw):
    return pypty.iterative.run(base_params(data, pos, probe, save_figures=(), **kw))
"""


@pytest.fixture(scope="module")
def small():
    _, probe, pos, data = dataset(4, 3.0, 44, seed=1)
    return pos, probe, data


def _run(small, **kw):
    pos, probe, data = small
    return pypty.iterative.run({**base_params(data, pos, probe, **QUIET), **kw})


def _child(body, *args, **popen):
    code = _PROLOGUE + textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def _epochs_csv(folder):
    with open(os.path.join(folder, "loss.csv"), newline="") as fh:
        return [int(r["epoch"]) for r in csv.DictReader(fh)]


def _wait_for(cond, timeout=60.0, what=""):
    t = time.time()
    while not cond():
        if time.time() - t > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _state(folder):
    """Every file below ``folder``: (size, mtime_ns, inode)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            st = os.stat(os.path.join(root, name))
            out[os.path.relpath(os.path.join(root, name), folder)] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ============================================================================ class 2: two runs, one folder
_TOGETHER = """
folder, go, tag, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.0005)
try:
    res = run(epoch_max=n, output_folder=folder, provenance_note=tag)
    print(json.dumps({"tag": tag, "ok": True, "loss": res["loss"]}), flush=True)
except FileExistsError as exc:
    print(json.dumps({"tag": tag, "ok": False, "error": type(exc).__name__, "msg": str(exc)}), flush=True)
"""


@pytest.mark.parametrize("order", ["AB", "BA"])
def test_two_runs_started_together_exactly_one_proceeds(small, tmp_path, order):
    folder, go = str(tmp_path / "run"), str(tmp_path / "go")
    epochs = {"A": 3, "B": 5}
    procs = {t: _child(_TOGETHER, folder, go, t, epochs[t]) for t in order}
    for p in procs.values():
        assert p.stdout.readline().strip() == "ready"
    open(go, "w").close()
    outs = {}
    for t, p in procs.items():
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        outs[t] = json.loads(stdout.strip().splitlines()[-1])
    winners = [t for t in outs if outs[t]["ok"]]
    assert len(winners) == 1, outs
    win = winners[0]
    lose = "B" if win == "A" else "A"
    assert outs[lose]["error"] in ("FolderBusyError", "FileExistsError") and folder in outs[lose]["msg"]
    # every file is the winner's: nothing of the refused run was written, nothing of the winner replaced
    res = load_results(folder)
    assert res["attrs"]["epochs_done"] == epochs[win] and res["attrs"]["status"] == "final"
    assert res["provenance"]["object"][-1]["note"] == win
    assert list(res["loss"]["loss"]) == outs[win]["loss"]
    assert _epochs_csv(folder) == list(range(1, epochs[win] + 1))
    assert json.load(open(os.path.join(folder, "params.json")))["params"]["provenance_note"] == win
    np.testing.assert_array_equal(np.load(os.path.join(folder, "co.npy")), res["arrays"]["obj"])
    left = os.listdir(folder)
    assert CLAIM_NAME not in left and not [f for f in left if f.endswith(".tmp")]


_HELD = """
folder, hold = sys.argv[1], sys.argv[2]
def slow(epoch):  # blocks the run inside epoch 2 while the hold file exists
    if epoch == 1:
        print("holding", flush=True)
        while os.path.exists(hold):
            time.sleep(0.005)
    return 1
res = run(epoch_max=3, output_folder=folder, update_obj=slow, save_results_every=1)
print(json.dumps(res["loss"]), flush=True)
"""


def test_run_into_a_live_runs_folder_is_refused_and_touches_nothing(small, tmp_path):
    folder, hold = str(tmp_path / "live"), str(tmp_path / "hold")
    open(hold, "w").close()
    proc = _child(_HELD, folder, hold)
    try:
        assert proc.stdout.readline().strip() == "holding"
        # temporaries: one of the live run (its pid), one of a writer that is gone
        live_tmp = f".results.h5.{proc.pid}-{host_tag()}.0123abcd.tmp"
        dead_tmp = f".co.npy.{_dead_pid()}-{host_tag()}.4567cdef.tmp"
        for name in (live_tmp, dead_tmp):
            open(os.path.join(folder, name), "w").close()
        before = _state(folder)
        for kw in ({}, {"overwrite_output": True}, {"restart_from": folder}):
            with pytest.raises(FolderBusyError, match=f"in use by another pypty run.*PID {proc.pid}"):
                _run(small, epoch_max=2, output_folder=folder, **kw)
        assert _state(folder) == before  # neither written nor removed, temporaries included
        # a named run inside the same parent skips a folder in use
        named = _run(small, epoch_max=1, output_folder=str(tmp_path), output_prefix="live")
        assert named["output_folder"] == str(tmp_path / "live_2")
        # only the temporary whose writer is gone is cleaned
        assert remove_stale_temporaries(folder) == [dead_tmp]
        os.unlink(os.path.join(folder, live_tmp))
    finally:
        if os.path.exists(hold):
            os.unlink(hold)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert load_results(folder)["attrs"]["epochs_done"] == 3 and _epochs_csv(folder) == [1, 2, 3]
    assert CLAIM_NAME not in os.listdir(folder)


def test_threads_of_one_process_cannot_share_a_folder(small, tmp_path):
    folder = str(tmp_path / "t")
    claim = claim_folder(folder)  # as a run in another thread would hold it
    try:
        with pytest.raises(FolderBusyError):
            _run(small, epoch_max=1, output_folder=folder)
        assert os.listdir(folder) == [CLAIM_NAME]
    finally:
        claim.release()
    assert not os.path.exists(folder)  # created for the claim, removed with it
    assert _run(small, epoch_max=1, output_folder=folder)["output_folder"] == folder


def test_stale_claims_are_taken_over_and_foreign_live_ones_refused(small, tmp_path, capsys):
    folder = str(tmp_path / "s")
    os.makedirs(folder)
    lock = os.path.join(folder, CLAIM_NAME)
    # same host, process gone (a run killed by SIGKILL): taken over, with a message
    json.dump({"pid": _dead_pid(), "host": host_tag(), "start": None, "token": "x", "claimed": "then"}, open(lock, "w"))
    _run(small, epoch_max=1, output_folder=folder, print_flag=1)
    assert "took over the claim" in capsys.readouterr().out and not os.path.exists(lock)
    # another host, renewed recently: may be alive, refused; not renewed for long: taken over
    other = str(tmp_path / "o")
    os.makedirs(other)
    lock = os.path.join(other, CLAIM_NAME)
    json.dump({"pid": 1, "host": "elsewhere", "start": None, "token": "y", "claimed": "now"}, open(lock, "w"))
    with pytest.raises(FolderBusyError, match="host elsewhere.*delete"):
        _run(small, epoch_max=1, output_folder=other)
    assert os.listdir(other) == [CLAIM_NAME]
    old = time.time() - 2 * 3600
    os.utime(lock, (old, old))
    _run(small, epoch_max=1, output_folder=other)
    assert not os.path.exists(lock)


def test_follow_up_run_never_writes_into_the_parents_folder(small, tmp_path):
    folder = str(tmp_path / "parent")
    _run(small, epoch_max=2, output_folder=folder)
    before = _state(folder)
    follow = params_from_results(folder)
    with pytest.raises(FileExistsError, match="parent run.*follow-up"):
        _run(small, epoch_max=4, output_folder=folder, **follow)
    assert _state(folder) == before
    # restart_from of another folder into a folder holding a run: refused as well
    with pytest.raises(FileExistsError, match="restart_from"):
        _run(small, epoch_max=4, output_folder=folder, restart_from=_run(small, epoch_max=1, output_folder=str(
            tmp_path / "other"))["output_folder"])
    assert _state(folder) == before
    # allowed: a new folder, overwrite_output, or restart_from of the folder itself
    assert _run(small, epoch_max=4, output_folder=str(tmp_path / "next"), **follow)["loss"]
    assert _run(small, epoch_max=3, output_folder=folder, restart_from=folder)["loss"]
    assert _run(small, epoch_max=4, output_folder=folder, overwrite_output=True, **follow)["loss"]


def test_a_run_failing_before_its_first_epoch_does_not_block_the_rerun(small, tmp_path):
    def broken(epoch):
        raise ZeroDivisionError("typo in my schedule")

    folder = str(tmp_path / "new")
    with pytest.raises(RuntimeError, match="update_probe") as info:
        _run(small, epoch_max=3, output_folder=folder, update_probe=broken)
    assert "before completing an epoch" in " ".join(getattr(info.value, "__notes__", []))
    assert not os.path.exists(folder)  # created by the run, removed with its files
    existing = str(tmp_path / "mine")
    os.makedirs(existing)
    open(os.path.join(existing, "notes.txt"), "w").close()
    with pytest.raises(RuntimeError):
        _run(small, epoch_max=3, output_folder=existing, update_probe=broken)
    assert os.listdir(existing) == ["notes.txt"]  # the user's folder and files stay
    for f in (folder, existing):
        assert _run(small, epoch_max=2, output_folder=f)["output_folder"] == f


# ============================================================================ class 3: signals, kills, restarts
_SIGNALLED = """
folder = sys.argv[1]
def slow(epoch):
    time.sleep(0.15)
    return 1
run(epoch_max=8, output_folder=folder, update_obj=slow, hist_length=4)
"""


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGKILL"])
def test_stopped_run_restarts_exactly(small, tmp_path, signame):
    """SIGTERM saves the state like Ctrl-C; after SIGKILL the restart point of epoch 1 is there."""
    folder = str(tmp_path / "job")
    proc = _child(_SIGNALLED, folder)
    _wait_for(lambda: os.path.exists(os.path.join(folder, "loss.csv")) and len(_epochs_csv(folder)) >= 3,
              what="three epochs")
    proc.send_signal(getattr(signal, signame))
    stdout, stderr = proc.communicate(timeout=60)
    stderr += stdout
    assert proc.returncode != 0
    stopped = load_results(folder)
    n_csv = len(_epochs_csv(folder))
    if signame == "SIGTERM":
        assert "stopped by SIGTERM" in stderr and f"restart_from='{os.path.abspath(folder)}'" in stderr
        assert stopped["attrs"]["status"] == "interrupted" and stopped["attrs"]["epochs_done"] >= 3
        assert CLAIM_NAME not in os.listdir(folder)
    else:  # killed without a chance to save: the restart point written after the first epoch
        assert stopped["attrs"]["epochs_done"] == 1 and stopped["restart"] is not None
        assert n_csv >= 3 and CLAIM_NAME in os.listdir(folder)  # a stale claim, taken over below
    done = stopped["attrs"]["epochs_done"]
    cont = _run(small, epoch_max=8, output_folder=folder, restart_from=folder, hist_length=4)
    full = _run(small, epoch_max=8, hist_length=4)
    assert len(cont["loss"]) == 8 - done
    assert list(stopped["loss"]["loss"]) + cont["loss"] == full["loss"]
    for k in ARRAYS:
        assert np.array_equal(cont[k], full[k]), k
    assert _epochs_csv(folder) == list(range(1, 9))  # no duplicate epochs after the restart
    assert list(load_results(folder)["loss"]["epoch"]) == list(range(1, 9))


def test_restart_point_after_the_first_epoch(small, tmp_path):
    folder = str(tmp_path / "r")

    def stop(epoch):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGUSR1)  # handled like SIGTERM
        return 1

    with pytest.raises(RunInterrupted, match="SIGUSR1"):
        _run(small, epoch_max=5, output_folder=folder, update_obj=stop)
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the previous handler is back
    res = load_results(folder)
    assert res["attrs"]["epochs_done"] == 1 and res["attrs"]["status"] == "interrupted"
    # without a stop: results.h5 after epoch 1, no convergence row for it
    quiet = str(tmp_path / "q")
    _run(small, epoch_max=3, output_folder=quiet, save_results_every=2)
    assert list(load_results(quiet)["convergence"]["epoch"]) == [2, 3]


def test_loss_csv_keeps_each_epoch_once_after_a_restart_from_an_older_save_point(small, tmp_path):
    folder = str(tmp_path / "l")
    _run(small, epoch_max=2, output_folder=folder)
    saved = str(tmp_path / "saved.h5")
    shutil.copy(os.path.join(folder, "results.h5"), saved)  # the save point after epoch 2
    _run(small, epoch_max=5, output_folder=folder, restart_from=folder)
    assert _epochs_csv(folder) == [1, 2, 3, 4, 5]
    shutil.copy(saved, os.path.join(folder, "results.h5"))  # as if the run had been killed after epoch 5
    cont = _run(small, epoch_max=4, output_folder=folder, restart_from=folder)
    assert len(cont["loss"]) == 2 and _epochs_csv(folder) == [1, 2, 3, 4]


def test_stop_signals_only_in_the_main_thread_and_only_default_ones():
    seen = []
    t = threading.Thread(target=lambda: seen.append(stop_signals().__enter__()))
    t.start()
    t.join()
    assert seen == [[]] and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup
    try:
        with stop_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, old)


# ============================================================================ write errors
_FSIZE = """
import resource
from pypty.output.atomic import OutputWriteError
from pypty.results import load_results, write_results
folder = sys.argv[1]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
path = os.path.join(folder, "results.h5")
write_results(path, {"arrays": {"obj": np.ones((8, 8), complex)}, "attrs": {"n": 1}, "loss": {"loss": [1.0]}})
out = {}
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))
try:  # 1 MB of data into at most 200 kB: HDF5's own writes fail
    write_results(path, {"arrays": {"obj": np.random.rand(256, 256, 2)}, "attrs": {"n": 2}, "loss": {"loss": [2.0]}})
except OutputWriteError as exc:
    out["results"] = str(exc)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
def fill(epoch):  # the disk fills up during epoch 3
    if epoch == 2:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))
    return 1
try:
    run(epoch_max=5, output_folder=os.path.join(folder, "run"), update_obj=fill, save_results_every=1)
except OSError as exc:
    out["run"] = [type(exc).__name__, str(exc), " ".join(getattr(exc, "__notes__", []))]
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
out["left"] = load_results(path)["attrs"]["n"]
print(json.dumps(out), flush=True)
"""


def test_write_error_is_clean_and_leaves_the_previous_files(small, tmp_path):
    """A simulated full disk (a file size limit): no crash in HDF5, an error naming the file, nothing replaced."""
    if not hasattr(signal, "SIGXFSZ"):
        pytest.skip("no file size limits on this platform")
    proc = _child(_FSIZE, tmp_path)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-3000:]  # -11 was the segmentation fault in HDF5's close
    out = json.loads(stdout.strip().splitlines()[-1])
    assert "results.h5" in out["results"] and "nothing was replaced" in out["results"] and out["left"] == 1
    kind, msg, note = out["run"]
    run_dir = str(tmp_path / "run")
    assert kind == "OutputWriteError" and run_dir in msg and "could NOT be saved" in note
    assert "holds the state after epoch 2" in note and f"restart_from='{run_dir}'" in note
    res = load_results(run_dir)  # the save point after epoch 2, complete
    assert res["attrs"]["epochs_done"] == 2
    assert not [f for _, _, fs in os.walk(tmp_path) for f in fs if f.endswith(".tmp")]
    assert CLAIM_NAME not in os.listdir(run_dir)
    cont = _run(small, epoch_max=5, output_folder=run_dir, restart_from=run_dir)
    assert len(cont["loss"]) == 3 and _epochs_csv(run_dir) == [1, 2, 3, 4, 5]


_TMPFS = """
from pypty.results import load_results
folder = sys.argv[1]
filler = os.path.join(folder, "filler")
def fill(epoch):  # another job fills the disk during epoch 3
    if epoch == 2:
        with open(filler, "wb") as fh:
            try:
                while True:
                    fh.write(b"x" * 65536)
                    fh.flush()
            except OSError:
                pass
    return 1
out = {}
run_dir = os.path.join(folder, "run")
try:
    run(epoch_max=5, output_folder=run_dir, update_obj=fill, save_results_every=1)
except OSError as exc:
    out["error"] = [type(exc).__name__, exc.errno, str(exc), " ".join(getattr(exc, "__notes__", []))]
import pypty.output.atomic as A
from pypty.results import write_results
check, A.check_free_space = A.check_free_space, lambda path, n: None  # as if the estimate missed (a quota)
try:  # HDF5 itself hits the full disk
    write_results(os.path.join(run_dir, "results.h5"), {"arrays": {"obj": np.ones((256, 256, 4))}})
except OSError as exc:
    out["hdf5"] = [type(exc).__name__, exc.errno, str(exc)]
A.check_free_space = check
out["epochs_done"] = load_results(run_dir)["attrs"]["epochs_done"]
out["files"] = sorted(os.listdir(run_dir))
out["co_ok"] = np.load(os.path.join(run_dir, "co.npy")).ndim == 4  # the checkpoint of epoch 2, complete
os.unlink(filler)
res = run(epoch_max=5, output_folder=run_dir, restart_from=run_dir)
out["continued"] = len(res["loss"])
print(json.dumps(out), flush=True)
"""


def test_full_disk_on_a_small_filesystem(tmp_path):
    """A real full disk: a 4 MiB tmpfs in a private mount namespace (skipped where one cannot be made)."""
    unshare = shutil.which("unshare")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if unshare is None or subprocess.run([unshare, "-rm", "sh", "-c", f"mount -t tmpfs -o size=4m tmpfs {mnt}"],
                                         capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small filesystem here (no unshare or no user namespaces)")
    code = _PROLOGUE + textwrap.dedent(_TMPFS)
    script = 'mount -t tmpfs -o size=4m tmpfs "$1" && exec "$2" -c "$3" "$1"'
    proc = subprocess.run([unshare, "-rm", "sh", "-c", script, "sh", str(mnt), sys.executable, code], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    kind, code_, msg, note = out["error"]
    assert kind == "OutputWriteError" and code_ == 28 and "run" in msg and "could NOT be saved" in note
    assert "holds the state after epoch 2" in note
    kind, code_, msg = out["hdf5"]  # the child did not crash in HDF5's close (returncode 0)
    assert kind == "OutputWriteError" and code_ == 28 and "results.h5" in msg
    assert out["epochs_done"] == 2 and out["co_ok"] and out["continued"] == 3
    assert not [f for f in out["files"] if f.endswith(".tmp")] and CLAIM_NAME not in out["files"]


def test_output_files_share_one_mode_that_follows_the_umask(small, tmp_path):
    old = os.umask(0o027)
    try:
        folder = str(tmp_path / "m")
        _run(small, epoch_max=2, output_folder=folder, save_figures=["loss"], save_checkpoints_every_epoch=2)
    finally:
        os.umask(old)
    modes = {os.path.relpath(os.path.join(r, f), folder): os.stat(os.path.join(r, f)).st_mode & 0o777
             for r, _, fs in os.walk(folder) for f in fs}
    assert {"results.h5", "loss.csv", "params.json", "co.npy", "checkpoints/epoch_0002/co.npy"} <= set(modes)
    assert set(modes.values()) == {0o640}, modes


def test_write_results_error_names_the_file(tmp_path):
    path = str(tmp_path / "nowhere" / "results.h5")
    with pytest.raises(OutputWriteError, match="nowhere/results.h5"):
        write_results(path, {"arrays": {"obj": np.ones(3)}})
