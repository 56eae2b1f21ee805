"""Animated GIF of one supervised Forward-Forward training run, one frame per snapshot.

Trains once through ff.train; its per-epoch callback records the goodness of a fixed
set of test images carrying their true label (positive) and a wrong label (negative),
and the goodness of one demo image for each of the 10 candidate labels. The frames are
drawn after training, so every axis has the same limits in every frame.

    python3 make_ff_label_in_input_gif.py --epochs 30 --snapshot-every 1 --fps 6 \
        --seed 0 --lr 0.003 --layer-sizes 784,500,500 --train-subset 20000
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import imageio.v3 as iio  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter  # noqa: E402

import ff_label_in_input as ff  # noqa: E402

FIGSIZE, DPI = (8, 5.5), 80     # 640 x 440 px frames keep the GIF well under 3 MB
N_MONITOR = 1000                # fixed test images whose goodness every frame shows
DEMO_INDEX = 0                  # the test image whose 10 candidate goodnesses are shown
HOLD_LAST_S = 2.0               # the last frame stays this long before the loop restarts
LAYER_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def build_parser():
    d = ff.Config()
    p = argparse.ArgumentParser(description="GIF of FF training on MNIST (label in the first "
                                            "10 pixels).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=ff.positive_int, default=d.n_epochs, help="training epochs")
    p.add_argument("--snapshot-every", type=ff.positive_int, default=1,
                   help="a frame every N epochs (and at the last epoch)")
    p.add_argument("--fps", type=ff.positive_float, default=6, help="frames per second")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the run")
    p.add_argument("--lr", type=ff.positive_float, default=d.lr, help="Adam learning rate")
    p.add_argument("--layer-sizes", type=ff.layer_sizes_arg,
                   default=",".join(map(str, d.layer_sizes)),
                   help="comma-separated sizes, input (784) first, e.g. 784,500,500")
    p.add_argument("--batch-size", type=ff.positive_int, default=d.batch_size,
                   help="minibatch size (positives; as many negatives)")
    p.add_argument("--threshold", type=ff.finite_float, default=d.threshold,
                   help="goodness threshold theta")
    p.add_argument("--train-subset", type=ff.positive_int, default=20000,
                   help="train on the first N of the 60000 training images")
    p.add_argument("--out", default="ff_label_in_input.gif", help="the GIF to write")
    p.add_argument("--data-dir", default=None,
                   help="folder with the MNIST .gz files; if unset, $HINTON_MNIST_DIR, "
                        "else ~/.cache/hinton-mnist")
    return p


def parse_args(argv=None):
    """Parse and check the flags; bad values exit 2 before any data is read."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.train_subset > ff.N_TRAIN:
        p.error(f"--train-subset: at most {ff.N_TRAIN}, got {args.train_subset}")
    if args.snapshot_every > args.epochs:
        p.error(f"--snapshot-every: at most --epochs ({args.epochs}), got {args.snapshot_every}")
    folder = Path(args.out).expanduser().resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        p.error(f"--out: cannot write to folder {folder}")
    return args


def snapshot_recorder(cfg, snapshot_every, x_mon, y_mon, y_wrong, x_demo):
    """A callback for ff.train and the list it fills, one dict per snapshot epoch."""
    rows = np.arange(len(y_mon))
    snaps = []

    def callback(epoch, net, history):
        if epoch % snapshot_every and epoch != cfg.n_epochs:
            return
        g = ff.label_goodness(net, x_mon)                            # (N, 10, L)
        snaps.append({"epoch": epoch,
                      "g_pos": g[rows, y_mon], "g_neg": g[rows, y_wrong],   # (N, L) each
                      "demo": ff.label_goodness(net, x_demo)[0]})        # (10, L)
    return callback, snaps


