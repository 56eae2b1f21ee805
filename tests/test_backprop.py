"""The backprop baseline (experiments/backprop.py): its gradient against central differences
in float64, determinism, a step that learns, the CLI on synthetic MNIST, refused values."""

import json
import sys

import numpy as np
import pytest

from conftest import ROOT, ff

sys.path.insert(0, str(ROOT / "experiments"))
import backprop as bp  # noqa: E402

FD_STEP = 1e-6      # central-difference step (float64)
FD_RTOL = 1e-6      # analytic vs numeric, relative to the gradient's largest entry
TINY = ["--layer-sizes", "784,20,16", "--batch-size", "32", "--lr", "0.01", "--quiet"]


def tiny_problem(sizes=(7, 6, 5, 10), batch=9, seed=0, dtype=np.float64):
    """A small net in `dtype`, its flat parameters and one batch (x, y)."""
    rng = np.random.default_rng(seed)
    params = ff.init_net(list(sizes), rng).params.astype(dtype)
    x = rng.standard_normal((batch, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], batch)
    return list(sizes), params, x, y


def test_gradient_matches_central_differences_in_float64():
    """Every weight and bias of every layer, hidden and output."""
    sizes, params, x, y = tiny_problem()
    grads = np.empty_like(params)
    loss = bp.loss_and_grads(ff.layer_views(params, sizes), x, y, ff.layer_views(grads, sizes))
    assert loss.shape == () and loss.dtype == np.float64

    def f(p):
        return bp.loss_and_grads(ff.layer_views(p, sizes), x, y, ff.layer_views(np.empty_like(p), sizes))

    numeric = np.empty_like(params)
    for i in range(len(params)):
        up, down = params.copy(), params.copy()
        up[i] += FD_STEP
        down[i] -= FD_STEP
        numeric[i] = (f(up) - f(down)) / (2 * FD_STEP)
    err = np.abs(grads - numeric).max() / np.abs(numeric).max()
    assert err < FD_RTOL, f"analytic {grads[:5]} vs numeric {numeric[:5]}: max rel err {err:.2e}"
    for g in ff.layer_views(grads, sizes):                            # weights and biases both reached
        assert np.abs(g[:-1]).max() > 0 and np.abs(g[-1]).max() > 0


def test_loss_is_the_softmax_cross_entropy():
    sizes, params, x, y = tiny_problem()
    Wb = ff.layer_views(params, sizes)
    logits = bp.forward(Wb, x)[1]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    loss = bp.loss_and_grads(Wb, x, y, ff.layer_views(np.empty_like(params), sizes))
    np.testing.assert_allclose(loss, -np.log(p[np.arange(len(y)), y]).mean(), rtol=1e-12)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_steps_reduce_the_loss_on_a_tiny_batch(optimizer):
    cfg = bp.BPConfig(layer_sizes=[784, 32, 16], optimizer=optimizer,
                      lr=0.003 if optimizer == "adam" else 0.5)
    state = bp.init_state(cfg)
    rng = np.random.default_rng(1)
    x = rng.random((16, 784), dtype=np.float32)
    y = rng.integers(0, 10, 16)
    grads = np.empty_like(state.params)
    losses = [bp.backprop_step(state, x, y, cfg.lr, grads) for _ in range(20)]
    assert losses[0].shape == () and state.params.dtype == ff.DTYPE
    assert float(losses[-1]) < 0.5 * float(losses[0])


@pytest.mark.parametrize("optimizer, weight_cost", [("adam", 0.0), ("sgd", 0.001)])
def test_layer_update_gives_the_weights_of_batch_order(optimizer, weight_cost):
    """Each layer updated as soon as backward has its gradient (and its weights have served
    the layer below) is batch order's computation in another order: the same bits."""
    x = np.random.default_rng(2).random((70, 784), dtype=np.float32)        # a short last batch
    y = np.arange(70) % 10
    params = {}
    for schedule in ("batch", "layer-update"):
        cfg = bp.BPConfig(layer_sizes=[784, 24, 16, 12], batch_size=16, optimizer=optimizer,
                          lr=0.003 if optimizer == "adam" else 0.1, weight_cost=weight_cost,
                          schedule=schedule, n_epochs=2, lr_schedule="cooldown")
        state = bp.init_state(cfg)
        losses = [bp.train_epoch(state, cfg, x, y) for _ in range(2)]
        params[schedule] = (state.params.copy(), losses)
    assert np.abs(params["batch"][0] - bp.init_state(cfg).params).max() > 1e-3     # it learned
    np.testing.assert_array_equal(params["batch"][0], params["layer-update"][0])
    assert params["batch"][1] == params["layer-update"][1]


