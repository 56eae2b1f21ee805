"""The backprop baseline: the same hidden layers as an FF run, a softmax on top, end-to-end.

Hinton (2022, arXiv:2212.13345, sec. 3.3) compares FF with backprop on the same MNIST
networks: "backpropagation ... reaches similar test performance in about 20 epochs" at
4 x 2000. This script trains that baseline with the module's loader and optimisers:

    python3 experiments/backprop.py --layer-sizes 784,500,500 --n-epochs 30 --batch-size 128 \
        --seed 0 --metrics results/backprop/bp_784-500-500_s0.json
    python3 experiments/backprop.py --layer-sizes 784,2000,2000,2000,2000 --batch-size 100 \
        --n-epochs 30 --seed 0 --checkpoint bp.ckpt.npz --metrics results/backprop/bp_4x2000_s0.json

The network: ReLU hidden layers of --layer-sizes, then a linear 10-way output and
softmax cross-entropy; plain images in (no label pixels). Parameters are one flat float32
vector with per-layer [W; b] views (ff.layer_views), updated by ff.Adam.step or
ff.SmoothedSGD.step. backprop_step is written only with NumPy calls that dispatch to duck arrays
(no host conversion, no random draws inside), so a recording array can run the very step
that trains. Every epoch scores the full held-out set (the test set, or --val-split).
dtype policy: float32 training; the tests check the gradients in float64.
"""

from __future__ import annotations

if __name__ == "__main__":      # Ctrl-C while the imports load: one line, not a traceback
    import os, signal
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:       # say so, then exit 130 at once
        signal.signal(signal.SIGINT, lambda *_: os._exit(os.write(2, b"error: interrupted\n") and 130))

import argparse
import dataclasses
import json
import shlex
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ff_label_in_input as ff  # noqa: E402

FORMAT_VERSION = 1          # of this script's checkpoints
EVAL_CHUNK = 1000           # test images per forward pass when scoring
# FF test errors (%) to compare with: the epoch at which backprop first reaches each, for
# the progress report (the README's tables recompute it from results/ in experiments/run.py).
REFERENCE_ERRORS = {
    "ff_headline_784-500-500": 3.48,   # results/headline_784-500-500_seed0.json (96.52%)
    "ff_hinton_4x2000_mean": 1.38,     # results/hinton/paper_4x2000_s*.json, skip-first, seeds 0-2
    "paper_ff_4x2000": 1.36,           # Hinton 2022, sec. 3.3
}


@dataclass
class BPConfig:
    """Everything that defines a run; the CLI's defaults."""
    seed: int = 0                                          # of the one SeedSequence
    layer_sizes: list = field(default_factory=lambda: [784, 500, 500])  # input and hidden
    n_epochs: int = 30
    batch_size: int = 128
    optimizer: str = "adam"                                # adam, or sgd (smoothed, Hinton's code)
    lr: float = 0.001
    lr_schedule: str = "constant"                          # or cooldown: ff.lr_at's schedule
    smoothing: float = 0.9                                 # sgd: avg = s avg + (1 - s) grad
    weight_cost: float = 0.0                               # sgd: weight decay per unit of lr
    val_split: int = 0                                     # hold out the last N training images
    schedule: str = "batch"                                # or layer-update; the same weights


# ----------------------------------------------------------------------------
# The network and its step.
# ----------------------------------------------------------------------------

def net_sizes(cfg: BPConfig) -> list:
    """Layer sizes with the softmax output: input, hidden..., 10."""
    return list(cfg.layer_sizes) + [ff.N_CLASSES]


@dataclass
class BPState:
    """Everything that changes while training: the flat weights, the optimiser, the order
    stream. Wb[l] = [W_l; b_l] (D_l + 1, D_{l+1}) are views into params."""
    sizes: list
    params: np.ndarray
    opt: ff.Adam | ff.SmoothedSGD
    rng: np.random.Generator
    epoch: int = 0
    Wb: list = field(init=False, repr=False)

    def __post_init__(self):
        self.Wb = ff.layer_views(self.params, self.sizes)


def init_state(cfg: BPConfig) -> BPState:
    """U(+-1/sqrt(fan_in)) weights and biases (ff.init_net's uniform, torch.nn.Linear's
    default); one SeedSequence spawns the init and minibatch-order streams."""
    rng_init, rng_order = (np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(2))
    sizes = net_sizes(cfg)
    params = ff.init_net(sizes, rng_init, "uniform").params
    n = len(params)
    opt = (ff.Adam(np.zeros(n, ff.DTYPE), np.zeros(n, ff.DTYPE)) if cfg.optimizer == "adam" else
           ff.SmoothedSGD(np.zeros(n, ff.DTYPE), cfg.smoothing, cfg.weight_cost))
    return BPState(sizes, params, opt, rng_order)


