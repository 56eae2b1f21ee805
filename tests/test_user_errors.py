"""Nothing a user does ends in a traceback or loses a model (issue 17).

Every entry point (the trainer, the GIF and figure scripts, the benchmark, the experiments
runner) answers a bad input with one line and exit status 2, and Ctrl-C with one line and
exit status 130; neither leaves a stray or half-written file. Ctrl-C is a real SIGINT to a
fresh Python, as a user at a terminal sends it. model.npz opens with np.load to named
per-layer arrays. No test touches the network: downloads go to a mirror on 127.0.0.1
that refuses or never answers.
"""

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
from pathlib import Path
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, ff, write_fake_mnist

import make_ff_label_in_input_gif as gif  # noqa: E402
import visualize_ff_label_in_input as viz  # noqa: E402


def load_script(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_script("bench_ff", ROOT / "benchmarks" / "bench_ff.py")
ab_epoch = load_script("ab_epoch", ROOT / "benchmarks" / "ab_epoch.py")
data_movement = load_script("data_movement", ROOT / "experiments" / "data_movement.py")
backprop = load_script("backprop", ROOT / "experiments" / "backprop.py")
dead_units_early = load_script("dead_units_early", ROOT / "experiments" / "dead_units_early.py")
runner = sys.modules.get("experiments_run") or load_script("experiments_run",
                                                           ROOT / "experiments" / "run.py")

SCRIPTS = {"trainer": ff, "gif": gif, "viz": viz}
TINY = ["--layer-sizes", "784,20,20", "--batch-size", "50", "--eval-subset", "20"]
BAD_INPUT, INTERRUPTED = 2, 130       # exit statuses


# ----------------------------------------------------------------------------
# Helpers: what a user sees, and the files around them.
# ----------------------------------------------------------------------------

def one_line(stderr: str, *needles) -> str:
    """The one line a refused or interrupted command prints, argparse's usage block aside
    (its last line is "prog: error: ..."); no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    if lines and lines[0].startswith("usage: "):
        i = 1
        while i < len(lines) and lines[i].startswith(" "):      # usage continuation lines
            i += 1
        lines = lines[i:]
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def listing(folder) -> list:
    """Every name under folder, relative, hidden ones included (temporary files)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory):
    """(folder, checksums) of a small synthetic MNIST."""
    folder = tmp_path_factory.mktemp("mnist")
    return folder, write_fake_mnist(folder)


@pytest.fixture(scope="module")
def hinton_files(tmp_path_factory, fake_data):
    """A model.npz and its checkpoint from a 2-epoch hinton-recipe run of 784-20-20."""
    folder, checksums = fake_data
    out = tmp_path_factory.mktemp("hinton")
    model, ckpt = out / "model.npz", out / "ckpt.npz"
    ff.main(["--recipe", "hinton", "--n-epochs", "2", *TINY, "--quiet", "--data-dir", str(folder),
             "--save", str(model), "--checkpoint", str(ckpt)], checksums=checksums, mirrors=())
    return model, ckpt


TARGETS = {"trainer": ("ff_label_in_input", ROOT), "gif": ("make_ff_label_in_input_gif", ROOT),
           "viz": ("visualize_ff_label_in_input", ROOT), "bench": ("bench_ff", ROOT / "benchmarks")}


def user_env(tmp_path, data_dir):
    """A user's environment: no cache of ours, our MNIST folder, one BLAS thread."""
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path / "home"),
            "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(tmp_path / "mpl"), "PYTHONUNBUFFERED": "1",
            "OPENBLAS_NUM_THREADS": "1", "HINTON_MNIST_DIR": str(data_dir)}


