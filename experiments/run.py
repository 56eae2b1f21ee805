"""Every result under results/, the command that makes it, and the README's tables.

    python3 experiments/run.py                            # status: what is done, what is missing
    python3 experiments/run.py --list                     # every command, runnable from the repo root
    python3 experiments/run.py --group findings --jobs 2  # run what is missing in a group
    python3 experiments/run.py --only hinton/code_3x1000  # an entry (all its seeds) or one file stem
    python3 experiments/run.py --all --jobs 2             # everything missing (days of CPU)
    python3 experiments/run.py --tables                   # the README tables, from the JSON alone

Each training run is one call of the CLI, made from the repository root with relative
paths only: `python3 ff_label_in_input.py FLAGS --seed S --metrics results/...json`. The
metrics JSON records that argv ("command"), so it names no machine path. A run whose
result file exists is skipped, so the runner can be stopped and started again. Runs of
the groups with checkpoints write runs/GROUP/STEM.ckpt.npz after every epoch and are
resumed from it (`--resume`, added by the runner) when it exists; after changing an
entry's flags, delete its stale checkpoint. Each run's output goes to runs/GROUP/STEM.log
(git-ignored; a resumed run appends to it). With --jobs 2, two runs share the machine
with one BLAS thread each (two processes that each spin two OpenBLAS threads on two
cores slow each other down many times over); timing runs (group bench) always run
alone, after the others.

tests/test_results.py checks that every file under results/ has its command here, that
each command's flags give the config its JSON records, and that the README carries every
table --tables prints, unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import ff_label_in_input as ff  # noqa: E402

TRAIN = "ff_label_in_input.py"
SEEDS = (0, 1, 2)

# ----------------------------------------------------------------------------
# Runs made before the redesign of ff_label_in_input.py (the results of every group but
# ablation and hinton) are written in today's CLI:
#   --goodness sum|mean  -> --logit-scale D|1 (the old spelling still works);
#   --jitter             -> --jitter 2 (the bare flag still means 2 px);
#   --peer-norm X        -> --peer-norm X*0.1/D --peer-gate relu, D the layer width (every
#                           layer of those runs is D wide): the old option was a penalty,
#                           reaching active units only, with coefficient X*2/D*0.1 on a
#                           loss twice today's (see old_peer);
#   --neg-sampling hard  scored the candidate labels with the --predict-mode layers, now
#                        always with all layers (every such run had --predict-mode all).
# The loss is now the mean over the 2B decisions, half the old value (the "loss" of an old
# JSON is twice today's); g_pos and g_neg are goodness per unit, as before.
# So those runs reproduce up to float rounding, not bit for bit. With Adam (the baseline
# recipe, so all of them) also up to Adam's epsilon: 1e-8 against the halved gradient
# weighs as 2e-8 did before (with eps 5e-9 the first 12 steps of dead_units_early.py
# repeat the old run bit for bit; with 1e-8 its dead-unit counts drift by up to 5).
# ----------------------------------------------------------------------------


def old_peer(x: float, width: int) -> str:
    """Today's --peer-norm for an old `--peer-norm x` on layers `width` units wide."""
    return f"{x * 0.1 / width:.6g}"


@dataclass(frozen=True)
class Group:
    """Training runs: name -> (flags, seeds); each seed is one CLI call with
    `base flags --seed S`, its metrics written to out.format(group=, name=, seed=)."""
    runs: dict
    base: str = ""
    out: str = "results/{group}/{name}_s{seed}.json"
    checkpoint: bool = False          # long runs: checkpoint every epoch, resume when present
    save: bool = False                # keep the model: runs/GROUP/STEM.npz


# The headline run (README "Quick start"); it also writes the model the figures read.
HEADLINE = Group(out="results/{name}_seed{seed}.json", runs={
    "headline_784-500-500": ("--n-epochs 30 --lr 0.003 --layer-sizes 784,500,500 "
                             "--eval-subset 2000 --full-test --save model.npz", (0,)),
})

# Findings questions 1-5: the baseline recipe (Adam, lr 0.003, batch 128, theta 2), 30 epochs.
FINDINGS = Group(base="--n-epochs 30 --lr 0.003 --eval-subset 2000 --full-test", runs={
    # Q1 hard negatives, Q3 prediction modes (784-500-500)
    "uniform_2x500": ("--layer-sizes 784,500,500", SEEDS),
    "hard_2x500": ("--layer-sizes 784,500,500 --neg-sampling hard", SEEDS),
    # Q2 depth and width at about the same cost per epoch
    "1x1000": ("--layer-sizes 784,1000", SEEDS),
    "3x400": ("--layer-sizes 784,400,400,400", SEEDS),
    "4x350": ("--layer-sizes 784,350,350,350,350", SEEDS),
    "4x350_deeplr0.1": ("--layer-sizes 784,350,350,350,350 --deep-lr-scale 0.1", SEEDS),
    "2x500_deeplr0.1": ("--layer-sizes 784,500,500 --deep-lr-scale 0.1", SEEDS),
    "4x350_sum": ("--layer-sizes 784,350,350,350,350 --logit-scale D --threshold 1", SEEDS),
    # Q4 jitter
    "jitter_2x500": ("--layer-sizes 784,500,500 --jitter 2", SEEDS),
    "jitter_2x500_60ep": ("--layer-sizes 784,500,500 --jitter 2 --n-epochs 60", (0,)),
    "uniform_2x500_60ep": ("--layer-sizes 784,500,500 --n-epochs 60", (0,)),
    # Q5 the best 784-500-500 in 30 epochs: candidates scored on 10K held-out training
    # images (--val-split), then the chosen one once on the test set
    "val_baseline": ("--layer-sizes 784,500,500 --val-split 10000", (0,)),
    "val_sum": ("--layer-sizes 784,500,500 --val-split 10000 --logit-scale D --threshold 1", (0,)),
    "val_sum_cool": ("--layer-sizes 784,500,500 --val-split 10000 --logit-scale D --threshold 1 "
                     "--lr-schedule cooldown", (0,)),
    "val_sum_cool_hf": ("--layer-sizes 784,500,500 --val-split 10000 --logit-scale D --threshold 1 "
                        "--lr-schedule cooldown --neg-sampling hard-first", (0,)),
    "val_sum_cool_hard": ("--layer-sizes 784,500,500 --val-split 10000 --logit-scale D "
                          "--threshold 1 --lr-schedule cooldown --neg-sampling hard", (0,)),
    "val_sum_cool_hf_peer": ("--layer-sizes 784,500,500 --val-split 10000 --logit-scale D "
                             "--threshold 1 --lr-schedule cooldown --neg-sampling hard-first "
                             f"--peer-norm {old_peer(0.03, 500)} --peer-gate relu", (0,)),
    # the recipe chosen on the validation runs above, once on the test set
    "best_2x500": ("--layer-sizes 784,500,500 --logit-scale D --threshold 1 --lr-schedule cooldown",
                   SEEDS),
})

