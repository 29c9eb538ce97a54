"""Splitting schemes of the multislice model: the ordered transmission and propagation steps.

A specimen is a stack of S slabs; slab ``s`` has thickness
``slice_distances[s]`` (Å) and transmission function ``O_s`` (its projected
potential as ``exp(i sigma V_s)``, absorption as ``|O_s| < 1``).  Passing the
wave through the stack is the product of two non-commuting operators,
transmission ``T`` and Fresnel propagation ``P`` (Kirkland, *Advanced
Computing in Electron Microscopy*, 2nd ed., Sec. 6.4).  A *scheme* is the
ordered list of steps that approximates the stack:

``multislice`` (first order, the standard method)
    ``T_0 P(dz_0) T_1 P(dz_1) ... T_{S-1}``: the potential of a slab is
    applied at its entrance plane.

``better_multislice`` (second order, symmetric Strang splitting)
    ``P(dz_0/2) T_0 P(dz_0/2 + dz_1/2) T_1 ... T_{S-1}``: the potential of a
    slab is applied at its centre (Strang, SIAM J. Numer. Anal. 5 (1968) 506).
    The wave is returned at the centre of the last slab; in the far field the
    missing half step only adds a phase in the detector plane.

``yoshida`` (fourth order)
    Each Strang step of a slab is replaced by three with weights
    ``w1, w0, w1``, ``w1 = 1/(2 - 2^(1/3))``, ``w0 = -2^(1/3)/(2 - 2^(1/3))``
    (Yoshida, Phys. Lett. A 150 (1990) 262, Eq. 5.19).  A transmission over
    a fraction ``w`` of a slab is ``O_s^w = exp(w log O_s)`` (principal
    branch: valid while the phase of one slab stays within (-pi, pi);
    :func:`pypty.operators.transmission.transmission_power`).

All schemes reduce to the same operator for a single slab in the far field
up to a propagation of the probe by ``dz_0/2`` (second- and fourth-order
schemes) -- for S slabs the difference is the commutator error, which the
higher-order schemes reduce (tested against a fine-step reference in
``tests/model/test_schemes.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SCHEMES", "Step", "scheme_steps"]

SCHEMES = ("multislice", "better_multislice", "yoshida")

_CBRT2 = 2.0 ** (1.0 / 3.0)
_W1 = 1.0 / (2.0 - _CBRT2)
_W0 = -_CBRT2 / (2.0 - _CBRT2)


@dataclass(frozen=True)
class Step:
    """One step of a scheme.

    ``kind`` is ``"T"`` (transmit through slab ``slice_index`` with exponent
    ``weight``) or ``"P"`` (Fresnel propagation over ``distance`` Å).
    """

    kind: str
    slice_index: int = -1
    weight: float = 1.0
    distance: float = 0.0


def _merge(steps):
    """Merge consecutive propagations, drop zero ones and a trailing one."""
    out = []
    for st in steps:
        if st.kind == "P" and out and out[-1].kind == "P":
            out[-1] = Step("P", distance=out[-1].distance + st.distance)
        else:
            out.append(st)
    out = [st for st in out if not (st.kind == "P" and st.distance == 0.0)]
    while out and out[-1].kind == "P":
        out.pop()
    return out


def scheme_steps(method: str, slice_distances) -> list:
    """Steps of a splitting scheme for a stack of slabs.

    Parameters
    ----------
    method : {"multislice", "better_multislice", "yoshida"}
    slice_distances : sequence of float, length S
        Slab thicknesses in Å (the last is used only by the higher-order
        schemes, inside the last slab).

    Returns
    -------
    list of :class:`Step`; consecutive propagations are merged and a final
    propagation after the last transmission is dropped.

    Raises
    ------
    ValueError
        Unknown ``method``.
    """
    dz = [float(d) for d in np.atleast_1d(slice_distances)]
    s_count = len(dz)
    steps = []
    if method == "multislice":
        for s in range(s_count):
            steps.append(Step("T", s))
            steps.append(Step("P", distance=dz[s]))
    elif method == "better_multislice":
        for s in range(s_count):
            steps += [Step("P", distance=dz[s] / 2), Step("T", s), Step("P", distance=dz[s] / 2)]
    elif method == "yoshida":
        for s in range(s_count):
            for w in (_W1, _W0, _W1):
                steps += [Step("P", distance=w * dz[s] / 2), Step("T", s, weight=w),
                          Step("P", distance=w * dz[s] / 2)]
    else:
        raise ValueError(f"propmethod {method!r} is not a known scheme; choose one of {SCHEMES}")
    return _merge(steps)
