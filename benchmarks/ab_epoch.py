"""Interleaved timing of one training epoch: versions of the module, or flag sets, in one
process, alternating epochs on the same data, so a noisy shared machine slows all alike.

    python3 benchmarks/ab_epoch.py --old 75f9820                            # 784-500-500
    python3 benchmarks/ab_epoch.py --old 75f9820 --recipe hinton \\
        --layer-sizes 784,1000,1000,1000 --train-subset 10000
    python3 benchmarks/ab_epoch.py --layer-sizes 784,2000,2000,2000,2000 --train-subset 10000 \\
        --variant "--schedule batch" --variant "--schedule layer-update" \\
        --variant "--schedule layer-major --group-batches 8"

With --old: ff_label_in_input.py at that git revision (or a .py file) against this one,
same flags. With --variant: this module under each extra flag set. Both versions take
train_epoch(state, cfg, x, y) with NumPy arrays. Prints each median epoch and its ratio
to the first.
"""

import argparse
import importlib.util
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


import ff_label_in_input as ff  # noqa: E402


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module                      # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def old_module(p, old: str):
    """The module --old names: a .py file, or ff_label_in_input.py at a git revision of this
    repository (written to a temporary file by git show, loaded, then removed)."""
    if old.endswith(".py"):
        if not Path(old).is_file():
            p.error(f"--old: no such file {old}")
        return load_module(old, "ff_old")
    if Path(old).exists():
        p.error(f"--old: {old} is not a .py file (give a .py file or a git revision)")
    try:
        shown = subprocess.run(["git", "-C", str(ROOT), "show", "--end-of-options",
                                f"{old}:ff_label_in_input.py"], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        p.error(f"--old {old}: git show failed ({e})")
    if shown.returncode:
        why = (shown.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        p.error(f"--old: {old} is neither a .py file nor a revision git knows ({why})")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ff_label_in_input.py"
        path.write_bytes(shown.stdout)
        return load_module(path, "ff_old")


def variant_flags(p, variants) -> list:
    """Each --variant split as a shell would, or refused with one line."""
    words = []
    for v in variants:
        try:
            words.append(shlex.split(v))
        except ValueError as e:                      # "No closing quotation"
            p.error(f"--variant {v!r}: {e}")
    return words


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=ff.HelpFormatter)
    p.add_argument("--old", metavar="REV",
                   help="time ff_label_in_input.py at this git revision (or this .py file) against this one")
    p.add_argument("--variant", action="append", metavar="FLAGS",
                   help="extra training flags of one variant (repeat; without --old)")
    p.add_argument("--recipe", choices=tuple(ff.RECIPES), default="baseline", help="recipe of all")
    p.add_argument("--layer-sizes", type=ff.layer_sizes_arg, default=[784, 500, 500],
                   help="comma-separated sizes, input first")
    p.add_argument("--train-subset", type=ff.bounded(int, 1, ff.N_TRAIN), default=ff.N_TRAIN,
                   metavar="N", help="images per epoch")
    p.add_argument("--pairs", type=ff.positive_int, default=5, help="timed epochs of each")
    p.add_argument("--json", metavar="PATH", help="write the medians here")
    return p


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    if bool(args.old) == bool(args.variant):
        p.error("give --old REV or at least one --variant FLAGS")
    ff.check_paths(p, args, ("json",))
    flags = ["--recipe", args.recipe, "--layer-sizes", ",".join(map(str, args.layer_sizes))]
    if args.old:
        runs = {"old": (old_module(p, args.old), flags), "new": (ff, flags)}
    else:
        runs = {v: (ff, flags + words) for v, words in zip(args.variant, variant_flags(p, args.variant))}
    states = {}
    for name, (module, run_flags) in runs.items():       # a bad --variant stops here, exit 2
        cfg = module.parse_args(run_flags)[1]
        states[name] = (module, cfg)
    try:
        return time_epochs(args, argv, flags, states)
    except KeyboardInterrupt:
        ff.fail("interrupted; nothing was written", 130)


def time_epochs(args, argv, flags, states):
    """Warm each up for an epoch, then alternate --pairs timed epochs; print and record."""
    try:
        x, y, _, _ = ff.load_mnist(mirrors=())
    except ff.DataError as e:
        ff.fail(e)
    x, y = x[:args.train_subset], y[:args.train_subset]
    states = {name: (module, cfg, module.init_state(cfg)) for name, (module, cfg) in states.items()}
    for module, cfg, state in states.values():
        module.train_epoch(state, cfg, x, y)                          # warm-up
    times = {name: [] for name in states}
    for _ in range(args.pairs):
        for name, (module, cfg, state) in states.items():
            t0 = time.perf_counter()
            module.train_epoch(state, cfg, x, y)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    first = next(iter(med))
    for k, v in times.items():
        print(f"{k}: median {med[k]:.3f} s, x{med[k] / med[first]:.3f}  ({' '.join(f'{t:.3f}' for t in v)})")
    if args.json:
        given = sys.argv[1:] if argv is None else argv
        result = {"command": "python3 benchmarks/ab_epoch.py " + shlex.join(given), "flags": flags,
                  "n_images": len(x), "median_s": med, "all_s": times,
                  "ratio_to_first": {k: v / med[first] for k, v in med.items()},
                  "machine": {**ff.machine(), "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")}}
        ff.atomic_write_bytes(args.json, (json.dumps(result, indent=2) + "\n").encode())
    return med

if __name__ == "__main__":
    main()
