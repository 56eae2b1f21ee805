"""Training runs end to end: checkpoints and resume (also extending a run), Ctrl-C,
validation split."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, VARIANTS, ff

FLAGS = ["--n-epochs", "3", "--layer-sizes", "784,40,30,20", "--batch-size", "32",
         "--eval-subset", "50", "--quiet"]


def train_cli(fake_mnist, argv):
    """(cfg, data, evaluation) as main() would train them, for calling ff.train directly."""
    _, cfg = ff.parse_args(argv)
    data = ff.load_mnist(None, fake_mnist.checksums, ())
    (x, y), (xt, yt), _ = ff.split_data(cfg, *data)
    return cfg, x, y


def interrupt_at(epoch):
    def callback(e, net, history):
        if e == epoch:
            raise KeyboardInterrupt
    return callback


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_resume_gives_the_uninterrupted_weights(fake_mnist, tmp_path, variant):
    cfg, x, y = train_cli(fake_mnist, FLAGS + VARIANTS[variant])
    straight, h_straight = ff.train(cfg, x, y, log=None)
    ckpt = tmp_path / "ckpt.npz"
    with pytest.raises(ff.Interrupted) as e:
        ff.train(cfg, x, y, log=None, checkpoint=ckpt, callback=interrupt_at(2))
    assert e.value.epoch == 2
    resumed, h_resumed = ff.train(cfg, x, y, log=None, resume=ckpt)
    assert np.array_equal(straight.params, resumed.params)
    if straight.head is not None:
        assert np.array_equal(straight.head, resumed.head)
    assert h_straight["loss"] == h_resumed["loss"] and h_resumed["epoch"] == [1, 2, 3]


def test_resume_extends_a_constant_schedule_run(fake_mnist, tmp_path):
    """--resume ck.npz --n-epochs 5 continues a 3-epoch run into the 5-epoch run's weights."""
    cfg5, x, y = train_cli(fake_mnist, FLAGS[2:] + ["--n-epochs", "5"])
    cfg3, _, _ = train_cli(fake_mnist, FLAGS)
    five, _ = ff.train(cfg5, x, y, log=None)
    ckpt = tmp_path / "ckpt.npz"
    ff.train(cfg3, x, y, log=None, checkpoint=ckpt)
    extended, history = ff.train(cfg5, x, y, log=None, resume=ckpt)
    assert np.array_equal(five.params, extended.params) and history["epoch"] == [1, 2, 3, 4, 5]


