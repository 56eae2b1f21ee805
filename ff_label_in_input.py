"""Supervised Forward-Forward with the label written into the first 10 pixels.

Hinton (2022), "The Forward-Forward Algorithm: Some Preliminary Investigations",
arXiv:2212.13345, section 3.3. Each layer of a ReLU network learns on its own, with
no gradient crossing layers: its goodness (the sum of its squared activities) should
be high for an image carrying its true label in the first 10 pixels (positive data)
and low for the same image carrying a wrong label (negative data). To classify, try
all 10 labels and pick the one with the highest goodness summed over layers.

    python3 ff_label_in_input.py --seed 0 --n-epochs 30 --layer-sizes 784,500,500 \
        --eval-subset 2000 --full-test --save model.npz
    python3 ff_label_in_input.py --recipe hinton --layer-sizes 784,1000,1000,1000 --n-epochs 100

Reading order: device switch -> config -> data -> label encoding -> layer numerics (the
method in its plain form, then the named speed-ups) -> softmax head -> optimisers ->
training -> prediction -> save/load -> CLI. dtype policy: float32 for data, weights and
training; the tests check the gradients in float64. Importing this module does nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import io
import json
import math
import os
import platform
import struct
import sys
import tempfile
import time
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT_VERSION = 2          # of model.npz and checkpoints
DTYPE = np.float32
RMS_EPS = 1e-8              # h / sqrt(mean(h^2) + RMS_EPS): a row of zeros stays zeros
LABEL_SLOT = 10             # the first 10 flat pixels carry the label
N_CLASSES = 10
N_PIXELS = 784
N_TRAIN, N_TEST = 60000, 10000
NEUTRAL_LABEL = 0.1         # Hinton's code: a neutral label is 0.1 in each label pixel
PEER_DECAY = 0.9            # running mean of each unit's activity (Hinton's code)
PEER_START = 0.5            # ... and where it starts
READOUTS = ("all", "first", "skip-first", "softmax")


# ----------------------------------------------------------------------------
# Device: the one switch between NumPy on the CPU and CuPy on an NVIDIA GPU. The method's
# functions are written against the NumPy API; CuPy arrays take them over through NumPy's
# dispatch (__array_ufunc__, __array_function__, like=). Random draws stay on the host.
# ----------------------------------------------------------------------------

class DeviceError(Exception):
    """--device cuda without CuPy or without a GPU."""


def array_module(device: str):
    """numpy for "cpu"; cupy for "cuda", or a DeviceError that says what to install."""
    if device == "cpu":
        return np
    try:
        import cupy
    except ImportError:
        raise DeviceError("--device cuda needs CuPy: pip install cupy-cuda12x (or the wheel "
                          "for your CUDA version)") from None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise DeviceError("--device cuda: CuPy found no CUDA GPU")
    except cupy.cuda.runtime.CUDARuntimeError as e:
        raise DeviceError(f"--device cuda: CuPy found no usable CUDA GPU ({e})") from None
    return cupy


def to_host(a):
    """A NumPy copy of a NumPy or CuPy array (NumPy arrays pass through)."""
    return a if isinstance(a, np.ndarray) else a.get()


# ----------------------------------------------------------------------------
# Config: one field per CLI flag; the recipes below set their defaults.
# ----------------------------------------------------------------------------

def option(default, help, eval_only=False, **argparse_kwargs):
    """A Config field with its --help text; eval_only fields never change what is learned."""
    meta = {"help": help, "eval_only": eval_only, **argparse_kwargs}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Config:
    """Everything that defines a run. Defaults are the earlier NumPy run (SEED.md)."""
    recipe: str = option("baseline", "preset of the settings below: baseline (the earlier NumPy run: Adam, "
                         "raw pixels) or hinton (Hinton's released code); explicit flags win",
                         choices=("baseline", "hinton"))
    seed: int = option(0, "seed of the one random generator")
    n_epochs: int = option(30, "training epochs")
    layer_sizes: list = option([784, 500, 500], "comma-separated sizes, input (784) first")
    batch_size: int = option(128, "minibatch size (positives; as many negatives)")
    optimizer: str = option("adam", "adam, or sgd: SGD on gradients smoothed over minibatches "
                            "(g = s g + (1 - s) grad) with weight cost", choices=("adam", "sgd"))
    lr: float = option(0.003, "learning rate")
    lr_schedule: str = option("constant", "constant, or cooldown: constant for half the steps, "
                              "then linear to 0", choices=("constant", "cooldown"))
    deep_lr_scale: float = option(1.0, "learning-rate multiplier of every layer after the first")
    smoothing: float = option(0.9, "sgd: gradient smoothing s")
    weight_cost: float = option(0.0, "sgd: weight decay per unit of lr (not on biases)")
    init: str = option("uniform", "uniform: U(+-1/sqrt(fan_in)) weights and biases; normal: "
                       "N(0, 1/fan_in) weights, zero biases", choices=("uniform", "normal"))
    input_norm: str = option("none", "none: raw [0, 1] pixels; rms: each input row (label "
                             "included) scaled to mean square 1", choices=("none", "rms"))
    threshold: float = option(2.0, "theta: a sample is positive when mean(h^2) > theta")
    logit_scale: str = option("1", "p(positive) = sigmoid(k (mean(h^2) - theta)); k = 1, or D "
                              "(= sigmoid(sum(h^2) - theta D), Hinton's code)", choices=("1", "D"))
    peer_norm: float = option(0.0, "peer normalisation strength lambda: pulls each unit's running "
                              "mean activity toward its layer's mean (0: off)")
    peer_gate: str = option("relu", "relu: the peer term only reaches active units; none: every "
                            "unit (Hinton's code; revives dead units)", choices=("relu", "none"))
    neg_sampling: str = option("uniform", "wrong labels: uniform; hard: by softmax of mean(h^2) "
                               "summed over layers; hard-first: of layer 0; softmax: by the softmax "
                               "head", choices=("uniform", "hard", "hard-first", "softmax"))
    softmax_head: bool = option(False, "train a linear softmax on the normalised activities of "
                                "the layers after the first, with a neutral label (0.1 each)")
    head_lr: float = option(0.1, "softmax head: learning rate (smoothed SGD)")
    head_weight_cost: float = option(0.003, "softmax head: weight cost")
    jitter: int = option(0, "shift each training image by up to N px each epoch (0: off; "
                         "the flag alone: 2)")
    train_subset: int | None = option(None, "train on the first N of the 60000 training images")
    val_split: int = option(0, "hold out the last N training images and evaluate on them "
                            "instead of the test set (for tuning)")
    device: str = option("cpu", "cpu (NumPy), or cuda: the same code on an NVIDIA GPU through "
                         "CuPy (pip install cupy-cuda12x)", eval_only=True, choices=("cpu", "cuda"))
    eval_subset: int = option(2000, "training and test images scored after every epoch",
                              eval_only=True)
    full_test: bool = option(False, "final report on all 10000 test images", eval_only=True)
    predict_mode: str = option("all", "read-out of the headline: goodness of all layers, the "
                               "first, all but the first, or the softmax head", eval_only=True,
                               choices=READOUTS)


RECIPES = {
    "baseline": {},
    # Hinton's released code (ffnew.m): smoothed SGD with weight cost, RMS-normalised
    # input, sum(h^2) against D, ungated peer normalisation, negatives from a softmax
    # on a neutral-label pass, the read-out of the layers after the first.
    "hinton": {"optimizer": "sgd", "lr": 0.01, "lr_schedule": "cooldown", "batch_size": 100,
               "smoothing": 0.9, "weight_cost": 0.001, "init": "normal", "input_norm": "rms",
               "threshold": 1.0, "logit_scale": "D", "peer_norm": 0.03, "peer_gate": "none",
               "neg_sampling": "softmax", "softmax_head": True, "head_lr": 0.1,
               "head_weight_cost": 0.003, "predict_mode": "skip-first"},
}
# A checkpoint continues only a run whose training fields match (n_epochs may grow).
TRAINING_FIELDS = tuple(f.name for f in dataclasses.fields(Config) if not f.metadata["eval_only"])


# ----------------------------------------------------------------------------
# Data: download, verify, cache, parse.
# ----------------------------------------------------------------------------

MNIST_FILES = {  # name -> SHA-256 of the *decompressed* IDX bytes
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MNIST_MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
IDX_MAGIC = {3: 2051, 1: 2049}      # ndim -> magic number (images, labels)
DOWNLOAD_TIMEOUT_S = 30


class DataError(Exception):
    """A data file is missing, unreachable, corrupt or not what it should be."""


def mnist_dir(data_dir=None) -> Path:
    """--data-dir, else $HINTON_MNIST_DIR, else ~/.cache/hinton-mnist."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("HINTON_MNIST_DIR"):
        return Path(os.environ["HINTON_MNIST_DIR"]).expanduser()
    return Path.home() / ".cache" / "hinton-mnist"


