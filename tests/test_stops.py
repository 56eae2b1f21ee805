"""Nothing a user or a job scheduler does loses a run: `~` and $VARS in output paths,
SIGTERM and SIGHUP handled as Ctrl-C (exit 143, 129), a save that a signal interrupts
finishes first, folders that refuse new files, closed pipes, Ctrl-C while the imports
load, damaged but readable files, and a resume command a shell can paste. Every signal
here is a real one, sent to a real process, and the working folder is listed exactly."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, ff
from test_user_errors import (BAD_INPUT, INTERRUPTED, TINY, backprop, data_movement, finish,  # noqa: F401
                              fake_data, gif, hinton_files, launch, listing, one_line, refused_in_process,
                              refusing_folder, user_env, viz, wait_for_line)

TERMINATED, HUNG_UP = 143, 129                   # 128 + SIGTERM, 128 + SIGHUP


def script(name, argv, tmp_path, cwd, data_dir, **kwargs):
    """The script file itself, as a user runs it (python3 FILE ARGS), its stdout a pipe."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, str(ROOT / name), *map(str, argv)], cwd=cwd, text=True,
                            env=user_env(tmp_path, data_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kwargs)


def trainer_with_signal_in_savez(argv, signum, tmp_path, cwd, data_dir, checksums):
    """The trainer in a fresh Python whose first np.savez (a checkpoint, or the model when
    there is no checkpoint) sends `signum` to its own process before it builds the archive.
    Wrapping np.savez in the child is the only way to land a signal inside a save every
    time; the module under test is not touched."""
    code = ("import json, os, sys; sys.path[:0] = [%r]; import numpy as np; real = np.savez\n"
            "def savez(*a, **k):\n"
            "    if not getattr(savez, 'done', False):\n"
            "        savez.done = True; os.kill(os.getpid(), %d)\n"
            "    return real(*a, **k)\n"
            "np.savez = savez\n"
            "import ff_label_in_input as ff; ff.main(sys.argv[1:], checksums=json.loads(%r), mirrors=())"
            % (str(ROOT), signum, json.dumps(checksums)))
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-c", code, *map(str, argv)], cwd=cwd, text=True,
                            env=user_env(tmp_path, data_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


# ----------------------------------------------------------------------------
# 1. `~` and $VARS in output paths: the checks and the writers see one expanded path.
# ----------------------------------------------------------------------------

def test_tilde_and_vars_in_the_trainers_outputs(fake_data, tmp_path, monkeypatch):
    folder, checksums = fake_data
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("RUNS", str(home / "runs"))
    (home / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    ff.main(["--n-epochs", "1", *TINY, "--quiet", "--data-dir", str(folder), "--save=~/m.npz",
             "--checkpoint", "~/ck.npz", "--metrics", "$RUNS/metrics.json"], checksums=checksums, mirrors=())
    assert listing(home) == ["ck.npz", "m.npz", "runs", "runs/metrics.json"]
    assert not (tmp_path / "~").exists() and not (tmp_path / "$RUNS").exists()


def test_tilde_in_the_gif_backprop_and_data_movement_outputs(fake_data, tmp_path, monkeypatch):
    folder, checksums = fake_data
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    gif.main(["--epochs", "1", "--train-subset", "100", *TINY, "--data-dir", str(folder),
              "--out=~/ff.gif"], checksums=checksums, mirrors=())
    backprop.main(["--layer-sizes", "784,20", "--n-epochs", "1", "--quiet", "--data-dir", str(folder),
                   "--metrics=~/bp.json"], checksums=checksums, mirrors=())
    data_movement.main(["--layer-sizes", "784,8,8", "--batch-size", "4", "--steps", "3", "--json=~/dm.json"])
    assert listing(home) == ["bp.json", "dm.json", "ff.gif"]


# ----------------------------------------------------------------------------
# 5, 6. SIGTERM, SIGHUP and Ctrl-C: one line, exit 128 + N, a valid checkpoint, no litter.
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, TERMINATED), (signal.SIGHUP, HUNG_UP),
                                          (signal.SIGINT, INTERRUPTED)])
