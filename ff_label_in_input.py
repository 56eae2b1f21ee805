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

The paper, sentence by sentence, and where the code says it (every name here is defined
above the line "The same step, fast"; tests/test_numerics.py checks that):
  "the first 10 pixels contain a one of N representation of the label"   embed_label
  "negative data ... the same image with an incorrect label"              negative_labels, wrong_labels
  "goodness ... the sum of the squared neural activities" (sec. 2)        goodness
  "probability that an input vector is positive ... logistic function
   ... goodness minus some threshold" (sec. 2)                            ff_logit, ff_loss
  "layer normalization ... removes all of the information that was used
   to determine the goodness in the layer" (sec. 2.1)                     rms_normalize
  one objective per layer, no backpropagation between layers              ff_layer_grad_plain, ff_grads_plain
  "run the net ... with a particular label ... accumulate goodness in
   all but the first hidden layer" (sec. 3.3)                             label_goodness_plain, readout_layers
  "a neutral label ... a softmax" trained on the hidden activities        neutral_features, head_loss_and_grad
  "use the network itself to generate the negative labels" / hard ones    hard_labels
  "jittering the images by up to two pixels in each direction"            jitter_images
  peer normalisation of each unit's mean activity (sec. 3.5, his code)    peer_dz

Reading order: config and recipes -> the method in plain NumPy (all a reader needs to
check it against the paper) -> the named speed-ups, each behind one entry point ->
optimisers -> training (one entry, train_step, for every schedule and both step forms)
-> prediction and evaluation -> machinery (device, data, files, CLI). dtype policy:
float32 for data, weights and training; the tests check the gradients in float64.
Importing this module does nothing.
"""

from __future__ import annotations

if __name__ == "__main__":      # Ctrl-C while the imports load: one line, not a traceback
    import os, signal
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:       # say so, then exit 130 at once
        signal.signal(signal.SIGINT, lambda *_: os._exit(os.write(2, b"error: interrupted\n") and 130))

import argparse
import dataclasses
import gzip
import hashlib
import io
import json
import math
import os
import platform
import shlex
import signal
import struct
import sys
import tempfile
import time
import urllib.request
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

FORMAT_VERSION = 3          # of model.npz and checkpoints (3: named weights; avg_grad)
DTYPE = np.float32
# DEVIATION (Hinton's code): the epsilon sits inside the square root here, outside in ffnew.m.
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
# Config: one field per CLI flag; the recipes below set their defaults.
# ----------------------------------------------------------------------------

def option(default, help, same_weights=False, **argparse_kwargs):
    """A Config field with its --help text; same_weights fields leave the learned weights as
    they are (how a run is scheduled, placed or scored)."""
    meta = {"help": help, "same_weights": same_weights, **argparse_kwargs}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Config:
    """Everything that defines a run. Defaults are the earlier NumPy reproduction's
    (784-500-500, Adam lr 0.003, batch 128, theta 2.0, 30 epochs)."""
    recipe: str = option("baseline", "preset of the settings below: baseline (the earlier NumPy run: Adam, "
                         "raw pixels) or hinton (Hinton's released code); explicit flags win",
                         choices=("baseline", "hinton"))
    seed: int = option(0, "seed of the one random generator")
    n_epochs: int = option(30, "training epochs")
    layer_sizes: list = option([784, 500, 500], "comma-separated sizes, input (784) first")
    batch_size: int = option(128, "minibatch size (positives; as many negatives)")
    step: str = option("fast", "fast: the FF step with the named speed-ups; plain: the method's "
                       "plain forms only (ff_layer_grad_plain, label_goodness_plain for hard "
                       "negatives, a plain neutral pass for the head): the same to float32 "
                       "rounding, slower", choices=("fast", "plain"))
    schedule: str = option("batch", "batch: every layer's gradient on a batch, then one "
                           "optimiser pass; layer-update: each layer's update right after its "
                           "own gradient; layer-major: layer 0 takes --group-batches batches, "
                           "then layer 1 their stored outputs, and so on (uniform or hard-first "
                           "negatives, no head). All three give the same weights",
                           same_weights=True, choices=("batch", "layer-update", "layer-major"))
    group_batches: int = option(8, "layer-major: batches per group", same_weights=True)
    optimizer: str = option("adam", "adam, or sgd: SGD on gradients smoothed over minibatches "
                            "(avg = s avg + (1 - s) grad) with weight cost", choices=("adam", "sgd"))
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
    # DEVIATION (baseline recipe, sec. 3.3): mean(h^2) against theta 2.0, the earlier NumPy
    # run's logistic; Hinton's code compares sum(h^2) with D (--logit-scale D --threshold 1).
    threshold: float = option(2.0, "theta: a sample is positive when mean(h^2) > theta")
    logit_scale: str = option("1", "p(positive) = sigmoid(k (mean(h^2) - theta)); k = 1, or D "
                              "(= sigmoid(sum(h^2) - theta D), Hinton's code)", choices=("1", "D"))
    peer_norm: float = option(0.0, "peer normalisation strength lambda: pulls each unit's running "
                              "mean activity toward its layer's mean (0: off)")
    # DEVIATION (ours, sec. 3.5): the peer term gated by the ReLU by default; Hinton's code
    # does not gate it (--peer-gate none, as the hinton recipe sets).
    peer_gate: str = option("relu", "relu: the peer term only reaches active units; none: every "
                            "unit (Hinton's code; revives dead units)", choices=("relu", "none"))
    # DEVIATION (baseline recipe, sec. 3.3): wrong labels drawn uniformly; the paper's best
    # runs use the network's own predictions (--neg-sampling hard or softmax).
    neg_sampling: str = option("uniform", "wrong labels: uniform; hard: by softmax of mean(h^2) "
                               "summed over layers; hard-first: of layer 0; softmax: by the softmax "
                               "head", choices=("uniform", "hard", "hard-first", "softmax"))
    softmax_head: bool = option(False, "train a linear softmax on the normalised activities of "
                                "the layers after the first, with a neutral label (0.1 each)")
    head_lr: float = option(0.1, "softmax head: learning rate (smoothed SGD)")
    head_weight_cost: float = option(0.003, "softmax head: weight cost")
    jitter: int = option(0, "shift each training image by up to PX px each epoch (0: off; "
                         "the flag alone: 2)")
    train_subset: int | None = option(None, "train on the first N of the 60000 training images",
                                      metavar="N")
    val_split: int = option(0, "hold out the last N training images and evaluate on them "
                            "instead of the test set (for tuning)", metavar="N")
    device: str = option("cpu", "cpu (NumPy), or cuda: the same code on an NVIDIA GPU through "
                         "CuPy (pip install cupy-cuda12x)", same_weights=True, choices=("cpu", "cuda"))
    eval_subset: int = option(2000, "training and test images scored after every epoch",
                              same_weights=True)
    full_test: bool = option(False, "final report on all 10000 test images", same_weights=True)
    # DEVIATION (baseline recipe, sec. 3.3): the headline sums every layer's goodness; the
    # paper skips the first (skip-first, the hinton recipe's). All read-outs are reported.
    predict_mode: str = option("all", "read-out of the headline: goodness of all layers, the "
                               "first, all but the first, or the softmax head", same_weights=True,
                               choices=READOUTS)


RECIPES = {
    "baseline": {},
    # Hinton's released code (ffnew.m): smoothed SGD with weight cost, RMS-normalised
    # input, sum(h^2) against D, ungated peer normalisation, negatives from a softmax
    # on a neutral-label pass, the read-out of the layers after the first.
    # DEVIATION (Hinton's code): ffnew.m trains on mnistdata.mat's 500 fixed batches of 100
    # (50,000 images, the same order every epoch); we train on all 60,000, reshuffled.
    "hinton": {"optimizer": "sgd", "lr": 0.01, "lr_schedule": "cooldown", "batch_size": 100,
               "smoothing": 0.9, "weight_cost": 0.001, "init": "normal", "input_norm": "rms",
               "threshold": 1.0, "logit_scale": "D", "peer_norm": 0.03, "peer_gate": "none",
               "neg_sampling": "softmax", "softmax_head": True, "head_lr": 0.1,
               "head_weight_cost": 0.003, "predict_mode": "skip-first"},
}
# A checkpoint continues only a run whose training fields match (n_epochs may grow).
TRAINING_FIELDS = tuple(f.name for f in dataclasses.fields(Config) if not f.metadata["same_weights"])


@dataclass(frozen=True)
class Rule:
    """What a layer's learning rule needs of the config: theta, the logit scale k (1 or D),
    and the peer term's strength and gate."""
    theta: float = 2.0
    logit_scale: str = "1"
    peer_norm: float = 0.0
    peer_gate: str = "relu"


def rule_of(cfg: Config) -> Rule:
    return Rule(cfg.threshold, cfg.logit_scale, cfg.peer_norm, cfg.peer_gate)


# ----------------------------------------------------------------------------
# The method, plain (section 3.3). Everything a reader needs to check it against the
# paper is here; every function below it is either a faster form of one of these
# (tested to give the same numbers) or machinery.
# ----------------------------------------------------------------------------

def embed_label(x: np.ndarray, y) -> np.ndarray:
    """Copy of x (N, 784) with pixels 0..9 overwritten by one_hot(y) (value 1.0)."""
    x = x.copy()
    x[:, :LABEL_SLOT] = 0
    x[np.arange(len(x), like=x), np.asarray(y, like=x)] = 1
    return x


