"""Tests of the parameter table and validation (pypty.parameters)."""

import copy
import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from pypty.parameters.epoch_eval import EpochExpression
from pypty.parameters import (
    PARAMETERS,
    SECTIONS,
    ArrayDefault,
    PyptyParameterError,
    default_value,
    describe,
    parameter_reference_markdown,
    resolve_epoch_parameters,
    to_jsonable,
    validate,
)

REPO = pathlib.Path(__file__).resolve().parents[2]
CONTRACT = REPO.parent / "shared" / "reference" / "pypty_parameters.md"


def _contract_names():
    """Parameter names of the contract, in order (each table row is 4 lines)."""
    lines = CONTRACT.read_text(encoding="utf-8").splitlines()
    names, i = [], 0
    while i < len(lines):
        if lines[i].startswith("|---|"):
            i += 1
            while i < len(lines) and lines[i].endswith("|") and not lines[i].startswith("|"):
                names.append(lines[i][:-1].strip())
                i += 4
        else:
            i += 1
    return names


# ---------------------------------------------------------------- the table

@pytest.mark.skipif(not CONTRACT.exists(), reason="contract file not available")
def test_every_contract_parameter_is_in_the_table_in_order():
    names = _contract_names()
    assert len(names) > 100
    unique = list(dict.fromkeys(names))
    assert unique == [n for n, p in PARAMETERS.items() if not p.extension]
    for p in PARAMETERS.values():  # extensions are marked as such in their doc
        assert p.extension == p.doc.startswith("pypty extension"), p.name


def test_table_entries_are_complete():
    assert list(dict.fromkeys(p.section for p in PARAMETERS.values())) == list(SECTIONS)
    for name, p in PARAMETERS.items():
        assert p.name == name
        assert p.doc.strip() and "\n" not in p.doc, name
        assert p.types.strip(), name
        assert p.section in SECTIONS
        assert not isinstance(p.default, (list, dict, set, np.ndarray)), name
        if p.choices is not None:
            assert p.default in p.choices
        if p.supported_choices is not None:
            assert set(p.supported_choices) <= set(p.choices)


SUPPORTED_NOW = {
    "backend", "default_dtype", "data_path", "dataset", "data_multiplier", "data_pad", "data_bin",
    "flip_ky", "data_shift_vector", "sequence", "use_full_FOV", "output_folder", "save_loss_log",
    "epoch_prev", "save_checkpoints_every_epoch", "save_inter_checkpoints", "print_flag",
    "acc_voltage", "recon_type", "slice_distances", "pixel_size_x_A", "pixel_size_y_A",
    "scan_size", "num_slices", "obj", "probe", "positions", "allow_subPixel_shift",
    "damping_cutoff_multislice", "smooth_rolloff", "propmethod", "algorithm", "epoch_max",
    "wolfe_c1_constant", "wolfe_c2_constant", "loss_weight", "max_count", "reduce_factor",
    "optimism", "min_step", "hist_length", "update_step_bfgs", "phase_only_obj",
    "reset_history_flag", "update_probe", "update_obj", "update_probe_pos", "load_one_by_one",
    "smart_memory", "compute_batch", "force_dataset_dtype", "preload_to_cpu", "force_pad",
    "memory_saturation", "aberrations", "extra_probe_defocus", "mean_pattern",
}


def test_supported_parameters():
    # flags only ever flip to True as features land
    supported = {n for n, p in PARAMETERS.items() if p.supported}
    assert SUPPORTED_NOW <= supported
    # every choice of these is implemented now
    for name in ("recon_type", "propmethod", "algorithm"):
        assert PARAMETERS[name].supported_choices is None, name


def test_epoch_dependent_markers_follow_contract():
    assert PARAMETERS["update_probe"].epoch_dependent
    assert PARAMETERS["do_charge_flip"].epoch_dependent  # the pypty_lambda version
    assert PARAMETERS["hist_length"].epoch_dependent
    assert not PARAMETERS["epoch_max"].epoch_dependent
    assert not PARAMETERS["probe_reg_constraint_weight"].epoch_dependent


