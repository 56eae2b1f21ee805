"""Rerun the experiments behind the README's Findings and print their tables.

    python3 experiments/run_findings.py --list             # what would run
    python3 experiments/run_findings.py --jobs 2           # run what is missing
    python3 experiments/run_findings.py --tables           # only print the tables

Each run is one call of the training CLI with `--metrics results/findings/NAME_sSEED.json`;
a run whose JSON exists is skipped, so the script can be stopped and restarted. With
--jobs 2 two runs share the machine, each with one BLAS thread (two processes that
each spin two OpenBLAS threads on two cores slow each other down many times over).
The tables are made from the JSON files alone; tests/test_findings.py checks that the
README carries them unchanged.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "findings"
SEEDS = (0, 1, 2)
BASE = ["--n-epochs", "30", "--lr", "0.003", "--eval-subset", "2000", "--full-test"]

# name -> (flags, seeds). Every name is a row of some table below.
RUNS = {
    # Q1 hard negatives, Q3 prediction modes (784-500-500, 30 epochs)
    "uniform_2x500": (["--layer-sizes", "784,500,500"], SEEDS),
    "hard_2x500": (["--layer-sizes", "784,500,500", "--neg-sampling", "hard"], SEEDS),
    # Q2 depth and width at about the same cost per epoch
    "1x1000": (["--layer-sizes", "784,1000"], SEEDS),
    "3x400": (["--layer-sizes", "784,400,400,400"], SEEDS),
    "4x350": (["--layer-sizes", "784,350,350,350,350"], SEEDS),
    "4x350_deeplr0.1": (["--layer-sizes", "784,350,350,350,350", "--deep-lr-scale", "0.1"], SEEDS),
    "2x500_deeplr0.1": (["--layer-sizes", "784,500,500", "--deep-lr-scale", "0.1"], SEEDS),
    "4x350_sum": (["--layer-sizes", "784,350,350,350,350", "--goodness", "sum", "--threshold", "1"],
                  SEEDS),
    # Q4 jitter
    "jitter_2x500": (["--layer-sizes", "784,500,500", "--jitter"], SEEDS),
    "jitter_2x500_60ep": (["--layer-sizes", "784,500,500", "--jitter", "--n-epochs", "60"], (0,)),
    "uniform_2x500_60ep": (["--layer-sizes", "784,500,500", "--n-epochs", "60"], (0,)),
    # Q5 the best 784-500-500 in 30 epochs: candidates scored on 10K held-out training
    # images (--val-split), then the chosen one once on the test set
    "val_seed_recipe": (["--layer-sizes", "784,500,500", "--val-split", "10000"], (0,)),
    "val_sum": (["--layer-sizes", "784,500,500", "--val-split", "10000", "--goodness", "sum",
                 "--threshold", "1"], (0,)),
    "val_sum_cool": (["--layer-sizes", "784,500,500", "--val-split", "10000", "--goodness", "sum",
                      "--threshold", "1", "--lr-schedule", "cooldown"], (0,)),
    "val_sum_cool_hf": (["--layer-sizes", "784,500,500", "--val-split", "10000", "--goodness", "sum",
                         "--threshold", "1", "--lr-schedule", "cooldown", "--neg-sampling",
                         "hard-first"], (0,)),
    "val_sum_cool_hard": (["--layer-sizes", "784,500,500", "--val-split", "10000", "--goodness",
                           "sum", "--threshold", "1", "--lr-schedule", "cooldown",
                           "--neg-sampling", "hard"], (0,)),
    "val_sum_cool_hf_peer": (["--layer-sizes", "784,500,500", "--val-split", "10000", "--goodness",
                              "sum", "--threshold", "1", "--lr-schedule", "cooldown",
                              "--neg-sampling", "hard-first", "--peer-norm", "0.03"], (0,)),
    # the recipe chosen on the validation runs above, once on the test set
    "best_2x500": (["--layer-sizes", "784,500,500", "--goodness", "sum", "--threshold", "1",
                    "--lr-schedule", "cooldown"], SEEDS),
}

TABLES = {
    "q1": ("uniform_2x500", "hard_2x500"),
    "q2": ("1x1000", "uniform_2x500", "3x400", "4x350", "2x500_deeplr0.1", "4x350_deeplr0.1",
           "4x350_sum"),
    "q4": ("uniform_2x500", "jitter_2x500", "uniform_2x500_60ep", "jitter_2x500_60ep"),
    "q5_val": ("val_seed_recipe", "val_sum", "val_sum_cool", "val_sum_cool_hf", "val_sum_cool_hard",
               "val_sum_cool_hf_peer"),
    "q5": ("uniform_2x500", "best_2x500"),
}


def result_path(name, seed):
    return RESULTS / f"{name}_s{seed}.json"


def command(name, seed):
    flags, _ = RUNS[name]
    return ([sys.executable, str(ROOT / "ff_label_in_input.py")] + BASE + flags +
            ["--seed", str(seed), "--quiet", "--metrics", str(result_path(name, seed))])


def run_one(name, seed, threads):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    t0 = time.time()
    out = subprocess.run(command(name, seed), env=env, capture_output=True, text=True)
    status = "ok" if out.returncode == 0 else f"FAILED ({out.stderr.strip().splitlines()[-1:]})"
    print(f"{name} seed {seed}: {status} in {time.time() - t0:.0f}s", flush=True)


def load(name):
    """The metrics of every finished seed of a run."""
    _, seeds = RUNS[name]
    return [json.loads(result_path(name, s).read_text()) for s in seeds if result_path(name, s).exists()]


def mean_std(values, scale=100.0, digits=2):
    """'mean ± std (n)' of the values, as percentages by default."""
    values = [v * scale for v in values]
    if any(v != v for v in values):                  # NaN: the mode does not exist here
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (n=1)"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f} (n={len(values)})"


def row(name):
    ms = load(name)
    if not ms:
        return None
    sizes = ms[0]["config"]["layer_sizes"]
    modes = {m: mean_std([x["prediction_modes"].get(m, float("nan")) for x in ms])
             for m in ("all", "first", "skip-first")}
    dead = " / ".join(f"{statistics.mean(x['dead_units'][l] for x in ms):.0f}"
                      for l in range(len(sizes) - 1))
    gap = " / ".join(f"{statistics.mean(x['final_layer_stats']['g_pos'][l] - x['final_layer_stats']['g_neg'][l] for x in ms):.2f}"
                     for l in range(len(sizes) - 1))
    secs = statistics.mean(x["train_seconds"] for x in ms)
    return {"name": name, "sizes": "-".join(map(str, sizes[1:])), "modes": modes, "dead": dead,
            "gap": gap, "secs": f"{secs:.0f}", "epochs": ms[0]["config"]["n_epochs"]}


def table(key):
    held_out = "val." if key.endswith("_val") else "test"
    lines = [f"| run | hidden | epochs | {held_out} acc. all (%) | first (%) | skip-first (%) | "
             "g_pos - g_neg per layer | dead units per layer | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in TABLES[key]:
        r = row(name)
        if r:
            lines.append(f"| `{name}` | {r['sizes']} | {r['epochs']} | {r['modes']['all']} | "
                         f"{r['modes']['first']} | {r['modes']['skip-first']} | {r['gap']} | "
                         f"{r['dead']} | {r['secs']} |")
    return "\n".join(lines)


TUNING = ROOT / "results" / "tuning_4x500"
TUNING_ORDER = ("base", "deeplr0.1", "peer0.03", "peer0.3", "cooldown", "lr0.001", "hard",
                "hard_cool", "hard_cool_lr0.01", "deeplr0.1_cool", "sum_t1", "sum_cool",
                "sum_cool_t2", "sum_cool_lr0.001", "sum_cool_lr0.01", "hard_cool_sum",
                "sum_cool_hardfirst", "sum_cool_peer0.03", "sum_cool_hf_deeplr0.3")


def tuning_table():
    """The paper-scale tuning runs (4 x 500, 10 epochs, 10K validation images), one seed each;
    made by the shell scripts kept beside their JSON."""
    lines = ["| run | flags beyond the seed recipe | val. all (%) | first (%) | skip-first (%) | "
             "dead units per layer | train s |", "|---|---|---|---|---|---|---|"]
    seed = {"goodness": "mean", **json.loads((TUNING / "base.json").read_text())["config"]}
    for name in TUNING_ORDER:
        path = TUNING / f"{name}.json"
        if not path.exists():
            continue
        m = json.loads(path.read_text())
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in m["config"].items()
                         if k in seed and v != seed[k] and k not in ("metrics", "save"))
        modes = m["prediction_modes"]
        lines.append(f"| `{name}` | `{flags or '(none)'}` | {100 * modes['all']:.2f} | "
                     f"{100 * modes['first']:.2f} | {100 * modes['skip-first']:.2f} | "
                     f"{' / '.join(map(str, m['dead_units']))} | {m['train_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--jobs", type=int, default=1, choices=(1, 2), help="runs at once")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="OpenBLAS threads per run (default: 2 with --jobs 1, else 1)")
    p.add_argument("--only", nargs="*", default=None, help="run names to run (default: all)")
    p.add_argument("--list", action="store_true", help="print the commands and stop")
    p.add_argument("--tables", action="store_true", help="only print the tables")
    args = p.parse_args(argv)
    todo = [(n, s) for n, (_, seeds) in RUNS.items() for s in seeds
            if (args.only is None or n in args.only) and not result_path(n, s).exists()]
    if args.list:
        for n, s in todo:
            print(" ".join(command(n, s)[1:]))
        return
    if not args.tables and todo:
        RESULTS.mkdir(parents=True, exist_ok=True)
        threads = args.blas_threads or (1 if args.jobs == 2 else 2)
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda ns: run_one(*ns, threads), todo))
    for key in TABLES:
        print(f"\n<!-- table {key} -->\n{table(key)}")
    print(f"\n<!-- table tuning -->\n{tuning_table()}")


if __name__ == "__main__":
    main()
