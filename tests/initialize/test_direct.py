"""Direct estimates (COM / iDPC, parallax / tcBF) on pypty-simulated data with known answers."""
import numpy as np
import pytest

from pypty import initialize
from pypty.initialize.direct import center_of_mass, fit_parallax, fit_scan_rotation, idpc, rotate_com
from pypty.operators.optics import electron_wavelength_A
from pypty.probe import make_probe
from tests.synthetic import KV, PIX, WIN, corr, simulate

LAM = electron_wavelength_A(KV)
DK = 1.0 / (WIN * PIX)          # detector pixel, 1/Å (32 px detector, 0.4 Å pixels)
N_SCAN, STEP_PX = 24, 2         # 24 x 24 scan, step 0.8 Å
STEP_A = STEP_PX * PIX


def atoms(n, seed=0, strength=0.3, sig=2.5, density=1 / 120):
    """Weak 'atomic' phase object: Gaussian blobs (sigma 1 Å), max phase ``strength`` rad."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    ph = np.zeros((n, n))
    for _ in range(int(n * n * density)):
        cy, cx = rng.uniform(0, n, 2)
        ph += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sig**2))
    ph = strength * ph / ph.max()
    return np.exp(1j * ph)[:, :, None, None], ph


def scan(rot_deg=0.0, transpose=False, n=N_SCAN, step=STEP_PX, margin=2.0):
    """Positions (N, 2) px, pattern p = iy * n + ix, following docs/conventions.md (fast axis u at
    rot_deg from +x towards +y); ``transpose`` swaps the roles of iy and ix."""
    iy, ix = np.mgrid[:n, :n]
    iy, ix = iy.ravel().astype(float), ix.ravel().astype(float)
    if transpose:
        iy, ix = ix, iy
    th = np.deg2rad(rot_deg)
    pos = np.stack([(ix * np.sin(th) + iy * np.cos(th)) * step, (ix * np.cos(th) - iy * np.sin(th)) * step], 1)
    return pos - pos.min(0) + margin


def make_data(aberrations, rot_deg=0.0, transpose=False, seed=0):
    pos = scan(rot_deg, transpose)
    obj, ph = atoms(int(pos.max() + WIN + 4), seed=seed)
    probe = make_probe((WIN, WIN), PIX, KV, 25.0, aberrations, intensity=1e4)
    data = simulate(obj, probe, pos)
    centres = np.rint(pos).astype(int) + WIN // 2
    truth = ph[centres[:, 0], centres[:, 1]].reshape(N_SCAN, N_SCAN)
    return data, (truth.T if transpose else truth)


def test_public_names():
    for name in ("center_of_mass", "fit_scan_rotation", "idpc", "fit_parallax", "tcbf_image"):
        assert hasattr(initialize, name)


def test_center_of_mass_of_shifted_spot():
    d = np.zeros((2, 16, 16))
    d[0, 8, 8] = 1.0
    d[1, 5, 11] = 3.0
    com = center_of_mass(d)
    np.testing.assert_allclose(com, [[0, 0], [-3, 3]])
    np.testing.assert_allclose(center_of_mass(d.reshape(1, 2, 16, 16)), com)


def test_rotate_com_convention():
    # a COM along the fast axis u = (cos t, sin t) (x, y) has scan components (along v, along u) = (0, |c|)
    t = np.deg2rad(30.0)
    mag = np.arange(4.0)
    com = np.stack([mag * np.sin(t), mag * np.cos(t)], axis=1)
    g = rotate_com(com, (2, 2), 30.0)
    np.testing.assert_allclose(g[..., 0], 0, atol=1e-12)
    np.testing.assert_allclose(g[..., 1].ravel(), mag - mag.mean(), atol=1e-12)


@pytest.mark.parametrize("rot, transpose", [(0.0, False), (23.0, False), (-71.0, True), (140.0, False)])
def test_scan_rotation_and_transposition_from_com(rot, transpose):
    data, _ = make_data({"C10": -20.0}, rot, transpose)
    r = fit_scan_rotation(center_of_mass(data), (N_SCAN, N_SCAN))
    assert r["transpose"] == transpose
    assert abs((r["rotation_deg"] - rot + 180) % 360 - 180) < 0.5
    assert r["relative_curl"] < 0.5 * r["relative_curl_other"]


def test_idpc_weak_phase_object():
    data, truth = make_data({"C10": -20.0})
    com = center_of_mass(data)
    r = fit_scan_rotation(com, (N_SCAN, N_SCAN))
    ph = idpc(com, (N_SCAN, N_SCAN), STEP_A, r["rotation_deg"], r["transpose"], detector_pixel_inv_A=DK)
    assert ph.shape == (N_SCAN, N_SCAN)
    assert corr(ph, truth) >= 0.95          # no low-pass needed at this sampling
    # same with the detector pixel given in mrad
    ph2 = idpc(com, (N_SCAN, N_SCAN), STEP_A, r["rotation_deg"], r["transpose"],
               detector_pixel_mrad=DK * LAM * 1e3, wavelength_A=LAM)
    np.testing.assert_allclose(ph2, ph, atol=1e-10)


@pytest.mark.parametrize("c10", [-150.0, -60.0, 60.0, 150.0])
def test_parallax_defocus_both_signs(c10):
    data, truth = make_data({"C10": c10})
    p = fit_parallax(data, (N_SCAN, N_SCAN), STEP_A, DK, LAM)
    assert abs(p["C10"] - c10) <= max(0.05 * abs(c10), 5.0)
    assert abs(p["C12a"]) < 5 and abs(p["C12b"]) < 5
    assert abs((p["rotation_deg"] + 180) % 360 - 180) < 0.5 and not p["transpose"]
    assert p["residual_px"] < 0.2 and 0 < p["sigma"]["C10"] < 5
    assert corr(p["tcbf"]["phase"], truth) > 0.5


@pytest.mark.parametrize("ab, rot, transpose", [({"C10": -100.0, "C12a": 20.0, "C12b": -15.0}, 17.0, False),
                                                ({"C10": 100.0, "C12a": -10.0, "C12b": 25.0}, -33.0, True)])
def test_parallax_astigmatism_rotation_transposition(ab, rot, transpose):
    data, _ = make_data(ab, rot, transpose)
    p = fit_parallax(data, (N_SCAN, N_SCAN), STEP_A, DK, LAM, upsample=STEP_PX)
    for name in ("C10", "C12a", "C12b"):
        assert abs(p[name] - ab[name]) <= max(0.05 * abs(ab[name]), 5.0), name
    assert abs((p["rotation_deg"] - rot + 180) % 360 - 180) < 0.5
    assert p["transpose"] == transpose
    assert p["tcbf"]["image"].shape == (N_SCAN * STEP_PX,) * 2 and p["tcbf"]["pixel_A"] == pytest.approx(PIX)


def test_parallax_fixed_rotation_and_determinism():
    data, _ = make_data({"C10": -60.0})
    a = fit_parallax(data, (N_SCAN, N_SCAN), STEP_A, DK, LAM, rotation_deg=0.0, transpose=False, fit_c12=False)
    b = fit_parallax(data, (N_SCAN, N_SCAN), STEP_A, DK, LAM, rotation_deg=0.0, transpose=False, fit_c12=False)
    assert a["C10"] == b["C10"] and a["C12a"] == 0.0
    assert abs(a["C10"] + 60.0) < 3.0
    # the wrong 180-degree branch gives the opposite defocus (the ambiguity the COM rule resolves)
    c = fit_parallax(data, (N_SCAN, N_SCAN), STEP_A, DK, LAM, rotation_deg=180.0, transpose=False, fit_c12=False)
    assert c["C10"] == pytest.approx(-a["C10"], rel=1e-6)


def _phase_corr(res, truth_ph, pos):
    """Correlation of the reconstructed phase with the truth over the scanned area (given frame)."""
    oy, ox = np.rint(np.asarray(res["position_offset"], float)).astype(int)
    o = np.angle(res["obj"][..., 0, 0])
    lo = (pos.min(0) + WIN // 2 + 2).astype(int)
    hi = (pos.max(0) + WIN // 2 - 2).astype(int)
    return corr(o[lo[0] - oy:hi[0] - oy, lo[1] - ox:hi[1] - ox], truth_ph[lo[0]:hi[0], lo[1]:hi[1]])


def test_from_data_rotated_scan_positions():
    true_pos = scan(20.0)
    data, _ = make_data({"C10": -80.0}, 20.0)
    nominal = scan(0.0)
    out = initialize.from_data(dict(dataset=data, positions=nominal, scan_size=(N_SCAN, N_SCAN), acc_voltage=KV,
                                    pixel_size_x_A=PIX, pixel_size_y_A=PIX), semiangle_mrad=25.0)
    rep = out["report"]
    assert abs(rep["rotation_deg"] - 20.0) < 0.5 and not rep["transpose"]
    assert abs(out["aberrations"][0] + 80.0) < 5.0
    err = out["positions"] - true_pos
    err -= err.mean(axis=0)                       # a global shift is not observable
    assert np.abs(err).max() < 0.3
    assert out["obj"].ndim == 4 and np.allclose(np.abs(out["obj"]), 1.0)


def test_reconstruction_from_blind_start_matches_known_defocus():
    import pypty.iterative
    from tests.synthetic import base_params

    c10 = 120.0
    pos = scan()
    obj, ph = atoms(int(pos.max() + WIN + 4))
    data = simulate(obj, make_probe((WIN, WIN), PIX, KV, 25.0, {"C10": c10}, intensity=1e4), pos)
    blind = initialize.from_data(dict(dataset=data, positions=pos, scan_size=(N_SCAN, N_SCAN), acc_voltage=KV,
                                      pixel_size_x_A=PIX, pixel_size_y_A=PIX), semiangle_mrad=25.0)
    assert abs(blind["aberrations"][0] - c10) <= 0.05 * c10
    common = dict(epoch_max=10, scan_size=(N_SCAN, N_SCAN))
    known = pypty.iterative.run(base_params(data, pos, None, aberrations=[c10], **common))
    start = pypty.iterative.run(base_params(data, blind["positions"], None, aberrations=blind["aberrations"],
                                            obj=blind["obj"], **common))
    r_known, r_blind = _phase_corr(known, ph, pos), _phase_corr(start, ph, pos)
    assert r_known > 0.95
    assert r_blind >= r_known - 0.01


@pytest.mark.parametrize("n, factor", [(32, 37 / 32), (32, 1.5), (31, 1.3), (32, 2.0)])
def test_tcbf_upsampling_keeps_the_zero_frequency_at_the_centre(n, factor):
    """Odd and even sizes: a smooth image upsampled by Fourier padding keeps its values (regression: the
    spectrum was placed one pixel off for an odd target size from an even one)."""
    from pypty.initialize.direct.parallax import tcbf_image

    yy, xx = np.mgrid[:n, :n]
    img = 1 + 0.2 * np.cos(2 * np.pi * 2 * yy / n) * np.cos(2 * np.pi * 3 * xx / n)  # band-limited, periodic
    out = tcbf_image(np.stack([img] * 3), np.zeros((3, 2)), upsample=factor)["image"]
    m = out.shape[0]
    y2, x2 = np.mgrid[:m, :m] * (n / m)
    ref = 1 + 0.2 * np.cos(2 * np.pi * 2 * y2 / n) * np.cos(2 * np.pi * 3 * x2 / n)
    assert np.abs(out - ref).max() < 1e-9
