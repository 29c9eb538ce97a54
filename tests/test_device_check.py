"""benchmarks/device_check.py runs end to end in its dry-run mode; pypty.device_hints decides as documented."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from pypty.device_hints import device_memory_use, gpu_dtype_notice, should_free_pool

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.py"
SECTIONS = ("environment", "tests", "determinism", "memory", "sample", "datapath", "throughput")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("device_check")
    env = {k: v for k, v in os.environ.items() if k not in ("PYPTY_FORCE_CPU", "PYPTY_DEVICE")}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), "--budget-s", "300"],
                          capture_output=True, text=True, timeout=240, cwd=str(ROOT), env=env)
    return proc, out


def test_dry_run_completes_every_section(dry_run):
    proc, out = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "device_check.json").read_text())
    assert report["meta"]["mode"] == "dry run"
    for name in SECTIONS:
        sec = report["sections"][name]
        assert sec["status"] == "ok", (name, sec)
    s = report["sections"]
    assert s["tests"]["passed"] > 0 and s["tests"]["failed"] == 0 and s["tests"]["errors"] == 0
    for dt in ("complex64", "complex128"):
        assert s["determinism"][dt]["identical"] is True  # on the CPU two evaluations agree to the bit
    assert s["throughput"]["grid"] and s["throughput"]["batch_sweep"]
    for row in s["throughput"]["grid"]:
        assert row["model_pps"] > 0 and row["fft_pps"] > 0 and 0 < row["ratio"]
    assert s["memory"]["run_auto"]["auto_batch"] >= 1
    assert s["memory"]["run_auto"]["pool_peak_total_MiB"] == "n/a"  # GPU-only figure, recorded as such
    assert 0.5 < s["sample"]["device"]["pearson_ground_truth"] <= 1.0
    assert s["datapath"]["load_one_by_one=True"]["s_per_later_epoch"] > 0
    assert s["datapath"]["load_one_by_one=False"]["s_per_later_epoch"] > 0


def test_dry_run_writes_markdown_tables(dry_run):
    proc, out = dry_run
    md = (out / "device_check.md").read_text()
    assert "| section | status | seconds | note |" in md
    assert "| N | slices | probe modes | dtype | batch |" in md
    assert "| sample reconstruction |" in md and "| data path" in md
    assert md.strip() in proc.stdout  # the table is printed too, after the paths
    assert str(out / "device_check.json") in proc.stdout


def test_pytest_summary_parsing():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import device_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    text = ("..F.\nFAILED tests/a.py::test_x[cupy] - AssertionError: no\n"
            "====== 1 failed, 3 passed, 2 deselected, 1 error in 4.20s ======\n")
    c = device_check.parse_pytest_summary(text)
    assert (c["failed"], c["passed"], c["deselected"], c["errors"]) == (1, 3, 2, 1)
    assert c["failing_tests"] == ["tests/a.py::test_x[cupy]"]
    assert all(f.startswith("tests") for f in device_check.device_test_files())
    run_level = device_check.run_level_test_files()
    assert "tests/engine/test_seams.py" in run_level and not set(run_level) & set(device_check.device_test_files())


class _Bk:
    def __init__(self, name):
        self.name = name


def test_gpu_dtype_notice_only_for_double_on_cupy():
    for dt in ("double", np.complex128, "complex128", np.float64):
        msg = gpu_dtype_notice(_Bk("cupy"), dt)
        assert msg is not None and 'default_dtype="single"' in msg and "\n" not in msg
    assert gpu_dtype_notice("cupy", "double") is not None
    for bk, dt in ((_Bk("cupy"), "single"), (_Bk("cupy"), np.complex64), (_Bk("numpy"), "double"),
                   ("numpy", np.complex128)):
        assert gpu_dtype_notice(bk, dt) is None


def test_should_free_pool_under_pressure_only():
    gib = 2**30
    assert not should_free_pool(10 * gib, 80 * gib)
    assert should_free_pool(64 * gib, 80 * gib)          # exactly at 0.8
    assert not should_free_pool(60 * gib, 80 * gib, fraction=0.9)
    assert should_free_pool(80 * gib, 80 * gib, fraction=1.0)
    assert not should_free_pool(5, 0)                    # unknown capacity: never free
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError):
            should_free_pool(1, 2, fraction=bad)
    with pytest.raises(ValueError):
        should_free_pool(-1, 2)
    assert device_memory_use(_Bk("numpy")) is None


def test_pool_peak_tracks_the_largest_used_bytes():
    """PoolPeak (the GPU memory measurement) with a stand-in for CuPy's pool and allocator hook."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import device_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))

    class Pool:
        def __init__(self):
            self.used = self.held = 0

        def malloc(self, size):
            self.used += size
            self.held = max(self.held, self.used)
            return size

        def free(self, size):
            self.used -= size

        def used_bytes(self):
            return self.used

        def total_bytes(self):
            return self.held

        def free_all_blocks(self):
            self.held = self.used

    class FakeCupy:
        def __init__(self):
            self.pool = Pool()
            self.allocator = self.pool.malloc
            dev = type("Device", (), {"synchronize": lambda self: None})
            self.cuda = type("cuda", (), {"Device": dev, "set_allocator": self.set_allocator})

        def get_default_memory_pool(self):
            return self.pool

        def set_allocator(self, fn):
            self.allocator = fn

    cp = FakeCupy()
    cp.pool.malloc(100)  # live before the measurement: not counted
    with device_check.PoolPeak(cp) as pk:
        a = cp.allocator(300)
        b = cp.allocator(500)
        cp.pool.free(a)
        cp.pool.free(b)
        cp.allocator(200)
    assert pk.peak_used == 800 and pk.total_growth == 800
    assert cp.allocator == cp.pool.malloc  # the default allocator is restored
