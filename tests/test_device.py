"""The GPU path, proven on the CPU: real training and evaluation on a strict stand-in for
CuPy (tests/device_standin.py), bit-identical to the NumPy run, with no device wait and
no host-to-device copy inside a training step. The real-GPU tests are in test_gpu.py."""

import numpy as np
import pytest

from conftest import VARIANTS, ff
from device_standin import FUNCTIONS, METHODS, UFUNCS, DeviceArray, StrictDevice

SIZES = ["--layer-sizes", "784,40,30,20", "--batch-size", "50", "--n-epochs", "2", "--quiet"]


def data(n=310, seed=0):
    """Images whose classes light different rows, and a held-out set; n is not a multiple
    of the batch, so the last batch is short."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = (rng.random((n, 784)) * 0.3).astype(np.float32)
    for i, k in enumerate(y):
        x[i, 100 + 56 * k:150 + 56 * k] = 1
    return x, y


def config(flags):
    return ff.parse_args(SIZES + flags)[1]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_training_on_the_device_is_bit_identical_to_the_cpu(name):
    cfg = config(VARIANTS[name])
    x, y = data()
    evaluation = (data(60, 1), data(60, 2))
    cpu, cpu_history = ff.train(cfg, x, y, evaluation=evaluation, log=None)
    device = StrictDevice()
    dev, dev_history = ff.train(cfg, x, y, evaluation=evaluation, log=None, xp=device)
    assert isinstance(dev.params, DeviceArray)
    np.testing.assert_array_equal(ff.to_host(dev.params), cpu.params)
    if cpu.head is not None:
        np.testing.assert_array_equal(ff.to_host(dev.head), cpu.head)
    for k in cpu_history:
        if k != "seconds":
            assert dev_history[k] == cpu_history[k], k
    x_test, y_test = data(120, 3)
    assert ff.evaluate(dev, x_test, y_test, cfg.predict_mode) == ff.evaluate(cpu, x_test, y_test, cfg.predict_mode)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_training_step_never_waits_or_copies(name):
    """Inside train_step no float(), no .get(), no host array: the strict device raises at
    the line that would make one."""
    cfg = config(VARIANTS[name])
    x, y = data()
    device = StrictDevice()
    state = ff.to_device(ff.init_state(cfg), device)
    x_d, y_d = device.asarray(x[:50]), device.asarray(y[:50])
    draws = ff.epoch_draws(ff.init_state(cfg), cfg, 50)             # the module's own draws
    batch = ff.Batch(x_d, y_d, *(None if a is None else device.asarray(a) for a in (draws.offsets, draws.uniforms)))
    grads = np.empty_like(state.net.params)
    k = ff.group_size(cfg)
    with device.forbid():
        for _ in range(3):
            stats, head_loss = ff.train_step(state, cfg, [batch] * k, [cfg.lr] * k, grads)
    assert isinstance(stats, DeviceArray) and stats.shape == (k, 3, 3)
    assert (head_loss is None) == (state.net.head is None)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_an_epoch_crosses_the_seam_a_fixed_handful_of_times(name):
    """Per epoch of 7 batches: 2 host-to-device copies (the order and the negatives' draws,
    a third with jitter: its index), and 1 read back of the statistics (2 with the softmax
    head). None of it grows with the number of batches."""
    cfg = config(VARIANTS[name])
    x, y = data()
    device = StrictDevice()
    state = ff.to_device(ff.init_state(cfg), device)
    x_d, y_d = device.asarray(x), device.asarray(y)
    device.reset()
    ff.train_epoch(state, cfg, x_d, y_d)
    head = state.net.head is not None
    assert device.counts == {"h2d": 2 + (cfg.jitter > 0), "d2h": 1 + head, "waits": 1 + head}


def test_the_stand_in_is_strict():
    device = StrictDevice()
    a = device.asarray(np.arange(6.0).reshape(2, 3))
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    with pytest.raises(TypeError, match="host np.ndarray"):
        a + np.ones(3)
    with pytest.raises(TypeError, match="host np.ndarray"):
        a[np.array([0, 1])]
    total = a.sum()
    assert isinstance(total, DeviceArray) and total.shape == ()   # a 0-d device array
    device.reset()
    assert float(total) == 15.0 and device.counts["waits"] == 1
    with device.forbid(), pytest.raises(AssertionError):
        bool(a[0, 0] > 0)
    with pytest.raises(TypeError, match="not on the stand-in's list"):
        np.linalg.norm(a)
    assert np.array_equal((a * 2 + 1).get(), np.arange(6.0).reshape(2, 3) * 2 + 1)


def test_the_stand_in_allows_only_what_cupy_has():
    """Where CuPy is importable, every name the stand-in allows must exist in it."""
    cupy = pytest.importorskip("cupy")
    missing = [n for n in sorted(UFUNCS | FUNCTIONS) if not hasattr(cupy, n)]
    missing += [f"ndarray.{n}" for n in sorted(METHODS) if not hasattr(cupy.ndarray, n)]
    assert not missing
