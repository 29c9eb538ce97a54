"""The seams of the engine: the objective (loss_weight, loss terms, reparametrisations), replace_arrays, hand
constraints and the per-term loss columns.

The registries of pypty.regularizers and pypty.constraints are empty today, so the tests use small terms and
constraints of their own, passed to the engine the way the registries' classes will be.
"""
import csv
import os

import numpy as np
import pytest

from conftest import fd_check, host, test_backend
from pypty.constraints import Change
from pypty.engine.driver import reconstruct
from pypty.engine.session import Reconstruction
from pypty.model.setup import build_setup
from pypty.parameters import validate
from pypty.results import load_results
from synthetic import base_params, dataset, default_probe


@pytest.fixture(scope="module")
def small():
    _, probe, pos, data = dataset(4, 3.0, 44, seed=1)
    return pos, probe, data


def _rec(small, terms=(), constraints=(), **kw):
    pos, probe, data = small
    p = validate(base_params(data, pos, kw.pop("probe", probe), **kw))
    return Reconstruction(p, build_setup(p, test_backend()), terms, constraints)


class Spring:
    """R = w sum |p - p0|^2 on the positions (real array)."""

    name, PARAMS = "spring", ()

    def __init__(self, p0, weight=0.3, start=0):
        self.p0, self.weight, self.start = test_backend().asarray(np.array(p0, dtype=float)), weight, start

    def active(self, epoch):
        return epoch >= self.start

    def key(self, epoch):
        return (self.weight,)

    def value_and_grad(self, arrays, epoch):
        d = arrays["positions"] - self.p0
        return float(self.weight * test_backend().xp.sum(d * d)), {"positions": 2 * self.weight * d}


class Vacuum:
    """R = w sum |O - 1|^2 on the object (complex array): G = 2 dR/d conj(O) = 2 w (O - 1)."""

    name, PARAMS = "vacuum", ()

    def __init__(self, weight=50.0):
        self.weight = weight

    def active(self, epoch):
        return True

    def key(self, epoch):
        return (self.weight,)

    def value_and_grad(self, arrays, epoch):
        d = arrays["obj"] - 1
        return float(self.weight * test_backend().xp.sum((d * d.conj()).real)), {"obj": 2 * self.weight * d}


@pytest.mark.parametrize("block, kw, terms", [
    ("obj", dict(loss_weight=0.7), ()),
    ("positions", dict(loss_weight=0.7, update_probe_pos=1), ("spring",)),
    ("obj_phase", dict(phase_only_obj=1), ("vacuum",)),
    ("obj", dict(loss_weight=2.5), ("vacuum",)),
])
def test_objective_gradient_matches_central_differences(small, block, kw, terms):
    """Weighted data term plus loss terms, through the reparametrisation chain rule."""
    made = {"spring": Spring(small[0] + 0.4), "vacuum": Vacuum()}
    r = _rec(small, [made[t] for t in terms], obj=np.exp(0.05j) * np.ones((44, 44, 1, 1)), **kw)
    s = r.settings(0)
    x = r.blocks(s)
    fun = r.objective(s)
    ana, num = fd_check(fun, x, block, np.random.default_rng(2))
    assert abs(num) > 1e-8
    assert np.isclose(ana, num, rtol=1e-5), (ana, num)


def test_objective_is_weighted_data_plus_terms(small):
    spring = Spring(small[0] + 0.4)
    r = _rec(small, [spring], loss_weight=0.7, update_probe_pos=1)
    s = r.settings(0)
    x = r.blocks(s)
    fun = r.objective(s)
    loss, g = fun(x)
    data, _ = r.setup.model.loss_and_grad(r.arrays, s.batches(r.setup.compute_batch), r.setup.get_data)
    parts = fun.parts_at(g)
    assert parts == {"loss_data": 0.7 * data, "reg_spring": spring.value_and_grad(r.arrays, 0)[0]}
    assert np.isclose(loss, parts["loss_data"] + parts["reg_spring"], rtol=1e-15)
    assert fun.part_names == ("loss_data", "reg_spring")


def test_inactive_terms_do_not_count(small):
    spring = Spring(small[0] + 0.4, start=5)
    r = _rec(small, [spring], update_probe_pos=1)
    s = r.settings(0)
    fun = r.objective(s)
    loss, g = fun(r.blocks(s))
    assert fun.parts_at(g) == {"loss_data": loss} and fun.part_names == ("loss_data",)


def test_loss_columns_per_term_in_loss_csv_and_results(small, tmp_path):
    pos, probe, data = small
    out = str(tmp_path / "run")
    spring = Spring(pos + 0.2)
    p = validate(base_params(data, pos, probe, epoch_max=4, update_probe_pos=1, output_folder=out,
                             save_figures=()))
    res = reconstruct(p, terms=[spring])
    rows = list(csv.DictReader(open(os.path.join(out, "loss.csv"))))
    assert list(rows[0]) == ["epoch", "wall_time_s", "loss", "loss_data", "reg_spring", "step", "accepted",
                             "evaluations", "refined"]
    for row, loss in zip(rows, res["loss"]):
        assert float(row["loss"]) == loss
        assert np.isclose(float(row["loss_data"]) + float(row["reg_spring"]), loss, rtol=1e-14)
        assert float(row["reg_spring"]) > 0
    saved = load_results(out)["loss"]
    np.testing.assert_array_equal(saved["reg_spring"], [float(r["reg_spring"]) for r in rows])
    np.testing.assert_array_equal(saved["loss_data"], [float(r["loss_data"]) for r in rows])


