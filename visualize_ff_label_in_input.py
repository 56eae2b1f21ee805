"""Figures of a trained supervised Forward-Forward net (label in the first 10 pixels).

Reads a model.npz written by ff_label_in_input.py (any recipe) and draws six PNGs into
--outdir. If the model file does not exist, trains one first with the training CLI's
defaults (ff.main).

    python3 visualize_ff_label_in_input.py --model model.npz --outdir viz

Goodness is sum(h^2) in ff_label_in_input.py; the figures that set it against the
threshold theta divide each layer's by its width D: goodness per unit, mean(h^2).
"""

from __future__ import annotations

if __name__ == "__main__":      # Ctrl-C while the imports load: one line, not a traceback
    import os, signal
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:       # say so, then exit 130 at once
        signal.signal(signal.SIGINT, lambda *_: os._exit(os.write(2, b"error: interrupted\n") and 130))

import argparse
import io
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
COLORS = {            # every colour of these figures and of the GIF
    "positive": "tab:green",        # true label, positive data
    "negative": "tab:red",          # wrong label, negative data
    "other_label": "tab:gray",      # candidate labels that are not the true one
    "threshold": "black",           # theta
    "prediction": "black",          # the goodness read-out's pick
    "softmax": "tab:purple",        # the softmax head: its pick, its loss
    "label_slot": "red",            # box around the one-hot label pixels
    "misclassified": "red",         # title of a wrongly classified image
    "layers": ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:cyan", "tab:brown"),
    "image_cmap": "gray",
    "weight_cmap": "RdBu_r",
    "count_cmap": "Blues",
}
GOODNESS_LABEL = "goodness per unit, mean(h^2)"


def layer_color(l: int) -> str:
    return COLORS["layers"][l % len(COLORS["layers"])]


def goodness_readout(mode: str) -> str:
    """The goodness read-out a figure shows: the model's own, all layers for a softmax one."""
    return "all" if mode == "softmax" else mode


def goodness_limits(values, theta, pad=0.08):
    """Axis limits holding every value and theta, padded; never below 0. (lo, hi)"""
    lo, hi = min(float(np.min(values)), theta), max(float(np.max(values)), theta)
    d = pad * (hi - lo) or pad * max(abs(theta), 1)
    return max(lo - d, 0.0), hi + d


def goodness_scale(lo, hi):
    """Log when the goodness spans more than a factor 10 (baseline recipe), else linear: with
    logit scale D it stays in a narrow band around theta."""
    return "log" if lo > 0 and hi > 10 * lo else "linear"


def bars_from_theta(ax, x, values, theta, **kw):
    """Bars that start at theta: up when a layer would call the input positive."""
    return ax.bar(x, np.asarray(values) - theta, bottom=theta, **kw)


def new_figure(name, **kw):
    return plt.subplots(figsize=FIGSIZES[name], dpi=DPI, **kw)


