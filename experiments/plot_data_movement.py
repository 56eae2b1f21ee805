"""Figure of the README's data-movement section: FF / backprop ByteDMD per batch against
depth, for each training order that gives the same weights, each FF order against
backprop's batch order or its local (layer-update) order.

    python3 experiments/plot_data_movement.py     # writes viz/data_movement_depth.png

Reads results/data_movement/schedules_depth.json (made by
`python3 experiments/data_movement.py --only schedules_depth`).
"""

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "results" / "data_movement" / "schedules_depth.json"
OUT = ROOT / "viz" / "data_movement_depth.png"
SCHEDULES = (("batch", "FF batch / BP batch (as coded)", "-"),
             ("layer-update", "FF layer-update / BP layer-update", "--"),
             ("layer-major", "FF layer-major (8 batches) / BP layer-update", ":"))
RECIPES = (("baseline", "tab:blue"), ("hinton", "tab:red"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", default=str(SOURCE), metavar="PATH", help="the schedules_depth JSON")
    p.add_argument("--out", default=str(OUT), metavar="PATH", help="the PNG to write")
    args = p.parse_args(argv)
    source, out = Path(args.source), Path(args.out)
    if not source.exists():
        sys.exit(f"error: {source} is missing; run "
                 f"python3 experiments/data_movement.py --only schedules_depth")
    points = json.loads(source.read_text())["points"]
    fig, ax = plt.subplots(figsize=(9.5, 4.2), dpi=100)
    for recipe, color in RECIPES:
        mine = sorted((p for p in points if p["recipe"] == recipe), key=lambda p: len(p["layer_sizes"]))
        for schedule, label, style in SCHEDULES:
            xy = [(len(p["layer_sizes"]) - 1, p[schedule]["ff_over_bp"]) for p in mine if schedule in p]
            if xy:
                ax.plot(*zip(*xy), style, marker="o", color=color, label=f"{recipe}: {label}")
    ax.axhline(1, color="0.5", lw=0.8)
    ax.set(xlabel="hidden layers of 2000 units (batch 100)", ylabel="FF / backprop, ByteDMD per batch",
           xticks=[2, 4, 8], title="FF / backprop, each order against its backprop counterpart\n"
                                   "(ByteDMD, array granularity, fused optimiser)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