def test_extending_a_cooldown_run_is_refused(fake_mnist, tmp_path, capsys):
    ckpt = tmp_path / "ckpt.npz"
    fake_mnist.main(ff, FLAGS + ["--lr-schedule", "cooldown", "--checkpoint", str(ckpt)])
    with pytest.raises(SystemExit) as e:
        fake_mnist.main(ff, FLAGS[2:] + ["--n-epochs", "6", "--lr-schedule", "cooldown",
                                         "--resume", str(ckpt)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "cannot change --n-epochs from 3 to 6: the cooldown schedule depends on it" in err


def test_checkpoint_from_other_config_is_refused(fake_mnist, tmp_path, capsys):
    ckpt = tmp_path / "ckpt.npz"
    fake_mnist.main(ff, FLAGS + ["--checkpoint", str(ckpt)])
    with pytest.raises(SystemExit) as e:
        fake_mnist.main(ff, FLAGS + ["--lr", "0.01", "--resume", str(ckpt)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "--lr 0.003 (now 0.01)" in err
    model = tmp_path / "model.npz"
    fake_mnist.main(ff, FLAGS + ["--save", str(model)])
    with pytest.raises(SystemExit) as e:
        fake_mnist.main(ff, FLAGS + ["--resume", str(model)])
    assert e.value.code == 2 and "not an FF checkpoint" in capsys.readouterr().err


def test_ctrl_c_saves_and_says_how_to_resume(fake_mnist, tmp_path):
    """A real SIGINT to a training process: exit 130, a checkpoint, a resume command."""
    code = ("import json, sys; sys.path.insert(0, %r); import ff_label_in_input as ff; "
            "ff.main(sys.argv[1:], checksums=json.loads(%r), mirrors=())"
            % (str(ROOT), json.dumps(fake_mnist.checksums)))
    argv = ["--n-epochs", "100000", "--layer-sizes", "784,20,20", "--batch-size", "50"]
    # the child gets Ctrl-C's default handling even where the tests run with SIGINT ignored
    proc = subprocess.Popen([sys.executable, "-c", code] + argv, cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stdout:
        if line.startswith("epoch   2/"):
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume ff_interrupted.npz" in err and "Traceback" not in err
    assert (tmp_path / "ff_interrupted.npz").exists()


def test_val_split_evaluates_on_held_out_training_images(fake_mnist, capsys):
    loud = [f for f in FLAGS if f != "--quiet"]
    metrics = fake_mnist.main(ff, loud + ["--val-split", "60", "--full-test"])
    assert metrics["evaluated_on"] == "validation" and metrics["test_total"] == 60
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("epoch ")]
    assert lines and all(" val " in l and " test " not in l for l in lines)   # progress names the split


def test_deep_lr_scale_moves_deep_layers_less():
    cfg = ff.Config(layer_sizes=[784, 8, 6], deep_lr_scale=0.1)
    grads = np.ones(ff.n_params(cfg.layer_sizes), np.float32)
    p = np.zeros_like(grads)
    ff.Adam(np.zeros_like(p), np.zeros_like(p)).step(p, grads, ff.param_parts(cfg, 0.01))
    first = (784 + 1) * 8
    np.testing.assert_allclose(p[:first], -0.01, rtol=1e-4)
    np.testing.assert_allclose(p[first:], -0.001, rtol=1e-4)


def test_hinton_recipe_learns_the_fake_classes(fake_mnist):
    """Every ingredient on: the goodness and softmax read-outs both learn."""
    metrics = fake_mnist.main(ff, ["--recipe", "hinton", "--n-epochs", "30", "--layer-sizes",
                                   "784,60,60,60", "--batch-size", "10", "--full-test", "--quiet"])
    modes = metrics["prediction_modes"]
    assert min(modes.values()) > 0.9, modes


def fast_section_functions() -> set:
    """The code objects of the module's speed-ups: everything defined between the line
    that starts "The same step, fast" and the optimisers' section."""
    import ast
    source = Path(ff.__file__).read_text()
    lines = source.splitlines()
    start = next(i for i, t in enumerate(lines, 1) if t.startswith("# The same step, fast"))
    stop = next(i for i, t in enumerate(lines, 1) if t.startswith("# Optimisers"))
    names = {n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and start < n.lineno < stop}
    assert {"encode", "layer0_z", "ff_layer_grad", "candidate_goodness", "layer0_neutral_z"} <= names
    return {getattr(ff, n).__code__ for n in names}


def calls_into(codes, fn):
    """Which of the code objects `codes` run while fn() runs (a profile hook: nothing patched)."""
    seen = set()

    def hook(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            seen.add(frame.f_code.co_name)
    sys.setprofile(hook)
    try:
        result = fn()
    finally:
        sys.setprofile(None)
    return seen, result


@pytest.mark.parametrize("recipe", ["baseline", "hinton", "hard"])
def test_plain_step_trains_as_the_fast_step(recipe):
    """--step plain trains through the method's plain forms only (no speed-up runs, the
    head's neutral pass and the hard negatives' scores included); over a few steps its
    weights agree with the fast step's to float32 rounding."""
    rng = np.random.default_rng(0)
    x, y = rng.random((150, 784)).astype(np.float32), rng.integers(0, 10, 150)
    flags = ["--neg-sampling", "hard"] if recipe == "hard" else ["--recipe", recipe]
    nets, fast = {}, fast_section_functions()
    for step in ("plain", "fast"):
        _, cfg = ff.parse_args(flags + ["--layer-sizes", "784,40,30,20", "--batch-size",
                                        "50", "--n-epochs", "1", "--step", step])
        used, (nets[step], history) = calls_into(fast, lambda: ff.train(cfg, x, y, log=None))
        assert not used if step == "plain" else used, used
    moved = np.abs(nets["fast"].params - ff.init_state(cfg).net.params).max()
    assert moved > 1e-3                                  # three steps that change the weights
    np.testing.assert_allclose(nets["plain"].params, nets["fast"].params, rtol=0, atol=1e-5 * moved)
    if recipe == "hinton":
        np.testing.assert_allclose(nets["plain"].head, nets["fast"].head, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("schedule, flags", [
    (["--schedule", "layer-update"], []),
    (["--schedule", "layer-update"], ["--recipe", "hinton"]),
    (["--schedule", "layer-major", "--group-batches", "3"], []),
    (["--schedule", "layer-major", "--group-batches", "4"],
     ["--neg-sampling", "hard-first", "--optimizer", "sgd", "--lr", "0.01", "--weight-cost", "0.001",
      "--lr-schedule", "cooldown", "--peer-norm", "0.03", "--deep-lr-scale", "0.5", "--jitter", "1"]),
], ids=["layer-update", "layer-update hinton", "layer-major", "layer-major hard-first sgd"])
def test_locality_schedules_give_the_same_weights(schedule, flags):
    """Updating each layer right after its gradient, or running k batches layer by layer, is
    the same computation in another order: the weights are bit-identical to --schedule batch."""
    rng = np.random.default_rng(0)
    x, y = rng.random((290, 784)).astype(np.float32), rng.integers(0, 10, 290)   # 10 batches of 29
    base = ["--layer-sizes", "784,40,30,20", "--batch-size", "29", "--n-epochs", "2"] + flags
    (a, history_a), (b, history_b) = (ff.train(ff.parse_args(base + s)[1], x, y, log=None)
                                      for s in ([], schedule))
    np.testing.assert_array_equal(a.params, b.params)
    assert history_a["loss"] == history_b["loss"]
    if a.head is not None:
        np.testing.assert_array_equal(a.head, b.head)


def test_layer_major_refuses_negatives_from_the_layers_above(capsys):
    for flags in (["--neg-sampling", "hard"], ["--recipe", "hinton"]):
        with pytest.raises(SystemExit) as e:
            ff.parse_args(["--schedule", "layer-major"] + flags)
        assert e.value.code == 2 and "layer-major" in capsys.readouterr().err