def save(fig, outdir: Path, name: str):
    """(path, PNG bytes): drawn in memory; main writes every figure once all are drawn."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return outdir / f"{name}.png", buf.getvalue()


def outline_label_slot(ax):
    """Box around the one-hot label: row 0, columns 0..9 of the 28x28 image."""
    ax.add_patch(Rectangle((-0.5, -0.5), ff.LABEL_SLOT, 1, fill=False, ec=COLORS["label_slot"],
                           lw=1.5))


def fig_label_encoded_inputs(net, x_test, y_test, outdir):
    """The same test images as positive data (true label) and negative data (a wrong one),
    as layer 0 reads them (scaled to mean square 1 for an rms model)."""
    k = 4
    y_wrong = ff.draw_wrong_labels(y_test[:k], np.random.default_rng(0))
    rows = [(labels, kind, ff.first_layer_inputs(ff.embed_label(x_test[:k], labels), net.input_norm))
            for labels, kind in ((y_test[:k], "positive"), (y_wrong, "negative"))]
    vmax = max(float(x.max()) for _, _, x in rows)
    fig, axes = new_figure("label_encoded_inputs", nrows=2, ncols=k, layout="constrained")
    for row, (labels, kind, x) in enumerate(rows):
        for i, ax in enumerate(axes[row]):
            im = ax.imshow(x[i].reshape(28, 28), cmap=COLORS["image_cmap"], vmin=0, vmax=vmax)
            outline_label_slot(ax)
            ax.set_title(f"{kind}: label {labels[i]} (digit {y_test[i]})", fontsize=10)
            ax.set_xlabel("column")
            ax.set_ylabel("row")
    scaled = ", each row scaled to mean square 1" if net.input_norm == "rms" else ""
    fig.colorbar(im, ax=axes, shrink=0.7, label=f"input to layer 0{scaled}")
    fig.suptitle("Label written as a one-hot into row 0, columns 0-9 (red box): "
                 "true label = positive data, wrong label = negative data")
    return save(fig, outdir, "label_encoded_inputs")


def fig_candidate_goodness(net, cfg, x_test, y_test, outdir):
    """Goodness per unit for each of the 10 candidate labels: the classifier's view."""
    mode = goodness_readout(cfg.predict_mode)
    layers = ff.readout_layers(mode, len(net.Wb))
    x, y = x_test[:N_SCORED], y_test[:N_SCORED]
    g = ff.readout_goodness(net, x, mode)                            # (N, 10)
    by_goodness = g.argmax(axis=1)
    by_head = ff.predict(net, x, "softmax") if net.head is not None else None
    pred = by_head if cfg.predict_mode == "softmax" else by_goodness
    wrong = np.flatnonzero(pred[5:] != y[5:]) + 5                   # not one of the first five
    idx = list(range(5)) + [int(wrong[0]) if len(wrong) else 5]
    lo, hi = goodness_limits(g[idx], cfg.threshold)
    step = 0.06 * (hi - lo)                                          # marker spacing
    fig, axes = new_figure("candidate_goodness", nrows=2, ncols=len(idx), layout="constrained",
                           gridspec_kw={"height_ratios": [1, 1.1]})
    for col, i in enumerate(idx):
        ax = axes[0, col]
        ax.imshow(x[i].reshape(28, 28), cmap=COLORS["image_cmap"], vmin=0, vmax=1)
        ax.set_title(f"test #{i}: true {y[i]}, predicted {pred[i]}\n"
                     f"max goodness per unit {g[i].max():.3g}", fontsize=9,
                     color="black" if pred[i] == y[i] else COLORS["misclassified"])
        ax.set_xticks([]); ax.set_yticks([])
        ax = axes[1, col]
        colors = [COLORS["positive"] if k == y[i] else COLORS["other_label"]
                  for k in range(ff.N_CLASSES)]
        bars_from_theta(ax, range(ff.N_CLASSES), g[i], cfg.threshold, color=colors)
        ax.axhline(cfg.threshold, color=COLORS["threshold"], ls=":", lw=1)
        for k, marker, color, n in ((by_goodness[i], "v", COLORS["prediction"], 1),
                                    (None if by_head is None else by_head[i], "*",
                                     COLORS["softmax"], 2)):
            if k is not None:
                ax.plot(k, max(g[i, k], cfg.threshold) + n * step, marker, color=color, ms=7)
        ax.set_ylim(lo, hi + 2.5 * step)
        ax.set_xticks(range(ff.N_CLASSES))
        ax.set_xlabel("candidate label")
        if col == 0:
            ax.set_ylabel(GOODNESS_LABEL)
    handles = [Rectangle((0, 0), 1, 1, color=COLORS["positive"]),
               Rectangle((0, 0), 1, 1, color=COLORS["other_label"]),
               plt.Line2D([], [], ls=":", color=COLORS["threshold"]),
               plt.Line2D([], [], ls="", marker="v", color=COLORS["prediction"])]
    labels = ["true label", "other label", f"theta = {cfg.threshold:g} (bars start here)",
              f"{mode} read-out picks"]
    if by_head is not None:
        handles.append(plt.Line2D([], [], ls="", marker="*", color=COLORS["softmax"], ms=8))
        labels.append("softmax head picks")
    fig.legend(handles=handles, labels=labels, loc="outside lower center", ncol=len(labels),
               fontsize=9)
    units = sum(net.layer_sizes[l + 1] for l in layers)
    fig.suptitle(f"Goodness per unit for each candidate label: sum(h^2) of layers {layers} / their "
                 f"{units} units\npredicted by the {cfg.predict_mode} read-out; the last image is "
                 f"the first after these five that it misclassifies")
    return save(fig, outdir, "candidate_goodness")


