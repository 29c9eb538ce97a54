"""The registry of refinable arrays and the reparametrisations: every other list is derived from them."""
import numpy as np
import pytest

from conftest import test_backend
from pypty.model.refinables import ARRAY_NAMES, BY_NAME, REFINABLES, arrays_to_user, checkpoint_name, component_name
from pypty.model.reparam import REPARAMS, block_reparam
from pypty.model.setup import build_setup
from pypty.parameters import PARAMETERS, validate
from pypty.provenance import COMPONENT_NAMES
from synthetic import base_params, dataset


def test_every_refinable_is_a_parameter_with_an_epoch_dependent_switch():
    for r in REFINABLES:
        assert r.name in PARAMETERS and PARAMETERS[r.name].supported, r.name
        sw = PARAMETERS[r.switch]
        assert sw.epoch_dependent and sw.supported, r.switch
        assert r.kind in ("complex", "real")
    assert len({r.checkpoint for r in REFINABLES}) == len(REFINABLES)
    assert len({r.switch for r in REFINABLES}) == len(REFINABLES)
    assert tuple(BY_NAME) == ARRAY_NAMES == tuple(r.name for r in REFINABLES)


def test_names_elsewhere_are_derived_from_the_registry():
    assert COMPONENT_NAMES == {r.name: r.component for r in REFINABLES}
    assert checkpoint_name("obj") == "co.npy" and component_name("obj") == "object"
    with pytest.raises(KeyError):
        checkpoint_name("not_an_array")


def test_reparametrisations_name_their_arrays():
    for block, rp in REPARAMS.items():
        assert rp.block == block and rp.array in BY_NAME
        assert set(rp.stale_on) <= set(REPARAMS) | set(BY_NAME)
    assert block_reparam("obj", True, "") is REPARAMS["obj_phase"]
    assert block_reparam("probe", False, "abs") is REPARAMS["probe_abs"]
    assert block_reparam("static_background", False, "") is REPARAMS["background_sqrt"]
    assert block_reparam("positions", True, "phase") is None


@pytest.mark.filterwarnings("ignore:parameter 'tilt_mode'")  # inside tilts with one slice: warned, by design
def test_user_layout_round_trip():
    """The arrays a run starts from, mapped back to the user layout, are the arrays the user gave."""
    obj, probe, pos, data = dataset(3, 3.0, 40, seed=4)
    n = len(pos)
    tilts = np.random.default_rng(0).normal(0, 1, (n, 6))
    bg = np.random.default_rng(1).uniform(0.1, 1.0, data.shape[1:])
    kw = dict(obj=obj, tilts=tilts, tilt_mode=4, beam_current=np.linspace(0.9, 1.1, n), static_background=bg,
              aberrations_array=np.array([[1.0, 2.0, 3.0]]))
    p = validate(base_params(data, pos, probe, **kw))
    st = build_setup(p, test_backend())
    user = arrays_to_user(st.arrays, st.bk.to_numpy, st.probe_4d)
    assert list(user) == [r.name for r in REFINABLES]  # every array is in the model here, in registry order
    for name in ("obj", "tilts", "beam_current", "static_background", "aberrations_array"):
        np.testing.assert_array_equal(user[name], kw[name], err_msg=name)
    np.testing.assert_allclose(user["probe"], probe, rtol=1e-12)  # the probe may be rescaled to the counts
    np.testing.assert_array_equal(user["positions"], pos)
    assert not np.shares_memory(user["obj"], st.arrays["obj"])
