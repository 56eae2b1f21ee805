"""Supervised Forward-Forward with the label written into the first 10 pixels.

Hinton (2022), "The Forward-Forward Algorithm: Some Preliminary Investigations",
arXiv:2212.13345, section 3.3. Every layer of a ReLU network is trained on its
own, with no gradient crossing layers: its goodness (mean squared activity)
should be above a threshold theta for an image carrying its true label in the
first 10 pixels (positive data) and below theta for the same image carrying a
wrong label (negative data). To classify, try all 10 labels and pick the one
with the highest goodness summed over layers.

    python3 ff_label_in_input.py --seed 0 --n-epochs 30 --lr 0.003 \
        --layer-sizes 784,500,500 --eval-subset 2000 --full-test --save model.npz
    python3 ff_label_in_input.py --n-epochs 1 --train-subset 10000 --quiet

dtype policy: float32 for data, weights and training (float64 only in tests).
Importing this module does nothing: no download, no folders, no threads.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import hashlib
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1          # of model.npz and checkpoints
DTYPE = np.float32
NORM_EPS = 1e-8             # in h / sqrt(mean(h^2) + NORM_EPS) between layers
LABEL_SLOT = 10             # the first 10 flat pixels carry the one-hot label
N_CLASSES = 10
N_PIXELS = 784
PREDICT_MODES = ("all", "first", "skip-first")


# ----------------------------------------------------------------------------
# Config: defaults are the seed's published run.
# ----------------------------------------------------------------------------

@dataclass
class Config:
    """Everything that defines a run; each field is also a CLI flag."""
    seed: int = 0                       # seeds the one np.random.Generator
    n_epochs: int = 30                  # passes over the training set
    lr: float = 0.003                   # Adam learning rate
    layer_sizes: list = field(default_factory=lambda: [784, 500, 500])  # input then hidden
    threshold: float = 2.0              # theta: goodness boundary between pos and neg
    batch_size: int = 128               # minibatch size (positives; as many negatives)
    jitter: bool = False                # random shift of up to 2 px per image per epoch
    train_subset: int | None = None     # first N training images (None: all 60000)
    eval_subset: int = 2000             # images of train and of test scored every epoch
    full_test: bool = False             # final report on all 10000 test images
    predict_mode: str = "all"           # which layers' goodness the headline sums
    lr_schedule: str = "constant"       # constant | cooldown: constant for half the steps, then linear to 0
    deep_lr_scale: float = 1.0          # lr multiplier for every layer after the first
    neg_sampling: str = "uniform"       # uniform | hard | hard-first: wrong label ~ softmax of
                                        # current goodness (hard-first: of layer 0 alone, ~free)
    peer_norm: float = 0.0              # weight of the peer-normalisation penalty (0: off)
    val_split: int = 0                  # hold out the last N training images and evaluate on them
    goodness: str = "mean"              # mean | sum: the logistic compares sum(h^2) with theta * D
                                        # DEVIATION (seed default): mean vs 2.0; Hinton's code: sum vs D


TRAINING_FIELDS = ("seed", "n_epochs", "lr", "layer_sizes", "threshold", "batch_size", "jitter",
                   "train_subset", "lr_schedule", "deep_lr_scale", "neg_sampling", "peer_norm",
                   "val_split", "predict_mode", "goodness")   # a checkpoint resumes only if these match


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


def download(name: str, folder: Path, mirrors=None) -> Path:
    """Fetch name.gz into folder; written to a temporary name, renamed when complete."""
    mirrors = MNIST_MIRRORS if mirrors is None else mirrors
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

    Missing files are downloaded from `mirrors` (default MNIST_MIRRORS) into the folder.
    """
    checksums = MNIST_FILES if checksums is None else checksums
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


def clear_label_slot(x: np.ndarray) -> np.ndarray:
    """Copy of x with the label slot zeroed: the 'image part' of every labelled input.

    Because the slot holds a one-hot, embed_label(x, y) @ W == clear_label_slot(x) @ W
    + W[y]: positives, negatives and all 10 test-time candidates share one image product.
    """
    x = np.array(x, dtype=x.dtype, copy=True)
    x[:, :LABEL_SLOT] = 0
    return x


def jitter_images(x: np.ndarray, rng: np.random.Generator, max_shift: int = 2) -> np.ndarray:
    """Shift each 28x28 image by its own random (dy, dx) in [-2, 2]^2, zero fill.

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

    scores: (N, 10) goodness of each candidate label under the current network, so the
    wrong labels the network finds most convincing are drawn most often.
    """
    z = scores.astype(np.float64)
    z[np.arange(len(y)), y] = -np.inf                            # never the true label
    p = np.exp(z - z.max(axis=1, keepdims=True))
    cdf = np.cumsum(p, axis=1)
    u = rng.random(len(y))[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), N_CLASSES - 1)


# ----------------------------------------------------------------------------
# Layer numerics: goodness, loss and its local gradient, normalisation.
# ----------------------------------------------------------------------------

@dataclass
class Net:
    """Weights of the FF stack. W[l]: (D_l, D_{l+1}), b[l]: (D_{l+1},).

    All W and b are views into one flat float32 vector `params`, so the
    optimiser can update every parameter in one streaming pass.
    """
    layer_sizes: list
    params: np.ndarray
    W: list
    b: list


def param_views(flat: np.ndarray, layer_sizes):
    """Split a flat vector into per-layer (W, b) views, in order W0, b0, W1, b1, ..."""
    Ws, bs, i = [], [], 0
    for d_in, d_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        Ws.append(flat[i:i + d_in * d_out].reshape(d_in, d_out)); i += d_in * d_out
        bs.append(flat[i:i + d_out]); i += d_out
    return Ws, bs