def readout_summary(metrics) -> str | None:
    """'final read-outs on N test images' and one line per read-out, from the saved metrics."""
    modes = metrics.get("prediction_modes")
    if not modes:
        return None
    lines = [f"final read-outs, {metrics.get('test_total', '?')} "
             f"{metrics.get('evaluated_on', 'test')} images:"]
    lines += [f"{m}: {100 * a:.2f}%" for m, a in modes.items()]
    return "\n".join(lines)


def fig_training_curves(history, cfg, metrics, outdir):
    """Per-layer loss and goodness, accuracy and time per epoch, from the saved history."""
    ep = history["epoch"]
    loss, g_pos, g_neg = (np.array(history[k]) for k in ("loss", "g_pos", "g_neg"))  # (E, L)
    fig, axes = new_figure("training_curves", nrows=2, ncols=2, layout="constrained")
    ax = axes[0, 0]
    for l in range(loss.shape[1]):
        ax.plot(ep, loss[:, l], color=layer_color(l), label=f"layer {l}")
    head_loss = np.array(history.get("head_loss", []), dtype=float)
    if np.isfinite(head_loss).any():
        ax.plot(ep, head_loss, color=COLORS["softmax"], ls="--", label="softmax head (cross-entropy)")
    ax.set(title="Loss per layer (training minibatches)", xlabel="epoch", ylabel="loss")
    ax.legend()
    ax = axes[0, 1]
    for l in range(g_pos.shape[1]):
        ax.plot(ep, g_pos[:, l], color=layer_color(l), label=f"layer {l} g_pos")
        ax.plot(ep, g_neg[:, l], color=layer_color(l), ls="--", label=f"layer {l} g_neg")
    ax.axhline(cfg.threshold, color=COLORS["threshold"], ls=":", label=f"theta = {cfg.threshold:g}")
    ax.set_yscale(goodness_scale(*goodness_limits([g_pos, g_neg], cfg.threshold, pad=0)))
    ax.set(title="Mean goodness of positive and negative data", xlabel="epoch",
           ylabel=GOODNESS_LABEL)
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    if history.get("train_acc"):
        ax.plot(ep, 100 * np.array(history["train_acc"]), label="train (eval subset)")
        ax.plot(ep, 100 * np.array(history["test_acc"]), label="test (eval subset)")
        ax.legend(loc="upper left")
    summary = readout_summary(metrics)
    if summary:
        ax.text(0.98, 0.03, summary, transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
                bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8})
    ax.set(title=f"Accuracy after each epoch ({cfg.predict_mode} read-out, "
                 f"{cfg.eval_subset} images each)", xlabel="epoch", ylabel="accuracy (%)")
    ax = axes[1, 1]
    ax.plot(ep, history["seconds"], marker=".")
    ax.set(title="Wall time per epoch (training + evaluation)", xlabel="epoch",
           ylabel="seconds", ylim=(0, None))
    fig.suptitle(f"Training history ({cfg.recipe} recipe): {'-'.join(map(str, cfg.layer_sizes))}, "
                 f"{cfg.optimizer} lr {cfg.lr:g} ({cfg.lr_schedule}), batch {cfg.batch_size}, "
                 f"input {cfg.input_norm}, logit scale {cfg.logit_scale}, seed {cfg.seed}")
    return save(fig, outdir, "training_curves")