def test_array_defaults_are_fresh():
    a = default_value("positions")
    b = default_value("positions")
    assert isinstance(PARAMETERS["positions"].default, ArrayDefault)
    assert a is not b and np.array_equal(a, [[0.0, 0.0]])
    a[0, 0] = 5
    assert default_value("positions")[0, 0] == 0
    v1, v2 = validate({}), validate({})
    v1["slice_distances"][0] = -1
    assert v2["slice_distances"][0] == 10.0


def test_effective_defaults():
    out = validate({})
    assert set(out) == set(PARAMETERS)
    assert out["compute_batch"] == "auto"
    assert out["force_dataset_dtype"] is None
    assert out["obj"] is None and out["probe"] is None and out["backend"] is None
    assert out["update_probe"] is True and out["update_probe_pos"] is False
    assert out["damping_cutoff_multislice"] == pytest.approx(2 / 3)
    assert out["max_count"] == 20 and out["hist_length"] == 10
    assert out["data_shift_vector"] == (0, 0)
    assert np.array_equal(out["tilts"], np.zeros((1, 6)))
    assert "auto" in PARAMETERS["compute_batch"].doc


def test_describe():
    text = describe("acc_voltage")
    assert text.startswith("acc_voltage") and "kV" in text and "60" in text
    assert "not supported yet" not in describe("remove_fft_cache")
    assert "not supported yet" not in describe("atv_weight")
    assert "mrad" in describe("tilts") and "not supported yet" not in describe("tilts")
    with pytest.raises(PyptyParameterError, match="did you mean 'epoch_max'"):
        describe("epoch_maxx")


# ---------------------------------------------------------------- unknown keys and types

def test_unknown_key_suggestion():
    with pytest.raises(PyptyParameterError) as info:
        validate({"epoch_maxx": 10})
    assert str(info.value) == "unknown parameter 'epoch_maxx'; did you mean 'epoch_max'?"
    with pytest.raises(PyptyParameterError, match="did you mean 'acc_voltage'"):
        validate({"ACC_VOLTAGE": 60})
    with pytest.raises(PyptyParameterError, match="sections: .*Refinable Arrays"):
        validate({"probe_zzzzz": 1})
    with pytest.raises(PyptyParameterError, match="unknown parameter 'qqq'; see .*Dataset"):
        validate({"qqq": 1})
    assert isinstance(PyptyParameterError("x"), ValueError)


def test_not_a_mapping():
    with pytest.raises(PyptyParameterError, match="must be a dict"):
        validate([("epoch_max", 3)])


