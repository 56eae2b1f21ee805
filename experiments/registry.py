"""The registry: every result under results/ and the command that makes it, as data.

Each training run is one call of the CLI, made from the repository root with relative
paths only: `python3 ff_label_in_input.py FLAGS --seed S --metrics results/...json`. A
Group is a set of such runs (name -> flags and seeds); other_runs() lists the results that
are not one training run's metrics. experiments/run.py runs them and prints the tables.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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
#                           loss twice today's; so the old 0.03 is 6e-06 at 500 units and
#                           1.5e-06 at 2000, the old 0.3 6e-05 at 500;
#   --neg-sampling hard  scored the candidate labels with the --predict-mode layers, now
#                        always with all layers (every such run had --predict-mode all).
# Their JSON configs were rewritten once in today's fields; each says how in its
# "migrated_from". The loss is now the mean over the 2B decisions, half the old value (the
# "loss" of an old JSON is twice today's); g_pos and g_neg are goodness per unit, as before.
# So those runs reproduce up to float rounding, not bit for bit. With Adam (the baseline
# recipe, so all of them) also up to Adam's epsilon: 1e-8 against the halved gradient
# weighs as 2e-8 did before (with eps 5e-9 the first 12 steps of dead_units_early.py
# repeat the old run bit for bit; with 1e-8 its dead-unit counts drift by up to 5).
# ----------------------------------------------------------------------------


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
                             "--peer-norm 6e-06 --peer-gate relu", (0,)),
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
        "peer0.03": "--peer-norm 6e-06 --peer-gate relu",
        "peer0.3": "--peer-norm 6e-05 --peer-gate relu",
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
                             "--peer-norm 6e-06 --peer-gate relu",
        "sum_cool_hf_deeplr0.3": "--logit-scale D --threshold 1 --lr-schedule cooldown "
                                 "--neg-sampling hard-first --deep-lr-scale 0.3",
    }.items()})

# The baseline recipe tuned on 4 x 500 (above), at the paper's 4 x 2000 for 60 epochs.
PAPER_FLAGS = ("--layer-sizes 784,2000,2000,2000,2000 --lr 0.003 --logit-scale D --threshold 1 "
               "--neg-sampling hard-first --peer-norm 1.5e-06 --peer-gate relu "
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
    def name(self) -> str:
        """GROUP/STEM, which names this run alone."""
        return f"{self.group}/{self.stem}"

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


# (layer sizes, batch, method, order, last level MB, steps N, file tail, short run's steps M).
# M = N = 1: steps 2 after the warm-up measured; M = 0: step 1, in 3/5 of the valgrind time.
ORDERS = (("ff", "batch"), ("ff", "layer-update"), ("ff", "layer-major"), ("bp", "batch"), ("bp", "layer-update"))
NET_4X2000 = "784,2000,2000,2000,2000"
CACHEGRIND = [("784,500,500", 128, m, o, 32, 1, "", 1) for m, o in ORDERS]
CACHEGRIND += [("784,500,500", 128, "bp", "batch", 32, 2, "_n2", 2)]         # N = 2 against N = 1
CACHEGRIND += [("784,500,500", 128, m, o, 32, 1, "_m0", 0)                   # M = 0 against M = 1
               for m, o in (("ff", "batch"), ("ff", "layer-major"), ("bp", "batch"))]
CACHEGRIND += [("784,500,500", 128, m, o, 8, 1, "_ll8", 1) for m, o in ORDERS]  # a last level of 8 MB
CACHEGRIND += [(NET_4X2000, 100, m, o, 32, 1, "", 0) for m, o in ORDERS]
CACHEGRIND += [(NET_4X2000, 100, m, o, ll, 1, f"_ll{ll}", 0)                 # 8 and 128 MB: each method
               for ll in (128, 8) for m in ("ff", "bp") for o in ("layer-update", "batch")]  # in two orders
CACHEGRIND += [(NET_4X2000, 100, "ff", "layer-major", 128, 1, "_ll128", 0)]   # a layer's arrays fit
# Runs whose short and long valgrind runs went side by side (--jobs 2; the counts are the same).
CG_SIDE_BY_SIDE = {"ff_layer-major_784-2000-2000-2000-2000_ll128", "ff_layer-update_784-2000-2000-2000-2000_ll8"}


def other_runs():
    """Results that are not one training run's metrics."""
    # The 500-epoch 3 x 1000 run's curve so far, from its checkpoint (a session ended first).
    partial = "results/partial/jitter1_3x1000_500ep_s0.json"
    yield Run("partial", "jitter1_3x1000_500ep_s0", partial,
              ("experiments/partial_curve.py", "runs/hinton/jitter1_3x1000_500ep_s0.ckpt.npz", "--json", partial))
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
    # (commit 75f9820; the results were made with --old runs/ff_75f9820.py, that file
    # written by git show 75f9820:ff_label_in_input.py), and FF's schedules.
    old = ("--old", "75f9820")
    schedules = ("--variant", "--schedule batch", "--variant", "--schedule layer-update",
                 "--variant", "--schedule layer-major --group-batches 8")
    for name, flags in (("ab_784-500-500", old + ("--train-subset", "20000")),
                        ("ab_hinton_3x1000", old + ("--recipe", "hinton", "--layer-sizes", "784,1000,1000,1000",
                                                    "--train-subset", "10000")),
                        # this module against the one before issues 20-22 (commit 6386f3b)
                        ("ab_6386f3b_784-500-500", ("--old", "6386f3b", "--train-subset", "20000")),
                        ("ab_6386f3b_hinton_3x1000", ("--old", "6386f3b", "--recipe", "hinton", "--layer-sizes",
                                                      "784,1000,1000,1000", "--train-subset", "10000")),
                        ("schedules_784-500-500", schedules + ("--train-subset", "20000")),
                        ("schedules_4x2000", schedules + ("--layer-sizes", "784,2000,2000,2000,2000",
                                                          "--train-subset", "5000", "--pairs", "3"))):
        out = f"results/bench/{name}.json"
        yield Run("bench", name, out, ("benchmarks/ab_epoch.py", *flags, "--json", out), alone=True)
    # Cachegrind (experiments/cachegrind.py): the real steps' L1 and last-level misses per
    # step under a simulated cache; one run per method, order and last-level size.
    for sizes, batch, method, schedule, ll_mb, steps, tail, base in CACHEGRIND:
        out = f"results/cachegrind/{method}_{schedule}_{sizes.replace(',', '-')}{tail}.json"
        jobs = ("--jobs", "2") if Path(out).stem in CG_SIDE_BY_SIDE else ()
        yield Run("cachegrind", Path(out).stem, out,
                  ("experiments/cachegrind.py", "--layer-sizes", sizes, "--batch-size", str(batch), "--recipe",
                   "baseline", "--steps", str(steps), *(("--base-steps", str(base)) if base != steps else ()),
                   "--ll-mb", str(ll_mb), "--method", method, "--schedule",
                   schedule, *jobs, "--json", out))
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
                  "schedules_forms", "schedules_depth"):
        out = f"results/data_movement/{group}.json"
        yield Run("data_movement", group, out, ("experiments/data_movement.py", "--only", group))


def all_runs() -> list:
    runs = [r for g, spec in GROUPS.items() for r in training_runs(g, spec)] + list(other_runs())
    order = list(GROUPS) + ["partial", "dead_units", "bench", "backprop", "data_movement", "cachegrind"]
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


def done(run: Run, root: Path = ROOT) -> bool:
    """Its result is there: the file exists and, for a JSON result, parses (a file cut
    short, as by a full disk or a copy that stopped, is not done)."""
    path = root / run.out
    if not path.is_file():
        return False
    if path.suffix != ".json":
        return True
    try:
        json.loads(path.read_text())
        return True
    except (ValueError, UnicodeDecodeError):
        return False
