"""Sweeps through the engines a machine already has: `experiments/run.py --commands` lines
through GNU parallel (or xargs -P), the lock of `--run-one`, and ab_epoch's --old REV.

The runs here are tiny entries in a copy of the repository (tmp_path): the module,
experiments/ with a tiny group and a slow run appended to its registry, no results."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, real_mnist_dir

sys.path.insert(0, str(ROOT / "experiments"))
import registry  # noqa: E402
import runner  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
import ab_epoch  # noqa: E402

TINY = "--layer-sizes 784,20,20 --n-epochs 1 --train-subset 200 --eval-subset 20 --batch-size 50"
TINY_GROUP = f"""
GROUPS["tiny"] = Group(base="{TINY}", checkpoint=True, runs={{"a": ("", (0, 1))}})
GROUPS["long"] = Group(base="{TINY}", checkpoint=True, runs={{"b": ("--n-epochs 100000", (0,))}})
RUNS = all_runs() + [Run("slow", "sleep", "results/slow/sleep.json", ("sleep.py",))]
GROUP_NAMES = tuple(dict.fromkeys(r.group for r in RUNS))
"""
NAMES = ("tiny/a_s0", "tiny/a_s1")


@pytest.fixture
def root(tmp_path):
    """A copy of the repository whose registry has the group `tiny` (two one-epoch runs)
    and `slow/sleep` (a run that takes a minute, for stopping)."""
    shutil.copy(ROOT / "ff_label_in_input.py", tmp_path)
    (tmp_path / "sleep.py").write_text("import time\ntime.sleep(60)\n")
    shutil.copytree(ROOT / "experiments", tmp_path / "experiments",
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "experiments" / "registry.py", "a") as f:
        f.write(TINY_GROUP)
    return tmp_path


def run_py(root, *argv, code=0):
    """experiments/run.py ARGV in root, in a fresh Python; its standard output."""
    done = subprocess.run([sys.executable, "experiments/run.py", *argv], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == code and "Traceback" not in done.stderr, done.stdout + done.stderr
    return done.stdout


def engine() -> list:
    """GNU parallel when it is installed, else xargs: two commands at a time from stdin."""
    if shutil.which("parallel"):
        return ["parallel", "--will-cite", "-j", "2"]
    return ["xargs", "-P", "2", "-I", "{}", "sh", "-c", "{}"]


def lock_files(root) -> list:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.lock*"))


def test_commands_print_one_run_one_line_per_missing_run(root):
    lines = run_py(root, "--commands", "--group", "tiny", "--blas-threads", "1").splitlines()
    assert lines == [f"python3 experiments/run.py --run-one {n} --blas-threads 1" for n in NAMES]
    (root / "results" / "tiny").mkdir(parents=True)
    (root / "results/tiny/a_s0.json").write_text('{"config": {"se')        # cut short: not done
    (root / "results/tiny/a_s1.json").write_text("{}")
    missing = run_py(root, "--commands", "--group", "tiny")
    assert missing == f"python3 experiments/run.py --run-one {NAMES[0]}\n"
    assert "tiny           1 of   2 done" in run_py(root)


@pytest.mark.skipif(real_mnist_dir() is None, reason="needs the real MNIST files (HINTON_MNIST_DIR)")
def test_two_runs_through_parallel_or_xargs(root, monkeypatch):
    """The lines of --commands, each given twice in a row, piped to GNU parallel (or xargs
    -P 2): each run made once (its twin finds it running or done), both results whole, no
    lock left; a second round finds nothing to do; a run resumes from its checkpoint."""
    monkeypatch.setenv("HINTON_MNIST_DIR", str(real_mnist_dir()))
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    lines = run_py(root, "--commands", "--group", "tiny", "--blas-threads", "1")
    assert len(lines.splitlines()) == 2
    twice = "".join(f"{line}\n{line}\n" for line in lines.splitlines())
    done = subprocess.run(engine(), input=twice, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in NAMES:
        result = json.loads((root / f"results/{name}.json").read_text())
        assert result["config"]["n_epochs"] == 1
        assert done.stdout.count(f"{name}: ok") == 1, done.stdout
        assert (done.stdout.count(f"{name}: running already") + done.stdout.count(f"{name}: done already")) == 1
    assert lock_files(root) == []
    assert run_py(root, "--commands", "--group", "tiny") == ""                 # both done
    again = subprocess.run(engine(), input="", cwd=root, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout == ""
    assert run_py(root, "--run-one", NAMES[0]) == f"{NAMES[0]}: done already\n"
    (root / "results/tiny/a_s0.json").unlink()
    assert "ok (resumed" in run_py(root, "--run-one", NAMES[0])
    resumed = json.loads((root / "results/tiny/a_s0.json").read_text())
    assert "--resume runs/tiny/a_s0.ckpt.npz" in resumed["command"]


def write_lock(root, name, host, pid):
    lock = root / f"runs/{name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"host": host, "pid": pid}) + "\n")
    return lock


def test_run_one_skips_a_run_this_host_is_making(root):
    """A lock of a live process here (this test's own) stops --run-one before any work."""
    lock = write_lock(root, NAMES[0], socket.gethostname(), os.getpid())
    before = lock.read_text()
    out = run_py(root, "--run-one", NAMES[0])
    assert out == f"{NAMES[0]}: running already (pid {os.getpid()}); not started\n"
    assert lock.read_text() == before and not (root / "results").exists()


def test_run_one_leaves_another_hosts_run_alone(root):
    lock = write_lock(root, NAMES[0], "elsewhere.invalid", 1)
    out = run_py(root, "--run-one", NAMES[0])
    assert "locked by pid 1 on elsewhere.invalid, another machine; not started" in out
    assert lock.exists() and not (root / "results").exists()


def test_a_stopped_run_one_removes_its_lock(root):
    """SIGTERM, as parallel or Slurm stop a job: exit 143 with one line, and no lock left."""
    proc = subprocess.Popen([sys.executable, "experiments/run.py", "--run-one", "slow/sleep"], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = root / "runs/slow/sleep.lock"
    for _ in range(200):
        if lock.exists() and (root / "runs/slow/sleep.log").exists():
            break
        time.sleep(0.05)
    assert json.loads(lock.read_text())["pid"] == proc.pid
    proc.terminate()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and err == "stopped by SIGTERM; runs with a checkpoint resume from it next time\n"
    assert lock_files(root) == []


def a_pid_that_has_ended() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def quick_run(root, name, code="open(sys.argv[1], 'w').write('{}')"):
    """A Run that needs no data: a script in root that writes its result (or fails)."""
    (root / "make.py").write_text(f"import sys\n{code}\n")
    out = f"results/g/{name}.json"
    return registry.Run("g", name, out, ("make.py", out))


def test_run_one_takes_over_a_stale_lock(tmp_path, capsys):
    r = quick_run(tmp_path, "x")
    pid = a_pid_that_has_ended()
    write_lock(tmp_path, r.name, socket.gethostname(), pid)
    assert runner.run_one(r, root=tmp_path) == 0
    out = capsys.readouterr().out
    assert f"runs/g/x.lock: taken over from pid {pid}, which has ended" in out and "g/x: ok" in out
    assert json.loads((tmp_path / r.out).read_text()) == {}
    assert lock_files(tmp_path) == []


def test_run_one_removes_its_lock_when_the_run_fails(tmp_path, capsys):
    r = quick_run(tmp_path, "y", code="raise SystemExit('no luck')")
    assert runner.run_one(r, root=tmp_path) == 1
    assert "g/y: FAILED, exit 1" in capsys.readouterr().out
    assert lock_files(tmp_path) == [] and not (tmp_path / r.out).exists()


def test_run_one_refuses_a_lock_it_cannot_read(tmp_path, capsys):
    r = quick_run(tmp_path, "z")
    (tmp_path / "runs/g").mkdir(parents=True)
    (tmp_path / "runs/g/z.lock").write_text("")
    assert runner.run_one(r, root=tmp_path) == 0
    assert "runs/g/z.lock is unreadable; not started" in capsys.readouterr().out
    assert not (tmp_path / r.out).exists()


def test_every_run_has_its_own_name():
    names = [r.name for r in registry.RUNS]
    assert len(names) == len(set(names))
    assert all(sum(registry.matches(r, n) for r in registry.RUNS) == 1 for n in names)


@pytest.mark.parametrize("argv, reason", [
    (["--run-one", "4x350"], "names 3 runs, not one"),
    (["--run-one", "nothing_here"], "names 0 runs, not one"),
    (["--run-one", "findings/4x350_s0", "--group", "findings"], "no --group, --only or --all"),
    (["--run-one", "findings/4x350_s0", "--commands"], "not allowed with argument"),
])
def test_run_one_bad_names_exit_2(argv, reason):
    done = subprocess.run([sys.executable, "experiments/run.py", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert reason in done.stderr.splitlines()[-1], done.stderr


# ----------------------------------------------------------------------------
# benchmarks/ab_epoch.py --old REV
# ----------------------------------------------------------------------------

def ab_refusal(argv, capsys) -> str:
    """ab_epoch.main(argv) exits 2 with one error line (after argparse's usage); that line."""
    with pytest.raises(SystemExit) as e:
        ab_epoch.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err, err
    assert "error:" in err.splitlines()[-1]
    return err.splitlines()[-1]


def test_ab_epoch_refuses_a_revision_git_does_not_know(capsys):
    line = ab_refusal(["--old", "no_such_revision_0000"], capsys)
    assert "neither a .py file nor a revision git knows" in line


def test_ab_epoch_refuses_a_path_that_is_not_python(tmp_path, capsys):
    (tmp_path / "old.txt").write_text("x = 1\n")
    line = ab_refusal(["--old", str(tmp_path / "old.txt")], capsys)
    assert "is not a .py file" in line


def test_ab_epoch_refuses_an_unbalanced_quote(capsys):
    line = ab_refusal(["--variant", '--schedule "batch'], capsys)
    assert "--variant" in line and "No closing quotation" in line


def git_knows(rev) -> bool:
    return subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{rev}^{{commit}}"],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(not git_knows("75f9820"), reason="this checkout lacks commit 75f9820")
def test_ab_epoch_old_takes_a_revision_or_a_file(tmp_path):
    p = ab_epoch.build_parser()
    old = ab_epoch.old_module(p, "75f9820")
    assert old.__name__ == "ff_old" and callable(old.train_epoch)
    assert not Path(old.__file__).exists()                      # the temporary copy is gone
    shutil.copy(ROOT / "ff_label_in_input.py", tmp_path / "ff_copy.py")
    assert callable(ab_epoch.old_module(p, str(tmp_path / "ff_copy.py")).train_epoch)


@pytest.mark.skipif(real_mnist_dir() is None, reason="needs the real MNIST files (HINTON_MNIST_DIR)")
@pytest.mark.parametrize("signum, code", [(15, 143), (2, 130)])
def test_stopping_the_runner_by_its_pid_stops_its_run(root, signum, code):
    """kill PID (SIGTERM) or SIGINT to the runner alone: the runner forwards it to its
    run's process group and waits while the run checkpoints; then both have ended."""
    import signal
    env = {**os.environ, "HINTON_MNIST_DIR": str(real_mnist_dir()), "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "experiments/run.py", "--only", "long/b_s0"], cwd=root,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ckpt = root / "runs/long/b_s0.ckpt.npz"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ckpt.exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint"
    os.kill(proc.pid, signum)                          # the runner's PID only, not its group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, out + err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    log = (root / "runs/long/b_s0.log").read_text()
    assert f"after epoch" in log and "--resume" in log, log   # the run checkpointed and said so
    mtime = ckpt.stat().st_mtime
    time.sleep(3)                                      # nothing goes on writing it: no orphan
    assert ckpt.stat().st_mtime == mtime and not lock_files(root)
