"""Does FF move less data than backprop? The real training steps on a simulated cache (Cachegrind).

    python3 experiments/cachegrind.py --layer-sizes 784,500,500 --batch-size 128 --method ff \
        --schedule layer-major --json results/cachegrind/ff_layer-major_784-500-500.json
    python3 experiments/cachegrind.py --layer-sizes 784,2000,2000,2000,2000 --batch-size 100 \
        --method bp --schedule layer-update --steps 1 --base-steps 0 --ll-mb 8 32 128 --json /tmp/bp.json

ByteDMD (experiments/data_movement.py) prices a step without caches. This driver runs the
step that trains, NumPy and OpenBLAS as they are, under valgrind's Cachegrind: an I1 and a
D1 of this CPU's shape and one last level (LL) of --ll-mb MB. The worker (--worker, in the
child under valgrind) builds the state as data_movement.run_ff / run_bp do (the same
configs, fresh random batches from data_movement.random_batch, all drawn before the first
step), runs one warm-up step and then its steps. The driver runs the worker twice: a short
run of M steps after the warm-up (--base-steps, default N) and a long run of M + N steps
(--steps N); everything else is the same in both, so per step = (long run - short run) / N,
the cost of steps M + 1 .. M + N after the warm-up, start-up cancelled:
  D1 misses   D1mr + D1mw, lines the D1 had to fetch (L1 <-> LL traffic / 64 B);
  LL misses   DLmr + DLmw, data lines the last level had to fetch;
  DRAM bytes  LL misses x 64 B. Cachegrind counts fills only: it models no write-backs of
              dirty lines and no prefetcher, so this is the read side of DRAM traffic.
A step is one train_step call: one batch, or --group-batches batches under layer-major
(then per batch too). The worker runs the CPU code as it trains (Adam chunked, its
subnormal guard every 16 steps), one BLAS thread: one core's caches.
"""

import argparse
import compileall
import concurrent.futures
import contextlib
import dataclasses
import gc
import hashlib
import io
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))                          # experiments/: data_movement, backprop
sys.path.insert(0, str(HERE.parent))                   # the module
sys.path.insert(0, str(HERE.parent / "benchmarks"))    # data_movement's instruments
import ff_label_in_input as ff  # noqa: E402

import backprop as bp  # noqa: E402
import data_movement as dm  # noqa: E402

LINE = 64                                   # bytes per cache line, every level (this CPU's)
I1 = (32768, 8, LINE)                       # size B, ways, line B
D1 = (49152, 12, LINE)                      # this CPU's L1d: getconf LEVEL1_DCACHE_*
LL_WAYS = 16
CHILD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",   # one core's caches
             "PYTHONHASHSEED": "0",                                  # the same dicts, run to run
             "PYTHONDONTWRITEBYTECODE": "1"}                         # the snapshot's .pyc stay
# Cachegrind's summary lines on stderr, e.g. "==7064== D1  misses:  1,796,489  ( 1,619,136 rd
# +  177,353 wr)"; names as its events (cg_annotate's Ir, D1mr, DLmw, ...).
SUMMARY = re.compile(r"^==\d+== (I|D|I1|D1|LLi|LLd|LL)\s+(refs|misses):\s+([\d,]+)"
                     r"(?:\s+\(\s*([\d,]+) rd\s+\+\s+([\d,]+) wr\))?", re.M)
EVENTS = {("I", "refs"): "Ir", ("I1", "misses"): "I1mr", ("LLi", "misses"): "ILmr",
          ("D", "refs"): ("Dr", "Dw"), ("D1", "misses"): ("D1mr", "D1mw"),
          ("LLd", "misses"): ("DLmr", "DLmw")}


# ---------------------------------------------------------------- the worker (under valgrind)

def point_config(layer_sizes, batch_size, recipe, schedule, group_batches):
    """The FF config of data_movement.ff_config, at this schedule and group size."""
    cfg = dm.ff_config(",".join(map(str, layer_sizes)), batch_size, recipe, schedule)
    return dataclasses.replace(cfg, group_batches=group_batches)


