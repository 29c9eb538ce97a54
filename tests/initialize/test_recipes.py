"""pypty.initialize.counted_data_settings: the measured recommendation for counted data (issue 16)."""
import importlib.resources

import pytest

from pypty.initialize import LOW_DOSE_E_PER_PATTERN, counted_data_settings, pypty_params_from_dataset
from pypty.parameters import validate
from pypty.parameters.epoch_eval import resolve

SAMPLE = str(importlib.resources.files("pypty") / "data" / "sample_srtio3.h5")


def _at(settings, name, epoch):
    return resolve(name, validate({**BASE, **settings})[name], epoch)


BASE = pypty_params_from_dataset(SAMPLE, data_pad=0, thickness_A=11.715)


@pytest.mark.parametrize("count, regime", [(16000.0, "high"), (LOW_DOSE_E_PER_PATTERN, "high"),
                                           (LOW_DOSE_E_PER_PATTERN - 1, "low"), (160, "low")])
def test_regime_follows_the_dose(count, regime):
    assert counted_data_settings(count) == counted_data_settings(regime=regime)


def test_high_dose_schedule_resolves_per_epoch():
    s = counted_data_settings(16000.0)
    assert [_at(s, "algorithm", e) for e in (0, 5, 6, 50)] == ["lsq_sqrt", "lsq_sqrt", "ml", "ml"]
    assert [_at(s, "update_probe", e) for e in (0, 19, 20)] == [1, 1, 0]
    assert [_at(s, "update_probe_pos", e) for e in (5, 6)] == [0, 1]
    assert s["pos_recenter"] is True and s["lazy_clean"] is True and s["num_slices"] == 1
    assert "deformation_reg_weight_positions" not in s


def test_low_dose_refines_positions_later_with_the_deformation_term():
    s = counted_data_settings(500.0, switch_epoch=4)
    assert [_at(s, "algorithm", e) for e in (3, 4)] == ["lsq_sqrt", "ml"]
    assert [_at(s, "update_probe_pos", e) for e in (19, 20)] == [0, 1]
    assert _at(s, "update_probe", 70) == 1
    assert s["deformation_reg_weight_positions"] == 2.0


def test_every_call_returns_a_new_dict():
    a = counted_data_settings(regime="high")
    a["phase_norm_weight"] = -1.0
    assert counted_data_settings(regime="high")["phase_norm_weight"] == 16.0


@pytest.mark.parametrize("kwargs, match", [
    ({}, "electrons_per_pattern"),
    ({"electrons_per_pattern": 0}, "positive finite"),
    ({"electrons_per_pattern": float("nan")}, "positive finite"),
    ({"electrons_per_pattern": True}, "positive finite"),
    ({"electrons_per_pattern": "16000"}, "positive finite"),
    ({"regime": "medium"}, "regime"),
    ({"regime": "high", "switch_epoch": 0}, "switch_epoch"),
    ({"regime": "high", "switch_epoch": 2.5}, "switch_epoch"),
])
def test_bad_input_names_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        counted_data_settings(**kwargs)