def test_a_stop_signal_mid_epoch_checkpoints(signum, code, fake_data, tmp_path):
    folder, checksums = fake_data
    work = tmp_path / "work"
    proc = launch("trainer", ["--n-epochs", "100000", *TINY, "--checkpoint", "ck.npz", "--save", "m.npz"],
                  tmp_path, work, folder, checksums)
    wait_for_line(proc, "epoch   2/")
    proc.send_signal(signum)
    status, _, err = finish(proc)
    assert status == code, err
    line = one_line(err, "--resume ck.npz")
    assert ("interrupted" if signum == signal.SIGINT else signal.Signals(signum).name) in line
    assert listing(work) == ["ck.npz"]                    # no model, no temporary file
    state, history = ff.load_checkpoint(work / "ck.npz", ff.parse_args(["--n-epochs", "100000", *TINY])[1])
    assert state.epoch >= 2 and history["epoch"][-1] == state.epoch


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, TERMINATED), (signal.SIGINT, INTERRUPTED)])
def test_a_stop_signal_mid_checkpoint_write_finishes_the_write(signum, code, fake_data, tmp_path):
    folder, checksums = fake_data
    work = tmp_path / "work"
    proc = trainer_with_signal_in_savez(["--n-epochs", "5", *TINY, "--quiet", "--checkpoint", "ck.npz"],
                                        signum, tmp_path, work, folder, checksums)
    status, _, err = finish(proc)
    assert status == code, err
    one_line(err, "after epoch 1 is in ck.npz")
    assert listing(work) == ["ck.npz"]                    # no .ck.npz.XXXX.tmp
    state, _ = ff.load_checkpoint(work / "ck.npz", ff.parse_args(["--n-epochs", "5", *TINY])[1])
    assert state.epoch == 1


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, INTERRUPTED), (signal.SIGTERM, TERMINATED)])
def test_a_stop_signal_while_the_model_is_saved_keeps_the_model(signum, code, fake_data, tmp_path):
    """The signal lands inside the save of the trained model (before the final evaluation):
    the save finishes, then one line names the model, exit 130 / 143."""
    folder, checksums = fake_data
    work = tmp_path / "work"
    proc = trainer_with_signal_in_savez(["--n-epochs", "1", *TINY, "--quiet", "--save", "m.npz",
                                         "--metrics", "metrics.json"], signum, tmp_path, work, folder,
                                        checksums)
    status, _, err = finish(proc)
    assert status == code, err
    one_line(err, "the trained model is in m.npz")
    assert listing(work) == ["m.npz"]                     # no metrics, no ff_interrupted.npz
    net, cfg, history, _ = ff.load_model(work / "m.npz")
    assert history["epoch"] == [1]


def test_sigterm_during_the_final_evaluation_keeps_the_model(tmp_path):
    from conftest import write_fake_mnist
    folder = tmp_path / "mnist"
    checksums = write_fake_mnist(folder, n_train=100, n_test=10000)
    work = tmp_path / "work"
    proc = launch("trainer", ["--n-epochs", "1", "--layer-sizes", "784,1000,1000", "--batch-size", "100",
                              "--eval-subset", "1", "--full-test", "--quiet", "--save", "m.npz",
                              "--metrics", "metrics.json"], tmp_path, work, folder, checksums)
    deadline = time.monotonic() + 300
    while not (work / "m.npz").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    status, _, err = finish(proc)
    assert status == TERMINATED, err
    one_line(err, "SIGTERM during the final evaluation", "m.npz")
    assert listing(work) == ["m.npz"]


