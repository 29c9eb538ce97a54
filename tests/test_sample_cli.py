"""pypty.sample (the pypty-sample console script) reconstructs the bundled sample."""
import numpy as np

from pypty import sample


def test_sample_main_runs_and_writes_summary(tmp_path, capsys):
    res = sample.main(["--out", str(tmp_path), "--epochs", "2"])
    assert len(res["loss"]) == 2 and res["loss"][1] < res["loss"][0]
    assert (tmp_path / "summary.png").stat().st_size > 10_000
    assert (tmp_path / "co.npy").exists()
    assert '"epochs": 2' in capsys.readouterr().out
    assert np.asarray(res["obj"]).shape[2] == 1
