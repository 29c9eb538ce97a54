"""End-to-end checks of the loss terms (pypty.regularizers) and hand constraints (pypty.constraints) through the engine.

1. the history contract of class-D constraints scheduled at one epoch (reset, message, fresh evaluation);
2. the key of the cached loss and gradient (a weight changed by a lambda, a term switched on mid-run);
3. the per-term loss columns of loss.csv and results.h5, and print_flag 4;
4. the effect of each family on noisy synthetic data, against the same run without it;
5. exact restart with a loss term and the (class-A) object band limit.

Everything is built the way a run builds it: validated parameters, ``build_terms`` / ``build_constraints``, or
``pypty.iterative.run``.  The data are small (16-36 patterns, 32 x 32 windows).
"""
import csv
import os
import re

import numpy as np
import pytest

import pypty.iterative
from conftest import host, test_backend
from pypty.constraints import build_constraints
from pypty.engine.session import Reconstruction
from pypty.model.setup import build_setup
from pypty.parameters import validate
from pypty.regularizers import build_terms
from pypty.results import load_results
from synthetic import base_params, corr, dataset, default_probe, phase_object, raster, simulate

QUIET = dict(save_figures=())


@pytest.fixture(scope="module")
def small():
    _, probe, pos, data = dataset(4, 3.0, 44, seed=1)
    return pos, probe, data


def _rec(small, **kw):
    """A Reconstruction with the loss terms and constraints of the (validated) parameters."""
    pos, probe, data = small
    p = validate(base_params(data, kw.pop("positions", pos), kw.pop("probe", probe), **kw))
    bk = test_backend()
    return Reconstruction(p, build_setup(p, bk), build_terms(p, bk), build_constraints(p, bk))


def _spy(rec):
    """Record every optimizer step of ``rec``: whether (f0, g0) came from the cache, the start blocks, the arrays
    the objective was built on, and every evaluation (its block values and loss), in order."""
    log = []
    step = rec.opt.step

    def spied(fun, x, f0=None, g0=None, **kw):
        entry = dict(cached=f0 is not None and g0 is not None, x=x, base=dict(fun.base), calls=[], fun=fun)

        def counted(xx):
            f, g = fun(xx)
            entry["calls"].append((xx, f))
            return f, g

        log.append(entry)
        return step(counted, x, f0, g0, **kw)

    rec.opt.step = spied
    return log


def _rows(folder):
    with open(os.path.join(folder, "loss.csv"), newline="") as fh:
        return list(csv.DictReader(fh))


def _at(epoch, on, off):
    return f"lambda epoch: {on!r} if epoch == {epoch} else {off!r}"


# ================================================================== 1. history contract of class-D constraints
_RNG = np.random.default_rng(0)
_JITTER = 0.3 * _RNG.standard_normal((16, 2))
_TILTS = np.zeros((16, 6))
_TILTS[:, :2] = 0.5 * _RNG.standard_normal((16, 2))  # beam tilts before the specimen (tilt_mode 2)

AT = 3  # the epoch at which each constraint acts
CLASS_D = {
    "gaussian_filter": dict(apply_gaussian_filter=_at(AT, 1, 0)),
    "charge_flip": dict(do_charge_flip=_at(AT, 1, 0)),
    "restart_from_vacuum": dict(restart_from_vacuum=_at(AT, 1, 0)),
    "reset_positions": dict(reset_positions=_at(AT, 1, 0), update_probe_pos=1),
    "kr_filter": dict(kr_filter_radius=_at(AT, 0.5, 0)),
    "obj_amplitude_bounds": dict(obj_amplitude_bounds=_at(AT, [0.0, 1.0], None)),
    "obj_phase_positivity": dict(obj_phase_positivity=_at(AT, 1, 0)),
    "tilt_smooth": dict(tilt_smooth_sigma=_at(AT, 1.0, 0), update_tilts=1, tilts=_TILTS, tilt_mode=2,
                        scan_size=(4, 4)),
}


def _class_d_runs(small, name, n=5):
    kw = dict(CLASS_D[name], lazy_clean=True)  # no band limit: the constraint under test is the only edit
    if name == "reset_positions":
        kw["positions"] = small[0] + _JITTER
    switch = next(k for k, v in kw.items() if isinstance(v, str))
    runs = {}
    for on in (False, True):
        r = _rec(small, **{k: v for k, v in kw.items() if on or k != switch})
        assert any(c.name == name for c in r.constraints) == on
        log = _spy(r)
        before, copies, reps = [], [], []
        for e in range(n):
            before.append(dict(r.arrays))
            copies.append({k: v.copy() for k, v in r.arrays.items()})
            reps.append(r.step(e))
        runs[on] = (r, reps, log, before, copies)
    return runs


