"""Animated GIF of one supervised Forward-Forward training run, one frame per snapshot.

Trains once through ff.train, with the training flags of ff_label_in_input.py (any
recipe); its per-epoch callback records the goodness per unit (mean(h^2), against theta)
of a fixed set of test images carrying their true label (positive) and a wrong label
(negative), and the goodness of one demo image for each of the 10 candidate labels. The
frames are drawn after training, so every axis has the same limits in every frame.

    python3 make_ff_label_in_input_gif.py --epochs 30 --snapshot-every 1 --fps 6 \
        --seed 0 --lr 0.003 --layer-sizes 784,500,500 --train-subset 20000
"""

from __future__ import annotations

if __name__ == "__main__":      # Ctrl-C while the imports load: one line, not a traceback
    import os, signal
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:       # say so, then exit 130 at once
        signal.signal(signal.SIGINT, lambda *_: os._exit(os.write(2, b"error: interrupted\n") and 130))

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import imageio.v3 as iio  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter  # noqa: E402

import ff_label_in_input as ff  # noqa: E402
from visualize_ff_label_in_input import (COLORS, DATA_DIR_HELP, GOODNESS_LABEL,  # noqa: E402
                                         bars_from_theta, goodness_limits, goodness_readout,
                                         goodness_scale, layer_color)

FIGSIZE, DPI = (8, 5.5), 80     # 640 x 440 px frames keep the GIF well under 3 MB
N_MONITOR = 1000                # fixed test images whose goodness every frame shows
DEMO_INDEX = 0                  # the test image whose 10 candidate goodnesses are shown
HOLD_LAST_S = 2.0               # the last frame stays this long before the loop restarts


def build_parser(argv=None):
    """The training flags of ff_label_in_input.py (shared helper, same help and checks),
    --epochs as the earlier spelling of --n-epochs, and this script's own flags."""
    p = argparse.ArgumentParser(description="GIF of FF training on MNIST (label in the first "
                                            "10 pixels).",
                                formatter_class=ff.HelpFormatter)
    ff.add_config_flags(p, skip=("full_test",))                     # no final report here
    p.add_argument("--epochs", dest="n_epochs", type=ff.FLAG_TYPES["n_epochs"], metavar="N",
                   help="earlier spelling of --n-epochs")
    p.add_argument("--snapshot-every", type=ff.positive_int, default=1, metavar="N",
                   help="a frame every N epochs (and at the last epoch)")
    p.add_argument("--fps", type=ff.positive_float, default=6, help="frames per second")
    p.add_argument("--out", default="ff_training.gif", metavar="PATH",
                   help="the GIF to write (the committed ff_label_in_input.gif is made with "
                        "--out ff_label_in_input.gif, so a trial run leaves it alone)")
    p.add_argument("--data-dir", default=None, metavar="DIR", help=DATA_DIR_HELP)
    ff.apply_recipe(p, argv)
    p.set_defaults(train_subset=20000)                              # a GIF's run is shorter
    return p


def parse_args(argv=None):
    """(args, cfg). Bad values exit 2 with a one-line reason before any data is read."""
    p = build_parser(argv)
    args = p.parse_args(argv)
    cfg = ff.config_from_args(args)
    ff.check_config(p, cfg)
    try:
        ff.array_module(cfg.device)                                  # --device cuda without CuPy
    except ff.DeviceError as e:
        p.error(str(e))
    if args.snapshot_every > cfg.n_epochs:
        p.error(f"--snapshot-every: at most --n-epochs ({cfg.n_epochs}), got {args.snapshot_every}")
    ff.check_paths(p, args, ("out",))
    return args, cfg


def snapshot_recorder(cfg, snapshot_every, x_mon, y_mon, y_wrong, x_demo):
    """A callback for ff.train and the list it fills, one dict per snapshot epoch."""
    rows = np.arange(len(y_mon))
    mode = goodness_readout(cfg.predict_mode)
    snaps = []

    def callback(epoch, net, history):
        if epoch % snapshot_every and epoch != cfg.n_epochs:
            return
        g = ff.goodness_per_unit(net, x_mon)                            # (N, 10, L)
        snaps.append({"epoch": epoch,
                      "g_pos": g[rows, y_mon], "g_neg": g[rows, y_wrong],   # (N, L) each
                      "demo": ff.readout_goodness(net, x_demo, mode)[0],       # (10,)
                      "head": (int(ff.predict(net, x_demo, "softmax")[0])
                               if net.head is not None else None)})
    return callback, snaps