def default_sigint():
    """In the child: Ctrl-C raises KeyboardInterrupt even if this test runs where SIGINT is
    ignored (a shell's background job), which Python would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def launch(target, argv, tmp_path, cwd, data_dir, checksums=None, mirrors=(), stdout=subprocess.PIPE):
    """A fresh Python running target.main(argv, checksums=..., mirrors=...) in cwd."""
    module, folder = TARGETS[target]
    kwargs = f"checksums=json.loads({json.dumps(checksums)!r})" if checksums else "checksums=None"
    if target != "bench":
        kwargs += f", mirrors={tuple(mirrors)!r}"
    code = (f"import json, sys; sys.path[:0] = [{str(ROOT)!r}, {str(folder)!r}]; "
            f"import {module}; {module}.main(sys.argv[1:], {kwargs})")
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-c", code, *map(str, argv)], cwd=cwd, text=True,
                            env=user_env(tmp_path, data_dir), stdout=stdout,
                            stderr=subprocess.PIPE, preexec_fn=default_sigint)


def finish(proc, timeout=120):
    """(exit status, stdout, stderr) of a launched process."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for_line(proc, prefix: str) -> str:
    for line in proc.stdout:
        if line.startswith(prefix):
            return line
    raise AssertionError(f"ended (exit {proc.wait()}) before printing {prefix!r}: "
                         f"{proc.stderr.read()}")


def interrupt(proc, timeout=120):
    """Ctrl-C: SIGINT to the process; then (exit status, stderr)."""
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc, timeout)
    return code, err