def download(name: str, folder: Path, mirrors) -> Path:
    """Fetch name.gz into folder; written to a temporary name, renamed when complete."""
    target = folder / f"{name}.gz"
    reasons = []
    for base in mirrors:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with urllib.request.urlopen(base + target.name, timeout=DOWNLOAD_TIMEOUT_S) as r:
                payload = r.read()
            atomic_write_bytes(target, payload)
            return target
        except OSError as e:  # URLError, timeouts and unwritable folders are all OSErrors
            reasons.append(f"{base}: {getattr(e, 'reason', e)}")
    raise DataError(
        f"{target} is missing and could not be downloaded "
        f"({'; '.join(reasons) or 'no download mirror configured'}). "
        f"Put the four MNIST .gz files in {folder} or point HINTON_MNIST_DIR (or --data-dir) "
        f"at a folder that has them.")


def read_idx(path: Path, sha256: str | None) -> np.ndarray:
    """Decompress, verify and parse one gzipped IDX file into a uint8 array."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is truncated or not a gzip file ({e}); delete it and "
                        f"run again to download a fresh copy") from None
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise DataError(f"{path} fails its SHA-256 check (the file is corrupt or not the "
                        f"MNIST release); delete it and run again to download a fresh copy")
    if len(raw) < 8:
        raise DataError(f"{path} is too short to hold an IDX header")
    magic, = struct.unpack(">i", raw[:4])
    ndim = raw[3]
    if magic not in IDX_MAGIC.values() or IDX_MAGIC.get(ndim) != magic:
        raise DataError(f"{path} has a bad IDX magic number {magic:#x} "
                        f"(expected {IDX_MAGIC[3]:#x} for images or {IDX_MAGIC[1]:#x} for labels)")
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}i", raw[4:header])
    if len(raw) != header + int(np.prod(dims)):
        raise DataError(f"{path}: IDX header promises {dims} but holds {len(raw) - header} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist(data_dir=None, checksums=None, mirrors=None):
    """Return (x_train, y_train, x_test, y_test): float32 (N, 784) in [0, 1], int64 (N,).

    Missing files are downloaded from `mirrors` (default MNIST_MIRRORS) into the folder;
    `checksums` maps file name to SHA-256 (default MNIST_FILES).
    """
    checksums = MNIST_FILES if checksums is None else checksums
    mirrors = MNIST_MIRRORS if mirrors is None else mirrors
    folder = mnist_dir(data_dir)
    arrays = {}
    for name, sha in checksums.items():
        path = folder / f"{name}.gz"
        if not path.exists():
            path = download(name, folder, mirrors)
        arrays[name] = read_idx(path, sha)
    out = []
    for split in ("train", "t10k"):
        images, labels = arrays[f"{split}-images-idx3-ubyte"], arrays[f"{split}-labels-idx1-ubyte"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1:
            raise DataError(f"{folder}: {split} images are {images.shape}, expected (N, 28, 28)")
        if len(images) != len(labels):
            raise DataError(f"{folder}: {len(images)} {split} images but {len(labels)} labels")
        if labels.max(initial=0) >= N_CLASSES:
            raise DataError(f"{folder}: {split} labels outside 0..9")
        out += [images.reshape(len(images), N_PIXELS).astype(DTYPE) / DTYPE(255),
                labels.astype(np.int64)]
    return tuple(out)


# ----------------------------------------------------------------------------
# Label encoding: one-hot in the first 10 pixels (MNIST's empty top-left row).
# ----------------------------------------------------------------------------

def embed_label(x: np.ndarray, y) -> np.ndarray:
    """Copy of x (N, 784) with pixels 0..9 overwritten by one_hot(y) (value 1.0)."""
    x = np.array(x, dtype=x.dtype, copy=True)
    x[:, :LABEL_SLOT] = 0
    x[np.arange(len(x)), np.asarray(y)] = 1
    return x


def embed_neutral_label(x: np.ndarray) -> np.ndarray:
    """Copy of x with 0.1 in every label pixel (Hinton's code: the 'neutral label')."""
    x = np.array(x, dtype=x.dtype, copy=True)
    x[:, :LABEL_SLOT] = NEUTRAL_LABEL
    return x


def jitter_images(x: np.ndarray, rng: np.random.Generator, max_shift: int = 2) -> np.ndarray:
    """Shift each 28x28 image by its own random (dy, dx) in [-max_shift, max_shift]^2, zero fill.

    Hinton 2022 (sec. 3.3) jitters by up to two pixels in each direction.
    """
    n = len(x)
    images = x.reshape(n, 28, 28)
    out = np.zeros_like(images)
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            idx = np.flatnonzero((shifts[:, 0] == dy) & (shifts[:, 1] == dx))
            src = images[idx, max(0, -dy):28 - max(0, dy), max(0, -dx):28 - max(0, dx)]
            out[idx, max(0, dy):28 - max(0, -dy), max(0, dx):28 - max(0, -dx)] = src
    return out.reshape(n, N_PIXELS)


def draw_wrong_labels(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A label drawn uniformly from the 9 wrong ones, per sample (never the true one)."""
    return (y + rng.integers(1, N_CLASSES, size=len(y))) % N_CLASSES


def draw_hard_labels(y: np.ndarray, scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A wrong label per sample drawn with probability softmax(scores) over the 9 wrong ones.

    scores: (N, 10), e.g. the goodness of each candidate label or the softmax head's
    logits, so the wrong labels the network finds most convincing are drawn most often.
    """
    z = np.asarray(scores, dtype=np.float64).copy()
    z[np.arange(len(y)), y] = -np.inf                            # never the true label
    p = np.exp(z - z.max(axis=1, keepdims=True))
    cdf = np.cumsum(p, axis=1)
    u = rng.random(len(y))[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), N_CLASSES - 1)


# ----------------------------------------------------------------------------
# The network: one flat float32 vector; layer l is the view [W_l; b_l] of shape
# (D_in + 1, D_out), so a constant 1 appended to the input computes x W + b.
# ----------------------------------------------------------------------------

@dataclass
class Net:
    """The FF stack: Wb[l] = [W_l; b_l] (D_l + 1, D_{l+1}), all views into `params`.

    input_norm says how an input row is read (none, or rms); head is the optional
    softmax read-out (sum of D_l for l >= 1, 10).
    """
    layer_sizes: list
    params: np.ndarray
    input_norm: str = "none"
    head: np.ndarray | None = None
    Wb: list = field(init=False, repr=False)

    def __post_init__(self):
        self.Wb = layer_views(self.params, self.layer_sizes)

    @property
    def W(self):
        return [Wb[:-1] for Wb in self.Wb]

    @property
    def b(self):
        return [Wb[-1] for Wb in self.Wb]


def layer_views(flat: np.ndarray, layer_sizes) -> list:
    """Split a flat vector into the per-layer [W; b] views."""
    views, i = [], 0
    for d_in, d_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        views.append(flat[i:i + (d_in + 1) * d_out].reshape(d_in + 1, d_out))
        i += (d_in + 1) * d_out
    return views


def n_params(layer_sizes) -> int:
    return sum((a + 1) * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:]))


def head_width(layer_sizes) -> int:
    """Inputs of the softmax head: the hidden layers after the first."""
    return sum(layer_sizes[2:])


def init_net(layer_sizes, rng: np.random.Generator, init="uniform", input_norm="none",
             softmax_head=False) -> Net:
    """uniform: U(+-1/sqrt(fan_in)) weights and biases, as torch.nn.Linear's default.
    normal: N(0, 1/fan_in) weights and zero biases, as Hinton's code."""
    # DEVIATION (baseline recipe): the paper does not give its initialisation.
    net = Net(list(layer_sizes), np.empty(n_params(layer_sizes), DTYPE), input_norm,
              np.zeros((head_width(layer_sizes), N_CLASSES), DTYPE) if softmax_head else None)
    for Wb in net.Wb:
        fan_in = Wb.shape[0] - 1
        if init == "normal":
            Wb[:-1] = rng.standard_normal(Wb[:-1].shape) / math.sqrt(fan_in)
            Wb[-1] = 0
        else:
            Wb[...] = rng.uniform(-1, 1, size=Wb.shape) / math.sqrt(fan_in)
    return net


