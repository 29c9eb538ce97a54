"""L-BFGS over named blocks (N&W Alg. 7.4 two-loop recursion, strong-Wolfe steps).

See :mod:`pypty.optim` for the data model, the gradient convention and the
algorithm; the line search is in :mod:`pypty.optim.linesearch` and the vector
algebra in :mod:`pypty.optim.blocks`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy

from .blocks import block_dot, check_grad, norm, scale, signature, vdot
from .linesearch import WolfeOptions, line_search

__all__ = ["LBFGS", "StepResult"]


@dataclass
class StepResult:
    """Outcome of one :meth:`LBFGS.step`.

    Attributes
    ----------
    x : dict[str, array]
        New parameters (the input dict itself if rejected).
    f : float
        Loss at ``x``.
    g : dict[str, array]
        Gradient at ``x``.
    step : float
        Accepted step length along the search direction (0.0 if rejected).
    n_evals : int
        Calls of ``fun`` in this step (including the initial one when
        ``f0``/``g0`` were not given).
    accepted : bool
        Whether the parameters moved.
    message : str
        Why the step was rejected, the history reset or a pair skipped, and
        line-search notes, joined by ``"; "`` (``""`` if nothing notable).
    history_size : int
        Number of stored (s, y) pairs after the step.
    """

    x: dict
    f: float
    g: dict
    step: float
    n_evals: int
    accepted: bool
    message: str
    history_size: int


@dataclass
class _Pair:
    s: dict
    y: dict
    rho: float          # 1 / <s, y>
    gamma: float        # global BB ratio <s, y> / <y, y>
    gamma_k: dict       # per-block BB ratio (or the global one as fallback)


class LBFGS:
    """Limited-memory BFGS over block dicts with a strong-Wolfe line search.

    Parameters
    ----------
    hist_length : int or math.inf
        Number of (s, y) pairs kept: 0 = steepest descent (``-g`` with a
        BB-scaled initial step), 1 = memoryless BFGS, N = L-BFGS,
        ``math.inf`` = all pairs (full BFGS through the two-loop recursion).
    c1, c2 : float
        Wolfe constants, ``0 < c1 < c2 < 1`` (sufficient decrease, curvature).
    reduce_factor : float in (0, 1)
        Lower safeguard on the shrink ratio when the trial step fails
        sufficient decrease; the ratio used when interpolation is unusable
        (e.g. NaN/inf loss).
    optimism : float > 1
        Growth factor of the trial step while sufficient decrease holds but
        the slope is still steeply negative.
    max_count : int, None or math.inf
        Maximum number of ``fun`` evaluations per line search (None/inf:
        unbounded).
    min_step : float >= 0
        Trial steps below this end the line search.
    curvature_eps : float
        Pairs with ``<s, y> <= curvature_eps * |s| |y|`` are skipped.

    Raises
    ------
    ValueError
        A parameter is out of range.

    Notes
    -----
    Direction by the two-loop recursion (Nocedal & Wright, *Numerical
    Optimization*, 2nd ed., Alg. 7.4), step length by the strong-Wolfe search
    of :mod:`pypty.optim.linesearch` (Alg. 3.5 and 3.6).  Deterministic: the
    same inputs give bit-identical results.
    """

    def __init__(self, hist_length=10, c1=0.1, c2=0.9, reduce_factor=0.1, optimism=3.0,
                 max_count=20, min_step=1e-20, *, curvature_eps=1e-10):
        self.hist_length = self._check_hist(hist_length)
        max_count = math.inf if max_count is None else max_count
        WolfeOptions(c1, c2, reduce_factor, optimism, max_count, min_step)  # validates
        self.c1, self.c2 = float(c1), float(c2)
        self.reduce_factor = float(reduce_factor)
        self.optimism = float(optimism)
        self.max_count = max_count
        self.min_step = float(min_step)
        self.curvature_eps = float(curvature_eps)
        self._hist: list[_Pair] = []
        self._bb_gamma: float | None = None
        self._sig = None
        self.last_reset_reason = ""

    @staticmethod
    def _check_hist(m):
        if m == math.inf:
            return math.inf
        if m < 0 or int(m) != m:
            raise ValueError("hist_length must be a non-negative integer or math.inf")
        return int(m)

    @property
    def history_size(self) -> int:
        """Number of stored (s, y) pairs."""
        return len(self._hist)

    def reset(self, reason: str = "") -> None:
        """Forget all (s, y) pairs and the BB step scale.

        Parameters
        ----------
        reason : str
            Recorded as :attr:`last_reset_reason`.
        """
        self._hist.clear()
        self._bb_gamma = None
        self.last_reset_reason = reason

    def map_history(self, name: str, fn) -> None:
        """Replace block ``name`` of every stored (s, y) pair by ``fn(block)``.

        Used when a refined array changes shape between steps (e.g. the object
        canvas is padded: ``fn`` pads the differences with zeros), so the
        curvature information is kept instead of being reset.

        Parameters
        ----------
        name : str
            Block name; pairs without it are left alone.
        fn : callable
            ``fn(array) -> array``, applied to ``s[name]`` and ``y[name]``.
        """
        for pair in self._hist:
            if name in pair.s:
                pair.s[name] = fn(pair.s[name])
                pair.y[name] = fn(pair.y[name])
        self._sig = None  # the next call adopts the new shapes without a reset

    # ------------------------------------------------------------------ state
    def state_dict(self, to_numpy=None) -> dict:
        """Everything needed to continue bit-identically, as plain NumPy/Python values.

        Parameters
        ----------
        to_numpy : callable or None
            Converts a device array to a NumPy array (e.g.
            ``pypty.backend.Backend.to_numpy``); ``numpy.asarray`` if None
            (which works for NumPy blocks only).

        Returns
        -------
        dict
            ``hist_length`` (int or ``math.inf``), ``bb_gamma`` (float or
            None), ``signature`` (list of ``[name, shape, dtype]`` or None),
            ``last_reset_reason`` (str) and ``pairs``: a list, oldest first,
            of dicts ``{"s": {block: ndarray}, "y": {block: ndarray},
            "rho": float, "gamma": float, "gamma_k": {block: float}}``.
            The arrays are copies (NumPy, the block dtype and shape kept).
        """
        conv = to_numpy if to_numpy is not None else numpy.asarray
        pairs = [{"s": {k: numpy.array(conv(v)) for k, v in p.s.items()},
                  "y": {k: numpy.array(conv(v)) for k, v in p.y.items()},
                  "rho": float(p.rho), "gamma": float(p.gamma),
                  "gamma_k": {k: float(v) for k, v in p.gamma_k.items()}} for p in self._hist]
        sig = None if self._sig is None else [[k, list(s), d] for k, s, d in self._sig]
        return {"hist_length": self.hist_length, "bb_gamma": self._bb_gamma, "signature": sig,
                "last_reset_reason": self.last_reset_reason, "pairs": pairs}

    def load_state_dict(self, state: dict, asarray=None) -> None:
        """Restore a state from :meth:`state_dict` (the line-search constants are not touched).

        Parameters
        ----------
        state : dict
            As returned by :meth:`state_dict` (possibly after a round trip
            through a file).
        asarray : callable or None
            Converts a NumPy array to the block's array type (e.g.
            ``pypty.backend.Backend.asarray`` for CuPy); identity if None.

        Raises
        ------
        ValueError
            A pair lacks ``s``/``y``/``rho``/``gamma``/``gamma_k``, or its
            ``s`` and ``y`` blocks differ in names or shapes.
        """
        conv = asarray if asarray is not None else (lambda a: a)
        hist = []
        for i, p in enumerate(state.get("pairs", [])):
            missing = {"s", "y", "rho", "gamma", "gamma_k"} - set(p)
            if missing:
                raise ValueError(f"optimizer state: pair {i} lacks {sorted(missing)}")
            if set(p["s"]) != set(p["y"]) or any(numpy.shape(p["s"][k]) != numpy.shape(p["y"][k]) for k in p["s"]):
                raise ValueError(f"optimizer state: pair {i} has s and y with different blocks or shapes")
            hist.append(_Pair({k: conv(numpy.array(v)) for k, v in p["s"].items()},
                              {k: conv(numpy.array(v)) for k, v in p["y"].items()},
                              float(p["rho"]), float(p["gamma"]), {k: float(v) for k, v in p["gamma_k"].items()}))
        self.hist_length = self._check_hist(state.get("hist_length", self.hist_length))
        bb = state.get("bb_gamma")
        self._bb_gamma = None if bb is None else float(bb)
        sig = state.get("signature")
        self._sig = None if sig is None else tuple((str(k), tuple(int(n) for n in s), str(d)) for k, s, d in sig)
        self.last_reset_reason = str(state.get("last_reset_reason", ""))
        self._hist = hist

    # ------------------------------------------------------------------ direction
    def _direction(self, g: dict) -> dict:
        """``-H g`` by the two-loop recursion (N&W Alg. 7.4), block-diagonal H0."""
        q = {k: v.copy() for k, v in g.items()}
        alphas = []
        for p in reversed(self._hist):
            a = p.rho * vdot(p.s, q)
            alphas.append(a)
            for k in q:
                q[k] -= a * p.y[k]
        newest = self._hist[-1]
        for k in q:
            q[k] *= newest.gamma_k[k]
        for p, a in zip(self._hist, reversed(alphas)):
            b = p.rho * vdot(p.y, q)
            for k in q:
                q[k] += (a - b) * p.s[k]
        for k in q:
            q[k] *= -1.0
        return q

    def _store(self, s: dict, y: dict, m) -> str:
        ss, yy, sy = vdot(s, s), vdot(y, y), vdot(s, y)
        if not (math.isfinite(sy) and sy > self.curvature_eps * math.sqrt(ss * yy) and yy > 0):
            return "pair skipped: non-positive curvature"
        gamma = sy / yy
        self._bb_gamma = gamma
        if m == 0:
            return ""
        gk = {}
        for k in s:
            syk, yyk = block_dot(s[k], y[k]), block_dot(y[k], y[k])
            r = syk / yyk if yyk > 0 else math.nan
            gk[k] = r if (math.isfinite(r) and r > 0) else gamma
        self._hist.append(_Pair(s, y, 1.0 / sy, gamma, gk))
        while len(self._hist) > m:
            self._hist.pop(0)
        return ""

    def _steepest(self, g0: dict, gnorm: float, update_step):
        """``-g0`` and its first trial step (BB ratio of the last pair, else ``min(1, 1/|g0|)``)."""
        a0 = self._bb_gamma if self._bb_gamma is not None else min(1.0, 1.0 / gnorm)
        return scale(-1.0, g0), update_step * a0

    def _search_direction(self, g0: dict, gnorm: float, update_step, msgs: list):
        """Direction ``d``, first trial step and slope ``vdot(g0, d)``.

        The two-loop direction with history, otherwise (or when it is not a
        descent direction: the history is then reset and a message appended to
        ``msgs``) the steepest-descent one of :meth:`_steepest`.
        """
        if self._hist:
            d, a0 = self._direction(g0), float(update_step)
        else:
            d, a0 = self._steepest(g0, gnorm, update_step)
        dphi0 = vdot(g0, d)
        if not (math.isfinite(dphi0) and dphi0 < 0.0):
            self.reset("not a descent direction")
            msgs.append("history reset: not a descent direction")
            d, a0 = self._steepest(g0, gnorm, update_step)
            dphi0 = vdot(g0, d)
        return d, float(a0), dphi0

    def _reject(self, why: str, msgs: list, x: dict, f0: float, g0: dict, n: int) -> StepResult:
        """Reset the history for ``why`` and return the unchanged point."""
        self.reset(why)
        return StepResult(x, f0, g0, 0.0, n, False, "; ".join(msgs + [why]), 0)

    # ---------------------------------------------------------------------- step
    def step(self, fun, x: dict, f0: float | None = None, g0: dict | None = None, *,
             update_step=1.0, hist_length=None, c1=None, c2=None) -> StepResult:
        """One quasi-Newton iteration: direction, line search, history update.

        The history is reset if the block names, shapes or dtypes differ from
        the previous call, if the direction is not a descent direction, or if
        the step is rejected.

        Parameters
        ----------
        fun : callable
            ``fun(x) -> (loss, grad)`` with the gradient convention of
            :mod:`pypty.optim`.
        x : dict[str, array]
            Current parameters (not modified).
        f0 : float or None
            Loss at ``x``; evaluated here (with ``g0``) if either is None.
        g0 : dict[str, array] or None
            Gradient at ``x``.
        update_step : float
            Scale of the initial trial step (see :mod:`pypty.optim`).
        hist_length, c1, c2 : optional
            Override the constructor values for this call.

        Returns
        -------
        StepResult
            On rejection ``x``, ``f0``, ``g0`` are returned unchanged.

        Raises
        ------
        ValueError
            Invalid overrides, or gradients whose keys/shapes do not match ``x``.
        """
        m = self.hist_length if hist_length is None else self._check_hist(hist_length)
        options = WolfeOptions(self.c1 if c1 is None else float(c1), self.c2 if c2 is None else float(c2),
                               self.reduce_factor, self.optimism, self.max_count, self.min_step)
        msgs = []

        sig = signature(x)
        if self._sig is not None and sig != self._sig:
            self.reset("block set changed")
            msgs.append("history reset: block set changed")
        self._sig = sig
        while len(self._hist) > m:
            self._hist.pop(0)

        n = 0
        if f0 is None or g0 is None:
            f0, g0 = fun(x)
            n = 1
        f0 = float(f0)
        check_grad(x, g0)
        if not math.isfinite(f0):
            return self._reject("rejected: initial loss not finite", msgs, x, f0, g0, n)
        gnorm = norm(g0)
        if not math.isfinite(gnorm):
            return self._reject("rejected: gradient not finite", msgs, x, f0, g0, n)
        if gnorm == 0.0:
            msgs.append("rejected: zero gradient")
            return StepResult(x, f0, g0, 0.0, n, False, "; ".join(msgs), len(self._hist))

        d, a0, dphi0 = self._search_direction(g0, gnorm, update_step, msgs)
        pt, n_ls, why = line_search(fun, x, d, f0, dphi0, a0, options)
        n += n_ls
        if pt is None:
            return self._reject(f"rejected: {why}", msgs, x, f0, g0, n)
        if why:
            msgs.append(why)
        s = {k: pt.x[k] - x[k] for k in x}
        y = {k: pt.g[k] - g0[k] for k in x}
        skipped = self._store(s, y, m)
        if skipped:
            msgs.append(skipped)
        return StepResult(pt.x, pt.f, pt.g, pt.a, n, True, "; ".join(msgs), len(self._hist))