@contextlib.contextmanager
def silent_mirror():
    """A download mirror on 127.0.0.1 that takes the connection and never answers:
    yields (server socket, its URL); a download hangs there until interrupted."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        srv.settimeout(60)
        yield srv, f"http://127.0.0.1:{srv.getsockname()[1]}/"


def refusing_mirror() -> str:
    """The URL of a port on 127.0.0.1 that nothing listens on: every download fails at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def refused_in_process(module, argv, capsys, **kwargs) -> str:
    """module.main(argv) must exit 2 with one line; returns that line."""
    with pytest.raises(SystemExit) as e:
        module.main(argv, **kwargs)
    err = capsys.readouterr().err
    assert e.value.code == BAD_INPUT, err
    return one_line(err)


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """Run from an empty folder with no MNIST anywhere: any data access fails loudly."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HINTON_MNIST_DIR", str(tmp_path / "no-data-here"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(work)
    return work


# ----------------------------------------------------------------------------
# 1. model.npz holds named per-layer arrays; a version-2 file loads or is refused by name.
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("recipe", ["baseline", "hinton"])
def test_model_npz_opens_to_named_per_layer_arrays(fake_mnist, tmp_path, recipe):
    sizes = [784, 20, 15, 10]
    model = tmp_path / "model.npz"
    fake_mnist.main(ff, ["--recipe", recipe, "--n-epochs", "1", "--layer-sizes", "784,20,15,10",
                         "--batch-size", "50", "--eval-subset", "20", "--quiet", "--save", str(model)])
    with np.load(model, allow_pickle=False) as z:               # no pickles, no code of ours
        arrays = {k: z[k] for k in z.files}
    assert {"format_version", "kind", "config", "history", "metrics", "machine"} <= set(arrays)
    assert int(arrays["format_version"]) == 3 and str(arrays["kind"]) == "model"
    assert "params" not in arrays                                # the flat layout stays internal
    net, cfg, history, metrics = ff.load_model(model)
    for l, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        W, b = arrays[f"W{l}"], arrays[f"b{l}"]
        assert W.shape == (d_in, d_out) and b.shape == (d_out,) and W.dtype == np.float32
        np.testing.assert_array_equal(W, net.W[l])
        np.testing.assert_array_equal(b, net.b[l])
    if recipe == "hinton":
        assert arrays["head"].shape == (15 + 10, ff.N_CLASSES)
        np.testing.assert_array_equal(arrays["head"], net.head)
    else:
        assert "head" not in arrays
    assert json.loads(str(arrays["config"])) == dataclasses.asdict(cfg)
    assert json.loads(str(arrays["history"]))["epoch"] == [1]
    assert "test_accuracy" in json.loads(str(arrays["metrics"]))      # the final save has them


def as_version_2(model, path):
    """model.npz rewritten as format version 2 wrote it: one flat `params` vector holding
    each layer's [W_l; b_l] (D_l + 1, D_{l+1}) row by row, layer after layer."""
    with np.load(model, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    n_layers = len(json.loads(str(arrays["config"]))["layer_sizes"]) - 1
    blocks = [np.vstack([arrays.pop(f"W{l}"), arrays.pop(f"b{l}")[None]]) for l in range(n_layers)]
    arrays.pop("shapes", None)
    arrays.update(format_version=np.array(2), params=np.concatenate([b.ravel() for b in blocks]))
    np.savez(path, **arrays)
    return blocks


def test_version_2_model_is_refused_naming_its_version(hinton_files, fake_data, tmp_path, capsys):
    """Format 2 (one flat params vector) is no longer read: load_model and the figure
    script refuse it with one line that names the version, and write nothing."""
    old = tmp_path / "v2.npz"
    as_version_2(hinton_files[0], old)
    with pytest.raises(ff.ModelError) as e:
        ff.load_model(old)
    assert "version 2" in str(e.value) and "\n" not in str(e.value)
    folder, checksums = fake_data
    outdir = tmp_path / "viz"
    with pytest.raises(SystemExit) as e:
        viz.main(["--model", str(old), "--outdir", str(outdir), "--data-dir", str(folder)],
                 checksums=checksums, mirrors=())
    assert e.value.code == BAD_INPUT
    one_line(capsys.readouterr().err, "version 2")
    assert not outdir.exists()


def test_version_2_checkpoint_is_refused_naming_its_version(hinton_files, fake_data, tmp_path):
    old = tmp_path / "v2.ckpt.npz"
    with np.load(hinton_files[1], allow_pickle=False) as z:
        np.savez(old, **{**{k: z[k] for k in z.files}, "format_version": np.array(2)})
    folder, checksums = fake_data
    work = tmp_path / "work"
    proc = launch("trainer", ["--recipe", "hinton", "--n-epochs", "3", *TINY, "--quiet",
                              "--resume", old], tmp_path, work, folder, checksums)
    code, _, err = finish(proc)
    assert code == BAD_INPUT, err
    one_line(err, "version 2")
    assert listing(work) == []


# ----------------------------------------------------------------------------
# 2. A truncated or corrupt .npz: one line, exit 2, for the figures and for --resume.
# ----------------------------------------------------------------------------

def flip_middle(payload: bytes) -> bytes:
    """Invert 16 bytes in the middle: inside the largest array, so its CRC fails on reading."""
    i = len(payload) // 2
    return payload[:i] + bytes(b ^ 0xFF for b in payload[i:i + 16]) + payload[i + 16:]


DAMAGE = {
    "truncated": lambda b: b[:len(b) // 2],          # head -c N model.npz > t.npz
    "cut_after_first_header": lambda b: b[:100],
    "empty": lambda b: b"",
    "not_a_zip": lambda b: b"not a model",
    "corrupt_data": flip_middle,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_model_given_to_the_figures(hinton_files, tmp_path, damage):
    """As a user runs it (the script file itself); the model is read before any data."""
    bad = tmp_path / "t.npz"
    bad.write_bytes(DAMAGE[damage](hinton_files[0].read_bytes()))
    work = tmp_path / "work"
    work.mkdir()
    out = subprocess.run([sys.executable, str(ROOT / "visualize_ff_label_in_input.py"),
                          "--model", str(bad), "--outdir", "viz"], capture_output=True, text=True,
                         cwd=work, env=user_env(tmp_path, tmp_path / "no-data-here"), timeout=120)
    assert out.returncode == BAD_INPUT, out.stderr
    one_line(out.stderr, str(bad))
    assert listing(work) == []                                   # no viz/ folder, no PNG


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_checkpoint_given_to_resume(hinton_files, fake_data, tmp_path, damage):
    bad = tmp_path / "t.npz"
    bad.write_bytes(DAMAGE[damage](hinton_files[1].read_bytes()))
    folder, checksums = fake_data
    work = tmp_path / "work"
    proc = launch("trainer", ["--recipe", "hinton", "--n-epochs", "3", *TINY, "--quiet",
                              "--save", "model.npz", "--resume", bad], tmp_path, work, folder,
                  checksums)
    code, _, err = finish(proc)
    assert code == BAD_INPUT, err
    one_line(err, str(bad))
    assert listing(work) == []                                   # no model, no ff_interrupted.npz


# ----------------------------------------------------------------------------
# 3. A one-frame GIF.
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("frames_argv", [["--epochs", "1"], ["--epochs", "2", "--snapshot-every", "2"]])
def test_one_frame_gif(fake_mnist, tmp_path, frames_argv):
    out = tmp_path / "one.gif"
    path, n = fake_mnist.main(gif, [*frames_argv, "--train-subset", "200", *TINY, "--fps", "5",
                                    "--out", str(out)])
    assert path == out and n == 1
    with Image.open(out) as im:
        assert im.format == "GIF" and im.n_frames == 1
        assert im.info["duration"] == 200 + 1000 * gif.HOLD_LAST_S   # 5 fps, then the hold
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist", "one.gif"]   # no temporary file


# ----------------------------------------------------------------------------
# 4, 6. Ctrl-C: in the GIF script's training, while MNIST loads (every script), during the
# trainer's final evaluation (the model is saved first), in the benchmark.
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("signum, status, word", [(signal.SIGINT, INTERRUPTED, "interrupted"),
                                                  (signal.SIGTERM, 143, "SIGTERM")])
def test_a_stop_in_the_gif_script_writes_nothing(signum, status, word, fake_data, tmp_path):
    folder, checksums = fake_data
    work = tmp_path / "work"
    proc = launch("gif", ["--epochs", "100000", "--train-subset", "200", *TINY, "--out", "ff.gif"],
                  tmp_path, work, folder, checksums)
    wait_for_line(proc, "epoch   2/")
    proc.send_signal(signum)
    code, _, err = finish(proc)
    assert code == status, err
    one_line(err, word, "no GIF")
    assert listing(work) == []                                   # no GIF, no ff_interrupted.npz


@pytest.mark.parametrize("script", ["trainer", "gif", "viz"])
def test_ctrl_c_while_mnist_downloads(script, hinton_files, tmp_path):
    """The download hangs on a silent mirror; Ctrl-C there ends with one line and leaves
    neither the data folder it was making nor anything in the current folder."""
    data_dir = tmp_path / "new" / "mnist"
    argv = {"trainer": ["--n-epochs", "1", *TINY, "--save", "model.npz"],
            "gif": ["--epochs", "1", *TINY, "--out", "ff.gif"],
            "viz": ["--model", hinton_files[0], "--outdir", "viz"]}[script]
    work = tmp_path / "work"
    with silent_mirror() as (srv, url):
        proc = launch(script, [*argv, "--data-dir", data_dir], tmp_path, work,
                      tmp_path / "no-data-here", mirrors=(url,))
        conn, _ = srv.accept()                                   # the download has started
        with conn:
            code, err = interrupt(proc)
    assert code == INTERRUPTED, err
    one_line(err, "interrupted")
    assert not (tmp_path / "new").exists()                       # no empty folder left
    assert listing(work) == []


def test_ctrl_c_during_the_final_evaluation_keeps_the_model(tmp_path):
    """Training is done and saved when the full-test evaluation (10000 images, 784-1000-1000:
    several seconds) is interrupted: exit 130, one line, the model complete on disk, no
    metrics file and nothing else."""
    folder = tmp_path / "mnist"
    checksums = write_fake_mnist(folder, n_train=100, n_test=10000)
    work = tmp_path / "work"
    model = work / "model.npz"
    proc = launch("trainer", ["--n-epochs", "1", "--layer-sizes", "784,1000,1000", "--batch-size",
                              "100", "--eval-subset", "1", "--full-test", "--quiet", "--save",
                              "model.npz", "--metrics", "metrics.json"], tmp_path, work, folder,
                  checksums)
    deadline = time.monotonic() + 300
    while not model.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert model.exists() and proc.poll() is None, "the model is not saved before the evaluation"
    code, err = interrupt(proc)
    assert code == INTERRUPTED, err
    one_line(err, "interrupted")
    net, cfg, history, _ = ff.load_model(model)                  # complete, and the trained one
    assert cfg.layer_sizes == [784, 1000, 1000] and history["epoch"] == [1]
    assert listing(work) == ["model.npz"]                        # no metrics, no ff_interrupted.npz


def test_ctrl_c_in_the_benchmark_writes_nothing(fake_data, tmp_path):
    folder, checksums = fake_data
    work = tmp_path / "work"
    proc = launch("bench", ["--layer-sizes", "784,30,20", "--train-subset", "200", "--warmup",
                            "100000", "--repeats", "1", "--json", "bench.json"], tmp_path, work,
                  folder, checksums)
    wait_for_line(proc, "bench: ")
    code, err = interrupt(proc)
    assert code == INTERRUPTED, err
    one_line(err, "interrupted")
    assert listing(work) == []


# ----------------------------------------------------------------------------
# 5. --seed -1 is refused by the parser, before any data is read.
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("script", ["trainer", "gif"])
def test_negative_seed_is_refused_before_any_data(script, nowhere, capsys):
    line = refused_in_process(SCRIPTS[script], ["--seed", "-1"], capsys, mirrors=())
    assert "--seed" in line
    assert listing(nowhere) == []


# ----------------------------------------------------------------------------
# 7. A --data-dir that is missing and cannot be downloaded leaves no empty folder.
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("script", ["trainer", "gif", "viz"])
def test_undownloadable_data_dir_leaves_no_folder(script, hinton_files, nowhere, tmp_path, capsys):
    data_dir = tmp_path / "new" / "mnist"
    argv = {"trainer": ["--n-epochs", "1", *TINY, "--save", "model.npz"],
            "gif": ["--epochs", "1", *TINY, "--out", "ff.gif"],
            "viz": ["--model", str(hinton_files[0]), "--outdir", "viz"]}[script]
    for mirrors in ((), (refusing_mirror(),)):
        line = refused_in_process(SCRIPTS[script], [*argv, "--data-dir", str(data_dir)], capsys,
                                  mirrors=mirrors)
        assert "train-images-idx3-ubyte.gz" in line and "HINTON_MNIST_DIR" in line
        assert not (tmp_path / "new").exists()
        assert listing(nowhere) == []


# ----------------------------------------------------------------------------
# 8. The figure script's own flags, checked before any model or data is read.
# ----------------------------------------------------------------------------

def refusing_folder() -> Path:
    """A folder that exists but refuses new files even to root (os.access says yes)."""
    folder = Path("/proc")
    if not folder.is_dir() or ff.writable_folder(folder) is None:
        pytest.skip("needs a folder that refuses new files (Linux /proc)")
    return folder


def test_figures_unwritable_model_folder_names_model_not_save(nowhere, capsys):
    """A missing --model is trained into its folder; that folder must take a new file."""
    line = refused_in_process(viz, ["--model", str(refusing_folder() / "model.npz")], capsys, mirrors=())
    assert "--model" in line and "--save" not in line and "refuses new files" in line
    assert listing(nowhere) == []


@pytest.mark.parametrize("argv, reason", [
    (["--model", "no/such/folder/model.npz"], "does not exist"),
    (["--model", "."], "is a folder"),
    (["--outdir", "a_file"], "is a file"),
    (["--outdir", "a_file/viz"], "--outdir"),
])
def test_figures_bad_paths_exit_2_before_any_work(argv, reason, nowhere, capsys):
    (nowhere / "a_file").write_text("x")
    line = refused_in_process(viz, argv, capsys, mirrors=())
    assert reason in line and "--save" not in line
    assert listing(nowhere) == ["a_file"]


# ----------------------------------------------------------------------------
# More of the same kind: bad flags of the GIF script, the benchmark and the runner.
# ----------------------------------------------------------------------------

def cuda_available():
    try:
        ff.array_module("cuda")
        return True
    except ff.DeviceError:
        return False


@pytest.mark.skipif(cuda_available(), reason="CuPy and a GPU are here: --device cuda is valid")
def test_gif_device_cuda_without_cupy_is_refused(nowhere, capsys):
    line = refused_in_process(gif, ["--device", "cuda"], capsys, mirrors=())
    assert "--device cuda" in line
    assert listing(nowhere) == []


@pytest.mark.parametrize("argv, reason", [
    (["--warmup", "-1"], "at least 0"),
    (["--repeats", "0"], "at least 1"),
    (["--batch-size", "0"], "at least 1"),
    (["--train-subset", "0"], "at least 1"),
    (["--train-subset", "60001"], "at most 60000"),
    (["--layer-sizes", "100,5"], "must be 784"),
    (["--json", "/nonexistent/dir/bench.json"], "cannot write"),
    (["--json", "."], "is a folder"),
])
def test_benchmark_bad_flags_exit_2_before_any_work(argv, reason, nowhere, capsys):
    line = refused_in_process(bench, argv, capsys)
    assert reason in line
    assert listing(nowhere) == []


@pytest.mark.parametrize("argv, reason", [
    (["--only", "no_such_run"], "no run named no_such_run"),
    (["--blas-threads", "0"], "at least 1"),
    (["--jobs", "3"], "invalid choice"),
    (["--group", "nope"], "invalid choice"),
])
def test_runner_bad_flags_exit_2(argv, reason, capsys):
    line = refused_in_process(runner, argv, capsys)
    assert reason in line


# ----------------------------------------------------------------------------
# 9. --help: every flag explained, each default shown once, placeholders that match.
# ----------------------------------------------------------------------------

PARSERS = {"trainer": lambda: ff.build_parser([]), "gif": lambda: gif.build_parser([]),
           "viz": viz.build_parser, "bench": bench.build_parser, "runner": runner.build_parser,
           "ab_epoch": ab_epoch.build_parser, "data_movement": data_movement.build_parser,
           "backprop": backprop.build_parser, "dead_units_early": dead_units_early.build_parser}


def flag_helps(parser) -> dict:
    """--flag -> (its metavar or None, its help text as --help prints it, unwrapped)."""
    formatter = parser._get_formatter()
    out = {}
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        text = formatter._expand_help(action) if action.help else ""
        metavar = None if action.nargs == 0 or action.choices else (
            action.metavar or action.dest.upper())
        out[action.option_strings[-1]] = (metavar, " ".join(text.split()))
    return out


@pytest.mark.parametrize("entry", sorted(PARSERS))
def test_every_flag_has_help_with_one_default(entry):
    for flag, (_, text) in flag_helps(PARSERS[entry]()).items():
        assert text, f"{entry} {flag} has no help"
        assert text.lower().count("default") <= 1, f"{entry} {flag}: {text}"


@pytest.mark.parametrize("entry", sorted(PARSERS))
def test_help_placeholders_are_the_metavars(entry):
    """"the first N images" next to `--train-subset N`, "up to PX px" next to `--jitter [PX]`."""
    for flag, (metavar, text) in flag_helps(PARSERS[entry]()).items():
        for word in re.findall(r"\b(?:first|last|every|up to)\s+([A-Z][A-Z0-9_]*)\b", text):
            assert word == metavar, f"{entry} {flag} {metavar}: {text}"


def test_named_help_texts():
    """The four of the issue: --data-dir, --jitter, and the benchmark's flags."""
    trainer = flag_helps(ff.build_parser([]))
    assert trainer["--data-dir"][1].count("default") == 1
    assert trainer["--jitter"][0] == "PX" and "PX px" in trainer["--jitter"][1]
    assert "N px" not in trainer["--jitter"][1]
    b = flag_helps(bench.build_parser())
    assert b["--train-subset"][1].count("default") == 1
    assert b["--layer-sizes"][1] and b["--batch-size"][1]