@pytest.mark.parametrize(
    "params, pattern",
    [
        ({"epoch_max": "ten"}, r"parameter 'epoch_max' expects an int >= 0, got str 'ten'"),
        ({"epoch_max": 10.0}, r"'epoch_max' expects an int >= 0, got float 10.0"),
        ({"epoch_max": True}, r"'epoch_max' expects an int >= 0, got bool True"),
        ({"epoch_max": -1}, r"'epoch_max' expects an int >= 0"),
        ({"acc_voltage": 0}, r"'acc_voltage' expects a float > 0"),
        ({"acc_voltage": "60"}, r"'acc_voltage' expects a float > 0, got str '60'"),
        ({"pixel_size_x_A": -0.1}, r"'pixel_size_x_A' expects a float > 0"),
        ({"pixel_size_y_A": float("nan")}, r"'pixel_size_y_A'"),
        ({"num_slices": 0}, r"'num_slices' expects an int >= 1"),
        ({"data_bin": 0}, r"'data_bin' expects an int >= 1"),
        ({"data_pad": -2}, r"'data_pad' expects an int >= 0"),
        ({"print_flag": 5}, r"'print_flag' expects an int in 0..4"),
        ({"reduce_factor": 1.0}, r"'reduce_factor' expects a float in \(0, 1\)"),
        ({"optimism": 1}, r"'optimism' expects a float > 1"),
        ({"damping_cutoff_multislice": 0}, r"'damping_cutoff_multislice' expects a float in \(0, 1\]"),
        ({"smooth_rolloff": -1}, r"'smooth_rolloff' expects a float >= 0"),
        ({"wolfe_c1_constant": 0}, r"'wolfe_c1_constant' expects a float in \(0, 1\)"),
        ({"flip_ky": "yes"}, r"'flip_ky' expects a bool"),
        ({"update_probe": 2}, r"'update_probe' expects a bool \(or 0/1\), a callable"),
        ({"algorithm": "l2"}, r"'algorithm' expects one of 'lsq_sqrt', 'ml', 'lsq', 'lsq_sqrt_2', 'lsq_compressed', got str 'l2'"),
        ({"propmethod": "fast"}, r"'propmethod' expects one of 'multislice', 'better_multislice', 'yoshida'"),
        ({"default_dtype": "float"}, r"'default_dtype' expects one of 'double', 'single'"),
        ({"recon_type": 3}, r"'recon_type' expects one of"),
        ({"positions": [[1, 2, 3]]}, r"'positions' expects a 2D array of shape \(N, 2\).*shape is \(1, 3\)"),
        ({"positions": [[0, "a"]]}, r"'positions'"),
        ({"positions": [[0, float("nan")]]}, r"'positions'.*NaN"),
        ({"obj": np.ones((4, 4, 1))}, r"'obj' expects a 4D array or None"),
        ({"probe": np.ones((4, 4))}, r"'probe' expects a 3D or 4D array or None"),
        ({"slice_distances": [[1.0, 2.0]]}, r"'slice_distances' expects a 1D array"),
        ({"data_shift_vector": [1, 2, 3]}, r"'data_shift_vector' expects a list of two numbers"),
        ({"scan_size": (10, 0)}, r"'scan_size' expects a pair of ints >= 1"),
        ({"scan_size": (10.0, 5.0)}, r"'scan_size'"),
        ({"sequence": [0, -1]}, r"'sequence' expects a list of ints >= 0 or None"),
        ({"sequence": 3}, r"'sequence'"),
        ({"hist_length": -1}, r"'hist_length' expects an int >= 0 or inf"),
        ({"hist_length": 2.5}, r"'hist_length'"),
        ({"max_count": 0}, r"'max_count' expects an int > 0, None or inf"),
        ({"compute_batch": 0}, r"'compute_batch' expects an int >= 1"),
        ({"compute_batch": "big"}, r"'compute_batch'"),
        ({"force_dataset_dtype": "not_a_dtype"}, r"'force_dataset_dtype' expects a numeric numpy dtype"),
        ({"data_path": 3}, r"'data_path' expects a str"),
        ({"dataset": np.ones(3)}, r"'dataset' expects a 2D or 3D or 4D array"),
        ({"epoch_prev": np.float32(1)}, r"'epoch_prev'"),
        ({"save_inter_checkpoints": -3}, r"'save_inter_checkpoints' expects a bool or an int >= 0"),
        ({"memory_saturation": 1.5}, r"'memory_saturation' expects a float in \(0, 1\]"),
        ({"loss_weight": float("nan")}, r"'loss_weight'"),
        ({"max_count": int}, r"'max_count'"),
    ],
)
def test_type_and_range_errors_name_the_key(params, pattern):
    with pytest.raises(PyptyParameterError, match=pattern):
        validate(params)


def test_accepted_forms_and_normalisation():
    out = validate({
        "epoch_max": np.int64(5),
        "acc_voltage": 300,
        "flip_ky": np.bool_(True),
        "update_obj": 0,
        "save_checkpoints_every_epoch": 5,
        "save_inter_checkpoints": False,
        "positions": [[0, 0], [1.5, 2]],
        "slice_distances": 2.0,
        "scan_size": np.array([4, 5]),
        "sequence": range(3),
        "data_shift_vector": np.array([1.5, -2.0]),
        "hist_length": np.inf,
        "max_count": None,
        "compute_batch": np.int32(16),
        "force_dataset_dtype": np.float32,
        "data_path": pathlib.Path("some") / "file.h5",
        "probe": np.ones((8, 8, 2), dtype=np.complex64),
        "obj": np.ones((10, 10, 1, 1), dtype=complex),
        "aberrations": [0.0, 1.0, 2.0],
        "default_dtype": "single",
        "algorithm": "ml",
    })
    assert out["epoch_max"] == 5 and type(out["epoch_max"]) is int
    assert out["acc_voltage"] == 300.0 and type(out["acc_voltage"]) is float
    assert out["flip_ky"] is True and out["update_obj"] is False
    assert out["save_checkpoints_every_epoch"] == 5 and out["save_inter_checkpoints"] is False
    assert out["positions"].shape == (2, 2)
    assert out["slice_distances"].shape == (1,) and out["slice_distances"][0] == 2.0
    assert out["scan_size"] == (4, 5)
    assert out["sequence"] == [0, 1, 2]
    assert out["data_shift_vector"] == (1.5, -2.0)
    assert out["hist_length"] == math.inf and out["max_count"] is None
    assert out["compute_batch"] == 16 and type(out["compute_batch"]) is int
    assert out["force_dataset_dtype"] == np.dtype(np.float32)
    assert out["data_path"] == str(pathlib.Path("some") / "file.h5")
    assert out["probe"].dtype == np.complex64
    assert isinstance(out["aberrations"], np.ndarray) and out["aberrations"].shape == (3,)
    assert validate({"max_count": float("inf")})["max_count"] == math.inf


