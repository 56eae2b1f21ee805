"""How fast do second-layer units die? Dead-unit counts over the first Adam steps.

    python3 experiments/dead_units_early.py [--deep-lr-scale 0.1] [--steps 50] [--json PATH]

Trains 784-500-500 with the baseline recipe and, after each of the first --steps steps,
counts the layer-1 units that are silent on 2000 test images carrying their true label.
It also prints, for the first steps, how far one Adam step moves a layer-1 unit's
pre-activation: about lr * ||x||_1, since Adam moves every weight by about lr.

The steps are the module's own (ff.train_step on the batches of the first epoch, in the
order ff.train_epoch draws them), so this is the start of the headline run exactly.
experiments/run.py --group dead_units runs it for the two JSON files under results/.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ff_label_in_input as ff  # noqa: E402


def layer1_input_l1(net, x, y):
    """Mean ||x||_1 of layer 1's input for images carrying their true label: the
    RMS-normalised layer-0 activity."""
    xs, _ = ff.forward(net, ff.embed_label(x, y))
    return float(np.abs(xs[1]).sum(axis=1).mean())


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=ff.HelpFormatter)
    p.add_argument("--steps", type=ff.bounded(int, 1, ff.N_TRAIN // ff.Config().batch_size), default=50,
                   help="Adam steps to follow (within the first epoch)")
    p.add_argument("--deep-lr-scale", type=ff.positive_float, default=1.0,
                   help="learning-rate multiplier of layer 1")
    p.add_argument("--json", metavar="PATH", help="write the counts here")
    return p


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    ff.check_paths(p, args, ("json",))
    try:
        x, y, x_test, y_test = ff.load_mnist()
    except ff.DataError as e:
        ff.fail(e)
    cfg = ff.Config(deep_lr_scale=args.deep_lr_scale)
    state = ff.init_state(cfg)
    draws = ff.epoch_draws(state, cfg, len(x))               # the first epoch's draws
    grads = np.empty_like(state.net.params)
    counts, l1_norms = [], []
    for step in range(args.steps + 1):
        counts.append(ff.dead_units(state.net, x_test[:2000], y_test[:2000])[1])
        if step == args.steps:
            break
        rows = slice(step * cfg.batch_size, (step + 1) * cfg.batch_size)
        idx = draws.order[rows]
        l1_norms.append(layer1_input_l1(state.net, x[idx], y[idx]))
        ff.train_step(state, cfg, [ff.Batch(x[idx], y[idx], draws.offsets[rows])], [cfg.lr], grads)
    print("step  dead layer-1 units (of 500)")
    for s in sorted({0, 1, 2, 3, 5, 10, 20, 30, args.steps}):
        if s <= args.steps:
            print(f"{s:4d}  {counts[s]}")
    move = cfg.lr * args.deep_lr_scale * np.mean(l1_norms[:10])
    print(f"mean ||x||_1 of the layer-1 input over the first steps: {np.mean(l1_norms[:10]):.1f} "
          f"-> one Adam step can move a pre-activation by ~{move:.2f}")
    if args.json:
        ff.atomic_write_bytes(args.json, (json.dumps({"dead_layer1": counts, "l1_norms": l1_norms,
                                                      "deep_lr_scale": args.deep_lr_scale, "machine": ff.machine()}) + "\n").encode())


if __name__ == "__main__":
    main()
