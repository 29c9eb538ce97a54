"""A tiny reconstruction for tests/distributed/test_mpi.py, one result file per rank.

Run as ``mpiexec -n R python -m mpi4py mpi_script.py OUT_DIR CASE [RESTART_FOLDER]``, or
with ``python mpi_script.py ...`` for the one-process reference.

Each rank runs the same tiny reconstruction (double precision; object, probe
and positions refined) and writes its result to ``OUT_DIR/rank<r>.npz``.
CASE "fault": the environment variable ``PYPTY_TEST_FAULT_RANK`` names a rank
whose loss evaluation raises at the given evaluation (a test-only wrapper
around the model, installed in this subprocess only); the exception message
is written to ``OUT_DIR/error<r>.txt``.  CASE "terms": see :func:`params`;
CASE "badshard": a NaN in the last pattern (only the last rank reads it).
CASE "diverge": rank 1 changes one value of its object after its first step.
CASE "signal": rank 1 sends itself SIGTERM at the start of epoch 3 (through an epoch-dependent
parameter); every rank must stop together and rank 0 must save the interrupted state.
CASE "sigint": the same with SIGINT (Ctrl-C, which mpiexec forwards to the ranks).
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/ (synthetic.py)

from synthetic import base_params, dataset  # noqa: E402

import pypty.iterative  # noqa: E402


def params(case, out, restart=""):
    _, probe, pos, data = dataset(5, 3.0, 40, seed=3)
    rng = np.random.default_rng(0)
    pos = pos + rng.normal(0, 0.3, pos.shape)  # something for the positions to refine
    kw = dict(epoch_max=8, default_dtype="double", update_probe=1, update_probe_pos="lambda e: e >= 2",
              compute_batch=4, output_folder=out)
    if case == "terms":
        # an epoch-dependent subset of the patterns with a repeated index, all in rank 0's shard in odd epochs
        # (the other ranks evaluate no pattern); loss terms on replicated arrays (added once, not R times); the
        # PACBED pattern term (its means reduced); a per-pattern block (beam current)
        kw.update(sequence="lambda e: [0, 3, 3, 7] if e % 2 else None", epoch_max=6, pacbed_weight=1e-4,
                  atv_weight=0.05, update_beam_current="lambda e: e >= 1")
    if case in ("signal", "sigint"):
        kw.update(update_obj=_signal_at(3, "SIGTERM" if case == "signal" else "SIGINT"))
    if case == "badshard":  # a NaN in the last pattern: only the last rank reads it
        data = data.copy()
        data[-1, 0, 0] = np.nan
    if restart:
        kw.update(restart_from=restart)
    return base_params(data, pos, probe, **kw)


def _signal_at(epoch, name="SIGTERM"):
    """An ``update_obj`` callable that sends signal ``name`` to rank 1 when epoch ``epoch`` is resolved (test-only)."""
    import signal

    rank = 0
    if "mpi4py.MPI" in sys.modules:
        rank = sys.modules["mpi4py.MPI"].COMM_WORLD.Get_rank()
    sent = []

    def update_obj(e):
        if e == epoch and rank == 1 and not sent:
            sent.append(e)
            os.kill(os.getpid(), getattr(signal, name))
        return 1

    return update_obj


def install_fault():
    """Make rank PYPTY_TEST_FAULT_RANK raise in its evaluation number PYPTY_TEST_FAULT_AT (test-only)."""
    from mpi4py import MPI

    rank = int(os.environ.get("PYPTY_TEST_FAULT_RANK", "-1"))
    if MPI.COMM_WORLD.Get_rank() != rank:
        return
    at = int(os.environ.get("PYPTY_TEST_FAULT_AT", "5"))
    from pypty.model.multislice import MultisliceModel

    orig = MultisliceModel.loss_and_grad
    count = [0]

    def failing(self, *a, **k):
        count[0] += 1
        if count[0] == at:
            raise ValueError("injected fault in the loss evaluation")
        return orig(self, *a, **k)

    MultisliceModel.loss_and_grad = failing


def install_divergence():
    """Rank 1 changes one object value by 1e-9 after its first accepted step (test-only): the checksum must see it."""
    from mpi4py import MPI

    if MPI.COMM_WORLD.Get_rank() != 1:
        return
    from pypty.engine.session import Reconstruction

    orig = Reconstruction._accept
    done = [False]

    def accept(self, x, fun):
        orig(self, x, fun)
        if not done[0]:
            done[0] = True
            obj = self.arrays["obj"].copy()
            obj.reshape(-1)[:1] *= 1 + 1e-9  # (a view, also of a CuPy array) one ulp could be rounded away
            self.arrays = dict(self.arrays, obj=obj)

    Reconstruction._accept = accept


def main():
    out_dir, case = sys.argv[1], sys.argv[2]
    rank = 0
    if "mpi4py" in sys.modules or os.environ.get("PMI_SIZE"):
        from mpi4py import MPI

        rank = MPI.COMM_WORLD.Get_rank()
    folder = os.path.join(out_dir, "run")
    if case == "fault":
        install_fault()
    if case == "diverge":
        install_divergence()
    try:
        res = pypty.iterative.run(params(case, folder, sys.argv[3] if len(sys.argv) > 3 else ""))
    except (Exception, KeyboardInterrupt) as exc:  # KeyboardInterrupt: a stop signal (RunInterrupted)
        with open(os.path.join(out_dir, f"error{rank}.txt"), "w") as f:
            f.write(f"{type(exc).__name__}: {exc}")
        raise SystemExit(3)
    np.savez(os.path.join(out_dir, f"rank{rank}.npz"), obj=res["obj"], probe=res["probe"],
             beam_current=res.get("beam_current", np.zeros(0)),
             positions=res["positions"], loss=np.asarray(res["loss"]),
             results_file=np.asarray(res["results_file"]))


if __name__ == "__main__":
    main()