# Tuning for the paper-scale run: 4 x 500 for 10 epochs, scored on the last 10K training
# images, one seed each. The order is the table's.
TUNING_4X500 = Group(
    out="results/{group}/{name}.json",
    base="--layer-sizes 784,500,500,500,500 --n-epochs 10 --val-split 10000 --full-test "
         "--predict-mode all",
    runs={name: (flags, (0,)) for name, flags in {
        "base": "",
        "deeplr0.1": "--deep-lr-scale 0.1",
        "peer0.03": f"--peer-norm {old_peer(0.03, 500)} --peer-gate relu",
        "peer0.3": f"--peer-norm {old_peer(0.3, 500)} --peer-gate relu",
        "cooldown": "--lr-schedule cooldown",
        "lr0.001": "--lr 0.001",
        "hard": "--neg-sampling hard",
        "hard_cool": "--neg-sampling hard --lr-schedule cooldown",
        "hard_cool_lr0.01": "--neg-sampling hard --lr-schedule cooldown --lr 0.01",
        "deeplr0.1_cool": "--deep-lr-scale 0.1 --lr-schedule cooldown",
        "sum_t1": "--logit-scale D --threshold 1",
        "sum_cool": "--logit-scale D --threshold 1 --lr-schedule cooldown",
        "sum_cool_t2": "--logit-scale D --threshold 2 --lr-schedule cooldown",
        "sum_cool_lr0.001": "--logit-scale D --threshold 1 --lr-schedule cooldown --lr 0.001",
        "sum_cool_lr0.01": "--logit-scale D --threshold 1 --lr-schedule cooldown --lr 0.01",
        "hard_cool_sum": "--neg-sampling hard --lr-schedule cooldown --logit-scale D --threshold 1",
        "sum_cool_hardfirst": "--logit-scale D --threshold 1 --lr-schedule cooldown "
                              "--neg-sampling hard-first",
        "sum_cool_peer0.03": "--logit-scale D --threshold 1 --lr-schedule cooldown "
                             f"--peer-norm {old_peer(0.03, 500)} --peer-gate relu",
        "sum_cool_hf_deeplr0.3": "--logit-scale D --threshold 1 --lr-schedule cooldown "
                                 "--neg-sampling hard-first --deep-lr-scale 0.3",
    }.items()})

# The baseline recipe tuned on 4 x 500 (above), at the paper's 4 x 2000 for 60 epochs.
PAPER_FLAGS = ("--layer-sizes 784,2000,2000,2000,2000 --lr 0.003 --logit-scale D --threshold 1 "
               "--neg-sampling hard-first " f"--peer-norm {old_peer(0.03, 2000)} --peer-gate relu "
               "--predict-mode skip-first --eval-subset 1000 --full-test")
PAPER_SCALE = Group(out="results/{name}_seed{seed}.json", checkpoint=True, save=True, runs={
    "paper_4x2000": (f"{PAPER_FLAGS} --n-epochs 60 --lr-schedule cooldown --deep-lr-scale 0.03", (0,)),
})

# One-epoch probes of --deep-lr-scale at 4 x 2000: 10K training images, scored on 2K
# held-out training images (how 0.03 was chosen after the first attempt).
PAPER_PROBE = Group(out="results/{group}/{name}.json", base=f"{PAPER_FLAGS} --n-epochs 1 "
                    "--train-subset 12000 --val-split 2000", runs={
    "s0.03": ("--deep-lr-scale 0.03", (0,)),
    "s0.1": ("--deep-lr-scale 0.1", (0,)),
})

# Findings question 6, which ingredient of Hinton's recipe matters: the full recipe, then
# one change at a time. 4 x 500 for 10 epochs (the budget of the tuning runs above, so
# each costs minutes), scored on the last 10K training images, seed 0.
ABLATION = Group(base="--recipe hinton --layer-sizes 784,500,500,500,500 --n-epochs 10 "
                 "--val-split 10000 --full-test", runs={
    "full": ("", (0,)),
    # Adam in place of smoothed SGD, at the baseline recipe's Adam rate: the recipe's 0.01 is
    # an SGD rate, and Adam at 0.01 killed most deep units in the tuning runs
    # (hard_cool_lr0.01, sum_cool_lr0.01)
    "adam": ("--optimizer adam --lr 0.003", (0,)),
    "raw_input": ("--input-norm none", (0,)),            # raw pixels, not RMS-normalised
    "peer_gated": ("--peer-gate relu", (0,)),            # peer term on active units only
    "no_peer": ("--peer-norm 0", (0,)),                  # no peer normalisation
    "uniform_neg": ("--neg-sampling uniform", (0,)),     # wrong labels drawn uniformly
})

# Hinton's recipe (--recipe hinton: his released code). Add runs here as
# name -> (flags, seeds); each seed writes results/hinton/NAME_sSEED.json, checkpoints to
# runs/hinton/NAME_sSEED.ckpt.npz and keeps its model in runs/hinton/NAME_sSEED.npz. Runs with --val-split are tuning runs (held-out
# training images); the others are scored on the test set and join the paper-scale table.
HINTON = Group(base="--recipe hinton", checkpoint=True, save=True, runs={
    # the paper's setting, and that of Hinton's released code
    "paper_4x2000": ("--layer-sizes 784,2000,2000,2000,2000 --n-epochs 60 --eval-subset 1000 "
                     "--full-test", SEEDS),
    "code_3x1000": ("--layer-sizes 784,1000,1000,1000 --n-epochs 100 --eval-subset 1000 "
                    "--full-test", SEEDS),
    "jitter1_3x1000": ("--layer-sizes 784,1000,1000,1000 --n-epochs 200 --jitter 1 "
                       "--eval-subset 1000 --full-test", (0,)),
    # the same at the paper's 500 epochs, toward its 0.64% (read-out skip-first, fixed before)
    "jitter1_3x1000_500ep": ("--layer-sizes 784,1000,1000,1000 --n-epochs 500 --jitter 1 "
                             "--eval-subset 1000 --full-test", (0,)),
    # how much jitter: 3 x 1000, 30 epochs, on the last 10K training images
    "val_jitter0_3x1000": ("--layer-sizes 784,1000,1000,1000 --n-epochs 30 --val-split 10000 "
                           "--eval-subset 1000 --full-test", (0,)),
    "val_jitter1_3x1000": ("--layer-sizes 784,1000,1000,1000 --n-epochs 30 --val-split 10000 "
                           "--jitter 1 --eval-subset 1000 --full-test", (0,)),
    "val_jitter2_3x1000": ("--layer-sizes 784,1000,1000,1000 --n-epochs 30 --val-split 10000 "
                           "--jitter 2 --eval-subset 1000 --full-test", (0,)),
})

# The earlier NumPy run's last open question: is 784-500-500 capacity-bound or
# augmentation-bound over 500 jittered epochs? Both recipes, with and without jitter, seed 0.
# Hinton's recipe takes the 1 px that the validation split chose at 3 x 1000 (val_jitter*).
JITTER_500 = Group(base="--layer-sizes 784,500,500 --n-epochs 500 --eval-subset 2000 --full-test",
                   checkpoint=True, save=True, runs={
    "baseline": ("--lr 0.003", (0,)),
    "baseline_jitter2": ("--lr 0.003 --jitter 2", (0,)),
    "hinton": ("--recipe hinton", (0,)),
    "hinton_jitter1": ("--recipe hinton --jitter 1", (0,)),
})

GROUPS = {"headline": HEADLINE, "findings": FINDINGS, "tuning_4x500": TUNING_4X500,
          "paper_scale": PAPER_SCALE, "paper_probe": PAPER_PROBE, "ablation": ABLATION,
          "hinton": HINTON, "jitter_500": JITTER_500}