@pytest.mark.parametrize("name", sorted(CLASS_D))
def test_class_d_constraint_resets_history_and_evaluates_the_edited_point(small, name):
    runs = _class_d_runs(small, name)
    (_, quiet, qlog, _, _), (r, reps, log, before, copies) = runs[False], runs[True]
    # identical until the constraint acts (a lambda that is off is the same as the constraint being absent)
    assert [x.loss for x in reps[:AT]] == [x.loss for x in quiet[:AT]]
    # the history was reset: at most the pair of this epoch's step is stored, while the quiet run has more
    assert reps[AT].history_size <= 1 < quiet[AT].history_size
    assert r.opt.last_reset_reason.startswith(name + ":")
    assert reps[AT].message.startswith(name + ":"), reps[AT].message
    assert not any(name in x.message for i, x in enumerate(reps) if i != AT)
    # the quiet run continues from the cached (f, g); the edited point is evaluated afresh, first
    assert qlog[AT]["cached"] and not log[AT]["cached"]
    assert all(xx is not qlog[AT]["x"] for xx, _ in qlog[AT]["calls"])
    assert log[AT]["calls"][0][0] is log[AT]["x"]
    assert reps[AT].n_evals == len(log[AT]["calls"]) and quiet[AT].n_evals == len(qlog[AT]["calls"])
    assert reps[AT].n_evals >= quiet[AT].n_evals + 1
    # the edited arrays are new arrays, and the arrays of the previous epoch were not modified in place
    changed = [k for k in before[AT] if log[AT]["base"][k] is not before[AT][k]]
    assert changed and all(not np.shares_memory(log[AT]["base"][k], before[AT][k]) for k in changed)
    assert all(np.array_equal(host(before[AT][k]), host(copies[AT][k])) for k in before[AT])


def test_restart_from_vacuum_first_evaluation_is_the_vacuum_loss(small):
    r, _, log, before, _ = _class_d_runs(small, "restart_from_vacuum")[True]
    entry, prev = log[AT], before[AT]
    base = entry["base"]
    assert np.all(host(base["obj"]) == 1) and base["obj"].dtype == prev["obj"].dtype
    assert base["probe"] is prev["probe"] and base["positions"] is prev["positions"]  # untouched
    s = r.settings(AT)
    vacuum = dict(prev, obj=r.bk.xp.ones_like(prev["obj"]))
    data, _ = r.setup.model.loss_and_grad(vacuum, s.batches(r.setup.compute_batch), r.setup.get_data)
    first = entry["calls"][0][1]
    assert first == pytest.approx(s.loss_weight * data, rel=1e-13)
    # the object had moved away from vacuum before the reset (the reset did something)
    assert np.abs(host(prev["obj"]) - 1).max() > 1e-3


def test_reset_positions_restores_the_given_positions(small):
    r, _, log, before, _ = _class_d_runs(small, "reset_positions")[True]
    given = small[0] + _JITTER
    np.testing.assert_allclose(r.given_positions, given, rtol=0, atol=1e-12)
    moved = host(before[AT]["positions"]) + r.position_offset
    assert np.abs(moved - given).max() > 1e-3  # refined away from the given positions in epochs 0-2
    start = host(log[AT]["x"]["positions"])  # the positions at the first evaluation of the reset epoch
    assert np.abs(start + r.position_offset - given).max() <= 1e-12
    # object and probe untouched
    assert log[AT]["base"]["obj"] is before[AT]["obj"] and log[AT]["base"]["probe"] is before[AT]["probe"]