# ----------------------------------------------------------------------------
# Layer numerics, the plain form: what each layer computes and how it learns.
# ----------------------------------------------------------------------------

def relu(z):
    return np.maximum(z, 0)


def goodness(h: np.ndarray) -> np.ndarray:
    """Hinton 2022, sec. 2: goodness = the sum of the squared activities. (N, D) -> (N,)"""
    return np.einsum("ij,ij->i", h, h)


def rms_normalize(h: np.ndarray) -> np.ndarray:
    """Scale each row to mean square 1 (Hinton 2022, sec. 2.1): the next layer sees the
    direction of the activity vector, not its length, so it cannot read this goodness."""
    return h / np.sqrt((h * h).mean(axis=1, keepdims=True) + h.dtype.type(RMS_EPS))


def ff_logit(g: np.ndarray, n_units: int, theta: float, logit_scale: str) -> np.ndarray:
    """Log-odds that a sample is positive: k (g / D - theta), k = 1 or D.

    k = 1 compares mean(h^2) with theta (the earlier NumPy run); k = D gives
    sum(h^2) - theta D, the D times sharper logistic of Hinton's code (theta 1).
    """
    slope = logit_slope(n_units, logit_scale)                        # k / D
    return g.dtype.type(slope) * g - g.dtype.type(slope * n_units * theta)


def logit_slope(n_units: int, logit_scale: str) -> float:
    """d logit / d g = k / D: 1 / D for k = 1, 1 for k = D."""
    return 1.0 if logit_scale == "D" else 1.0 / n_units


def softplus(x):
    return np.logaddexp(x.dtype.type(0), x)


def sigmoid(x):
    return x.dtype.type(0.5) * np.tanh(x.dtype.type(0.5) * x) + x.dtype.type(0.5)  # stable


def ff_loss(logit_pos, logit_neg):
    """Mean -log p(correct decision) over the positives and negatives of a batch."""
    n = len(logit_pos) + len(logit_neg)
    return (softplus(-logit_pos).sum() + softplus(logit_neg).sum()) / n


def dloss_dlogit(logit_pos, logit_neg):
    """d ff_loss / d logit: -(1 - p) / n for each positive, p / n for each negative."""
    n = len(logit_pos) + len(logit_neg)
    return -sigmoid(-logit_pos) / n, sigmoid(logit_neg) / n


def dloss_dz(h, dl_dg):
    """dL/dz for z the pre-activation: dL/dg * dg/dz, dg/dz = 2 h (0 where the ReLU is off)."""
    return 2 * h * dl_dg[:, None]


def peer_means_update(r, h_pos):
    """Running mean of each unit's activity on positive data (Hinton's code). (D,)"""
    return PEER_DECAY * r + (1 - PEER_DECAY) * h_pos.mean(axis=0)


def peer_dz(r, h_pos, strength, gate):
    """Peer normalisation (Hinton 2022, sec. 3.5; his code): each positive row's dL/dz gets
    strength (r_j - mean(r)) / B, pulling every unit's mean activity toward its layer's.
    Hinton does not gate it by the ReLU ("none"): a dead unit still gets pushed back on.
    With gate "relu" it only reaches active units. (B, D)"""
    term = (strength / len(h_pos)) * (r - r.mean())
    mask = h_pos > 0 if gate == "relu" else np.ones_like(h_pos, dtype=bool)
    return mask * term.astype(h_pos.dtype)


def first_layer_inputs(x: np.ndarray, input_norm: str) -> np.ndarray:
    """How layer 0 reads a labelled input row: as it is, or scaled to mean square 1."""
    # DEVIATION (baseline recipe): raw pixels; Hinton's code normalises the input ("rms").
    return rms_normalize(x) if input_norm == "rms" else x


def ff_grads_plain(net: Net, x_pos, x_neg, cfg: Config, peer_means=None):
    """The method, one layer after another, as section 3.3 describes it.

    x_pos, x_neg: (B, 784) images carrying their true and a wrong label. Every layer
    learns from its own input and output: no gradient crosses a layer. Returns per layer
    ([(dW, db)], [(loss, mean g_pos / D, mean g_neg / D)]); peer_means are updated.
    """
    x_pos = first_layer_inputs(x_pos, net.input_norm)
    x_neg = first_layer_inputs(x_neg, net.input_norm)
    grads, stats = [], []
    for l, (W, b) in enumerate(zip(net.W, net.b)):
        D = W.shape[1]
        h_pos, h_neg = relu(x_pos @ W + b), relu(x_neg @ W + b)                 # forward
        g_pos, g_neg = goodness(h_pos), goodness(h_neg)                         # goodness
        logit_pos = ff_logit(g_pos, D, cfg.threshold, cfg.logit_scale)
        logit_neg = ff_logit(g_neg, D, cfg.threshold, cfg.logit_scale)
        dl_pos, dl_neg = dloss_dlogit(logit_pos, logit_neg)                     # dL/dlogit
        slope = logit_slope(D, cfg.logit_scale)                                 # dlogit/dg
        dz_pos = dloss_dz(h_pos, dl_pos * slope)                                # dL/dz
        dz_neg = dloss_dz(h_neg, dl_neg * slope)
        if cfg.peer_norm:
            peer_means[l][...] = peer_means_update(peer_means[l], h_pos)
            dz_pos = dz_pos + peer_dz(peer_means[l], h_pos, cfg.peer_norm, cfg.peer_gate)
        grads.append((x_pos.T @ dz_pos + x_neg.T @ dz_neg,                      # local gradient
                      dz_pos.sum(axis=0) + dz_neg.sum(axis=0)))
        stats.append((float(ff_loss(logit_pos, logit_neg)), float(g_pos.mean() / D),
                       float(g_neg.mean() / D)))
        x_pos, x_neg = rms_normalize(h_pos), rms_normalize(h_neg)               # next input
    return grads, stats


# ----------------------------------------------------------------------------
# The same step, fast. Each speed-up is one named piece, tested against the plain form:
#   1. bias as a weight row: inputs carry a constant 1, so [x, 1] [W; b] = x W + b and
#      one product gives the weight and bias gradients together;
#   2. label-slot identity at layer 0: [s x_img + s e_y] W = s x_img W + s W[y], so one
#      image product serves the positive, negative and neutral copies (s: the row's scale);
#   3. positives and negatives stacked into one (2B, D) product per layer above 0;
#   4. product orientation: (Wb^T x^T)^T: 1.3x faster on an Intel Xeon, even on an AMD EPYC;
#   5. dL/dz written over h, and the next input built in place.
# ----------------------------------------------------------------------------

def label_scale(x_img: np.ndarray, input_norm: str, label_energy: float = 1.0) -> np.ndarray:
    """Per row, the factor first_layer_inputs applies to x_img with its label slot holding
    a label of squared norm label_energy (1 for a one-hot, 10 * 0.1^2 for the neutral
    label). x_img has an empty label slot. (B,), or None for raw pixels (a factor of 1)."""
    if input_norm != "rms":
        return None
    mean_sq = (goodness(x_img) + x_img.dtype.type(label_energy)) / N_PIXELS
    return 1 / np.sqrt(mean_sq + x_img.dtype.type(RMS_EPS))


def with_bias_input(x: np.ndarray, scale=None) -> np.ndarray:
    """[scale * x, 1]: rows scaled, a constant 1 appended (speed-up 1). (N, D) -> (N, D + 1)"""
    out = np.empty((len(x), x.shape[1] + 1), x.dtype, like=x)
    np.multiply(x, 1 if scale is None else scale[:, None], out=out[:, :-1])
    out[:, -1] = 1
    return out


def training_inputs(x: np.ndarray, input_norm: str):
    """Images as the fast step takes them: x_in = [s x_img, 1], x_img being x with its
    label slot zeroed and s its scale for a one-hot label. Returns x_in (B, 785), s, x_img."""
    x_img = np.array(x, copy=True)
    x_img[:, :LABEL_SLOT] = 0
    s = label_scale(x_img, input_norm)
    return with_bias_input(x_img, s), s, x_img