def stacked_views(flat: np.ndarray, layer_sizes):
    """Per-layer views [W; b] of shape (D_in + 1, D_out): b sits right after W in `flat`,
    so a 1 appended to each input row makes one product compute x W + b, and the
    same product's transpose gives the weight and bias gradients together."""
    views, i = [], 0
    for d_in, d_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        views.append(flat[i:i + (d_in + 1) * d_out].reshape(d_in + 1, d_out))
        i += (d_in + 1) * d_out
    return views


def n_params(layer_sizes) -> int:
    return sum(a * b + b for a, b in zip(layer_sizes[:-1], layer_sizes[1:]))


def init_net(layer_sizes, rng: np.random.Generator) -> Net:
    """Uniform(+-1/sqrt(fan_in)) weights and biases, as torch.nn.Linear's default."""
    # DEVIATION: the paper does not give its initialisation.
    flat = np.empty(n_params(layer_sizes), dtype=DTYPE)
    Ws, bs = param_views(flat, layer_sizes)
    for W, b in zip(Ws, bs):
        bound = 1.0 / math.sqrt(W.shape[0])
        W[...] = rng.uniform(-bound, bound, size=W.shape)
        b[...] = rng.uniform(-bound, bound, size=b.shape)
    return Net(list(layer_sizes), flat, Ws, bs)


def goodness(h: np.ndarray) -> np.ndarray:
    """Hinton 2022: goodness = mean of the squared activities of a layer. (N, D) -> (N,)"""
    return np.einsum("ij,ij->i", h, h) / h.dtype.type(h.shape[1])


def normalize(h: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Rescale each row to mean(h^2) = 1 so the next layer cannot read this layer's goodness."""
    return h * (1 / np.sqrt(g + g.dtype.type(NORM_EPS)))[:, None]


def softplus(x):
    return np.logaddexp(DTYPE(0), x)


def sigmoid(x):
    return DTYPE(0.5) * np.tanh(DTYPE(0.5) * x) + DTYPE(0.5)  # stable for any x


def ff_loss(g_pos, g_neg, theta, scale=1.0):
    """mean softplus(s (theta - g_pos)) + mean softplus(s (g_neg - theta)): -log p(correct).

    scale s = 1 compares mean(h^2) with theta (the seed); s = D compares sum(h^2) with
    theta * D, the much sharper logistic of Hinton's released code (with theta = 1).
    """
    return softplus(scale * (theta - g_pos)).mean() + softplus(scale * (g_neg - theta)).mean()


def dloss_dgoodness(g_pos, g_neg, theta, scale=1.0):
    """d ff_loss / d g for each positive and each negative sample. (B,), (B,)"""
    return (-scale * sigmoid(scale * (theta - g_pos)) / len(g_pos),
            scale * sigmoid(scale * (g_neg - theta)) / len(g_neg))


def dgoodness_dz_scale(h: np.ndarray, dl_dg: np.ndarray, out=None) -> np.ndarray:
    """dL/dz = dL/dg * 2 h / D (ReLU' is 1 where h > 0; h is 0 elsewhere). (N, D)"""
    return np.multiply(h, (dl_dg * h.dtype.type(2.0 / h.shape[1]))[:, None], out=out)


def layer_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray):
    """h = relu(x W + b) and its goodness. (N, D_in) -> (N, D_out), (N,)"""
    h = x @ W
    h += b
    np.maximum(h, 0, out=h)
    return h, goodness(h)


# ----------------------------------------------------------------------------
# One training step: every layer learns from its own input and output only.
# ----------------------------------------------------------------------------

def training_inputs(x: np.ndarray) -> np.ndarray:
    """Images as ff_step_grads takes them: label slot zeroed, a constant 1 appended
    (the bias input). (N, 784) -> (N, 785)"""
    # DEVIATION: raw [0, 1] pixels; Hinton's code also normalises the input vector.
    out = np.empty((len(x), N_PIXELS + 1), x.dtype)
    out[:, :N_PIXELS] = x
    out[:, :LABEL_SLOT] = 0
    out[:, N_PIXELS] = 1
    return out


PEER_MOMENTUM = 0.9      # running mean of each unit's activity, for peer normalisation