def embed_neutral_label(x: np.ndarray) -> np.ndarray:
    """Copy of x with 0.1 in every label pixel (Hinton's code: the 'neutral label')."""
    x = x.copy()
    x[:, :LABEL_SLOT] = NEUTRAL_LABEL
    return x


def wrong_labels(y: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """The wrong label y + offset (mod 10) per sample; offset (N,) in 1..9, drawn uniformly,
    gives each of the 9 wrong labels with probability 1/9, never the true one."""
    # DEVIATION (baseline recipe, sec. 3.3): uniform wrong labels, not the net's predictions.
    return (y + offset) % N_CLASSES


def hard_labels(y: np.ndarray, scores: np.ndarray, u: np.ndarray) -> np.ndarray:
    """A wrong label per sample drawn with probability softmax(scores) over the 9 wrong ones,
    by inverse CDF of the uniforms u (N,). scores (N, 10): the goodness of each candidate
    label or the softmax head's logits, so the most convincing wrong labels come up most."""
    z = scores.astype(np.float64)
    z[np.arange(len(y), like=z), y] = -np.inf                        # never the true label
    p = np.exp(z - z.max(axis=1, keepdims=True))
    cdf = np.cumsum(p, axis=1)
    return np.minimum((cdf <= u[:, None] * cdf[:, -1:]).sum(axis=1), N_CLASSES - 1)


def draw_wrong_labels(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """wrong_labels with the offsets drawn from rng (host arrays; for figures and tests)."""
    return wrong_labels(y, rng.integers(1, N_CLASSES, size=len(y)))


def draw_hard_labels(y: np.ndarray, scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """hard_labels with the uniforms drawn from rng (host arrays)."""
    return hard_labels(y, scores, rng.random(len(y)))


@dataclass
class Net:
    """The FF stack: Wb[l] = [W_l; b_l] (D_l + 1, D_{l+1}), all views into one flat vector
    `params` (one optimiser pass serves every layer). input_norm says how an input row is
    read (none, or rms); head is the optional softmax read-out (sum of D_l for l >= 1, 10)."""
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


def relu(z):
    return np.maximum(z, 0)


def goodness(h: np.ndarray) -> np.ndarray:
    """Hinton 2022, sec. 2: goodness = the sum of the squared activities. (N, D) -> (N,)"""
    return np.einsum("ij,ij->i", h, h)


def rms_normalize(h: np.ndarray) -> np.ndarray:
    """Scale each row to mean square 1 (Hinton 2022, sec. 2.1): the next layer sees the
    direction of the activity vector, not its length, so it cannot read this goodness."""
    return h / np.sqrt((h * h).mean(axis=1, keepdims=True) + h.dtype.type(RMS_EPS))


def first_layer_inputs(x: np.ndarray, input_norm: str) -> np.ndarray:
    """How layer 0 reads a labelled input row: as it is, or scaled to mean square 1."""
    # DEVIATION (baseline recipe): raw pixels; Hinton's code normalises the input ("rms").
    return rms_normalize(x) if input_norm == "rms" else x


def forward(net: Net, x: np.ndarray | None, z0: np.ndarray | None = None, depth=None):
    """The stack's forward pass, the one place it is written: layer 0 reads
    first_layer_inputs(x), each later layer the RMS-normalised activity of the one below.
    x (N, 784) carries its labels; z0, if given, is layer 0's pre-activation (N, D_1)
    instead. Layers 0..depth-1 (default: all). Returns (inputs, activities):
    [x_l (N, D_l)], [h_l = relu(x_l W_l + b_l)]."""
    xs, hs = [], []
    for l, (W, b) in enumerate(zip(net.W[:depth], net.b[:depth])):
        if l == 0 and z0 is not None:
            xs.append(None)
            hs.append(relu(z0))
            continue
        xs.append(first_layer_inputs(x, net.input_norm) if l == 0 else rms_normalize(hs[-1]))
        hs.append(relu(xs[-1] @ W + b))
    return xs, hs


def logit_slope(n_units: int, logit_scale: str) -> float:
    """d logit / d g = k / D: 1 / D for k = 1, 1 for k = D."""
    return 1.0 if logit_scale == "D" else 1.0 / n_units


def ff_logit(g: np.ndarray, n_units: int, theta: float, logit_scale: str) -> np.ndarray:
    """Log-odds that a sample is positive (sec. 2): k (g / D - theta), k = 1 or D.

    k = 1 compares mean(h^2) with theta (the earlier NumPy run); k = D gives
    sum(h^2) - theta D, the D times sharper logistic of Hinton's code (theta 1).
    """
    slope = logit_slope(n_units, logit_scale)                        # k / D
    return g.dtype.type(slope) * g - g.dtype.type(slope * n_units * theta)


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


def ff_layer_grad_plain(net: Net, l: int, x_pos, x_neg, rule: Rule, peer_means=None):
    """Layer l learning on its own, as section 3.3 describes it. x_pos, x_neg (B, D_l): its
    inputs for the images carrying their true and a wrong label. Returns its local
    gradient (dW, db), its stats (loss, mean g_pos / D, mean g_neg / D) and the next
    layer's inputs, the normalised activities: no gradient goes back to layer l.
    peer_means[l] is updated in place."""
    W, b = net.W[l], net.b[l]
    h_pos, h_neg = relu(x_pos @ W + b), relu(x_neg @ W + b)
    D = h_pos.shape[1]
    g_pos, g_neg = goodness(h_pos), goodness(h_neg)                             # goodness
    logit_pos = ff_logit(g_pos, D, rule.theta, rule.logit_scale)
    logit_neg = ff_logit(g_neg, D, rule.theta, rule.logit_scale)
    dl_pos, dl_neg = dloss_dlogit(logit_pos, logit_neg)                         # dL/dlogit
    slope = logit_slope(D, rule.logit_scale)                                    # dlogit/dg
    dz_pos = dloss_dz(h_pos, dl_pos * slope)                                    # dL/dz
    dz_neg = dloss_dz(h_neg, dl_neg * slope)
    if rule.peer_norm:
        peer_means[l][...] = peer_means_update(peer_means[l], h_pos)
        dz_pos = dz_pos + peer_dz(peer_means[l], h_pos, rule.peer_norm, rule.peer_gate)
    grad = (x_pos.T @ dz_pos + x_neg.T @ dz_neg, dz_pos.sum(axis=0) + dz_neg.sum(axis=0))
    stats = (ff_loss(logit_pos, logit_neg), g_pos.mean() / D, g_neg.mean() / D)
    return grad, stats, (rms_normalize(h_pos), rms_normalize(h_neg))


def ff_grads_plain(net: Net, x_pos, x_neg, rule: Rule, peer_means=None):
    """The method for one batch, one layer after another. x_pos, x_neg: (B, 784) images
    carrying their true and a wrong label. Returns [(dW, db)] per layer and the stats
    (L, 3): loss, mean g_pos / D, mean g_neg / D. peer_means are updated in place."""
    x_pos, x_neg = first_layer_inputs(x_pos, net.input_norm), first_layer_inputs(x_neg, net.input_norm)
    grads, stats = [], np.empty((len(net.Wb), 3), x_pos.dtype, like=x_pos)
    for l in range(len(net.Wb)):
        grad, stats_l, (x_pos, x_neg) = ff_layer_grad_plain(net, l, x_pos, x_neg, rule, peer_means)
        grads.append(grad)
        for i, value in enumerate(stats_l):
            stats[l, i] = value
    return grads, stats


# The softmax head (Hinton's code): a linear softmax on the normalised activities of the
# layers after the first, computed with a neutral label. It picks hard negatives in
# training and is a fourth read-out.

def neutral_features(net: Net, x: np.ndarray | None = None, z0: np.ndarray | None = None):
    """Normalised activities of layers 1.. for x (B, 784) carrying the neutral label, or
    from layer 0's neutral pre-activation z0 (B, D_1). forward has normalised each layer
    but the last already, as the next layer's input. (B, F)"""
    xs, hs = forward(net, x, z0)
    return np.concatenate([*xs[2:], rms_normalize(hs[-1])], axis=1)


def head_loss_and_grad(head, feats, y):
    """Cross-entropy of softmax(feats head) and its gradient wrt head: (), (F, 10), logits.
    The loss stays an array (no device wait)."""
    # DEVIATION (Hinton's code): the head has no bias (his is never updated from zero), and
    # the softmax is row-wise: ffnew.m calls a softmax that the release does not ship.
    logits = feats @ head                                            # (B, 10)
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    rows = np.arange(len(y), like=p)
    loss = -np.log(p[rows, y] + 1e-30).mean()
    p[rows, y] -= 1
    return loss, feats.T @ p / len(y), logits


def readout_layers(mode: str, n_layers: int):
    """Which layers' goodness a read-out sums; Hinton 2022 skips the first."""
    layers = {"all": list(range(n_layers)), "first": [0], "skip-first": list(range(1, n_layers))}
    if mode not in layers:
        raise ValueError(f"read-out {mode!r} does not sum goodness (one of {', '.join(layers)})")
    return layers[mode]


def label_goodness_plain(net: Net, x: np.ndarray, depth=None, per_unit=False) -> np.ndarray:
    """Section 3.3's classifier, plain: run the net once with each label in the image and
    record each layer's goodness; a read-out sums it over readout_layers and takes the
    argmax over labels. Layers 0..depth-1 (default all); per_unit: mean(h^2) in place of
    sum(h^2). (N, 784) -> (N, 10, depth)"""
    depth = len(net.Wb) if depth is None else depth
    per_label = []
    for label in range(N_CLASSES):
        _, hs = forward(net, embed_label(x, np.full(len(x), label, like=x)), depth=depth)
        per_label.append(np.stack([goodness(h) / (h.dtype.type(h.shape[1]) if per_unit else 1)
                                   for h in hs], axis=1))            # (N, depth)
    return np.stack(per_label, axis=1)


def negative_labels(policy: str, y_pos, offsets=None, uniforms=None, scores=None) -> np.ndarray:
    """The wrong label of each image (sec. 3.3: negative data is the image with a wrong
    label). uniform: y + offsets (mod 10); hard, hard-first: drawn by softmax of each wrong
    candidate's goodness per unit (scores: summed over all layers, or layer 0's);
    softmax: by the softmax head's logits (scores). The draws come from the caller. (B,)"""
    if policy == "uniform":
        return wrong_labels(y_pos, offsets)
    return hard_labels(y_pos, scores, uniforms)


def jitter_images(x: np.ndarray, shifts: np.ndarray, max_shift: int) -> np.ndarray:
    """Shift each 28x28 image by its own (dy, dx) = shifts[i] in [-max_shift, max_shift]^2,
    zero fill (Hinton 2022, sec. 3.3: up to two pixels each way). shifts (n, 2) is a host
    array; x may live on the device, where the images of each shift are gathered through
    one index array copied over."""
    n, side = len(x), 2 * max_shift + 1
    code = (shifts[:, 0] + max_shift) * side + shifts[:, 1] + max_shift   # (n,) in 0..side^2 - 1
    by_code = np.argsort(code, kind="stable")                        # each shift's images, in order
    starts = np.searchsorted(code[by_code], np.arange(side * side + 1))
    by_code = np.asarray(by_code, like=x)                            # to the device, if any
    images = x.reshape(n, 28, 28)
    out = np.zeros_like(images)
    for k in range(side * side):
        dy, dx = k // side - max_shift, k % side - max_shift
        idx = by_code[starts[k]:starts[k + 1]]
        src = images[idx, max(0, -dy):28 - max(0, dy), max(0, -dx):28 - max(0, dx)]
        out[idx, max(0, dy):28 - max(0, -dy), max(0, dx):28 - max(0, -dx)] = src
    return out.reshape(n, N_PIXELS)


# ----------------------------------------------------------------------------
# The same step, fast. Each speed-up is one named piece, tested against the plain form:
#   1. bias as a weight row: inputs carry a constant 1, so [x, 1] [W; b] = x W + b and
#      one product gives the weight and bias gradients together (with_bias_input);
#   2. label-slot identity at layer 0: [s x_img + s e_y] W = s x_img W + s W[y], so one
#      image product serves the positive, negative, neutral and all 10 candidate copies
#      (encode, then layer0_z / layer0_neutral_z; s: the row's scale);
#   3. positives and negatives stacked into one (2B, D) product per layer above 0;
#   4. product orientation: (Wb^T x^T)^T (transposed_product);
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


class Encoded(NamedTuple):
    """A batch of images as layer 0 reads it, for any labels (speed-up 2)."""
    x_in: np.ndarray            # [s x_img, 1] (B, 785)
    s: np.ndarray | None        # (B,) row scale with a one-hot label (rms input), else None
    a0: np.ndarray              # x_in Wb0 (B, D_1): layer 0's one image product
    x_img: np.ndarray           # the images with their label slot zeroed (B, 784)


def encode(net: Net, x: np.ndarray) -> Encoded:
    """Layer 0's shared image product for x (B, 784), whatever its label slot holds."""
    x_img = x.copy()
    x_img[:, :LABEL_SLOT] = 0
    s = label_scale(x_img, net.input_norm)
    x_in = with_bias_input(x_img, s)
    return Encoded(x_in, s, x_in @ net.Wb[0], x_img)


def layer0_z(net: Net, enc: Encoded, labels: np.ndarray) -> np.ndarray:
    """Pre-activations of layer 0 for each image carrying each of `labels` (kB,), which
    repeat the batch k times: a0 plus the label pixel's row s W0[y]. (kB, D)"""
    B = len(enc.a0)
    z = np.take(net.Wb[0][:LABEL_SLOT], labels, axis=0)              # (kB, D)
    if enc.s is not None:
        z.reshape(-1, B, z.shape[1])[...] *= enc.s[:, None]
    z.reshape(-1, B, z.shape[1])[...] += enc.a0
    return z


def layer0_neutral_z(net: Net, enc: Encoded) -> np.ndarray:
    """Layer 0's pre-activation with the neutral label, from the same a0. (B, D)"""
    Wb0 = net.Wb[0]
    label_part = NEUTRAL_LABEL * Wb0[:LABEL_SLOT].sum(axis=0)        # (D,)
    if enc.s is None:
        return enc.a0 + label_part
    s_neutral = label_scale(enc.x_img, net.input_norm, LABEL_SLOT * NEUTRAL_LABEL ** 2)
    b0 = Wb0[-1]
    return (enc.a0 - b0) * (s_neutral / enc.s)[:, None] + s_neutral[:, None] * label_part + b0


def transposed_product(x: np.ndarray, Wb: np.ndarray) -> np.ndarray:
    """x Wb written (Wb^T x^T)^T (speed-up 4): with 2B = 256 rows and D = 2000, OpenBLAS
    ran (D, K) x (K, 2B) 1.3x faster than (2B, K) x (K, D) on an Intel Xeon; on an AMD
    EPYC the two are within 5%. (N, K) -> (N, D)"""
    return (Wb.T @ x.T).T


def ff_layer_grad(net: Net, l: int, x, enc: Encoded | None, labels, rule: Rule, grad_view,
                  stats, peer_means=None):
    """Layer l of the fast step: its local gradient into grad_view (D_l + 1, D_{l+1}) and its
    loss, mean g_pos / D and mean g_neg / D into stats (3,). x is its input [x, 1] (2B,
    D_l + 1), rows positives then negatives; layer 0 reads the batch's Encoded instead.
    labels (2B,): the positive then the negative labels. Returns the next layer's input
    (None at the top), built before dL/dz overwrites h: no gradient goes back."""
    Wb, B = net.Wb[l], len(labels) // 2
    D = Wb.shape[1]
    h = layer0_z(net, enc, labels) if l == 0 else transposed_product(x, Wb)
    np.maximum(h, 0, out=h)                                          # (2B, D), rows: pos, neg
    g = goodness(h)
    logit = ff_logit(g, D, rule.theta, rule.logit_scale)
    stats[0] = ff_loss(logit[:B], logit[B:])
    stats[1] = g[:B].mean() / D
    stats[2] = g[B:].mean() / D
    x_next = None
    if l + 1 < len(net.Wb):                                          # next input, no gradient back
        x_next = with_bias_input(h, 1 / np.sqrt(g / D + g.dtype.type(RMS_EPS)))
    slope = g.dtype.type(logit_slope(D, rule.logit_scale))          # dlogit/dg
    dl_dg = np.concatenate(dloss_dlogit(logit[:B], logit[B:])) * slope
    if rule.peer_norm:
        peer_means[l][...] = peer_means_update(peer_means[l], h[:B])
        peer = peer_dz(peer_means[l], h[:B], rule.peer_norm, rule.peer_gate)
    dz = np.multiply(h, (2 * dl_dg)[:, None], out=h)                 # dL/dz over h (speed-up 5)
    if rule.peer_norm:
        dz[:B] += peer
    if l == 0:
        # both copies share the image rows; each label row gets its samples' s dz
        np.matmul(enc.x_in.T, dz[:B] + dz[B:], out=grad_view)
        onehot = (np.arange(N_CLASSES, like=dz)[:, None] == labels).astype(dz.dtype)  # (10, 2B)
        label_dz = dz if enc.s is None else dz * np.concatenate([enc.s, enc.s])[:, None]
        np.matmul(onehot, label_dz, out=grad_view[:LABEL_SLOT])
    else:
        np.matmul(x.T, dz, out=grad_view)
    return x_next


def ff_grads(net: Net, enc: Encoded, y_pos, y_neg, rule: Rule, grads, peer_means=None,
             after_layer=None):
    """ff_grads_plain with speed-ups 1-5: the local gradients of every layer for one batch,
    written into the flat vector `grads` (same layout as net.params). after_layer(l), if
    given, runs as soon as layer l's gradient is ready. Returns the stats (L, 3) as an
    array: loss, mean g_pos / D, mean g_neg / D."""
    labels = np.concatenate([y_pos, y_neg])                          # (2B,)
    grad_views = layer_views(grads, net.layer_sizes)
    stats, x = np.empty((len(net.Wb), 3), enc.a0.dtype, like=enc.a0), None
    for l in range(len(net.Wb)):
        x = ff_layer_grad(net, l, x, enc, labels, rule, grad_views[l], stats[l], peer_means)
        if after_layer:
            after_layer(l)
    return stats


def candidate_goodness(net: Net, enc: Encoded, depth: int, per_unit=False) -> np.ndarray:
    """Goodness of layers 0..depth-1 for every image with each of the 10 labels, from the
    one image product of encode (speed-up 2); per_unit divides each layer's by its
    width, giving mean(h^2). (B, 10, depth)"""
    B = len(enc.a0)
    labels = np.repeat(np.arange(N_CLASSES, like=enc.a0), B)
    out, x = np.empty((N_CLASSES, B, depth), DTYPE, like=enc.a0), None
    for l in range(depth):
        h = layer0_z(net, enc, labels) if l == 0 else x @ net.Wb[l]  # (10B, D)
        np.maximum(h, 0, out=h)                                      # ReLU in place
        g = goodness(h)
        out[:, :, l] = g.reshape(N_CLASSES, B)
        if per_unit:
            out[:, :, l] /= DTYPE(h.shape[1])
        if l + 1 < depth:
            x = with_bias_input(h, 1 / np.sqrt(g / h.shape[1] + g.dtype.type(RMS_EPS)))
    return out.transpose(1, 0, 2)


# ----------------------------------------------------------------------------
# Optimisers: Adam (the earlier NumPy run) and smoothed SGD with weight cost (Hinton's
# code). Both update the flat vector in place; param_parts gives per-layer learning rates.
# ----------------------------------------------------------------------------

class Part(NamedTuple):
    """A stretch of the flat parameter vector that shares one learning rate: one layer,
    whose last n_bias entries are its biases (no weight cost on them)."""
    start: int
    stop: int
    n_bias: int
    lr: float


@dataclass
class SmoothedSGD:
    """Hinton's code: avg_grad = s avg_grad + (1 - s) grad, then p -= lr (avg_grad + weight_cost p)."""
    avg_grad: np.ndarray
    smoothing: float = 0.9
    weight_cost: float = 0.0
    t: int = 0                   # steps taken (no bias correction uses it)

    def step(self, params, grads, parts, t=None):
        """One step in place over each Part at its own lr, no weight cost on a Part's
        biases. Overwrites grads. t: this step's number (default: the next one)."""
        self.t = self.t + 1 if t is None else t
        smoothing, rest = self.avg_grad.dtype.type(self.smoothing), grads.dtype.type(1 - self.smoothing)
        for start, stop, n_bias, lr in parts:
            avg_grad, grad = self.avg_grad[start:stop], grads[start:stop]
            avg_grad *= smoothing
            grad *= rest                                             # grads is scratch from here
            avg_grad += grad
            if self.weight_cost:
                params[start:stop - n_bias] *= params.dtype.type(1 - lr * self.weight_cost)
            np.multiply(avg_grad, params.dtype.type(lr), out=grad)
            params[start:stop] -= grad


ADAM_CHUNK = 65536       # elements per chunk: the chunk's arrays stay in L2 cache
# Dead units get exactly zero gradients, so their Adam moments decay geometrically
# into float32 subnormals, whose arithmetic is ~100x slower on x86. Every guard_every
# steps, adding then subtracting 2^-100 leaves each |m|, |v| > 2^-76 exactly as it is
# and rounds smaller values to multiples of 2^-123, flushing subnormals to 0. Between
# guards m shrinks by at most 0.9^16 = 0.19, so a rounded value stays normal.
SUBNORMAL_GUARD = DTYPE(2.0 ** -100)
GUARD_EVERY = 16
# Settings of an optimiser, not state: a checkpoint does not keep them.
OPTIMIZER_SETTINGS = ("chunk", "guard_every")


# DEVIATION (baseline recipe): Adam, where Hinton's code uses smoothed SGD (--optimizer sgd).
@dataclass
class Adam:
    """Adam (Kingma & Ba 2015) state over the flat vector. Stored scaled, m' = m / (1 - b1)
    and v' = v / (1 - b2), so an update is m' = b1 m' + grad, v' = b2 v' + grad^2: two
    fewer passes over memory; the constants move into the step size and epsilon."""
    m: np.ndarray
    v: np.ndarray
    t: int = 0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    chunk: int = ADAM_CHUNK      # elements per pass; 0: a whole Part at once (the GPU form)
    guard_every: int = GUARD_EVERY   # the subnormal guard's period (0: never)

    def step(self, params, grads, parts, t=None):
        """One step in place, chunk elements at a time, over each Part at its own lr.
        t: the step number of the bias correction (default: the next one); self.t becomes t."""
        t = self.t = self.t + 1 if t is None else t
        b1, b2 = DTYPE(self.beta1), DTYPE(self.beta2)
        c1, c2 = 1 - self.beta1 ** t, 1 - self.beta2 ** t
        # lr (m / c1) / (sqrt(v / c2) + eps) with m = (1 - b1) m', v = (1 - b2) v'
        root = math.sqrt(c2 / (1 - self.beta2))
        eps = DTYPE(self.eps * root)
        guard = self.guard_every and t % self.guard_every == 0
        chunk = self.chunk or len(params)
        scratch = np.empty(min(chunk, len(params)), DTYPE, like=params)
        for part in parts:
            inv_step = DTYPE(1 / (part.lr * (1 - self.beta1) / c1 * root))
            for lo in range(part.start, part.stop, chunk):
                hi = min(lo + chunk, part.stop)
                p, grad, m, v, tmp = (params[lo:hi], grads[lo:hi], self.m[lo:hi], self.v[lo:hi],
                                      scratch[:hi - lo])
                m *= b1
                m += grad
                v *= b2
                np.multiply(grad, grad, out=tmp)
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


def param_parts(cfg: Config, lr: float) -> list:
    """[Part] per layer of the flat vector: layer 0 at lr, the
    others at lr * deep_lr_scale; each layer's biases are its last D_out entries."""
    # DEVIATION (ours, off by default): slower deep layers keep their units alive under Adam.
    parts, i = [], 0
    for l, (d_in, d_out) in enumerate(zip(cfg.layer_sizes[:-1], cfg.layer_sizes[1:])):
        n = (d_in + 1) * d_out
        parts.append(Part(i, i + n, d_out, lr if l == 0 else lr * cfg.deep_lr_scale))
        i += n
    return parts


def lr_at(cfg: Config, step: int, n_steps: int) -> float:
    """Learning rate at a 0-based step. cooldown: constant for the first half of training,
    then falling linearly to 0, as the gain in Hinton's code."""
    # DEVIATION (Hinton's code): the gain falls at every step here, once per epoch there.
    if cfg.lr_schedule == "cooldown" and step >= n_steps // 2:
        return cfg.lr * (n_steps - step) / (n_steps - n_steps // 2)
    return cfg.lr


# ----------------------------------------------------------------------------
# Training. train_epoch is the one place where training crosses between host and device:
# the random draws are made on the host once per epoch and copied over, the statistics
# are read back once per epoch (or at a progress tick); a step never waits on the device.
# ----------------------------------------------------------------------------

class NonFiniteLoss(FloatingPointError):
    """The FF loss became NaN or infinite."""


class Interrupted(Exception):
    """A stop signal during training; the last complete epoch was saved to `path` (None:
    not saved). code: the exit status (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""
    def __init__(self, path, epoch, stop: KeyboardInterrupt | None = None):
        where = f"the state after epoch {epoch} is in {path}" if path else "nothing was saved"
        stop = stop or KeyboardInterrupt()
        super().__init__(f"{stop_reason(stop)}; {where}")
        self.path, self.epoch, self.code = path, epoch, exit_code(stop)


@dataclass
class TrainState:
    """Everything that changes while training: weights, optimiser states, random streams."""
    net: Net
    opt: Adam | SmoothedSGD
    head_opt: SmoothedSGD | None
    peer_means: list           # per layer, running mean activity of each unit (D_l,)
    rngs: dict                 # order, negatives, jitter: one host stream each
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


class Batch(NamedTuple):
    """One minibatch on the training device, with the random draws its negatives need."""
    x: np.ndarray                       # (B, 784) images
    y_pos: np.ndarray                   # (B,) true labels
    offsets: np.ndarray | None = None   # (B,) in 1..9: uniform negatives' y + offset
    uniforms: np.ndarray | None = None  # (B,) in [0, 1): the other negatives' inverse-CDF draws


def negative_scores(cfg: Config, net: Net, x, enc: Encoded | None, logits):
    """What the negatives policy draws from: the head's logits (softmax), or each
    candidate label's goodness per unit (hard: all layers; hard-first: layer 0), from
    encode's batch product when enc is given, else by label_goodness_plain. (B, 10)"""
    if cfg.neg_sampling == "softmax":                                # the head's logits before its update
        return logits
    if cfg.neg_sampling in ("hard", "hard-first"):
        # DEVIATION (ours): hard-first scores candidate labels with layer 0 alone (~free).
        depth = 1 if cfg.neg_sampling == "hard-first" else len(net.Wb)
        if enc is None:
            return label_goodness_plain(net, x, depth, per_unit=True).sum(axis=2)
        return candidate_goodness(net, enc, depth, per_unit=True).sum(axis=2)
    return None


def start_batch(state: TrainState, cfg: Config, batch: Batch, lr: float):
    """A batch's work before its layers learn: the head's neutral pass and update (Hinton's
    code), then the negatives. Returns what layer 0 reads, in the step's form: fast,
    (encode's Encoded, labels (2B,): positives then negatives); plain, the first-layer
    inputs (x_pos, x_neg) (B, 784) each. And the head's loss (or None)."""
    net, plain = state.net, cfg.step == "plain"
    enc = None if plain else encode(net, batch.x)                   # layer 0's one image product
    head_loss, logits = None, None
    if net.head is not None:
        z0 = None if plain else layer0_neutral_z(net, enc)
        feats = neutral_features(net, embed_neutral_label(batch.x) if plain else None, z0)
        head_loss, d_head, logits = head_loss_and_grad(net.head, feats, batch.y_pos)
        state.head_opt.step(net.head.reshape(-1), d_head.reshape(-1),
                            [Part(0, net.head.size, 0, cfg.head_lr * lr / cfg.lr)])
    y_neg = negative_labels(cfg.neg_sampling, batch.y_pos, batch.offsets, batch.uniforms,
                            negative_scores(cfg, net, batch.x, enc, logits))
    if plain:
        inputs = tuple(first_layer_inputs(embed_label(batch.x, y), net.input_norm) for y in (batch.y_pos, y_neg))
        return inputs, head_loss
    return (enc, np.concatenate([batch.y_pos, y_neg])), head_loss


def group_size(cfg: Config) -> int:
    """Batches per train_step call: --group-batches for layer-major, else 1."""
    return cfg.group_batches if cfg.schedule == "layer-major" else 1


def train_step(state: TrainState, cfg: Config, batches, lrs, grads):
    """The one training entry: k consecutive minibatches [Batch] (k = group_size(cfg)) at
    learning rates lrs, in the order cfg.schedule says, in cfg.step's form. A layer's
    gradient needs only its own input, so every order gives the same numbers:
      batch         every layer's gradient, then one optimiser pass (k = 1);
      layer-update  each layer's update right after its own gradient (k = 1);
      layer-major   layer 0 takes all k batches, each followed by its update, then layer 1
                    their stored outputs, and so on (negatives that do not depend on the
                    layers above: uniform or hard-first; no head).
    No random draw, no host copy and no device wait, so the step can be captured or fused
    on a GPU. Returns the stats (k, L, 3) (loss, g_pos / D, g_neg / D) and the head's loss
    summed over the batches (or None), as arrays on the training device."""
    net, rule, k = state.net, rule_of(cfg), len(batches)
    grad_views = layer_views(grads, net.layer_sizes)
    stats = np.empty((k, len(net.Wb), 3), DTYPE, like=grads)
    parts = [param_parts(cfg, lr) for lr in lrs]                     # per batch, per layer
    t0, per_layer = state.opt.t, cfg.schedule != "batch"
    inputs, head_loss = [None] * k, None
    for l in range(len(net.Wb)):
        for j, batch in enumerate(batches):
            if l == 0:
                inputs[j], loss = start_batch(state, cfg, batch, lrs[j])
                if loss is not None:
                    head_loss = loss if head_loss is None else head_loss + loss
            if cfg.step == "plain":
                grad, stats_l, inputs[j] = ff_layer_grad_plain(net, l, *inputs[j], rule, state.peer_means)
                grad_views[l][:-1], grad_views[l][-1] = grad
                for i, value in enumerate(stats_l):
                    stats[j, l, i] = value
            else:
                x, enc, labels = (None, *inputs[j]) if l == 0 else inputs[j]
                x_next = ff_layer_grad(net, l, x, enc, labels, rule, grad_views[l], stats[j, l],
                                       state.peer_means)
                inputs[j] = (x_next, None, labels)
            if per_layer:                                            # its weights while they are hot
                state.opt.step(net.params, grads, [parts[j][l]], t0 + j + 1)
    if not per_layer:
        state.opt.step(net.params, grads, parts[0])
    return stats, head_loss


class Draws(NamedTuple):
    """An epoch's random draws, made on the host: one meaning per field."""
    order: np.ndarray                   # (n,) the order of the samples
    offsets: np.ndarray | None          # (n,) uniform negatives: y + offset, offset in 1..9
    uniforms: np.ndarray | None         # (n,) the other negatives: uniforms in [0, 1)
    shifts: np.ndarray | None           # (n, 2) --jitter: each image's (dy, dx)


def epoch_draws(state: TrainState, cfg: Config, n: int) -> Draws:
    """Every random draw of an epoch, on the host, from the same streams in the same calls
    as one batch at a time."""
    shifts = None
    if cfg.jitter:
        shifts = state.rngs["jitter"].integers(-cfg.jitter, cfg.jitter + 1, size=(n, 2))
    order = state.rngs["order"].permutation(n)
    rng, B = state.rngs["negatives"], cfg.batch_size
    sizes = [min(B, n - i) for i in range(0, n, B)]
    if cfg.neg_sampling == "uniform":
        return Draws(order, np.concatenate([rng.integers(1, N_CLASSES, size=k) for k in sizes]), None, shifts)
    return Draws(order, None, np.concatenate([rng.random(k) for k in sizes]), shifts)


def check_finite(sums, epoch: int, first: int, last: int):
    """sums: the host copy of the running stats (L, 3); names the batches since the last check."""
    if not np.isfinite(sums[:, 0]).all():
        raise NonFiniteLoss(f"the FF loss became non-finite in epoch {epoch + 1}, between "
                            f"batches {first + 1} and {last} (try a smaller --lr)")


def train_epoch(state: TrainState, cfg: Config, x, y, progress=None):
    """One pass over (x, y), arrays on the training device, in shuffled minibatches. Returns
    the epoch's mean (loss, g_pos / D, g_neg / D) per layer (L, 3) and the head's mean loss.
    Host -> device: the order and the negatives' draws (and the jitter index), once; device
    -> host: the stats, once (and at each progress(i, n_batches) tick, about once a second)."""
    n, B = len(x), cfg.batch_size
    draws = epoch_draws(state, cfg, n)
    if cfg.jitter:
        x = jitter_images(x, draws.shifts, cfg.jitter)
    order, offsets, uniforms = (None if a is None else np.asarray(a, like=x)
                                for a in (draws.order, draws.offsets, draws.uniforms))
    n_batches = math.ceil(n / B)
    n_steps = n_batches * cfg.n_epochs
    grads = np.empty_like(state.net.params)
    sums, head_sum = np.zeros((len(state.net.Wb), 3), like=x), np.zeros((), like=x)

    def batch(i):
        rows = slice(i * B, (i + 1) * B)
        return Batch(x[order[rows]], y[order[rows]], None if offsets is None else offsets[rows],
                     None if uniforms is None else uniforms[rows])

    def lr(i):
        return lr_at(cfg, state.epoch * n_batches + i, n_steps)
    k = group_size(cfg)
    checked, shown = 0, time.monotonic()
    for first in range(0, n_batches, k):
        raise_lost_stop()
        group = range(first, min(first + k, n_batches))
        stats, head_loss = train_step(state, cfg, [batch(i) for i in group], [lr(i) for i in group], grads)
        for j in range(len(group)):
            sums += stats[j]                                         # in batch order
        if head_loss is not None:
            head_sum += head_loss
        if progress and time.monotonic() - shown > 1:
            check_finite(to_host(sums), state.epoch, checked, group[-1] + 1)
            checked = group[-1] + 1
            progress(checked, n_batches)
            shown = time.monotonic()
    sums = to_host(sums)
    check_finite(sums, state.epoch, checked, n_batches)
    head_mean = float(to_host(head_sum)) / n_batches if state.net.head is not None else math.nan
    state.epoch += 1
    return sums / n_batches, head_mean


def new_history():
    """Per epoch: losses and goodness per layer; with an evaluation, the headline read-out's
    accuracy on the scored training and held-out images, every read-out's accuracy
    (train_readouts, test_readouts) and the dead units of the scored training images."""
    return {"epoch": [], "loss": [], "g_pos": [], "g_neg": [], "head_loss": [], "train_acc": [],
            "test_acc": [], "train_readouts": [], "test_readouts": [], "dead_units": [],
            "seconds": []}


def train(cfg: Config, x_train, y_train, evaluation=None, callback=None, log=print,
          checkpoint=None, resume=None, interrupted_to=None, xp=None):
    """Train an FF net on (x_train, y_train) (host arrays) as cfg says; return (net, history).

    evaluation: optional ((x_tr, y_tr), (x_te, y_te)) scored after every epoch with
    cfg.predict_mode. callback(epoch, net, history) runs after each epoch.
    checkpoint: path written atomically after every epoch (and on Ctrl-C);
    resume: a checkpoint to continue from (same training config; n_epochs may grow);
    interrupted_to: where Ctrl-C saves the last epoch when there is no checkpoint (None:
    nowhere). xp: the array module (default: cfg.device's); the data go to it once.
    """
    if resume:
        state, history = load_checkpoint(resume, cfg)
        history = {**{k: [] for k in new_history()}, **history}     # older checkpoints lack some keys
        if log:
            log(f"resumed from {resume} after epoch {state.epoch}")
    else:
        state, history = init_state(cfg), new_history()
    xp = array_module(cfg.device) if xp is None else xp
    state = to_device(state, xp)
    x_dev, y_dev = xp.asarray(x_train), xp.asarray(y_train)
    progress = None
    if log and sys.stderr.isatty():
        def progress(i, n):
            print(f"\r  epoch {state.epoch + 1}: batch {i}/{n}", end="", file=sys.stderr, flush=True)
    snapshot = checkpoint_arrays(state, cfg, history)
    try:
        for epoch in range(state.epoch + 1, cfg.n_epochs + 1):
            t0 = time.perf_counter()
            means, head_loss = train_epoch(state, cfg, x_dev, y_dev, progress)
            if progress:
                print("\r\033[K", end="", file=sys.stderr, flush=True)
            history["epoch"].append(epoch)
            for k, column in (("loss", 0), ("g_pos", 1), ("g_neg", 2)):
                history[k].append(means[:, column].tolist())
            history["head_loss"].append(head_loss)
            if evaluation is not None:
                (xa, ya), (xb, yb) = evaluation
                for split, (x, y) in (("train", (xa, ya)), ("test", (xb, yb))):
                    accs = readout_accuracies(state.net, x, y)
                    history[f"{split}_acc"].append(accs[cfg.predict_mode])
                    history[f"{split}_readouts"].append(accs)
                history["dead_units"].append(dead_units(state.net, xa, ya))
            history["seconds"].append(time.perf_counter() - t0)
            snapshot = checkpoint_arrays(state, cfg, history)
            if checkpoint:
                atomic_savez(checkpoint, snapshot)
            if log:
                log(epoch_line(epoch, cfg.n_epochs, history, "val" if cfg.val_split else "test"))
            if callback:
                callback(epoch, state.net, history)
    except KeyboardInterrupt as stop:
        path = checkpoint or interrupted_to
        if path:
            try:
                atomic_savez(path, snapshot)
            except KeyboardInterrupt:           # a second signal, raised once the save was done
                pass
        raise Interrupted(path, int(snapshot["epoch"]), stop) from None
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


def label_goodness(net: Net, x: np.ndarray, layers=None, chunk_size=None) -> np.ndarray:
    """Goodness sum(h^2) of every layer for every candidate label. (N, 784) -> (N, 10, L)

    With `layers`, only the layers up to the last one named are computed, and the
    result holds just those layers, in order. x is a host array; so is the result.
    chunk_size: images per pass (default PREDICT_CHUNK).
    """
    depth = len(net.Wb) if layers is None else max(layers) + 1
    out = np.empty((len(x), N_CLASSES, depth), DTYPE)
    step = chunk_size or PREDICT_CHUNK
    for c in range(0, len(x), step):
        chunk = np.asarray(x[c:c + step], like=net.params)              # to the net's device
        out[c:c + len(chunk)] = to_host(candidate_goodness(net, encode(net, chunk), depth))
    return out if layers is None else out[:, :, layers]


def goodness_per_unit(net: Net, x: np.ndarray) -> np.ndarray:
    """label_goodness divided by each layer's width: mean(h^2), comparable with theta.
    (N, 784) -> (N, 10, L)"""
    return label_goodness(net, x) / np.asarray(net.layer_sizes[1:], dtype=DTYPE)


def readout_goodness(net: Net, x: np.ndarray, mode: str) -> np.ndarray:
    """Goodness of a read-out's layers for each candidate label, per unit: the sum over its
    layers of sum(h^2), divided by their units. Its argmax is the read-out's prediction;
    for one layer it is mean(h^2). (N, 784) -> (N, 10)"""
    layers = readout_layers(mode, len(net.Wb))
    units = sum(net.layer_sizes[l + 1] for l in layers)
    return label_goodness(net, x, layers).sum(axis=2) / DTYPE(units)


def head_logits(net: Net, x: np.ndarray, chunk_size=None) -> np.ndarray:
    """The softmax head's logits, from a neutral-label pass. (N, 784) -> (N, 10)"""
    out = np.empty((len(x), N_CLASSES), DTYPE)
    step = chunk_size or PREDICT_CHUNK
    for c in range(0, len(x), step):
        chunk = np.asarray(embed_neutral_label(x[c:c + step]), like=net.params)
        out[c:c + len(chunk)] = to_host(neutral_features(net, chunk) @ net.head)
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


def all_predictions(net: Net, x: np.ndarray) -> dict:
    """Predicted labels (N,) of every available read-out, from one label_goodness pass."""
    g = label_goodness(net, x)
    preds = {m: g[:, :, readout_layers(m, len(net.Wb))].sum(axis=2).argmax(axis=1)
             for m in ("all", "first", "skip-first") if readout_available(m, net)}
    if net.head is not None:
        preds["softmax"] = head_logits(net, x).argmax(axis=1)
    return preds


def readout_accuracies(net: Net, x, y) -> dict:
    """Accuracy of every available read-out on (x, y)."""
    return {m: float((p == y).mean()) for m, p in all_predictions(net, x).items()}


def dead_units(net: Net, x: np.ndarray, y: np.ndarray) -> list:
    """Per layer, units never active on x carrying its true labels."""
    alive = [np.zeros(d, bool) for d in net.layer_sizes[1:]]
    for c in range(0, len(x), PREDICT_CHUNK):
        chunk = np.asarray(embed_label(x[c:c + PREDICT_CHUNK], y[c:c + PREDICT_CHUNK]), like=net.params)
        for l, h in enumerate(forward(net, chunk)[1]):
            alive[l] |= to_host((h > 0).any(axis=0))
    return [int((~a).sum()) for a in alive]


def evaluate(net: Net, x, y, headline_mode="all") -> dict:
    """Accuracy of every available read-out, per-class accuracy and dead units on (x, y)."""
    preds = all_predictions(net, x)
    pred = preds[headline_mode]
    per_class = {str(k): {"correct": int(((pred == y) & (y == k)).sum()),
                          "total": int((y == k).sum())} for k in range(N_CLASSES)}
    correct = int((pred == y).sum())
    return {"test_accuracy": correct / len(y), "test_correct": correct, "test_total": len(y),
            "predict_mode": headline_mode, "per_class": per_class,
            "prediction_modes": {m: float((p == y).mean()) for m, p in preds.items()},
            "dead_units": dead_units(net, x, y)}


# ----------------------------------------------------------------------------
# Machinery: the device switch. The method's functions are written against the NumPy
# API; CuPy arrays take them over through NumPy's dispatch (__array_ufunc__,
# __array_function__, like=). Random draws stay on the host (train_epoch).
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


def to_device(state: TrainState, xp) -> TrainState:
    """The training state with its arrays moved to xp's device (unchanged for NumPy)."""
    if xp is np:
        return state
    net = state.net
    state.net = Net(net.layer_sizes, xp.asarray(net.params), net.input_norm,
                    None if net.head is None else xp.asarray(net.head))
    for opt in (o for o in (state.opt, state.head_opt) if o is not None):
        if isinstance(opt, Adam):
            opt.chunk = 0                   # a kernel launch per chunk: one chunk per Part
        for k, v in vars(opt).items():
            if isinstance(v, np.ndarray):
                setattr(opt, k, xp.asarray(v))
    state.peer_means = [xp.asarray(r) for r in state.peer_means]
    return state


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
    """Fetch name.gz into folder; written to a temporary name, renamed when complete. A
    failed or interrupted download leaves no folder it made behind."""
    target = folder / f"{name}.gz"
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    reasons = []
    try:
        for base in mirrors:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with urllib.request.urlopen(base + target.name, timeout=DOWNLOAD_TIMEOUT_S) as r:
                    payload = r.read()
                atomic_write_bytes(target, payload)
                return target
            except OSError as e:  # URLError, timeouts and unwritable folders are all OSErrors
                reasons.append(f"{base}: {getattr(e, 'reason', e)}")
    finally:
        if not target.exists():
            for p in made:
                try:
                    p.rmdir()
                except OSError:
                    pass
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
# Machinery: save and load. .npz files without pickles, written atomically. A model file
# holds each layer's weights by name (W0, b0, W1, b1, ..., head), so np.load shows them.
# ----------------------------------------------------------------------------

class ModelError(Exception):
    """A model or checkpoint file is missing, unreadable or does not fit this run."""


def cpu_name() -> str:
    """The CPU's "model name" from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> tuple:
    """(commit, dirty) of the git tree holding this file; dirty: tracked files differ from
    the commit. (None, None) outside git or without it."""
    import subprocess
    here = str(Path(__file__).resolve().parent)
    try:
        head = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        status = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None, None
    if head.returncode or status.returncode:
        return None, None
    return head.stdout.strip(), bool(status.stdout.strip())


def blas() -> dict:
    """The BLAS NumPy calls: library, version, kernel and threads (threadpoolctl), or the
    build's record of it when threadpoolctl is missing."""
    try:
        from threadpoolctl import threadpool_info
        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                return {k: pool.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
    except ImportError:
        pass
    try:
        build = np.__config__.CONFIG["Build Dependencies"]["blas"]
        return {"internal_api": build.get("name"), "version": build.get("version")}
    except (AttributeError, KeyError, TypeError):
        return {}


@lru_cache(maxsize=None)
def machine() -> dict:
    """Where and with what a result was made; every result, model and checkpoint holds one."""
    commit, dirty = git_commit()
    return {"commit": commit, "dirty": dirty, "python": platform.python_version(),
            "numpy": np.__version__, "blas": blas(), "cpu": cpu_name(), "cores": os.cpu_count(),
            "platform": platform.platform()}


# ----------------------------------------------------------------------------
# Stopping: SIGINT (Ctrl-C), SIGTERM (a job scheduler's stop) and SIGHUP end a run the
# same way: the last epoch checkpointed, one line, exit 128 + the signal's number. A
# write in progress finishes first.
# ----------------------------------------------------------------------------

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
# Signals are process state; this is their one place. raised: the stop last raised in the
# block, kept until the block closes (raise_lost_stop).
_stop = {"deferring": 0, "pending": None, "raised": None}


class Stopped(KeyboardInterrupt):
    """A stop signal, raised where the program stands; code: 128 + its number."""
    def __init__(self, signum=signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.code = int(signum), 128 + int(signum)


def exit_code(e: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return getattr(e, "code", 130)


def stop_reason(e: KeyboardInterrupt) -> str:
    signum = getattr(e, "signum", signal.SIGINT)
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"


def _raise_stop(signum, frame):
    if _stop["deferring"]:
        _stop["pending"] = signum
    else:
        _stop["raised"] = signum
        raise Stopped(signum)


def raise_lost_stop():
    """Raise again a stop whose exception got lost: one raised inside a C extension's call
    can be cleared there (about 1 Ctrl-C in 10 reached a benchmark's warm-up and never
    ended it). Training calls this between steps; a stop that did end its block is reset
    when the block closes."""
    if _stop["raised"] is not None and not _stop["deferring"]:
        raise Stopped(_stop["raised"])


@contextmanager
def stop_signals():
    """Inside the block SIGINT, SIGTERM and SIGHUP raise Stopped (every script's main runs
    in one). A signal already ignored (a background job's SIGINT, nohup's SIGHUP) stays so."""
    old = {}
    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
            try:
                old[sig] = signal.signal(sig, _raise_stop)
            except ValueError:                     # not the main thread: leave them be
                break
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        _stop["raised"] = None


@contextmanager
def deferred_stop():
    """A stop signal that arrives inside the block is raised at its end: a save finishes."""
    _stop["deferring"] += 1
    try:
        yield
    finally:
        _stop["deferring"] -= 1
    if not _stop["deferring"] and _stop["pending"] is not None:
        signum, _stop["pending"] = _stop["pending"], None
        raise Stopped(signum)


def say(*parts, **kwargs):
    """print, flushed; a closed standard output (a pipe into `head` that has quit) silences
    the rest of the run instead of ending it."""
    try:
        print(*parts, **kwargs, flush=True)
    except BrokenPipeError:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            sys.stdout = open(os.devnull, "w")


def atomic_write_bytes(path, payload: bytes):
    """Write to a temporary file beside path, then rename: never a half-written file."""
    path = Path(path)
    with deferred_stop():                       # a stop signal waits for the rename
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)       # mkstemp makes 0600; give the usual mode
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_savez(path, arrays: dict):
    with deferred_stop():                       # the archive is built and written, or not begun
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
    except IsADirectoryError:
        raise ModelError(f"{path} is a folder, not a {what} file") from None
    except (OSError, ValueError, EOFError, KeyError, zlib.error, zipfile.BadZipFile) as e:
        reason = "not a .npz archive" if isinstance(e, ValueError) else (str(e) or type(e).__name__)
        raise ModelError(f"{path} is not a readable .npz {what} file ({reason}; truncated or "
                         f"corrupt?)") from None


def weight_arrays(net: Net) -> dict:
    """Host copies of the weights by name: W{l} (D_l, D_{l+1}), b{l} (D_{l+1},), head (F, 10)."""
    arrays = {}
    for l, (W, b) in enumerate(zip(net.W, net.b)):
        arrays[f"W{l}"], arrays[f"b{l}"] = np.array(to_host(W)), np.array(to_host(b))
    if net.head is not None:
        arrays["head"] = np.array(to_host(net.head))
    return arrays


def weight_shapes(cfg: Config) -> dict:
    sizes = cfg.layer_sizes
    shapes = {}
    for l, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes[f"W{l}"], shapes[f"b{l}"] = (d_in, d_out), (d_out,)
    if cfg.softmax_head:
        shapes["head"] = (head_width(sizes), N_CLASSES)
    return shapes


def npz_header(kind: str, cfg: Config, history: dict) -> dict:
    return {"format_version": np.array(FORMAT_VERSION), "kind": np.array(kind),
            "config": np.array(json.dumps(dataclasses.asdict(cfg))),
            "history": np.array(json.dumps(history)), "machine": np.array(json.dumps(machine())),
            "shapes": np.array(json.dumps(weight_shapes(cfg)))}


# What each kind of file must hold besides its weights (a damaged one is named by its key).
NPZ_KEYS = {"model": ("config", "history", "metrics"),
            "checkpoint": ("config", "history", "epoch", "rngs", "peer_means")}


def read_ff_npz(path, kind: str):
    """(arrays, cfg, params, head) of a model or checkpoint file, its weights checked."""
    data = read_npz(path, kind)
    version = int(data["format_version"]) if "format_version" in data else None
    if str(data.get("kind", "")) != kind:
        hint = "a model file? use the file written by --checkpoint" if kind == "checkpoint" else \
            "written by ff_label_in_input.py --save?"
        raise ModelError(f"{path} is not an FF {kind} ({hint})")
    if version != FORMAT_VERSION:
        raise ModelError(f"{path} is an FF {kind} of format version {version}; this version "
                         f"reads version {FORMAT_VERSION} (rerun " + ("with --resume dropped, or "
                         if kind == "checkpoint" else "the training, or use ") + "the older code that wrote it)")
    missing = [k for k in NPZ_KEYS[kind] if k not in data]
    if missing:
        raise ModelError(f"{path}: no {', '.join(missing)} in this {kind} file (damaged?)")
    for key in ("config", "history", "metrics", "rngs"):
        if key in data:
            try:
                json.loads(str(data[key]))
            except ValueError:
                raise ModelError(f"{path}: its {key} is not readable JSON (damaged?)") from None
    try:
        cfg = Config(**json.loads(str(data["config"])))
    except (TypeError, ValueError, KeyError) as e:
        raise ModelError(f"{path} has an unreadable config ({e})") from None
    shapes = weight_shapes(cfg)
    wrong = [k for k, shape in shapes.items() if k != "head" and
             (k not in data or data[k].shape != shape)]
    if wrong:
        raise ModelError(f"{path}: {', '.join(wrong)} missing or not of the shape that layer "
                         f"sizes {cfg.layer_sizes} need")
    params = np.concatenate([np.vstack([data[f"W{l}"], data[f"b{l}"][None]]).ravel()
                             for l in range(len(cfg.layer_sizes) - 1)])
    head = data.get("head")
    if cfg.softmax_head and (head is None or head.shape != shapes["head"]):
        raise ModelError(f"{path}: the softmax head is missing or has the wrong shape")
    if not np.isfinite(params).all() or (head is not None and not np.isfinite(head).all()):
        raise ModelError(f"{path}: its weights hold NaN or infinite values")
    return data, cfg, params.astype(DTYPE), None if head is None else head.astype(DTYPE)


def save_model(path, net: Net, cfg: Config, history: dict, metrics: dict | None = None):
    """model.npz: weights by name, config, history, metrics and machine()."""
    atomic_savez(path, {**npz_header("model", cfg, history),
                        "metrics": np.array(json.dumps(metrics or {})), **weight_arrays(net)})


def load_model(path):
    """Return (net, cfg, history, metrics) from a model.npz, checking what it reads."""
    data, cfg, params, head = read_ff_npz(path, "model")
    net = Net(cfg.layer_sizes, params, cfg.input_norm, head if cfg.softmax_head else None)
    return net, cfg, json.loads(str(data["history"])), json.loads(str(data["metrics"]))


def checkpoint_arrays(state: TrainState, cfg: Config, history: dict) -> dict:
    """A copy of everything needed to continue training exactly where it stands."""
    arrays = {**npz_header("checkpoint", cfg, history), **weight_arrays(state.net),
              "epoch": np.array(state.epoch),
              "rngs": np.array(json.dumps({k: r.bit_generator.state for k, r in state.rngs.items()})),
              "peer_means": np.concatenate([to_host(r) for r in state.peer_means])}
    arrays.update(optimizer_arrays(state.opt))
    if state.head_opt is not None:
        arrays["head_avg_grad"] = np.array(to_host(state.head_opt.avg_grad))
    return arrays


def resume_problem(path, saved: dict, current: dict, fields, epoch: int) -> str | None:
    """Why a checkpoint of config `saved`, at `epoch`, cannot continue a run of config
    `current` (its training `fields` must match; n_epochs may grow unless the schedule is
    cooldown), or None. Shared with the backprop baseline."""
    differ = [f"--{k.replace('_', '-')} {saved[k]} (now {current[k]})"
              for k in fields if k != "n_epochs" and saved[k] != current[k]]
    if differ:
        return f"{path} was written by a run with other settings: " + ", ".join(differ)
    if saved["n_epochs"] != current["n_epochs"] and current["lr_schedule"] == "cooldown":
        return (f"{path}: cannot change --n-epochs from {saved['n_epochs']} to "
                f"{current['n_epochs']}: the cooldown schedule depends on it")
    if epoch > current["n_epochs"]:
        return f"{path} is already at epoch {epoch} > --n-epochs {current['n_epochs']}"
    return None


def optimizer_arrays(opt) -> dict:
    """An optimiser's state as a checkpoint's opt_* arrays (its settings are not kept)."""
    return {f"opt_{k}": np.array(to_host(v) if hasattr(v, "shape") else v)
            for k, v in vars(opt).items() if k not in OPTIMIZER_SETTINGS}


def restore_optimizer(opt, data: dict):
    """An optimiser's fields from a checkpoint's opt_* arrays (0-d ones as Python numbers)."""
    for f in dataclasses.fields(opt):
        if f.name in OPTIMIZER_SETTINGS:
            continue
        if f"opt_{f.name}" not in data:
            if isinstance(getattr(opt, f.name), np.ndarray):
                raise ModelError(f"the checkpoint has no opt_{f.name} (damaged?)")
            continue                        # a number older checkpoints lack (SGD's t)
        value = data[f"opt_{f.name}"]
        setattr(opt, f.name, value.astype(DTYPE) if value.ndim else value.item())


def load_checkpoint(path, cfg: Config):
    """(state, history) from a checkpoint of the same training config. n_epochs may grow
    unless the learning-rate schedule depends on it (cooldown)."""
    data, saved_cfg, params, head = read_ff_npz(path, "checkpoint")
    problem = resume_problem(path, dataclasses.asdict(saved_cfg), dataclasses.asdict(cfg),
                             TRAINING_FIELDS, int(data["epoch"]))
    if problem:
        raise ModelError(problem)
    state = init_state(cfg)
    state.net.params[...] = params
    try:
        restore_optimizer(state.opt, data)
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from None
    state.peer_means = np.split(data["peer_means"].astype(DTYPE), np.cumsum(cfg.layer_sizes[1:-1]))
    if state.net.head is not None:
        if "head_avg_grad" not in data:
            raise ModelError(f"{path}: no head_avg_grad in this checkpoint file (damaged?)")
        state.net.head[...], state.head_opt.avg_grad[...] = head, data["head_avg_grad"]
    for k, rng_state in json.loads(str(data["rngs"])).items():
        state.rngs[k].bit_generator.state = rng_state
    state.epoch = int(data["epoch"])
    return state, json.loads(str(data["history"]))


# ----------------------------------------------------------------------------
# Machinery: the CLI.
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


FLAG_TYPES = {"seed": bounded(int, 0), "n_epochs": positive_int, "layer_sizes": layer_sizes_arg,
              "batch_size": positive_int, "lr": positive_float, "deep_lr_scale": positive_float,
              "smoothing": bounded(float, 0.0, 0.999), "weight_cost": nonnegative_float,
              "threshold": finite_float, "peer_norm": nonnegative_float, "head_lr": positive_float,
              "head_weight_cost": nonnegative_float, "jitter": bounded(int, 0, 27),
              "train_subset": bounded(int, 1, N_TRAIN), "val_split": bounded(int, 0),
              "eval_subset": bounded(int, 1, N_TEST), "group_batches": positive_int}


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
                           metavar=meta.get("metavar"), help=meta["help"])
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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each flag's default as it is typed (a list as 784,500,500), except where
    there is none to show (None, False)."""
    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        if isinstance(action.default, (list, tuple)):
            return f"{action.help} (default: {','.join(map(str, action.default))})"
        return super()._get_help_string(action)


def build_parser(argv=None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Supervised Forward-Forward (Hinton 2022) on MNIST, label in the first "
                    "10 pixels.", formatter_class=HelpFormatter)
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
    if cfg.schedule == "layer-major" and (cfg.softmax_head or cfg.neg_sampling in ("hard", "softmax")):
        p.error("--schedule layer-major needs negatives that do not depend on the layers above: "
                "--neg-sampling uniform or hard-first, and no --softmax-head")


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
    check_paths(p, args, ("save", "metrics", "checkpoint"))
    return args, cfg


def user_path(path) -> str | None:
    """A path as the user meant it: ~ and $VARS expanded (a shell leaves --save=~/m.npz
    and quoted paths alone). Every check and every writer sees this one form."""
    return None if path is None else os.path.expandvars(os.path.expanduser(str(path)))


def writable_folder(folder: Path) -> str | None:
    """Why no new file can be made in folder, or None: a real file is created and removed
    (os.access says yes to folders that refuse, /sys for root)."""
    if not folder.is_dir():
        return "no such folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return e.strerror or type(e).__name__
    return None


def check_paths(p: argparse.ArgumentParser, args, outputs, inputs=("resume",)):
    """Expand ~ and $VARS in the path flags (in args, so the writers use the same paths),
    then refuse up front (exit 2) an input that is not a file, and any output whose path is
    a folder, sits in a folder that refuses new files, or is another output's too (shared
    by the scripts)."""
    for flag in (*inputs, *outputs):
        if hasattr(args, flag):
            setattr(args, flag, user_path(getattr(args, flag)))
    for flag in inputs:
        path = getattr(args, flag, None)
        if path and Path(path).is_dir():
            p.error(f"--{flag}: {path} is a folder; give the file")
        if path and not Path(path).is_file():
            p.error(f"--{flag}: no such file {path}")
    seen = {}
    for flag in outputs:
        path = getattr(args, flag)
        if path is None:
            continue
        if Path(path).is_dir():
            p.error(f"--{flag}: {path} is a folder; give a file name")
        parent = Path(path).resolve().parent
        problem = writable_folder(parent)
        if problem:
            p.error(f"--{flag}: cannot write to folder {parent} ({problem})")
        other = seen.setdefault(Path(path).resolve(), flag)
        if other != flag:
            p.error(f"--{flag} and --{other} name the same file {path}; give each its own")


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


def fail(message, code=2):
    """One line on stderr and exit: 2 for bad input (the default), 1 when training failed,
    130 on Ctrl-C."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv=None, checksums=None, mirrors=None) -> dict:
    """Train, report and save; return the metrics dict. checksums and mirrors go to
    load_mnist (tests use small synthetic files). Ctrl-C, SIGTERM or SIGHUP anywhere
    exits 130, 143 or 129 with one line; a trained model is saved before its final
    evaluation, and a save under way finishes first."""
    args, cfg = parse_args(argv)
    try:
        with stop_signals():
            return run(args, cfg, argv, checksums, mirrors)
    except KeyboardInterrupt as e:  # every file is written atomically: none is half-written
        fail(stop_reason(e), exit_code(e))
    except MemoryError:
        fail(f"out of memory for layer sizes {','.join(map(str, cfg.layer_sizes))} "
             f"({n_params(cfg.layer_sizes):,} weights); try smaller layers", 1)


def run(args, cfg: Config, argv, checksums, mirrors) -> dict:
    """main after its flags are parsed."""
    log = None if args.quiet else say
    try:
        data = load_mnist(args.data_dir, checksums, mirrors)
    except DataError as e:
        fail(e)
    except KeyboardInterrupt as e:
        fail(f"{stop_reason(e)} while loading MNIST; nothing was written", exit_code(e))
    (x_train, y_train), (x_test, y_test), held_out = split_data(cfg, *data)
    k = cfg.eval_subset
    evaluation = ((x_train[:k], y_train[:k]), (x_test[:k], y_test[:k]))
    if log:
        log("config: " + json.dumps(dataclasses.asdict(cfg)))
        log(f"data: {len(x_train)} training images; every epoch scores {min(k, len(x_train))} "
            f"train + {min(k, len(x_test))} {held_out} images; per layer: loss g_pos/g_neg per unit")
    try:
        net, history = train(cfg, x_train, y_train, evaluation=evaluation, log=log,
                             checkpoint=args.checkpoint, resume=args.resume,
                             interrupted_to="ff_interrupted.npz")
    except NonFiniteLoss as e:
        fail(f"{e}; no model was saved", 1)
    except ModelError as e:
        fail(e)
    except Interrupted as e:
        flags = list(sys.argv[1:] if argv is None else argv)
        if "--resume" in flags:
            i = flags.index("--resume")
            del flags[i:i + 2]
        again = shlex.join(["python3", Path(__file__).name, *map(str, flags), "--resume", str(e.path)])
        fail(f"{e}. To continue: {again}", e.code)
    if args.save:                   # saved first: an interrupted evaluation loses no model
        try:
            save_model(args.save, net, cfg, history)
        except KeyboardInterrupt as e:              # raised once the save was done
            fail(f"{stop_reason(e)}; the trained model is in {args.save}, without test metrics",
                 exit_code(e))
    train_seconds = sum(history["seconds"])                          # resumed epochs included
    x_final, y_final = (x_test, y_test) if cfg.full_test else evaluation[1]
    try:
        metrics = evaluate(net, x_final, y_final, cfg.predict_mode)
    except KeyboardInterrupt as e:
        kept = f"the trained model is in {args.save}, without" if args.save else "no model was saved and no"
        fail(f"{stop_reason(e)} during the final evaluation; {kept} test metrics", exit_code(e))
    metrics.update({"evaluated_on": held_out, "config": dataclasses.asdict(cfg),
                    "command": "python3 ff_label_in_input.py " + " ".join(
                        sys.argv[1:] if argv is None else argv),
                    "train_seconds": train_seconds, "layer_widths": cfg.layer_sizes[1:],
                    "final_train_accuracy": history["train_acc"][-1],
                    "final_layer_stats": {k: history[k][-1] for k in ("loss", "g_pos", "g_neg")},
                    "machine": machine()})
    if log:
        log(report(metrics))
        log(f"training took {train_seconds:.1f}s")
    if args.save:
        save_model(args.save, net, cfg, history, metrics)
        if log:
            log(f"saved model to {args.save}")
    if args.metrics:
        record = {**metrics, "history": history}        # the curves, beside the final numbers
        atomic_write_bytes(args.metrics, (json.dumps(record, indent=2) + "\n").encode())
    return metrics


if __name__ == "__main__":
    main()
