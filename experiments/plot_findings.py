"""Plot of Findings question 2: test accuracy against depth at about the same cost per epoch.

    python3 experiments/plot_findings.py          # writes viz/findings_depth.png

Reads the JSON in results/findings/ (made by `python3 experiments/run.py --group findings`).
"""

import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, load  # noqa: E402

SHAPES = [("1x1000", 1), ("uniform_2x500", 2), ("3x400", 3), ("4x350", 4)]
MODES = (("all", "all layers", "tab:blue"), ("first", "layer 0 only", "tab:green"),
         ("skip-first", "all but layer 0 (paper)", "tab:red"))


def point(name, mode):
    values = [100 * m["prediction_modes"][mode] for m in load(name) if mode in m["prediction_modes"]]
    return (statistics.mean(values), statistics.stdev(values)) if len(values) > 1 else (None, None)


def main():
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=100, layout="constrained")
    for mode, label, color in MODES:
        xs, ys, es = [], [], []
        for name, depth in SHAPES:
            mean, std = point(name, mode)
            if mean is not None:
                xs.append(depth); ys.append(mean); es.append(std)
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, color=color,
                    label=f"{label}, seed loss (mean vs 2)")
        mean, std = point("4x350_sum", mode)
        ax.errorbar([4.08], [mean], yerr=[std], marker="*", markersize=12, capsize=3, color=color,
                    linestyle="none", label=f"{label}, 4 x 350 with --logit-scale D")
    ax.set_xticks([1, 2, 3, 4], ["1 x 1000", "2 x 500", "3 x 400", "4 x 350"])
    ax.set_xlabel("hidden layers (about the same cost per epoch)")
    ax.set_ylabel("test accuracy (%), mean ± sd of 3 seeds")
    ax.set_title("Depth at fixed cost, 30 epochs: the loss decides whether depth helps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="lower left")
    out = ROOT / "viz" / "findings_depth.png"
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
