"""Physics-free L-BFGS with a strong-Wolfe line search over named blocks.

Data model
----------
A *parameter vector* is a ``dict[str, array]`` of named blocks (e.g.
``{"object": ..., "probe": ...}``).  Each block is a real or complex NumPy or
CuPy array of any shape.  All array code dispatches on the array module of the
block (:func:`_xp`), so CuPy arrays stay on the GPU; only NumPy and the
standard library are imported here.

The inner product is ``vdot(a, b) = sum_k Re(sum(conj(a_k) * b_k))``,
accumulated in float64 and returned as a Python float.  It is the real inner
product of the vectors obtained by viewing every complex entry as two reals.

Gradient convention
-------------------
The objective is ``fun(x) -> (loss, grad)`` where ``grad`` has the same keys,
shapes and dtypes as ``x``.  For a real block ``g_k = dL/dx_k``; for a complex
block ``g_k = 2 dL/d(conj z_k)`` (Wirtinger derivative; equal to
``dL/dRe z + 1j dL/dIm z``).  With this convention, to first order,
``L(x + d) = L(x) + vdot(g, d)`` for real and complex blocks alike, so the
optimizer never needs to know which blocks are complex.

Algorithm
---------
* Direction: the L-BFGS two-loop recursion (Nocedal & Wright, *Numerical
  Optimization*, 2nd ed., Alg. 7.4) with a block-diagonal initial inverse
  Hessian ``H0 = diag(gamma_k I)``, where ``gamma_k = <s_k, y_k>/<y_k, y_k>``
  is the Barzilai-Borwein (1988) ratio of the newest pair restricted to block
  ``k`` (the global ratio is used where the block ratio is non-positive or not
  finite).  Pairs with ``<s, y> <= curvature_eps * |s| |y|`` are not stored,
  so H stays positive definite.
* Step length: a line search enforcing the *strong* Wolfe conditions
  ``f(a) <= f0 + c1 a f'(0)`` and ``|f'(a)| <= c2 |f'(0)|`` (N&W Alg. 3.5
  bracketing and Alg. 3.6 zoom with safeguarded cubic/quadratic
  interpolation, eq. 3.59).  A step that does not strictly lower the loss is
  never accepted.
* Initial trial step: with history, ``update_step`` (the BB-scaled direction
  makes 1 natural).  Without history the direction is ``-g`` and the trial is
  ``update_step * gamma_BB`` if a previous accepted step left a BB ratio
  (this is what makes ``hist_length=0`` a usable BB-scaled steepest descent),
  otherwise ``update_step * min(1, 1/|g|)`` so the first trial moves ``x`` by
  at most ``update_step`` in norm, even when ``|g|`` is huge.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy

__all__ = ["vdot", "axpy", "scale", "norm", "LBFGS", "StepResult"]


def _xp(a):
    """Array module (``numpy`` or ``cupy``) of array ``a``; never imports CuPy."""
    cupy = sys.modules.get("cupy")
    return cupy.get_array_module(a) if cupy is not None else numpy


def _block_dot(a, b) -> float:
    """``Re(sum(conj(a) * b))`` for two arrays of equal shape, in float64."""
    xp = _xp(a)
    if a.dtype == b.dtype and a.dtype in (numpy.float64, numpy.complex128):
        return float(xp.vdot(a.ravel(), b.ravel()).real)
    ac, bc = xp.iscomplexobj(a), xp.iscomplexobj(b)
    if ac and bc:
        r = xp.sum(a.real * b.real, dtype=xp.float64) + xp.sum(a.imag * b.imag, dtype=xp.float64)
    elif ac:
        r = xp.sum(a.real * b, dtype=xp.float64)
    elif bc:
        r = xp.sum(a * b.real, dtype=xp.float64)
    else:
        r = xp.sum(a * b, dtype=xp.float64)
    return float(r)


def vdot(a: dict, b: dict) -> float:
    """Real inner product ``sum_k Re(sum(conj(a[k]) * b[k]))`` of two block dicts.

    Blocks may be real or complex arrays of any shape (``a[k].shape ==
    b[k].shape``).  Sums are accumulated in float64; returns a Python float.
    Raises ``KeyError`` if ``b`` lacks a key of ``a``.
    """
    return sum((_block_dot(a[k], b[k]) for k in a), 0.0)


def norm(a: dict) -> float:
    """Euclidean norm ``sqrt(vdot(a, a))`` of a block dict (Python float)."""
    return math.sqrt(max(vdot(a, a), 0.0))


def scale(alpha: float, d: dict) -> dict:
    """Return ``{k: alpha * d[k]}`` as new arrays with the dtype of each block kept.

    ``alpha`` must be a real scalar (complex64 blocks stay complex64).
    """
    alpha = float(alpha)
    return {k: (alpha * v).astype(v.dtype, copy=False) for k, v in d.items()}


def axpy(alpha: float, d: dict, x: dict) -> dict:
    """Return ``{k: x[k] + alpha * d[k]}`` as new arrays with ``x[k].dtype`` kept.

    ``alpha`` is a real scalar.  Raises ``KeyError`` if ``d`` lacks a key of
    ``x`` and ``TypeError`` if a complex ``d[k]`` would be added to a real
    ``x[k]``.
    """
    alpha = float(alpha)
    out = {}
    for k, xk in x.items():
        dk = d[k]
        xp = _xp(xk)
        if xp.iscomplexobj(dk) and not xp.iscomplexobj(xk):
            raise TypeError(f"block {k!r}: complex update for a real block")
        out[k] = (xk + alpha * dk).astype(xk.dtype, copy=False)
    return out


def _signature(x: dict) -> tuple:
    return tuple(sorted((k, tuple(v.shape), str(v.dtype)) for k, v in x.items()))


def _check_grad(x: dict, g: dict) -> None:
    if set(g) != set(x):
        raise ValueError(f"gradient keys {sorted(g)} differ from parameter keys {sorted(x)}")
    for k, v in x.items():
        if tuple(g[k].shape) != tuple(v.shape):
            raise ValueError(f"block {k!r}: gradient shape {g[k].shape} != parameter shape {v.shape}")


@dataclass
class StepResult:
    """Outcome of one :meth:`LBFGS.step`.

    Attributes: ``x`` new parameters (the input dict itself if rejected);
    ``f`` loss at ``x``; ``g`` gradient at ``x``; ``step`` accepted step
    length along the search direction (0.0 if rejected); ``n_evals`` calls of
    ``fun`` in this step (including the initial one when ``f0``/``g0`` were
    not given); ``accepted``; ``message`` why the step was rejected or the
    history reset / a pair skipped ("" if nothing notable);
    ``history_size`` number of stored (s, y) pairs after the step.
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


