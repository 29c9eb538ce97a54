"""pypty.sample: reconstruct_sample (Python) and main (the pypty-sample entry point, which returns an exit status).

The installed ``pypty-sample`` script itself is run in a subprocess in tests/test_cli.py.
"""
import json

import numpy as np
import pytest

from pypty import sample
from pypty.parameters import PyptyParameterError


def test_reconstruct_sample_returns_the_result_and_writes_summary(tmp_path):
    res = sample.reconstruct_sample(str(tmp_path), epochs=2)
    assert len(res["loss"]) == 2 and res["loss"][1] < res["loss"][0]
    assert (tmp_path / "summary.png").stat().st_size > 10_000 and res["figure"] == str(tmp_path / "summary.png")
    assert (tmp_path / "co.npy").exists()
    assert np.asarray(res["obj"]).shape[2] == 1


def test_reconstruct_sample_rejects_non_positive_counts(tmp_path):
    with pytest.raises(PyptyParameterError, match="epoch_max"):
        sample.reconstruct_sample(str(tmp_path), epochs=0)
    with pytest.raises(PyptyParameterError, match="num_slices"):
        sample.reconstruct_sample(str(tmp_path), num_slices=1.5)


def test_main_returns_0_and_prints_the_summary(tmp_path, capsys):
    assert sample.main(["--out", str(tmp_path), "--epochs", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs"] == 1 and summary["figure"].endswith("summary.png")


def test_main_reports_errors_in_one_line_and_returns_1(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert sample.main(["--out", str(tmp_path / "f" / "run"), "--epochs", "1"]) == 1
    captured = capsys.readouterr()
    err = [ln for ln in captured.err.splitlines() if ln.strip("\r ")]
    assert not captured.out and len(err) == 1 and err[0].startswith("pypty-sample: error: ")


def test_main_bad_argument_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        sample.main(["--slices", "0"])
    assert e.value.code == 2
    assert "pypty-sample: error: argument --slices" in capsys.readouterr().err
