#!/usr/bin/env python
"""Depth demonstration of issue 10: cross-talk between two layers, without and with the z regularizers.

Reconstructs the bilayer made by ``scripts/simulate_bilayer.py`` (two MoS2
monolayers, a ~3 nm vacuum gap, the lower one shifted laterally) with pypty
(``pypty.iterative.run``; ``data_pad`` from the file, 96 px window; one
reconstruction slice per group of three simulation slices, 4.785 Å; default 10
slices: vacuum, layer 1, 6 gap slices, layer 2, vacuum; the known probe with
``C10_recon_A`` so that each layer lies on the transmission plane of its slice;
exact positions; vacuum start) and scores every setting: for each layer L, the
Pearson correlation over the scanned field (probe centres) of the reconstructed
phase summed over the slices of L with L's truth ("own") and with the other
layer's truth ("other", the cross-talk; the two truths correlate at
``truth_layer_correlation`` ~ -0.01, which a perfect reconstruction would
give).  Two layer windows: the slice that holds the layer (``layers_hw0``) and
that slice with its two neighbours (``layers_hw1``).  Object pixel (i, j) is
truth pixel (i, j) (same canvas, no fitted offset).

Settings (``--settings``, see :func:`setting`; ``all`` runs ``GRID``): ``none``
(no regularization; pypty's default band limit of the object to 2/3 Nyquist),
``lazy`` (``lazy_clean=True``), ``wedge_b<beta>_f<f>`` (``beta_wedge`` +
``wedge_mu`` = f * loss0, loss0 = the first-epoch data loss of ``none``),
``kz_b<beta>_e<step>_a<alpha>`` (``kz_filter_beta`` on a cadence from
``pypty.initialize.epoch_schedule``), ``zblur_s<sigma>_e<step>``
(``apply_gaussian_filter_z`` on a cadence); suffix ``_lazy`` adds
``lazy_clean=True``.  Every run is cached as ``<out>/<name>.npz`` (phase per
slice and a JSON record with the scores and the loss history; ``--force``
reruns); ``--report`` writes the Markdown table and
``docs/figures/regularization_depth.png`` from the cache.

Usage::

    python scripts/simulate_bilayer.py                       # /work/depth_data/bilayer_mos2.h5, ~1 min
    python benchmarks/depth_demo.py --single --settings none lazy wedge_b10_f0.01 kz_b10_e5_a0 zblur_s1_e5
    python benchmarks/depth_demo.py --single --report --md docs/regularization_depth.md
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _sched(value, start, step, end=None):
    from pypty.initialize import epoch_schedule

    if end is not None and end <= start:
        end = None
    return epoch_schedule(value, start=start, step=step, end=end)


GRID = (["none", "lazy"]
        + [f"wedge_b{b:g}_f{f:g}" for b in (3, 10, 40) for f in (1e-3, 1e-2, 1e-1)] + ["wedge_b1_f0.1", "wedge_b1_f1"]
        + [f"kz_b{b:g}_e{e}_a0" for b in (3, 10, 40) for e in (1, 5)]
        + [f"zblur_s{s:g}_e{e}" for s in (0.5, 1) for e in (1, 5)])


def setting(name, epochs, loss0):
    """(description, extra pypty parameters) of a setting name.

    Names: ``none``; ``lazy``; ``wedge_b<beta>_f<f>`` (beta_wedge = beta, wedge_mu = f * loss0,
    loss0 = first-epoch data loss of ``none``); ``kz_b<beta>_e<step>_a<alpha>`` (kz_filter_beta = beta
    at epochs 5, 5 + step, ... (before epochs - 5 when step > 1), kz_filter_alpha = alpha);
    ``zblur_s<sigma>_e<step>`` (apply_gaussian_filter_z = sigma slices, same cadence);
    ``pnorm_w<w>`` (phase_norm_weight = w: sparsity of the phase, which empties the gap slices).  A suffix
    ``_lazy`` adds lazy_clean=True; ``a+b`` combines two settings (e.g. ``kz_b5_e5_a0+pnorm_w30``).
    """
    if "+" in name:  # a combination: the settings of every part together
        descs, extra = [], {}
        for part in name.split("+"):
            d, e = setting(part, epochs, loss0)
            descs.append(d)
            extra.update(e)
        return " + ".join(descs), extra
    desc, extra = [], {}
    parts = name.split("_")
    if parts[-1] == "lazy" and parts[0] != "lazy":
        parts = parts[:-1]
        desc.append("lazy_clean=True")
        extra["lazy_clean"] = True
    kind, kv = parts[0], {p[0]: float(p[1:]) for p in parts[1:]}
    cad = lambda e: (f"every {int(e)} epoch(s) from 5" + (f" to {epochs - 5}" if e > 1 else ""))
    if kind == "none":
        desc.insert(0, "no regularization")
    elif kind == "lazy":
        desc, extra = ["no regularization, lazy_clean=True"], {"lazy_clean": True}
    elif kind == "wedge":
        mu = kv["f"] * loss0
        desc.insert(0, f"beta_wedge={kv['b']:g}, wedge_mu={kv['f']:g}*loss0={mu:.4g}")
        extra.update(beta_wedge=kv["b"], wedge_mu=float(mu))
    elif kind == "kz":
        e = int(kv["e"])
        desc.insert(0, f"kz_filter_beta={kv['b']:g} {cad(e)}, kz_filter_alpha={kv['a']:g}")
        extra.update(kz_filter_beta=_sched(kv["b"], 5, e, epochs - 5 if e > 1 else None), kz_filter_alpha=kv["a"])
    elif kind == "zblur":
        e = int(kv["e"])
        desc.insert(0, f"apply_gaussian_filter_z={kv['s']:g} {cad(e)}")
        extra.update(apply_gaussian_filter_z=_sched(kv["s"], 5, e, epochs - 5 if e > 1 else None))
    elif kind == "pnorm":
        desc.insert(0, f"phase_norm_weight={kv['w']:g}")
        extra.update(phase_norm_weight=float(kv["w"]))
    else:
        raise SystemExit(f"unknown setting {name}")
    return ", ".join(desc), extra


def load(path):
    with h5py.File(path, "r") as f:
        meta = {k: (json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v) for k, v in f.attrs.items()}
        d = dict(data=f["data"][...], positions=f["positions_px"][...], layers=f["truth_phase_layers"][...],
                 rec_slices=f["truth_phase_recon_slices"][...])
    return meta, d


def corr(a, b):
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def score(phase, meta, d):
    """Per-layer correlations of the slice-summed phase with own/other truth, and per-slice profiles.

    ``layers_hw0``: the one slice holding each layer; ``layers_hw1``: that slice and its two
    neighbours (the depth resolution here is about two slices).
    """
    n_win = int(meta["n_window"])
    c = d["positions"] + n_win // 2
    lo = np.floor(c.min(axis=0)).astype(int)
    hi = np.ceil(c.max(axis=0)).astype(int) + 1
    win = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
    truth = [t[win] for t in d["layers"]]
    S = phase.shape[0]
    out = {}
    for hw in (0, 1):
        out[f"layers_hw{hw}"] = []
        for li, s0 in enumerate(meta["layer_recon_slice"]):
            sl = list(range(max(0, s0 - hw), min(S, s0 + hw + 1)))
            img = phase[sl].sum(axis=0)[win]
            out[f"layers_hw{hw}"].append({"slices": sl, "own": corr(img, truth[li]),
                                          "other": corr(img, truth[1 - li])})
    out["profile_truth1"] = [corr(p[win], truth[0]) for p in phase]
    out["profile_truth2"] = [corr(p[win], truth[1]) for p in phase]
    out["slice_rms_rad"] = [float(np.std(p[win])) for p in phase]
    out["total_vs_total_truth"] = corr(phase.sum(0)[win], truth[0] + truth[1])
    return out


def line(r):
    sc = r["score"]
    a, b = sc["layers_hw1"], sc["layers_hw0"]
    return (f"{r['name']:22s} +-1: L1 {a[0]['own']:+.3f}/{a[0]['other']:+.3f} L2 {a[1]['own']:+.3f}/"
            f"{a[1]['other']:+.3f} | 1 slice: L1 {b[0]['own']:+.3f}/{b[0]['other']:+.3f} L2 {b[1]['own']:+.3f}/"
            f"{b[1]['other']:+.3f} | tot {sc['total_vs_total_truth']:+.3f} | loss {r['loss'][-1]:.5g} | "
            f"{r['wall_s']:.0f} s")


def run_one(name, desc, extra, meta, d, args):
    import pypty.iterative
    from pypty.probe import make_probe

    data = d["data"]
    n_win = int(meta["n_window"])
    dx = float(meta["pixel_size_A"])
    probe = make_probe((n_win, n_win), dx, meta["energy_eV"] / 1e3, meta["semiangle_mrad"],
                       {"C10": float(meta["C10_recon_A"])}, intensity=float(data.sum(axis=(1, 2)).mean()))
    params = dict(
        dataset=data, data_pad=int(meta["data_pad"]), acc_voltage=meta["energy_eV"] / 1e3, pixel_size_x_A=dx, pixel_size_y_A=dx,
        num_slices=int(meta["n_recon_slices"]), slice_distances=np.array([float(meta["dz_recon_A"])]),
        positions=d["positions"].copy(), probe=probe, scan_size=tuple(meta["scan_shape"]),
        algorithm=args.algorithm, epoch_max=args.epochs, compute_batch=args.batch, update_obj=1,
        update_probe=(f"lambda e: 1 if e >= {args.probe_from} else 0" if args.probe_from >= 0 else 0),
        output_folder="", print_flag=0, default_dtype="single" if args.single else "double",
    )
    params.update(extra)
    t = time.perf_counter()
    res = pypty.iterative.run(params)
    wall = time.perf_counter() - t
    assert np.allclose(res["position_offset"], 0), res["position_offset"]
    phase = np.moveaxis(np.angle(res["obj"][..., 0]), 2, 0)  # (S, y, x)
    rec = dict(name=name, desc=desc, wall_s=wall, loss=[float(v) for v in res["loss"]],
               score=score(phase, meta, d), epochs=args.epochs, algorithm=args.algorithm,
               params={k: (v if isinstance(v, (str, int, float, bool)) else repr(v)) for k, v in extra.items()})
    np.savez_compressed(os.path.join(args.out, name + ".npz"), phase=phase.astype(np.float32),
                        record=json.dumps(rec))
    print(line(rec), flush=True)
    return rec


def cached(args, name):
    p = os.path.join(args.out, name + ".npz")
    if not os.path.exists(p):
        return None
    z = np.load(p)
    return json.loads(str(z["record"])), z["phase"]


def git_head():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except Exception:  # noqa: BLE001
        return "unknown"


def crosstalk(r, hw=1):
    return float(np.mean([abs(x["other"]) for x in r["score"][f"layers_hw{hw}"]]))


def own(r, hw=1):
    return float(np.mean([x["own"] for x in r["score"][f"layers_hw{hw}"]]))


def report(args, meta, d):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(os.path.splitext(f)[0] for f in os.listdir(args.out) if f.endswith(".npz"))
    order = {k: i for i, k in enumerate(GRID)}
    names.sort(key=lambda n: (order.get(n, len(order)), n))
    by = {n: cached(args, n) for n in names}
    if "none" not in by:
        raise SystemExit("run 'none' first")
    regs = [by[n][0] for n in names if not n.startswith(("none", "lazy"))]
    best = by[args.best][0] if args.best else (min(regs, key=lambda r: (crosstalk(r), -own(r))) if regs else None)

    n_win = int(meta["n_window"])
    c = d["positions"] + n_win // 2
    lo = np.floor(c.min(axis=0)).astype(int)
    hi = np.ceil(c.max(axis=0)).astype(int) + 1

    def off_layer(ph):
        """Fraction of the phase variance (scanned field) in the slices that hold no layer (truth: 0)."""
        v = ph[:, lo[0]:hi[0], lo[1]:hi[1]].reshape(ph.shape[0], -1).var(axis=1)
        keep = np.ones(len(v), bool)
        keep[list(meta["layer_recon_slice"])] = False
        return float(v[keep].sum() / v.sum())

    def rows(hw):
        out = ["| setting | parameters | L1 own | L1 other | L2 own | L2 other | mean abs(other) | off-layer var. | "
               "total | final loss | wall s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for n in names:
            r = by[n][0]
            L = r["score"][f"layers_hw{hw}"]
            out.append(f"| `{n}` | {r['desc']} | {L[0]['own']:+.3f} | {L[0]['other']:+.3f} | {L[1]['own']:+.3f} | "
                       f"{L[1]['other']:+.3f} | {crosstalk(r, hw):.3f} | {off_layer(by[n][1]):.2f} | "
                       f"{r['score']['total_vs_total_truth']:+.3f} | {r['loss'][-1]:.5g} | {r['wall_s']:.0f} |")
        return out

    def profile_rows():
        out = ["| setting | " + " | ".join(f"s{s}" for s in range(int(meta["n_recon_slices"]))) + " |",
               "|---|" + "---|" * int(meta["n_recon_slices"])]
        for n in names:
            sc = by[n][0]["score"]
            out.append(f"| `{n}` | " + " | ".join(f"{a:+.2f} / {b:+.2f}" for a, b in
                                                 zip(sc["profile_truth1"], sc["profile_truth2"])) + " |")
        return out

    def windows(hw):
        S = int(meta["n_recon_slices"])
        parts = []
        for i, s0 in enumerate(meta["layer_recon_slice"]):
            a, b = max(0, s0 - hw), min(S - 1, s0 + hw)
            parts.append(f"L{i + 1}: slice {a}" if a == b else f"L{i + 1}: slices {a}-{b}")
        return ", ".join(parts)

    chk = meta.get("checks", {})
    if isinstance(chk, str):
        chk = json.loads(chk)
    r0 = by["none"][0]
    md = [
        "# Depth demonstration: cross-talk between two layers, with and without the z regularizers",
        "",
        f"Date {datetime.date.today().isoformat()}; machine: {platform.machine()} Linux, {os.cpu_count()} CPU cores "
        f"(shared with other jobs, so wall times are indicative), NumPy backend, "
        f"{'complex64' if args.single else 'complex128'}; pypty commit `{git_head()}` (plus the uncommitted work "
        "tree of that session). Made by `benchmarks/depth_demo.py` (see its docstring) on data from "
        "`scripts/simulate_bilayer.py`.",
        "",
        "## Specimen and data",
        "",
        f"{meta['specimen']}. {meta['energy_eV'] / 1e3:g} kV, {meta['semiangle_mrad']:g} mrad, defocus "
        f"{meta['defocus_abtem_A']:.2f} Å (abTEM sign; crossover in the middle of the cell), "
        f"{meta['scan_shape'][0]} x {meta['scan_shape'][1]} scan, step {meta['scan_step_A']} Å, 64 x 64 detector "
        f"({meta['detector_pixel_mrad']:.3f} mrad/px), Poisson noise at {meta['dose_e_per_A2']:.3g} e/Å² "
        f"({meta['electrons_per_pattern']:.4g} e/pattern), {meta['frozen_phonon_configs']} frozen-phonon "
        f"configurations. Layers: S/Mo/S planes at z = "
        f"{', '.join(f'{z:.2f}' for z in meta['layer_atomic_planes_z_A'][0])} Å and "
        f"{', '.join(f'{z:.2f}' for z in meta['layer_atomic_planes_z_A'][1])} Å (centre distance "
        f"{meta['layer_centre_distance_A']:.2f} Å, vacuum gap between the facing S planes "
        f"{meta['vacuum_gap_between_S_planes_A']:.2f} Å). Reconstruction grid: {meta['n_recon_slices']} slices of "
        f"{meta['dz_recon_A']:.3f} Å, layer 1 in slice {meta['layer_recon_slice'][0]}, layer 2 in slice "
        f"{meta['layer_recon_slice'][1]}, the other slices empty. The two truths correlate at "
        f"{chk.get('truth_layer_correlation', float('nan')):+.3f} over the scanned field: the cross-talk of a "
        "perfect reconstruction.",
        "",
        f"Reconstruction: `pypty.iterative.run`, loss `{r0['algorithm']}`, {r0['epochs']} epochs from a vacuum "
        "object, the known probe " + ("(fixed)" if args.probe_from < 0 else f"(refined from epoch {args.probe_from})")
        + f", exact positions. `loss0` = first-epoch data loss of `none` = {r0['loss'][0]:.5g}.",
        "",
        "## Results",
        "",
        "Pearson correlation over the scanned field (probe centres, 37 x 37 px) of the reconstructed phase summed "
        "over the slices of a layer with that layer's truth (own) and with the other layer's truth (other: the "
        "cross-talk); `off-layer var.`: the fraction of the phase variance that sits in the slices holding no "
        "layer (truth: 0; depth elongation); `total`: the slice-summed phase against the summed truth. Layer = its slice and the two "
        f"neighbours ({windows(1)}):",
        "",
        *rows(1),
        "",
        f"The same with the single slice that holds each layer ({windows(0)}):",
        "",
        *rows(0),
        "",
        "Depth profiles: correlation of each slice's phase with truth 1 / truth 2:",
        "",
        *profile_rows(),
        "",
    ]
    if best is not None:
        fig_name = os.path.basename(args.fig)
        md += [f"Figure (`docs/figures/{fig_name}`): phase per slice, truth, `none` and `{best['name']}`.",
               "", f"![phase per slice](figures/{fig_name})", ""]
    text = "\n".join(md)
    if os.path.exists(args.notes):
        with open(args.notes) as fh:
            text += "\n" + fh.read()
    out_md = args.md or os.path.join(args.out, "report.md")
    with open(out_md, "w") as fh:
        fh.write(text)
    show = [("truth", d["rec_slices"]), ("none", by["none"][1])]
    if best is not None:
        show.append((best["name"], by[best["name"]][1]))
    n_win = int(meta["n_window"])
    c = d["positions"] + n_win // 2
    lo = np.floor(c.min(axis=0)).astype(int)
    hi = np.ceil(c.max(axis=0)).astype(int) + 1
    S = show[0][1].shape[0]
    fig, axes = plt.subplots(len(show), S, figsize=(1.1 * S, 1.25 * len(show) + 0.3), dpi=80)
    for i, (label, ph) in enumerate(show):
        crop = ph[:, lo[0]:hi[0], lo[1]:hi[1]]
        crop = crop - crop.mean(axis=(1, 2), keepdims=True)
        vmax = np.percentile(np.abs(crop), 99.5)
        for s in range(S):
            ax = axes[i, s]
            ax.imshow(crop[s], cmap="gray", vmin=-vmax, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if s == 0:
                ax.set_ylabel(label, fontsize=7)
            if i == 0:
                lab = {meta["layer_recon_slice"][0]: " (L1)", meta["layer_recon_slice"][1]: " (L2)"}.get(s, "")
                ax.set_title(f"slice {s}{lab}", fontsize=7)
    fig.suptitle("phase per slice, scanned field (one grey scale per row)", fontsize=8)
    fig.tight_layout(pad=0.2)
    os.makedirs(os.path.dirname(args.fig), exist_ok=True)
    fig.savefig(args.fig, dpi=80)
    print("wrote", args.fig, os.path.getsize(args.fig), "bytes;", out_md)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/depth_data/bilayer_mos2.h5")
    ap.add_argument("--out", default="/work/depth_data/runs", help="cache folder for the runs")
    ap.add_argument("--settings", nargs="*", default=["none"], help="setting names (see setting()), or 'all'")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--algorithm", default="lsq_sqrt")
    ap.add_argument("--batch", default="auto")
    ap.add_argument("--single", action="store_true", help="complex64")
    ap.add_argument("--probe-from", type=int, default=-1, help="refine the probe from this epoch (-1: fixed)")
    ap.add_argument("--force", action="store_true", help="rerun cached settings")
    ap.add_argument("--report", action="store_true", help="write the Markdown and the figure from the cache")
    ap.add_argument("--best", default=None, help="regularized setting shown in the figure (default: lowest cross-talk)")
    ap.add_argument("--md", default=None, help="Markdown output of --report (default <out>/report.md)")
    ap.add_argument("--notes", default="/work/depth_data/notes.md", help="text appended to the Markdown")
    ap.add_argument("--fig", default=os.path.join(ROOT, "docs", "figures", "regularization_depth.png"))
    args = ap.parse_args(argv)
    if args.batch != "auto":
        args.batch = int(args.batch)
    os.makedirs(args.out, exist_ok=True)
    meta, d = load(args.data)
    if args.report:
        report(args, meta, d)
        return
    names = GRID if args.settings == ["all"] else args.settings
    if "none" not in names and cached(args, "none") is None:
        names = ["none"] + list(names)
    for name in names:
        c = cached(args, name)
        if c is not None and not args.force:
            print(line(c[0]) + " (cached)", flush=True)
            continue
        loss0 = cached(args, "none")[0]["loss"][0] if name != "none" else 1.0
        desc, extra = setting(name, args.epochs, loss0)
        run_one(name, desc, extra, meta, d, args)


if __name__ == "__main__":
    main()
