"""The curve of a run still under way: its checkpoint's history, written as a result.

    python3 experiments/partial_curve.py runs/hinton/jitter1_3x1000_500ep_s0.ckpt.npz \
        --json results/hinton/jitter1_3x1000_500ep_s0.partial.json

A long run that a session could not finish leaves its checkpoint; this writes what that
checkpoint holds (config, the epoch it reached, the per-epoch history) so the curve so far
can be committed and drawn. The run itself resumes from the same checkpoint.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ff_label_in_input as ff  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=ff.HelpFormatter)
    p.add_argument("checkpoint", help="the run's --checkpoint file")
    p.add_argument("--json", required=True, metavar="PATH", help="where the partial result goes")
    args = p.parse_args(argv)
    args.resume = args.checkpoint                    # checked as an input file
    ff.check_paths(p, args, ("json",))
    try:
        data, cfg, _, _ = ff.read_ff_npz(args.resume, "checkpoint")
    except ff.ModelError as e:
        ff.fail(e)
    history = json.loads(str(data["history"]))
    given = sys.argv[1:] if argv is None else argv
    record = {"partial": True, "epoch": int(data["epoch"]), "of_epochs": cfg.n_epochs,
              "config": json.loads(str(data["config"])), "history": history,
              "checkpoint_machine": json.loads(str(data["machine"])) if "machine" in data else None,
              "command": "python3 experiments/partial_curve.py " + " ".join(given),
              "machine": ff.machine()}
    ff.atomic_write_bytes(args.json, (json.dumps(record, indent=1) + "\n").encode())
    ff.say(f"{args.json}: epoch {record['epoch']} of {cfg.n_epochs}")
    return record


if __name__ == "__main__":
    main()
