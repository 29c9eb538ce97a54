"""Physics-free optimization: block-vector algebra, a strong-Wolfe line search and L-BFGS.

The optimizer sees named blocks (real or complex arrays, NumPy or CuPy) and a
function returning the loss and the gradient; it knows nothing about
ptychography.

Modules: :mod:`~pypty.optim.blocks` (vector algebra over block dicts),
:mod:`~pypty.optim.linesearch` (scalar strong-Wolfe search and its adapter to
block dicts), :mod:`~pypty.optim.lbfgs` (:class:`LBFGS`, :class:`StepResult`).

Data model
----------
A *parameter vector* is a ``dict[str, array]`` of named blocks (e.g.
``{"object": ..., "probe": ...}``).  Each block is a real or complex NumPy or
CuPy array of any shape.  All array code dispatches on the array module of the
block (:func:`pypty.optim.blocks.array_module`), so CuPy arrays stay on the
GPU; only NumPy and the standard library are imported here.

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
  interpolation, eq. 3.59/3.58).  A step that does not strictly lower the
  loss is never accepted.
* Initial trial step: with history, ``update_step`` (the BB-scaled direction
  makes 1 natural).  Without history the direction is ``-g`` and the trial is
  ``update_step * gamma_BB`` if a previous accepted step left a BB ratio
  (this is what makes ``hist_length=0`` a usable BB-scaled steepest descent),
  otherwise ``update_step * min(1, 1/|g|)`` so the first trial moves ``x`` by
  at most ``update_step`` in norm, even when ``|g|`` is huge.
"""
from .blocks import axpy, norm, scale, vdot
from .lbfgs import LBFGS, StepResult

__all__ = ["vdot", "axpy", "scale", "norm", "LBFGS", "StepResult"]
