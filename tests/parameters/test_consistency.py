"""Rules relating parameters to each other (pypty.parameters.consistency), checked by validate without data."""
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from pypty.parameters import PyptyParameterError, parameter_error, validate
from pypty.parameters.consistency import check_consistency

REPO = pathlib.Path(__file__).resolve().parents[2]
MASKS = np.ones((3, 4, 4))


def test_parameter_error_message_form():
    err = parameter_error("tilts", "is wrong")
    assert isinstance(err, PyptyParameterError) and str(err) == "parameter 'tilts': is wrong"


@pytest.mark.parametrize("params, message", [
    ({"wolfe_c1_constant": 0.9, "wolfe_c2_constant": 0.5},
     "parameters 'wolfe_c1_constant' (0.9) and 'wolfe_c2_constant' (0.5) must satisfy "
     "0 < wolfe_c1_constant < wolfe_c2_constant < 1"),
    ({"masks": MASKS},
     "parameter 'masks': virtual-detector masks and algorithm 'lsq_compressed' go together; got masks set with "
     "algorithm 'lsq_sqrt'"),
    ({"algorithm": "lsq_compressed"},
     "parameter 'masks': virtual-detector masks and algorithm 'lsq_compressed' go together; got masks None with "
     "algorithm 'lsq_compressed'"),
    ({"algorithm": "lsq_compressed", "masks": MASKS, "data_bin": 2},
     "parameter 'data_bin': must stay 1 for compressed data (apply it to the masks instead)"),
    ({"algorithm": "lsq_compressed", "masks": MASKS, "data_pad": 4},
     "parameter 'data_pad': must stay 0 for compressed data (apply it to the masks instead)"),
    ({"algorithm": "lsq_compressed", "masks": MASKS, "flip_ky": True},
     "parameter 'flip_ky': must stay False for compressed data (apply it to the masks instead)"),
    ({"algorithm": "lsq_compressed", "masks": MASKS, "upsample_pattern": 2},
     "parameter 'upsample_pattern': must stay 1 for compressed data (apply it to the masks instead)"),
    ({"recon_type": "near_field", "upsample_pattern": 2},
     "parameter 'upsample_pattern': must be 1 for recon_type 'near_field' (patterns are images)"),
    ({"defocus_spread_modes": [10.0, 20.0], "n_hermite_probe_modes": (2, 1)},
     "parameter 'defocus_spread_modes': give either defocus_spread_modes or n_hermite_probe_modes, not both"),
    ({"tilts": [[1.0, 0, 0, 0, 0, 0]], "tilt_mode": 0},
     "parameter 'tilts': has non-zero 'before' tilts (columns 0, 1) but tilt_mode 0 uses only inside"),
    ({"tilts": [[0, 0, 1.0, 0, 0, 0]], "tilt_mode": 1},
     "parameter 'tilts': has non-zero 'inside' tilts (columns 2, 3) but tilt_mode 1 uses only after"),
    ({"update_static_background": 1},
     "parameter 'static_background': is 0 but update_static_background is on: start from a small positive value "
     "(e.g. 1e-3 counts), 0 means 'no background'"),
    ({"update_static_background": "lambda epoch: epoch > 5"},
     "parameter 'static_background': is 0 but update_static_background is on"),
    ({"static_background": 0.1, "recon_type": "near_field"},
     "parameter 'static_background': is not available for recon_type 'near_field'"),
    ({"aberrations_array": np.ones((1, 200))},
     "parameter 'aberrations_array': at most "),
    ({"aberrations_array": np.ones((2, 1))},
     "parameter 'aberration_marker': is None but aberrations_array has 2 rows: say which row each measurement uses"),
    ({"aberrations_array": np.zeros((2, 1)), "update_aberrations_array": 1},
     "parameter 'aberration_marker': is None but aberrations_array has 2 rows"),
    ({"probe": np.ones((8, 8, 1, 3))},
     "parameter 'probe': is 4D with 3 subscan probes but probe_marker is None"),
])
def test_validate_refuses_parameters_that_do_not_fit_together(params, message):
    with pytest.raises(PyptyParameterError) as info:
        validate(params)
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize("params", [
    {"wolfe_c1_constant": 0.9, "wolfe_c2_constant": "lambda x: 0.95"},  # epoch-dependent: not compared
    {"algorithm": "lsq_compressed", "masks": MASKS},
    {"recon_type": "near_field", "upsample_pattern": 1},
    {"upsample_pattern": 2},
    {"defocus_spread_modes": [10.0, 20.0]},
    {"tilts": [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], "tilt_mode": 4},
    {"tilts": np.zeros((7, 6)), "tilt_mode": 2},
    {"static_background": 1e-3, "update_static_background": 1},
    {"static_background": 0, "recon_type": "near_field"},
    {"aberrations_array": np.zeros((3, 200))},  # not in the model: not checked
    {"aberrations_array": np.ones((2, 3)), "aberration_marker": np.zeros(5, dtype=int)},
    {"probe": np.ones((8, 8, 2, 1))},
    {"probe": np.ones((8, 8, 1, 3)), "probe_marker": np.zeros(5, dtype=int)},
])
def test_validate_accepts_parameters_that_fit_together(params):
    out = validate(params)
    check_consistency(out)  # also as build_setup calls it again


def test_import_is_light():
    code = ("import sys, pypty.parameters; "
            "print([m for m in ('matplotlib', 'tifffile', 'h5py', 'scipy') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.strip() == "[]"