def test_without_terms_only_the_data_column(small, tmp_path):
    pos, probe, data = small
    out = str(tmp_path / "plain")
    p = validate(base_params(data, pos, probe, epoch_max=2, output_folder=out, save_figures=()))
    res = reconstruct(p)
    rows = list(csv.DictReader(open(os.path.join(out, "loss.csv"))))
    assert [k for k in rows[0] if k.startswith(("loss", "reg_"))] == ["loss", "loss_data"]
    assert [float(r["loss_data"]) for r in rows] == res["loss"]


# ------------------------------------------------------------------ replace_arrays
def test_replace_arrays_history_rules_and_kept_blocks(small):
    r = _rec(small, phase_only_obj=1)
    for epoch in range(3):
        r.step(epoch)
    assert r.opt.history_size >= 1 and "obj_phase" in r.kept and r.cache is not None
    hist = r.opt.history_size
    r.replace_arrays({"positions": r.arrays["positions"] + 0.0}, "keep test", history="keep")
    assert r.opt.history_size == hist and "obj_phase" in r.kept and r.cache is None  # obj untouched
    r.step(3)
    obj = r.arrays["obj"] * np.exp(0.01j)
    r.replace_arrays({"obj": obj}, "phase offset", history="reset")
    assert r.opt.history_size == 0 and r.opt.last_reset_reason == "phase offset"
    assert "obj_phase" not in r.kept and r.arrays["obj"] is obj and r.cache is None
    rep = r.step(4)
    assert rep.message.startswith("phase offset")
    with pytest.raises(ValueError, match="not arrays"):
        r.replace_arrays({"nonsense": obj}, "x")
    with pytest.raises(ValueError, match="needs maps"):
        r.replace_arrays({"obj": obj}, "x", history="map")


def test_replace_arrays_map_keeps_and_maps_kept_blocks(small):
    r = _rec(small, phase_only_obj=1)
    for epoch in range(3):
        r.step(epoch)
    phase = r.kept["obj_phase"]
    hist = r.opt.history_size
    r.replace_arrays({"obj": r.arrays["obj"] * -1}, "flip", history="map",
                     maps={"obj_phase": lambda v: v + np.pi})
    assert r.opt.history_size == hist
    np.testing.assert_array_equal(host(r.kept["obj_phase"]), host(phase + np.pi))


# ------------------------------------------------------------------ hand constraints
class Once:
    """A constraint acting at one epoch with a given change kind."""

    PARAMS = ()

    def __init__(self, kind, at=2, name="once"):
        self.kind, self.at, self.name = kind, at, name

    def active(self, epoch):
        return epoch == self.at

    def apply(self, arrays, epoch, ctx):
        if self.kind == "none":
            return arrays, Change()
        if self.kind == "reset":
            return {"obj": arrays["obj"] * np.exp(0.02j)}, Change("reset", "phase offset")
        # a unitary mixing of the two probe modes: the incoherent sum, hence the loss, is unchanged
        c, s = np.cos(0.3), np.sin(0.3)
        bk = test_backend()
        u = bk.asarray(np.array([[c, -s], [s, c]]))

        def mix(v):
            return bk.xp.einsum("ij,kjyx->kiyx", u, v)

        return {"probe": mix(arrays["probe"])}, Change("map", "mode rotation", {"probe": mix})


def _evals(small, constraint):
    r = _rec(small, constraints=[constraint], probe=default_probe(n_modes=2))
    reps = [r.step(e) for e in range(4)]
    return r, reps


def test_constraint_reset_clears_cache_and_history(small):
    _, quiet = _evals(small, Once("none"))
    r, reps = _evals(small, Once("reset"))
    assert quiet[2].n_evals + 1 == reps[2].n_evals  # the loss is evaluated afresh at the edited point
    assert reps[2].message.startswith("once: phase offset") and r.opt.last_reset_reason == "once: phase offset"
    assert reps[2].history_size <= 1 < quiet[2].history_size


def test_constraint_unitary_map_keeps_loss_history_and_cache(small):
    _, quiet = _evals(small, Once("none"))
    r, reps = _evals(small, Once("map"))
    assert reps[2].n_evals == quiet[2].n_evals and reps[2].history_size == quiet[2].history_size
    np.testing.assert_allclose([x.loss for x in reps], [x.loss for x in quiet], rtol=1e-9)
    assert "once: mode rotation" in reps[2].message


def test_change_validates_its_kind():
    with pytest.raises(ValueError, match="kind"):
        Change("sometimes")
    with pytest.raises(ValueError, match="maps"):
        Change("map", "no maps")