def stacked_product(x: np.ndarray, Wb: np.ndarray) -> np.ndarray:
    """x Wb written (Wb^T x^T)^T (speed-up 4): with 2B = 256 rows and D = 2000, OpenBLAS
    ran (D, K) x (K, 2B) 1.3x faster than (2B, K) x (K, D) on an Intel Xeon; on an AMD
    EPYC the two are within 5%. (N, K) -> (N, D)"""
    return (Wb.T @ x.T).T


def first_layer_z(a0: np.ndarray, Wb0: np.ndarray, labels: np.ndarray, s: np.ndarray):
    """Pre-activations of layer 0 for each image carrying each of `labels` (speed-up 2).

    a0 = [s x_img, 1] Wb0 (B, D) is shared; the label pixel (value s) adds s W0[y].
    labels (kB,) repeat the batch k times. (kB, D)
    """
    B = len(a0)
    z = np.take(Wb0[:LABEL_SLOT], labels, axis=0)                   # (kB, D)
    if s is not None:
        z.reshape(-1, B, z.shape[1])[...] *= s[:, None]
    z.reshape(-1, B, z.shape[1])[...] += a0
    return z


def neutral_first_layer_z(a0, Wb0, s, s_neutral):
    """Layer 0 pre-activation with the neutral label, from the same a0 (speed-up 2). (B, D)"""
    label_part = NEUTRAL_LABEL * Wb0[:LABEL_SLOT].sum(axis=0)       # (D,)
    if s is None:
        return a0 + label_part
    b0 = Wb0[-1]
    return (a0 - b0) * (s_neutral / s)[:, None] + s_neutral[:, None] * label_part + b0


def ff_grads(net: Net, x_in, s, a0, y_pos, y_neg, cfg: Config, grads, peer_means=None):
    """ff_grads_plain with speed-ups 1-5: the local gradients of every layer for one batch,
    written into the flat vector `grads` (same layout as net.params).

    x_in, s: from training_inputs; a0 = x_in @ Wb0 (B, D1). Returns per-layer stats.
    """
    B = len(y_pos)
    labels = np.concatenate([y_pos, y_neg])                          # (2B,)
    grad_views = layer_views(grads, net.layer_sizes)
    stats, x = [], None
    for l, Wb in enumerate(net.Wb):
        D = Wb.shape[1]
        h = first_layer_z(a0, Wb, labels, s) if l == 0 else stacked_product(x, Wb)
        np.maximum(h, 0, out=h)                                      # (2B, D), rows: pos, neg
        g = goodness(h)
        logit = ff_logit(g, D, cfg.threshold, cfg.logit_scale)
        stats.append((float(ff_loss(logit[:B], logit[B:])), float(g[:B].mean() / D),
                      float(g[B:].mean() / D)))
        x_prev = x
        if l + 1 < len(net.Wb):                                      # next input, no gradient back
            x = with_bias_input(h, 1 / np.sqrt(g / D + g.dtype.type(RMS_EPS)))
        slope = g.dtype.type(logit_slope(D, cfg.logit_scale))               # dlogit/dg
        dl_dg = np.concatenate(dloss_dlogit(logit[:B], logit[B:])) * slope
        if cfg.peer_norm:
            peer_means[l][...] = peer_means_update(peer_means[l], h[:B])
            peer = peer_dz(peer_means[l], h[:B], cfg.peer_norm, cfg.peer_gate)
        dz = np.multiply(h, (2 * dl_dg)[:, None], out=h)             # dL/dz over h (speed-up 5)
        if cfg.peer_norm:
            dz[:B] += peer
        if l == 0:
            # both copies share the image rows; each label row gets its samples' s dz
            np.matmul(x_in.T, dz[:B] + dz[B:], out=grad_views[0])
            onehot = (np.arange(N_CLASSES, like=dz)[:, None] == labels).astype(dz.dtype)  # (10, 2B)
            label_dz = dz if s is None else dz * np.concatenate([s, s])[:, None]
            np.matmul(onehot, label_dz, out=grad_views[0][:LABEL_SLOT])
        else:
            np.matmul(x_prev.T, dz, out=grad_views[l])
    return stats


# ----------------------------------------------------------------------------
# The softmax head (Hinton's code): a linear softmax on the normalised activities of the
# layers after the first, computed with a neutral label. It picks hard negatives in
# training and is a fourth read-out.
# ----------------------------------------------------------------------------

def neutral_features(net: Net, z0: np.ndarray) -> np.ndarray:
    """Normalised activities of layers 1.. from layer 0's neutral pre-activation. (B, F)"""
    x = rms_normalize(relu(z0))
    feats = []
    for W, b in zip(net.W[1:], net.b[1:]):
        x = rms_normalize(relu(x @ W + b))
        feats.append(x)
    return np.concatenate(feats, axis=1)


def head_loss_and_grad(head, feats, y):
    """Cross-entropy of softmax(feats head) and its gradient wrt head. (), (F, 10), logits"""
    logits = feats @ head                                            # (B, 10)
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    rows = np.arange(len(y), like=p)
    loss = float(-np.log(p[rows, y] + 1e-30).mean())
    p[rows, y] -= 1
    return loss, feats.T @ p / len(y), logits


# ----------------------------------------------------------------------------
# Optimisers: Adam (the earlier NumPy run) and smoothed SGD with weight cost (Hinton's
# code). Both update the flat vector in place; param_parts gives per-layer learning rates.
# ----------------------------------------------------------------------------

@dataclass
class SmoothedSGD:
    """Hinton's code: g = s g + (1 - s) grad, then p -= lr (g + weight_cost p)."""
    g: np.ndarray
    smoothing: float = 0.9
    weight_cost: float = 0.0


ADAM_CHUNK = 65536       # elements per chunk: the chunk's arrays stay in L2 cache
# Dead units get exactly zero gradients, so their Adam moments decay geometrically
# into float32 subnormals, whose arithmetic is ~100x slower on x86. Every GUARD_EVERY
# steps, adding then subtracting 2^-100 leaves each |m|, |v| > 2^-76 exactly as it is
# and rounds smaller values to multiples of 2^-123, flushing subnormals to 0. Between
# guards m shrinks by at most 0.9^16 = 0.19, so a rounded value stays normal.
SUBNORMAL_GUARD = DTYPE(2.0 ** -100)
GUARD_EVERY = 16


# DEVIATION (baseline recipe): Adam, where Hinton's code uses smoothed SGD (--optimizer sgd).
@dataclass
class Adam:
    """Adam (Kingma & Ba 2015) state over the flat vector. Stored scaled, m' = m / (1 - b1)
    and v' = v / (1 - b2), so an update is m' = b1 m' + g, v' = b2 v' + g^2: two fewer
    passes over memory; the constants move into the step size and epsilon."""
    m: np.ndarray
    v: np.ndarray
    t: int = 0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


def adam_step(opt: Adam, params, grads, parts):
    """One Adam step in place, in cache-sized chunks. parts: [(start, stop, n_bias, lr)]."""
    opt.t += 1
    b1, b2 = DTYPE(opt.beta1), DTYPE(opt.beta2)
    c1, c2 = 1 - opt.beta1 ** opt.t, 1 - opt.beta2 ** opt.t
    # lr (m / c1) / (sqrt(v / c2) + eps) with m = (1 - b1) m', v = (1 - b2) v'
    root = math.sqrt(c2 / (1 - opt.beta2))
    eps = DTYPE(opt.eps * root)
    guard = opt.t % GUARD_EVERY == 0
    # CPU: cache-sized chunks; GPU: one chunk per part (each chunk costs kernel launches)
    chunk = ADAM_CHUNK if isinstance(params, np.ndarray) else len(params)
    t = np.empty(min(chunk, len(params)), DTYPE, like=params)
    for start, stop, _, lr in parts:
        inv_step = DTYPE(1 / (lr * (1 - opt.beta1) / c1 * root))
        for a in range(start, stop, chunk):
            z = min(a + chunk, stop)
            p, g, m, v, tmp = params[a:z], grads[a:z], opt.m[a:z], opt.v[a:z], t[:z - a]
            m *= b1
            m += g
            v *= b2
            np.multiply(g, g, out=tmp)
            v += tmp
            if guard:
                for state in (m, v):
                    state += SUBNORMAL_GUARD
                    state -= SUBNORMAL_GUARD
            np.sqrt(v, out=tmp)
            tmp += eps
            tmp *= inv_step
            np.divide(m, tmp, out=tmp)
            p -= tmp


