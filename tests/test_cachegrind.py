"""The Cachegrind driver (experiments/cachegrind.py): a tiny point of FF and of backprop
under valgrind, the JSON it writes, its parser's help and refusals."""

import json
import shutil
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "experiments"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import cachegrind  # noqa: E402

NO_VALGRIND = "valgrind not installed (apt-get install valgrind)"
TINY = ["--layer-sizes", "784,16,16", "--batch-size", "8", "--steps", "1",
        "--ll-mb", "1"]      # 1 MB: small enough that a step of the tiny net misses in LL too
SUMMARY = """==7064== I   refs:      140,020,045
==7064== I1  misses:      1,408,051
==7064== LLi misses:         14,148
==7064== D   refs:       59,921,605  (40,279,326 rd   + 19,642,279 wr)
==7064== D1  misses:      1,796,489  ( 1,619,136 rd   +    177,353 wr)
==7064== LLd misses:        125,302  (    36,643 rd   +     88,659 wr)
==7064== D1  miss rate:         3.0% (       4.0%     +        0.9%  )
==7064== LL refs:         3,204,540  ( 3,027,187 rd   +    177,353 wr)
==7064== LL misses:         139,450  (    50,791 rd   +     88,659 wr)
"""


def refused(argv, capsys) -> str:
    """main(argv) exits 2 with one line (argparse's usage block aside); returns it."""
    with pytest.raises(SystemExit) as e:
        cachegrind.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("usage:", " "))]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_summary_is_read_as_cachegrinds_events():
    """valgrind 3.19's summary on stderr; LL data misses only (not LLi)."""
    assert cachegrind.parse_summary(SUMMARY) == {
        "Ir": 140020045, "I1mr": 1408051, "ILmr": 14148, "Dr": 40279326, "Dw": 19642279,
        "D1mr": 1619136, "D1mw": 177353, "DLmr": 36643, "DLmw": 88659}


def test_every_flag_has_help():
    p = cachegrind.build_parser()
    for action in p._actions:
        assert action.help, action.option_strings
        assert p._get_formatter()._expand_help(action).lower().count("default") <= 1, action.help


@pytest.mark.parametrize("argv, reason", [
    (["--schedule", "layer-major", "--method", "bp"], "layer-major is FF's"),
    (["--schedule", "layer-major", "--recipe", "hinton"], "no --softmax-head"),
    (["--ll-mb", "48"], "power of two"),
    (["--steps", "0"], "at least 1"),
    (["--json", "/nonexistent/dir/cg.json"], "cannot write"),
])
def test_bad_flags_exit_2_with_one_line(argv, reason, capsys):
    assert reason in refused(argv, capsys)


def test_missing_valgrind_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))                      # nothing to run here
    assert refused(TINY, capsys) == "error: valgrind not found on PATH (apt-get install valgrind)"


@pytest.mark.skipif(shutil.which("valgrind") is None, reason=NO_VALGRIND)
@pytest.mark.parametrize("method, jobs, base", [("ff", "2", 1), ("bp", "1", 0)])
def test_tiny_point_under_valgrind(method, jobs, base, tmp_path):
    """N = 1: the short run (M = N = 1, or M = 0 steps after the warm-up) and the long run
    of M + N (side by side with --jobs 2), their counts, positive misses per step, the
    JSON's fields."""
    out = tmp_path / "cg.json"
    cachegrind.main(TINY + ["--method", method, "--jobs", jobs, "--base-steps", str(base), "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["command"].startswith("python3 experiments/cachegrind.py --layer-sizes 784,16,16")
    assert result["machine"]["numpy"] and result["valgrind"]["version"].startswith("valgrind-")
    assert "ff_label_in_input.py" in result["code"] and "experiments/data_movement.py" in result["code"]
    assert result["valgrind"]["D1"] == {"size": 49152, "assoc": 12, "line": 64}
    assert result["point"]["method"] == method and result["point"]["batches_per_step"] == 1
    assert (result["point"]["steps"], result["point"]["base_steps"]) == (1, base)
    (point,) = result["points"]
    assert point["LL"] == {"size": 1 << 20, "assoc": 16, "line": 64}
    runs = point["runs"]
    assert (runs["short"]["steps"], runs["long"]["steps"]) == (base, base + 1)
    assert "--LL=1048576,16,64" in runs["short"]["command"]
    assert f"--draw-steps {base + 1}" in runs["short"]["command"]     # the same batches in both
    assert runs["short"]["blas"].get("num_threads", 1) == 1            # one core's caches
    step = point["per_step"]
    assert step["D1_misses"] > 0 and step["LL_misses"] > 0
    assert step["D1_misses"] == runs["long"]["counts"]["D1mr"] + runs["long"]["counts"]["D1mw"] - (
        runs["short"]["counts"]["D1mr"] + runs["short"]["counts"]["D1mw"])
    assert step["dram_bytes"] == 64 * step["LL_misses"]