def test_sigterm_in_the_backprop_baseline(fake_data, tmp_path):
    """(The GIF script's: tests/test_user_errors.py, test_a_stop_in_the_gif_script_writes_nothing.)"""
    folder, checksums = fake_data
    work = tmp_path / "bp"
    work.mkdir()
    code = (f"import json, sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'experiments')!r}]; "
            f"import backprop; backprop.main(sys.argv[1:], checksums=json.loads({json.dumps(checksums)!r}), "
            "mirrors=())")
    proc = subprocess.Popen([sys.executable, "-c", code, "--layer-sizes", "784,20", "--n-epochs", "100000",
                             "--checkpoint", "bp.ckpt.npz", "--metrics", "bp.json", "--data-dir", str(folder)],
                            cwd=work, text=True, env=user_env(tmp_path, folder), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    wait_for_line(proc, "epoch")
    wait_for_line(proc, "epoch")
    proc.send_signal(signal.SIGTERM)
    status, _, err = finish(proc)
    assert status == TERMINATED, err
    one_line(err, "SIGTERM", "--resume bp.ckpt.npz")
    assert listing(work) == ["bp.ckpt.npz", "bp.json.part"]      # METRICS only once complete


# ----------------------------------------------------------------------------
# 7. A folder that os.access calls writable but that refuses new files.
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--save", "--metrics", "--checkpoint"])
def test_a_folder_that_refuses_new_files_is_refused_up_front(flag, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HINTON_MNIST_DIR", str(tmp_path / "no-data-here"))   # no work can start
    line = refused_in_process(ff, ["--n-epochs", "1", flag, str(refusing_folder() / "x.npz")], capsys)
    assert flag in line and "cannot write" in line


def test_two_outputs_on_one_file_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = refused_in_process(ff, ["--checkpoint", "x.npz", "--save", "./x.npz"], capsys)
    assert "same file" in line and listing(tmp_path) == []


# ----------------------------------------------------------------------------
# 8. A closed standard output costs no run.
# ----------------------------------------------------------------------------

def closed_pipe():
    """The write end of a pipe whose reader has already quit (`| head -0`)."""
    read, write = os.pipe()
    os.close(read)
    return write


@pytest.mark.parametrize("target", ["trainer", "viz"])
def test_a_closed_pipe_costs_no_run(target, hinton_files, fake_data, tmp_path):
    """`| head -0`: the trainer still trains and saves, the figure script writes all six."""
    folder, checksums = fake_data
    work = tmp_path / "work"
    argv = (["--n-epochs", "3", *TINY, "--save", "m.npz"] if target == "trainer" else
            ["--model", hinton_files[0], "--outdir", "viz"])
    out = closed_pipe()
    proc = launch(target, [*argv, "--data-dir", folder], tmp_path, work, folder, checksums, stdout=out)
    os.close(out)
    status, _, err = finish(proc)
    assert status == 0 and "Traceback" not in err, err
    if target == "trainer":
        assert listing(work) == ["m.npz"]
    else:
        assert len(list((work / "viz").glob("*.png"))) == len(viz.FIGSIZES)


@pytest.mark.parametrize("flag", ["--list", "--tables", "--commands"])
def test_the_runners_listings_into_a_closed_pipe(flag, tmp_path):
    out = closed_pipe()
    proc = subprocess.run([sys.executable, str(ROOT / "experiments/run.py"), flag], cwd=ROOT,
                          stdout=out, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(out)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


# ----------------------------------------------------------------------------
# 9. Ctrl-C while the imports load.
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ff_label_in_input.py", "visualize_ff_label_in_input.py",
                                  "make_ff_label_in_input_gif.py", "experiments/backprop.py"])
def test_ctrl_c_while_the_imports_load(name, tmp_path):
    """SIGINT while the script's imports load (NumPy, matplotlib): one line, exit 130. A
    signal that comes while the interpreter itself starts (status -2, a traceback in its
    site module, or a bare "KeyboardInterrupt" while it compiles the script: all before
    the script's first line) is none of the script's doing: the test then tries again a
    little later."""
    for delay in (0.05, 0.1, 0.2, 0.3, 0.5):
        proc = script(name, ["--help"], tmp_path, tmp_path / "work", tmp_path / "none")
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        status, out, err = finish(proc)
        if status != -signal.SIGINT and "<frozen site>" not in err and err.strip() != "KeyboardInterrupt":
            break
    if status == 0:
        pytest.skip("the script finished before the signal came")
    assert status == INTERRUPTED, err
    one_line(err, "interrupted")


# ----------------------------------------------------------------------------
# 10. Damaged but readable files: the missing key is named; NaN weights are refused.
# ----------------------------------------------------------------------------

def without(path, key, out):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != key}
    np.savez(out, **arrays)
    return out


@pytest.mark.parametrize("key", ["rngs", "history", "epoch", "opt_avg_grad", "head_avg_grad"])
def test_a_checkpoint_missing_a_key_names_it(key, hinton_files, fake_data, tmp_path):
    folder, checksums = fake_data
    bad = without(hinton_files[1], key, tmp_path / "bad.npz")
    work = tmp_path / "work"
    proc = launch("trainer", ["--recipe", "hinton", "--n-epochs", "2", *TINY, "--quiet", "--resume", bad],
                  tmp_path, work, folder, checksums)
    status, _, err = finish(proc)
    assert status == BAD_INPUT, err
    one_line(err, key)
    assert listing(work) == []


