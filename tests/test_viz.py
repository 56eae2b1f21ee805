"""The figure and GIF scripts, run in-process on synthetic MNIST with tiny nets."""

import subprocess
import sys

import pytest
from PIL import Image

from conftest import ROOT, ff

import make_ff_label_in_input_gif as gif  # noqa: E402
import visualize_ff_label_in_input as viz  # noqa: E402

TINY_GIF = ["--epochs", "3", "--snapshot-every", "1", "--train-subset", "200",
            "--layer-sizes", "784,30,20", "--batch-size", "32"]


def tiny_model(path):
    ff.main(["--n-epochs", "2", "--layer-sizes", "784,30,20", "--batch-size", "32",
             "--eval-subset", "50", "--quiet", "--save", str(path)])


def assert_all_figures(paths, outdir):
    assert sorted(p.name for p in paths) == sorted(f"{n}.png" for n in viz.FIGSIZES)
    for p in paths:
        assert p.parent == outdir
        w, h = viz.FIGSIZES[p.stem]
        with Image.open(p) as im:
            assert im.format == "PNG"
            assert im.size == (round(w * viz.DPI), round(h * viz.DPI)), p.name


def test_figures_of_a_saved_model(fake_mnist, tmp_path, capsys):
    model, outdir = tmp_path / "model.npz", tmp_path / "viz" / "sub"
    tiny_model(model)
    paths = viz.main(["--model", str(model), "--outdir", str(outdir)])
    assert_all_figures(paths, outdir)
    out = capsys.readouterr().out.splitlines()
    assert out == [f"wrote {p}" for p in paths]                  # one line per file


def test_missing_model_is_trained_with_the_defaults(fake_mnist, tmp_path, capsys):
    model, outdir = tmp_path / "model.npz", tmp_path / "viz"
    paths = viz.main(["--model", str(model), "--outdir", str(outdir)])
    assert_all_figures(paths, outdir)
    net, cfg, history, _ = ff.load_model(model)
    assert cfg == ff.Config() and len(history["epoch"]) == cfg.n_epochs
    assert "missing" in capsys.readouterr().out


def test_missing_model_in_a_missing_folder_is_refused(fake_mnist, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        viz.main(["--model", str(tmp_path / "no" / "model.npz"), "--outdir", str(tmp_path)])
    assert e.value.code == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_garbage_model_is_a_one_line_error(tmp_path):
    """As a user sees it: a subprocess; the model is read before any data is touched."""
    bad = tmp_path / "model.npz"
    bad.write_bytes(b"not a model")
    out = subprocess.run([sys.executable, str(ROOT / "visualize_ff_label_in_input.py"),
                          "--model", str(bad), "--outdir", str(tmp_path / "viz")],
                         capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": "", "HOME": str(tmp_path / "home"), "MPLBACKEND": "Agg",
                              "HINTON_MNIST_DIR": str(tmp_path / "no-data-here")})
    assert out.returncode == 1, out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: ")
    assert "Traceback" not in out.stderr and "not a readable" in out.stderr
    assert not (tmp_path / "viz").exists()


def test_missing_data_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ff, "MNIST_MIRRORS", ())
    monkeypatch.setenv("HINTON_MNIST_DIR", str(tmp_path / "none"))
    with pytest.raises(SystemExit) as e:
        viz.main(["--model", str(tmp_path / "m.npz"), "--outdir", str(tmp_path / "viz")])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "HINTON_MNIST_DIR" in err
    with pytest.raises(SystemExit) as e:
        gif.main(TINY_GIF + ["--out", str(tmp_path / "a.gif")])
    assert e.value.code == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "a.gif").exists()


@pytest.mark.parametrize("every, n_frames", [(1, 3), (2, 2)])
def test_gif_has_one_frame_per_snapshot(fake_mnist, tmp_path, every, n_frames):
    out = tmp_path / "ff.gif"
    argv = TINY_GIF[:]
    argv[argv.index("--snapshot-every") + 1] = str(every)
    path, n = gif.main(argv + ["--fps", "5", "--out", str(out)])
    assert path == out and n == n_frames
    with Image.open(out) as im:
        assert im.format == "GIF" and im.n_frames == n_frames
        assert im.size == (round(gif.FIGSIZE[0] * gif.DPI), round(gif.FIGSIZE[1] * gif.DPI))
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
    # 5 fps = 200 ms a frame; the last one is held HOLD_LAST_S longer.
    assert durations[:-1] == [200] * (n_frames - 1)
    assert durations[-1] == 200 + 1000 * gif.HOLD_LAST_S
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files


@pytest.mark.parametrize("argv, reason", [
    (["--fps", "0"], "> 0"),
    (["--fps", "nan"], "finite"),
    (["--epochs", "0"], "at least 1"),
    (["--snapshot-every", "0"], "at least 1"),
    (["--snapshot-every", "31"], "at most --epochs"),
    (["--layer-sizes", "100,5"], "must be 784"),
    (["--layer-sizes", "784"], "at least one hidden"),
    (["--lr", "-1"], "> 0"),
    (["--threshold", "inf"], "finite"),
    (["--train-subset", "60001"], "at most 60000"),
    (["--out", "/nonexistent/dir/ff.gif"], "cannot write"),
])
def test_gif_bad_flags_exit_2(argv, reason, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HINTON_MNIST_DIR", str(tmp_path / "no-data-here"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        gif.main(argv)
    assert e.value.code == 2
    assert reason in capsys.readouterr().err.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []                       # nothing written


def test_help_states_defaults(capsys):
    for script, flags in ((viz, ("--model", "--outdir", "--data-dir")),
                          (gif, ("--epochs", "--snapshot-every", "--fps", "--seed", "--lr",
                                 "--layer-sizes", "--train-subset", "--out", "--data-dir"))):
        with pytest.raises(SystemExit) as e:
            script.main(["--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert all(f in out for f in flags) and "default:" in out
