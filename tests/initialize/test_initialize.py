"""pypty.initialize: dataset conversion, calibration from experimental numbers, initial probes."""
import importlib.resources
import os

import h5py
import numpy as np
import pytest

from pypty import initialize as ini
from pypty.initialize.dataset import DatasetError
from pypty.initialize.calibration import CalibrationError
from pypty.parameters import validate
from pypty.operators.optics import electron_wavelength_A

SAMPLE = str(importlib.resources.files("pypty") / "data" / "sample_srtio3.h5")


def _raw4d(seed=0, shape=(3, 4, 12, 10)):
    return np.random.default_rng(seed).poisson(5.0, size=shape).astype(np.float32)


def _reference(raw, crop=None, transpose=False, fy=False, fx=False, b=1, center=False, pad=0):
    d = raw.reshape((-1,) + raw.shape[-2:]).astype(float)
    if crop:
        d = d[:, crop[0]:crop[1], crop[2]:crop[3]]
    if transpose:
        d = d.transpose(0, 2, 1)
    if fy:
        d = d[:, ::-1]
    if fx:
        d = d[:, :, ::-1]
    if b > 1:
        n, ky, kx = d.shape
        d = d.reshape(n, ky // b, b, kx // b, b).sum(axis=(2, 4))
    if center:
        m = d.mean(axis=0)
        yy, xx = np.indices(m.shape)
        cy, cx = (m * yy).sum() / m.sum(), (m * xx).sum() / m.sum()
        sy, sx = int(np.rint(m.shape[0] // 2 - cy)), int(np.rint(m.shape[1] // 2 - cx))
        out = np.zeros_like(d)
        h, w = m.shape
        out[:, max(sy, 0):h + min(sy, 0), max(sx, 0):w + min(sx, 0)] = \
            d[:, max(-sy, 0):h - max(sy, 0), max(-sx, 0):w - max(sx, 0)]
        d = out
    return np.pad(d, ((0, 0), (pad, pad), (pad, pad)))


# ------------------------------------------------------------------ dataset conversion

@pytest.mark.parametrize("opts", [
    dict(),
    dict(crop=(1, 11, 0, 10), transpose=True, fy=True, b=2),
    dict(fx=True, center=True, pad=3),
    dict(crop=(2, 10, 1, 9), b=2, center=True, pad=1, fy=True),
])
def test_create_dataset_from_npy_matches_numpy(tmp_path, opts):
    raw = _raw4d()
    raw[:, :, 2:5, 1:4] += 40  # an off-centre "bright-field disk" for the centring
    src = tmp_path / "scan.npy"
    np.save(src, raw)
    out = ini.create_dataset(src, tmp_path / "out.h5", crop=opts.get("crop"),
                             transpose_detector=opts.get("transpose", False), flip_ky=opts.get("fy", False),
                             flip_kx=opts.get("fx", False), bin=opts.get("b", 1), center=opts.get("center", False),
                             pad=opts.get("pad", 0), chunk_size=5, acc_voltage_kV=80, detector_pixel_mrad=1.5)
    expected = _reference(raw, **opts)
    with h5py.File(out, "r") as f:
        data = f["data"][...]
        assert f.attrs["scan_shape"].tolist() == [3, 4]
        assert f.attrs["detector_pixel_mrad"] == pytest.approx(1.5 * opts.get("b", 1))
        assert f.attrs["acc_voltage_kV"] == 80
        np.testing.assert_allclose(f["mean_pattern"][...], expected.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(data, expected, rtol=1e-6)


def test_centering_moves_the_bright_field_disk_to_the_centre(tmp_path):
    yy, xx = np.indices((16, 16))
    disk = ((yy - 5) ** 2 + (xx - 11) ** 2 <= 9).astype(float)  # centre (5, 11)
    raw = np.stack([disk * (1 + 0.1 * i) for i in range(4)])
    out = ini.create_dataset(raw, tmp_path / "c.h5", center=True, scan_shape=(2, 2))
    with h5py.File(out, "r") as f:
        assert f.attrs["center_shift_px_yx"].tolist() == [3, -3]
        np.testing.assert_allclose(ini.centre_of_mass(f["mean_pattern"][...]), [8, 8])
        assert f["data"][...].sum() == pytest.approx(raw.sum(), rel=1e-6)  # no counts lost


def test_create_dataset_chunking_and_normalisation(tmp_path):
    raw = _raw4d(1)
    a = ini.create_dataset(raw, tmp_path / "a.h5", chunk_size=1, normalize="mean_counts", dtype="float64")
    b = ini.create_dataset(raw, tmp_path / "b.h5", chunk_size=1000, normalize="mean_counts", dtype="float64")
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        np.testing.assert_array_equal(fa["data"][...], fb["data"][...])
        assert fa["data"][...].sum(axis=(1, 2)).mean() == pytest.approx(1.0)
    c = ini.create_dataset(raw, tmp_path / "c.h5", normalize=2.0, dtype="uint16")
    with h5py.File(c, "r") as f:
        assert f["data"].dtype == np.uint16
        np.testing.assert_array_equal(f["data"][...], 2 * raw.reshape(12, 12, 10))


def test_create_dataset_from_h5_4d_and_3d(tmp_path):
    raw = _raw4d(2)
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["group/frames"] = raw
        f["flat"] = raw.reshape(12, 12, 10)
    ini.create_dataset(tmp_path / "in.h5", tmp_path / "o1.h5", dataset_path="group/frames", chunk_size=5)
    ini.create_dataset(tmp_path / "in.h5", tmp_path / "o2.h5", dataset_path="flat", scan_shape=(3, 4))
    with h5py.File(tmp_path / "o1.h5", "r") as f1, h5py.File(tmp_path / "o2.h5", "r") as f2:
        np.testing.assert_array_equal(f1["data"][...], raw.reshape(12, 12, 10))
        np.testing.assert_array_equal(f1["data"][...], f2["data"][...])
        assert f2.attrs["scan_shape"].tolist() == [3, 4]
    with pytest.raises(DatasetError, match="dataset_path 'nope'.*group/frames"):
        ini.create_dataset(tmp_path / "in.h5", tmp_path / "o3.h5", dataset_path="nope")


def test_create_dataset_from_empad_raw(tmp_path):
    rng = np.random.default_rng(3)
    frames = rng.random((6, 130, 128)).astype("<f4")
    frames[:, 128:, :] = 1e9  # metadata rows must not reach the data
    path = tmp_path / "scan_x3_y2.raw"
    frames.tofile(path)
    out = ini.create_dataset(path, tmp_path / "empad.h5", scan_shape=(2, 3), chunk_size=4)
    with h5py.File(out, "r") as f:
        assert f["data"].shape == (6, 128, 128)
        np.testing.assert_array_equal(f["data"][...], frames[:, :128, :])
    with pytest.raises(DatasetError, match="scan_shape"):
        ini.create_dataset(path, tmp_path / "e2.h5")
    with pytest.raises(DatasetError, match="scan_shape"):
        ini.create_dataset(path, tmp_path / "e3.h5", scan_shape=(4, 4))
    (tmp_path / "bad.raw").write_bytes(b"\0" * 100)
    with pytest.raises(DatasetError, match="EMPAD"):
        ini.create_dataset(tmp_path / "bad.raw", tmp_path / "e4.h5", scan_shape=(1, 1))


def test_create_dataset_from_rosettasciio_format(tmp_path):
    """A TVIPS camera file written by rosettasciio's own writer is converted lazily."""
    tvips = pytest.importorskip("rsciio.tvips")
    raw = (np.random.default_rng(4).poisson(20, size=(3, 4, 8, 8))).astype(np.uint16)
    axes = [{"name": n, "size": s, "offset": 0, "scale": 1, "units": "", "navigate": nav}
            for n, s, nav in (("y", 3, True), ("x", 4, True), ("ky", 8, False), ("kx", 8, False))]
    signal = {"data": raw, "axes": axes, "metadata": {"General": {"title": "t"}, "Signal": {}},
              "original_metadata": {}, "attributes": {"_lazy": False}}
    tvips.file_writer(str(tmp_path / "scan.tvips"), signal, show_progressbar=False)
    written = [p for p in os.listdir(tmp_path) if p.endswith(".tvips")]
    out = ini.create_dataset(tmp_path / written[0], tmp_path / "t.h5", scan_shape=(3, 4), chunk_size=5,
                             bin=2, rsciio_kwargs={"scan_shape": (3, 4)})
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["data"][...], _reference(raw, b=2))


@pytest.mark.parametrize("kw, match", [
    (dict(crop=(0, 20, 0, 10)), "crop"),
    (dict(bin=5), "bin=5"),
    (dict(bin=0), "bin"),
    (dict(pad=-1), "pad"),
    (dict(normalize="max"), "normalize"),
    (dict(dtype="uint8", normalize=100.0), "dtype uint8"),
    (dict(dtype="complex64"), "dtype"),
    (dict(acc_voltage_kV=-1), "acc_voltage_kV"),
    (dict(detector_pixel_mrad=0), "detector_pixel_mrad"),
    (dict(scan_shape=(5, 5)), "scan_shape"),
])
def test_create_dataset_errors_name_the_argument(tmp_path, kw, match):
    with pytest.raises(DatasetError, match=match):
        ini.create_dataset(_raw4d(), tmp_path / "x.h5", **kw)
    assert not (tmp_path / "x.h5").exists()


def test_create_dataset_refuses_overwrite_and_bad_sources(tmp_path):
    ini.create_dataset(_raw4d(), tmp_path / "x.h5")
    with pytest.raises(DatasetError, match="overwrite=True"):
        ini.create_dataset(_raw4d(), tmp_path / "x.h5")
    ini.create_dataset(_raw4d(), tmp_path / "x.h5", overwrite=True)
    with pytest.raises(DatasetError, match="does not exist"):
        ini.create_dataset(tmp_path / "missing.mib", tmp_path / "y.h5")
    (tmp_path / "a.xyz").write_text("x")
    with pytest.raises(DatasetError, match="'xyz'"):
        ini.create_dataset(tmp_path / "a.xyz", tmp_path / "y.h5")
    bad = _raw4d()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(DatasetError, match="NaN"):
        ini.create_dataset(bad, tmp_path / "y.h5")


# ------------------------------------------------------------------ calibration

def test_detector_calibrations_agree():
    lam = electron_wavelength_A(200)
    dk = ini.detector_pixel_inv_A(200, detector_pixel_mrad=1.6)
    assert dk == pytest.approx(1.6e-3 / lam)
    assert ini.detector_pixel_inv_A(200, detector_pixel_inv_A=dk) == dk
    assert ini.detector_pixel_inv_A(200, bright_field_radius_px=20 / 1.6, semiangle_mrad=20) == pytest.approx(dk)
    with pytest.raises(CalibrationError, match="exactly one"):
        ini.detector_pixel_inv_A(200, detector_pixel_mrad=1.6, detector_pixel_inv_A=dk)
    with pytest.raises(CalibrationError, match="semiangle_mrad"):
        ini.detector_pixel_inv_A(200, bright_field_radius_px=12)
    with pytest.raises(CalibrationError, match="acc_voltage_kV"):
        ini.detector_pixel_inv_A(0, detector_pixel_mrad=1.6)
    assert ini.reconstruction_pixel_size_A(64, 0.05) == pytest.approx(1 / 3.2)


def test_scan_positions_rotation_and_steps():
    pos = ini.scan_positions_px((2, 3), 1.0, 0.5, 0.0, margin_px=0)
    np.testing.assert_allclose(pos[:3], [[0, 0], [0, 2], [0, 4]])    # x fast
    np.testing.assert_allclose(pos[3], [2, 0])
    rot = ini.scan_positions_px((2, 3), 1.0, 0.5, 90.0, margin_px=1)
    # fast axis along +y, slow axis along -x; shifted so the minimum is the margin
    np.testing.assert_allclose(rot[1] - rot[0], [2, 0], atol=1e-12)
    np.testing.assert_allclose(rot[3] - rot[0], [0, -2], atol=1e-12)
    assert rot.min() == pytest.approx(1.0)
    r30 = ini.scan_positions_px((5, 5), (0.3, 0.3), 0.1, 30.0)
    d = r30[1] - r30[0]
    assert np.degrees(np.arctan2(d[0], d[1])) == pytest.approx(30.0)
    assert np.hypot(*d) == pytest.approx(3.0)
    assert ini.object_shape_px(pos, (8, 8)) == (10, 12)
    with pytest.raises(CalibrationError, match="scan_shape"):
        ini.scan_positions_px((0, 3), 1.0, 0.5)


def test_slice_settings():
    s = ini.slice_settings(120.0, 4)
    assert s["num_slices"] == 4 and np.allclose(s["slice_distances"], 30.0)
    with pytest.raises(CalibrationError, match="num_slices"):
        ini.slice_settings(10.0, 0)
    with pytest.raises(CalibrationError, match="thickness_A"):
        ini.slice_settings(-1.0, 2)


def test_params_from_sample_dataset_reproduce_its_geometry():
    """The bundled sample stores positions computed independently by its simulation script."""
    p = ini.pypty_params_from_dataset(SAMPLE, data_pad=0, thickness_A=11.715, num_slices=2)
    with h5py.File(SAMPLE, "r") as f:
        np.testing.assert_allclose(p["positions"], f["positions_px"][...], atol=1e-9)
        assert p["pixel_size_x_A"] == pytest.approx(f.attrs["pixel_size_A"], rel=1e-6)
        c10 = f.attrs["C10_A"]
    assert p["aberrations"].tolist() == [c10]
    assert p["scan_size"] == (28, 28) and p["num_slices"] == 2
    np.testing.assert_allclose(p["slice_distances"], [11.715 / 2] * 2)
    auto = ini.pypty_params_from_dataset(SAMPLE)
    assert auto["data_pad"] == 16 and auto["pixel_size_x_A"] == pytest.approx(p["pixel_size_x_A"] * 64 / 96)
    validate(p)
    with pytest.raises(CalibrationError, match="scan_shape"):
        ini.pypty_params_from_dataset(SAMPLE, scan_shape=(10, 10))


def test_params_from_dataset_needs_numbers(tmp_path):
    out = ini.create_dataset(_raw4d(), tmp_path / "x.h5")
    with pytest.raises(CalibrationError, match="acc_voltage_kV"):
        ini.pypty_params_from_dataset(out, detector_pixel_mrad=1.0)
    with pytest.raises(CalibrationError, match="square"):
        ini.pypty_params_from_dataset(out, acc_voltage_kV=80, semiangle_mrad=20, scan_step_A=0.5,
                                      detector_pixel_mrad=1.0)