# ================================================================== 2. the key of the cached loss and gradient
def test_a_weight_changed_by_a_lambda_forces_a_fresh_evaluation(small):
    runs = {}
    for label, w in (("const", 0.01), ("step", "lambda epoch: 0.01 if epoch < 3 else 0.02")):
        r = _rec(small, atv_weight=w, lazy_clean=True)
        log = _spy(r)
        reps, after = [], []
        for e in range(5):
            reps.append(r.step(e))
            after.append(dict(r.arrays))
        runs[label] = (r, reps, log, after)
    (_, const, clog, _), (r, reps, log, after) = runs["const"], runs["step"]
    assert [x.loss for x in reps[:3]] == [x.loss for x in const[:3]]
    assert clog[3]["cached"] and not log[3]["cached"]  # the cached (f, g) of epoch 2 has the old weight
    assert log[3]["calls"][0][0] is log[3]["x"]
    assert reps[3].n_evals == len(log[3]["calls"]) == const[3].n_evals + 1
    assert log[4]["cached"]  # the same weight again at epoch 4: the cache is used
    assert reps[3].history_size == const[3].history_size  # no reset: the arrays did not change
    # the part reported at epoch 3 is the term with the new weight at the accepted point
    atv = next(t for t in r.terms if t.name == "atv")
    assert reps[3].parts["reg_atv"] == atv.value_and_grad(after[3], 3)[0]
    assert reps[3].parts["reg_atv"] == pytest.approx(2 * atv.value_and_grad(after[3], 2)[0], rel=1e-12)


def test_a_term_switched_on_mid_run_adds_its_part_from_that_epoch(small, tmp_path):
    on = "lambda epoch: 0 if epoch < 3 else 0.5"
    r = _rec(small, phase_norm_weight=on)
    log = _spy(r)
    reps = [r.step(e) for e in range(5)]
    for e, rep in enumerate(reps):
        assert set(rep.parts) == ({"loss_data"} if e < 3 else {"loss_data", "reg_phase_norm"})
        assert sum(rep.parts.values()) == pytest.approx(rep.loss, rel=1e-12)
    assert log[2]["cached"] and not log[3]["cached"] and log[4]["cached"]
    assert reps[3].parts["reg_phase_norm"] > 0
    # through the driver: the column exists from the start and is 0 while the term is off
    pos, probe, data = small
    out = str(tmp_path / "on")
    res = pypty.iterative.run(base_params(data, pos, probe, epoch_max=5, phase_norm_weight=on, output_folder=out,
                                          **QUIET))
    rows = _rows(out)
    reg = [float(row["reg_phase_norm"]) for row in rows]
    assert reg[:3] == [0.0, 0.0, 0.0] and min(reg[3:]) > 0
    assert [float(row["loss"]) for row in rows] == res["loss"] == [x.loss for x in reps]


# ================================================================== 3. per-term logging
def test_per_term_columns_in_loss_csv_results_and_print_flag_4(small, tmp_path, capsys):
    pos, probe, data = small
    out = str(tmp_path / "terms")
    res = pypty.iterative.run(base_params(data, pos, probe, epoch_max=4, atv_weight=0.05, phase_norm_weight=0.2,
                                          output_folder=out, print_flag=4, **QUIET))
    printed = capsys.readouterr()
    rows = _rows(out)
    cols = list(rows[0])
    assert cols[:3] == ["epoch", "wall_time_s", "loss"]
    assert set(cols[3:6]) == {"loss_data", "reg_atv", "reg_phase_norm"}
    assert cols[6:] == ["step", "accepted", "evaluations", "refined"]
    assert len(rows) == 4
    for row, loss in zip(rows, res["loss"]):
        parts = [float(row[k]) for k in ("loss_data", "reg_atv", "reg_phase_norm")]
        assert float(row["loss"]) == loss
        assert abs(sum(parts) - loss) <= 1e-9 * abs(loss)
        assert parts[1] > 0 and parts[2] > 0
    saved = load_results(out)["loss"]
    for k in ("loss", "loss_data", "reg_atv", "reg_phase_norm"):
        np.testing.assert_array_equal(saved[k], [float(row[k]) for row in rows])
    # print_flag 4: one line per epoch that lists every part (not one line per term)
    text = printed.out + printed.err
    lines = [ln for ln in text.splitlines() if "|g| per block" in ln]
    assert len(lines) == 4
    for ln, row in zip(lines, rows):
        for k in ("loss_data", "reg_atv", "reg_phase_norm"):
            m = re.search(rf"\b{k} ([-+0-9.eE]+)", ln)
            assert m, (k, ln)
            assert float(m.group(1)) == pytest.approx(float(row[k]), rel=1e-5)
    assert not any(ln.strip().startswith("reg_") for ln in text.splitlines())


# ================================================================== 4. behaviour of each family, end to end
C = 50  # canvas of the 6 x 6 scans below
SCAN = (slice(18, 35), slice(18, 35))  # pixels under the probe centres (corners 2..17 px + half a window)