@pytest.mark.parametrize("key", ["history", "metrics", "config", "W1"])
def test_a_model_missing_a_key_names_it(key, hinton_files, tmp_path, capsys):
    bad = without(hinton_files[0], key, tmp_path / "bad.npz")
    line = refused_in_process(viz, ["--model", str(bad), "--outdir", str(tmp_path / "viz")], capsys)
    assert key in line and not (tmp_path / "viz").exists()


def test_a_model_with_nan_weights_is_refused(hinton_files, tmp_path, capsys):
    with np.load(hinton_files[0], allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["W0"] = arrays["W0"].copy()
    arrays["W0"][3, 4] = np.nan
    np.savez(tmp_path / "nan.npz", **arrays)
    line = refused_in_process(viz, ["--model", str(tmp_path / "nan.npz"), "--outdir", str(tmp_path / "viz")],
                              capsys)
    assert "NaN" in line


# ----------------------------------------------------------------------------
# 11. The resume command printed after a stop is one a shell can paste.
# ----------------------------------------------------------------------------

def test_the_resume_command_is_shell_quoted(fake_data, tmp_path):
    import shlex
    folder, checksums = fake_data
    work = tmp_path / "work"
    proc = launch("trainer", ["--n-epochs", "100000", *TINY, "--checkpoint", "my ck.npz"], tmp_path, work,
                  folder, checksums)
    wait_for_line(proc, "epoch   1/")
    proc.send_signal(signal.SIGINT)
    status, _, err = finish(proc)
    assert status == INTERRUPTED, err
    again = shlex.split(one_line(err).split("To continue: ", 1)[1])
    assert again[-2:] == ["--resume", "my ck.npz"] and again[again.index("--checkpoint") + 1] == "my ck.npz"


# ----------------------------------------------------------------------------
# 3, 4 and nits: data_movement's --out-dir and --json, the GIF's default, --help defaults.
# ----------------------------------------------------------------------------

def test_data_movement_out_dir_is_checked_before_measuring(capsys):
    line = refused_in_process(data_movement, ["--only", "test_time", "--out-dir",
                                              str(refusing_folder() / "dm")], capsys)
    assert "--out-dir" in line


def test_data_movement_json_needs_one_point(capsys):
    assert "--layer-sizes" in refused_in_process(data_movement, ["--json", "x.json"], capsys)


def test_the_gif_scripts_default_output_is_not_the_committed_gif():
    args, _ = gif.parse_args([])
    assert args.out != "ff_label_in_input.gif"


def test_layer_sizes_help_shows_the_accepted_form():
    text = ff.build_parser().format_help().replace("\n", " ")
    assert "784,500,500" in " ".join(text.split()) and "[784, 500, 500]" not in text


def lost_stop_training(method):
    """(train one epoch, state) for FF's or backprop's training on a tiny net."""
    if method == "ff":
        cfg = ff.Config(layer_sizes=[784, 8, 8], n_epochs=1)
        state = ff.init_state(cfg)
        return (lambda x, y: ff.train_epoch(state, cfg, x, y)), state
    sys.path.insert(0, str(ROOT / "experiments"))
    import backprop as bp
    cfg = bp.BPConfig(layer_sizes=[784, 8], n_epochs=1)
    state = bp.init_state(cfg)
    return (lambda x, y: bp.train_epoch(state, cfg, x, y)), state


@pytest.mark.parametrize("method", ["ff", "backprop"])
def test_a_stop_whose_exception_was_lost_stops_the_next_step(method):
    """A C extension can clear the exception a stop signal raised inside its call (about 1
    Ctrl-C in 10 sent to the benchmark's warm-up was lost that way and the run went on).
    The handler's record survives: the next training step raises the stop again, and the
    record ends with its block."""
    train, state = lost_stop_training(method)
    x, y = np.zeros((256, 784), np.float32), np.arange(256) % 10
    with ff.stop_signals():
        try:
            signal.raise_signal(signal.SIGTERM)
        except KeyboardInterrupt:
            pass                                         # what the extension did with it
        with pytest.raises(ff.Stopped) as e:
            train(x, y)
        assert e.value.code == TERMINATED
    assert state.epoch == 0
    train(x, y)                                          # outside the block: no stop left
    assert state.epoch == 1
