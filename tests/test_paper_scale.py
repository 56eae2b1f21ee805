"""Ingredients for the paper-scale runs: schedule, hard negatives, peer norm, checkpoints."""

import numpy as np
import pytest

from conftest import ff

FLAGS = ["--n-epochs", "3", "--layer-sizes", "784,40,30,20", "--batch-size", "32",
         "--eval-subset", "50", "--quiet"]


def test_cooldown_schedule():
    cfg = ff.Config(lr=0.01, lr_schedule="cooldown")
    lrs = [ff.lr_at(cfg, s, 100) for s in range(100)]
    assert lrs[:50] == [0.01] * 50
    assert lrs[50] == pytest.approx(0.01) and lrs[99] == pytest.approx(0.01 / 50)
    assert all(a > b for a, b in zip(lrs[50:], lrs[51:]))
    assert ff.lr_at(ff.Config(lr=0.01), 99, 100) == 0.01


def test_hard_labels_follow_softmax_of_wrong_labels():
    rng = np.random.default_rng(0)
    n = 60000
    y = np.full(n, 3)
    scores = np.tile(np.array([0, 1, 2, 9, 0, 0, 0, 0, 0, 0.5]), (n, 1))
    y_neg = ff.draw_hard_labels(y, scores, rng)
    assert (y_neg != 3).all()
    p = np.exp(np.delete(scores[0], 3)); p /= p.sum()
    freq = np.bincount(y_neg, minlength=10)[np.arange(10) != 3] / n
    np.testing.assert_allclose(freq, p, atol=0.01)


def test_peer_norm_gradient_matches_finite_differences():
    sizes = [784, 6, 5]
    net = ff.init_net(sizes, np.random.default_rng(0))
    params = net.params.astype(np.float64) * 3
    rng = np.random.default_rng(1)
    x = ff.training_inputs(rng.random((8, 784)))
    y = rng.integers(0, 10, 8)
    yn = ff.draw_wrong_labels(y, rng)
    r0 = [rng.random(6), rng.random(5)]
    w = 0.5

    def losses(p):
        """FF loss + peer penalty of each layer, with the running means as they start."""
        n = ff.Net(sizes, p, *ff.param_views(p, sizes))
        r = [a.copy() for a in r0]
        stats = ff.ff_step_grads(n, x, y, yn, 2.0, np.zeros_like(p), w, r)
        return [s[0] + w * ((ri - ri.mean()) ** 2).mean() for s, ri in zip(stats, r)]

    grads = np.zeros_like(params)
    ff.ff_step_grads(ff.Net(sizes, params, *ff.param_views(params, sizes)), x, y, yn, 2.0,
                     grads, w, [a.copy() for a in r0])
    owner = np.concatenate([np.full((a + 1) * b, l) for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))])
    picks = np.concatenate([rng.choice(np.flatnonzero(owner == 0), 200, replace=False),
                            np.flatnonzero(owner == 1)])
    for i in picks:
        p = params.copy(); p[i] += 1e-6
        up = losses(p)[owner[i]]
        p[i] -= 2e-6
        down = losses(p)[owner[i]]
        numeric = (up - down) / 2e-6
        assert abs(numeric - grads[i]) < 1e-7 + 1e-5 * abs(numeric), (i, grads[i], numeric)


def test_deep_lr_scale_moves_deep_layers_less():
    sizes = [784, 8, 6]
    grads = np.ones(ff.n_params(sizes), np.float32)
    cfg = ff.Config(layer_sizes=sizes, deep_lr_scale=0.1)
    p = np.zeros_like(grads)
    ff.adam_update(p, grads, ff.make_adam(len(p), 0.01), 0.01, None, ff.adam_segments(cfg))
    first = (784 + 1) * 8
    np.testing.assert_allclose(p[:first], -0.01, rtol=1e-4)
    np.testing.assert_allclose(p[first:], -0.001, rtol=1e-4)


@pytest.mark.parametrize("extra", [[], ["--lr-schedule", "cooldown", "--neg-sampling", "hard",
                                        "--peer-norm", "0.03", "--jitter", "--deep-lr-scale", "0.5"],
                                   ["--neg-sampling", "hard-first", "--goodness", "sum",
                                    "--threshold", "1", "--predict-mode", "skip-first"]])
def test_resume_gives_the_uninterrupted_weights(fake_mnist, tmp_path, monkeypatch, extra):
    straight = tmp_path / "straight.npz"
    ff.main(FLAGS + extra + ["--save", str(straight)])

    ckpt = tmp_path / "ckpt.npz"
    real_train = ff.train

    def interrupt_after_two(*args, **kwargs):
        def callback(epoch, net, history):
            if epoch == 2:
                raise KeyboardInterrupt
        return real_train(*args, **{**kwargs, "callback": callback})

    monkeypatch.setattr(ff, "train", interrupt_after_two)
    with pytest.raises(SystemExit) as e:
        ff.main(FLAGS + extra + ["--checkpoint", str(ckpt)])
    assert e.value.code == 130
    monkeypatch.setattr(ff, "train", real_train)
    resumed = tmp_path / "resumed.npz"
    ff.main(FLAGS + extra + ["--resume", str(ckpt), "--save", str(resumed)])
    a, _, ha, _ = ff.load_model(straight)
    b, _, hb, _ = ff.load_model(resumed)
    assert np.array_equal(a.params, b.params)
    assert ha["loss"] == hb["loss"] and len(hb["epoch"]) == 3


def test_interrupt_message_says_how_to_resume(fake_mnist, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    real_train = ff.train
    monkeypatch.setattr(ff, "train", lambda *a, **k: real_train(
        *a, **{**k, "callback": lambda e, n, h: (_ for _ in ()).throw(KeyboardInterrupt)}))
    with pytest.raises(SystemExit):
        ff.main(FLAGS)
    err = capsys.readouterr().err
    assert "--resume ff_interrupted.npz" in err and "after epoch 1" in err
    assert (tmp_path / "ff_interrupted.npz").exists()


def test_checkpoint_from_other_config_is_refused(fake_mnist, tmp_path, capsys):
    ckpt = tmp_path / "ckpt.npz"
    ff.main(FLAGS + ["--checkpoint", str(ckpt)])
    with pytest.raises(SystemExit) as e:
        ff.main(FLAGS + ["--lr", "0.01", "--resume", str(ckpt)])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "other settings" in err and "--lr 0.003 (now 0.01)" in err
    model = tmp_path / "model.npz"
    ff.main(FLAGS + ["--save", str(model)])
    with pytest.raises(SystemExit) as e:
        ff.main(FLAGS + ["--resume", str(model)])
    assert e.value.code == 1 and "not a checkpoint" in capsys.readouterr().err


def test_val_split_evaluates_on_held_out_training_images(fake_mnist):
    metrics = ff.main(FLAGS + ["--val-split", "60", "--full-test"])
    assert metrics["evaluated_on"] == "validation" and metrics["test_total"] == 60


@pytest.mark.parametrize("argv, reason", [
    (["--val-split", "60000"], "must leave training images"),
    (["--val-split", "100", "--eval-subset", "200"], "at most --val-split"),
    (["--peer-norm", "-1"], ">= 0"),
    (["--deep-lr-scale", "0"], "> 0"),
    (["--neg-sampling", "random"], "invalid choice"),
    (["--lr-schedule", "cosine"], "invalid choice"),
    (["--resume", "/nonexistent.npz"], "no such file"),
])
def test_new_flags_refuse_bad_values(argv, reason, capsys):
    with pytest.raises(SystemExit) as e:
        ff.main(argv)
    assert e.value.code == 2 and reason in capsys.readouterr().err
