"""Single-side-band direct ptychography and the direct-method figures."""
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest

from pypty import initialize
from pypty.initialize.direct import (aberration_phase_at, center_of_mass, com_figure, fit_parallax, idpc,
                                     parallax_figure, phase_images_figure, ssb)
from pypty.operators.optics import aberration_phase, electron_wavelength_A
from pypty.probe import make_probe
from tests.synthetic import KV, PIX, WIN, corr, simulate

LAM = electron_wavelength_A(KV)
DK = 1.0 / (WIN * PIX)          # detector pixel, 1/Å (32 px detector, 0.4 Å pixels)
N_SCAN, STEP_PX = 24, 2         # 24 x 24 scan, step 0.8 Å
STEP_A = STEP_PX * PIX
MOS2 = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "mos2_80kV"


def make_data(aberrations, rot_deg=0.0, transpose=False, seed=0, n=N_SCAN):
    """Weak 'atomic' phase object (Gaussian blobs, sigma 1 Å, max 0.3 rad) scanned on a raster rotated by
    ``rot_deg`` (docs/conventions.md); returns (data, true phase at the probe centres (scan frame))."""
    iy, ix = np.mgrid[:n, :n]
    iy, ix = iy.ravel().astype(float), ix.ravel().astype(float)
    if transpose:
        iy, ix = ix, iy
    th = np.deg2rad(rot_deg)
    pos = np.stack([(ix * np.sin(th) + iy * np.cos(th)) * STEP_PX, (ix * np.cos(th) - iy * np.sin(th)) * STEP_PX], 1)
    pos = pos - pos.min(0) + 2.0
    size = int(pos.max() + WIN + 4)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    ph = np.zeros((size, size))
    for _ in range(int(size * size / 120)):
        cy, cx = rng.uniform(0, size, 2)
        ph += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.5**2))
    ph = 0.3 * ph / ph.max()
    probe = make_probe((WIN, WIN), PIX, KV, 25.0, aberrations, intensity=1e4)
    data = simulate(np.exp(1j * ph)[:, :, None, None], probe, pos)
    c = np.rint(pos).astype(int) + WIN // 2
    truth = ph[c[:, 0], c[:, 1]].reshape(n, n)
    return data, (truth.T if transpose else truth)


def test_aberration_phase_at_matches_grid_version():
    ab = {"C10": -70.0, "C12a": 12.0, "C12b": -5.0, "C21a": 300.0, "C30": 1e4}
    grid = aberration_phase((WIN, WIN), PIX, KV, ab)
    ky = np.fft.fftfreq(WIN, PIX)[:, None] * np.ones((1, WIN))
    kx = np.fft.fftfreq(WIN, PIX)[None, :] * np.ones((WIN, 1))
    np.testing.assert_allclose(aberration_phase_at(kx, ky, LAM, ab), grid, atol=1e-9)