def sgd_step(opt: SmoothedSGD, params, grads, parts):
    """One smoothed-SGD step in place: g = s g + (1 - s) grad; p -= lr (g + weight_cost p),
    with no weight cost on the last n_bias entries of a part (its biases). Overwrites grads."""
    opt.g *= opt.g.dtype.type(opt.smoothing)
    grads *= grads.dtype.type(1 - opt.smoothing)                     # grads is scratch from here
    opt.g += grads
    for start, stop, n_bias, lr in parts:
        if opt.weight_cost:
            params[start:stop - n_bias] *= params.dtype.type(1 - lr * opt.weight_cost)
        np.multiply(opt.g[start:stop], params.dtype.type(lr), out=grads[start:stop])
        params[start:stop] -= grads[start:stop]


def param_parts(cfg: Config, lr: float) -> list:
    """[(start, stop, n_bias, lr)] per layer of the flat vector: layer 0 at lr, the
    others at lr * deep_lr_scale; each layer's biases are its last D_out entries."""
    # DEVIATION (ours, off by default): slower deep layers keep their units alive under Adam.
    parts, i = [], 0
    for l, (d_in, d_out) in enumerate(zip(cfg.layer_sizes[:-1], cfg.layer_sizes[1:])):
        n = (d_in + 1) * d_out
        parts.append((i, i + n, d_out, lr if l == 0 else lr * cfg.deep_lr_scale))
        i += n
    return parts


