"""Fingerprint of pypty's behaviour: sha256 of the result arrays and loss histories of fixed runs.

Used to show that a refactoring changes nothing to the bit (CPU, double
precision): run it before and after and compare the two JSON files::

    python benchmarks/behaviour_fingerprint.py --out before.json      # on the old commit
    python benchmarks/behaviour_fingerprint.py --out after.json       # on the new commit
    python benchmarks/behaviour_fingerprint.py --compare before.json after.json

Only public API is used (``pypty.iterative.run`` and the bundled sample
preset), so the script runs unchanged on both commits.  Runs:

``sample``
    The README's sample reconstruction (``presets/sample_srtio3.py``, 40 epochs).
``every_array``
    The bundled sample with every refinable array type switched on, with
    epoch-dependent switches so that the reparametrisations change during the
    run: phase-only object for 4 epochs, probe CTF phase (``tune_only_probe_phase``)
    then CTF amplitude then the whole probe, positions from epoch 3, tilts of
    all three types (``tilt_mode`` 4, two slices), beam current, static
    background (refined as b^2), aberrations array; Poisson loss.
``restart``
    ``every_array`` run for 6 epochs, then continued with ``restart_from``
    for the rest: the result must equal the uninterrupted run.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import runpy
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PRESET = os.path.join(HERE, "..", "presets", "sample_srtio3.py")


def _digest(a) -> str:
    a = np.ascontiguousarray(np.asarray(a))
    return hashlib.sha256(str((a.shape, a.dtype.str)).encode() + a.tobytes()).hexdigest()


def fingerprint(result: dict) -> dict:
    """sha256 of every array of a ``run`` result and of its loss history."""
    out = {k: _digest(v) for k, v in sorted(result.items()) if isinstance(v, np.ndarray)}
    out["loss"] = _digest(np.asarray(result["loss"], dtype=np.float64))
    out["final_loss"] = repr(float(result["loss"][-1]))
    return out


def sample_params(folder, epochs=None):
    params = runpy.run_path(PRESET)["pypty_params"](output_folder=folder)
    params.update(print_flag=0, overwrite_output=True)
    if epochs is not None:
        params["epoch_max"] = epochs
    return params


def every_array_params(folder, epochs=12):
    p = sample_params(folder, epochs)
    n = len(p["positions"])
    p.update(
        num_slices=2, slice_distances=np.full(2, p["slice_distances"][0] / 2), algorithm="ml",
        update_obj=1, phase_only_obj="lambda e: e < 4",
        update_probe="lambda e: 1 if e >= 1 else 0",
        tune_only_probe_phase="lambda e: e < 5", tune_only_probe_abs="lambda e: 5 <= e < 8",
        update_probe_pos="lambda e: e >= 3",
        tilt_mode=4, tilts=np.zeros((n, 6)), update_tilts="lambda e: e >= 2",
        update_beam_current="lambda e: e >= 4", static_background=1e-3, update_static_background=1,
        aberrations_array=np.zeros((1, 3)), update_aberrations_array="lambda e: e >= 6",
        save_results_every=0,
    )
    return p


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the fingerprint JSON here")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two fingerprint files")
    ap.add_argument("--only", nargs="*", default=None, help="runs to do (sample, every_array, restart)")
    args = ap.parse_args(argv)
    if args.compare:
        a, b = (json.load(open(f)) for f in args.compare)
        same = True
        for run in sorted(set(a["runs"]) | set(b["runs"])):
            ra, rb = a["runs"].get(run, {}), b["runs"].get(run, {})
            for k in sorted(set(ra) | set(rb)):
                ok = ra.get(k) == rb.get(k)
                same &= ok
                print(f"{run:12s} {k:20s} {'same' if ok else 'DIFFERENT'}  {str(ra.get(k))[:16]}  {str(rb.get(k))[:16]}")
        print("identical" if same else "DIFFERENT")
        return 0 if same else 1

    import pypty
    import pypty.iterative

    runs = {}
    want = set(args.only) if args.only else {"sample", "every_array", "restart"}
    with tempfile.TemporaryDirectory() as tmp:
        if "sample" in want:
            t0 = time.perf_counter()
            runs["sample"] = fingerprint(pypty.iterative.run(sample_params(os.path.join(tmp, "sample"))))
            print(f"sample: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        if want & {"every_array", "restart"}:
            t0 = time.perf_counter()
            full = pypty.iterative.run(every_array_params(os.path.join(tmp, "every")))
            runs["every_array"] = fingerprint(full)
            print(f"every_array: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        if "restart" in want:
            part = os.path.join(tmp, "part")
            pypty.iterative.run(every_array_params(part, epochs=6))
            cont = pypty.iterative.run({**every_array_params(part), "restart_from": part})
            runs["restart"] = fingerprint(cont)
            runs["restart"]["equals_every_array"] = runs["restart"]["obj"] == runs["every_array"]["obj"] and \
                runs["restart"]["loss"] != "" and runs["restart"]["final_loss"] == runs["every_array"]["final_loss"]
    record = {"pypty_version": pypty.__version__, "numpy": np.__version__, "runs": runs}
    text = json.dumps(record, indent=1)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
