"""How fast do second-layer units die? Dead-unit counts over the first Adam steps.

    python3 experiments/dead_units_early.py [--deep-lr-scale 0.1] [--steps 50]

Trains 784-500-500 with the seed recipe and, after each of the first --steps steps,
counts the layer-1 units that are silent on 2000 test images carrying their true label.
It also prints, for the first steps, how far one Adam step moves a layer-1 unit's
pre-activation: about lr * ||x||_1, since Adam moves every weight by about lr.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ff_label_in_input as ff  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--deep-lr-scale", type=float, default=1.0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    x, y, x_test, y_test = ff.load_mnist()
    cfg = ff.Config(deep_lr_scale=args.deep_lr_scale)
    state = ff.init_state(cfg)
    x_in = ff.training_inputs(x)
    order = state.rng_order.permutation(len(x))
    counts, l1_norms = [], []
    for step in range(args.steps + 1):
        counts.append(ff.dead_units(state.net, x_test[:2000], y_test[:2000])[1])
        if step == args.steps:
            break
        idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
        y_neg = ff.draw_wrong_labels(y[idx], state.rng_neg)
        # the layer-1 input of this batch's positives: normalised layer-0 activity
        h0, g0 = ff.layer_forward(ff.embed_label(x[idx], y[idx]), state.net.W[0], state.net.b[0])
        l1_norms.append(float(np.abs(ff.normalize(h0, g0)).sum(axis=1).mean()))
        ff.ff_step_grads(state.net, x_in[idx], y[idx], y_neg, cfg.threshold, state.grads)
        ff.adam_update(state.net.params, state.grads, state.opt, cfg.lr, None, ff.adam_segments(cfg))
    print("step  dead layer-1 units (of 500)")
    for s in sorted({0, 1, 2, 3, 5, 10, 20, 30, args.steps}):
        if s <= args.steps:
            print(f"{s:4d}  {counts[s]}")
    print(f"mean ||x||_1 of the layer-1 input over the first steps: {np.mean(l1_norms[:10]):.1f} "
          f"-> one Adam step can move a pre-activation by ~{cfg.lr * args.deep_lr_scale * np.mean(l1_norms[:10]):.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"dead_layer1": counts, "l1_norms": l1_norms,
                                               "deep_lr_scale": args.deep_lr_scale}) + "\n")


if __name__ == "__main__":
    main()
