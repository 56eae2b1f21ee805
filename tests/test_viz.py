"""The figure and GIF scripts, run in-process on synthetic MNIST with tiny nets."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, ff

import make_ff_label_in_input_gif as gif  # noqa: E402
import visualize_ff_label_in_input as viz  # noqa: E402

TINY_GIF = ["--epochs", "3", "--snapshot-every", "1", "--train-subset", "200",
            "--layer-sizes", "784,30,20", "--batch-size", "32"]


def tiny_hinton_model(fake_mnist, path):
    """A 784-20-20 net trained for 2 epochs with the hinton recipe, saved to path."""
    fake_mnist.main(ff, ["--recipe", "hinton", "--layer-sizes", "784,20,20", "--n-epochs", "2",
                         "--batch-size", "16", "--eval-subset", "50", "--quiet", "--save", str(path)])
    return ff.load_model(path)


def assert_all_figures(paths, outdir):
    """Every figure is written once into outdir, as a PNG of its fixed size with content."""
    assert sorted(p.name for p in paths) == sorted(f"{n}.png" for n in viz.FIGSIZES)
    for p in paths:
        assert p.parent == outdir
        w, h = viz.FIGSIZES[p.stem]
        with Image.open(p) as im:
            assert im.format == "PNG"
            assert im.size == (round(w * viz.DPI), round(h * viz.DPI)), p.name
            colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 50, f"{p.name} is nearly blank"


def test_figures_of_a_hinton_recipe_model(fake_mnist, tmp_path, capsys):
    """A saved hinton-recipe model draws (RMS-normalised input, softmax head, logit scale D,
    skip-first read-out), one stdout line per file. The baseline recipe draws in the next test."""
    model, outdir = tmp_path / "model.npz", tmp_path / "viz" / "sub"
    net, cfg, _, _ = tiny_hinton_model(fake_mnist, model)
    assert net.head is not None and cfg.input_norm == "rms" and cfg.logit_scale == "D"
    capsys.readouterr()
    paths = fake_mnist.main(viz, ["--model", str(model), "--outdir", str(outdir)])
    assert_all_figures(paths, outdir)
    out = capsys.readouterr().out.splitlines()
    assert out == [f"wrote {p}" for p in paths]                  # one line per file


def test_candidate_goodness_is_the_models_readout_per_unit(fake_mnist, tmp_path):
    """The candidate-goodness bars pick what the model's own read-out predicts, on the
    per-unit scale of theta: for one layer, sum(h^2) / D is the mean of h^2."""
    net, cfg, _, _ = tiny_hinton_model(fake_mnist, tmp_path / "model.npz")
    assert cfg.predict_mode == "skip-first"
    x = ff.load_mnist(checksums=fake_mnist.checksums, mirrors=())[2][:40]
    g = ff.readout_goodness(net, x, cfg.predict_mode)
    assert np.array_equal(g.argmax(axis=1), ff.predict(net, x, cfg.predict_mode))
    per_unit = ff.goodness_per_unit(net, x)                     # (N, 10, L)
    h = ff.relu(ff.first_layer_inputs(ff.embed_label(x, np.full(len(x), 3)), net.input_norm)
                @ net.W[0] + net.b[0])
    assert np.allclose(per_unit[:, 3, 0], (h ** 2).mean(axis=1), rtol=1e-4)
    assert ff.readout_layers(viz.goodness_readout("softmax"), 2)  # a softmax model: goodness too


def test_missing_model_is_trained_with_the_defaults(fake_mnist, tmp_path, capsys):
    """A missing --model is trained with the CLI's defaults (baseline recipe), saved, then drawn."""
    model, outdir = tmp_path / "model.npz", tmp_path / "viz"
    paths = fake_mnist.main(viz, ["--model", str(model), "--outdir", str(outdir)])
    assert_all_figures(paths, outdir)
    net, cfg, history, _ = ff.load_model(model)
    assert cfg == ff.Config() and len(history["epoch"]) == cfg.n_epochs
    assert "missing" in capsys.readouterr().out


def test_missing_model_in_a_missing_folder_is_refused(fake_mnist, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        fake_mnist.main(viz, ["--model", str(tmp_path / "no" / "model.npz"),
                              "--outdir", str(tmp_path)])
    assert e.value.code == 2                                     # refused by the parser
    err = capsys.readouterr().err.strip().splitlines()
    assert "--model" in err[-1] and "does not exist" in err[-1] and "Traceback" not in err


def test_garbage_model_is_a_one_line_error(tmp_path):
    """As a user sees it: a subprocess; the model is read before any data is touched."""
    bad = tmp_path / "model.npz"
    bad.write_bytes(b"not a model")
    out = subprocess.run([sys.executable, str(ROOT / "visualize_ff_label_in_input.py"),
                          "--model", str(bad), "--outdir", str(tmp_path / "viz")],
                         capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": "", "HOME": str(tmp_path / "home"), "MPLBACKEND": "Agg",
                              "HINTON_MNIST_DIR": str(tmp_path / "no-data-here")})
    assert out.returncode == 2, out.stderr                       # a bad input file
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: ")
    assert "Traceback" not in out.stderr and "not a readable" in out.stderr
    assert not (tmp_path / "viz").exists()