def render_frames(snaps, history, cfg, x_demo, y_demo, held_out="test"):
    """One RGB array per snapshot; every axis limit fixed from the whole run."""
    E, L = cfg.n_epochs, len(cfg.layer_sizes) - 1
    mode = goodness_readout(cfg.predict_mode)
    loss = np.array(history["loss"])                                 # (E, L)
    acc = 100 * np.array([history["train_acc"], history["test_acc"]])  # (2, E)
    spread = [{k: np.percentile(s[k], [10, 50, 90], axis=0) for k in ("g_pos", "g_neg")}
              for s in snaps]                                        # (3, L) each
    lows, medians, highs = (np.array([p[i] for d in spread for p in d.values()]) for i in range(3))
    if goodness_scale(max(medians.min(), 1e-3), highs.max()) == "log":
        scale = "log"
        g_lo = max(min(medians.min(), cfg.threshold) / 2, 1e-3)     # every median bar shows
        g_hi = max(highs.max(), cfg.threshold) * 4                   # headroom for the legend
    else:                                                            # a narrow band around theta
        scale = "linear"
        g_lo, g_hi = goodness_limits([lows, highs], cfg.threshold)
        g_hi += 0.5 * (g_hi - g_lo)                                  # headroom for the legend
    demo_lo, demo_hi = goodness_limits([s["demo"] for s in snaps], cfg.threshold)
    fig = plt.figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(2, 3, width_ratios=[1.3, 0.55, 1.15])
    frames = []
    for s, pct in zip(snaps, spread):
        fig.clear()
        e = s["epoch"]
        fig.suptitle(f"Forward-Forward ({cfg.recipe} recipe), label in the first 10 pixels: "
                     f"epoch {e}/{E}")
        ax = fig.add_subplot(grid[0, 0])
        x = np.arange(L)
        for off, key, name in ((-0.2, "g_pos", "positive"), (0.2, "g_neg", "negative")):
            lo, med, hi = pct[key]
            bars_from_theta(ax, x + off, med, cfg.threshold, width=0.4, color=COLORS[name],
                            alpha=0.8, label=f"{name} (median)")
            ax.errorbar(x + off, med, [med - lo, hi - med], fmt="none", ecolor="black",
                        capsize=3, lw=1)
        ax.axhline(cfg.threshold, color=COLORS["threshold"], ls=":",
                   label=f"theta = {cfg.threshold:g}")
        ax.set(yscale=scale, ylim=(g_lo, g_hi), xticks=x, xticklabels=[f"layer {l}" for l in x],
               ylabel=GOODNESS_LABEL, title=f"{len(s['g_pos'])} {held_out} images: median, 10-90%")
        if scale == "log":
            ax.yaxis.set_major_locator(LogLocator(subs=(1, 3)))     # 0.1, 0.3, 1, 3, 10
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=7, loc="upper right", ncol=2)
        ax = fig.add_subplot(grid[0, 1])
        ax.imshow(ff.embed_label(x_demo, [y_demo])[0].reshape(28, 28), cmap=COLORS["image_cmap"],
                  vmin=0, vmax=1)
        ax.set(xticks=[], yticks=[], title=f"{held_out} #{DEMO_INDEX}, true {y_demo}",
               xlabel="true label in row 0")
        ax = fig.add_subplot(grid[0, 2])
        pred = int(s["demo"].argmax())
        colors = [COLORS["positive"] if k == y_demo else COLORS["other_label"]
                  for k in range(ff.N_CLASSES)]
        bars = bars_from_theta(ax, range(ff.N_CLASSES), s["demo"], cfg.threshold, color=colors)
        bars[pred].set_edgecolor(COLORS["prediction"]); bars[pred].set_linewidth(2)
        ax.axhline(cfg.threshold, color=COLORS["threshold"], ls=":")
        title = f"predicted {pred} (black edge)"
        if s["head"] is not None:
            title += f"\nsoftmax head: {s['head']}"
        ax.set(ylim=(demo_lo, demo_hi), xticks=range(ff.N_CLASSES), xlabel="candidate label",
               ylabel=f"{GOODNESS_LABEL}\n{mode} read-out's layers")
        ax.set_title(title, fontsize=10)
        ep = history["epoch"][:e]
        ax = fig.add_subplot(grid[1, :2])
        for l in range(L):
            ax.plot(ep, loss[:e, l], color=layer_color(l), marker=".",
                    label=f"layer {l}: {loss[e - 1, l]:.3f}")
        ax.set(xlim=(0.5, E + 0.5), ylim=(0, loss.max() * 1.05), xlabel="epoch",
               ylabel="FF loss", title="training loss per layer")
        ax.legend(fontsize=8)
        ax = fig.add_subplot(grid[1, 2])
        ax.plot(ep, acc[0, :e], marker=".", label=f"train {acc[0, e - 1]:.1f}%")
        ax.plot(ep, acc[1, :e], marker=".", label=f"{held_out} {acc[1, e - 1]:.1f}%")
        ax.set(xlim=(0.5, E + 0.5), ylim=(max(0, acc.min() - 2), 100), xlabel="epoch",
               ylabel=f"accuracy (%), {cfg.eval_subset} images")
        ax.set_title(f"{cfg.predict_mode} read-out accuracy", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
        fig.canvas.draw()
        frames.append(np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy())
    plt.close(fig)
    return frames


def write_gif(path: Path, frames, fps):
    """Encode the GIF in memory, then write it atomically with the module's writer."""
    durations = [1000 / fps] * len(frames)                           # milliseconds
    durations[-1] += 1000 * HOLD_LAST_S
    # Pillow takes a list of durations only for an animation; one frame takes a number
    payload = iio.imwrite("<bytes>", np.stack(frames), extension=".gif", plugin="pillow",
                          duration=durations if len(frames) > 1 else durations[0], loop=0)
    ff.atomic_write_bytes(path, payload)


def train_writing_nothing(cfg, x_train, y_train, **kwargs):
    """ff.train that leaves no file behind on Ctrl-C (this script cannot resume one)."""
    return ff.train(cfg, x_train, y_train, interrupted_to=None, **kwargs)


def main(argv=None, checksums=None, mirrors=None):
    """Train once, snapshot, render and write the GIF; return (path, number of frames).
    checksums and mirrors go to ff.load_mnist (tests use small synthetic files). Ctrl-C
    exits 130 with one line and writes nothing."""
    args, cfg = parse_args(argv)
    try:
        with ff.stop_signals():
            return make_gif(args, cfg, checksums, mirrors)
    except KeyboardInterrupt as e:
        ff.fail(f"{ff.stop_reason(e)}; no GIF was written", code=ff.exit_code(e))
    except ff.Interrupted as e:
        ff.fail(f"{str(e).split(';')[0]}; no GIF was written", code=e.code)


def make_gif(args, cfg, checksums=None, mirrors=None):
    """Load, train, snapshot, render, write: main() without its Ctrl-C handling."""
    try:
        data = ff.load_mnist(args.data_dir, checksums, mirrors)
    except ff.DataError as e:
        ff.fail(e, code=2)
    (x_train, y_train), (x_held, y_held), held_out = ff.split_data(cfg, *data)
    x_mon, y_mon = x_held[:N_MONITOR], y_held[:N_MONITOR]
    y_wrong = ff.draw_wrong_labels(y_mon, np.random.default_rng(cfg.seed))
    x_demo, y_demo = x_held[DEMO_INDEX:DEMO_INDEX + 1], int(y_held[DEMO_INDEX])
    callback, snaps = snapshot_recorder(cfg, args.snapshot_every, x_mon, y_mon, y_wrong, x_demo)
    k = cfg.eval_subset
    try:
        _, history = train_writing_nothing(
            cfg, x_train, y_train, callback=callback,
            evaluation=((x_train[:k], y_train[:k]), (x_held[:k], y_held[:k])))
    except ff.NonFiniteLoss as e:
        ff.fail(f"{e}; no GIF was written", code=1)
    frames = render_frames(snaps, history, cfg, x_demo, y_demo, held_out)
    out = Path(args.out)
    write_gif(out, frames, args.fps)
    ff.say(f"wrote {out}: {len(frames)} frames, {out.stat().st_size / 1e6:.2f} MB")
    return out, len(frames)


if __name__ == "__main__":
    main()
