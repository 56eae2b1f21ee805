"""Every committed result has its command in experiments/registry.py, that command gives
the config its JSON records (in today's fields, read as they stand), no result names a
machine path, the README carries every table made from the results unchanged, and the
tables follow the results."""

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, ff, real_mnist_dir

spec = importlib.util.spec_from_file_location("experiments_run", ROOT / "experiments" / "run.py")
run = sys.modules["experiments_run"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)

RESULTS = ROOT / "results"
MACHINE_PATHS = ("/work/", "/home/", "/tmp/")


def result_files():
    """The results, without a run's .part record (a run under way writes it; git ignores it)."""
    return sorted(p for p in RESULTS.rglob("*") if p.is_file() and p.suffix != ".part")


@pytest.mark.parametrize("name", list(run.TABLES))
def test_readme_carries_table(name):
    render, sources = run.TABLES[name]
    if not sources():
        pytest.skip(f"table {name}: none of its result files exists yet")
    assert any(render() in doc.read_text() for doc in run.DOCS), (
        f"neither README.md nor RESULTS.md has table {name} as `python3 experiments/run.py --tables` prints it")


def copy_of_the_repo(tmp_path):
    """The module, experiments/ and results/ in tmp_path, for a run.py that reads them there."""
    shutil.copy(ROOT / "ff_label_in_input.py", tmp_path)
    shutil.copytree(ROOT / "experiments", tmp_path / "experiments",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(RESULTS, tmp_path / "results")
    return tmp_path


def run_py(root, *argv):
    """experiments/run.py ARGV in a fresh Python in root; its standard output."""
    env = {**os.environ, "PYTHONHASHSEED": "123"}            # another set and dict order
    done = subprocess.run([sys.executable, "experiments/run.py", *argv], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done.stdout


def test_tables_are_the_same_in_another_process():
    assert run_py(ROOT, "--tables") == run.render_tables() + "\n"


def test_tables_follow_the_results(tmp_path):
    """One number changed in a copy of the results changes the tables that show it, and
    only those; so a table that ignored its JSON would fail here."""
    root = copy_of_the_repo(tmp_path)
    head = root / "results/headline_784-500-500_seed0.json"
    m = json.loads(head.read_text())
    m["test_accuracy"], m["test_correct"] = 0.1234, 1234
    head.write_text(json.dumps(m, indent=2) + "\n")
    before, after = run.render_tables().split("\n\n"), run_py(root, "--tables").rstrip("\n").split("\n\n")
    changed = [b.split("\n")[0] for b, a in zip(before, after) if a != b]
    assert len(before) == len(after) and changed == ["<!-- table summary -->", "<!-- table headline -->"]
    assert "12.34% test accuracy" in after[0] and "1234 / 10000 (12.34%)" in "\n".join(after)


def test_a_cut_short_result_is_missing_not_read(tmp_path):
    """A JSON result that does not parse counts as not done: the status, --commands and
    the tables pass over it instead of ending in a traceback."""
    root = copy_of_the_repo(tmp_path)
    cut = root / "results/findings/best_2x500_s1.json"
    cut.write_text(cut.read_text()[:100])
    assert "findings      37 of  38 done" in run_py(root)
    assert run_py(root, "--commands", "--group", "findings") == (
        "python3 experiments/run.py --run-one findings/best_2x500_s1\n")
    tables = run_py(root, "--tables")
    assert "| `best_2x500` | 2 x 500 | 30 | 2 |" in tables


def test_no_machine_paths_in_results():
    bad = [str(p.relative_to(ROOT)) for p in result_files()
           if any(s in p.read_text(errors="replace") for s in MACHINE_PATHS)]
    assert not bad, f"machine paths in {bad}"


def test_every_result_has_a_command():
    made = {r.out for r in run.RUNS}
    orphans = [str(p.relative_to(ROOT)) for p in result_files() if str(p.relative_to(ROOT)) not in made]
    assert not orphans, f"no command in experiments/run.py makes {orphans}"


def test_commands_are_relative_and_unique():
    outs = [r.out for r in run.RUNS]
    assert len(outs) == len(set(outs))
    for r in run.RUNS:
        for word in r.command(resume=True):
            assert not word.startswith(("/", "~")) and ".." not in word, (r.out, word)
        assert r.out.startswith("results/") and (r.checkpoint is None or r.checkpoint.startswith("runs/"))


def config_of(r):
    """The Config the runner's command for r gives (without touching the disk)."""
    argv = list(r.command()[2:])
    args = ff.build_parser(argv).parse_args(argv)
    return dataclasses.asdict(ff.Config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ff.Config)}))


def assert_same_config(want, got, fields):
    for k in fields:
        if isinstance(want[k], float):
            assert got[k] == pytest.approx(want[k], rel=1e-9), k
        else:
            assert got[k] == want[k], k


