"""Interleaved A/B timing of one training epoch: two versions of the module in one process,
alternating epochs on the same data, so a noisy shared machine slows both alike.

    git show 75f9820:ff_label_in_input.py > /tmp/ff_old.py
    python3 benchmarks/ab_epoch.py --old /tmp/ff_old.py                     # 784-500-500
    python3 benchmarks/ab_epoch.py --old /tmp/ff_old.py --recipe hinton \
        --layer-sizes 784,2000,2000,2000,2000 --train-subset 10000 --pairs 3

Both modules take train_epoch(state, cfg, x, y) with NumPy arrays. Prints each version's
median epoch and the ratio new / old.
"""

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ff_label_in_input as ff  # noqa: E402


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module                      # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=ff.HelpFormatter)
    p.add_argument("--old", required=True, help="path of the other ff_label_in_input.py")
    p.add_argument("--recipe", choices=tuple(ff.RECIPES), default="baseline", help="recipe of both")
    p.add_argument("--layer-sizes", type=ff.layer_sizes_arg, default=[784, 500, 500],
                   help="comma-separated sizes, input first")
    p.add_argument("--train-subset", type=ff.bounded(int, 1, ff.N_TRAIN), default=ff.N_TRAIN,
                   help="images per epoch")
    p.add_argument("--pairs", type=ff.positive_int, default=5, help="timed epochs of each version")
    args = p.parse_args(argv)
    if not Path(args.old).is_file():
        p.error(f"--old: no such file {args.old}")
    x, y, _, _ = ff.load_mnist(mirrors=())
    x, y = x[:args.train_subset], y[:args.train_subset]
    flags = ["--recipe", args.recipe, "--layer-sizes", ",".join(map(str, args.layer_sizes))]
    versions = {"old": load_module(args.old, "ff_old"), "new": ff}
    runs = {}
    for name, module in versions.items():
        cfg = module.parse_args(flags)[1]
        state = module.init_state(cfg)
        module.train_epoch(state, cfg, x, y)                          # warm-up
        runs[name] = (module, cfg, state)
    times = {name: [] for name in versions}
    for _ in range(args.pairs):
        for name, (module, cfg, state) in runs.items():
            t0 = time.perf_counter()
            module.train_epoch(state, cfg, x, y)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k}: median {med[k]:.3f} s  ({' '.join(f'{t:.3f}' for t in v)})")
    print(f"new / old: {med['new'] / med['old']:.3f}")
    return med


if __name__ == "__main__":
    main()