def forward(Wb, x):
    """h_0 = x, h_{l+1} = relu(h_l W_l + b_l), logits = h_L W_L + b_L.
    x (B, D_0) -> ([h_0 .. h_{L}] with h_l (B, D_l), logits (B, 10))."""
    acts = [x]
    for l, Wb_l in enumerate(Wb):
        z = acts[-1] @ Wb_l[:-1]                                     # (B, D_{l+1})
        z += Wb_l[-1]
        if l == len(Wb) - 1:
            return acts, z
        acts.append(np.maximum(z, 0, out=z))                         # ReLU in place


def loss_and_grads(Wb, x, y, grad_views, after_layer=None):
    """Mean softmax cross-entropy of a batch and its gradient, written into grad_views
    (the [dW; db] views of the flat gradient). x (B, D_0), y (B,) ints. after_layer(l), if
    given, runs as soon as layer l's gradient is written and W_l has served the backward
    pass below it. Returns a 0-d array."""
    acts, logits = forward(Wb, x)
    B = len(x)
    z = logits - np.max(logits, axis=1, keepdims=True)               # (B, 10), max 0: exp is safe
    p = np.exp(z)
    total = np.sum(p, axis=1, keepdims=True)                         # (B, 1), >= 1
    rows = np.arange(B, like=x)
    loss = np.empty((), x.dtype, like=x)
    np.mean(np.log(total[:, 0]) - z[rows, y], out=loss)              # -log softmax(z)[y]
    p /= total
    p[rows, y] -= 1                                                  # dL/dlogits * B
    dz = np.divide(p, x.dtype.type(B), out=p)                        # (B, 10)
    for l in range(len(Wb) - 1, -1, -1):
        np.matmul(acts[l].T, dz, out=grad_views[l][:-1])             # dW_l = h_l^T dz
        np.sum(dz, axis=0, out=grad_views[l][-1])                    # db_l
        if l:
            dh = dz @ Wb[l][:-1].T                                   # (B, D_l)
            dz = np.multiply(dh, acts[l] > 0, out=dh)                # through the ReLU
        if after_layer:
            after_layer(l)
    return loss


def layer_parts(sizes, lr: float) -> list:
    """[ff.Part] per layer of the flat vector, all at lr; each layer's biases are its
    last D_out entries (no weight cost on them)."""
    parts, i = [], 0
    for d_in, d_out in zip(sizes[:-1], sizes[1:]):
        parts.append(ff.Part(i, i + (d_in + 1) * d_out, d_out, lr))
        i += (d_in + 1) * d_out
    return parts


def backprop_step(state: BPState, x, y, lr: float, grads, schedule="batch"):
    """One minibatch: forward, backward, optimiser update in place. x (B, 784), y (B,)
    ints, both arrays of params' kind; grads: scratch like params. schedule batch: every
    gradient, then one optimiser pass; layer-update: each layer updated as soon as the
    backward pass has its gradient and no longer needs its weights (as an optimiser hook in
    backward does), the same weights. Returns the loss (0-d)."""
    parts = layer_parts(state.sizes, lr)
    if schedule == "layer-update":
        t = state.opt.t + 1

        def update(l):
            state.opt.step(state.params, grads, [parts[l]], t)      # SGD overwrites grads
        return loss_and_grads(state.Wb, x, y, ff.layer_views(grads, state.sizes), update)
    loss = loss_and_grads(state.Wb, x, y, ff.layer_views(grads, state.sizes))
    state.opt.step(state.params, grads, parts)                      # SGD overwrites grads
    return loss


# ----------------------------------------------------------------------------
# Training and scoring.
# ----------------------------------------------------------------------------

def train_epoch(state: BPState, cfg: BPConfig, x, y) -> float:
    """One pass over (x, y) in shuffled minibatches; the epoch's mean training loss.
    The loss is read back once, after the epoch."""
    order = state.rng.permutation(len(x))
    n_batches = math.ceil(len(x) / cfg.batch_size)
    grads = np.empty_like(state.params)
    loss_sum = np.zeros((), np.float64, like=state.params)
    for i in range(n_batches):
        ff.raise_lost_stop()
        idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        lr = ff.lr_at(cfg, state.epoch * n_batches + i, n_batches * cfg.n_epochs)
        loss_sum += backprop_step(state, x[idx], y[idx], lr, grads, cfg.schedule)
    state.epoch += 1
    return float(loss_sum) / n_batches