@dataclass(frozen=True)
class Run:
    """One command and the result file it writes, both relative to the repository root."""
    group: str
    entry: str                        # its name in the group (one per seed)
    out: str                          # the result file
    argv: tuple                       # after `python3`, without --checkpoint/--resume/--save/--metrics
    checkpoint: str | None = None
    save: str | None = None           # the model file
    stdout: bool = False              # the result is the command's standard output (a log)
    stop_after_epoch: int | None = None   # Ctrl-C once this epoch's line is out (a stopped run)
    alone: bool = False               # a timing run: by itself, BLAS threads left as they are

    @property
    def stem(self) -> str:
        return Path(self.out).name.rsplit(".", 1)[0]

    @property
    def trains(self) -> bool:
        return self.argv[0] == TRAIN

    @property
    def log(self) -> str:
        return f"runs/{self.group}/{self.stem}.log"

    def command(self, resume=False) -> list:
        argv = ["python3", *self.argv]
        if self.checkpoint:
            argv += ["--checkpoint", self.checkpoint] + (["--resume", self.checkpoint] if resume else [])
        if self.save:
            argv += ["--save", self.save]
        if self.trains and not self.stdout:
            argv += ["--metrics", self.out]
        return argv

    def shell(self) -> str:
        """The command as one line for a shell in the repository root."""
        line = shlex.join(self.command())
        if self.stdout:
            line += f" > {self.out}"
        if self.stop_after_epoch:
            line += f"  # stopped with Ctrl-C after epoch {self.stop_after_epoch}"
        return line

    def folders(self, log=True) -> list:
        """The folders its files go in (and the runner's log, with log=True)."""
        paths = [self.out] + ([self.log] if log else []) + [p for p in (self.checkpoint, self.save) if p]
        if "--save" in self.argv:
            paths.append(self.argv[self.argv.index("--save") + 1])
        return sorted({str(Path(p).parent) for p in paths} - {"."})


def training_runs(group: str, spec: Group):
    for entry, (flags, seeds) in spec.runs.items():
        for seed in seeds:
            out = spec.out.format(group=group, name=entry, seed=seed)
            stem = Path(out).stem
            yield Run(group, entry, out, (TRAIN, *spec.base.split(), *flags.split(), "--seed", str(seed)),
                      f"runs/{group}/{stem}.ckpt.npz" if spec.checkpoint else None,
                      f"runs/{group}/{stem}.npz" if spec.save else None)


def other_runs():
    """Results that are not one training run's metrics."""
    attempt = "results/paper_attempt1_no_deep_lr_scale.log"
    # The first paper-scale attempt, without --deep-lr-scale; stopped after epoch 8, when
    # its deep layers had died (its output is the result).
    yield Run("paper_scale", "paper_attempt1_no_deep_lr_scale", attempt,
              (TRAIN, *PAPER_FLAGS.split(), "--n-epochs", "60", "--lr-schedule", "cooldown",
               "--seed", "0"), "runs/paper_scale/paper_attempt1_no_deep_lr_scale.ckpt.npz",
              stdout=True, stop_after_epoch=8)
    # Findings question 2: how fast the second layer's units die in the first Adam steps.
    for name, flags in (("dead_units_early", ()), ("dead_units_early_deeplr0.1", ("--deep-lr-scale", "0.1"))):
        out = f"results/{name}.json"
        yield Run("dead_units", name, out, ("experiments/dead_units_early.py", *flags, "--json", out))
    # Benchmarks (README "Performance"): timings, so each runs alone.
    for name, flags in (("bench_784-500-500", ()),
                        ("bench_4x2000", ("--layer-sizes", "784,2000,2000,2000,2000",
                                          "--train-subset", "10000", "--warmup", "1"))):
        out = f"results/bench/{name}.json"
        yield Run("bench", name, out, ("benchmarks/bench_ff.py", *flags, "--json", out), alone=True)
    # Interleaved A/B epochs (README "Performance"): against the module before issue 15
    # (git show 75f9820:ff_label_in_input.py > runs/ff_75f9820.py), and FF's schedules.
    old = ("--old", "runs/ff_75f9820.py")
    schedules = ("--variant", "--schedule batch", "--variant", "--schedule layer-update",
                 "--variant", "--schedule layer-major --group-batches 8")
    for name, flags in (("ab_784-500-500", old + ("--train-subset", "20000")),
                        ("ab_hinton_3x1000", old + ("--recipe", "hinton", "--layer-sizes", "784,1000,1000,1000",
                                                    "--train-subset", "10000")),
                        ("schedules_784-500-500", schedules + ("--train-subset", "20000")),
                        ("schedules_4x2000", schedules + ("--layer-sizes", "784,2000,2000,2000,2000",
                                                          "--train-subset", "5000", "--pairs", "3"))):
        out = f"results/bench/{name}.json"
        yield Run("bench", name, out, ("benchmarks/ab_epoch.py", *flags, "--json", out), alone=True)
    # The backprop baseline (README "Does FF move less data than backprop?").
    for name, flags, seeds in (
            ("bp_784-500-500", "--layer-sizes 784,500,500 --n-epochs 30 --batch-size 128", SEEDS),
            ("bp_4x2000", "--layer-sizes 784,2000,2000,2000,2000 --n-epochs 30 --batch-size 100", (0,)),
            ("bp_4x2000_cooldown", "--layer-sizes 784,2000,2000,2000,2000 --n-epochs 20 "
                                   "--batch-size 100 --lr-schedule cooldown", SEEDS)):
        for seed in seeds:
            stem = f"{name}_s{seed}"
            out = f"results/backprop/{stem}.json"
            yield Run("backprop", stem, out, ("experiments/backprop.py", *flags.split(), "--optimizer",
                                              "adam", "--lr", "0.001", "--seed", str(seed), "--metrics", out),
                      f"runs/backprop/{stem}.ckpt.npz")
    # ByteDMD of the training steps (experiments/data_movement.py).
    for group in ("main", "sweep_depth", "sweep_width", "sweep_batch", "test_time", "schedules",
                  "schedules_depth"):
        out = f"results/data_movement/{group}.json"
        yield Run("data_movement", group, out, ("experiments/data_movement.py", "--only", group))


def all_runs() -> list:
    runs = [r for g, spec in GROUPS.items() for r in training_runs(g, spec)] + list(other_runs())
    order = list(GROUPS) + ["dead_units", "bench", "backprop", "data_movement"]
    return sorted(runs, key=lambda r: order.index(r.group))      # stable: entry order kept


RUNS = all_runs()
GROUP_NAMES = tuple(dict.fromkeys(r.group for r in RUNS))


def unknown_names(runs, only) -> list:
    """The names in `only` that match no run."""
    return [n for n in only or () if not any(matches(r, n) for r in runs)]


def select(runs, groups=None, only=None) -> list:
    """The runs of the named groups and/or named entries ("entry", "stem", "group/entry")."""
    unknown = unknown_names(runs, only)
    if unknown:
        raise SystemExit(f"error: no run named {', '.join(unknown)} (see --list)")
    return [r for r in runs if (groups is None or r.group in groups)
            and (only is None or any(matches(r, n) for n in only))]


def matches(run: Run, name: str) -> bool:
    return name in (run.entry, run.stem, f"{run.group}/{run.entry}", f"{run.group}/{run.stem}")


# ----------------------------------------------------------------------------
# Running.
# ----------------------------------------------------------------------------