@pytest.fixture(scope="module")
def half_vacuum():
    """A phase object on the left (x < 25 px), vacuum on the right; low-dose data (3e3 counts per pattern)."""
    pos = raster(6, 3.0)
    ph = np.angle(phase_object((C, C), seed=4)[..., 0, 0])
    ph[:, 25:] = 0
    probe = default_probe(intensity=3e3)
    data = simulate(np.exp(1j * ph)[..., None, None], probe, pos, counts=True, seed=2)
    return pos, probe, data, ph


VACUUM = (slice(19, 33), slice(29, 34))  # scanned, vacuum in the truth, 4+ px from the nearest feature


def _object_run(half_vacuum, **kw):
    pos, probe, data, ph = half_vacuum
    res = pypty.iterative.run(base_params(data, pos, probe, update_probe=0, epoch_max=10, **kw))
    assert not np.any(res["position_offset"])
    phase = np.angle(res["obj"][..., 0, 0])
    return float(np.std(phase[VACUUM])), corr(phase[SCAN], ph[SCAN])


@pytest.fixture(scope="module")
def plain_object(half_vacuum):
    return _object_run(half_vacuum)


@pytest.mark.parametrize("kw, ratio, corr_loss", [
    (dict(atv_weight=3.0), 0.6, 0.0),  # TV: less vacuum noise, features kept (correlation not lower)
    (dict(phase_norm_weight=3.0), 0.7, 0.08),  # L1 phase: less vacuum noise, features shrink a little
], ids=["atv", "phase_norm"])
def test_object_terms_lower_vacuum_phase_noise(half_vacuum, plain_object, kw, ratio, corr_loss):
    std0, corr0 = plain_object
    std1, corr1 = _object_run(half_vacuum, **kw)
    assert std0 > 0.01  # the plain run is visibly noisy in vacuum
    assert std1 < ratio * std0, (std0, std1)
    assert corr1 > corr0 - corr_loss, (corr0, corr1)  # not by flattening the features away


@pytest.fixture(scope="module")
def jittered_scan():
    """A 6 x 6 raster, data at the true positions (1e4 counts), the run starting from truth + 0.4 px jitter."""
    pos = raster(6, 3.0)
    obj = phase_object((C, C), seed=4)
    probe = default_probe(intensity=1e4)
    data = simulate(obj, probe, pos, counts=True, seed=2)
    start = pos + np.random.default_rng(7).normal(0, 0.4, pos.shape)
    return obj, probe, pos, start, data


def _position_error(scene, **kw):
    obj, probe, pos, start, data = scene
    res = pypty.iterative.run(base_params(data, start, probe, obj=obj, update_obj=0, update_probe=0,
                                          update_probe_pos=1, scan_size=(6, 6), epoch_max=8, **kw))
    return float(np.sqrt(np.mean((res["positions"] + res["position_offset"] - pos) ** 2)))


@pytest.mark.parametrize("weight", ["fast_axis_reg_weight_positions", "slow_axis_reg_weight_positions",
                                    "deformation_reg_weight_positions"])
def test_position_terms_lower_the_position_error_of_a_jittered_scan(jittered_scan, weight):
    _, _, pos, start, _ = jittered_scan
    rms_start = float(np.sqrt(np.mean((start - pos) ** 2)))
    rms_plain = _position_error(jittered_scan)
    rms_reg = _position_error(jittered_scan, **{weight: 10.0})
    assert rms_plain < rms_start  # the data alone help a little ...
    assert rms_reg < 0.7 * rms_plain, (rms_start, rms_plain, rms_reg)  # ... the smooth-grid prior much more


def test_window_term_removes_probe_intensity_outside_the_window():
    pos = raster(6, 3.0)
    obj = phase_object((C, C), seed=4)
    probe = default_probe(intensity=1e4)
    data = simulate(obj, probe, pos, counts=True, seed=2)
    y, x = np.mgrid[:32, :32]
    r = np.hypot(y - 16, x - 16)
    rng = np.random.default_rng(3)
    junk = (rng.standard_normal((32, 32)) + 1j * rng.standard_normal((32, 32))) * (r >= 10)
    junk *= np.sqrt(0.1 * np.sum(np.abs(probe) ** 2) / np.sum(np.abs(junk) ** 2))
    start = probe + junk[..., None]  # 10 % of the counts scattered outside r = 10 px

    def outside(p):  # fraction of the probe counts beyond r = 12 px (where the window map is 1)
        i = np.abs(p[..., 0]) ** 2
        return float(i[r >= 12].sum() / i.sum())

    def run(**kw):
        res = pypty.iterative.run(base_params(data, pos, start, obj=obj, update_obj=0, update_probe=1,
                                              epoch_max=10, **kw))
        return outside(res["probe"])

    plain = run()
    windowed = run(window_weight=1.0, window=[0.5, 0.75])  # W = 0 inside 8 px, 1 beyond 12 px
    assert outside(start) > 0.05 and outside(probe) < 0.01
    assert windowed < 0.4 * plain, (outside(start), plain, windowed)
    assert windowed < 1.5 * outside(probe)  # down to about the true probe's tail