def test_same_seed_same_weights():
    def run(seed):
        cfg = bp.BPConfig(seed=seed, layer_sizes=[784, 16, 12], batch_size=8)
        state = bp.init_state(cfg)
        x = np.random.default_rng(2).random((40, 784), dtype=np.float32)
        y = np.arange(40) % 10
        bp.train_epoch(state, cfg, x, y)
        return state.params
    assert np.array_equal(run(0), run(0))
    assert not np.array_equal(run(0), run(1))


def test_cli_trains_records_and_resumes(fake_mnist, tmp_path):
    """A tiny run learns the synthetic classes; its JSON has one row per epoch; a run
    stopped after epoch 2 and resumed ends with the uninterrupted run's weights."""
    out, ck_a, ck_b = tmp_path / "m.json", tmp_path / "a.npz", tmp_path / "b.npz"
    record = fake_mnist.main(bp, TINY + ["--n-epochs", "3", "--metrics", str(out), "--checkpoint", str(ck_a)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["history"]["epoch"] == [1, 2, 3] and saved["test_total"] == 100
    assert saved["test_error"] < 10 and saved["cpu"] and saved["machine"]["numpy"] == np.__version__
    assert saved["command"].startswith("python3 experiments/backprop.py --layer-sizes 784,20,16")
    fake_mnist.main(bp, TINY + ["--n-epochs", "2", "--checkpoint", str(ck_b)])
    resumed = fake_mnist.main(bp, TINY + ["--n-epochs", "3", "--checkpoint", str(ck_b), "--resume", str(ck_b)])
    assert resumed["resumed_after_epochs"] == [2]
    assert resumed["history"]["test_errors"] == saved["history"]["test_errors"]
    assert np.array_equal(np.load(ck_a)["params"], np.load(ck_b)["params"])


def test_resume_refuses_other_settings(fake_mnist, tmp_path, capsys):
    ck = tmp_path / "c.npz"
    fake_mnist.main(bp, TINY + ["--n-epochs", "1", "--checkpoint", str(ck)])
    with pytest.raises(SystemExit) as e:
        fake_mnist.main(bp, TINY + ["--n-epochs", "2", "--lr", "0.03", "--resume", str(ck)])
    assert e.value.code == 2 and "--lr 0.01 (now 0.03)" in capsys.readouterr().err
    cool = TINY + ["--lr-schedule", "cooldown", "--checkpoint", str(ck)]
    fake_mnist.main(bp, cool + ["--n-epochs", "1"])
    with pytest.raises(SystemExit) as e:
        fake_mnist.main(bp, cool + ["--n-epochs", "2", "--resume", str(ck)])
    assert e.value.code == 2 and "cooldown schedule depends on it" in capsys.readouterr().err


def test_resume_reads_a_checkpoint_from_before_a_new_setting(fake_mnist, tmp_path):
    """A checkpoint whose config lacks a field added since (here lr_schedule) resumes with
    the field's default, as the committed runs' checkpoints do."""
    ck = tmp_path / "c.npz"
    fake_mnist.main(bp, TINY + ["--n-epochs", "1", "--checkpoint", str(ck)])
    data = dict(np.load(ck))
    config = json.loads(str(data["config"]))
    del config["lr_schedule"]
    data["config"] = np.array(json.dumps(config))
    ff.atomic_savez(ck, data)
    record = fake_mnist.main(bp, TINY + ["--n-epochs", "2", "--resume", str(ck)])
    assert record["resumed_after_epochs"] == [1] and record["epochs_done"] == 2


@pytest.mark.parametrize("argv, reason", [
    (["--layer-sizes", "784,abc"], "comma-separated"),
    (["--layer-sizes", "100,50"], "must be 784"),
    (["--n-epochs", "0"], "at least 1"),
    (["--batch-size", "-3"], "at least 1"),
    (["--lr", "nan"], "finite"),
    (["--lr", "0"], "> 0"),
    (["--optimizer", "rmsprop"], "invalid choice"),
    (["--smoothing", "1"], "at most 0.999"),
    (["--val-split", "60000"], "at most 59999"),
    (["--resume", "/nonexistent.npz"], "no such file"),
    (["--metrics", "/nonexistent/dir/m.json"], "cannot write"),
    (["--checkpoint", "."], "is a folder"),
])
def test_bad_values_are_one_line_errors(argv, reason, capsys):
    with pytest.raises(SystemExit) as e:
        bp.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and reason in err[-1] and "Traceback" not in "\n".join(err)