def execute(run: Run, threads=None, root: Path = ROOT, python=sys.executable) -> bool:
    """Run one command in `root`; True when its result file is there afterwards."""
    for folder in run.folders():
        (root / folder).mkdir(parents=True, exist_ok=True)
    resume = bool(run.checkpoint) and not run.stdout and (root / run.checkpoint).exists()
    argv = [python, *run.command(resume)[1:]]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if threads:
        env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    t0 = time.time()
    with open(root / run.log, "a" if resume else "w") as log:   # a resumed run keeps its earlier lines
        if resume:
            log.write(f"--- resumed from {run.checkpoint} ---\n")
            log.flush()
        if run.stdout:
            part = root / (run.out + ".part")
            with open(part, "w") as out:
                rc = run_to(argv, root, env, out, log, run.stop_after_epoch)
            if rc == 0:
                part.replace(root / run.out)
        else:
            rc = subprocess.run(argv, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    ok = rc == 0 and (root / run.out).exists()
    how = "resumed, " if resume else ""
    if ok:
        print(f"{run.group}/{run.stem}: ok ({how}{time.time() - t0:.0f} s)", flush=True)
    else:
        tail = (root / run.log).read_text().strip().splitlines()[-1:] or ["no output"]
        print(f"{run.group}/{run.stem}: FAILED, exit {rc} ({how}{time.time() - t0:.0f} s): "
              f"{tail[0]} (log: {run.log})", flush=True)
    return ok


def run_to(argv, root, env, out, err, stop_after_epoch=None) -> int:
    """Run argv with its standard output copied to `out`; with stop_after_epoch, send it
    Ctrl-C (SIGINT) once that epoch's progress line is out. Returns the exit status, 0
    for a run stopped as planned (it exits 130 after saving its checkpoint)."""
    # a run that must stop gets Ctrl-C's default handling even when the runner itself was
    # started with SIGINT ignored (a background job): else the signal would be lost
    preexec = (lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if stop_after_epoch else None
    proc = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
                            preexec_fn=preexec)
    stop = re.compile(rf"epoch\s+{stop_after_epoch}/") if stop_after_epoch else None
    stopped = False
    for line in proc.stdout:
        out.write(line)
        if stop and not stopped and stop.match(line):
            proc.send_signal(signal.SIGINT)
            stopped = True
    rc = proc.wait()
    return 0 if stopped and rc == 130 else rc


def run_all(todo: list, jobs=1, threads=None, root: Path = ROOT) -> bool:
    """Run `todo`, `jobs` at a time, then the timing runs one by one; True if all went well."""
    together = [r for r in todo if not r.alone]
    ok = True
    if together:
        blas = threads or (1 if jobs == 2 else None)
        with ThreadPoolExecutor(jobs) as pool:
            ok = all(list(pool.map(lambda r: execute(r, blas, root), together)))
    for run in todo:
        if run.alone:
            ok = execute(run, threads, root) and ok
    return ok


def listing(runs: list, root: Path = ROOT) -> str:
    """The commands, one a line, after the mkdir they need; runnable from the repo root."""
    folders = {f for r in runs for f in r.folders(log=False)}
    folders = sorted(f for f in folders if not any(g.startswith(f + "/") for g in folders))
    lines = ["# from the repository root; a run with --checkpoint continues with --resume PATH",
             f"mkdir -p {' '.join(folders)}"]
    for group in dict.fromkeys(r.group for r in runs):
        members = [r for r in runs if r.group == group]
        missing = sum(not (root / r.out).exists() for r in members)
        lines.append(f"# {group}: {len(members)} run{'s' * (len(members) != 1)}, {missing} missing")
        lines += [r.shell() for r in members]
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# Reading results. Configs of JSON written before the redesign are translated to today's
# fields as the flags above are (current_config), so one set of table functions reads both.
# ----------------------------------------------------------------------------

FIELDS = tuple(f.name for f in dataclasses.fields(ff.Config))
EVAL_ONLY = tuple(f.name for f in dataclasses.fields(ff.Config) if f.metadata["eval_only"])
SETUP = ("recipe", "seed", "n_epochs", "layer_sizes", "train_subset", "val_split") + EVAL_ONLY


def recipe_defaults(recipe: str) -> dict:
    return {**dataclasses.asdict(ff.Config()), **ff.RECIPES[recipe], "recipe": recipe}


def current_config(raw: dict) -> dict:
    """A metrics JSON's config in today's Config fields (old ones translated, see above)."""
    if "recipe" in raw:
        return {**recipe_defaults(raw["recipe"]), **{k: raw[k] for k in FIELDS if k in raw}}
    cfg = recipe_defaults("baseline")
    cfg.update({k: v for k, v in raw.items() if k in FIELDS})
    cfg["logit_scale"] = {"mean": "1", "sum": "D"}[raw.get("goodness", "mean")]
    cfg["jitter"] = 2 if raw.get("jitter") else 0
    if raw.get("peer_norm"):
        widths = set(raw["layer_sizes"][1:])
        assert len(widths) == 1, "old --peer-norm runs have equal widths"
        cfg["peer_norm"] = float(old_peer(raw["peer_norm"], widths.pop()))
        cfg["peer_gate"] = "relu"
    return cfg


def flag_words(key, value) -> list:
    flag = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return [flag] if value else []
    if isinstance(value, list):
        return [flag, ",".join(map(str, value))]
    return [flag, str(value)]


def changed_flags(cfg: dict, ref: dict, skip=()) -> str:
    """The flags, in Config order, on which cfg differs from ref."""
    return " ".join(w for k in FIELDS if k not in skip and cfg[k] != ref[k]
                    for w in flag_words(k, cfg[k]))


def extra_flags(cfg: dict) -> str:
    """The training flags that differ from cfg's recipe (setup and read-out aside)."""
    return changed_flags(cfg, recipe_defaults(cfg["recipe"]), SETUP)


def recipe_label(cfg: dict) -> str:
    """`recipe`, and its changed training flags (setup and read-out aside)."""
    extra = extra_flags(cfg)
    return f"`{cfg['recipe']}`" + (f" + `{extra}`" if extra else "")


def command_from_config(raw: dict) -> str:
    """A command that gives this config, for JSON written before "command" was recorded."""
    cfg = current_config(raw)
    ref = recipe_defaults(cfg["recipe"])
    words = flag_words("recipe", cfg["recipe"]) if cfg["recipe"] != "baseline" else []
    for k in FIELDS:
        if k != "recipe" and (k in ("seed", "n_epochs", "layer_sizes") or cfg[k] != ref[k]):
            words += flag_words(k, cfg[k])
    for k in ("checkpoint", "save", "metrics"):
        if raw.get(k):
            words += [f"--{k}", raw[k]]
    return " ".join(["python3", TRAIN] + words)


def read_json(path) -> dict:
    return json.loads((ROOT / path).read_text())


def runs_of(group: str, entry: str) -> list:
    return [r for r in RUNS if r.group == group and r.entry == entry]


def load(name: str, group: str = "findings") -> list:
    """The metrics of every finished seed of an entry."""
    return [read_json(r.out) for r in runs_of(group, name) if (ROOT / r.out).exists()]


def existing(group: str, entries=None) -> list:
    return [r.out for r in RUNS if r.group == group and (entries is None or r.entry in entries)
            and (ROOT / r.out).exists()]


# ----------------------------------------------------------------------------
# Tables. Each returns a stable string made from the JSON alone.
# ----------------------------------------------------------------------------

def mean_std(values, scale=100.0, digits=2):
    """'mean ± std' of the values (just the value for one), as percentages by default."""
    values = [v * scale for v in values]
    if any(v != v for v in values):                  # NaN: the mode does not exist here
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def error_pct(values):
    """Test error in %, of accuracies: '1.78' for one seed, '1.50 ± 0.05' for more."""
    errors = [100 * (1 - v) for v in values]
    if len(errors) == 1:
        return f"{errors[0]:.2f}"
    return f"{statistics.mean(errors):.2f} ± {statistics.stdev(errors):.2f}"


def mean_dead(ms) -> str:
    return " / ".join(f"{statistics.mean(m['dead_units'][l] for m in ms):.0f}"
                      for l in range(len(ms[0]["dead_units"])))


def hidden(sizes) -> str:
    widths = sizes[1:]
    return f"{len(widths)} x {widths[0]}" if len(set(widths)) == 1 else "-".join(map(str, widths))


def row(name):
    ms = load(name)
    if not ms:
        return None
    modes = {m: mean_std([x["prediction_modes"].get(m, float("nan")) for x in ms])
             for m in ("all", "first", "skip-first")}
    return {"name": name, "sizes": hidden(ms[0]["config"]["layer_sizes"]), "modes": modes,
            "dead": mean_dead(ms), "n": len(ms), "epochs": ms[0]["config"]["n_epochs"],
            "secs": f"{statistics.mean(x['train_seconds'] for x in ms):.0f}"}


FINDINGS_TABLES = {
    "q1": ("uniform_2x500", "hard_2x500"),
    "q2": ("1x1000", "uniform_2x500", "3x400", "4x350", "2x500_deeplr0.1", "4x350_deeplr0.1",
           "4x350_sum"),
    "q4": ("uniform_2x500", "jitter_2x500", "uniform_2x500_60ep", "jitter_2x500_60ep"),
    "q5_val": ("val_baseline", "val_sum", "val_sum_cool", "val_sum_cool_hf", "val_sum_cool_hard",
               "val_sum_cool_hf_peer"),
    "q5": ("best_2x500",),            # the baseline's uniform_2x500 is in the q1 table
}


def table(key):
    """A Findings table (questions 1-5): one row per entry, mean ± sd over its n seeds."""
    held_out = "val." if key.endswith("_val") else "test"
    lines = [f"| run | hidden | epochs | n | {held_out} acc. all (%) | first (%) | skip-first (%) | "
             "dead units per layer | train s |", "|---|---|---|---|---|---|---|---|---|"]
    for name in FINDINGS_TABLES[key]:
        r = row(name)
        if r:
            lines.append(f"| `{name}` | {r['sizes']} | {r['epochs']} | {r['n']} | {r['modes']['all']} | "
                         f"{r['modes']['first']} | {r['modes']['skip-first']} | {r['dead']} | {r['secs']} |")
    return "\n".join(lines)


def tuning_table():
    """The paper-scale tuning runs (4 x 500, 10 epochs, 10K validation images), one seed
    each; the flags in today's spelling (see the note on old runs)."""
    lines = ["| run | flags beyond the baseline recipe | val. all (%) | first (%) | skip-first (%) | "
             "dead units per layer | train s |", "|---|---|---|---|---|---|---|"]
    base = current_config(read_json("results/tuning_4x500/base.json")["config"])
    for path in existing("tuning_4x500"):
        m = read_json(path)
        flags = changed_flags(current_config(m["config"]), base)
        modes = m["prediction_modes"]
        lines.append(f"| `{Path(path).stem}` | `{flags or '(none)'}` | {100 * modes['all']:.2f} | "
                     f"{100 * modes['first']:.2f} | {100 * modes['skip-first']:.2f} | "
                     f"{' / '.join(map(str, m['dead_units']))} | {m['train_seconds']:.0f} |")
    return "\n".join(lines)


def headline_table():
    """The headline run: its command, accuracy, every read-out, dead units, time."""
    (path,) = existing("headline")
    m = read_json(path)
    command = m.get("command") or command_from_config(m["config"])
    modes = ", ".join(f"`{k}` {100 * v:.2f}%" for k, v in m["prediction_modes"].items())
    widths = " / ".join(map(str, m["layer_widths"]))
    return "\n".join([
        f"| headline run | `{path}` |", "|---|---|",
        f"| command | `{command}` |",
        f"| {m['evaluated_on']} accuracy, `{m['predict_mode']}` read-out | "
        f"{m['test_correct']} / {m['test_total']} ({100 * m['test_accuracy']:.2f}%) |",
        f"| every read-out | {modes} |",
        f"| dead units per layer (of {widths}) | {' / '.join(map(str, m['dead_units']))} |",
        f"| training time | {m['train_seconds']:.1f} s |"])


# Published results at paper scale (not measured here): who, recipe, hidden layers,
# epochs, read-out, test error (%), source.
LITERATURE = (
    ("Hinton (2022)", "the paper's", "4 x 2000", 60, "skip-first", "1.36",
     "arXiv:2212.13345, sec. 3.3"),
    ("Hinton's released Matlab code", "his code", "3 x 1000", 100, "not stated", "about 1.47",
     "as reported by loeweX/Forward-Forward, README"),
    ("loeweX/Forward-Forward (PyTorch)", "his code, ported", "3 x 1000", 100, "not stated", "1.45",
     "github.com/loeweX/Forward-Forward, README and config.yaml"),
    ("Hinton (2022), jittered images", "the paper's", "", 500, "", "0.64", "arXiv:2212.13345, sec. 3.3"),
    ("jesper-olsen/forward-forward-rs (Rust)", "his code + 1 px shifts, 10% dropout", "3 x 1000", 200,
     "softmax", "0.69", "its README"),
)


def paper_scale_entries() -> list:
    """(group, entry) of the runs at paper scale scored on the test set: the baseline recipe's
    4 x 2000 and every test-set run of the hinton group."""
    entries = [("paper_scale", e) for e in PAPER_SCALE.runs]
    entries += [("hinton", e) for e in HINTON.runs if "--val-split" not in HINTON.runs[e][0]]
    return [(g, e) for g, e in entries if load(e, g)]


def paper_scale_table():
    """Our paper-scale runs against the published numbers."""
    lines = ["| run | recipe | hidden layers | epochs | seeds | read-out | test error (%) | "
             "train time per seed | source |", "|---|---|---|---|---|---|---|---|---|"]
    for group, entry in paper_scale_entries():
        ms = load(entry, group)
        cfg = current_config(ms[0]["config"])
        mode = ms[0]["predict_mode"]
        source = (runs_of(group, entry)[0].out if len(ms) == 1 else
                  GROUPS[group].out.format(group=group, name=entry, seed="*"))
        lines.append(f"| `{group}/{entry}` | {recipe_label(cfg)} | {hidden(cfg['layer_sizes'])} | "
                     f"{cfg['n_epochs']} | {', '.join(str(m['config']['seed']) for m in ms)} | "
                     f"`{mode}` | {error_pct([m['prediction_modes'][mode] for m in ms])} | "
                     f"{statistics.mean(m['train_seconds'] for m in ms) / 60:.1f} min | `{source}` |")
    for who, recipe, layers, epochs, mode, error, source in LITERATURE:
        lines.append(f"| {who} | {recipe} | {layers} | {epochs} | | {mode} | {error} | | {source} |")
    return "\n".join(lines)


def readout_errors(ms) -> list:
    return [error_pct([m["prediction_modes"][k] for m in ms]) if k in ms[0]["prediction_modes"]
            else "n/a" for k in ff.READOUTS]


def hinton_table():
    """Every run of Hinton's recipe: error of each read-out on its held-out set."""
    columns = (["run", "hidden", "epochs", "extra flags", "scored on", "seeds"]
               + [f"{k} error (%)" for k in ff.READOUTS] + ["dead units per layer", "train s"])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for entry in HINTON.runs:
        ms = load(entry, "hinton")
        if not ms:
            continue
        cfg = current_config(ms[0]["config"])
        flags = changed_flags(cfg, recipe_defaults(cfg["recipe"]),
                              SETUP[:3] + ("layer_sizes", "val_split") + EVAL_ONLY)
        lines.append(f"| `{entry}` | {hidden(cfg['layer_sizes'])} | {cfg['n_epochs']} | "
                     f"{f'`{flags}`' if flags else ''} | {ms[0]['evaluated_on']} "
                     f"({ms[0]['test_total']}) | {', '.join(str(m['config']['seed']) for m in ms)} | "
                     + " | ".join(readout_errors(ms)) + f" | {mean_dead(ms)} | "
                     f"{statistics.mean(m['train_seconds'] for m in ms):.0f} |")
    return "\n".join(lines)


def ablation_table():
    """Findings question 6: Hinton's recipe at 4 x 500, one change at a time, and the
    Adam recipe's untuned and best runs at the same size, budget and split for reference."""
    lines = ["| run | change from the full recipe | val. error `skip-first` (%) | `all` (%) | "
             "`softmax` (%) | dead units per layer | train s |", "|---|---|---|---|---|---|---|"]
    rows = [(f"`{e}`", load(e, "ablation")) for e in ABLATION.runs]
    rows += [(f"Adam recipe `tuning_4x500/{stem}`", [read_json(ROOT / f"results/tuning_4x500/{stem}.json")])
             for stem in ("base", "sum_cool_hardfirst") if (ROOT / f"results/tuning_4x500/{stem}.json").exists()]
    for label, ms in rows:
        if not ms:
            continue
        cfg = current_config(ms[0]["config"])
        if label.startswith("`"):
            change = extra_flags(cfg)
            change = f"`{change}`" if change else "(none)"
        else:
            change = "`" + (changed_flags(cfg, recipe_defaults("baseline"), SETUP) or "--recipe baseline") + "`"
        errors = [error_pct([m["prediction_modes"][k] for m in ms]) if k in ms[0]["prediction_modes"]
                  else "n/a" for k in ("skip-first", "all", "softmax")]
        lines.append(f"| {label} | {change} | " + " | ".join(errors) + f" | {mean_dead(ms)} | "
                     f"{statistics.mean(m['train_seconds'] for m in ms):.0f} |")
    return "\n".join(lines)


BENCH_ROWS = (  # label, key, format (the JSON holds more: layer-0 prediction, RSS, ...)
    ("plain NumPy epoch (reference)", "reference_epoch_s", "{:.3f}"),
    ("module epoch", "module_epoch_s", "{:.3f}"),
    ("floor: the step's products + one optimiser-state pass", "floor_s", "{:.3f}"),
    ("predict 10K x 10 labels: naive / module", ("predict_naive_s", "predict_module_s"), "{:.3f} / {:.3f}"),
    ("plain / module epoch", "ratio_reference_over_module", "{:.2f}x"),
    ("module epoch / floor", "ratio_module_over_floor", "{:.2f}x"),
    ("prediction naive / module (multiply-add bound)",
     ("ratio_predict_naive_over_module", "predict_flop_ratio_naive_over_module"), "{:.2f}x ({:.2f}x)"),
)


def ab_table():
    """results/bench/ab_*.json and schedules_*.json: interleaved epochs, median seconds."""
    lines = ["| comparison | flags of all | images | median epoch (s) | ratio to the first | CPU, BLAS threads |",
             "|---|---|---|---|---|---|"]
    for path in existing("bench"):
        if not Path(path).name.startswith(("ab_", "schedules_")):
            continue
        b = read_json(path)
        medians, ratios = b["median_s"], b["ratio_to_first"]
        seconds = " / ".join(f"{name}: {t:.2f}" for name, t in medians.items())
        relative = " / ".join(f"{ratios[name]:.3f}" for name in medians)
        machine = b["machine"]
        lines.append(f"| `{Path(path).stem}` | `{' '.join(b['flags'])}` | {b['n_images']} | {seconds} "
                     f"| {relative} | {machine['cpu']}, {machine['OPENBLAS_NUM_THREADS'] or 'default'} |")
    return "\n".join(lines)


def bench_table():
    """results/bench/*.json side by side, smallest network first."""
    benches = sorted((read_json(p) for p in existing("bench") if Path(p).name.startswith("bench_")),
                     key=lambda b: ff.n_params(b["layer_sizes"]))
    head = [f"{'-'.join(map(str, b['layer_sizes']))}, {b['n_images'] // 1000}K images" for b in benches]
    lines = ["| median seconds | " + " | ".join(head) + " |", "|---" * (1 + len(benches)) + "|"]
    for label, keys, fmt in BENCH_ROWS:
        keys = (keys,) if isinstance(keys, str) else keys
        cells = [fmt.format(*(b[k] for k in keys)) if all(k in b for k in keys) else "n/a"
                 for b in benches]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    machine = [b.get("machine", {}) for b in benches]
    lines.append("| CPU (cores) | " + " | ".join(f"{m.get('cpu', 'n/a')} ({m.get('cores', '?')})"
                                                  for m in machine) + " |")
    lines.append("| Python, NumPy | " + " | ".join(f"{m.get('python', 'n/a')}, {m.get('numpy', 'n/a')}"
                                                   for m in machine) + " |")
    return "\n".join(lines)


FF_REFERENCE = {   # the FF run each backprop run is held against: (group, entry, read-out, recipe)
    (784, 500, 500): ("headline", "headline", "all", "baseline"),
    (784, 2000, 2000, 2000, 2000): ("hinton", "paper_4x2000", "skip-first", "hinton"),
}


def ff_reference(sizes):
    """(label, mean test error %, epochs, steps per epoch) of the FF run a net is held against."""
    group, entry, mode, _ = FF_REFERENCE[tuple(sizes)]
    ms = [read_json(p) for p in existing(group)] if group == "headline" else load(entry, group)
    errors = [100 * (1 - m["prediction_modes"][mode]) for m in ms]
    cfg = ms[0]["config"]
    steps = -(-(ff.N_TRAIN - cfg.get("val_split", 0)) // cfg["batch_size"])
    return f"`{group}/{entry}`", sum(errors) / len(errors), cfg["n_epochs"], steps


def backprop_table():
    """results/backprop/*.json: the backprop baseline against FF's result at the same size."""
    lines = ["| run | hidden | optimiser | epochs | test error (%) per epoch 1 / 5 / 10 / last | best (epoch) "
             "| FF run, its error | first backprop epoch at or below it | s per epoch (CPU, BLAS threads) |",
             "|---" * 9 + "|"]
    for path in finished_backprop():
        b = read_json(path)
        cfg, errs = b["config"], b["history"]["test_error"]
        label, ff_err, _, _ = ff_reference(cfg["layer_sizes"])
        reached = next((i + 1 for i, e in enumerate(errs) if e <= ff_err + 1e-9), None)
        best = min(range(len(errs)), key=errs.__getitem__)
        picks = " / ".join(f"{errs[i - 1]:.2f}" for i in (1, 5, 10, len(errs)) if i <= len(errs))
        seconds = sorted(b["history"]["seconds"])[len(errs) // 2]
        threads = b.get("blas_threads", {})
        threads = threads.get("OPENBLAS_NUM_THREADS") if isinstance(threads, dict) else threads
        lines.append(f"| `{Path(path).stem}` | {hidden(cfg['layer_sizes'])} | {cfg['optimizer']} lr "
                     f"{cfg['lr']} {cfg.get('lr_schedule', 'constant')}, batch {cfg['batch_size']} | {len(errs)} | {picks} | {errs[best]:.2f} "
                     f"({best + 1}) | {label}, {ff_err:.2f} | {reached or 'not reached'} | {seconds:.1f} "
                     f"({b['cpu']}, {threads or 'default'}) |")
    return "\n".join(lines)


def finished_backprop() -> list:
    """The backprop results of complete runs (older runs wrote their JSON every epoch)."""
    return [p for p in existing("backprop")
            if read_json(p)["epochs_done"] == read_json(p)["config"]["n_epochs"]]


def dm_points(group):
    path = ROOT / f"results/data_movement/{group}.json"
    return read_json(path)["points"] if path.exists() else []


def net_label(p):
    return f"{hidden(p['layer_sizes'])}, B {p['batch_size']}, {p['recipe']}"


def data_movement_table():
    """ByteDMD per training step, FF over backprop: the main points, with the tiled model and
    FF's schedules."""
    schedules = {(tuple(q["layer_sizes"]), q["batch_size"], q["recipe"]): q for q in dm_points("schedules")}
    lines = ["| net, batch, recipe | FF per step | backprop per step | FF / BP | without the optimiser update "
             "| tiled GEMMs, T = 512 / 128 / 32 | FF layer-update / BP | FF layer-major / BP | peak live bytes FF / BP |",
             "|---" * 9 + "|"]
    for p in dm_points("main"):
        q = schedules.get((tuple(p["layer_sizes"]), p["batch_size"], p["recipe"]), {})
        tiled = " / ".join(f"{p['ff_over_bp_tiled'][t]:.2f}" for t in sorted(p["ff_over_bp_tiled"], key=int, reverse=True))
        major = f"{q['layer-major']['ff_over_bp']:.2f}" if "layer-major" in q else "n/a (negatives from above)"
        update = f"{q['layer-update']['ff_over_bp']:.2f}" if "layer-update" in q else "n/a"
        lines.append(f"| {net_label(p)} | {p['ff']['total']:.3g} | {p['bp']['total']:.3g} | {p['ff_over_bp']:.2f} "
                     f"| {p['not_update_ff_over_bp']:.2f} | {tiled} | {update} | {major} | {p['peak_live_ff_over_bp']:.2f} |")
    return "\n".join(lines)


KINDS = ("weights", "optimizer", "grads", "activations", "data")


def data_movement_kinds_table():
    """Where the cost goes: share of each kind of buffer and of each layer, FF and backprop."""
    lines = ["| net, batch, recipe | method | " + " | ".join(KINDS) + " | per layer (0, 1, ...; head or output last) |",
             "|---" * (3 + len(KINDS)) + "|"]
    for p in dm_points("main"):
        for method in ("ff", "bp"):
            m = p[method]
            total = m["total"]
            kinds = " | ".join(f"{100 * m['per_kind'].get(k, 0) / total:.0f}%" for k in KINDS)
            layers = sorted((k for k in m["per_layer"] if k != "None"), key=lambda k: (not k.isdigit(), k.zfill(3)))
            per_layer = " / ".join(f"{100 * m['per_layer'][k] / total:.0f}" for k in layers)
            lines.append(f"| {net_label(p)} | {'FF' if method == 'ff' else 'backprop'} | {kinds} | {per_layer} |")
    return "\n".join(lines)


def data_movement_sweep_table():
    """FF / backprop per step as depth, width and batch move (batch schedule)."""
    lines = ["| sweep | net, batch | baseline FF / BP | hinton FF / BP | baseline without update | hinton without update |",
             "|---" * 6 + "|"]
    for name in ("depth", "width", "batch"):
        points = dm_points(f"sweep_{name}")
        keys = list(dict.fromkeys((tuple(p["layer_sizes"]), p["batch_size"]) for p in points))
        for sizes, batch in keys:
            by = {p["recipe"]: p for p in points if (tuple(p["layer_sizes"]), p["batch_size"]) == (sizes, batch)}
            cells = [f"{by[r]['ff_over_bp']:.2f}" if r in by else "n/a" for r in ("baseline", "hinton")]
            cells += [f"{by[r]['not_update_ff_over_bp']:.2f}" if r in by else "n/a" for r in ("baseline", "hinton")]
            lines.append(f"| {name} | {hidden(list(sizes))}, B {batch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def data_movement_run_table():
    """Per training run to FF's test error: each method's ByteDMD per step (its own optimiser)
    times its steps, with backprop's epochs as measured."""
    lines = ["| net | FF run: epochs x steps, test error | backprop run: first epoch at or below it | "
             "FF step / this backprop's step | FF / BP per run |", "|---" * 5 + "|"]
    points = {(tuple(p["layer_sizes"]), p["batch_size"], p["recipe"]): p for p in dm_points("main")}
    for path in finished_backprop():
        b = read_json(path)
        sizes, bp_batch = tuple(b["config"]["layer_sizes"]), b["config"]["batch_size"]
        group, entry, _, ff_recipe = FF_REFERENCE[sizes]
        label, ff_err, ff_epochs, ff_steps = ff_reference(sizes)
        ff_batch = -(-ff.N_TRAIN // ff_steps)
        # the traces price backprop with the FF recipe's optimiser: Adam in baseline, SGD in hinton
        bp_recipe = "baseline" if b["config"]["optimizer"] == "adam" else "hinton"
        ff_point, bp_point = points.get((sizes, ff_batch, ff_recipe)), points.get((sizes, bp_batch, bp_recipe))
        if ff_point is None or bp_point is None:
            continue
        per_step = ff_point["ff"]["total"] / bp_point["bp"]["total"]
        errs = b["history"]["test_error"]
        reached = next((i + 1 for i, e in enumerate(errs) if e <= ff_err + 1e-9), None)
        bp_steps = -(-ff.N_TRAIN // bp_batch)
        epochs = reached or len(errs)
        ratio = per_step * ff_epochs * ff_steps / (epochs * bp_steps)
        if reached:
            bp, run = f"`{Path(path).stem}` ({b['config']['optimizer']}): epoch {reached}", f"{ratio:.1f}"
        else:
            bp = f"`{Path(path).stem}` ({b['config']['optimizer']}): not in {len(errs)} epochs (best {min(errs):.2f}%)"
            run = f"no equal-error run; over its {len(errs)} epochs: {ratio:.1f}"
        lines.append(f"| {hidden(list(sizes))} ({ff_recipe} FF) | {label}: {ff_epochs} x {ff_steps}, {ff_err:.2f}% "
                     f"| {bp} | {per_step:.2f} | {run} |")
    return "\n".join(lines)


def data_movement_test_table():
    """Test time: one call of each read-out on 1000 images, over backprop's forward pass."""
    lines = ["| net, recipe | FF 10-label goodness / BP forward | FF softmax head / BP forward |", "|---" * 3 + "|"]
    for p in dm_points("test_time"):
        head = f"{p['ff_softmax_over_bp']:.2f}" if "ff_softmax_over_bp" in p else "n/a (no head)"
        lines.append(f"| {hidden(p['layer_sizes'])}, {p['recipe']} | {p['ff_goodness_over_bp']:.1f} | {head} |")
    return "\n".join(lines)


def summary_table():
    """The README's results at a glance, each row from its JSON, linking to its section."""
    rows = []
    (head,) = [read_json(p) for p in existing("headline")]
    rows.append(("784-500-500, 30 epochs, the baseline recipe (headline)",
                 f"{100 * head['test_accuracy']:.2f}% test accuracy, seed 0", "#headline-run"))
    best = load("best_2x500")
    if best:
        rows.append(("best 784-500-500 in 30 epochs (`--logit-scale D --threshold 1 --lr-schedule cooldown`)",
                     f"{mean_std([m['test_accuracy'] for m in best])}% test accuracy, seeds 0-2",
                     "RESULTS.md#5-the-best-784-500-500-in-30-epochs"))
    for group, entry in paper_scale_entries():
        ms = load(entry, group)
        cfg = current_config(ms[0]["config"])
        mode = ms[0]["predict_mode"]
        extra = extra_flags(cfg) if group == "hinton" else ""      # the baseline's list is in its table
        rows.append((f"{hidden(cfg['layer_sizes'])}, {cfg['n_epochs']} epochs, {cfg['recipe']} recipe"
                     f"{f' `{extra}`' if extra else ''} (`{group}/{entry}`)",
                     f"{error_pct([m['prediction_modes'][mode] for m in ms])}% test error, `{mode}` "
                     f"read-out, seed{'s' if len(ms) > 1 else ''} {', '.join(str(m['config']['seed']) for m in ms)}",
                     "#paper-scale"))
    for b in sorted((read_json(p) for p in existing("bench") if Path(p).name.startswith("bench_")), key=lambda b: ff.n_params(b["layer_sizes"])):
        rows.append((f"speed, {'-'.join(map(str, b['layer_sizes']))} epoch ({b['machine']['cpu']})",
                     f"{b['ratio_module_over_floor']:.2f}x this machine's floor, "
                     f"{b['ratio_reference_over_module']:.2f}x faster than plain NumPy", "#performance"))
    for path in finished_backprop():
        b = read_json(path)
        cfg, errs = b["config"], b["history"]["test_error"]
        label, ff_err, _, _ = ff_reference(cfg["layer_sizes"])
        reached = next((i + 1 for i, e in enumerate(errs) if e <= ff_err + 1e-9), None)
        rows.append((f"backprop baseline, {hidden(cfg['layer_sizes'])}, {len(errs)} epochs ({cfg['optimizer']}, "
                     f"{cfg.get('lr_schedule', 'constant')} lr)",
                     f"{errs[-1]:.2f}% test error (best {min(errs):.2f}%); FF's {ff_err:.2f}% "
                     + (f"first reached in epoch {reached}" if reached else "not reached"),
                     "#does-ff-move-less-data-than-backprop"))
    main = dm_points("main")
    if main:
        ratios = [p["ff_over_bp"] for p in main]
        majors = [q["layer-major"]["ff_over_bp"] for q in dm_points("schedules") if "layer-major" in q]
        rows.append(("data movement per training step, FF / backprop (ByteDMD)",
                     f"{min(ratios):.2f}-{max(ratios):.2f} in batch order"
                     + (f"; down to {min(majors):.2f} layer-major" if majors else ""),
                     "#does-ff-move-less-data-than-backprop"))
    lines = ["| what | result | details |", "|---|---|---|"]
    lines += [f"| {what} | {result} | [details]({link}) |" for what, result, link in rows]
    return "\n".join(lines)


def findings_sources(key):
    return lambda: [p for name in FINDINGS_TABLES[key] for p in existing("findings", [name])]


# name -> (render, the result files it reads); a table is rendered when it has any
TABLES = {
    "summary": (summary_table, lambda: existing("headline")),
    **{key: (lambda key=key: table(key), findings_sources(key)) for key in FINDINGS_TABLES},
    "headline": (headline_table, lambda: existing("headline")),
    "paper_scale": (paper_scale_table, lambda: [r.out for g, e in paper_scale_entries()
                                                for r in runs_of(g, e) if (ROOT / r.out).exists()]),
    "hinton": (hinton_table, lambda: existing("hinton")),
    "ablation": (ablation_table, lambda: existing("ablation")),
    "bench": (bench_table, lambda: [p for p in existing("bench") if Path(p).name.startswith("bench_")]),
    "ab": (ab_table, lambda: [p for p in existing("bench") if not Path(p).name.startswith("bench_")]),
    "backprop": (backprop_table, lambda: finished_backprop()),
    "data_movement": (data_movement_table, lambda: existing("data_movement", ["main"])),
    "data_movement_kinds": (data_movement_kinds_table, lambda: existing("data_movement", ["main"])),
    "data_movement_sweeps": (data_movement_sweep_table, lambda: existing("data_movement", ["sweep_depth"])),
    "data_movement_run": (data_movement_run_table, lambda: finished_backprop()),
    "data_movement_test": (data_movement_test_table, lambda: existing("data_movement", ["test_time"])),
}


# printed by --tables but kept out of the README (too long for a five-minute read)
OTHER_TABLES = {"tuning": (tuning_table, lambda: existing("tuning_4x500"))}


def render_tables() -> str:
    out = []
    for name, (render, sources) in {**TABLES, **OTHER_TABLES}.items():
        if sources():
            out.append(f"<!-- table {name} -->\n{render()}")
        else:
            out.append(f"<!-- table {name}: no results yet -->")
    return "\n\n".join(out)


DOCS = (ROOT / "README.md", ROOT / "RESULTS.md")     # where the tables are printed


def update_readme(paths=DOCS) -> list:
    """Replace each block of the README and RESULTS.md that starts with a `<!-- table NAME -->`
    line (and runs to the next blank line) by the table rendered now. Returns the names."""
    return [name for path in paths for name in update_doc(path)]


def update_doc(path) -> list:
    lines, out, done, i = path.read_text().split("\n"), [], [], 0
    while i < len(lines):
        out.append(lines[i])
        name = lines[i][len("<!-- table "):-len(" -->")] if lines[i].startswith("<!-- table ") else None
        i += 1
        if name in TABLES and TABLES[name][1]():
            while i < len(lines) and lines[i].strip():
                i += 1
            out.append(TABLES[name][0]())
            done.append(name)
    ff.atomic_write_bytes(path, "\n".join(out).encode())
    return done


# ----------------------------------------------------------------------------
# CLI.
# ----------------------------------------------------------------------------

def status(runs) -> str:
    lines = []
    for group in GROUP_NAMES:
        members = [r for r in runs if r.group == group]
        done = sum((ROOT / r.out).exists() for r in members)
        lines.append(f"{group:12s} {done:3d} of {len(members):3d} done")
    return "\n".join(lines)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--group", nargs="+", choices=GROUP_NAMES, metavar="GROUP",
                   help=f"run (or list) these groups: {', '.join(GROUP_NAMES)}")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="run (or list) these entries: NAME (all seeds), a file stem, or GROUP/NAME")
    p.add_argument("--all", action="store_true", help="run everything that is missing")
    p.add_argument("--jobs", type=int, default=1, choices=(1, 2), help="runs at once (default: 1)")
    p.add_argument("--blas-threads", type=ff.positive_int, default=None, metavar="N",
                   help="OpenBLAS threads per run (default: 1 with --jobs 2, else as set)")
    p.add_argument("--list", action="store_true", help="print the commands and stop")
    p.add_argument("--tables", action="store_true", help="print the README tables")
    p.add_argument("--readme", action="store_true",
                   help="rewrite the README's tables from the results (after its <!-- table NAME --> lines)")
    return p


def main(argv=None):
    """The CLI; returns the exit status. Bad flags exit 2, Ctrl-C 130, each with one line."""
    p = build_parser()
    args = p.parse_args(argv)
    unknown = unknown_names(RUNS, args.only)
    if unknown:
        p.error(f"--only: no run named {', '.join(unknown)} (see --list)")
    try:
        return run_cli(args)
    except KeyboardInterrupt:
        print("interrupted; runs with a checkpoint resume from it next time", file=sys.stderr)
        return 130


def run_cli(args) -> int:
    """main() after its flags are checked."""
    chosen = args.group is not None or args.only is not None
    runs = select(RUNS, args.group, args.only)
    if args.list:
        print(listing(runs))
        return 0
    ok = True
    if chosen or args.all:
        todo = [r for r in runs if not (ROOT / r.out).exists()]
        print(f"{len(todo)} of {len(runs)} runs to make", flush=True)
        ok = run_all(todo, args.jobs, args.blas_threads)
    if args.readme:
        print("README and RESULTS tables updated: " + ", ".join(update_readme()))
    if args.tables:
        print(render_tables())
    elif not (chosen or args.all):
        print(status(RUNS))
        print("\nrun a selection with --group, --only or --all; --list shows the commands")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