@pytest.mark.parametrize("option", [
    dict(wedge_mu=100.0, beta_wedge=1.0),
    # the kz filter is a hand edit (history reset): twice in the run, as the docs recommend (not every epoch)
    dict(kz_filter_beta="lambda epoch: 1.0 if epoch in (2, 5) else 0", kz_filter_alpha=0.0),
], ids=["wedge term", "kz filter"])
def test_z_options_bring_slices_closer_to_their_truths(option):
    """Three different slices; the start adds a z-modulation of low lateral frequency (a Gaussian blob of phase
    +b, -b/2, -b/2 in the three slices) that leaves the slice-summed phase unchanged, so the data hardly see it.
    The wedge term (weight 1/2 on the cone q_z / q_r = 1/beta) and the kz filter (arctan weight on the same cone)
    remove it: every slice gets closer to its truth (less cross-talk between slices), and the slice sum stays as
    close to the truth's as without them."""
    S, dz = 3, 5.0
    pos = raster(6, 3.0)
    truth = np.concatenate([phase_object((C, C), seed=10 + s, strength=0.3) for s in range(S)], axis=2)
    probe = default_probe(intensity=1e4)
    data = simulate(truth, probe, pos, slice_distance=dz, counts=True, seed=2)
    yy, xx = np.mgrid[:C, :C]
    blob = 0.3 * np.exp(-((yy - 25) ** 2 + (xx - 25) ** 2) / (2 * 6.0 ** 2))
    zmod = np.cos(2 * np.pi * np.arange(S) / S)  # 1, -1/2, -1/2: sums to 0
    start = truth * np.exp(1j * blob[:, :, None, None] * zmod[None, None, :, None])

    def errors(o):
        """rms phase error per slice over the scanned area (one common phase offset removed), and of the sum."""
        d = np.angle(o[SCAN][..., 0] * truth[SCAN][..., 0].conj())
        d = d - d.mean()
        total = d.sum(axis=2)
        return np.sqrt(np.mean(d ** 2, axis=(0, 1))), float(np.sqrt(np.mean((total - total.mean()) ** 2)))

    def run(**kw):
        res = pypty.iterative.run(base_params(data, pos, probe, obj=start, update_probe=0, epoch_max=8,
                                              num_slices=S, slice_distances=[dz], **kw))
        return errors(res["obj"])

    (per0, sum0), (per1, sum1) = run(), run(**option)
    per_start, _ = errors(start)
    assert np.all(per0 > 0.5 * per_start)  # the data alone leave most of the z-modulation in place
    assert np.linalg.norm(per1) < 0.55 * np.linalg.norm(per0), (per_start, per0, per1)
    assert np.all(per1 < 0.85 * per0), (per_start, per0, per1)  # every slice gains
    assert sum1 < sum0 + 0.01, (sum0, sum1)  # what the data see (the slice sum) is not made worse


def test_fix_probe_intensity_keeps_the_probe_intensity_end_to_end(small):
    pos, probe, data = small
    start = probe * 1.3  # 1.69 times the counts of the data

    def counts(p):
        return float(np.sum(np.abs(p) ** 2))

    fixed = pypty.iterative.run(base_params(data, pos, start, update_probe=1, epoch_max=6, fix_probe_intensity=True))
    free = pypty.iterative.run(base_params(data, pos, start, update_probe=1, epoch_max=6))
    assert abs(counts(fixed["probe"]) / counts(start) - 1) <= 1e-12
    assert abs(counts(free["probe"]) / counts(start) - 1) > 1e-2
    assert not np.allclose(fixed["probe"], start)  # the probe was refined, at fixed intensity
    # switched on mid-run: the intensity at the switch is kept from then on
    r = _rec(small, probe=start, update_probe=1, fix_probe_intensity="lambda epoch: epoch >= 2", lazy_clean=True)
    seen = []
    for e in range(5):
        r.step(e)
        seen.append(counts(host(r.arrays["probe"])))
    assert abs(seen[0] / counts(start) - 1) > 1e-3
    np.testing.assert_allclose(seen[2:], seen[1], rtol=1e-12)


