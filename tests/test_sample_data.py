"""The bundled sample dataset (pypty/data/sample_srtio3.h5) and its preset.

Fast checks of what ``scripts/make_sample_data.py`` promises: size, datasets,
attributes, counts, bright-field disk centring and radius, the scan raster
and the pixel conventions linking positions and the ground truth.
"""
import importlib.resources
import json
import os
import runpy

import h5py
import numpy as np
import pytest

NAME = "sample_srtio3"
H5 = importlib.resources.files("pypty") / "data" / f"{NAME}.h5"
JSON = importlib.resources.files("pypty") / "data" / f"{NAME}.json"
PRESET = os.path.join(os.path.dirname(__file__), "..", "presets", f"{NAME}.py")

ATTRS = ["acc_voltage_kV", "semiangle_mrad", "C10_A", "pixel_size_A", "detector_pixel_mrad", "scan_shape",
         "scan_step_A", "thickness_A", "dose", "electrons_per_pattern", "seed", "abtem_version", "generator",
         "generator_version", "conventions", "margin_px", "object_origin_px", "wavelength_A", "n_det"]


@pytest.fixture(scope="module")
def sample():
    with h5py.File(H5, "r") as f:
        out = {k: f[k][...] for k in ("data", "positions_px", "positions_A", "ground_truth_phase")}
        out["attrs"] = dict(f.attrs)
        out["gt_attrs"] = dict(f["ground_truth_phase"].attrs)
    return out


def test_file_exists_and_is_small():
    assert H5.is_file()
    assert os.path.getsize(H5) < 10 * 1024**2
    assert JSON.is_file()


def test_datasets_and_attributes(sample):
    n, ky, kx = sample["data"].shape
    assert ky == kx == sample["attrs"]["n_det"]
    assert sample["positions_px"].shape == (n, 2) and sample["positions_px"].dtype == np.float64
    assert sample["positions_A"].shape == (n, 2)
    assert sample["ground_truth_phase"].ndim == 2
    for key in ATTRS:
        assert key in sample["attrs"], key
    ny, nx = (int(v) for v in sample["attrs"]["scan_shape"])
    assert ny * nx == n
    assert "pixel_size_A" in sample["gt_attrs"] and "object_origin_px" in sample["gt_attrs"]


def test_json_matches_h5(sample):
    meta = json.loads(JSON.read_text())
    for key in ATTRS:
        h, j = sample["attrs"][key], meta[key]
        if isinstance(h, bytes):
            h = h.decode()
        if isinstance(j, str):
            assert h == j, key
        else:
            np.testing.assert_allclose(np.asarray(h, dtype=float), np.asarray(j, dtype=float), err_msg=key)


def test_counts_are_nonnegative_integers(sample):
    data = sample["data"]
    assert np.issubdtype(data.dtype, np.integer) or np.all(data == np.round(data))
    assert data.min() >= 0
    a = sample["attrs"]
    mean_total = data.sum(axis=(1, 2), dtype=np.float64).mean()
    # a few per mille scatter beyond the 64 x 64 detector
    assert 0.97 * a["electrons_per_pattern"] < mean_total <= 1.01 * a["electrons_per_pattern"]
    np.testing.assert_allclose(a["electrons_per_pattern"], a["dose"] * a["scan_step_A"] ** 2, rtol=1e-9)


def test_pixel_size_is_reciprocal_of_detector_extent(sample):
    a = sample["attrs"]
    dk = a["detector_pixel_mrad"] * 1e-3 / a["wavelength_A"]  # 1/Å
    np.testing.assert_allclose(a["pixel_size_A"], 1.0 / (a["n_det"] * dk), rtol=1e-9)