def make_step(args):
    """(step(batches), batches per step, FF config) for the point: ff.train_step or bp.backprop_step
    on a fresh state, as data_movement.run_ff / run_bp build it."""
    ff_schedule = args.schedule if args.method == "ff" else "batch"
    cfg = point_config(args.layer_sizes, args.batch_size, args.recipe, ff_schedule, args.group_batches)
    if args.method == "ff":
        state = ff.init_state(cfg)
        grads = np.zeros_like(state.net.params)
        k = ff.group_size(cfg)

        def step(draws):
            ff.train_step(state, cfg, [ff.Batch(*d) for d in draws], [cfg.lr] * k, grads)
        return step, k, cfg
    bcfg = dataclasses.replace(dm.bp_config(cfg), schedule=args.schedule)
    state = bp.init_state(bcfg)
    grads = np.zeros_like(state.params)

    def step(draws):
        (x, y, *_), = draws
        bp.backprop_step(state, x, y, bcfg.lr, grads, bcfg.schedule)
    return step, 1, cfg


def worker(args):
    """Prints the BLAS and SIMD it runs on; then one warm-up step and --steps steps, every
    batch drawn before the first, as many (--draw-steps) in the short run as in the long one.
    No cyclic garbage collection: a full one over the imports' objects (~10^8 instructions)
    would land among one run's steps and not the other's (reference counting frees the
    steps' arrays). Exits at once after the last step: no teardown whose cache state
    depends on the steps."""
    gc.collect()
    gc.disable()
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as simd
    except ImportError:                                              # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_features__ as simd
    root = HERE.parent
    files = [Path(m.__file__).resolve() for m in list(sys.modules.values()) if getattr(m, "__file__", None)]
    code = sorted(str(f.relative_to(root)) for f in files if f.is_relative_to(root))
    ff.say(json.dumps({"blas": ff.blas(), "simd": [f for f, on in simd.items() if on], "code": code}))
    step, k, cfg = make_step(args)
    rng = np.random.default_rng(args.seed)
    draws = [[dm.random_batch(rng, cfg) for _ in range(k)] for _ in range(1 + args.draw_steps)]
    step(draws[0])                                                   # warm-up
    for d in draws[1:1 + args.steps]:
        step(d)
    os._exit(0)


# ---------------------------------------------------------------- the driver

SNAPSHOT = ("*.py", "experiments/*.py", "benchmarks/*.py")   # what the worker can import


def snapshot(folder: Path) -> dict:
    """Copy the tree's Python files into folder and compile them there: every run of a
    point runs the same bytes while the tree is edited, and none pays for compiling (a
    .pyc present for one run and not the other is ~10^8 instructions). {path: sha256}."""
    root, digests = HERE.parent, {}
    for pattern in SNAPSHOT:
        for src in sorted(root.glob(pattern)):
            rel = src.relative_to(root)
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, folder / rel)
            digests[str(rel)] = hashlib.sha256(src.read_bytes()).hexdigest()
    compileall.compile_dir(folder, quiet=2)
    return digests


def valgrind_args(ll_mb) -> list:
    return ["valgrind", "--tool=cachegrind", "--cache-sim=yes", "--branch-sim=no",
            "--I1=%d,%d,%d" % I1, "--D1=%d,%d,%d" % D1, f"--LL={ll_mb << 20},{LL_WAYS},{LINE}",
            "--cachegrind-out-file=/dev/null"]


def worker_args(args, steps) -> list:
    """The worker's command line for a run of `steps` steps after the warm-up, from the
    snapshot's root (sys.executable: a pyenv shim is a shell script, and valgrind would trace
    the shell)."""
    return [sys.executable, "experiments/cachegrind.py", "--worker", "--steps", str(steps),
            "--draw-steps", str(args.base_steps + args.steps), "--layer-sizes", ",".join(map(str, args.layer_sizes)),
            "--batch-size", str(args.batch_size), "--recipe", args.recipe, "--method", args.method,
            "--schedule", args.schedule, "--group-batches", str(args.group_batches),
            "--seed", str(args.seed)]