def ff_step_grads(net: Net, x_img: np.ndarray, y_pos: np.ndarray, y_neg: np.ndarray,
                  theta: float, grads: np.ndarray, peer_norm: float = 0.0, peer_means=None,
                  goodness_kind: str = "mean"):
    """Local FF gradients of all layers for one minibatch, written into `grads`.

    x_img: (B, 785) from training_inputs; y_pos, y_neg: (B,) labels.
    Returns per-layer (loss, mean g_pos, mean g_neg). The positive and negative
    batches go through each product together as one (2B, D) matrix.
    peer_norm > 0 adds peer normalisation (Hinton 2022, sec. 3.5 and his code): a
    penalty peer_norm * mean_j (r_j - mean(r))^2 on each unit's running mean activity
    r_j over positive data (peer_means, updated in place), which keeps units alive.
    """
    B = len(x_img)
    Wb, gWb = stacked_views(net.params, net.layer_sizes), stacked_views(grads, net.layer_sizes)
    labels = np.concatenate([y_pos, y_neg])                        # (2B,)
    stats = []
    x = None
    for l in range(len(Wb)):
        d_out = Wb[l].shape[1]
        if l == 0:
            # Label-slot identity: [x_img + onehot(y)] W0 = x_img W0 + W0[y]. One image
            # product serves the positive and the negative copy.
            a = x_img @ Wb[0]                                      # (B, D1), bias included
            h = np.take(Wb[0][:LABEL_SLOT], labels, axis=0)        # (2B, D1)
            h[:B] += a
            h[B:] += a
        else:
            # Written W^T x^T: with 2B = 256 rows and D = 2000, OpenBLAS runs
            # (D, K) x (K, 2B) about 1.3x faster than (2B, K) x (K, D).
            h = (Wb[l].T @ x.T).T                                  # (2B, D), column-major
        np.maximum(h, 0, out=h)
        g = goodness(h)
        g_pos, g_neg = g[:B], g[B:]
        scale = h.dtype.type(d_out if goodness_kind == "sum" else 1)
        stats.append((float(ff_loss(g_pos, g_neg, theta, scale)), float(g_pos.mean()),
                      float(g_neg.mean())))
        if l + 1 < len(Wb):                                        # next input; no gradient flows back
            x_next = np.empty((2 * B, d_out + 1), h.dtype)
            np.multiply(h, (1 / np.sqrt(g + g.dtype.type(NORM_EPS)))[:, None], out=x_next[:, :d_out])
            x_next[:, d_out] = 1
        dl_dg = np.concatenate(dloss_dgoodness(g_pos, g_neg, theta, scale))
        if peer_norm:
            r = peer_means[l]
            r *= PEER_MOMENTUM
            r += (1 - PEER_MOMENTUM) * h[:B].mean(axis=0)
            active = h[:B] > 0
        dz = dgoodness_dz_scale(h, dl_dg, out=h)                   # (2B, D), over h
        if peer_norm:
            # d penalty / d h_ij for positive rows, through this batch's share of r_j
            coef = (peer_norm * 2 / d_out * (1 - PEER_MOMENTUM) / B) * (r - r.mean())
            dz[:B] += active * coef.astype(h.dtype)
        if l == 0:
            # d/d[W0; b0] of both copies: x_img^T (dz_pos + dz_neg), plus each sample's
            # dz on the row of the label it carried (the one-hot pixel).
            np.matmul(x_img.T, dz[:B] + dz[B:], out=gWb[0])
            onehot_t = (np.arange(N_CLASSES)[:, None] == labels).astype(h.dtype)   # (10, 2B)
            np.matmul(onehot_t, dz, out=gWb[0][:LABEL_SLOT])
        else:
            np.matmul(x.T, dz, out=gWb[l])
        if l + 1 < len(Wb):
            x = x_next
    return stats


# ----------------------------------------------------------------------------
# Adam, one per layer; all layers share lr and step count, so one flat pass does it.
# ----------------------------------------------------------------------------

# DEVIATION: Adam (the seed's choice), where Hinton's code uses SGD with momentum and
# weight decay.
@dataclass
class Adam:
    """Adam (Kingma & Ba 2015) state over the flat parameter vector.

    Stored as m' = m / (1 - beta1) and v' = v / (1 - beta2) so that each update is
    m' = beta1 m' + g, v' = beta2 v' + g^2 (no scaling pass); the constants move
    into the step size and epsilon, giving exactly Adam's update.
    """
    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    t: int = 0
    m: np.ndarray | None = None
    v: np.ndarray | None = None


ADAM_CHUNK = 65536       # elements per chunk: the 5 arrays of a chunk (1.3 MB) stay in L2
# Dead units get exactly zero gradients, so their Adam moments decay geometrically
# into float32 subnormals, whose arithmetic is ~100x slower on x86. Every
# GUARD_EVERY steps, adding then subtracting 2^-100 leaves each |m|, |v| > 2^-76
# exactly as it is and rounds smaller values to multiples of 2^-123 (about 1e-37),
# flushing subnormals to 0. Between two guards m shrinks by at most 0.9^16 = 0.19,
# so a rounded value (>= 2^-123) stays above the smallest normal 2^-126 until the
# next guard. The change, < 1e-37 absolute, is far below float32 rounding of any update.
SUBNORMAL_GUARD = DTYPE(2.0 ** -100)
GUARD_EVERY = 16


def make_adam(n: int, lr: float) -> Adam:
    return Adam(lr=lr, m=np.zeros(n, DTYPE), v=np.zeros(n, DTYPE))


def adam_constants(opt: Adam, lr: float):
    """Step size and epsilon for the scaled moments at step opt.t."""
    c1 = 1 - opt.beta1 ** opt.t
    c2 = 1 - opt.beta2 ** opt.t
    # lr * (m / c1) / (sqrt(v / c2) + eps) with m = (1-b1) m', v = (1-b2) v'
    step = lr * (1 - opt.beta1) / c1 * math.sqrt(c2 / (1 - opt.beta2))
    eps = opt.eps * math.sqrt(c2 / (1 - opt.beta2))
    return step, eps


def _adam_chunk(p, g, m, v, tmp, beta1, beta2, step, eps, guard):
    """In-place Adam on one chunk: 10 ufunc calls (14 on guard steps), no temporaries."""
    m *= beta1
    m += g
    v *= beta2
    np.multiply(g, g, out=tmp)
    v += tmp
    if guard:
        for state in (m, v):
            state += SUBNORMAL_GUARD
            state -= SUBNORMAL_GUARD
    np.sqrt(v, out=tmp)
    tmp += eps
    tmp *= 1 / step
    np.divide(m, tmp, out=tmp)
    p -= tmp


