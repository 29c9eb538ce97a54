"""Every preset in presets/ loads and runs two epochs on tiny data."""
import pathlib
import runpy

import numpy as np
import pytest

import pypty.iterative
from pypty import initialize as ini

from synthetic import KV, PIX, WIN, dataset

PRESETS = pathlib.Path(__file__).resolve().parents[1] / "presets"
STEP_PX = 3.0


@pytest.fixture(scope="module")
def tiny_h5(tmp_path_factory):
    _, _, _, data = dataset(4, STEP_PX, 48, seed=5)
    path = tmp_path_factory.mktemp("presets") / "tiny.h5"
    return ini.create_dataset(data * 1e3, path, scan_shape=(4, 4), acc_voltage_kV=KV, semiangle_mrad=25.0,
                              scan_step_A=STEP_PX * PIX, detector_pixel_inv_A=1 / (WIN * PIX))


@pytest.mark.parametrize("name, kwargs, modes, slices", [
    ("thin_2d_single_slice", dict(defocus_A=60.0, data_pad=0), 1, 1),
    ("low_dose_thin", dict(defocus_A=60.0, data_pad=0), 1, 1),
    ("thick_crystal_multislice", dict(thickness_A=30.0, defocus_A=60.0, data_pad=0), 1, 2),
    ("mixed_state_probe", dict(defocus_A=60.0, data_pad=0), 4, 1),
    ("mixed_state_probe", dict(defocus_A=60.0, data_pad=0, defocus_spread=[-20.0, 20.0]), 2, 1),
    ("blind_start", dict(data_pad=0, blind={"estimate_rotation": False}), 1, 1),   # nominal raster kept
])
def test_preset_runs_two_epochs(tiny_h5, tmp_path, name, kwargs, modes, slices):
    preset = runpy.run_path(str(PRESETS / (name + ".py")))
    assert isinstance(preset["SETTINGS"], dict)
    params = preset["pypty_params"](tiny_h5, output_folder=str(tmp_path / name),
                                    settings={"epoch_max": 2, "print_flag": 0}, **kwargs)
    assert params["pixel_size_x_A"] == pytest.approx(PIX)
    np.testing.assert_allclose(np.diff(params["positions"][:2], axis=0), [[0, STEP_PX]])
    res = pypty.iterative.run(params)
    assert len(res["loss"]) == 2 and np.isfinite(res["loss"]).all()
    assert res["probe"].shape[-1] == modes and res["obj"].shape[2] == slices
    assert (tmp_path / name / "co.npy").exists()


def test_thick_preset_needs_thickness(tiny_h5):
    preset = runpy.run_path(str(PRESETS / "thick_crystal_multislice.py"))
    with pytest.raises(ValueError, match="thickness_A"):
        preset["pypty_params"](tiny_h5, thickness_A=0.0)


def test_blind_start_preset_estimates_defocus(tmp_path):
    """16 x 16 scan, C10 = -60 Å in the data (tests/synthetic.py), a wrong C10_A in the file (ignored)."""
    _, _, _, data = dataset(16, 2.0, 70, seed=5)
    path = ini.create_dataset(data * 1e3, tmp_path / "blind.h5", scan_shape=(16, 16), acc_voltage_kV=KV,
                              semiangle_mrad=25.0, scan_step_A=2.0 * PIX, detector_pixel_inv_A=1 / (WIN * PIX),
                              extra_attrs={"C10_A": 200.0})
    preset = runpy.run_path(str(PRESETS / "blind_start.py"))
    params, report = preset["pypty_params"](path, output_folder=str(tmp_path / "out"), data_pad=0,
                                            settings={"epoch_max": 2, "print_flag": 0}, return_report=True)
    assert report["file_C10_A"] == 200.0
    assert abs(params["aberrations"][0] + 60.0) <= 5.0
    assert abs((report["rotation_deg"] + 180) % 360 - 180) < 1.0 and not report["transpose"]
    assert "obj" not in params  # vacuum start by default (BLIND["object_from"] is None)
    res = pypty.iterative.run(params)
    assert len(res["loss"]) == 2 and np.isfinite(res["loss"]).all()
    with pytest.raises(ValueError, match="defocus_A"):
        preset["pypty_params"](path, defocus_A=60.0)