def parse_summary(stderr: str) -> dict:
    """Cachegrind's closing summary as event counts: Ir, I1mr, ILmr, Dr, Dw, D1mr, D1mw,
    DLmr, DLmw."""
    counts = {}
    for level, kind, total, rd, wr in SUMMARY.findall(stderr):
        names = EVENTS.get((level, kind))
        if isinstance(names, str):
            counts[names] = int(total.replace(",", ""))
        elif names:
            counts[names[0]], counts[names[1]] = int(rd.replace(",", "")), int(wr.replace(",", ""))
    missing = {"Ir", "Dr", "Dw", "D1mr", "D1mw", "DLmr", "DLmw"} - set(counts)
    if missing:
        raise ValueError(f"no {', '.join(sorted(missing))} in cachegrind's summary")
    return counts


def cachegrind_run(args, steps, ll_mb, code: Path) -> dict:
    """One worker under valgrind, run from the snapshot in code: its counts, wall and CPU
    seconds, and what it ran on."""
    cmd = valgrind_args(ll_mb) + worker_args(args, steps)
    cpu0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=code,
                          env={**os.environ, **CHILD_ENV}) as proc:
        LIVE.add(proc)
        if STOPPING.is_set():                      # the point stopped while this run started
            proc.kill()
        try:
            proc.stdout_text, proc.stderr_text = proc.communicate()
        finally:
            LIVE.discard(proc)
    cpu1, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter() - t0
    if proc.returncode and STOPPING.is_set():
        raise RuntimeError("killed: the point stopped")             # its driver says why, once
    if proc.returncode:
        tail = " | ".join(line for line in proc.stderr_text.splitlines()[-3:] if line.strip())
        ff.fail(f"the worker under valgrind exited {proc.returncode}: {tail}", 1)
    ran_on = json.loads(proc.stdout_text.strip().splitlines()[-1])
    return {"steps": steps, "command": shlex.join(cmd), "counts": parse_summary(proc.stderr_text),
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
            **ran_on}


def guard_steps(args, k) -> int:
    """Adam steps with the subnormal guard (ff.GUARD_EVERY) among the measured ones: the
    long run's last N steps, optimiser steps k (1 + M) + 1 .. k (1 + M + N). The guard
    works on a chunk already in cache: instructions and L1 misses, not DRAM bytes."""
    if args.recipe != "baseline":
        return 0
    first, last = k * (1 + args.base_steps) + 1, k * (1 + args.base_steps + args.steps)
    return last // ff.GUARD_EVERY - (first - 1) // ff.GUARD_EVERY


LIVE = set()                                # the valgrind runs under way (Popen)
STOPPING = threading.Event()
RUNS = ("short", "long")                    # M and M + N steps after the warm-up


def run_steps(args, name) -> int:
    return args.base_steps + (args.steps if name == "long" else 0)


def timed_run(args, name, ll_mb, code: Path) -> dict:
    """One of a point's runs, and its line of progress."""
    steps = run_steps(args, name)
    run = cachegrind_run(args, steps, ll_mb, code)
    ff.say(f"  LL {ll_mb:>4} MB  {name:>5} run ({steps} steps)  D1 misses "
           f"{run['counts']['D1mr'] + run['counts']['D1mw']:>14,}  LL misses "
           f"{run['counts']['DLmr'] + run['counts']['DLmw']:>13,}  {run['wall_s']:7.1f} s")
    return run


