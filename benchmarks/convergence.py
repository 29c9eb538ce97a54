"""Convergence per loss and schedule on a dataset with ground truth (issue 16).

Usage::

    python benchmarks/convergence.py [--data DIR] [--doses 1 0.05 0.01] [--epochs 80] [--switch 6]
                                     [--positions-from 5] [--cases ...] [--append docs/performance.md]
                                     [--json out.json]

For the dataset folder (default: the shared MoS2 at ``../shared/data/mos2_80kV``; binomially thinned copies at
the other doses, seed 1), every case is one ``pypty.iterative.run`` with positions refined from an early epoch
(``pos_recenter=True``), ``lazy_clean=True`` (thin specimen, full band: the object is not band-limited) and single
precision.  r (Pearson correlation of the phase with the ground truth at the known offset) and the rms position
error (global shift removed) are scored from the numbered checkpoint of every epoch, with the set-up and scoring
of ``scripts/reconstruct_mos2.py`` / ``benchmarks/regularization_demo.py``.  Seconds are the ``wall_time_s``
column of loss.csv (checkpoint writing included).  One Markdown table (date, machine, commit, load) is appended
to ``--append``.

Cases (``--cases``): ``lsq_sqrt``, ``ml``, ``switch`` (``lambda x: 'lsq_sqrt' if x < S else 'ml'``), each
unregularized (``pos_recenter=True`` only) or ``+reg`` (the settings of docs/regularization_results.md: for
lsq_sqrt ``deformation_reg_weight_positions=2`` with object norms that follow the dose; for ml and the switch
``abs_norm_weight=30, phase_norm_weight=16``); ``+freeze``: the probe is refined only in the first 20 epochs
(``update_probe="lambda e: 1 if e < 20 else 0"``); ``+2s``: two slices of half the specimen thickness instead of
one (it lowers the final position error by about 0.005 px at full dose and costs r at lower doses);
``recommended``: the settings of :func:`pypty.initialize.counted_data_settings` for the data's mean counts per
pattern (``recommended-high`` / ``-low``: that recipe at every dose).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))

import pypty.iterative  # noqa: E402
from pypty.initialize import counted_data_settings  # noqa: E402
import regularization_demo as rd  # noqa: E402

LSQ_REG = {1.0: dict(abs_norm_weight=300.0, phase_norm_weight=100.0, deformation_reg_weight_positions=2.0),
           0.05: dict(abs_norm_weight=100.0, phase_norm_weight=30.0, deformation_reg_weight_positions=2.0),
           0.01: dict(abs_norm_weight=100.0, phase_norm_weight=3.0, deformation_reg_weight_positions=2.0)}
ML_REG = dict(abs_norm_weight=30.0, phase_norm_weight=16.0)
#: Probe refinement stopped after ``FREEZE`` epochs (``+freeze``): removes the late decline of r (measured).
FREEZE = 20
ALL_CASES = ("lsq_sqrt", "ml", "switch", "lsq_sqrt+reg", "ml+reg", "switch+reg", "ml+reg+freeze",
             "switch+reg+freeze", "switch+reg+freeze+2s", "recommended", "recommended-high", "recommended-low")


def case_params(case, dose, switch, pos_from, thickness_A=None, electrons_per_pattern=None):
    """(algorithm, extra parameters) of a case; ``+2s`` needs the specimen thickness ``thickness_A`` (Å),
    ``recommended`` the mean counts per pattern."""
    if case.startswith("recommended"):
        regime = case.split("-")[1] if "-" in case else None
        extra = counted_data_settings(electrons_per_pattern, regime=regime, switch_epoch=switch)
        return extra.pop("algorithm"), extra
    base, reg, freeze = case.split("+")[0], "+reg" in case, "+freeze" in case
    if base == "switch":
        loss = f"lambda x: 'lsq_sqrt' if x < {switch} else 'ml'"
        start = max(pos_from, switch)
    else:
        loss, start = base, pos_from
    extra = dict(pos_recenter=True, update_probe_pos=f"lambda e: 1 if e >= {start} else 0")
    if reg:
        extra.update(LSQ_REG.get(dose, LSQ_REG[0.05]) if base == "lsq_sqrt" else ML_REG)
    if freeze:
        extra["update_probe"] = f"lambda e: 1 if e < {FREEZE} else 0"
    if "+2s" in case:
        if thickness_A is None:
            raise ValueError(f"case {case!r} needs the specimen thickness")
        extra.update(num_slices=2, slice_distances=np.array([thickness_A / 2, thickness_A / 2]))
    return loss, extra


def run(pb, loss, extra, epochs, out):
    """One run; per-epoch r, position error and wall seconds (from the checkpoints and loss.csv)."""
    params = rd.base_params(pb, epochs, loss, "single", out)
    params.update(extra)
    res = pypty.iterative.run(params)
    offset = np.asarray(res["position_offset"], dtype=np.float64)
    r, err = [], []
    for e in range(1, epochs + 1):
        folder = os.path.join(out, "checkpoints", f"epoch_{e:04d}")
        obj = np.load(os.path.join(folder, "co.npy"))
        pos = np.load(os.path.join(folder, "cg.npy"))
        if obj.shape != res["obj"].shape:
            raise RuntimeError("the canvas changed during the run; increase the margin")
        a, _, b, _ = rd.evaluate(pb, rd.phase_of(obj), pos + offset)
        r.append(a)
        err.append(b)
    log = np.genfromtxt(os.path.join(out, "loss.csv"), delimiter=",", names=True, dtype=None, encoding=None)
    wall = [float(v) for v in np.atleast_1d(log["wall_time_s"])]
    shutil.rmtree(out, ignore_errors=True)
    return dict(r=r, pos_err=err, wall=wall)


def first(curve, wall, level):
    """(epoch, seconds) of the first epoch with r >= level, or (None, None)."""
    for i, v in enumerate(curve):
        if v >= level:
            return i + 1, wall[i]
    return None, None


def row(res):
    r = np.asarray(res["r"])
    e90, s90 = first(r, res["wall"], 0.90)
    e95, s95 = first(r, res["wall"], 0.95)
    b = int(r.argmax())
    return dict(e90=e90, s90=s90, e95=e95, s95=s95, best=float(r[b]), best_epoch=b + 1, final=float(r[-1]),
                decline=float(r[b:].max() - r[b:].min()), pos_err=float(res["pos_err"][-1]),
                wall=float(res["wall"][-1]))


def table(rows, args, env):
    L = ["", "## Convergence per loss and schedule (benchmarks/convergence.py, issue 16)", "",
         f"- date: {env['date']}; machine: {env['machine']}; commit: `{env['commit']}`"
         + (" (pypty/ with uncommitted changes)" if env.get("pypty_dirty") else ""),
         f"- load at the end: `{env['load']}`",
         f"- data: `{args.data}`, thinned binomially (seed 1) to the dose fractions listed; one slice (two for +2s), nominal "
         f"start positions, probe from `make_probe` with the nominal C10, `default_dtype='single'`, batch 128, "
         f"`lazy_clean=True` (thin specimen, full band: the object is not band-limited), {args.epochs} epochs, "
         f"positions refined from epoch {args.positions_from + 1} (1-based; switch runs: from the switch) with "
         f"`pos_recenter=True`; switch = `lambda x: 'lsq_sqrt' if x < {args.switch} else 'ml'`.",
         f"- +freeze: probe refined in the first {FREEZE} epochs only; +reg: see the docstring of the script. "
         "r: phase correlation with the ground truth at the known offset, per epoch from the checkpoints; "
         "seconds: loss.csv `wall_time_s` (checkpoint writing included); 'spread after best' = max - min of r "
         "from the best epoch on (goal <= 0.005); position error: rms px, global shift removed.", "",
         "| dose | case | epoch (s) to r 0.90 | epoch (s) to r 0.95 | best r (epoch) | final r | spread after best "
         "| final pos err px | wall s |",
         "|---|---|---|---|---|---|---|---|---|"]
    for (dose, case), x in rows:
        t90 = "-" if x["e90"] is None else f"{x['e90']} ({x['s90']:.1f})"
        t95 = "-" if x["e95"] is None else f"{x['e95']} ({x['s95']:.1f})"
        L.append(f"| {dose:g} | {case} | {t90} | {t95} | {x['best']:.4f} ({x['best_epoch']}) | {x['final']:.4f} | "
                 f"{x['decline']:.4f} | {x['pos_err']:.3f} | {x['wall']:.1f} |")
    return "\n".join(L) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=rd.DEFAULT_DATA)
    ap.add_argument("--doses", type=float, nargs="+", default=[1.0, 0.05, 0.01])
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--switch", type=int, default=6)
    ap.add_argument("--positions-from", type=int, default=5)
    ap.add_argument("--cases", nargs="+", default=list(ALL_CASES), choices=ALL_CASES)
    ap.add_argument("--append", default=None, help="Markdown file to append the table to (docs/performance.md)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rows = []
    tmp = tempfile.mkdtemp(prefix="pypty_conv_")
    for dose in args.doses:
        pb = rd.load_problem(args.data, dose, seed=1)
        for case in args.cases:
            loss, extra = case_params(case, dose, args.switch, args.positions_from,
                                      thickness_A=pb.meta["specimen_thickness_A"],
                                      electrons_per_pattern=float(pb.data.sum(axis=(1, 2)).mean()))
            t = time.perf_counter()
            res = run(pb, loss, extra, args.epochs, os.path.join(tmp, "run"))
            x = row(res)
            x["curve"] = [round(v, 4) for v in res["r"]]
            x["pos_curve"] = [round(v, 4) for v in res["pos_err"]]
            rows.append(((dose, case), x))
            print(f"dose {dose:g} {case}: r90 at {x['e90']}, r95 at {x['e95']}, best {x['best']:.4f} "
                  f"({x['best_epoch']}), final {x['final']:.4f}, spread {x['decline']:.4f}, pos {x['pos_err']:.3f} "
                  f"px, {time.perf_counter() - t:.0f} s", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    env = rd.environment()
    text = table(rows, args, env)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "env": env, "rows": [[list(k), v] for k, v in rows]}, fh)
    if args.append:
        with open(args.append, "a") as fh:
            fh.write(text)
    return rows


if __name__ == "__main__":
    main()