TRAINING_RESULTS = [r for r in run.RUNS if r.trains and not r.stdout and (ROOT / r.out).exists()]


@pytest.mark.parametrize("r", TRAINING_RESULTS, ids=[r.out for r in TRAINING_RESULTS])
def test_command_gives_recorded_config(r):
    """The config as the JSON holds it: every field of today's Config, no other, so the
    tables need no translation."""
    want = json.loads((ROOT / r.out).read_text())["config"]
    assert list(want) == list(run.FIELDS)
    assert_same_config(want, config_of(r), run.FIELDS)


MIGRATED = [p for p in result_files() if p.suffix == ".json" and "migrated_from" in p.read_text()]


@pytest.mark.parametrize("path", MIGRATED, ids=[str(p.relative_to(ROOT)) for p in MIGRATED])
def test_migrated_results_say_what_changed(path):
    m = json.loads(path.read_text())
    note, fields, old = (m["migrated_from"][k] for k in ("note", "fields", "old"))
    assert note and fields and set(old) <= set(fields)
    assert all(k in m["config"] or k in old for k in fields)        # added, changed or dropped


def test_the_old_log_records_the_old_spelling_of_its_command():
    """The first paper-scale attempt is a log from before the redesign (not rewritten): its
    config line, read with the old option's meaning, is its command's config."""
    (r,) = [r for r in run.RUNS if r.stdout]
    old = json.loads((ROOT / r.out).read_text().splitlines()[0].removeprefix("config: "))
    got = config_of(r)
    assert (old["goodness"], got["logit_scale"]) == ("sum", "D")
    assert old["peer_norm"] * 0.1 / 2000 == pytest.approx(got["peer_norm"]) and got["peer_gate"] == "relu"
    assert_same_config(old, got, [k for k in old if k in run.FIELDS and k != "peer_norm"])


def test_list_prints_every_command(capsys):
    assert run.main(["--list"]) == 0
    out = capsys.readouterr().out
    for r in run.RUNS:
        assert r.shell() in out
    assert "mkdir -p " in out


def test_select_by_group_entry_and_stem():
    assert {r.group for r in run.select(run.RUNS, ["hinton"])} == {"hinton"}
    assert [r.stem for r in run.select(run.RUNS, only=["4x350"])] == ["4x350_s0", "4x350_s1", "4x350_s2"]
    assert [r.out for r in run.select(run.RUNS, only=["findings/4x350_s1"])] == ["results/findings/4x350_s1.json"]
    with pytest.raises(SystemExit):
        run.select(run.RUNS, only=["no_such_run"])


@pytest.mark.skipif(real_mnist_dir() is None, reason="needs the real MNIST files")
def test_runner_runs_resumes_and_stops(tmp_path, monkeypatch):
    """Two tiny runs at once, one made again from its checkpoint, and a run stopped after
    epoch 1 whose output is the result."""
    monkeypatch.setenv("HINTON_MNIST_DIR", str(real_mnist_dir()))
    shutil.copy(ROOT / "ff_label_in_input.py", tmp_path)
    tiny = ("--layer-sizes", "784,50,50", "--n-epochs", "2", "--train-subset", "1000",
            "--eval-subset", "200", "--seed", "0")
    a = run.Run("g", "a", "results/g/a_s0.json", (run.TRAIN, *tiny), "runs/g/a_s0.ckpt.npz")
    b = run.Run("g", "b", "results/g/b_s0.json", (run.TRAIN, "--recipe", "hinton", *tiny))
    # epochs of a second or so: the runner's Ctrl-C after epoch 1's line lands in epoch 2
    stop = run.Run("g", "stop", "results/stop.log", (run.TRAIN, *tiny, "--n-epochs", "3",
                                                      "--train-subset", "20000", "--layer-sizes",
                                                      "784,300,300"),
                   "runs/g/stop.ckpt.npz", stdout=True, stop_after_epoch=1)
    assert run.run_all([a, b, stop], jobs=2, root=tmp_path)
    first = json.loads((tmp_path / a.out).read_text())
    assert first["command"] == " ".join(a.command())
    (tmp_path / a.out).unlink()
    assert run.execute(a, 1, root=tmp_path)
    again = json.loads((tmp_path / a.out).read_text())
    assert "--resume runs/g/a_s0.ckpt.npz" in again["command"]
    assert again["prediction_modes"] == first["prediction_modes"]
    lines = (tmp_path / a.log).read_text()
    assert "epoch   1/2" in lines and "--- resumed from runs/g/a_s0.ckpt.npz ---" in lines
    log = (tmp_path / stop.out).read_text()
    assert "epoch   1/3" in log and "epoch   2/3" not in log
    assert not (tmp_path / (stop.out + ".part")).exists()