def test_ssb_weak_phase_object_and_determinism():
    ab = {"C10": -60.0}
    data, truth = make_data(ab)
    a = ssb(data, (N_SCAN, N_SCAN), STEP_A, LAM, ab, detector_pixel_inv_A=DK)
    b = ssb(data.reshape(N_SCAN, N_SCAN, WIN, WIN), (N_SCAN, N_SCAN), STEP_A, LAM, [-60.0],
            detector_pixel_inv_A=DK)
    np.testing.assert_array_equal(a["phase"], b["phase"])                   # deterministic, same input forms
    assert a["phase"].shape == (N_SCAN, N_SCAN) and a["pixel_A"] == STEP_A
    assert corr(a["phase"], truth) >= 0.95                                 # whole scan, no low-pass
    assert abs(a["phase"].std() / truth.std() - 1) < 0.4                   # in rad (low |Q| partly missing)
    assert a["trotter_pixels"][0, 0] == 0 and a["trotter_pixels"].max() > 50
    # the aberration correction matters: the opposite defocus gives an anti-correlated image
    wrong = ssb(data, (N_SCAN, N_SCAN), STEP_A, LAM, {"C10": 60.0}, detector_pixel_inv_A=DK)
    assert corr(wrong["phase"], truth) < 0.0
    # detector pixel from the semi-angle and the measured bright-field radius: same within a few %
    c = ssb(data, (N_SCAN, N_SCAN), STEP_A, LAM, ab, semiangle_mrad=25.0)
    assert c["detector_pixel_inv_A"] == pytest.approx(DK, rel=0.03)
    assert corr(c["phase"], truth) >= 0.94
    # an off-centre bright-field disk (descan): k is measured from the disk centre
    d = ssb(np.roll(data, (1, -2), axis=(1, 2)), (N_SCAN, N_SCAN), STEP_A, LAM, ab, detector_pixel_inv_A=DK)
    np.testing.assert_allclose(d["center_px"], [WIN // 2 + 1, WIN // 2 - 2], atol=0.05)
    assert corr(d["phase"], truth) >= 0.95


@pytest.mark.parametrize("ab, rot, transpose", [({"C10": 150.0}, 0.0, False),
                                                ({"C10": 100.0, "C12a": 20.0, "C12b": -10.0}, 17.0, False),
                                                ({"C10": -100.0}, -33.0, True)])
def test_ssb_aberrations_rotation_transposition(ab, rot, transpose):
    data, truth = make_data(ab, rot, transpose)
    r = ssb(data, (N_SCAN, N_SCAN), STEP_A, LAM, ab, rot, transpose, detector_pixel_inv_A=DK)
    ph = r["phase"]
    # the scan is not periodic: the aberration correction wraps ~ 1 probe radius round the edges,
    # so the correlation is taken 2 scan px (1.6 Å) inside the border (whole scan: 0.92-0.94)
    assert corr(ph[2:-2, 2:-2], truth[2:-2, 2:-2]) >= 0.95
    assert corr(ph, truth) >= 0.9


def test_ssb_from_parallax_estimate():
    ab = {"C10": -80.0}
    data, truth = make_data(ab, 25.0)
    p = fit_parallax(data, (N_SCAN, N_SCAN), STEP_A, DK, LAM)
    r = ssb(data, (N_SCAN, N_SCAN), STEP_A, LAM, p["aberrations"], p["rotation_deg"], p["transpose"],
            detector_pixel_inv_A=DK)
    assert corr(r["phase"][2:-2, 2:-2], truth[2:-2, 2:-2]) >= 0.95


@pytest.mark.skipif(not (MOS2 / "data.h5").exists(), reason="shared MoS2 data not present")
def test_ssb_mos2():
    h5py = pytest.importorskip("h5py")
    from scipy.ndimage import map_coordinates

    with h5py.File(MOS2 / "data.h5", "r") as f:
        data, pos = f["data"][()], f["positions_nominal_px"][()]
    with h5py.File(MOS2 / "ground_truth.h5", "r") as f:
        gt = f["transmission_phase_rad_phonon_mean_recon_grid"][()]
    truth = map_coordinates(gt, pos.T, order=1, mode="grid-wrap").reshape(32, 32)
    lam = electron_wavelength_A(80.0)
    t = time.perf_counter()
    r = ssb(data, (32, 32), 0.4, lam, [-47.6], detector_pixel_inv_A=0.04478280340349306)
    assert time.perf_counter() - t < 5.0
    assert corr(r["phase"], truth) >= 0.90          # measured 0.913 (iDPC: 0.855)


def test_figures_smoke(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    data, _ = make_data({"C10": -60.0}, n=12)
    com = center_of_mass(data)
    f1 = com_figure(com, (12, 12), 10.0, scan_step_A=STEP_A, path=tmp_path / "com.png")
    p = fit_parallax(data, (12, 12), STEP_A, DK, LAM, rotation_deg=0.0, transpose=False, bin_factor=4)
    f2 = parallax_figure(p, path=tmp_path / "parallax.png")
    imgs = {"tcBF": p["tcbf"]["phase"], "iDPC": idpc(com, (12, 12), STEP_A, detector_pixel_inv_A=DK),
            "SSB": ssb(data, (12, 12), STEP_A, LAM, [-60.0], detector_pixel_inv_A=DK)["phase"]}
    f3 = phase_images_figure(imgs, pixel_A=STEP_A, path=tmp_path / "phases.png")
    f4 = phase_images_figure([("SSB", imgs["SSB"])])
    for f, n_axes in ((f1, 2), (f2, 1), (f3, 6), (f4, 2)):
        assert isinstance(f, Figure) and len(f.axes) == n_axes      # image axes + colour bars
    for name in ("com", "parallax", "phases"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert matplotlib.get_backend()   # pyplot's backend untouched (figures use their own Agg canvas)


def test_import_does_not_import_matplotlib():
    code = "import sys, pypty, pypty.initialize, pypty.initialize.direct; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert hasattr(initialize, "ssb") and hasattr(initialize, "com_figure")