def adam_update(params, grads, opt: Adam, lr: float, pool=None, segments=None):
    """One Adam step on the flat vectors. Each of `pool`'s threads takes one contiguous
    share and walks it in cache-sized chunks (NumPy releases the GIL inside ufuncs).

    segments: optional [(start, stop, lr_multiplier)] for per-layer learning rates.
    """
    opt.t += 1
    if segments is None:
        segments = [(0, len(params), 1.0)]
    for seg_start, seg_stop, mult in segments:
        _adam_segment(params, grads, opt, lr * mult, seg_start, seg_stop, pool)


def _adam_segment(params, grads, opt, lr, seg_start, seg_stop, pool):
    step, eps = adam_constants(opt, lr)
    b1, b2, step, eps = DTYPE(opt.beta1), DTYPE(opt.beta2), DTYPE(step), DTYPE(eps)
    guard = opt.t % GUARD_EVERY == 0
    n = seg_stop - seg_start

    def run(share):
        start, stop = share
        tmp = np.empty(min(ADAM_CHUNK, stop - start), DTYPE)
        for a in range(start, stop, ADAM_CHUNK):
            z = min(a + ADAM_CHUNK, stop)
            _adam_chunk(params[a:z], grads[a:z], opt.m[a:z], opt.v[a:z], tmp[:z - a],
                        b1, b2, step, eps, guard)

    k = pool._max_workers if pool is not None and n >= 2 * ADAM_CHUNK else 1
    shares = [(seg_start + n * i // k, seg_start + n * (i + 1) // k) for i in range(k)]
    if k == 1:
        run(shares[0])
    else:
        list(pool.map(run, shares))


# ----------------------------------------------------------------------------
# Training loop.
# ----------------------------------------------------------------------------

class NonFiniteLoss(FloatingPointError):
    """The FF loss became NaN or infinite."""


class Interrupted(Exception):
    """Ctrl-C during training; the last complete epoch was saved to `path`."""
    def __init__(self, path, epoch):
        super().__init__(f"interrupted; the state after epoch {epoch} is in {path}")
        self.path, self.epoch = path, epoch


def new_history():
    return {"epoch": [], "loss": [], "g_pos": [], "g_neg": [], "train_acc": [],
            "test_acc": [], "seconds": []}


@dataclass
class TrainState:
    """Everything that changes while training: weights, optimiser, random streams."""
    net: Net
    opt: Adam
    grads: np.ndarray
    rng_order: np.random.Generator
    rng_neg: np.random.Generator
    rng_jitter: np.random.Generator
    peer_means: list          # per layer, running mean activity of each unit (peer norm)
    epoch: int = 0


def init_state(cfg: Config) -> TrainState:
    """Fresh weights and optimiser; one SeedSequence spawns a stream for each use."""
    rng_init, rng_order, rng_neg, rng_jitter = (
        np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(4))
    net = init_net(cfg.layer_sizes, rng_init)
    return TrainState(net, make_adam(len(net.params), cfg.lr), np.zeros_like(net.params),
                      rng_order, rng_neg, rng_jitter,
                      [np.zeros(d, DTYPE) for d in cfg.layer_sizes[1:]])


def lr_at(cfg: Config, step: int, n_steps: int) -> float:
    """Learning rate at a 0-based step. cooldown: constant for the first half of
    training, then falling linearly to 0, as in Hinton's released code."""
    if cfg.lr_schedule == "cooldown" and step >= n_steps // 2:
        return cfg.lr * (n_steps - step) / (n_steps - n_steps // 2)
    return cfg.lr


def adam_segments(cfg: Config):
    """Per-layer lr multipliers over the flat vector: 1 for layer 0, deep_lr_scale after."""
    # DEVIATION (ours, off by default): slower deep layers keep their units alive.
    if cfg.deep_lr_scale == 1.0:
        return None
    first = (cfg.layer_sizes[0] + 1) * cfg.layer_sizes[1]
    return [(0, first, 1.0), (first, n_params(cfg.layer_sizes), cfg.deep_lr_scale)]


def train_epoch(state: TrainState, cfg: Config, x_inputs, y, pool=None, progress=None) -> np.ndarray:
    """One pass over (x_inputs, y) in shuffled minibatches; x_inputs from training_inputs.

    Returns the epoch's mean (loss, g_pos, g_neg) per layer, shape (L, 3).
    progress(i, n_batches), if given, is called about once a second.
    """
    net, n = state.net, len(x_inputs)
    x_epoch = x_inputs
    if cfg.jitter:
        x_epoch = training_inputs(jitter_images(x_inputs[:, :N_PIXELS], state.rng_jitter))
    order = state.rng_order.permutation(n)
    n_batches = math.ceil(n / cfg.batch_size)
    n_steps = n_batches * cfg.n_epochs
    segments = adam_segments(cfg)
    # DEVIATION (ours): hard-first scores candidate labels with layer 0 alone.
    hard_layers = mode_layers("first" if cfg.neg_sampling == "hard-first" else cfg.predict_mode,
                              len(net.W))
    sums = np.zeros((len(net.W), 3))
    shown = time.monotonic()
    for i in range(n_batches):
        idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        x_batch, y_pos = x_epoch[idx], y[idx]
        if cfg.neg_sampling != "uniform":
            scores = label_goodness(net, x_batch[:, :N_PIXELS], hard_layers).sum(axis=2)
            y_neg = draw_hard_labels(y_pos, scores, state.rng_neg)
        else:
            y_neg = draw_wrong_labels(y_pos, state.rng_neg)
        stats = ff_step_grads(net, x_batch, y_pos, y_neg, cfg.threshold, state.grads,
                              cfg.peer_norm, state.peer_means, cfg.goodness)
        if not all(math.isfinite(s[0]) for s in stats):
            raise NonFiniteLoss(f"the FF loss became non-finite in epoch {state.epoch + 1}, "
                                f"batch {i + 1} (try a smaller --lr)")
        sums += stats
        lr = lr_at(cfg, state.epoch * n_batches + i, n_steps)
        adam_update(net.params, state.grads, state.opt, lr, pool, segments)
        if progress and time.monotonic() - shown > 1:
            progress(i + 1, n_batches)
            shown = time.monotonic()
    state.epoch += 1
    return sums / n_batches


def train(cfg: Config, x_train, y_train, evaluation=None, callback=None, log=print,
          checkpoint=None, resume=None):
    """Train an FF net on (x_train, y_train) as cfg says; return (net, history).

    evaluation: optional ((x_tr, y_tr), (x_te, y_te)) scored after every epoch.
    callback(epoch, net, history) runs after each epoch (the GIF script uses it).
    checkpoint: path written atomically after every epoch (and on Ctrl-C);
    resume: path of a checkpoint to continue from (same training config).
    """
    if resume:
        state, history = load_checkpoint(resume, cfg)
        if log:
            log(f"resumed from {resume} after epoch {state.epoch}")
    else:
        state, history = init_state(cfg), new_history()
    x_inputs = training_inputs(x_train)
    progress = None
    if log and sys.stderr.isatty():
        def progress(i, n):
            print(f"\r  epoch {state.epoch + 1}: batch {i}/{n}", end="", file=sys.stderr, flush=True)
    snapshot = checkpoint_arrays(state, cfg, history)
    with ThreadPoolExecutor(max_workers=2) as pool:
        try:
            for epoch in range(state.epoch + 1, cfg.n_epochs + 1):
                t0 = time.perf_counter()
                means = train_epoch(state, cfg, x_inputs, y_train, pool, progress)
                if progress:
                    print("\r\033[K", end="", file=sys.stderr, flush=True)
                history["epoch"].append(epoch)
                history["loss"].append(means[:, 0].tolist())
                history["g_pos"].append(means[:, 1].tolist())
                history["g_neg"].append(means[:, 2].tolist())
                if evaluation is not None:
                    (xa, ya), (xb, yb) = evaluation
                    history["train_acc"].append(accuracy(state.net, xa, ya, cfg.predict_mode))
                    history["test_acc"].append(accuracy(state.net, xb, yb, cfg.predict_mode))
                history["seconds"].append(time.perf_counter() - t0)
                snapshot = checkpoint_arrays(state, cfg, history)
                if checkpoint:
                    atomic_savez(checkpoint, snapshot)
                if log:
                    log(epoch_line(epoch, cfg.n_epochs, history))
                if callback:
                    callback(epoch, state.net, history)
        except KeyboardInterrupt:
            path = checkpoint or "ff_interrupted.npz"
            atomic_savez(path, snapshot)
            raise Interrupted(path, int(snapshot["epoch"])) from None
    return state.net, history


def checkpoint_arrays(state: TrainState, cfg: Config, history: dict) -> dict:
    """A copy of everything needed to continue training exactly where it stands."""
    rngs = {k: getattr(state, k).bit_generator.state for k in ("rng_order", "rng_neg", "rng_jitter")}
    return {"format_version": np.array(FORMAT_VERSION), "kind": np.array("checkpoint"),
            "config": np.array(json.dumps(dataclasses.asdict(cfg))),
            "history": np.array(json.dumps(history)), "rngs": np.array(json.dumps(rngs)),
            "epoch": np.array(state.epoch), "t": np.array(state.opt.t),
            "params": state.net.params.copy(), "m": state.opt.m.copy(), "v": state.opt.v.copy(),
            "peer_means": np.concatenate(state.peer_means)}


def load_checkpoint(path, cfg: Config):
    """(state, history) from a checkpoint written with the same training config."""
    data = read_npz(path, "checkpoint")
    if str(data.get("kind", "")) != "checkpoint" or int(data.get("format_version", -1)) != FORMAT_VERSION:
        raise ModelError(f"{path} is not a checkpoint of this version (a model file? "
                         f"use the file written by --checkpoint)")
    saved = json.loads(str(data["config"]))
    current = dataclasses.asdict(cfg)
    differ = [f"--{k.replace('_', '-')} {saved.get(k)} (now {current[k]})"
              for k in TRAINING_FIELDS if saved.get(k) != current[k]]
    if differ:
        raise ModelError(f"{path} was written by a run with other settings: " + ", ".join(differ))
    state = init_state(cfg)
    state.net.params[...] = data["params"]
    state.opt.m[...], state.opt.v[...], state.opt.t = data["m"], data["v"], int(data["t"])
    state.peer_means = np.split(data["peer_means"].astype(DTYPE), np.cumsum(cfg.layer_sizes[1:-1]))
    for k, rng_state in json.loads(str(data["rngs"])).items():
        getattr(state, k).bit_generator.state = rng_state
    state.epoch = int(data["epoch"])
    return state, json.loads(str(data["history"]))


def epoch_line(epoch, n_epochs, history):
    """One fixed-width progress line: per-layer loss and goodness, accuracies, time, ETA."""
    layers = " ".join(f"L{l} {lo:.3f} {gp:5.2f}/{gn:5.2f}" for l, (lo, gp, gn) in
                      enumerate(zip(history["loss"][-1], history["g_pos"][-1], history["g_neg"][-1])))
    acc = ""
    if history["train_acc"]:
        acc = f" | train {100 * history['train_acc'][-1]:6.2f}% test {100 * history['test_acc'][-1]:6.2f}%"
    sec = history["seconds"][-1]
    eta = np.mean(history["seconds"]) * (n_epochs - epoch)
    return f"epoch {epoch:3d}/{n_epochs} | {layers}{acc} | {sec:5.1f}s ETA {eta:4.0f}s"


# ----------------------------------------------------------------------------
# Prediction: try every label, sum goodness, take the argmax.
# ----------------------------------------------------------------------------

PREDICT_CHUNK = 1000     # images per chunk (x 10 candidate labels)


def mode_layers(mode: str, n_layers: int):
    """Which layers' goodness a prediction mode sums; Hinton 2022 skips the first."""
    if mode == "all":
        return list(range(n_layers))
    if mode == "first":
        return [0]
    if mode == "skip-first":
        return list(range(1, n_layers))
    raise ValueError(f"unknown prediction mode {mode!r}")


def label_goodness(net: Net, x: np.ndarray, layers=None) -> np.ndarray:
    """Goodness of every layer for every candidate label. (N, 784) -> (N, 10, L)

    The image product x W0 is shared by all 10 labels (label-slot identity).
    With `layers`, only layers up to the last one named are computed; the returned
    array then holds just those layers, in order.
    """
    n = len(x)
    depth = len(net.W) if layers is None else max(layers) + 1
    out = np.empty((n, N_CLASSES, depth), DTYPE)
    for s in range(0, n, PREDICT_CHUNK):
        xc = clear_label_slot(x[s:s + PREDICT_CHUNK])
        c = len(xc)
        a = xc @ net.W[0]                                          # (c, D1)
        label_rows = net.W[0][:LABEL_SLOT] + net.b[0]              # (10, D1)
        h = a[:, None, :] + label_rows[None, :, :]                 # (c, 10, D1)
        h = h.reshape(c * N_CLASSES, -1)
        np.maximum(h, 0, out=h)
        g = goodness(h)
        out[s:s + c, :, 0] = g.reshape(c, N_CLASSES)
        for l in range(1, depth):
            h, g = layer_forward(normalize(h, g), net.W[l], net.b[l])
            out[s:s + c, :, l] = g.reshape(c, N_CLASSES)
    return out if layers is None else out[:, :, layers]


def predict(net: Net, x: np.ndarray, mode: str = "all") -> np.ndarray:
    """Predicted labels (N,): argmax over labels of goodness summed over the mode's layers."""
    return label_goodness(net, x, mode_layers(mode, len(net.W))).sum(axis=2).argmax(axis=1)


def accuracy(net, x, y, mode="all") -> float:
    return float((predict(net, x, mode) == y).mean())


def dead_units(net: Net, x: np.ndarray, y: np.ndarray) -> list:
    """Per layer, units never active on x carrying its true labels."""
    alive = [np.zeros(d, bool) for d in net.layer_sizes[1:]]
    for s in range(0, len(x), PREDICT_CHUNK):
        h = embed_label(x[s:s + PREDICT_CHUNK], y[s:s + PREDICT_CHUNK])
        for l, (W, b) in enumerate(zip(net.W, net.b)):
            h, g = layer_forward(h if l == 0 else normalize(h, g_prev), W, b)
            alive[l] |= (h > 0).any(axis=0)
            g_prev = g
    return [int((~a).sum()) for a in alive]


def evaluate(net: Net, x, y, headline_mode="all") -> dict:
    """Accuracy in every mode, per-class accuracy and dead units on (x, y)."""
    g = label_goodness(net, x)
    modes = {}
    for mode in PREDICT_MODES:
        layers = mode_layers(mode, len(net.W))
        if layers:
            modes[mode] = float((g[:, :, layers].sum(axis=2).argmax(axis=1) == y).mean())
    pred = g[:, :, mode_layers(headline_mode, len(net.W))].sum(axis=2).argmax(axis=1)
    per_class = {str(k): {"correct": int(((pred == y) & (y == k)).sum()),
                          "total": int((y == k).sum())} for k in range(N_CLASSES)}
    correct = int((pred == y).sum())
    return {"test_accuracy": correct / len(y), "test_correct": correct, "test_total": len(y),
            "predict_mode": headline_mode, "per_class": per_class, "prediction_modes": modes,
            "dead_units": dead_units(net, x, y)}


# ----------------------------------------------------------------------------
# Save and load.
# ----------------------------------------------------------------------------

class ModelError(Exception):
    """A model file is missing, unreadable or does not describe an FF net."""


def versions() -> dict:
    return {"python": platform.python_version(), "numpy": np.__version__,
            "platform": platform.platform()}


def atomic_write_bytes(path: Path, payload: bytes):
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
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_savez(path, arrays: dict):
    import io
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(Path(path), buf.getvalue())


def save_model(path, net: Net, cfg: Config, history: dict, metrics: dict | None = None):
    """model.npz: weights, config, history, metrics and versions; no pickles."""
    arrays = {"format_version": np.array(FORMAT_VERSION),
              "config": np.array(json.dumps(dataclasses.asdict(cfg))),
              "history": np.array(json.dumps(history)),
              "metrics": np.array(json.dumps(metrics or {})),
              "versions": np.array(json.dumps(versions()))}
    for l, (W, b) in enumerate(zip(net.W, net.b)):
        arrays[f"W{l}"], arrays[f"b{l}"] = W, b
    atomic_savez(path, arrays)


def net_from_arrays(layer_sizes, Ws, bs) -> Net:
    flat = np.empty(n_params(layer_sizes), DTYPE)
    W_views, b_views = param_views(flat, layer_sizes)
    for dst, src in zip(W_views + b_views, list(Ws) + list(bs)):
        dst[...] = src
    return Net(list(layer_sizes), flat, W_views, b_views)


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


def load_model(path):
    """Return (net, cfg, history, metrics) from a model.npz, checking what it reads."""
    path = Path(path)
    data = read_npz(path, "model")
    missing = {"format_version", "config", "history"} - set(data)
    if missing:
        raise ModelError(f"{path} is not an FF model (missing {', '.join(sorted(missing))})")
    if int(data["format_version"]) != FORMAT_VERSION:
        raise ModelError(f"{path} has format version {int(data['format_version'])}; "
                         f"this code reads version {FORMAT_VERSION}")
    try:
        cfg = Config(**json.loads(str(data["config"])))
        history = json.loads(str(data["history"]))
        metrics = json.loads(str(data.get("metrics", np.array("{}"))))
    except (TypeError, ValueError) as e:
        raise ModelError(f"{path} has an unreadable config or history ({e})") from None
    sizes = cfg.layer_sizes
    Ws, bs = [], []
    for l, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        W, b = data.get(f"W{l}"), data.get(f"b{l}")
        if W is None or b is None or W.shape != (d_in, d_out) or b.shape != (d_out,):
            raise ModelError(f"{path}: layer {l} weights do not match layer sizes {sizes}")
        Ws.append(W); bs.append(b)
    if f"W{len(sizes) - 1}" in data:
        raise ModelError(f"{path} holds more layers than its layer sizes {sizes}")
    return net_from_arrays(sizes, Ws, bs), cfg, history, metrics


# ----------------------------------------------------------------------------
# CLI.
# ----------------------------------------------------------------------------

N_TRAIN, N_TEST = 60000, 10000


def bounded(kind, low=-math.inf, strict=False):
    """An argparse type: a finite int or float >= low (> low when strict), else a one-line reason."""
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
        return value
    return parse


positive_int = bounded(int, 1)
nonnegative_int = bounded(int, 0)
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


def build_parser() -> argparse.ArgumentParser:
    d = Config()
    p = argparse.ArgumentParser(
        description="Supervised Forward-Forward (Hinton 2022) on MNIST, label in the first "
                    "10 pixels.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the one random generator")
    p.add_argument("--n-epochs", type=positive_int, default=d.n_epochs, help="training epochs")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="Adam learning rate")
    p.add_argument("--layer-sizes", type=layer_sizes_arg, default=d.layer_sizes,
                   help="comma-separated sizes, input (784) first, e.g. 784,500,500")
    p.add_argument("--threshold", type=finite_float, default=d.threshold,
                   help="goodness threshold theta")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                   help="minibatch size (positives; as many negatives)")
    p.add_argument("--jitter", action="store_true",
                   help="shift each training image by up to 2 px every epoch")
    p.add_argument("--train-subset", type=positive_int, default=d.train_subset,
                   help="train on the first N of the 60000 training images (default: all)")
    p.add_argument("--eval-subset", type=positive_int, default=d.eval_subset,
                   help="training and test images scored after every epoch")
    p.add_argument("--full-test", action="store_true",
                   help="final report on all 10000 test images (else on the eval subset)")
    p.add_argument("--predict-mode", choices=PREDICT_MODES, default=d.predict_mode,
                   help="layers whose goodness the headline prediction sums")
    p.add_argument("--lr-schedule", choices=("constant", "cooldown"), default=d.lr_schedule,
                   help="cooldown: constant for the first half of the steps, then linear to 0")
    p.add_argument("--deep-lr-scale", type=positive_float, default=d.deep_lr_scale,
                   help="learning-rate multiplier for every layer after the first")
    p.add_argument("--neg-sampling", choices=("uniform", "hard", "hard-first"),
                   default=d.neg_sampling,
                   help="wrong labels: uniform, or drawn by softmax of the network's current "
                        "goodness over the wrong labels (hard negatives), summed over the "
                        "--predict-mode layers (hard) or of layer 0 alone (hard-first, ~free)")
    p.add_argument("--peer-norm", type=nonnegative_float, default=d.peer_norm,
                   help="weight of the peer-normalisation penalty (0: off)")
    p.add_argument("--goodness", choices=("mean", "sum"), default=d.goodness,
                   help="mean: logistic of mean(h^2) - theta (the seed); sum: of sum(h^2) - "
                        "theta * D, as in Hinton's code with --threshold 1")
    p.add_argument("--val-split", type=nonnegative_int, default=d.val_split,
                   help="hold out the last N training images and evaluate on them instead of "
                        "the test set (for tuning)")
    p.add_argument("--checkpoint", metavar="PATH", default=None,
                   help="write a resumable checkpoint here after every epoch")
    p.add_argument("--resume", metavar="PATH", default=None,
                   help="continue from this checkpoint (same training flags)")
    p.add_argument("--data-dir", default=None,
                   help="folder with the MNIST .gz files (default: $HINTON_MNIST_DIR, "
                        "else ~/.cache/hinton-mnist)")
    p.add_argument("--save", metavar="PATH", default=None, help="write the model here (.npz)")
    p.add_argument("--metrics", metavar="PATH", default=None,
                   help="write the final results here as JSON")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def parse_args(argv=None):
    """Parse and check the flags; bad values exit 2 before any data is touched."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.train_subset is not None and args.train_subset > N_TRAIN:
        p.error(f"--train-subset: at most {N_TRAIN}, got {args.train_subset}")
    if args.eval_subset > N_TEST:
        p.error(f"--eval-subset: at most {N_TEST} (it is also drawn from the test set), "
                f"got {args.eval_subset}")
    n_train = args.train_subset or N_TRAIN
    if args.val_split >= n_train:
        p.error(f"--val-split: must leave training images, got {args.val_split} of {n_train}")
    if args.val_split and args.eval_subset > args.val_split:
        p.error(f"--eval-subset: at most --val-split ({args.val_split}), got {args.eval_subset}")
    if args.resume and not Path(args.resume).is_file():
        p.error(f"--resume: no such file {args.resume}")
    for flag in ("save", "metrics", "checkpoint"):
        path = getattr(args, flag)
        if path is not None:
            parent = Path(path).expanduser().resolve().parent
            if not parent.is_dir() or not os.access(parent, os.W_OK):
                p.error(f"--{flag}: cannot write to folder {parent}")
    if args.predict_mode == "skip-first" and len(args.layer_sizes) < 3:
        p.error("--predict-mode skip-first needs at least two hidden layers")
    return args


def config_from_args(args) -> Config:
    names = {f.name for f in dataclasses.fields(Config)}
    return Config(**{k: v for k, v in vars(args).items() if k in names})


def report(metrics: dict) -> str:
    """The closing summary: headline accuracy, per-class table, modes, dead units."""
    lines = [f"{metrics.get('evaluated_on', 'test')} accuracy ({metrics['predict_mode']}): {metrics['test_correct']}/"
             f"{metrics['test_total']} ({100 * metrics['test_accuracy']:.2f}%)",
             "class  correct/total  accuracy"]
    for k, c in metrics["per_class"].items():
        lines.append(f"{k:>5}  {c['correct']:>7}/{c['total']:<5}  {100 * c['correct'] / max(c['total'], 1):7.2f}%")
    lines.append("prediction modes: " + "  ".join(
        f"{m} {100 * a:.2f}%" for m, a in metrics["prediction_modes"].items()))
    lines.append("dead units: " + "  ".join(
        f"L{l} {d}/{n}" for l, (d, n) in enumerate(zip(metrics["dead_units"], metrics["layer_widths"]))))
    return "\n".join(lines)


def main(argv=None) -> dict:
    """Train, report and save; return the metrics dict."""
    args = parse_args(argv)
    cfg = config_from_args(args)
    log = None if args.quiet else print
    try:
        x_train, y_train, x_test, y_test = load_mnist(args.data_dir)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1)
    if cfg.train_subset:
        x_train, y_train = x_train[:cfg.train_subset], y_train[:cfg.train_subset]
    held_out = "test"
    if cfg.val_split:
        # DEVIATION (tuning only): the held-out images replace the test set everywhere
        x_test, y_test = x_train[-cfg.val_split:], y_train[-cfg.val_split:]
        x_train, y_train = x_train[:-cfg.val_split], y_train[:-cfg.val_split]
        held_out = "validation"
    k = cfg.eval_subset
    evaluation = ((x_train[:k], y_train[:k]), (x_test[:k], y_test[:k]))
    if log:
        log("config: " + json.dumps(dataclasses.asdict(cfg)))
        log(f"data: {len(x_train)} training images; every epoch scores {min(k, len(x_train))} "
            f"train + {min(k, len(x_test))} {held_out} images; per layer: loss g_pos/g_neg")
    t0 = time.perf_counter()
    try:
        net, history = train(cfg, x_train, y_train, evaluation=evaluation, log=log,
                             checkpoint=args.checkpoint, resume=args.resume)
    except NonFiniteLoss as e:
        print(f"error: {e}; no model was saved", file=sys.stderr)
        raise SystemExit(1)
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1)
    except Interrupted as e:
        flags = [a for a in (sys.argv[1:] if argv is None else argv)]
        if "--resume" in flags:
            i = flags.index("--resume"); del flags[i:i + 2]
        print(f"\n{e}. To continue: python3 {Path(__file__).name} {' '.join(flags)} "
              f"--resume {e.path}", file=sys.stderr)
        raise SystemExit(130)
    train_seconds = time.perf_counter() - t0
    x_final, y_final = (x_test, y_test) if cfg.full_test else evaluation[1]
    metrics = evaluate(net, x_final, y_final, cfg.predict_mode)
    cli_only = {k: getattr(args, k) for k in ("data_dir", "save", "metrics", "checkpoint", "resume", "quiet")}
    metrics.update({"evaluated_on": held_out, "config": {**dataclasses.asdict(cfg), **cli_only},
                    "train_seconds": train_seconds, "layer_widths": cfg.layer_sizes[1:],
                    "final_train_accuracy": history["train_acc"][-1],
                    "final_layer_stats": {"loss": history["loss"][-1], "g_pos": history["g_pos"][-1],
                                          "g_neg": history["g_neg"][-1]},
                    "versions": versions()})
    if log:
        log(report(metrics))
        log(f"training took {train_seconds:.1f}s")
    if args.save:
        save_model(args.save, net, cfg, history, metrics)
        if log:
            log(f"saved model to {args.save}")
    if args.metrics:
        atomic_write_bytes(Path(args.metrics), (json.dumps(metrics, indent=2) + "\n").encode())
    return metrics


if __name__ == "__main__":
    main()