@dataclass
class _Pt:
    a: float
    f: float
    dphi: float | None  # directional derivative; None if unusable
    x: dict | None = None
    g: dict | None = None


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

    Raises ``ValueError`` for out-of-range parameters.  Deterministic: the same
    inputs give bit-identical results.
    """

    def __init__(self, hist_length=10, c1=0.1, c2=0.9, reduce_factor=0.1, optimism=3.0,
                 max_count=20, min_step=1e-20, *, curvature_eps=1e-10):
        self.hist_length = self._check_hist(hist_length)
        self._check_wolfe(c1, c2)
        if not 0.0 < reduce_factor < 1.0:
            raise ValueError("reduce_factor must be in (0, 1)")
        if not optimism > 1.0:
            raise ValueError("optimism must be > 1")
        if max_count is not None and not max_count >= 1:
            raise ValueError("max_count must be >= 1, None or inf")
        if not min_step >= 0.0:
            raise ValueError("min_step must be >= 0")
        self.c1, self.c2 = float(c1), float(c2)
        self.reduce_factor = float(reduce_factor)
        self.optimism = float(optimism)
        self.max_count = math.inf if max_count is None else max_count
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

    @staticmethod
    def _check_wolfe(c1, c2):
        if not 0.0 < c1 < c2 < 1.0:
            raise ValueError("need 0 < c1 < c2 < 1")

    @property
    def history_size(self) -> int:
        """Number of stored (s, y) pairs."""
        return len(self._hist)

    def reset(self, reason: str = "") -> None:
        """Forget all (s, y) pairs and the BB step scale; ``reason`` is recorded."""
        self._hist.clear()
        self._bb_gamma = None
        self.last_reset_reason = reason

    def map_history(self, name: str, fn) -> None:
        """Replace block ``name`` of every stored (s, y) pair by ``fn(block)``.

        Used when a refined array changes shape between steps (e.g. the object
        canvas is padded: ``fn`` pads the differences with zeros), so the
        curvature information is kept instead of being reset.
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
            syk, yyk = _block_dot(s[k], y[k]), _block_dot(y[k], y[k])
            r = syk / yyk if yyk > 0 else math.nan
            gk[k] = r if (math.isfinite(r) and r > 0) else gamma
        self._hist.append(_Pair(s, y, 1.0 / sy, gamma, gk))
        while len(self._hist) > m:
            self._hist.pop(0)
        return ""

    # ---------------------------------------------------------------------- step
    def step(self, fun, x: dict, f0: float | None = None, g0: dict | None = None, *,
             update_step=1.0, hist_length=None, c1=None, c2=None) -> StepResult:
        """One quasi-Newton iteration: direction, line search, history update.

        ``fun(x) -> (loss, grad)`` with the gradient convention of the module
        docstring.  ``f0``/``g0`` are the loss and gradient at ``x`` (evaluated
        here if either is None).  ``update_step`` scales the initial trial
        step; ``hist_length``, ``c1``, ``c2`` override the constructor values
        for this call.  The history is reset if the block names, shapes or
        dtypes differ from the previous call, if the direction is not a descent
        direction, or if the step is rejected.  Returns a :class:`StepResult`;
        on rejection ``x``, ``f0``, ``g0`` are returned unchanged.  Raises
        ``ValueError`` for invalid overrides or gradients whose keys/shapes do
        not match ``x``.
        """
        m = self.hist_length if hist_length is None else self._check_hist(hist_length)
        c1 = self.c1 if c1 is None else float(c1)
        c2 = self.c2 if c2 is None else float(c2)
        self._check_wolfe(c1, c2)
        msgs = []

        sig = _signature(x)
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
        _check_grad(x, g0)

        def reject(why):
            self.reset(why)
            msgs.append(why)
            return StepResult(x, f0, g0, 0.0, n, False, "; ".join(msgs), 0)

        if not math.isfinite(f0):
            return reject("rejected: initial loss not finite")
        gnorm = norm(g0)
        if not math.isfinite(gnorm):
            return reject("rejected: gradient not finite")
        if gnorm == 0.0:
            msgs.append("rejected: zero gradient")
            return StepResult(x, f0, g0, 0.0, n, False, "; ".join(msgs), len(self._hist))

        def fresh_start():
            a0 = self._bb_gamma if self._bb_gamma is not None else min(1.0, 1.0 / gnorm)
            return scale(-1.0, g0), update_step * a0

        if self._hist:
            d, a0 = self._direction(g0), float(update_step)
        else:
            d, a0 = fresh_start()
        dphi0 = vdot(g0, d)
        if not (math.isfinite(dphi0) and dphi0 < 0.0):
            self.reset("not a descent direction")
            msgs.append("history reset: not a descent direction")
            d, a0 = fresh_start()
            dphi0 = vdot(g0, d)

        pt, n_ls, why = self._line_search(fun, x, d, f0, dphi0, float(a0), c1, c2)
        n += n_ls
        if pt is None:
            return reject(f"rejected: {why}")
        if why:
            msgs.append(why)
        s = {k: pt.x[k] - x[k] for k in x}
        y = {k: pt.g[k] - g0[k] for k in x}
        skipped = self._store(s, y, m)
        if skipped:
            msgs.append(skipped)
        return StepResult(pt.x, pt.f, pt.g, pt.a, n, True, "; ".join(msgs), len(self._hist))

    # --------------------------------------------------------------- line search
    def _line_search(self, fun, x, d, f0, dphi0, a0, c1, c2):
        """Strong-Wolfe search along ``d`` (N&W Alg. 3.5 + 3.6).

        Returns ``(point or None, n_evals, message)``; ``point`` satisfies
        sufficient decrease and ``f < f0``.
        """
        count = 0
        best = [None]

        def armijo(p):
            return math.isfinite(p.f) and p.f <= f0 + c1 * p.a * dphi0 and p.f < f0

        def curvature(p):
            return abs(p.dphi) <= -c2 * dphi0

        def evaluate(a):
            nonlocal count
            with numpy.errstate(over="ignore", invalid="ignore"):
                xa = axpy(a, d, x)
            f, g = fun(xa)
            count += 1
            f = float(f)
            _check_grad(x, g)
            dphi = vdot(g, d) if math.isfinite(f) else math.nan
            p = _Pt(a, f, dphi if math.isfinite(dphi) else None, xa, g)
            if p.dphi is not None and armijo(p) and (best[0] is None or p.f < best[0].f):
                best[0] = p
            return p

        def stop(why):
            if best[0] is not None:
                return best[0], count, f"line search stopped ({why}); accepted best sufficient-decrease point"
            return None, count, why

        def budget_left():
            return count < self.max_count

        # Bracketing phase (Alg. 3.5).
        prev = _Pt(0.0, f0, dphi0)
        a = a0
        lo = hi = None
        while True:
            if not math.isfinite(a):
                return stop("step length overflow")
            if a < self.min_step:
                return stop(f"step below min_step={self.min_step:g}")
            if not budget_left():
                return stop(f"max_count={self.max_count} evaluations reached")
            p = evaluate(a)
            if p.dphi is None or not armijo(p) or (prev.a > 0 and p.f >= prev.f):
                lo, hi = prev, p
                break
            if curvature(p):
                return p, count, ""
            if p.dphi >= 0.0:
                lo, hi = p, prev
                break
            prev, a = p, self.optimism * a

        # Zoom phase (Alg. 3.6).
        while True:
            if abs(hi.a - lo.a) <= 1e-14 * max(lo.a, hi.a):
                return stop("bracket collapsed")
            a = self._interpolate(lo, hi, f0, c1, dphi0)
            if a < self.min_step:
                return stop(f"step below min_step={self.min_step:g}")
            if not budget_left():
                return stop(f"max_count={self.max_count} evaluations reached")
            p = evaluate(a)
            if p.dphi is None or not armijo(p) or p.f >= lo.f:
                hi = p
            else:
                if curvature(p):
                    return p, count, ""
                if p.dphi * (hi.a - lo.a) >= 0.0:
                    hi = lo
                lo = p

    def _interpolate(self, lo: _Pt, hi: _Pt, f0, c1, dphi0) -> float:
        """Safeguarded cubic (N&W eq. 3.59) / quadratic trial between lo and hi.

        If ``hi`` fails sufficient decrease (or is not finite) the ratio
        ``theta = (a - lo)/(hi - lo)`` is clipped to ``[reduce_factor, 0.5]``
        (``reduce_factor`` itself when interpolation is unusable); otherwise
        to ``[0.1, 0.9]`` (bisection when unusable).
        """
        L = hi.a - lo.a
        finite_hi = math.isfinite(hi.f)
        shrink = (not finite_hi) or hi.dphi is None or hi.f > f0 + c1 * hi.a * dphi0
        rf = min(self.reduce_factor, 0.5)
        lo_c, hi_c, default = (rf, 0.5, rf) if shrink else (0.1, 0.9, 0.5)
        theta = math.nan
        if finite_hi and lo.dphi is not None:
            if hi.dphi is not None:
                d1 = lo.dphi + hi.dphi - 3.0 * (lo.f - hi.f) / (lo.a - hi.a)
                disc = d1 * d1 - lo.dphi * hi.dphi
                if disc >= 0.0:
                    d2 = math.copysign(math.sqrt(disc), L)
                    den = hi.dphi - lo.dphi + 2.0 * d2
                    if den != 0.0:
                        theta = (hi.a - L * (hi.dphi + d2 - d1) / den - lo.a) / L
            if not math.isfinite(theta):
                den = 2.0 * (hi.f - lo.f - lo.dphi * L)
                if den > 0.0:
                    theta = -lo.dphi * L / den
        if not math.isfinite(theta):
            theta = default
        theta = min(max(theta, lo_c), hi_c)
        return lo.a + theta * L
