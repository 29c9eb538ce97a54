"""The installed console commands (``pypty-sample``, ``pypty``), run in a subprocess the way a user runs them.

Each test checks the exit status and the first lines of stdout/stderr: 0 and a JSON
summary on success, 2 and argparse's usage for a bad command line, 1 and one line
``<prog>: error: ...`` (no traceback, no arrays) for an error found while running.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pypty
from pypty import cli, sample


def script(name):
    """The console script ``name`` installed next to the running interpreter (skip when absent)."""
    folder = Path(sys.executable).parent
    for candidate in (folder / name, folder / f"{name}.exe"):
        if candidate.is_file():
            return str(candidate)
    pytest.skip(f"console script {name!r} is not installed next to {sys.executable} "
                f"(install the package: pip install -e .)")


def call(name, *args, cwd):
    """Run an installed command; return (exit status, stdout lines, stderr lines)."""
    proc = subprocess.run([script(name), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout.splitlines(), proc.stderr.splitlines()


def assert_one_line_error(err, prog, *words):
    """stderr is one line ``<prog>: error: ...`` naming ``words`` (progress-bar clears aside)."""
    lines = [ln for ln in err if ln.strip("\r ")]
    assert len(lines) == 1, err
    line = lines[0].split("\r")[-1]
    assert line.startswith(f"{prog}: error: "), line
    for w in words:
        assert w in line, line
    assert "Traceback" not in "\n".join(err) and "array(" not in "\n".join(err)


def sample_params_file(tmp_path, out, suffix=".json", **changes):
    """The bundled sample's pypty_params as a JSON file (arrays as lists), 2 epochs into ``out``."""
    p = sample.sample_params(str(out), epochs=2)
    p.update(changes)
    p = {k: (v.tolist() if isinstance(v, np.ndarray) else list(v) if isinstance(v, tuple) else v)
         for k, v in p.items()}
    path = tmp_path / f"params{suffix}"
    path.write_text(json.dumps(p), encoding="utf-8")
    return path


# ---------------------------------------------------------------- pypty-sample

def test_sample_help_describes_every_option(tmp_path):
    rc, out, err = call("pypty-sample", "--help", cwd=tmp_path)
    assert rc == 0 and not err
    assert out[0].startswith("usage: pypty-sample")
    text = "\n".join(out)
    for option in ("--out FOLDER", "--epochs N", "--slices N", "--traceback", "--version", "exit status"):
        assert option in text


def test_sample_version(tmp_path):
    rc, out, err = call("pypty-sample", "--version", cwd=tmp_path)
    assert (rc, out) == (0, [f"pypty {pypty.__version__}"])


def test_sample_success_exits_0_and_prints_only_the_summary(tmp_path):
    rc, out, err = call("pypty-sample", "--epochs", "2", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert rc == 0, err[-3:]
    assert out[0] == "{"
    summary = json.loads("\n".join(out))
    assert summary["epochs"] == 2 and summary["final_loss"] < summary["first_loss"]
    assert Path(summary["figure"]).is_file() and (tmp_path / "run" / "co.npy").is_file()
    assert "Traceback" not in "\n".join(err) and "array(" not in "\n".join(err)


@pytest.mark.parametrize("args, words", [(["--epochs", "0"], ["--epochs", ">= 1"]),
                                         (["--epochs", "ten"], ["--epochs", "'ten'"]),
                                         (["--bogus"], ["--bogus"])])
def test_sample_bad_argument_exits_2_with_usage(tmp_path, args, words):
    rc, out, err = call("pypty-sample", *args, cwd=tmp_path)
    assert rc == 2 and not out
    assert err[0].startswith("usage: pypty-sample")
    assert err[-1].startswith("pypty-sample: error: ") and all(w in err[-1] for w in words)
    assert not (tmp_path / "runs").exists()


def test_sample_unwritable_output_exits_1_with_one_line(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    rc, out, err = call("pypty-sample", "--epochs", "1", "--out", str(tmp_path / "a_file" / "run"), cwd=tmp_path)
    assert rc == 1 and not out
    assert_one_line_error(err, "pypty-sample", "a_file")


# ---------------------------------------------------------------- pypty

def test_pypty_help_and_version(tmp_path):
    rc, out, err = call("pypty", "--help", cwd=tmp_path)
    assert rc == 0 and out[0].startswith("usage: pypty") and "run" in "\n".join(out) and not err
    rc, out, err = call("pypty", "run", "--help", cwd=tmp_path)
    assert rc == 0 and out[0].startswith("usage: pypty run") and "PARAMS" in out[0]
    assert "--traceback" in "\n".join(out) and "exit status" in "\n".join(out)
    rc, out, err = call("pypty", "--version", cwd=tmp_path)
    assert (rc, out) == (0, [f"pypty {pypty.__version__}"])


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["run"], ["run", "p.json", "--bogus"]])
def test_pypty_bad_command_line_exits_2(tmp_path, args):
    rc, out, err = call("pypty", *args, cwd=tmp_path)
    assert rc == 2 and not out
    assert err[0].startswith("usage: pypty") and err[-1].startswith("pypty")
    assert ": error: " in err[-1]