def test_missing_data_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    """No data and no mirror: both scripts stop with one line (exit 2), writing nothing."""
    monkeypatch.setenv("HINTON_MNIST_DIR", str(tmp_path / "none"))
    with pytest.raises(SystemExit) as e:
        viz.main(["--model", str(tmp_path / "m.npz"), "--outdir", str(tmp_path / "viz")],
                 mirrors=())
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "HINTON_MNIST_DIR" in err
    with pytest.raises(SystemExit) as e:
        gif.main(TINY_GIF + ["--out", str(tmp_path / "a.gif")], mirrors=())
    assert e.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "a.gif").exists() and not (tmp_path / "viz").exists()


def gif_frames(path):
    """(frame count, frame durations in ms, size) of a GIF file."""
    with Image.open(path) as im:
        assert im.format == "GIF"
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
        return im.n_frames, durations, im.size


@pytest.mark.parametrize("every, n_frames", [(1, 3), (2, 2)])
def test_gif_has_one_frame_per_snapshot(fake_mnist, tmp_path, every, n_frames):
    out = tmp_path / "ff.gif"
    argv = TINY_GIF[:]
    argv[argv.index("--snapshot-every") + 1] = str(every)
    path, n = fake_mnist.main(gif, argv + ["--fps", "5", "--out", str(out)])
    assert path == out and n == n_frames
    count, durations, size = gif_frames(out)
    assert count == n_frames
    assert size == (round(gif.FIGSIZE[0] * gif.DPI), round(gif.FIGSIZE[1] * gif.DPI))
    # 5 fps = 200 ms a frame; the last one is held HOLD_LAST_S longer.
    assert durations[:-1] == [200] * (n_frames - 1)
    assert durations[-1] == 200 + 1000 * gif.HOLD_LAST_S
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files


def test_gif_of_a_hinton_recipe_run(fake_mnist, tmp_path):
    """The shared flags reach training: the hinton recipe (softmax head, skip-first) animates."""
    out = tmp_path / "hinton.gif"
    path, n = fake_mnist.main(gif, ["--recipe", "hinton", "--n-epochs", "2", "--train-subset", "200",
                                    "--layer-sizes", "784,20,20", "--batch-size", "16",
                                    "--out", str(out)])
    assert n == 2 and gif_frames(out)[0] == 2


def test_gif_epochs_is_an_alias_of_n_epochs():
    """The documented --epochs spelling gives the same run as --n-epochs."""
    old, new = gif.parse_args(["--epochs", "7"])[1], gif.parse_args(["--n-epochs", "7"])[1]
    assert old == new and new.n_epochs == 7


def test_gif_takes_the_training_defaults_and_recipes():
    """Defaults come from ff.Config and --recipe, except its shorter --train-subset 20000;
    explicit flags win, and the documented command parses as written."""
    _, cfg = gif.parse_args([])
    _, train_cfg = ff.parse_args(["--train-subset", "20000"])
    assert cfg == train_cfg
    _, cfg = gif.parse_args(["--recipe", "hinton", "--lr", "0.02"])
    _, train_cfg = ff.parse_args(["--recipe", "hinton", "--lr", "0.02", "--train-subset", "20000"])
    assert cfg == train_cfg
    args, cfg = gif.parse_args("--epochs 30 --snapshot-every 1 --fps 6 --seed 0 --lr 0.003 "
                               "--layer-sizes 784,500,500 --train-subset 20000".split())
    assert (cfg.n_epochs, cfg.layer_sizes, cfg.train_subset, args.fps) == (30, [784, 500, 500],
                                                                          20000, 6)


@pytest.mark.parametrize("argv, reason", [
    (["--fps", "0"], "> 0"),
    (["--fps", "nan"], "finite"),
    (["--epochs", "0"], "at least 1"),
    (["--n-epochs", "0"], "at least 1"),
    (["--snapshot-every", "0"], "at least 1"),
    (["--snapshot-every", "31"], "at most --n-epochs"),
    (["--epochs", "2", "--snapshot-every", "3"], "at most --n-epochs"),
    (["--layer-sizes", "100,5"], "must be 784"),
    (["--layer-sizes", "784"], "at least one hidden"),
    (["--lr", "-1"], "> 0"),
    (["--threshold", "inf"], "finite"),
    (["--train-subset", "60001"], "at most 60000"),
    (["--logit-scale", "2"], "invalid choice"),
    (["--recipe", "hinton", "--layer-sizes", "784,30"], "two hidden layers"),
    (["--out", "/nonexistent/dir/ff.gif"], "cannot write"),
    (["--out", "."], "is a folder"),
])
def test_gif_bad_flags_exit_2(argv, reason, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HINTON_MNIST_DIR", str(tmp_path / "no-data-here"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        gif.main(argv, mirrors=())
    assert e.value.code == 2
    assert reason in capsys.readouterr().err.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []                       # nothing written


def test_help_states_defaults(capsys):
    """--help lists each script's flags with defaults; the GIF's include the shared
    training flags (--recipe, --logit-scale, ...) next to its own."""
    for script, flags in ((viz, ("--model", "--outdir", "--data-dir")),
                          (gif, ("--epochs", "--n-epochs", "--recipe", "--logit-scale",
                                 "--input-norm", "--softmax-head", "--predict-mode",
                                 "--snapshot-every", "--fps", "--seed", "--lr", "--layer-sizes",
                                 "--train-subset", "--out", "--data-dir"))):
        with pytest.raises(SystemExit) as e:
            script.main(["--help"])
        assert e.value.code == 0
        out = " ".join(capsys.readouterr().out.split())         # unwrap argparse's line breaks
        assert all(f in out for f in flags) and "default:" in out
    assert "(default: 20000)" in out                             # the GIF's --train-subset