def predict(Wb, x, chunk_size=None) -> np.ndarray:
    """Most likely class of each image, chunk_size (default EVAL_CHUNK) images at a time. (N,)"""
    step = chunk_size or EVAL_CHUNK
    return np.concatenate([np.argmax(forward(Wb, x[i:i + step])[1], axis=1)
                           for i in range(0, len(x), step)])


def n_errors(Wb, x, y) -> int:
    return int(np.sum(predict(Wb, x) != y))


def new_history() -> dict:
    return {"epoch": [], "train_loss": [], "test_errors": [], "test_error": [], "seconds": [],
            "eval_seconds": [], "load_average": []}


def first_epoch_at_or_below(history: dict) -> dict:
    """For each reference FF error: the first epoch whose held-out error is <= it, or None."""
    return {name: next((e for e, err in zip(history["epoch"], history["test_error"]) if err <= ref), None)
            for name, ref in REFERENCE_ERRORS.items()}


def epoch_line(cfg: BPConfig, history: dict, n_test: int, held_out: str) -> str:
    """One fixed-width progress line: loss, held-out error, seconds, ETA."""
    eta = np.mean(history["seconds"]) * (cfg.n_epochs - history["epoch"][-1])
    return (f"epoch {history['epoch'][-1]:3d}/{cfg.n_epochs} | loss {history['train_loss'][-1]:.4f} | "
            f"{held_out} error {history['test_error'][-1]:5.2f}% ({history['test_errors'][-1]:4d}/{n_test}) | "
            f"{history['seconds'][-1]:6.1f}s + {history['eval_seconds'][-1]:4.1f}s eval | ETA {eta:5.0f}s")


# ----------------------------------------------------------------------------
# Checkpoints and the record of a run.
# ----------------------------------------------------------------------------

class CheckpointError(Exception):
    """A checkpoint is unreadable or was written by a run with other settings."""


def checkpoint_arrays(state: BPState, cfg: BPConfig, history: dict) -> dict:
    arrays = {"kind": np.array("bp-checkpoint"), "format_version": np.array(FORMAT_VERSION),
              "config": np.array(json.dumps(dataclasses.asdict(cfg))),
              "history": np.array(json.dumps(history)), "epoch": np.array(state.epoch),
              "rng": np.array(json.dumps(state.rng.bit_generator.state)),
              "params": np.array(state.params), "machine": np.array(json.dumps(ff.machine()))}
    arrays.update(ff.optimizer_arrays(state.opt))
    return arrays


def load_checkpoint(path, cfg: BPConfig):
    """(state, history) from a checkpoint of the same settings (n_epochs may grow
    unless the learning-rate schedule depends on it)."""
    try:
        data = ff.read_npz(path, "checkpoint")
    except ff.ModelError as e:
        raise CheckpointError(str(e)) from None
    if str(data.get("kind", "")) != "bp-checkpoint" or int(data.get("format_version", -1)) != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a backprop checkpoint of format version {FORMAT_VERSION}")
    # a field added after the checkpoint was written reads as its default
    saved = {**dataclasses.asdict(BPConfig()), **json.loads(str(data["config"]))}
    current = dataclasses.asdict(cfg)
    same_weights = ("schedule",)                         # settings that leave the weights as they are
    problem = ff.resume_problem(path, saved, current, tuple(k for k in current if k not in same_weights),
                                int(data["epoch"]))
    if problem:
        raise CheckpointError(problem)
    state = init_state(cfg)
    state.params[...] = data["params"]
    ff.restore_optimizer(state.opt, data)
    state.rng.bit_generator.state = json.loads(str(data["rng"]))
    state.epoch = int(data["epoch"])
    return state, json.loads(str(data["history"]))


