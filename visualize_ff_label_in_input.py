"""Figures of a trained supervised Forward-Forward net (label in the first 10 pixels).

Reads a model.npz written by ff_label_in_input.py and draws six PNGs into --outdir.
If the model file does not exist, trains one with the seed's defaults first.

    python3 visualize_ff_label_in_input.py --model model.npz --outdir viz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

import ff_label_in_input as ff  # noqa: E402

DPI = 100
FIGSIZES = {  # inches; every PNG is figsize * DPI pixels (no tight bbox)
    "label_encoded_inputs": (10, 5.6),
    "candidate_goodness": (14, 5.6),
    "training_curves": (11, 8),
    "receptive_fields": (9.5, 9),
    "confusion_matrix": (8, 7),
    "goodness_distributions": (11, 4.6),
}
N_SCORED = 2000       # test images whose goodness the distribution and alive-unit checks use
N_FIELDS = 64         # first-layer units shown (an 8x8 grid)
LAYER_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def new_figure(name, **kw):
    return plt.subplots(figsize=FIGSIZES[name], dpi=DPI, **kw)


def save(fig, outdir: Path, name: str) -> Path:
    path = outdir / f"{name}.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    print(f"wrote {path}")
    return path


def outline_label_slot(ax):
    """Box around the one-hot label: row 0, columns 0..9 of the 28x28 image."""
    ax.add_patch(Rectangle((-0.5, -0.5), ff.LABEL_SLOT, 1, fill=False, ec="red", lw=1.5))


def fig_label_encoded_inputs(x_test, y_test, outdir):
    """The same test images as positive data (true label) and negative data (a wrong one)."""
    k = 4
    y_wrong = ff.draw_wrong_labels(y_test[:k], np.random.default_rng(0))
    fig, axes = new_figure("label_encoded_inputs", nrows=2, ncols=k, layout="constrained")
    for row, (labels, kind) in enumerate(((y_test[:k], "positive"), (y_wrong, "negative"))):
        x = ff.embed_label(x_test[:k], labels)
        for i, ax in enumerate(axes[row]):
            ax.imshow(x[i].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            outline_label_slot(ax)
            ax.set_title(f"{kind}: label {labels[i]} (digit {y_test[i]})", fontsize=10)
            ax.set_xlabel("column")
            ax.set_ylabel("row")
    fig.suptitle("Label written as a one-hot into row 0, columns 0-9 (red box): "
                 "true label = positive data, wrong label = negative data")
    return save(fig, outdir, "label_encoded_inputs")


def fig_candidate_goodness(net, cfg, x_test, y_test, outdir):
    """Goodness for each of the 10 candidate labels: the classifier's view of an image."""
    layers = ff.mode_layers(cfg.predict_mode, len(net.W))
    g = ff.label_goodness(net, x_test[:N_SCORED])[:, :, layers].sum(axis=2)   # (N, 10)
    pred = g.argmax(axis=1)
    wrong = np.flatnonzero(pred != y_test[:len(pred)])
    idx = list(range(5)) + [int(wrong[0]) if len(wrong) else 5]
    fig, axes = new_figure("candidate_goodness", nrows=2, ncols=len(idx), layout="constrained",
                           gridspec_kw={"height_ratios": [1, 1.1]})
    for col, i in enumerate(idx):
        ax = axes[0, col]
        ax.imshow(x_test[i].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"test #{i}: true {y_test[i]}, predicted {pred[i]}\n"
                     f"max goodness {g[i].max():.1f}", fontsize=9,
                     color="black" if pred[i] == y_test[i] else "red")
        ax.set_xticks([]); ax.set_yticks([])
        ax = axes[1, col]
        colors = ["tab:green" if k == y_test[i] else "tab:gray" for k in range(ff.N_CLASSES)]
        ax.bar(range(ff.N_CLASSES), g[i] / g[i].max(), color=colors)
        ax.plot(pred[i], 1.04, "v", color="black", ms=6)
        ax.set_ylim(0, 1.12)
        ax.set_xticks(range(ff.N_CLASSES))
        ax.set_xlabel("candidate label")
        if col == 0:
            ax.set_ylabel("goodness / max")
    axes[1, 0].legend(handles=[Rectangle((0, 0), 1, 1, color="tab:green"),
                               Rectangle((0, 0), 1, 1, color="tab:gray"),
                               plt.Line2D([], [], ls="", marker="v", color="black")],
                      labels=["true label", "other label", "predicted"], fontsize=8,
                      loc="upper left", bbox_to_anchor=(0, 0.93))
    fig.suptitle(f"Goodness summed over layers {layers} for each candidate label, "
                 f"normalised per image (the last image is the first misclassified one)")
    return save(fig, outdir, "candidate_goodness")