def test_wolfe_constants_must_be_ordered():
    with pytest.raises(PyptyParameterError, match="wolfe_c1_constant.*wolfe_c2_constant"):
        validate({"wolfe_c1_constant": 0.9, "wolfe_c2_constant": 0.5})
    validate({"wolfe_c1_constant": 0.2, "wolfe_c2_constant": 0.3})
    # not checked when one of them is epoch-dependent
    validate({"wolfe_c1_constant": 0.9, "wolfe_c2_constant": "lambda x: 0.95"})


def test_input_dict_and_arrays_not_modified():
    positions = np.array([[0.0, 0.0], [1.0, 1.0]])
    obj = np.ones((4, 4, 1, 1), dtype=complex)
    dataset = np.ones((2, 3, 3), dtype=np.float32)
    seq = [0, 1]
    params = {"positions": positions, "obj": obj, "dataset": dataset, "sequence": seq,
              "update_probe": "lambda x: x > 3", "epoch_max": 3}
    snapshot = copy.deepcopy(params)
    out = validate(params)
    assert params.keys() == snapshot.keys()
    assert params["update_probe"] == "lambda x: x > 3"
    assert params["sequence"] is seq and seq == [0, 1]
    out["positions"][0, 0] = 99.0
    out["obj"][0, 0, 0, 0] = 7.0
    out["sequence"].append(5)
    assert np.array_equal(positions, snapshot["positions"])
    assert np.array_equal(obj, snapshot["obj"])
    assert seq == [0, 1]
    # dataset is not copied but cannot be written through the returned view
    assert not out["dataset"].flags.writeable
    with pytest.raises(ValueError):
        out["dataset"][0, 0, 0] = 5
    assert dataset.flags.writeable and dataset[0, 0, 0] == 1


def test_nested_lists_become_new_arrays():
    out = validate({"positions": [[0, 0], [2, 3]], "probe": [[[1.0]], [[1.0]]]})
    assert isinstance(out["positions"], np.ndarray) and out["positions"].shape == (2, 2)
    assert out["probe"].shape == (2, 1, 1)


# ---------------------------------------------------------------- epoch-dependent values

def test_epoch_dependent_strings_are_compiled():
    out = validate({"update_probe_pos": "lambda epoch: 1 if epoch > 20 else 0",
                    "hist_length": "lambda x: min(10, x)",
                    "loss_weight": lambda epoch: 0.5,
                    "sequence": "lambda x: [0, 1] if x < 5 else None"})
    f = out["update_probe_pos"]
    assert isinstance(f, EpochExpression) and f(0) == 0 and f(21) == 1
    values = resolve_epoch_parameters(out, 30)
    assert values["update_probe_pos"] == 1
    assert values["hist_length"] == 10
    assert values["loss_weight"] == 0.5
    assert values["sequence"] is None
    assert resolve_epoch_parameters(out, 2)["sequence"] == [0, 1]
    assert values["update_probe"] is True
    assert "epoch_max" not in values


def test_epoch_expression_errors_surface_in_validate():
    with pytest.raises(PyptyParameterError, match="'update_obj'.*__import__"):
        validate({"update_obj": "lambda x: __import__('os')"})
    with pytest.raises(PyptyParameterError, match="'smart_memory'.*syntax"):
        validate({"smart_memory": "lambda x: x >"})
    # non epoch-dependent parameters do not accept callables or lambda strings
    with pytest.raises(PyptyParameterError, match="'epoch_max' expects an int"):
        validate({"epoch_max": lambda x: 3})
    with pytest.raises(PyptyParameterError, match="'acc_voltage'"):
        validate({"acc_voltage": "lambda x: 60"})