def run_record(cfg: BPConfig, history: dict, command: str, held_out: str, n_test: int, resumed: list) -> dict:
    """The metrics JSON: per-epoch history, the final error, the epochs to each FF error,
    the config, the command, versions, CPU and BLAS threads."""
    wrong = history["test_errors"][-1] if history["epoch"] else None
    return {"evaluated_on": held_out, "test_total": n_test, "test_wrong": wrong,
            "test_error": history["test_error"][-1] if history["epoch"] else None,
            "epochs_done": len(history["epoch"]),
            "first_epoch_at_or_below": first_epoch_at_or_below(history),
            "reference_errors": REFERENCE_ERRORS,
            "train_seconds": sum(history["seconds"]),
            "mean_seconds_per_epoch": float(np.mean(history["seconds"])) if history["seconds"] else None,
            "history": history, "config": dataclasses.asdict(cfg), "command": command,
            "resumed_after_epochs": resumed, "machine": ff.machine(), "cpu": ff.cpu_name(),
            "n_cpus": os.cpu_count(), "blas_threads": {k: os.environ.get(k) for k in
                                                       ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}}


# ----------------------------------------------------------------------------
# CLI.
# ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    d = BPConfig()
    p = argparse.ArgumentParser(description="Backprop baseline for Forward-Forward on MNIST: the "
                                            "same hidden layers, a softmax output, cross-entropy.",
                                formatter_class=ff.HelpFormatter)
    p.add_argument("--seed", type=ff.bounded(int, 0), default=d.seed, help="seed of the one random generator")
    p.add_argument("--layer-sizes", type=ff.layer_sizes_arg, default=d.layer_sizes,
                   help="comma-separated input and hidden sizes; a 10-way softmax layer is added")
    p.add_argument("--n-epochs", type=ff.positive_int, default=d.n_epochs, help="training epochs")
    p.add_argument("--batch-size", type=ff.positive_int, default=d.batch_size, help="minibatch size")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default=d.optimizer,
                   help="adam (ff.Adam), or sgd: SGD on smoothed gradients with weight cost (ff.SmoothedSGD)")
    p.add_argument("--lr", type=ff.positive_float, default=d.lr, help="learning rate")
    p.add_argument("--schedule", choices=("batch", "layer-update"), default=d.schedule,
                   help="batch: every gradient, then one optimiser pass; layer-update: each layer "
                        "updated as soon as backward has its gradient (the same weights)")
    p.add_argument("--lr-schedule", choices=("constant", "cooldown"), default=d.lr_schedule,
                   help="constant, or cooldown: constant for half the steps, then linear to 0")
    p.add_argument("--smoothing", type=ff.bounded(float, 0.0, 0.999), default=d.smoothing,
                   help="sgd: gradient smoothing s")
    p.add_argument("--weight-cost", type=ff.nonnegative_float, default=d.weight_cost,
                   help="sgd: weight decay per unit of lr (not on biases)")
    p.add_argument("--val-split", type=ff.bounded(int, 0, ff.N_TRAIN - 1), default=d.val_split, metavar="N",
                   help="hold out the last N training images and score them instead of the test set")
    p.add_argument("--data-dir", help="folder with the MNIST .gz files (default: $HINTON_MNIST_DIR, "
                                      "else ~/.cache/hinton-mnist)")
    p.add_argument("--checkpoint", metavar="PATH", help="write a resumable checkpoint here after every epoch")
    p.add_argument("--resume", metavar="PATH", help="continue from this checkpoint (same flags)")
    p.add_argument("--metrics", metavar="PATH", help="write the results here as JSON when the run completes (PATH.part after each epoch)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def parse_args(argv=None):
    """(args, cfg): bad values exit 2 with a one-line reason, before any data is read."""
    p = build_parser()
    args = p.parse_args(argv)
    ff.check_paths(p, args, ("metrics", "checkpoint"))
    names = {f.name for f in dataclasses.fields(BPConfig)}
    return args, BPConfig(**{k: v for k, v in vars(args).items() if k in names})


def without_resume(argv) -> list:
    """argv minus --resume PATH: a resumed run computes what the uninterrupted one does."""
    argv = list(argv)
    if "--resume" in argv:
        i = argv.index("--resume")
        del argv[i:i + 2]
    return [a for a in argv if not a.startswith("--resume=")]


def main(argv=None, checksums=None, mirrors=None) -> dict:
    """Train, score every epoch, record; return the metrics dict. checksums and mirrors go
    to ff.load_mnist (tests use small synthetic files). Ctrl-C, SIGTERM or SIGHUP exit 130,
    143 or 129 with one line, the last epoch checkpointed."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, cfg = parse_args(argv)
    try:
        with ff.stop_signals():
            return run(args, cfg, argv, checksums, mirrors)
    except KeyboardInterrupt as e:
        ff.fail(ff.stop_reason(e), ff.exit_code(e))


def run(args, cfg: BPConfig, argv, checksums=None, mirrors=None) -> dict:
    """main after its flags are parsed."""
    log = None if args.quiet else ff.say
    try:
        x_train, y_train, x_test, y_test = ff.load_mnist(args.data_dir, checksums, mirrors)
    except ff.DataError as e:
        ff.fail(e)
    except KeyboardInterrupt as e:
        ff.fail(f"{ff.stop_reason(e)} while loading MNIST; nothing was written", ff.exit_code(e))
    held_out = "test"
    if cfg.val_split:
        if cfg.val_split >= len(x_train):
            ff.fail(f"--val-split {cfg.val_split} leaves no training images (of {len(x_train)})", 2)
        x_train, y_train, x_test, y_test = (x_train[:-cfg.val_split], y_train[:-cfg.val_split],
                                            x_train[-cfg.val_split:], y_train[-cfg.val_split:])
        held_out = "val"
    try:
        state, history = load_checkpoint(args.resume, cfg) if args.resume else (init_state(cfg), new_history())
    except CheckpointError as e:
        ff.fail(e)
    resumed = [state.epoch] if args.resume else []
    # each epoch's record goes to METRICS.part; METRICS itself appears only when the run is
    # complete, so the runner never takes a stopped run for a finished one
    partial = Path(f"{args.metrics}.part") if args.metrics else None
    earlier = next((f for f in (partial, Path(args.metrics or "")) if f and f.is_file()), None)
    if args.resume and earlier:
        resumed = json.loads(earlier.read_text()).get("resumed_after_epochs", []) + resumed
    command = "python3 experiments/backprop.py " + " ".join(without_resume(argv))
    if log:
        log("config: " + json.dumps(dataclasses.asdict(cfg)))
        log(f"data: {len(x_train)} training images, {len(x_test)} {held_out} images scored every epoch; "
            f"{len(state.params)} parameters; cpu {ff.cpu_name()}")
        if args.resume:
            log(f"resumed from {args.resume} after epoch {state.epoch}")
    record = run_record(cfg, history, command, held_out, len(x_test), resumed)
    try:
        for epoch in range(state.epoch + 1, cfg.n_epochs + 1):
            t0 = time.perf_counter()
            loss = train_epoch(state, cfg, x_train, y_train)
            t1 = time.perf_counter()
            if not math.isfinite(loss):
                ff.fail(f"the loss became non-finite in epoch {epoch} (try a smaller --lr)", 1)
            wrong = n_errors(state.Wb, x_test, y_test)
            for k, v in (("epoch", epoch), ("train_loss", loss), ("test_errors", wrong),
                         ("test_error", round(100 * wrong / len(x_test), 4)), ("seconds", t1 - t0),
                         ("eval_seconds", time.perf_counter() - t1), ("load_average", os.getloadavg()[0])):
                history[k].append(v)
            if args.checkpoint:
                ff.atomic_savez(args.checkpoint, checkpoint_arrays(state, cfg, history))
            record = run_record(cfg, history, command, held_out, len(x_test), resumed)
            if args.metrics:
                done = epoch == cfg.n_epochs
                ff.atomic_write_bytes(args.metrics if done else partial,
                                      (json.dumps(record, indent=2) + "\n").encode())
                if done:
                    partial.unlink(missing_ok=True)
            if log:
                log(epoch_line(cfg, history, len(x_test), held_out))
    except KeyboardInterrupt as e:
        done = history["epoch"][-1] if history["epoch"] else 0
        kept = (f"the state after epoch {done} is in {args.checkpoint}; to continue add "
                f"--resume {shlex.quote(args.checkpoint)}") if args.checkpoint and done else "no checkpoint was kept"
        ff.fail(f"{ff.stop_reason(e)} during epoch {done + 1}; {kept}", ff.exit_code(e))
    if log and history["epoch"]:
        wrong, n = history["test_errors"][-1], len(x_test)
        log(f"{held_out} accuracy: {n - wrong}/{n} ({100 * (n - wrong) / n:.2f}%), error "
            f"{100 * wrong / n:.2f}%; first epoch at or below each FF error: "
            + ", ".join(f"{k} ({REFERENCE_ERRORS[k]}%): {v}" for k, v in first_epoch_at_or_below(history).items()))
        log(f"training took {sum(history['seconds']):.1f}s ({np.mean(history['seconds']):.1f}s per epoch)")
    return record


if __name__ == "__main__":
    main()