def lr_at(cfg: Config, step: int, n_steps: int) -> float:
    """Learning rate at a 0-based step. cooldown: constant for the first half of training,
    then falling linearly to 0, as the gain in Hinton's code."""
    if cfg.lr_schedule == "cooldown" and step >= n_steps // 2:
        return cfg.lr * (n_steps - step) / (n_steps - n_steps // 2)
    return cfg.lr


# ----------------------------------------------------------------------------
# Training.
# ----------------------------------------------------------------------------

class NonFiniteLoss(FloatingPointError):
    """The FF loss became NaN or infinite."""


class Interrupted(Exception):
    """Ctrl-C during training; the last complete epoch was saved to `path`."""
    def __init__(self, path, epoch):
        super().__init__(f"interrupted; the state after epoch {epoch} is in {path}")
        self.path, self.epoch = path, epoch


@dataclass
class TrainState:
    """Everything that changes while training: weights, optimiser states, random streams."""
    net: Net
    opt: Adam | SmoothedSGD
    head_opt: SmoothedSGD | None
    peer_means: list           # per layer, running mean activity of each unit (D_l,)
    rngs: dict                 # order, negatives, jitter: one stream each
    epoch: int = 0


RNG_STREAMS = ("order", "negatives", "jitter")


def init_state(cfg: Config) -> TrainState:
    """Fresh weights and optimisers; one SeedSequence spawns a stream for each use."""
    rng_init, *streams = (np.random.default_rng(s)
                          for s in np.random.SeedSequence(cfg.seed).spawn(1 + len(RNG_STREAMS)))
    net = init_net(cfg.layer_sizes, rng_init, cfg.init, cfg.input_norm, cfg.softmax_head)
    n = len(net.params)
    opt = (Adam(np.zeros(n, DTYPE), np.zeros(n, DTYPE)) if cfg.optimizer == "adam" else
           SmoothedSGD(np.zeros(n, DTYPE), cfg.smoothing, cfg.weight_cost))
    head_opt = (SmoothedSGD(np.zeros(net.head.size, DTYPE), cfg.smoothing, cfg.head_weight_cost)
                if cfg.softmax_head else None)
    return TrainState(net, opt, head_opt, [np.full(d, PEER_START, DTYPE) for d in cfg.layer_sizes[1:]],
                      dict(zip(RNG_STREAMS, streams)))


def to_device(state: TrainState, xp) -> TrainState:
    """The training state with its arrays moved to xp's device (unchanged for NumPy)."""
    if xp is np:
        return state
    net = state.net
    state.net = Net(net.layer_sizes, xp.asarray(net.params), net.input_norm,
                    None if net.head is None else xp.asarray(net.head))
    for opt in (o for o in (state.opt, state.head_opt) if o is not None):
        for k, v in vars(opt).items():
            if isinstance(v, np.ndarray):
                setattr(opt, k, xp.asarray(v))
    state.peer_means = [xp.asarray(r) for r in state.peer_means]
    return state


def candidate_goodness(net: Net, a0, s, depth: int) -> np.ndarray:
    """Goodness of layers 0..depth-1 for every image with each of the 10 labels, from the
    shared image product a0 = [s x_img, 1] Wb0 (speed-up 2). (B, 10, depth)"""
    B = len(a0)
    labels = np.repeat(np.arange(N_CLASSES, like=a0), B)
    out = np.empty((N_CLASSES, B, depth), DTYPE, like=a0)
    for l in range(depth):
        h = first_layer_z(a0, net.Wb[0], labels, s) if l == 0 else x @ net.Wb[l]  # (10B, D)
        np.maximum(h, 0, out=h)                                      # ReLU in place
        g = goodness(h)
        out[:, :, l] = g.reshape(N_CLASSES, B)
        if l + 1 < depth:
            x = with_bias_input(h, 1 / np.sqrt(g / h.shape[1] + g.dtype.type(RMS_EPS)))
    return out.transpose(1, 0, 2)


def train_step(state: TrainState, cfg: Config, x_batch, y_pos, lr: float, grads):
    """One minibatch: pick the negatives, take every layer's local gradient, update.
    Returns per-layer (loss, g_pos / D, g_neg / D) and the softmax head's loss (or nan)."""
    net = state.net
    x_in, s, x_img = training_inputs(x_batch, net.input_norm)        # (B, 785), (B,) or None
    a0 = x_in @ net.Wb[0]                                            # layer 0's one image product
    head_loss, logits = float("nan"), None
    if net.head is not None:                                         # Hinton's code: neutral pass
        s_neutral = label_scale(x_img, net.input_norm, LABEL_SLOT * NEUTRAL_LABEL ** 2)
        feats = neutral_features(net, neutral_first_layer_z(a0, net.Wb[0], s, s_neutral))
        head_loss, d_head, logits = head_loss_and_grad(net.head, feats, np.asarray(y_pos, like=a0))
        sgd_step(state.head_opt, net.head.reshape(-1), d_head.reshape(-1),
                 [(0, net.head.size, 0, cfg.head_lr * lr / cfg.lr)])
    rng = state.rngs["negatives"]
    if cfg.neg_sampling == "softmax":                                # the head's logits before its update
        y_neg = draw_hard_labels(y_pos, to_host(logits), rng)
    elif cfg.neg_sampling in ("hard", "hard-first"):
        # DEVIATION (ours): hard-first scores candidate labels with layer 0 alone (~free).
        depth = 1 if cfg.neg_sampling == "hard-first" else len(net.Wb)
        widths = np.asarray(net.layer_sizes[1:depth + 1], DTYPE, like=a0)
        per_unit = (candidate_goodness(net, a0, s, depth) / widths).sum(axis=2)
        y_neg = draw_hard_labels(y_pos, to_host(per_unit), rng)            # softmax of mean(h^2)
    else:
        y_neg = draw_wrong_labels(y_pos, rng)
    y_pos, y_neg = (np.asarray(y, like=a0) for y in (y_pos, y_neg))    # host draws to the device
    stats = ff_grads(net, x_in, s, a0, y_pos, y_neg, cfg, grads, state.peer_means)
    parts = param_parts(cfg, lr)
    if cfg.optimizer == "adam":
        adam_step(state.opt, net.params, grads, parts)
    else:
        sgd_step(state.opt, net.params, grads, parts)
    return stats, head_loss


def train_epoch(state: TrainState, cfg: Config, x, y, progress=None) -> np.ndarray:
    """One pass over (x, y) (host arrays) in shuffled minibatches. Returns the epoch's mean
    (loss, g_pos / D, g_neg / D) per layer (L, 3) and the head's mean loss.
    progress(i, n_batches), if given, is called about once a second."""
    n = len(x)
    if cfg.jitter:
        x = jitter_images(x, state.rngs["jitter"], cfg.jitter)
    x = np.asarray(x, like=state.net.params)                         # to the device, if any
    order = state.rngs["order"].permutation(n)
    n_batches = math.ceil(n / cfg.batch_size)
    n_steps = n_batches * cfg.n_epochs
    grads = np.empty_like(state.net.params)
    sums, head_sum = np.zeros((len(state.net.Wb), 3)), 0.0
    shown = time.monotonic()
    for i in range(n_batches):
        idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        lr = lr_at(cfg, state.epoch * n_batches + i, n_steps)
        stats, head_loss = train_step(state, cfg, x[np.asarray(idx, like=x)], y[idx], lr, grads)
        if not all(math.isfinite(s[0]) for s in stats):
            raise NonFiniteLoss(f"the FF loss became non-finite in epoch {state.epoch + 1}, "
                                f"batch {i + 1} (try a smaller --lr)")
        sums += stats
        head_sum += head_loss
        if progress and time.monotonic() - shown > 1:
            progress(i + 1, n_batches)
            shown = time.monotonic()
    state.epoch += 1
    return sums / n_batches, head_sum / n_batches


def new_history():
    return {"epoch": [], "loss": [], "g_pos": [], "g_neg": [], "head_loss": [], "train_acc": [],
            "test_acc": [], "seconds": []}


def train(cfg: Config, x_train, y_train, evaluation=None, callback=None, log=print,
          checkpoint=None, resume=None):
    """Train an FF net on (x_train, y_train) as cfg says; return (net, history).

    evaluation: optional ((x_tr, y_tr), (x_te, y_te)) scored after every epoch with
    cfg.predict_mode. callback(epoch, net, history) runs after each epoch.
    checkpoint: path written atomically after every epoch (and on Ctrl-C);
    resume: a checkpoint to continue from (same training config; n_epochs may grow).
    """
    if resume:
        state, history = load_checkpoint(resume, cfg)
        if log:
            log(f"resumed from {resume} after epoch {state.epoch}")
    else:
        state, history = init_state(cfg), new_history()
    state = to_device(state, array_module(cfg.device))
    progress = None
    if log and sys.stderr.isatty():
        def progress(i, n):
            print(f"\r  epoch {state.epoch + 1}: batch {i}/{n}", end="", file=sys.stderr, flush=True)
    snapshot = checkpoint_arrays(state, cfg, history)
    try:
        for epoch in range(state.epoch + 1, cfg.n_epochs + 1):
            t0 = time.perf_counter()
            means, head_loss = train_epoch(state, cfg, x_train, y_train, progress)
            if progress:
                print("\r\033[K", end="", file=sys.stderr, flush=True)
            history["epoch"].append(epoch)
            for k, column in (("loss", 0), ("g_pos", 1), ("g_neg", 2)):
                history[k].append(means[:, column].tolist())
            history["head_loss"].append(head_loss)
            if evaluation is not None:
                (xa, ya), (xb, yb) = evaluation
                history["train_acc"].append(accuracy(state.net, xa, ya, cfg.predict_mode))
                history["test_acc"].append(accuracy(state.net, xb, yb, cfg.predict_mode))
            history["seconds"].append(time.perf_counter() - t0)
            snapshot = checkpoint_arrays(state, cfg, history)
            if checkpoint:
                atomic_savez(checkpoint, snapshot)
            if log:
                log(epoch_line(epoch, cfg.n_epochs, history, "val" if cfg.val_split else "test"))
            if callback:
                callback(epoch, state.net, history)
    except KeyboardInterrupt:
        path = checkpoint or "ff_interrupted.npz"
        atomic_savez(path, snapshot)
        raise Interrupted(path, int(snapshot["epoch"])) from None
    return state.net, history


def epoch_line(epoch, n_epochs, history, held_out="test"):
    """One fixed-width progress line: per-layer loss and goodness per unit, accuracies on the
    training subset and the held-out set ("test", or "val" with --val-split), time, ETA."""
    layers = " ".join(f"L{l} {lo:.3f} {gp:5.2f}/{gn:5.2f}" for l, (lo, gp, gn) in
                      enumerate(zip(history["loss"][-1], history["g_pos"][-1], history["g_neg"][-1])))
    head = "" if math.isnan(history["head_loss"][-1]) else f" head {history['head_loss'][-1]:.3f}"
    acc = ""
    if history["train_acc"]:
        acc = f" | train {100 * history['train_acc'][-1]:6.2f}% {held_out} {100 * history['test_acc'][-1]:6.2f}%"
    eta = np.mean(history["seconds"]) * (n_epochs - epoch)
    return f"epoch {epoch:3d}/{n_epochs} | {layers}{head}{acc} | {history['seconds'][-1]:5.1f}s ETA {eta:4.0f}s"


# ----------------------------------------------------------------------------
# Prediction: try every label, sum goodness, take the argmax (or ask the softmax head).
# ----------------------------------------------------------------------------

PREDICT_CHUNK = 1000     # images per chunk (x 10 candidate labels)


def readout_layers(mode: str, n_layers: int):
    """Which layers' goodness a read-out sums; Hinton 2022 skips the first."""
    layers = {"all": list(range(n_layers)), "first": [0], "skip-first": list(range(1, n_layers))}
    if mode not in layers:
        raise ValueError(f"read-out {mode!r} does not sum goodness (one of {', '.join(layers)})")
    return layers[mode]


def label_goodness(net: Net, x: np.ndarray, layers=None) -> np.ndarray:
    """Goodness sum(h^2) of every layer for every candidate label. (N, 784) -> (N, 10, L)

    With `layers`, only the layers up to the last one named are computed, and the
    result holds just those layers, in order.
    """
    depth = len(net.Wb) if layers is None else max(layers) + 1
    out = np.empty((len(x), N_CLASSES, depth), DTYPE)
    for c in range(0, len(x), PREDICT_CHUNK):
        chunk = np.asarray(x[c:c + PREDICT_CHUNK], like=net.params)      # to the net's device
        x_in, s, _ = training_inputs(chunk, net.input_norm)
        out[c:c + len(x_in)] = to_host(candidate_goodness(net, x_in @ net.Wb[0], s, depth))
    return out if layers is None else out[:, :, layers]


def head_logits(net: Net, x: np.ndarray) -> np.ndarray:
    """The softmax head's logits, from a neutral-label pass. (N, 784) -> (N, 10)"""
    out = np.empty((len(x), N_CLASSES), DTYPE)
    for c in range(0, len(x), PREDICT_CHUNK):
        chunk = np.asarray(embed_neutral_label(x[c:c + PREDICT_CHUNK]), like=net.params)
        x_in = first_layer_inputs(chunk, net.input_norm)
        out[c:c + len(x_in)] = to_host(neutral_features(net, x_in @ net.W[0] + net.b[0]) @ net.head)
    return out


def readout_available(mode: str, net: Net) -> bool:
    return net.head is not None if mode == "softmax" else mode != "skip-first" or len(net.Wb) > 1


def predict(net: Net, x: np.ndarray, mode: str = "all") -> np.ndarray:
    """Predicted labels (N,) by one read-out."""
    if mode == "softmax":
        return head_logits(net, x).argmax(axis=1)
    return label_goodness(net, x, readout_layers(mode, len(net.Wb))).sum(axis=2).argmax(axis=1)


def accuracy(net, x, y, mode="all") -> float:
    return float((predict(net, x, mode) == y).mean())


def dead_units(net: Net, x: np.ndarray, y: np.ndarray) -> list:
    """Per layer, units never active on x carrying its true labels."""
    alive = [np.zeros(d, bool) for d in net.layer_sizes[1:]]
    for c in range(0, len(x), PREDICT_CHUNK):
        chunk = np.asarray(embed_label(x[c:c + PREDICT_CHUNK], y[c:c + PREDICT_CHUNK]), like=net.params)
        h = first_layer_inputs(chunk, net.input_norm)
        for l, (W, b) in enumerate(zip(net.W, net.b)):
            h = relu((rms_normalize(h) if l else h) @ W + b)
            alive[l] |= to_host((h > 0).any(axis=0))
    return [int((~a).sum()) for a in alive]


def evaluate(net: Net, x, y, headline_mode="all") -> dict:
    """Accuracy of every available read-out, per-class accuracy and dead units on (x, y)."""
    g = label_goodness(net, x)
    preds = {m: g[:, :, readout_layers(m, len(net.Wb))].sum(axis=2).argmax(axis=1)
             for m in ("all", "first", "skip-first") if readout_available(m, net)}
    if net.head is not None:
        preds["softmax"] = head_logits(net, x).argmax(axis=1)
    pred = preds[headline_mode]
    per_class = {str(k): {"correct": int(((pred == y) & (y == k)).sum()),
                          "total": int((y == k).sum())} for k in range(N_CLASSES)}
    correct = int((pred == y).sum())
    return {"test_accuracy": correct / len(y), "test_correct": correct, "test_total": len(y),
            "predict_mode": headline_mode, "per_class": per_class,
            "prediction_modes": {m: float((p == y).mean()) for m, p in preds.items()},
            "dead_units": dead_units(net, x, y)}


# ----------------------------------------------------------------------------
# Save and load: .npz files without pickles, written atomically.
# ----------------------------------------------------------------------------

class ModelError(Exception):
    """A model or checkpoint file is missing, unreadable or does not fit this run."""


def versions() -> dict:
    return {"python": platform.python_version(), "numpy": np.__version__,
            "platform": platform.platform()}


def atomic_write_bytes(path, payload: bytes):
    """Write to a temporary file beside path, then rename: never a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)           # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_savez(path, arrays: dict):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def read_npz(path, what="model") -> dict:
    """Every array of an .npz file, without pickles; a ModelError says what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ModelError(f"{path}: no such {what} file") from None
    except (OSError, ValueError, zlib.error, EOFError) as e:
        reason = "not a .npz archive" if isinstance(e, ValueError) else e
        raise ModelError(f"{path} is not a readable .npz {what} file ({reason})") from None


def npz_header(kind: str, cfg: Config, history: dict) -> dict:
    return {"format_version": np.array(FORMAT_VERSION), "kind": np.array(kind),
            "config": np.array(json.dumps(dataclasses.asdict(cfg))),
            "history": np.array(json.dumps(history)), "versions": np.array(json.dumps(versions()))}


def read_ff_npz(path, kind: str):
    """(arrays, cfg) of a model or checkpoint file written by this version."""
    data = read_npz(path, kind)
    if str(data.get("kind", "")) != kind or int(data.get("format_version", -1)) != FORMAT_VERSION:
        hint = "a model file? use the file written by --checkpoint" if kind == "checkpoint" else \
            "written by ff_label_in_input.py --save of this version?"
        raise ModelError(f"{path} is not an FF {kind} of format version {FORMAT_VERSION} ({hint})")
    try:
        cfg = Config(**json.loads(str(data["config"])))
    except (TypeError, ValueError) as e:
        raise ModelError(f"{path} has an unreadable config ({e})") from None
    if data.get("params") is None or data["params"].shape != (n_params(cfg.layer_sizes),):
        raise ModelError(f"{path}: the weights do not match layer sizes {cfg.layer_sizes}")
    if cfg.softmax_head and (data.get("head") is None or
                             data["head"].shape != (head_width(cfg.layer_sizes), N_CLASSES)):
        raise ModelError(f"{path}: the softmax head is missing or has the wrong shape")
    return data, cfg


def save_model(path, net: Net, cfg: Config, history: dict, metrics: dict | None = None):
    """model.npz: weights (the flat vector), config, history, metrics and versions."""
    arrays = {**npz_header("model", cfg, history), "metrics": np.array(json.dumps(metrics or {})),
              "params": to_host(net.params)}
    if net.head is not None:
        arrays["head"] = to_host(net.head)
    atomic_savez(path, arrays)


def load_model(path):
    """Return (net, cfg, history, metrics) from a model.npz, checking what it reads."""
    data, cfg = read_ff_npz(path, "model")
    head = data["head"].astype(DTYPE) if cfg.softmax_head else None
    net = Net(cfg.layer_sizes, data["params"].astype(DTYPE), cfg.input_norm, head)
    return net, cfg, json.loads(str(data["history"])), json.loads(str(data["metrics"]))


def checkpoint_arrays(state: TrainState, cfg: Config, history: dict) -> dict:
    """A copy of everything needed to continue training exactly where it stands."""
    arrays = {**npz_header("checkpoint", cfg, history), "epoch": np.array(state.epoch),
              "rngs": np.array(json.dumps({k: r.bit_generator.state for k, r in state.rngs.items()})),
              "params": np.array(to_host(state.net.params)),
              "peer_means": np.concatenate([to_host(r) for r in state.peer_means])}
    arrays.update({f"opt_{k}": np.array(to_host(v) if hasattr(v, "shape") else v)
                   for k, v in vars(state.opt).items()})
    if state.net.head is not None:
        arrays["head"], arrays["head_g"] = np.array(to_host(state.net.head)), np.array(to_host(state.head_opt.g))
    return arrays


def load_checkpoint(path, cfg: Config):
    """(state, history) from a checkpoint of the same training config. n_epochs may grow
    unless the learning-rate schedule depends on it (cooldown)."""
    data, saved_cfg = read_ff_npz(path, "checkpoint")
    saved, current = dataclasses.asdict(saved_cfg), dataclasses.asdict(cfg)
    differ = [f"--{k.replace('_', '-')} {saved[k]} (now {current[k]})"
              for k in TRAINING_FIELDS if k != "n_epochs" and saved[k] != current[k]]
    if differ:
        raise ModelError(f"{path} was written by a run with other settings: " + ", ".join(differ))
    if saved["n_epochs"] != cfg.n_epochs and cfg.lr_schedule == "cooldown":
        raise ModelError(f"{path}: cannot change --n-epochs from {saved['n_epochs']} to "
                         f"{cfg.n_epochs}: the cooldown schedule depends on it")
    if int(data["epoch"]) > cfg.n_epochs:
        raise ModelError(f"{path} is already at epoch {int(data['epoch'])} > --n-epochs {cfg.n_epochs}")
    state = init_state(cfg)
    state.net.params[...] = data["params"]
    for f in dataclasses.fields(state.opt):
        value = data[f"opt_{f.name}"]
        setattr(state.opt, f.name, value.astype(DTYPE) if value.ndim else value.item())
    state.peer_means = np.split(data["peer_means"].astype(DTYPE), np.cumsum(cfg.layer_sizes[1:-1]))
    if state.net.head is not None:
        state.net.head[...], state.head_opt.g[...] = data["head"], data["head_g"]
    for k, rng_state in json.loads(str(data["rngs"])).items():
        state.rngs[k].bit_generator.state = rng_state
    state.epoch = int(data["epoch"])
    return state, json.loads(str(data["history"]))


# ----------------------------------------------------------------------------
# CLI.
# ----------------------------------------------------------------------------

def bounded(kind, low=-math.inf, high=math.inf, strict=False):
    """An argparse type: a finite int or float in [low, high] (low excluded when strict),
    else a one-line reason."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text}")
        if value < low or (strict and value == low):
            bound = f"> {low}" if strict else (f"at least {low}" if kind is int else f">= {low}")
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        if value > high:
            raise argparse.ArgumentTypeError(f"at most {high}, got {text}")
        return value
    return parse


positive_int = bounded(int, 1)
positive_float = bounded(float, 0.0, strict=True)
nonnegative_float = bounded(float, 0.0)
finite_float = bounded(float)


def layer_sizes_arg(text):
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers like 784,500,500") from None
    if len(sizes) < 2:
        raise argparse.ArgumentTypeError("needs the input size and at least one hidden layer")
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"every size must be positive, got {text}")
    if sizes[0] != N_PIXELS:
        raise argparse.ArgumentTypeError(f"the first size is the input and must be {N_PIXELS}, "
                                         f"got {sizes[0]}")
    return sizes


FLAG_TYPES = {"seed": int, "n_epochs": positive_int, "layer_sizes": layer_sizes_arg,
              "batch_size": positive_int, "lr": positive_float, "deep_lr_scale": positive_float,
              "smoothing": bounded(float, 0.0, 0.999), "weight_cost": nonnegative_float,
              "threshold": finite_float, "peer_norm": nonnegative_float, "head_lr": positive_float,
              "head_weight_cost": nonnegative_float, "jitter": bounded(int, 0, 27),
              "train_subset": bounded(int, 1, N_TRAIN), "val_split": bounded(int, 0),
              "eval_subset": bounded(int, 1, N_TEST)}


class OldGoodnessFlag(argparse.Action):
    """--goodness mean|sum, the earlier spelling of --logit-scale 1|D."""
    def __call__(self, parser, namespace, value, option_string=None):
        namespace.logit_scale = {"mean": "1", "sum": "D"}[value]


def add_config_flags(p: argparse.ArgumentParser, skip=()):
    """One flag per Config field, its help and type from the field (shared by the scripts)."""
    for f in dataclasses.fields(Config):
        if f.name in skip:
            continue
        flag, meta = "--" + f.name.replace("_", "-"), f.metadata
        if f.type == "bool":
            p.add_argument(flag, action="store_true", help=meta["help"])
        elif f.name == "jitter":
            p.add_argument(flag, type=FLAG_TYPES["jitter"], nargs="?", const=2, metavar="PX",
                           help=meta["help"])
        else:
            p.add_argument(flag, type=FLAG_TYPES.get(f.name, str), choices=meta.get("choices"),
                           help=meta["help"])
    if "logit_scale" not in skip:
        p.add_argument("--goodness", choices=("mean", "sum"), action=OldGoodnessFlag,
                       help="earlier spelling: mean = --logit-scale 1, sum = --logit-scale D")
    return p


def apply_recipe(p: argparse.ArgumentParser, argv):
    """Set the parser's defaults from Config and the chosen --recipe's preset."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe", choices=tuple(RECIPES), default="baseline")
    recipe = pre.parse_known_args(argv)[0].recipe
    p.set_defaults(**{**dataclasses.asdict(Config()), **RECIPES[recipe], "recipe": recipe})