def fig_receptive_fields(net, x_test, y_test, outdir):
    """Layer 0 weights (net.W[0]) as 28x28 images: alive units, largest weight norm first."""
    x = ff.embed_label(x_test[:N_SCORED], y_test[:N_SCORED])
    h = ff.forward(net, x)[1][0]                                     # layer 0's activities
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
            im = ax.imshow(tiles[i], cmap=COLORS["weight_cmap"], vmin=-vmax, vmax=vmax)
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
    """Counts of (true, predicted) on the whole test set, by the model's own read-out."""
    pred = ff.predict(net, x_test, cfg.predict_mode)
    cm = np.zeros((ff.N_CLASSES, ff.N_CLASSES), int)
    np.add.at(cm, (y_test, pred), 1)
    correct = int(np.trace(cm))
    fig, ax = new_figure("confusion_matrix", layout="constrained")
    im = ax.imshow(np.where(cm > 0, cm, np.nan), cmap=COLORS["count_cmap"],
                   norm=LogNorm(vmin=1, vmax=cm.max()))
    for t in range(ff.N_CLASSES):
        for p in range(ff.N_CLASSES):
            if cm[t, p]:
                ax.text(p, t, cm[t, p], ha="center", va="center", fontsize=8,
                        color="white" if cm[t, p] > cm.max() ** 0.6 else "black")
    ax.set_xticks(range(ff.N_CLASSES)); ax.set_yticks(range(ff.N_CLASSES))
    ax.set(xlabel="predicted label", ylabel="true label")
    fig.colorbar(im, ax=ax, label="count (log scale; empty = 0)")
    ax.set_title(f"Confusion matrix, {len(y_test)} test images, {cfg.predict_mode} read-out: "
                 f"{correct}/{len(y_test)} ({100 * correct / len(y_test):.2f}%)")
    return save(fig, outdir, "confusion_matrix")


def fig_goodness_distributions(net, cfg, x_test, y_test, outdir):
    """Per layer: goodness per unit with the true label (positive) vs a random wrong one."""
    x, y = x_test[:N_SCORED], y_test[:N_SCORED]
    g = ff.goodness_per_unit(net, x)                                 # (N, 10, L)
    y_wrong = ff.draw_wrong_labels(y, np.random.default_rng(0))
    rows = np.arange(len(y))
    g_pos, g_neg = g[rows, y], g[rows, y_wrong]                      # (N, L)
    fig, axes = new_figure("goodness_distributions", ncols=g.shape[2], layout="constrained",
                           squeeze=False)
    for l, ax in enumerate(axes[0]):
        bins = np.linspace(*goodness_limits([g_pos[:, l], g_neg[:, l]], cfg.threshold, 0.02), 60)
        above = 100 * (g_pos[:, l] > cfg.threshold).mean()
        below = 100 * (g_neg[:, l] < cfg.threshold).mean()
        ax.hist(g_pos[:, l], bins, alpha=0.6, color=COLORS["positive"], label="positive (true label)")
        ax.hist(g_neg[:, l], bins, alpha=0.6, color=COLORS["negative"], label="negative (wrong label)")
        ax.axvline(cfg.threshold, color=COLORS["threshold"], ls=":", label=f"theta = {cfg.threshold:g}")
        ax.set_yscale("log")
        ax.set(xlabel=GOODNESS_LABEL, ylabel="images" if l == 0 else None,
               title=f"layer {l} ({net.layer_sizes[l + 1]} units)\n"
                     f"pos. median {np.median(g_pos[:, l]):.2f}, {above:.1f}% > theta\n"
                     f"neg. median {np.median(g_neg[:, l]):.2f}, {below:.1f}% < theta")
        ax.title.set_fontsize(9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=9)
    fig.suptitle(f"Goodness of {len(y)} test images with their true label vs a random wrong label")
    return save(fig, outdir, "goodness_distributions")


# ----------------------------------------------------------------------------
# CLI. Bad input exits 2, Ctrl-C 130, each with one line (ff.fail).
# ----------------------------------------------------------------------------

DATA_DIR_HELP = ("folder with the MNIST .gz files (default: $HINTON_MNIST_DIR if set, "
                 "else ~/.cache/hinton-mnist)")      # ff.HelpFormatter adds no "default: None"