def render_frames(snaps, history, cfg, x_demo, y_demo):
    """One RGB array per snapshot; every axis limit fixed from the whole run."""
    E, L = cfg.n_epochs, len(cfg.layer_sizes) - 1
    layers = ff.mode_layers(cfg.predict_mode, L)
    loss = np.array(history["loss"])                                 # (E, L)
    acc = 100 * np.array([history["train_acc"], history["test_acc"]])  # (2, E)
    spread = [{k: np.percentile(s[k], [10, 50, 90], axis=0) for k in ("g_pos", "g_neg")}
              for s in snaps]                                        # (3, L) each
    medians = np.array([p[1] for d in spread for p in d.values()])
    highs = np.array([p[2] for d in spread for p in d.values()])
    g_lo = max(medians.min() / 2, 1e-3)                              # every median bar shows
    g_hi = highs.max() * 4                                           # headroom for the legend
    demo_max = max(s["demo"][:, layers].sum(axis=1).max() for s in snaps) * 1.1
    fig = plt.figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(2, 3, width_ratios=[1.3, 0.55, 1.15])
    frames = []
    for s, pct in zip(snaps, spread):
        fig.clear()
        e = s["epoch"]
        fig.suptitle(f"Forward-Forward, label in the first 10 pixels: epoch {e}/{E}")
        ax = fig.add_subplot(grid[0, 0])
        x = np.arange(L)
        for off, key, color, name in ((-0.2, "g_pos", "tab:green", "positive"),
                                      (0.2, "g_neg", "tab:red", "negative")):
            lo, med, hi = pct[key]
            ax.bar(x + off, med, 0.4, color=color, alpha=0.8, label=f"{name} (median)")
            ax.errorbar(x + off, med, [med - lo, hi - med], fmt="none", ecolor="black",
                        capsize=3, lw=1)
        ax.axhline(cfg.threshold, color="black", ls=":", label=f"theta = {cfg.threshold:g}")
        ax.set(yscale="log", ylim=(g_lo, g_hi), xticks=x, xticklabels=[f"layer {l}" for l in x],
               ylabel="goodness", title=f"{len(s['g_pos'])} test images: median, 10-90%")
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 3)))         # 0.1, 0.3, 1, 3, 10
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=7, loc="upper right", ncol=2)
        ax = fig.add_subplot(grid[0, 1])
        ax.imshow(ff.embed_label(x_demo, [y_demo])[0].reshape(28, 28), cmap="gray", vmin=0,
                  vmax=1)
        ax.set(xticks=[], yticks=[], title=f"test #{DEMO_INDEX}, true {y_demo}",
               xlabel="true label in row 0")
        ax = fig.add_subplot(grid[0, 2])
        g_demo = s["demo"][:, layers].sum(axis=1)                    # (10,)
        pred = int(g_demo.argmax())
        colors = ["tab:green" if k == y_demo else "tab:gray" for k in range(ff.N_CLASSES)]
        bars = ax.bar(range(ff.N_CLASSES), g_demo, color=colors)
        bars[pred].set_edgecolor("black"); bars[pred].set_linewidth(2)
        ax.set(ylim=(0, demo_max), xticks=range(ff.N_CLASSES), xlabel="candidate label",
               ylabel="goodness, layers summed", title=f"predicted {pred} (black edge)")
        ep = history["epoch"][:e]
        ax = fig.add_subplot(grid[1, :2])
        for l in range(L):
            ax.plot(ep, loss[:e, l], color=LAYER_COLORS[l % 6], marker=".",
                    label=f"layer {l}: {loss[e - 1, l]:.3f}")
        ax.set(xlim=(0.5, E + 0.5), ylim=(0, loss.max() * 1.05), xlabel="epoch",
               ylabel="FF loss", title="training loss per layer")
        ax.legend(fontsize=8)
        ax = fig.add_subplot(grid[1, 2])
        ax.plot(ep, acc[0, :e], marker=".", label=f"train {acc[0, e - 1]:.1f}%")
        ax.plot(ep, acc[1, :e], marker=".", label=f"test {acc[1, e - 1]:.1f}%")
        ax.set(xlim=(0.5, E + 0.5), ylim=(max(0, acc.min() - 2), 100), xlabel="epoch",
               ylabel="accuracy (%)", title=f"accuracy ({cfg.eval_subset} images each)")
        ax.legend(fontsize=8, loc="lower right")
        fig.canvas.draw()
        frames.append(np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy())
    plt.close(fig)
    return frames


def write_gif(path: Path, frames, fps):
    """Encode the GIF in memory, then write it atomically with the module's writer."""
    durations = [1000 / fps] * len(frames)                           # milliseconds
    durations[-1] += 1000 * HOLD_LAST_S
    payload = iio.imwrite("<bytes>", np.stack(frames), extension=".gif", plugin="pillow",
                          duration=durations, loop=0)
    ff.atomic_write_bytes(path, payload)


def main(argv=None):
    """Train once, snapshot, render and write the GIF; return (path, number of frames)."""
    args = parse_args(argv)
    cfg = ff.Config(seed=args.seed, n_epochs=args.epochs, lr=args.lr,
                    layer_sizes=args.layer_sizes, threshold=args.threshold,
                    batch_size=args.batch_size, train_subset=args.train_subset)
    try:
        x_train, y_train, x_test, y_test = ff.load_mnist(args.data_dir)
    except ff.DataError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1)
    x_train, y_train = x_train[:cfg.train_subset], y_train[:cfg.train_subset]
    x_mon, y_mon = x_test[:N_MONITOR], y_test[:N_MONITOR]
    y_wrong = ff.draw_wrong_labels(y_mon, np.random.default_rng(args.seed))
    x_demo, y_demo = x_test[DEMO_INDEX:DEMO_INDEX + 1], int(y_test[DEMO_INDEX])
    callback, snaps = snapshot_recorder(cfg, args.snapshot_every, x_mon, y_mon, y_wrong, x_demo)
    k = cfg.eval_subset
    try:
        _, history = ff.train(cfg, x_train, y_train, callback=callback,
                              evaluation=((x_train[:k], y_train[:k]), (x_test[:k], y_test[:k])))
    except ff.NonFiniteLoss as e:
        print(f"error: {e}; no GIF was written", file=sys.stderr)
        raise SystemExit(1)
    frames = render_frames(snaps, history, cfg, x_demo, y_demo)
    out = Path(args.out)
    write_gif(out, frames, args.fps)
    print(f"wrote {out}: {len(frames)} frames, {out.stat().st_size / 1e6:.2f} MB")
    return out, len(frames)


if __name__ == "__main__":
    main()