def build_parser(argv=None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Supervised Forward-Forward (Hinton 2022) on MNIST, label in the first "
                    "10 pixels.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_flags(p)
    p.add_argument("--checkpoint", metavar="PATH", help="write a resumable checkpoint here after every epoch")
    p.add_argument("--resume", metavar="PATH", help="continue from this checkpoint (same training flags)")
    p.add_argument("--data-dir", help="folder with the MNIST .gz files (default: $HINTON_MNIST_DIR, "
                                      "else ~/.cache/hinton-mnist)")
    p.add_argument("--save", metavar="PATH", help="write the model here (.npz)")
    p.add_argument("--metrics", metavar="PATH", help="write the final results here as JSON")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    apply_recipe(p, argv)
    return p


def check_config(p, cfg: Config):
    """Refuse combinations that cannot run, with a one-line reason (exit 2)."""
    n_train = cfg.train_subset or N_TRAIN
    if cfg.val_split >= n_train:
        p.error(f"--val-split: must leave training images, got {cfg.val_split} of {n_train}")
    if cfg.val_split and cfg.eval_subset > cfg.val_split:
        p.error(f"--eval-subset: at most --val-split ({cfg.val_split}), got {cfg.eval_subset}")
    deep = len(cfg.layer_sizes) >= 3
    if cfg.predict_mode == "skip-first" and not deep:
        p.error("--predict-mode skip-first needs at least two hidden layers")
    if cfg.softmax_head and not deep:
        p.error("--softmax-head needs at least two hidden layers (it reads the layers after the first)")
    if cfg.neg_sampling == "softmax" and not cfg.softmax_head:
        p.error("--neg-sampling softmax needs --softmax-head")
    if cfg.predict_mode == "softmax" and not cfg.softmax_head:
        p.error("--predict-mode softmax needs --softmax-head")


def config_from_args(args) -> Config:
    """The Config of parsed flags; fields a script did not declare keep their defaults."""
    names = {f.name for f in dataclasses.fields(Config)}
    return Config(**{k: v for k, v in vars(args).items() if k in names})


def parse_args(argv=None):
    """(args, cfg): bad values exit 2 before any data is touched."""
    p = build_parser(argv)
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    check_config(p, cfg)
    try:
        array_module(cfg.device)
    except DeviceError as e:
        p.error(str(e))
    if args.resume and not Path(args.resume).is_file():
        p.error(f"--resume: no such file {args.resume}")
    for flag in ("save", "metrics", "checkpoint"):
        path = getattr(args, flag)
        if path is not None:
            if Path(path).expanduser().is_dir():
                p.error(f"--{flag}: {path} is a folder; give a file name")
            parent = Path(path).expanduser().resolve().parent
            if not parent.is_dir() or not os.access(parent, os.W_OK):
                p.error(f"--{flag}: cannot write to folder {parent}")
    return args, cfg


def split_data(cfg: Config, x_train, y_train, x_test, y_test):
    """Training subset and validation split as cfg says: (train, held-out, held-out name)."""
    if cfg.train_subset:
        x_train, y_train = x_train[:cfg.train_subset], y_train[:cfg.train_subset]
    if cfg.val_split:
        # DEVIATION (tuning only): the held-out images replace the test set everywhere
        return ((x_train[:-cfg.val_split], y_train[:-cfg.val_split]),
                (x_train[-cfg.val_split:], y_train[-cfg.val_split:]), "validation")
    return (x_train, y_train), (x_test, y_test), "test"


def report(metrics: dict) -> str:
    """The closing summary: headline accuracy, per-class table, read-outs, dead units."""
    lines = [f"{metrics['evaluated_on']} accuracy ({metrics['predict_mode']}): {metrics['test_correct']}/"
             f"{metrics['test_total']} ({100 * metrics['test_accuracy']:.2f}%)",
             "class  correct/total  accuracy"]
    for k, c in metrics["per_class"].items():
        lines.append(f"{k:>5}  {c['correct']:>7}/{c['total']:<5}  {100 * c['correct'] / max(c['total'], 1):7.2f}%")
    lines.append("read-outs: " + "  ".join(
        f"{m} {100 * a:.2f}%" for m, a in metrics["prediction_modes"].items()))
    lines.append("dead units: " + "  ".join(
        f"L{l} {d}/{n}" for l, (d, n) in enumerate(zip(metrics["dead_units"], metrics["layer_widths"]))))
    return "\n".join(lines)


def fail(message, code=1):
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv=None, checksums=None, mirrors=None) -> dict:
    """Train, report and save; return the metrics dict. checksums and mirrors go to
    load_mnist (tests use small synthetic files)."""
    args, cfg = parse_args(argv)
    log = None if args.quiet else print
    try:
        data = load_mnist(args.data_dir, checksums, mirrors)
    except DataError as e:
        fail(e)
    (x_train, y_train), (x_test, y_test), held_out = split_data(cfg, *data)
    k = cfg.eval_subset
    evaluation = ((x_train[:k], y_train[:k]), (x_test[:k], y_test[:k]))
    if log:
        log("config: " + json.dumps(dataclasses.asdict(cfg)))
        log(f"data: {len(x_train)} training images; every epoch scores {min(k, len(x_train))} "
            f"train + {min(k, len(x_test))} {held_out} images; per layer: loss g_pos/g_neg per unit")
    try:
        net, history = train(cfg, x_train, y_train, evaluation=evaluation, log=log,
                             checkpoint=args.checkpoint, resume=args.resume)
    except NonFiniteLoss as e:
        fail(f"{e}; no model was saved")
    except ModelError as e:
        fail(e)
    except Interrupted as e:
        flags = list(sys.argv[1:] if argv is None else argv)
        if "--resume" in flags:
            i = flags.index("--resume")
            del flags[i:i + 2]
        print(f"\n{e}. To continue: python3 {Path(__file__).name} {' '.join(flags)} "
              f"--resume {e.path}", file=sys.stderr)
        raise SystemExit(130)
    train_seconds = sum(history["seconds"])                          # resumed epochs included
    x_final, y_final = (x_test, y_test) if cfg.full_test else evaluation[1]
    metrics = evaluate(net, x_final, y_final, cfg.predict_mode)
    metrics.update({"evaluated_on": held_out, "config": dataclasses.asdict(cfg),
                    "command": "python3 ff_label_in_input.py " + " ".join(
                        sys.argv[1:] if argv is None else argv),
                    "train_seconds": train_seconds, "layer_widths": cfg.layer_sizes[1:],
                    "final_train_accuracy": history["train_acc"][-1],
                    "final_layer_stats": {k: history[k][-1] for k in ("loss", "g_pos", "g_neg")},
                    "versions": versions()})
    if log:
        log(report(metrics))
        log(f"training took {train_seconds:.1f}s")
    if args.save:
        save_model(args.save, net, cfg, history, metrics)
        if log:
            log(f"saved model to {args.save}")
    if args.metrics:
        atomic_write_bytes(args.metrics, (json.dumps(metrics, indent=2) + "\n").encode())
    return metrics


if __name__ == "__main__":
    main()
