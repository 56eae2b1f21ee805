"""The benchmark runs end to end on a tiny budget, and its plain reference agrees with the module."""

import importlib.util
import json

from conftest import ROOT

spec = importlib.util.spec_from_file_location("bench_ff", ROOT / "benchmarks" / "bench_ff.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_benchmark_smoke(fake_mnist, tmp_path, capsys):
    out = tmp_path / "bench.json"
    r = bench.main(["--layer-sizes", "784,30,20", "--batch-size", "32", "--train-subset", "200",
                    "--warmup", "1", "--repeats", "1", "--json", str(out)],
                   checksums=fake_mnist.checksums)
    assert r["data"] == "MNIST" and r["n_images"] == 200
    assert r["loss_max_relative_gap"] < 1e-5          # reference and module: same loss, same batch
    assert r["predict_max_abs_diff"] < 1e-4           # naive and fast prediction agree
    for key in ("reference_epoch_s", "module_epoch_s", "gemm_floor_s", "floor_s",
                "ratio_reference_over_module", "ratio_module_over_floor", "peak_rss_MB"):
        assert r[key] > 0
    assert json.loads(out.read_text())["layer_sizes"] == [784, 30, 20]
    assert "reference / module epoch" in capsys.readouterr().out