def test_raising_callable_gives_runtime_error_naming_parameter():
    def bad(epoch):
        raise ValueError("nope")

    out = validate({"phase_only_obj": bad})
    with pytest.raises(RuntimeError, match="'phase_only_obj' raised at epoch 3") as info:
        resolve_epoch_parameters(out, 3)
    assert isinstance(info.value.__cause__, ValueError)


# ---------------------------------------------------------------- unsupported parameters / values

@pytest.mark.parametrize("name", list(PARAMETERS))
def test_every_parameter_accepts_its_default(name):
    out = validate({name: default_value(name)})
    assert name in out


def test_unsupported_parameter_at_default_is_accepted():
    out = validate({"tilts": np.zeros((1, 6)), "update_tilts": 0, "masks": None,
                    "tilt_mode": 0, "Cs": 0.0, "upsample_pattern": 1})
    assert out["update_tilts"] is False
    # all-zero tilts of any length have the default effect
    validate({"tilts": np.zeros((10, 6))})


def test_every_parameter_of_the_contract_is_supported():
    """No row of the table is refused as "not supported yet" any more (remove_fft_cache was the last one)."""
    assert [k for k, row in PARAMETERS.items() if not row.supported] == []
    assert all("not supported yet" not in describe(k) for k in PARAMETERS)


@pytest.mark.parametrize(
    "params, name",
    [
        ({"backend": np}, "backend"),
        ({"backend": "numpy"}, "backend"),
    ],
)
def test_unsupported_values_of_supported_parameters(params, name):
    implemented = PARAMETERS[name].supported_choices
    if implemented is not None and params[name] in implemented:
        pytest.skip("%s=%r is supported now" % (name, params[name]))
    with pytest.raises(PyptyParameterError, match="parameter '%s' value .* is not supported yet"
                       % name):
        validate(params)


# ---------------------------------------------------------------- JSON and docs

def test_to_jsonable_round_trips_through_json():
    def my_schedule(epoch):
        return epoch > 3

    out = validate({"obj": np.ones((10, 10, 1, 1), dtype=complex),
                    "probe": np.ones((2, 2, 1), dtype=complex),
                    "positions": np.arange(200.0).reshape(100, 2),
                    "update_probe": "lambda x: x > 5",
                    "update_obj": my_schedule,
                    "hist_length": np.inf,
                    "epoch_max": np.int64(4),
                    "force_dataset_dtype": "float32"})
    data = to_jsonable(out)
    text = json.dumps(data, allow_nan=False)
    back = json.loads(text)
    assert back["update_probe"] == "lambda x: x > 5"
    assert "def my_schedule" in back["update_obj"]
    assert back["hist_length"] == "inf"
    assert back["epoch_max"] == 4
    assert back["force_dataset_dtype"] == "float32"
    assert back["positions"]["array"] == [100, 2]
    assert back["positions"]["min"] == 0.0 and back["positions"]["max"] == 199.0
    assert back["positions"]["mean"] == pytest.approx(99.5)
    assert "values" not in back["positions"]
    assert back["slice_distances"] == {"array": [1], "dtype": "float64", "values": [10.0]}
    assert back["obj"]["abs_max"] == 1.0
    assert back["probe"]["values"][0][0][0] == {"real": 1.0, "imag": 0.0}
    assert back["data_shift_vector"] == [0, 0]
    assert set(back) == set(PARAMETERS)


def test_markdown_has_every_parameter_and_section():
    text = parameter_reference_markdown()
    for section in SECTIONS:
        assert "## " + section in text
    for name in PARAMETERS:
        assert "| `%s` |" % name in text


def test_docs_file_is_up_to_date():
    path = REPO / "docs" / "parameters.md"
    assert path.read_text(encoding="utf-8") == parameter_reference_markdown(), (
        "docs/parameters.md is stale: run python scripts/generate_parameter_docs.py")


def test_generate_script_check_mode():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "generate_parameter_docs.py"),
                             "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