def test_pypty_run_json_success(tmp_path):
    params = sample_params_file(tmp_path, "run")  # relative output folder: relative to the cwd
    rc, out, err = call("pypty", "run", str(params), cwd=tmp_path)
    assert rc == 0, err[-3:]
    assert out[0] == "{"
    summary = json.loads("\n".join(out))
    assert summary["epochs"] == 2 and summary["final_loss"] < summary["first_loss"]
    assert summary["output_folder"] == "run" and (tmp_path / "run" / "results.h5").is_file()
    assert "Traceback" not in "\n".join(err)


def test_pypty_run_log_lines_go_to_stderr_and_stdout_is_only_the_summary(tmp_path):
    params = sample_params_file(tmp_path, "run", print_flag=3)  # the most chatter short of per-block norms
    rc, out, err = call("pypty", "run", str(params), cwd=tmp_path)
    assert rc == 0, err[-3:]
    summary = json.loads("\n".join(out))  # nothing else on stdout
    assert summary["epochs"] == 2
    assert any("epoch" in line and "loss" in line for line in err), err[:5]  # the per-epoch lines, on stderr


def test_pypty_run_missing_file_exits_1(tmp_path):
    rc, out, err = call("pypty", "run", "missing.json", cwd=tmp_path)
    assert rc == 1 and not out
    assert_one_line_error(err, "pypty", "missing.json", "No such file")


@pytest.mark.parametrize("text, words", [('{"epoch_max": 2,', ["bad.json", "not valid JSON", "line 1"]),
                                         ('[1, 2]', ["bad.json", "object", "list"])])
def test_pypty_run_bad_json_exits_1(tmp_path, text, words):
    (tmp_path / "bad.json").write_text(text)
    rc, out, err = call("pypty", "run", "bad.json", cwd=tmp_path)
    assert rc == 1 and not out
    assert_one_line_error(err, "pypty", *words)


def test_pypty_run_invalid_parameter_exits_1(tmp_path):
    params = sample_params_file(tmp_path, tmp_path / "run", epoch_max="many")
    rc, out, err = call("pypty", "run", str(params), cwd=tmp_path)
    assert rc == 1 and not out
    assert_one_line_error(err, "pypty", "parameter 'epoch_max'", "'many'")
    params.write_text('{"epoch_mxa": 3}')
    rc, out, err = call("pypty", "run", str(params), cwd=tmp_path)
    assert rc == 1
    assert_one_line_error(err, "pypty", "unknown parameter 'epoch_mxa'")


def test_pypty_run_toml_is_read(tmp_path):
    pytest.importorskip("tomllib", reason="TOML parameter files need Python >= 3.11")
    (tmp_path / "p.toml").write_text('epoch_max = "many"\noutput_folder = "run"\n')
    rc, out, err = call("pypty", "run", "p.toml", cwd=tmp_path)
    assert rc == 1
    assert_one_line_error(err, "pypty", "parameter 'epoch_max'")  # parsed, then validated
    (tmp_path / "bad.toml").write_text("epoch_max = [\n")
    rc, out, err = call("pypty", "run", "bad.toml", cwd=tmp_path)
    assert rc == 1
    assert_one_line_error(err, "pypty", "bad.toml", "not valid TOML")


# ---------------------------------------------------------------- the Python side of pypty.cli

def test_load_params_json_and_toml_agree(tmp_path):
    (tmp_path / "p.json").write_text('{"epoch_max": 3, "scan_size": [4, 5], "data_path": "x.h5"}')
    assert cli.load_params(tmp_path / "p.json") == {"epoch_max": 3, "scan_size": [4, 5], "data_path": "x.h5"}
    if sys.version_info >= (3, 11):
        (tmp_path / "p.TOML").write_text('epoch_max = 3\nscan_size = [4, 5]\ndata_path = "x.h5"\n')
        assert cli.load_params(tmp_path / "p.TOML") == cli.load_params(tmp_path / "p.json")
    with pytest.raises(cli.ParamsFileError, match="cannot read"):
        cli.load_params(tmp_path / "nope.json")


def test_main_returns_the_exit_status(tmp_path, capsys):
    assert cli.main(["run", str(tmp_path / "nope.json")]) == 1
    assert capsys.readouterr().err.startswith("pypty: error: cannot read parameter file")
    with pytest.raises(SystemExit) as e:
        cli.main(["run"])
    assert e.value.code == 2


def test_error_status_one_line_and_codes(capsys):
    assert cli.error_status("prog", ValueError("two\nlines")) == 1
    assert capsys.readouterr().err == "prog: error: two lines\n"
    assert cli.error_status("prog", KeyboardInterrupt()) == 130
    assert capsys.readouterr().err == "prog: interrupted\n"
    assert cli.error_status("prog", OSError()) == 1
    assert capsys.readouterr().err == "prog: error: OSError\n"


def test_importing_cli_is_light():
    code = "import sys, pypty.cli; print(any(m.startswith('pypty.iterative') or m == 'numpy' for m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.stdout.strip() == "False", res.stderr
