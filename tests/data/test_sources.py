"""Known-answer tests for :mod:`pypty.data`: preprocessing, sources, validation, and its use by ``run``.

Every expected value is built by hand in the test (explicit arrays, loops,
``np.roll``), never by calling the code under test a second time.
"""
import h5py
import numpy as np
import pytest

import pypty.iterative
from pypty.backend import get_backend
from pypty.data import DataError, PatternSource, Preprocessing, preprocess
from pypty.parameters import PyptyParameterError, validate
from pypty.model.setup import build_setup
from pypty.probe import make_probe
from synthetic import KV, PIX, WIN, base_params, default_probe, phase_object, raster, simulate


def _prep(pattern, **kw):
    """preprocess() of a single 2D pattern, returned as 2D."""
    return preprocess(np.asarray(pattern, float)[None], Preprocessing(**kw))[0]


def _source_centred(pattern, **kw):
    """The same pattern through PatternSource.batch, rolled back from FFT order by hand."""
    src = PatternSource(dataset=np.asarray(pattern, float)[None], prep=Preprocessing(**kw))
    out = src.batch([0])[0]
    ky, kx = out.shape
    return np.roll(out, (ky // 2, kx // 2), axis=(0, 1))


def _both(pattern, **kw):
    return [_prep(pattern, **kw), _source_centred(pattern, **kw)]


# ============================================================== preprocessing
def test_bin_2x2_sums_blocks():
    pat = np.arange(16.0).reshape(4, 4)
    expected = np.array([[0 + 1 + 4 + 5, 2 + 3 + 6 + 7],
                         [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]], float)  # [[10, 18], [42, 50]]
    for out in _both(pat, bin=2):
        np.testing.assert_array_equal(out, expected)
    # non-square detector, 3x3 binning
    out = _prep(np.arange(54.0).reshape(6, 9), bin=3)
    assert out.shape == (2, 3)
    assert out[0, 0] == sum(r * 9 + c for r in range(3) for c in range(3))
    assert out[1, 2] == sum(r * 9 + c for r in range(3, 6) for c in range(6, 9))


@pytest.mark.parametrize("shape", [(5, 5), (4, 6)])
def test_bin_not_dividing_detector_raises(shape):
    pat = np.ones(shape)
    b = 2 if shape == (5, 5) else 4
    with pytest.raises(DataError, match="data_bin"):
        _prep(pat, bin=b)
    with pytest.raises(DataError, match="data_bin"):
        PatternSource(dataset=pat[None], prep=Preprocessing(bin=b))


def test_flip_ky_even_size_keeps_zero_frequency_row():
    pat = np.zeros((6, 6))
    pat[3, 2] = 5.0  # zero-frequency row K//2 = 3
    pat[4, 1] = 2.0  # ky = +1 -> ky = -1 (row 2)
    pat[0, 0] = 1.0  # Nyquist row stays
    for out in _both(pat, flip_ky=True):
        assert out[3, 2] == 5.0 and out[2, 1] == 2.0 and out[0, 0] == 1.0


def test_flip_ky_reverses_rows():
    pat = np.arange(12.0).reshape(3, 4)
    expected = np.array([[8, 9, 10, 11], [4, 5, 6, 7], [0, 1, 2, 3]], float)
    for out in _both(pat, flip_ky=True):
        np.testing.assert_array_equal(out, expected)


def test_integer_shift_moves_pixel():
    pat = np.zeros((8, 8))
    pat[3, 4] = 7.0
    expected = np.zeros((8, 8))
    expected[4, 2] = 7.0  # (i + 1, j - 2)
    for out in _both(pat, shift=(1, -2)):
        np.testing.assert_array_equal(out, expected)


def test_integer_shift_shifts_in_zeros_and_drops_what_leaves():
    pat = np.ones((5, 6))
    out = _prep(pat, shift=(2, 0))
    assert np.all(out[:2] == 0) and np.all(out[2:] == 1)
    out = _prep(pat, shift=(0, -1))
    assert np.all(out[:, -1] == 0) and np.all(out[:, :-1] == 1)
    edge = np.zeros((5, 5))
    edge[4, 2] = 3.0
    assert np.all(_prep(edge, shift=(1, 0)) == 0)


@pytest.mark.parametrize("shift, cells", [((0.5, 0), [(3, 4), (4, 4)]),
                                          ((0, 0.5), [(3, 4), (3, 5)]),
                                          ((-0.5, 0), [(2, 4), (3, 4)])])
def test_half_pixel_shift_splits_counts_equally(shift, cells):
    pat = np.zeros((8, 8))
    pat[3, 4] = 10.0
    expected = np.zeros((8, 8))
    for c in cells:
        expected[c] = 5.0
    for out in _both(pat, shift=shift):
        np.testing.assert_allclose(out, expected, atol=1e-12)


def test_fractional_shift_linear_weights():
    pat = np.zeros((8, 8))
    pat[3, 4] = 8.0
    out = _prep(pat, shift=(0.25, -0.75))
    expected = np.zeros((8, 8))
    # bilinear: y 3 -> 3.25 (0.75 at 3, 0.25 at 4); x 4 -> 3.25 (0.75 at 3, 0.25 at 4)
    expected[3, 3], expected[3, 4] = 8 * 0.75 * 0.75, 8 * 0.75 * 0.25
    expected[4, 3], expected[4, 4] = 8 * 0.25 * 0.75, 8 * 0.25 * 0.25
    np.testing.assert_allclose(out, expected, atol=1e-12)


@pytest.mark.parametrize("shift", [(0.3, -0.7), (1.25, 2.5), (-2, 1), (0.5, 0.5)])
def test_shift_conserves_counts_inside_frame(shift):
    rng = np.random.default_rng(3)
    pat = np.zeros((16, 16))
    pat[4:12, 4:12] = rng.uniform(0, 100, (8, 8))  # 4 px empty border: nothing leaves
    out = _prep(pat, shift=shift)
    assert out.sum() == pytest.approx(pat.sum(), rel=1e-12)
    # centre of mass moves by the shift
    yy, xx = np.mgrid[:16, :16]
    com0 = np.array([(yy * pat).sum(), (xx * pat).sum()]) / pat.sum()
    com1 = np.array([(yy * out).sum(), (xx * out).sum()]) / out.sum()
    np.testing.assert_allclose(com1 - com0, shift, atol=1e-10)


def test_fractional_shift_of_edge_pixel_inwards_keeps_its_counts():
    """Zeros are shifted in from outside: an edge pixel moved inwards by 1/4 px keeps 3/4 in place."""
    pat = np.zeros((6, 6))
    pat[0, 2] = 8.0
    out = _prep(pat, shift=(0.25, 0))
    expected = np.zeros((6, 6))
    expected[0, 2], expected[1, 2] = 6.0, 2.0
    np.testing.assert_allclose(out, expected, atol=1e-12)
    # moved outwards by 1/2 px: half leaves the frame
    out = _prep(pat, shift=(-0.5, 0))
    assert out[0, 2] == pytest.approx(4.0) and out.sum() == pytest.approx(4.0)


@pytest.mark.parametrize("k, p", [(8, 3), (7, 2), (6, 1)])
def test_pad_adds_zero_border_and_keeps_centre(k, p):
    rng = np.random.default_rng(k)
    pat = rng.uniform(1, 2, (k, k))
    pat[k // 2, k // 2] = 100.0  # zero frequency of a centred pattern
    for out in _both(pat, pad=p):
        assert out.shape == (k + 2 * p, k + 2 * p)
        n = k + 2 * p
        assert out[n // 2, n // 2] == 100.0
        np.testing.assert_array_equal(out[p:p + k, p:p + k], pat)
        ring = np.ones((n, n), bool)
        ring[p:p + k, p:p + k] = False
        assert np.all(out[ring] == 0)
    # in FFT order the zero frequency of the padded pattern is at [0, 0]
    src = PatternSource(dataset=pat[None], prep=Preprocessing(pad=p))
    assert src.pattern_shape == (k + 2 * p, k + 2 * p)
    assert src.batch([0])[0][0, 0] == 100.0


def test_multiplier_scales_counts():
    pat = np.arange(9.0).reshape(3, 3)
    for out in _both(pat, multiplier=2.5):
        np.testing.assert_allclose(out, np.arange(9.0).reshape(3, 3) * 2.5, rtol=1e-15)


@pytest.mark.parametrize("k", [6, 5])
def test_batch_is_in_fft_order(k):
    pat = np.arange(k * k, dtype=float).reshape(k, k)
    src = PatternSource(dataset=np.stack([pat, 2 * pat]))
    out = src.batch([0, 1])
    assert out.shape == (2, k, k)
    assert out[0, 0, 0] == pat[k // 2, k // 2]
    assert out[1, 0, 0] == 2 * pat[k // 2, k // 2]
    expected = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            expected[i, j] = pat[(i + k // 2) % k, (j + k // 2) % k]
    np.testing.assert_array_equal(out[0], expected)
    # the mean pattern is returned centred again
    np.testing.assert_allclose(src.mean_pattern(), 1.5 * pat)
    assert src.mean_total_counts() == pytest.approx(1.5 * pat.sum())


def test_order_bin_flip_shift_pad_multiply():
    rng = np.random.default_rng(7)
    raw = rng.integers(0, 10, (8, 8)).astype(float)
    # 1. bin 2x2
    b = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            b[i, j] = raw[2 * i:2 * i + 2, 2 * j:2 * j + 2].sum()
    # 2. flip rows
    f = np.array([b[(4 - r) % 4] for r in range(4)])  # ky -> -ky about row 4//2
    # 3. shift (dy, dx) = (1, -1): out[i, j] = in[i - 1, j + 1], zeros shifted in
    s = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            if 0 <= i - 1 < 4 and 0 <= j + 1 < 4:
                s[i, j] = f[i - 1, j + 1]
    # 4. pad 1
    pd = np.zeros((6, 6))
    pd[1:5, 1:5] = s
    # 5. multiply 3
    expected = 3 * pd
    kw = dict(bin=2, flip_ky=True, shift=(1, -1), pad=1, multiplier=3.0)
    for out in _both(raw, **kw):
        np.testing.assert_array_equal(out, expected)
    # the test can tell the orders apart: shift before flip, or pad before shift, differ
    shift_then_flip = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            if 0 <= i - 1 < 4 and 0 <= j + 1 < 4:
                shift_then_flip[(4 - i) % 4, j] = b[i - 1, j + 1]
    assert not np.array_equal(shift_then_flip, s)
    pad_then_shift = np.zeros((6, 6))
    pad_then_shift[2:6, 0:4] = f  # content pushed past the edge would survive in the padding
    assert not np.array_equal(pad_then_shift, pd)


# ============================================================== sources
SCAN = (3, 4)
K = 6


@pytest.fixture(scope="module")
def data4():
    rng = np.random.default_rng(11)
    return rng.uniform(0, 100, SCAN + (K, K))


def _make_source(kind, data4, tmp_path, **kw):
    data3 = data4.reshape((-1, K, K))
    if kind == "array3":
        return PatternSource(dataset=data3, **kw)
    if kind == "array4":
        return PatternSource(dataset=data4, **kw)
    if kind == "npy3":
        path = tmp_path / "d3.npy"
        np.save(path, data3)
        return PatternSource(str(path), **kw)
    if kind == "npy4":
        path = tmp_path / "d4.npy"
        np.save(path, data4)
        return PatternSource(str(path), **kw)
    if kind == "h5":
        path = tmp_path / "d.h5"
        with h5py.File(path, "w") as f:
            f["data"] = data3
        return PatternSource(str(path), **kw)
    raise AssertionError(kind)


KINDS = ["array3", "array4", "npy3", "npy4", "h5"]


@pytest.mark.parametrize("one_by_one", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_sources_give_the_requested_patterns(kind, one_by_one, data4, tmp_path):
    data3 = data4.reshape((-1, K, K))
    src = _make_source(kind, data4, tmp_path, load_one_by_one=one_by_one)
    try:
        assert src.n == 12 and src.pattern_shape == (K, K)
        assert src.scan_size == (SCAN if kind.endswith("4") else None)
        for idx in ([0, 1, 2], [5, 0, 11, 5, 3, 3], [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0], [7]):
            out = src.batch(idx)
            assert out.dtype == np.float64 and out.shape == (len(idx), K, K)
            for row, i in zip(out, idx):
                expected = np.roll(data3[i], (-(K // 2), -(K // 2)), axis=(0, 1))
                np.testing.assert_array_equal(row, expected)
        # np.int64 array indices work too
        np.testing.assert_array_equal(src.batch(np.array([4, 2])), src.batch([4, 2]))
    finally:
        src.close()


def test_sources_identical_with_preprocessing(data4, tmp_path):
    prep = Preprocessing(multiplier=2.0, pad=2, bin=2, flip_ky=True, shift=(0.5, -1.0))
    idx = [9, 2, 2, 0, 11, 4]
    ref = None
    for kind in KINDS:
        for one in (True, False):
            src = _make_source(kind, data4, tmp_path, prep=prep, load_one_by_one=one)
            out = src.batch(idx)
            src.close()
            assert out.shape == (6, K // 2 + 4, K // 2 + 4)
            if ref is None:
                ref = out
            np.testing.assert_array_equal(out, ref, err_msg=f"{kind} one_by_one={one}")


def test_scan_size_checks(data4):
    data3 = data4.reshape((-1, K, K))
    assert PatternSource(dataset=data3, scan_size=(4, 3)).scan_size == (4, 3)
    assert PatternSource(dataset=data3, scan_size=(3, 4)).scan_size == (3, 4)
    assert PatternSource(dataset=data4, scan_size=(3, 4)).scan_size == (3, 4)
    with pytest.raises(DataError, match="scan_size"):
        PatternSource(dataset=np.ones((16, 4, 4)), scan_size=(4, 5))
    with pytest.raises(DataError, match="scan_size"):
        PatternSource(dataset=data4, scan_size=(4, 3))


def test_force_dtype_float32(data4, tmp_path):
    data3 = data4.reshape((-1, K, K))
    for one in (True, False):
        src = _make_source("h5", data4, tmp_path, dtype=np.float32, load_one_by_one=one,
                           prep=Preprocessing(pad=1, multiplier=3.0))
        out = src.batch([3, 1])
        src.close()
        assert out.dtype == np.float32
        expected = np.zeros((K + 2, K + 2))
        expected[1:-1, 1:-1] = 3 * data3[3]
        np.testing.assert_allclose(out[0], np.roll(expected, (-(K // 2 + 1),) * 2, axis=(0, 1)), rtol=1e-6)


def test_force_dataset_dtype_through_setup(data4):
    data3 = data4.reshape((-1, K, K))
    probe = np.ones((K, K, 1), complex) * np.sqrt(data3.sum(axis=(1, 2)).mean() / K**2)
    p = validate(dict(dataset=data3, positions=np.zeros((12, 2)), probe=probe,
                      force_dataset_dtype=np.float32))
    st = build_setup(p, get_backend("numpy"))
    try:
        got = st.get_data(np.array([2, 0]))
        assert got.dtype == np.float32
        np.testing.assert_allclose(got[1], np.roll(data3[0], (-3, -3), axis=(0, 1)), rtol=1e-6)
    finally:
        st.close()


@pytest.mark.parametrize("one_by_one", [True, False])
def test_source_never_modifies_user_array(one_by_one):
    rng = np.random.default_rng(5)
    for arr in (rng.uniform(0, 50, (2, 3, 8, 8)), rng.integers(0, 50, (6, 8, 8)).astype(np.uint16)):
        copy = arr.copy()
        src = PatternSource(dataset=arr, load_one_by_one=one_by_one,
                            prep=Preprocessing(multiplier=2.0, pad=2, bin=2, flip_ky=True, shift=(0.5, 1)))
        b = src.batch([0, 5, 5])
        b *= 0  # writing into a batch must not reach the user's data either
        src.mean_pattern()
        src.mean_total_counts()
        src.batch([1, 2])
        np.testing.assert_array_equal(arr, copy)
        assert arr.dtype == copy.dtype
        # a second read is unaffected by writing into the first batch
        assert np.all(src.batch([0, 5, 5]).sum(axis=(1, 2)) > 0)


# ============================================================== bad data
@pytest.mark.parametrize("shape", [(6, 6), (1, 2, 3, 4, 4)])
def test_wrong_rank_raises_with_shape(shape, tmp_path):
    with pytest.raises(DataError, match=str(shape).replace("(", r"\(").replace(")", r"\)")):
        PatternSource(dataset=np.ones(shape))
    path = tmp_path / "bad.npy"
    np.save(path, np.ones(shape))
    with pytest.raises(DataError, match=r"\(6, 6\)|\(1, 2, 3, 4, 4\)"):
        PatternSource(str(path))


def test_nan_and_inf_counted():
    d = np.ones((10, 4, 4))
    d[1, 0, 0] = np.nan
    d[7, 2, 3] = np.inf
    d[9, 1, 1] = -np.inf
    for chunk in (256, 3):  # the count covers all patterns, not only the first chunk
        with pytest.raises(DataError, match=r"\b3 NaN or inf") as ei:
            PatternSource(dataset=d, check_chunk=chunk)
        assert "first in patterns 0.." in str(ei.value)
    d = np.ones((4, 4, 4))
    d[2, 1, 1] = np.nan
    with pytest.raises(DataError, match=r"\b1 NaN"):
        PatternSource(dataset=d)


def test_negative_counts_counted():
    d = np.ones((10, 4, 4))
    d[0, 0, 0] = d[4, 1, 2] = d[9, 3, 3] = -0.5
    for chunk in (256, 2):
        with pytest.raises(DataError, match=r"\b3 negative") as ei:
            PatternSource(dataset=d, check_chunk=chunk)
        assert "negative" in str(ei.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        PatternSource(str(tmp_path / "nothing.h5"))


def test_h5_without_data_lists_keys(tmp_path):
    path = tmp_path / "wrong.h5"
    with h5py.File(path, "w") as f:
        f["patterns"] = np.ones((2, 4, 4))
        f["scan"] = np.ones(3)
    with pytest.raises(DataError, match="'data'") as ei:
        PatternSource(str(path))
    assert "patterns" in str(ei.value) and "scan" in str(ei.value)


def test_h5_closed_after_a_data_error(tmp_path):
    """The file is not left open (and locked) when the data are rejected."""
    path = tmp_path / "neg.h5"
    d = np.ones((3, 4, 4))
    d[1, 1, 1] = -1
    with h5py.File(path, "w") as f:
        f["data"] = d
    with pytest.raises(DataError, match="negative") as ei:
        PatternSource(str(path))
    assert ei.value is not None  # keep the traceback (and the source it references) alive
    with h5py.File(path, "w") as f:  # fails with "already open" if the source kept it open
        f["data"] = np.abs(d)
    src = PatternSource(str(path))
    assert src.batch([1])[0].sum() == 16
    src.close()


def test_h5_4d_data_rejected(tmp_path):
    path = tmp_path / "d4.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.ones((2, 2, 4, 4))
    with pytest.raises(DataError, match=r"\(2, 2, 4, 4\)"):
        PatternSource(str(path))


def test_unsupported_extension(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("1 2 3\n")
    with pytest.raises(DataError, match="unsupported extension"):
        PatternSource(str(path))


def test_complex_data_rejected():
    with pytest.raises(DataError, match="real"):
        PatternSource(dataset=np.ones((2, 4, 4), complex))


def test_no_data_given():
    with pytest.raises(DataError, match="no data"):
        PatternSource()


# ============================================================== through run()
N_SCAN = 4  # 16 positions, 2 px apart, from 2 to 8 px


@pytest.fixture(scope="module")
def tiny():
    pos = raster(N_SCAN, 2.0)
    obj = phase_object((WIN + 8, WIN + 8), seed=2)
    probe = default_probe()
    data = simulate(obj, probe, pos)
    return pos, probe, data


def _loss_ok(res, n):
    assert len(res["loss"]) == n
    assert all(np.isfinite(res["loss"]))


def test_run_with_data_pad_and_padded_probe(tiny):
    pos, _, data = tiny
    pad = 4
    probe = make_probe((WIN + 2 * pad,) * 2, PIX, KV, 25.0, {"C10": -60.0}, intensity=float(data.sum(axis=(1, 2)).mean()))
    res = pypty.iterative.run(base_params(data, pos, probe, data_pad=pad, epoch_max=2))
    _loss_ok(res, 2)
    assert res["probe"].shape == (WIN + 2 * pad, WIN + 2 * pad, 1)
    assert res["obj"].shape[:2] == (8 + WIN + 2 * pad, 8 + WIN + 2 * pad)


def test_run_with_data_pad_and_unpadded_probe_names_probe(tiny):
    pos, probe, data = tiny
    with pytest.raises(PyptyParameterError, match="'probe'"):
        pypty.iterative.run(base_params(data, pos, probe, data_pad=4, epoch_max=1))


def test_run_multiplier_equals_scaled_data(tiny):
    pos, probe, data = tiny
    copy = data.copy()
    start = default_probe(defocus=50.0) * np.sqrt(2.0)
    a = pypty.iterative.run(base_params(data, pos, start, data_multiplier=2, epoch_max=3))
    b = pypty.iterative.run(base_params(2 * data, pos, start, epoch_max=3))
    _loss_ok(a, 3)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-10)
    np.testing.assert_array_equal(data, copy)


def test_run_sequence_half_use_full_fov_false(tiny):
    pos, probe, data = tiny
    seq = list(range(8, 16))  # the last two scan rows: y in {6, 8}, x in {2, 4, 6, 8}
    res = pypty.iterative.run(base_params(data, pos, probe, sequence=seq, use_full_FOV=False, epoch_max=2))
    _loss_ok(res, 2)
    # positions index the returned (cropped) object; position_offset maps them back to the user's frame
    np.testing.assert_array_equal(res["position_offset"], np.floor(pos[seq].min(axis=0)))
    np.testing.assert_allclose(res["positions"] + res["position_offset"], pos, rtol=0, atol=1e-12)
    assert res["positions"][seq].min() == 0.0
    # canvas only for the selected positions: they span 2 px in y and 6 px in x after the offset
    assert res["obj"].shape[:2] == (2 + WIN, 6 + WIN)
    full = pypty.iterative.run(base_params(data, pos, probe, sequence=seq, use_full_FOV=True, epoch_max=2))
    _loss_ok(full, 2)
    np.testing.assert_allclose(full["positions"], pos, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(full["position_offset"], [0.0, 0.0])
    assert full["obj"].shape[:2] == (8 + WIN, 8 + WIN)


@pytest.mark.parametrize("kind, one_by_one", [("h5", True), ("npy4", True), ("h5", False), ("npy3", True)])
def test_run_from_file_matches_dataset(tiny, tmp_path, kind, one_by_one):
    pos, probe, data = tiny
    start = default_probe(defocus=50.0)
    ref = pypty.iterative.run(base_params(data, pos, start, epoch_max=3))
    if kind == "h5":
        path = tmp_path / "data.h5"
        with h5py.File(path, "w") as f:
            f["data"] = data
    elif kind == "npy4":
        path = tmp_path / "data4.npy"
        np.save(path, data.reshape(N_SCAN, N_SCAN, WIN, WIN))
    else:
        path = tmp_path / "data3.npy"
        np.save(path, data)
    p = base_params(None, pos, start, epoch_max=3, data_path=str(path), load_one_by_one=one_by_one)
    res = pypty.iterative.run(p)
    _loss_ok(res, 3)
    np.testing.assert_allclose(res["loss"], ref["loss"], rtol=1e-10)
    np.testing.assert_allclose(res["obj"], ref["obj"], rtol=0, atol=1e-10)
