"""How precisely can the data fix the scan positions?  Cramér-Rao bound next to the achieved error (issue 16).

Usage::

    python benchmarks/position_crb.py RESULTS_H5 [--data DIR] [--dose 1.0] [--step 0.05]

``RESULTS_H5`` is the results file of a reconstruction of the shared MoS2 data (set up as in
``benchmarks/regularization_demo.py``: one slice, the nominal scan as the starting positions).  Taking its object and probe as the truth, the Fisher information of pattern n for
its own position s_n = (y, x) under Poisson noise is

    F_n = sum_k (d lambda_nk / d s_n)(d lambda_nk / d s_n)^T / lambda_nk

(lambda_nk: the model's expected counts of pixel k; the derivatives by central differences of
``MultisliceModel.predict`` with a step of ``--step`` px).  ``sqrt(mean_n trace(F_n^-1))`` is the rms error
that no unbiased estimator of one position can beat when everything else is known (Kay, Fundamentals of
Statistical Signal Processing I, 1993, ch. 3); estimating the object and probe from the same data only raises
it.  The script prints it next to the rms error of the file's positions (global shift removed), the part of that
error that an affine map of the scan explains, its smooth part (Gaussian over the scan grid, sigma 2 positions)
and the correlation of neighbouring errors.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))

import regularization_demo as rd  # noqa: E402
from pypty.backend import get_backend  # noqa: E402
from pypty.model.setup import build_setup  # noqa: E402
from pypty.output.results import load_results  # noqa: E402
from pypty.parameters import validate  # noqa: E402


def fisher_bound(model, arrays, step, batch=128):
    """Per-pattern CRB trace (px^2) of the positions, (N,)."""
    n = arrays["positions"].shape[0]
    out = np.empty(n)
    for start in range(0, n, batch):
        idx = np.arange(start, min(start + batch, n))
        lam = np.maximum(model.predict(arrays, idx), 1e-12)
        der = []
        for k in range(2):
            plus, minus = arrays["positions"].copy(), arrays["positions"].copy()
            plus[idx, k] += step
            minus[idx, k] -= step
            der.append((model.predict(dict(arrays, positions=plus), idx)
                        - model.predict(dict(arrays, positions=minus), idx)) / (2 * step))
        f = np.empty((len(idx), 2, 2))
        for i in range(2):
            for j in range(2):
                f[:, i, j] = np.sum(der[i] * der[j] / lam, axis=(1, 2))
        out[idx] = np.trace(np.linalg.inv(f), axis1=1, axis2=2)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--data", default=rd.DEFAULT_DATA)
    ap.add_argument("--dose", type=float, default=1.0)
    ap.add_argument("--step", type=float, default=0.05, help="finite-difference step (px)")
    args = ap.parse_args(argv)
    from scipy.ndimage import gaussian_filter

    pb = rd.load_problem(args.data, args.dose)
    res = load_results(args.results, restart_state=False)
    a = res["arrays"]
    p = rd.base_params(pb, 1, "ml", "double", "")
    p.update(obj=a["obj"], probe=a["probe"], positions=res["positions_canvas"])
    st = build_setup(validate(p), get_backend("numpy"))
    try:
        crb = fisher_bound(st.model, dict(st.arrays), args.step)
    finally:
        st.close()
    pos = np.asarray(res["positions_canvas"], float) + np.asarray(res["position_offset"], float)
    d = pos - pb.true_corner
    d -= d.mean(axis=0)
    ny, nx = pb.meta["scan_shape_yx"]
    grid = d.reshape(ny, nx, 2)
    smooth = np.stack([gaussian_filter(grid[..., k], 2, mode="nearest") for k in range(2)], -1)
    aff, rest, _ = rd.affine_split(pb, pos)
    nn = np.mean([np.corrcoef(grid[:, :-1, 0].ravel(), grid[:, 1:, 0].ravel())[0, 1],
                  np.corrcoef(grid[:-1, :, 1].ravel(), grid[1:, :, 1].ravel())[0, 1]])
    print(f"Cramér-Rao bound (object and probe known): rms {np.sqrt(crb.mean()):.4f} px, "
          f"median pattern {np.sqrt(np.median(crb)):.4f} px")
    print(f"achieved: rms {np.sqrt(np.mean(np.sum(d**2, axis=1))):.4f} px (global shift removed); affine part "
          f"{aff:.4f} px, rest {rest:.4f} px; smooth part (sigma 2 positions) "
          f"{np.sqrt(np.mean(np.sum(smooth**2, axis=-1))):.4f} px; neighbour correlation {nn:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
