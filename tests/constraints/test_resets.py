"""Run-level resets (pypty.constraints.resets): restart_from_vacuum (design 3.14) and reset_positions (3.15).

Exact maps against direct NumPy transcriptions, no change -> UNCHANGED, inputs untouched, the mapping of the
given positions into a grown canvas, and the validation warnings.
"""
from types import SimpleNamespace

import numpy as np
import pytest

from pypty.constraints import REGISTRY, UNCHANGED
from pypty.constraints.resets import ResetPositions, RestartFromVacuum
from pypty.parameters.errors import PyptyParameterError


def _ctx(refine=("obj", "probe", "positions"), offset=(0.0, 0.0), given=None):
    return SimpleNamespace(settings=SimpleNamespace(refine=tuple(refine)), setup=None,
                           position_offset=np.asarray(offset, float), given_positions=given)


def _obj(rng, shape=(2, 2, 6, 7)):
    return (rng.uniform(0.5, 1.2, shape) * np.exp(1j * rng.uniform(-1, 1, shape))).astype(np.complex128)


def test_registered_in_order():
    names = list(REGISTRY)
    assert names.index("restart_from_vacuum") < names.index("reset_positions")
    assert RestartFromVacuum.from_params({"restart_from_vacuum": False}, None) is None
    assert ResetPositions.from_params({"reset_positions": False}, None) is None


def test_restart_from_vacuum_map(bk):
    rng = np.random.default_rng(0)
    obj = bk.asarray(_obj(rng))
    before = bk.to_numpy(obj).copy()
    c = RestartFromVacuum({"restart_from_vacuum": True}, bk)
    new, change = c.apply({"obj": obj, "probe": None, "positions": None}, 0, _ctx(refine=("probe",)))
    assert change.kind == "reset" and change.reason
    assert set(new) == {"obj"}  # probe and positions untouched
    out = bk.to_numpy(new["obj"])
    assert out.dtype == before.dtype and out.shape == before.shape
    np.testing.assert_array_equal(out, np.ones_like(before))
    np.testing.assert_array_equal(bk.to_numpy(obj), before)  # input not modified
    # already vacuum: no change
    assert c.apply({"obj": new["obj"]}, 1, _ctx()) == ({}, UNCHANGED)


def test_restart_from_vacuum_schedule(bk):
    c = RestartFromVacuum.from_params({"restart_from_vacuum": lambda e: e == 3}, bk)
    assert [c.active(e) for e in range(5)] == [False, False, False, True, False]


def test_restart_from_vacuum_warnings():
    assert RestartFromVacuum.warnings({"restart_from_vacuum": False, "obj": None}) == []
    assert RestartFromVacuum.warnings({"restart_from_vacuum": lambda e: e == 3, "obj": None}) == []
    w = RestartFromVacuum.warnings({"restart_from_vacuum": True, "obj": None})
    assert len(w) == 1 and "restart_from_vacuum" in w[0] and "every epoch" in w[0]
    w = RestartFromVacuum.warnings({"restart_from_vacuum": lambda e: e == 3, "obj": np.ones((4, 4, 1, 2))})
    assert len(w) == 1 and "2 object modes" in w[0]
    assert RestartFromVacuum.warnings({"restart_from_vacuum": False, "obj": np.ones((4, 4, 1, 2))}) == []
    assert RestartFromVacuum.check_params({"restart_from_vacuum": True}) == []


def test_reset_positions_grown_canvas(bk):
    rng = np.random.default_rng(1)
    given = rng.uniform(0, 20, (9, 2))
    # the canvas grew by 3 px at the top and 5 px at the left: canvas = given + (3, 5), offset = -(3, 5)
    offset = np.array([-3.0, -5.0])
    refined = bk.asarray(given - offset + rng.normal(0, 0.4, given.shape))
    before = bk.to_numpy(refined).copy()
    c = ResetPositions({"reset_positions": True}, bk)
    new, change = c.apply({"positions": refined, "obj": None}, 4, _ctx(refine=(), offset=offset, given=given))
    assert change.kind == "reset" and set(new) == {"positions"}
    out = bk.to_numpy(new["positions"])
    np.testing.assert_allclose(out + offset, given, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(out, given - offset[None, :])  # direct transcription
    np.testing.assert_array_equal(bk.to_numpy(refined), before)
    assert c.apply({"positions": new["positions"]}, 5, _ctx(offset=offset, given=given)) == ({}, UNCHANGED)


def test_reset_positions_shape_mismatch(bk):
    c = ResetPositions({"reset_positions": True}, bk)
    with pytest.raises(PyptyParameterError, match="reset_positions"):
        c.apply({"positions": bk.asarray(np.zeros((4, 2)))}, 0, _ctx(given=np.zeros((5, 2))))


def test_reset_positions_warnings():
    assert ResetPositions.warnings({"reset_positions": False}) == []
    assert ResetPositions.warnings({"reset_positions": lambda e: e == 5}) == []
    w = ResetPositions.warnings({"reset_positions": True})
    assert len(w) == 1 and "reset_positions" in w[0]
    assert ResetPositions.check_params({"reset_positions": True}) == []