def measure(args, ll_mb, k, runs: dict) -> dict:
    """A point from its short and long runs at one LL size: their difference per step (and
    per batch)."""
    diff = {e: (runs["long"]["counts"][e] - runs["short"]["counts"][e]) / args.steps
            for e in runs["short"]["counts"]}
    per_step = {"D1_misses": diff["D1mr"] + diff["D1mw"], "LL_misses": diff["DLmr"] + diff["DLmw"],
                "instructions": diff["Ir"], "data_refs": diff["Dr"] + diff["Dw"], "events": diff}
    per_step["dram_bytes"] = per_step["LL_misses"] * LINE
    point = {"ll_mb": ll_mb, "LL": {"size": ll_mb << 20, "assoc": LL_WAYS, "line": LINE},
             "runs": runs, "per_step": per_step, "batches_per_step": k}
    if k > 1:
        point["per_batch"] = {key: v / k for key, v in per_step.items() if key != "events"}
    ff.say(f"  LL {ll_mb:>4} MB  per step: D1 misses {per_step['D1_misses']:.4g}  LL misses "
           f"{per_step['LL_misses']:.4g}  DRAM {per_step['dram_bytes'] / 1e6:.4g} MB"
           + (f"  (per batch {per_step['dram_bytes'] / k / 1e6:.4g} MB)" if k > 1 else ""))
    return point


def valgrind_version() -> str:
    return subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()


def power_of_two_mb(text):
    """--ll-mb: Cachegrind wants a power-of-two number of sets (MB x 1024 at 16 ways of 64 B)."""
    mb = ff.positive_int(text)
    if mb & (mb - 1):
        raise argparse.ArgumentTypeError(f"must be a power of two (valgrind needs a power-of-two "
                                         f"number of sets), got {text}")
    return mb


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=ff.HelpFormatter)
    p.add_argument("--layer-sizes", type=ff.layer_sizes_arg, default=[784, 500, 500],
                   help="input and hidden layers (backprop adds its 10-way output)")
    p.add_argument("--batch-size", type=ff.positive_int, default=128, help="images per batch")
    p.add_argument("--recipe", choices=tuple(ff.RECIPES), default="baseline",
                   help="the FF recipe; backprop takes its optimiser (data_movement.bp_config)")
    p.add_argument("--method", choices=("ff", "bp"), default="ff", help="Forward-Forward or backprop")
    p.add_argument("--schedule", choices=("batch", "layer-update", "layer-major"), default="batch",
                   help="the order of the step's work (layer-major: FF only); every order gives "
                        "the same weights")
    p.add_argument("--group-batches", type=ff.positive_int, default=8,
                   help="layer-major: batches per step")
    p.add_argument("--steps", type=ff.bounded(int, 0), default=2,
                   help="N: steps measured, the long run's last N (at least 1)")
    p.add_argument("--base-steps", type=ff.bounded(int, 0), metavar="M",
                   help="steps of the short run after the warm-up (default: N); 0 measures the "
                        "step right after the warm-up, in 3/5 of the valgrind time of M = N = 1")
    p.add_argument("--ll-mb", type=power_of_two_mb, nargs="+", default=[32], metavar="MB",
                   help="last-level cache size(s) in MB, 16-way, 64 B lines; several make a sweep")
    p.add_argument("--jobs", type=ff.positive_int, default=1,
                   help="valgrind runs at once (the counts do not change, only the wall times)")
    p.add_argument("--seed", type=ff.bounded(int, 0), default=0, help="of the random batches")
    p.add_argument("--json", metavar="PATH", help="write the result here")
    p.add_argument("--worker", action="store_true",
                   help="internal: be the child that runs the steps under valgrind")
    p.add_argument("--draw-steps", type=ff.positive_int, metavar="S",
                   help="internal, with --worker: batches drawn up front for S steps (the driver "
                        "gives M + N to both runs)")
    return p