def fig_training_curves(history, cfg, outdir):
    """Per-layer loss and goodness, accuracy and time per epoch, from the saved history."""
    ep = history["epoch"]
    loss, g_pos, g_neg = (np.array(history[k]) for k in ("loss", "g_pos", "g_neg"))  # (E, L)
    fig, axes = new_figure("training_curves", nrows=2, ncols=2, layout="constrained")
    ax = axes[0, 0]
    for l in range(loss.shape[1]):
        ax.plot(ep, loss[:, l], color=LAYER_COLORS[l % 6], label=f"layer {l}")
    ax.set(title="FF loss per layer (training minibatches)", xlabel="epoch", ylabel="loss")
    ax.legend()
    ax = axes[0, 1]
    for l in range(g_pos.shape[1]):
        ax.plot(ep, g_pos[:, l], color=LAYER_COLORS[l % 6], label=f"layer {l} g_pos")
        ax.plot(ep, g_neg[:, l], color=LAYER_COLORS[l % 6], ls="--", label=f"layer {l} g_neg")
    ax.axhline(cfg.threshold, color="black", ls=":", label=f"theta = {cfg.threshold:g}")
    ax.set_yscale("log")
    ax.set(title="Mean goodness of positive and negative data", xlabel="epoch",
           ylabel="goodness (mean of h^2)")
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    if history.get("train_acc"):
        ax.plot(ep, 100 * np.array(history["train_acc"]), label="train (eval subset)")
        ax.plot(ep, 100 * np.array(history["test_acc"]), label="test (eval subset)")
        ax.legend()
    ax.set(title=f"Accuracy after each epoch ({cfg.predict_mode} layers summed, "
                 f"{cfg.eval_subset} images each)", xlabel="epoch", ylabel="accuracy (%)")
    ax = axes[1, 1]
    ax.plot(ep, history["seconds"], marker=".")
    ax.set(title="Wall time per epoch (training + evaluation)", xlabel="epoch",
           ylabel="seconds", ylim=(0, None))
    fig.suptitle(f"Training history: {'-'.join(map(str, cfg.layer_sizes))}, lr {cfg.lr:g}, "
                 f"batch {cfg.batch_size}, seed {cfg.seed}")
    return save(fig, outdir, "training_curves")


