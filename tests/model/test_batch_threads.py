"""Batches of one evaluation in CPU threads (MultisliceModel.batch_workers): same result, deterministic, errors."""
import threading
import time

import numpy as np
import pytest

from pypty.backend import get_backend
from pypty.model.multislice import MultisliceModel

WIN = 16


def _problem(workers, seed=0):
    rng = np.random.default_rng(seed)
    bk = get_backend("numpy", workers=workers)
    model = MultisliceModel(bk, (WIN, WIN), (0.3, 0.3), 0.025, (2.0, 2.0), np.complex128)
    arrays = {"obj": np.exp(0.3j * rng.standard_normal((2, 1, 40, 40))),
              "probe": (rng.standard_normal((1, 2, WIN, WIN)) + 1j * rng.standard_normal((1, 2, WIN, WIN))),
              "positions": rng.uniform(0, 22, (24, 2))}
    data = rng.poisson(5.0, (24, WIN, WIN)).astype(float)
    batches = [np.arange(i, i + 4) for i in range(0, 24, 4)]
    return model, arrays, data, batches


NEED = ("obj", "probe", "positions")


def test_threads_give_the_serial_result_and_the_same_bits_twice():
    m1, arrays, data, batches = _problem(1)
    m2 = _problem(2)[0]
    assert m1.batch_workers(len(batches)) == 1 and m2.batch_workers(len(batches)) == 2
    l1, g1 = m1.loss_and_grad(arrays, batches, lambda i: data[i], need=NEED)
    l2, g2 = m2.loss_and_grad(arrays, batches, lambda i: data[i], need=NEED)
    l3, g3 = m2.loss_and_grad(arrays, batches, lambda i: data[i], need=NEED)
    assert l2 == pytest.approx(l1, rel=1e-13)
    for k in NEED:
        np.testing.assert_allclose(g2[k], g1[k], rtol=1e-11, atol=1e-13 * np.abs(g1[k]).max())
        assert np.array_equal(g2[k], g3[k]), k  # deterministic for a given number of threads
    assert l2 == l3


def test_an_error_in_one_thread_stops_the_others_early():
    model, arrays, data, batches = _problem(2)
    batches = [np.arange(i % 24, i % 24 + 1) for i in range(40)]  # 40 batches of one pattern
    served = {"odd": 0}
    lock = threading.Lock()

    def get_data(idx):
        n = int(idx[0])
        if n == 2:  # the second batch of thread 0 (the first is fetched before the threads start)
            raise ValueError("unreadable pattern 2")
        if n % 2:
            with lock:
                served["odd"] += 1
            time.sleep(0.05)
        return data[idx]

    with pytest.raises(ValueError, match="unreadable pattern 2"):
        model.loss_and_grad(arrays, batches, get_data, need=NEED)
    assert served["odd"] < 10  # thread 1 had 20 batches; it stopped after the error, not at the end


def test_fewer_threads_when_the_accumulators_do_not_fit(monkeypatch):
    import pypty.data.memory as memory

    model, arrays, data, batches = _problem(2)
    per_thread = 2 * 1 * 40 * 40 * 16  # slices x modes x canvas x complex128 (no bounding box: canvas)
    frac = model.THREAD_ACCUMULATOR_FRACTION
    monkeypatch.setattr(memory, "host_memory_bytes", lambda: int(1.5 * per_thread / frac))
    assert model._workers_for_memory(2, arrays["obj"], None, 1) == 1
    monkeypatch.setattr(memory, "host_memory_bytes", lambda: int(2.5 * per_thread / frac))
    assert model._workers_for_memory(2, arrays["obj"], None, 1) == 2
    assert model._workers_for_memory(2, arrays["obj"], (0, 0, 10, 10), 1) == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_a_pattern_listed_twice_counts_twice(workers):
    """Per-pattern gradients (positions) of a sequence with repeats: the sum over the occurrences."""
    model, arrays, data, _ = _problem(workers)
    gd = lambda i: data[i]  # noqa: E731
    once = model.loss_and_grad(arrays, [np.array([1, 2])], gd, need=("positions",))
    twice = model.loss_and_grad(arrays, [np.array([1, 2]), np.array([2, 1])], gd, need=("positions",))
    inside = model.loss_and_grad(arrays, [np.array([1, 2, 2, 1])], gd, need=("positions",))
    assert twice[0] == pytest.approx(2 * once[0], rel=1e-12) and inside[0] == pytest.approx(2 * once[0], rel=1e-12)
    for res in (twice, inside):
        np.testing.assert_allclose(res[1]["positions"], 2 * once[1]["positions"], rtol=1e-12, atol=1e-15)
    assert np.abs(once[1]["positions"][1:3]).max() > 0