def check_args(p, args):
    """Refuse what cannot run, with one line (exit 2)."""
    if args.schedule == "layer-major" and args.method == "bp":
        p.error("--schedule layer-major is FF's: backprop's layer l needs the layers above it")
    if args.steps < 1 and not args.worker:             # the worker's short run may have 0
        p.error(f"argument --steps: at least 1, got {args.steps}")
    if args.base_steps is None:
        args.base_steps = args.steps
    if args.worker and args.draw_steps is None:
        args.draw_steps = args.steps
    if args.worker and args.draw_steps < args.steps:
        p.error(f"--draw-steps: at least --steps ({args.steps}), got {args.draw_steps}")
    ff_schedule = args.schedule if args.method == "ff" else "batch"
    err = io.StringIO()
    try:                                    # ff's own checks (e.g. hinton's head and layer-major)
        with contextlib.redirect_stderr(err):
            point_config(args.layer_sizes, args.batch_size, args.recipe, ff_schedule, args.group_batches)
    except SystemExit:
        p.error(err.getvalue().strip().splitlines()[-1].split("error: ", 1)[-1])
    ff.check_paths(p, args, ("json",))


def main(argv=None) -> dict | None:
    p = build_parser()
    args = p.parse_args(argv)
    check_args(p, args)
    if args.worker:
        return worker(args)
    if shutil.which("valgrind") is None:
        ff.fail("valgrind not found on PATH (apt-get install valgrind)")
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python3 experiments/cachegrind.py", shlex.join(given)]).strip()
    try:
        with ff.stop_signals():
            return run(args, command)
    except KeyboardInterrupt as e:
        ff.fail(f"{ff.stop_reason(e)}; nothing written", ff.exit_code(e))


def run(args, command) -> dict:
    """main after its flags are checked: each LL size in turn, then the JSON."""
    k = args.group_batches if args.schedule == "layer-major" else 1
    sizes = "-".join(map(str, args.layer_sizes))
    ff.say(f"{sizes} B={args.batch_size} {args.recipe} {args.method} {args.schedule}"
           + (f" (k {k})" if k > 1 else "") + f", N={args.steps}, M={args.base_steps}")
    tasks = [(name, ll_mb) for ll_mb in args.ll_mb for name in RUNS]
    with tempfile.TemporaryDirectory(prefix="cachegrind-code.") as folder:
        digests = snapshot(Path(folder))
        # Every count is the simulated cache's, so runs side by side give the counts of runs
        # one after the other: only the wall times grow.
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            try:
                done = dict(zip(tasks, pool.map(lambda t: timed_run(args, *t, Path(folder)), tasks)))
            except BaseException:                  # a stop signal or a failed run: no run left behind
                pool.shutdown(wait=False, cancel_futures=True)
                STOPPING.set()
                for proc in list(LIVE):
                    proc.kill()
                raise
    points = [measure(args, ll_mb, k, {name: done[name, ll_mb] for name in RUNS})
              for ll_mb in args.ll_mb]
    loaded = points[0]["runs"]["long"]["code"]
    result = {"command": command, "machine": ff.machine(),
              "code": {rel: digests[rel] for rel in loaded},   # sha256 of what the worker ran
              "valgrind": {"version": valgrind_version(), "tool": "cachegrind",
                           "I1": dict(zip(("size", "assoc", "line"), I1)),
                           "D1": dict(zip(("size", "assoc", "line"), D1)),
                           "LL": {"size": "ll_mb MB, per point", "assoc": LL_WAYS, "line": LINE},
                           "child_env": CHILD_ENV},
              "point": {"layer_sizes": args.layer_sizes, "batch_size": args.batch_size,
                        "recipe": args.recipe, "method": args.method, "schedule": args.schedule,
                        "batches_per_step": k, "steps": args.steps, "base_steps": args.base_steps,
                        "seed": args.seed,
                        "adam_guard_steps_measured": guard_steps(args, k)},
              "points": points}
    if args.json:
        ff.atomic_write_bytes(args.json, (json.dumps(result, indent=1) + "\n").encode())
    return result


if __name__ == "__main__":
    main()