def fig_receptive_fields(net, x_test, y_test, outdir):
    """First-layer weight columns as 28x28 images: alive units, largest weight norm first."""
    h, _ = ff.layer_forward(ff.embed_label(x_test[:N_SCORED], y_test[:N_SCORED]),
                            net.W[0], net.b[0])
    alive = np.flatnonzero((h > 0).any(axis=0))
    candidates = alive if len(alive) else np.arange(h.shape[1])     # all dead: show them anyway
    norms = np.linalg.norm(net.W[0][ff.LABEL_SLOT:, candidates], axis=0)   # image pixels only
    units = candidates[np.argsort(-norms)][:N_FIELDS]
    side = int(np.ceil(np.sqrt(len(units))))                        # 8 for 64 units
    tiles = net.W[0][:, units].T.reshape(-1, 28, 28)
    # Global scale from the image pixels; the label rows grow far larger and saturate.
    vmax = float(np.percentile(np.abs(tiles.reshape(len(units), -1)[:, ff.LABEL_SLOT:]), 99.5))
    fig, axes = new_figure("receptive_fields", nrows=-(-len(units) // side), ncols=side,
                           layout="constrained", squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([]); ax.set_yticks([])
        if i < len(units):
            im = ax.imshow(tiles[i], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax.set_title(f"unit {units[i]}", fontsize=7, pad=2)
            if i + side >= len(units):                              # bottom tile of its column
                ax.set_xlabel("column", fontsize=7)
        else:
            ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("row", fontsize=7)
    fig.colorbar(im, ax=axes, shrink=0.6, extend="both", label="weight (clipped at 99.5th pct)")
    fig.suptitle(f"Layer 0 weights of the {len(units)} alive units with the largest weight "
                 f"norm ({len(alive)}/{net.W[0].shape[1]} alive on {len(h)} test images)")
    return save(fig, outdir, "receptive_fields")


def fig_confusion_matrix(net, cfg, x_test, y_test, outdir):
    """Counts of (true, predicted) on the whole test set."""
    pred = ff.predict(net, x_test, cfg.predict_mode)
    cm = np.zeros((ff.N_CLASSES, ff.N_CLASSES), int)
    np.add.at(cm, (y_test, pred), 1)
    correct = int(np.trace(cm))
    fig, ax = new_figure("confusion_matrix", layout="constrained")
    im = ax.imshow(np.where(cm > 0, cm, np.nan), cmap="Blues", norm=LogNorm(vmin=1, vmax=cm.max()))
    for t in range(ff.N_CLASSES):
        for p in range(ff.N_CLASSES):
            if cm[t, p]:
                ax.text(p, t, cm[t, p], ha="center", va="center", fontsize=8,
                        color="white" if cm[t, p] > cm.max() ** 0.6 else "black")
    ax.set_xticks(range(ff.N_CLASSES)); ax.set_yticks(range(ff.N_CLASSES))
    ax.set(xlabel="predicted label", ylabel="true label")
    fig.colorbar(im, ax=ax, label="count (log scale; empty = 0)")
    ax.set_title(f"Confusion matrix, {len(y_test)} test images, {cfg.predict_mode} layers: "
                 f"{correct}/{len(y_test)} ({100 * correct / len(y_test):.2f}%)")
    return save(fig, outdir, "confusion_matrix")


def fig_goodness_distributions(net, cfg, x_test, y_test, outdir):
    """Per layer: goodness with the true label (positive) vs a random wrong one (negative)."""
    x, y = x_test[:N_SCORED], y_test[:N_SCORED]
    g = ff.label_goodness(net, x)                                    # (N, 10, L)
    y_wrong = ff.draw_wrong_labels(y, np.random.default_rng(0))
    rows = np.arange(len(y))
    g_pos, g_neg = g[rows, y], g[rows, y_wrong]                      # (N, L)
    L = g.shape[2]
    fig, axes = new_figure("goodness_distributions", ncols=L, layout="constrained", squeeze=False)
    for l, ax in enumerate(axes[0]):
        bins = np.linspace(0, max(g_pos[:, l].max(), g_neg[:, l].max(), cfg.threshold) * 1.02, 60)
        above = 100 * (g_pos[:, l] > cfg.threshold).mean()
        below = 100 * (g_neg[:, l] < cfg.threshold).mean()
        ax.hist(g_pos[:, l], bins, alpha=0.6, color="tab:green",
                label=f"positive (true label): median {np.median(g_pos[:, l]):.2f}, "
                      f"{above:.1f}% > theta")
        ax.hist(g_neg[:, l], bins, alpha=0.6, color="tab:red",
                label=f"negative (wrong label): median {np.median(g_neg[:, l]):.2f}, "
                      f"{below:.1f}% < theta")
        ax.axvline(cfg.threshold, color="black", ls=":", label=f"theta = {cfg.threshold:g}")
        ax.set_yscale("log")
        ax.set(title=f"layer {l}", xlabel="goodness (mean of h^2)", ylabel="images")
        ax.legend(fontsize=8)
    fig.suptitle(f"Goodness of {len(y)} test images with their true label vs a random wrong label")
    return save(fig, outdir, "goodness_distributions")


def train_default_model(path, x_train, y_train, x_test, y_test):
    """Train with the seed's defaults (ff.Config()), evaluated per epoch as ff.main does."""
    cfg = ff.Config()
    k = cfg.eval_subset
    net, history = ff.train(cfg, x_train, y_train,
                            evaluation=((x_train[:k], y_train[:k]), (x_test[:k], y_test[:k])))
    ff.save_model(path, net, cfg, history, ff.evaluate(net, x_test[:k], y_test[:k]))
    print(f"saved model to {path}")
    return net, cfg, history


def build_parser():
    p = argparse.ArgumentParser(description="Draw the figures of a trained FF model.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="model.npz",
                   help="model .npz from ff_label_in_input.py --save (trained if missing)")
    p.add_argument("--outdir", default="viz", help="folder for the PNGs (created if needed)")
    p.add_argument("--data-dir", default=None,
                   help="folder with the MNIST .gz files; if unset, $HINTON_MNIST_DIR, "
                        "else ~/.cache/hinton-mnist")
    return p


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(1)


def main(argv=None) -> list:
    """Draw every figure; return the written paths."""
    args = build_parser().parse_args(argv)
    model, outdir = Path(args.model), Path(args.outdir)
    if not model.exists() and not model.expanduser().resolve().parent.is_dir():
        fail(f"{model} is missing and its folder does not exist to train one into")
    try:
        loaded = ff.load_model(model) if model.exists() else None   # a bad file fails first
        x_train, y_train, x_test, y_test = ff.load_mnist(args.data_dir)
        if loaded:
            net, cfg, history, _ = loaded
        else:
            print(f"{model} is missing: training one with the default config")
            net, cfg, history = train_default_model(model, x_train, y_train, x_test, y_test)
        outdir.mkdir(parents=True, exist_ok=True)
    except (ff.DataError, ff.ModelError, ff.NonFiniteLoss, OSError) as e:
        fail(e)
    return [fig_label_encoded_inputs(x_test, y_test, outdir),
            fig_candidate_goodness(net, cfg, x_test, y_test, outdir),
            fig_training_curves(history, cfg, outdir),
            fig_receptive_fields(net, x_test, y_test, outdir),
            fig_confusion_matrix(net, cfg, x_test, y_test, outdir),
            fig_goodness_distributions(net, cfg, x_test, y_test, outdir)]


if __name__ == "__main__":
    main()
