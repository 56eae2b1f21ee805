"""Figure of RESULTS.md's finding 4: test error against epoch over 500 epochs, for
784-500-500 with both recipes, with and without jitter, and Hinton's recipe at 3 x 1000
with 1 px of jitter (as far as it has run).

    python3 experiments/plot_jitter_500.py        # writes viz/jitter_500.png

Reads the per-epoch history in results/jitter_500/*.json and the 3 x 1000 run's result, or
its curve so far (results/partial/). The curves are the headline read-out's error on the
first 2,000 test images, scored after every epoch; the marks at the right end are the
final errors on all 10,000.
"""

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "viz" / "jitter_500.png"
RUNS = (("results/jitter_500/baseline_s0.json", "784-500-500 baseline", "tab:blue", "-"),
        ("results/jitter_500/baseline_jitter2_s0.json", "784-500-500 baseline, jitter 2 px", "tab:blue", "--"),
        ("results/jitter_500/hinton_s0.json", "784-500-500 hinton", "tab:red", "-"),
        ("results/jitter_500/hinton_jitter1_s0.json", "784-500-500 hinton, jitter 1 px", "tab:red", "--"))
LONG = (("results/hinton/jitter1_3x1000_500ep_s0.json", "results/partial/jitter1_3x1000_500ep_s0.json"),
        "3 x 1000 hinton, jitter 1 px, first 1,000 test images", "black", ":")
PAPER_JITTER = 0.64                                  # Hinton (2022), sec. 3.3, 500 epochs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(OUT), metavar="PATH", help="the PNG to write")
    args = p.parse_args(argv)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=100)
    drawn = 0
    runs = list(RUNS) + [(next((f for f in LONG[0] if (ROOT / f).exists()), LONG[0][0]), *LONG[1:])]
    for path, label, color, style in runs:
        if not (ROOT / path).exists():
            continue
        r = json.loads((ROOT / path).read_text())
        h = r["history"]
        err = [100 * (1 - a) for a in h["test_acc"]]
        if r.get("partial"):
            label += f" (epoch {r['epoch']} of {r['of_epochs']}, still running)"
        ax.plot(h["epoch"], err, style, color=color, lw=1, label=label)
        if not r.get("partial"):
            final = 100 * (1 - r["prediction_modes"][r["predict_mode"]])
            ax.plot([h["epoch"][-1]], [final], "o", color=color, ms=4)
        drawn += 1
    if not drawn:
        sys.exit("error: no results/jitter_500/*.json yet; run python3 experiments/run.py --group jitter_500")
    ax.axhline(PAPER_JITTER, color="0.4", lw=0.8, ls="-.", label="Hinton (2022), jittered, 4 x 2000: 0.64%")
    ax.set(xlabel="epoch", ylabel="test error (%), first 2,000 test images", yscale="log",
           title="500 epochs: which runs are capacity-bound, which optimisation-bound?")
    ax.set_yticks([0.5, 1, 2, 5, 10])
    ax.set_yticklabels(["0.5", "1", "2", "5", "10"])
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