def build_parser():
    p = argparse.ArgumentParser(description="Draw the figures of a trained FF model.",
                                formatter_class=ff.HelpFormatter)
    p.add_argument("--model", default="model.npz", metavar="PATH",
                   help="model .npz from ff_label_in_input.py --save (trained if missing)")
    p.add_argument("--outdir", default="viz", metavar="DIR",
                   help="folder for the PNGs (created if needed)")
    p.add_argument("--data-dir", default=None, metavar="DIR", help=DATA_DIR_HELP)
    return p


def nearest_folder(path: Path) -> Path:
    """The nearest existing folder at or above path (where --outdir would be created)."""
    return next(folder for folder in (path, *path.parents) if folder.exists())


def parse_args(argv=None):
    """Bad values exit 2 with a one-line reason before any model or data is read."""
    p = build_parser()
    args = p.parse_args(argv)
    args.model, args.outdir, args.data_dir = map(ff.user_path, (args.model, args.outdir, args.data_dir))
    model, outdir = Path(args.model), Path(args.outdir)
    if model.is_dir():
        p.error(f"--model: {args.model} is a folder; give a .npz file")
    if not model.exists():                                           # it will be trained into
        folder = model.resolve().parent
        if not folder.is_dir():
            p.error(f"--model: {args.model} is missing and its folder {folder} does not exist "
                    f"to train one into")
        problem = ff.writable_folder(folder)
        if problem:
            p.error(f"--model: {args.model} is missing and its folder {folder} refuses new files "
                    f"({problem}) to train one into")
    if outdir.exists() and not outdir.is_dir():
        p.error(f"--outdir: {args.outdir} is a file; give a folder")
    folder = nearest_folder(outdir.resolve())
    problem = "not a folder" if not folder.is_dir() else ff.writable_folder(folder)
    if problem:
        p.error(f"--outdir: cannot create or write to {args.outdir} ({folder}: {problem})")
    return args


def main(argv=None, checksums=None, mirrors=None) -> list:
    """Draw every figure; return the written paths. checksums and mirrors go to
    ff.load_mnist (tests use small synthetic files). Ctrl-C exits 130 with one line."""
    args = parse_args(argv)
    try:
        with ff.stop_signals():
            return draw(args, checksums, mirrors)
    except KeyboardInterrupt as e:
        ff.fail(f"{ff.stop_reason(e)}; no figures were written", code=ff.exit_code(e))


def draw(args, checksums=None, mirrors=None) -> list:
    """Train the model if missing, read it and MNIST, draw every figure in memory, then
    write them all (a Ctrl-C while drawing leaves no figure or folder behind)."""
    model, outdir = Path(args.model), Path(args.outdir)
    if not model.exists():
        ff.say(f"{model} is missing: training one with the default config")
        ff.main(["--save", str(model)] + (["--data-dir", args.data_dir] if args.data_dir else []),
                checksums=checksums, mirrors=mirrors)
    try:
        net, cfg, history, metrics = ff.load_model(model)           # a bad file fails first
    except ff.ModelError as e:
        ff.fail(e, code=2)
    try:
        _, _, x_test, y_test = ff.load_mnist(args.data_dir, checksums, mirrors)
    except ff.DataError as e:
        ff.fail(e, code=2)
    figures = [fig_label_encoded_inputs(net, x_test, y_test, outdir),
               fig_candidate_goodness(net, cfg, x_test, y_test, outdir),
               fig_training_curves(history, cfg, metrics, outdir),
               fig_receptive_fields(net, x_test, y_test, outdir),
               fig_confusion_matrix(net, cfg, x_test, y_test, outdir),
               fig_goodness_distributions(net, cfg, x_test, y_test, outdir)]
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        for path, png in figures:
            ff.atomic_write_bytes(path, png)
            ff.say(f"wrote {path}")
    except OSError as e:
        ff.fail(f"cannot write the figures into {outdir} ({e})", code=1)
    return [path for path, _ in figures]


if __name__ == "__main__":
    main()