def test_mixed_variance_makes_the_low_frequencies_of_two_object_modes_closer():
    pos = raster(6, 3.0)
    obj = phase_object((C, C), seed=4)
    probe = default_probe(intensity=1e4)
    data = simulate(np.concatenate([obj, obj], axis=3) / np.sqrt(2), probe, pos, counts=True, seed=2)
    yy, xx = np.mgrid[:C, :C]
    blob = 0.3 * np.exp(-((yy - 25) ** 2 + (xx - 25) ** 2) / (2 * 6.0 ** 2))
    start = np.stack([np.exp(1j * blob), np.exp(-1j * blob)], axis=-1)[:, :, None, :] / np.sqrt(2)
    sigma = 0.1
    f = np.fft.fftfreq(C)
    g = np.exp(-(f[:, None] ** 2 + f[None, :] ** 2) / sigma ** 2)

    def low_difference(o):  # low-passed mode difference over the scanned area, relative to the modes
        d = np.fft.ifft2(g * np.fft.fft2(o[:, :, 0, 0] - o[:, :, 0, 1]))
        return float(np.linalg.norm(d[SCAN]) / np.linalg.norm(o[SCAN][:, :, 0, :]))

    def run(**kw):
        res = pypty.iterative.run(base_params(data, pos, probe, obj=start, update_probe=0, epoch_max=8, **kw))
        return low_difference(res["obj"]), res["loss"][-1]

    (d0, loss0), (d1, loss1) = run(), run(mixed_variance_weight=100.0, mixed_variance_sigma=sigma)
    assert low_difference(start) > 0.2 and d0 > 0.1  # the data alone do not tell the modes apart
    assert d1 < 0.25 * d0, (low_difference(start), d0, d1)
    assert loss1 < 1.01 * loss0  # at no real cost in the fit


# ================================================================== 5. exact restart with loss terms
def test_restart_with_loss_terms_and_band_limit_is_bit_identical(small, tmp_path):
    pos, probe, data = small
    kw = dict(atv_weight=0.05, phase_norm_weight="lambda epoch: 0 if epoch < 4 else 0.3",
              update_probe_pos="lambda e: e >= 2", hist_length=5, **QUIET)  # lazy_clean False: band limit on

    def run(**more):
        return pypty.iterative.run(base_params(data, pos, probe, **kw, **more))

    full_dir, split_dir = str(tmp_path / "full"), str(tmp_path / "split")
    full = run(epoch_max=6, output_folder=full_dir)
    first = run(epoch_max=3, output_folder=split_dir)
    second = run(epoch_max=6, output_folder=split_dir, restart_from=split_dir)
    assert first["loss"] + second["loss"] == full["loss"]
    for k in ("obj", "probe", "positions"):
        assert np.array_equal(second[k], full[k]), k
    a, b = load_results(full_dir)["loss"], load_results(split_dir)["loss"]
    for k in ("loss", "loss_data", "reg_atv", "reg_phase_norm", "evaluations"):
        np.testing.assert_array_equal(b[k], a[k], err_msg=k)
    assert np.all(np.asarray(a["reg_phase_norm"])[:4] == 0) and np.all(np.asarray(a["reg_phase_norm"])[4:] > 0)


def test_restart_keeps_the_given_positions_for_reset_positions(small, tmp_path):
    pos, probe, data = small
    start = pos + _JITTER
    kw = dict(update_probe_pos=1, reset_positions=_at(4, 1, 0), **QUIET)

    def run(**more):
        return pypty.iterative.run(base_params(data, start, probe, **kw, **more))

    out = str(tmp_path / "split")
    full = run(epoch_max=6)
    first = run(epoch_max=3, output_folder=out)
    saved = load_results(out)["restart"]
    second = run(epoch_max=6, output_folder=out, restart_from=out)
    assert first["loss"] + second["loss"] == full["loss"]
    for k in ("obj", "probe", "positions"):
        assert np.array_equal(second[k], full[k]), k
    np.testing.assert_allclose(saved.get("given_positions"), start, rtol=0, atol=1e-12)
