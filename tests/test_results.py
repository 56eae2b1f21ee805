"""Every committed result has its command in experiments/run.py, that command gives the
config its JSON records, no result names a machine path, and the README carries every
table made from the results unchanged."""

import dataclasses
import importlib.util
import json
import shutil
import sys

import pytest

from conftest import ROOT, ff, real_mnist_dir

spec = importlib.util.spec_from_file_location("experiments_run", ROOT / "experiments" / "run.py")
run = sys.modules["experiments_run"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)

RESULTS = ROOT / "results"
MACHINE_PATHS = ("/work/", "/home/", "/tmp/")


def result_files():
    return sorted(p for p in RESULTS.rglob("*") if p.is_file())


@pytest.mark.parametrize("name", list(run.TABLES))
def test_readme_carries_table(name):
    render, sources = run.TABLES[name]
    if not sources():
        pytest.skip(f"table {name}: none of its result files exists yet")
    assert any(render() in doc.read_text() for doc in run.DOCS), (
        f"neither README.md nor RESULTS.md has table {name} as `python3 experiments/run.py --tables` prints it")


def test_tables_are_stable():
    assert run.render_tables() == run.render_tables()


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


def recorded_config(r):
    if r.stdout:                                      # a log: its first line is the config
        first = (ROOT / r.out).read_text().splitlines()[0]
        return json.loads(first.removeprefix("config: "))
    return json.loads((ROOT / r.out).read_text())["config"]


TRAINING_RESULTS = [r for r in run.RUNS if r.trains and (ROOT / r.out).exists()]


@pytest.mark.parametrize("r", TRAINING_RESULTS, ids=[r.out for r in TRAINING_RESULTS])
def test_command_gives_recorded_config(r):
    want, got = run.current_config(recorded_config(r)), config_of(r)
    for k in run.FIELDS:
        if isinstance(want[k], float):
            assert got[k] == pytest.approx(want[k], rel=1e-9), k
        else:
            assert got[k] == want[k], k


def test_old_config_translation():
    old = {"seed": 0, "layer_sizes": [784, 500, 500], "goodness": "sum", "jitter": True,
           "peer_norm": 0.03, "threshold": 1.0, "metrics": "x.json"}
    cfg = run.current_config(old)
    assert (cfg["logit_scale"], cfg["jitter"], cfg["peer_gate"]) == ("D", 2, "relu")
    assert cfg["peer_norm"] == pytest.approx(0.03 * 0.1 / 500)
    assert cfg["recipe"] == "baseline" and cfg["optimizer"] == "adam" and "metrics" not in cfg


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
    stop = run.Run("g", "stop", "results/stop.log", (run.TRAIN, *tiny, "--n-epochs", "3"),
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