def test_bright_field_disk_centred_with_nominal_radius(sample):
    mp = sample["data"].mean(axis=0, dtype=np.float64)
    n = mp.shape[0]
    y, x = np.mgrid[:n, :n]
    com = np.array([(y * mp).sum(), (x * mp).sum()]) / mp.sum()
    assert np.all(np.abs(com - n // 2) < 0.5), com
    r2 = (y - n // 2) ** 2 + (x - n // 2) ** 2
    plateau = np.median(mp[r2 <= 25])
    radius = np.sqrt(np.count_nonzero(mp > 0.5 * plateau) / np.pi)
    nominal = sample["attrs"]["semiangle_mrad"] / sample["attrs"]["detector_pixel_mrad"]
    assert abs(radius / nominal - 1) < 0.05, (radius, nominal)
    # the disk's outside is dark: the detector reaches about 2.4 x the semi-angle
    assert mp[r2 > (1.3 * nominal) ** 2].mean() < 0.02 * plateau


def test_positions_form_the_stated_raster(sample):
    a = sample["attrs"]
    ny, nx = (int(v) for v in a["scan_shape"])
    step = float(a["scan_step_A"])
    pa = sample["positions_A"].reshape(ny, nx, 2)  # p = iy*nx + ix, x fast
    iy, ix = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    np.testing.assert_allclose(pa[..., 0] - pa[0, 0, 0], iy * step, atol=1e-9)
    np.testing.assert_allclose(pa[..., 1] - pa[0, 0, 1], ix * step, atol=1e-9)
    dx = float(a["pixel_size_A"])
    pp = sample["positions_px"]
    assert pp.min() >= 0
    np.testing.assert_allclose(pp, sample["positions_A"] / dx + a["margin_px"], atol=1e-9)
    # probe centre (window pixel n_det//2) in object px = cell coordinate / dx + object_origin_px
    np.testing.assert_allclose(pp + a["n_det"] // 2, sample["positions_A"] / dx + a["object_origin_px"], atol=1e-9)


def test_ground_truth_covers_the_canvas_and_is_periodic(sample):
    a = sample["attrs"]
    gt = sample["ground_truth_phase"]
    n = int(a["n_det"])
    pp = sample["positions_px"]
    need = np.floor(pp.max(axis=0) + 0.5).astype(int) + n  # pypty's canvas for these positions
    assert gt.shape[0] >= need[0] and gt.shape[1] >= need[1]
    assert np.all(np.isfinite(gt))
    # the simulation cell is the probe window: the ground truth repeats every n_det px
    np.testing.assert_allclose(gt[:, :gt.shape[1] - n], gt[:, n:], atol=1e-6)
    np.testing.assert_allclose(gt[:gt.shape[0] - n], gt[n:], atol=1e-6)
    # the cell origin (a Sr column, among the strongest phases) sits at object pixel object_origin_px
    o = int(a["object_origin_px"])
    assert gt[o, o] == gt[o - 1:o + 2, o - 1:o + 2].max()
    assert gt[o, o] > 0.9 * gt.max()
    assert sample["gt_attrs"]["object_origin_px"] == o


def test_preset_parameters():
    pytest.importorskip("pypty.probe")
    params = runpy.run_path(PRESET)["pypty_params"](output_folder="runs/test_unused")
    with h5py.File(H5, "r") as f:
        n, ky, kx = f["data"].shape
        a = dict(f.attrs)
        positions = f["positions_px"][...]
        mean_counts = f["data"][...].sum(axis=(1, 2), dtype=np.float64).mean()
    for key in ("data_path", "output_folder", "acc_voltage", "pixel_size_x_A", "pixel_size_y_A", "num_slices",
                "slice_distances", "positions", "probe", "epoch_max", "update_probe", "update_obj", "algorithm",
                "compute_batch", "print_flag", "scan_size"):
        assert key in params, key
    assert os.path.samefile(params["data_path"], H5)
    assert params["acc_voltage"] == pytest.approx(a["acc_voltage_kV"])
    assert params["pixel_size_x_A"] == params["pixel_size_y_A"] == pytest.approx(a["pixel_size_A"])
    np.testing.assert_array_equal(params["positions"], positions)
    assert params["probe"].shape == (ky, kx, 1) and np.iscomplexobj(params["probe"])
    assert np.sum(np.abs(params["probe"]) ** 2) == pytest.approx(mean_counts, rel=1e-6)
    dz = np.atleast_1d(params["slice_distances"])
    assert len(dz) in (1, params["num_slices"])
    total = dz.sum() if len(dz) == params["num_slices"] else dz[0] * params["num_slices"]
    assert total == pytest.approx(a["thickness_A"])
    assert tuple(params["scan_size"]) == tuple(int(v) for v in a["scan_shape"])
    # the probe's intensity is centred at window pixel (ky//2, kx//2)
    inten = np.abs(params["probe"][..., 0]) ** 2
    y, x = np.mgrid[:ky, :kx]
    com = np.array([(y * inten).sum(), (x * inten).sum()]) / inten.sum()
    assert np.all(np.abs(com - [ky // 2, kx // 2]) < 0.5), com
