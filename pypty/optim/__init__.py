"""Physics-free optimization: block-vector algebra, a strong-Wolfe line search and L-BFGS.

The optimizer sees named blocks (real or complex arrays, NumPy or CuPy) and a
function returning the loss and the gradient; it knows nothing about
ptychography.  See :mod:`pypty.optim.lbfgs` for the data model and the
gradient convention.
"""
from .lbfgs import LBFGS, StepResult, axpy, norm, scale, vdot

__all__ = ["vdot", "axpy", "scale", "norm", "LBFGS", "StepResult"]
