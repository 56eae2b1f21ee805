"""Every result under results/, the command that makes it, and the README's tables.

    python3 experiments/run.py                            # status: what is done, what is missing
    python3 experiments/run.py --list                     # every command, runnable from the repo root
    python3 experiments/run.py --group findings --jobs 2  # run what is missing in a group
    python3 experiments/run.py --only hinton/code_3x1000  # an entry (all its seeds) or one file stem
    python3 experiments/run.py --all --jobs 2             # everything missing (days of CPU)
    python3 experiments/run.py --tables                   # the README tables, from the JSON alone
    python3 experiments/run.py --commands --group findings --blas-threads 1 | parallel -j 2
    python3 experiments/run.py --run-one findings/1x1000_s0   # what each --commands line does

Three parts, one file each: registry.py (every run as data: its command and its result
file), runner.py (running them) and tables.py (the Markdown tables); this file is the CLI.

Each training run is one call of the CLI, made from the repository root with relative
paths only: `python3 ff_label_in_input.py FLAGS --seed S --metrics results/...json`. The
metrics JSON records that argv ("command"), so it names no machine path. A run whose
result is there (a file; for JSON one that parses) is skipped, so the runner can be
stopped and started again. Runs of the groups with checkpoints write
runs/GROUP/STEM.ckpt.npz after every epoch and are resumed from it (`--resume`, added by
the runner) when it exists; after changing an entry's flags, delete its stale checkpoint.
Each run's output goes to runs/GROUP/STEM.log (git-ignored; a resumed run appends to it).
With --jobs 2, two runs share the machine with one BLAS thread each (two processes that
each spin two OpenBLAS threads on two cores slow each other down many times over); timing
runs (group bench) always run alone, after the others.

--commands prints one line per missing run, `python3 experiments/run.py --run-one
GROUP/STEM`, for GNU parallel, xargs -P or a Slurm array (`sed -n "${SLURM_ARRAY_TASK_ID}p"
commands.txt | bash`). --run-one holds runs/GROUP/STEM.lock ({"host", "pid"}) while the
run goes: a lock of a live process on this host, or of any process on another host, makes
it print one line and exit 0 without running; a lock of a dead process on this host is
stale and taken over. Its exit status is 1 when the run fails, 130 when stopped.

tests/test_results.py checks that every file under results/ has its command here, that
each command's flags give the config its JSON records, and that the README carries every
table --tables prints, unchanged; tests/test_sweeps.py runs --commands lines through GNU
parallel (or xargs) and checks the locks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))                     # the runner's parts, beside this file
sys.path.insert(0, str(HERE.parent))              # the module
import ff_label_in_input as ff  # noqa: E402
from registry import GROUP_NAMES, RUNS, done, matches, select, unknown_names  # noqa: E402
from runner import commands, listing, run_all, run_one, status  # noqa: E402
from tables import render_tables, update_readme  # noqa: E402
# reached through this module by plot_findings.py (ROOT, load) and the tests
from registry import ROOT, TRAIN, Run  # noqa: E402,F401
from runner import execute  # noqa: E402,F401
from tables import DOCS, FIELDS, TABLES, load  # noqa: E402,F401


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--group", nargs="+", choices=GROUP_NAMES, metavar="GROUP",
                   help=f"run (or list) these groups: {', '.join(GROUP_NAMES)}")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="run (or list) these entries: NAME (all seeds), a file stem, or GROUP/NAME")
    p.add_argument("--all", action="store_true", help="run everything that is missing")
    p.add_argument("--jobs", type=int, default=1, choices=(1, 2), help="runs at once (default: 1)")
    p.add_argument("--blas-threads", type=ff.positive_int, default=None, metavar="N",
                   help="OpenBLAS threads per run, passed on by --commands "
                        "(default: 1 with --jobs 2, else as set)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="print the commands and stop")
    what.add_argument("--commands", action="store_true",
                      help="print a --run-one line for each missing run of the selection, nothing "
                           "else (for GNU parallel, xargs -P or a Slurm array), and stop")
    what.add_argument("--run-one", metavar="GROUP/STEM",
                      help="make this run under its lock runs/GROUP/STEM.lock, unless it is done "
                           "or running; exit 0 when skipped, 1 when it fails")
    p.add_argument("--tables", action="store_true", help="print the README tables")
    p.add_argument("--readme", action="store_true",
                   help="rewrite the README's tables from the results (after its <!-- table NAME --> lines)")
    return p


def main(argv=None):
    """The CLI; returns the exit status. Bad flags exit 2, Ctrl-C 130, each with one line."""
    p = build_parser()
    args = p.parse_args(argv)
    unknown = unknown_names(RUNS, args.only)
    if unknown:
        p.error(f"--only: no run named {', '.join(unknown)} (see --list)")
    if args.run_one is not None:
        if args.group or args.only or args.all:
            p.error("--run-one names its run: no --group, --only or --all with it")
        named = [r for r in RUNS if matches(r, args.run_one)]
        if len(named) != 1:
            p.error(f"--run-one: {args.run_one} names {len(named)} runs, not one (see --commands)")
    try:
        with ff.stop_signals():              # SIGINT, SIGTERM, SIGHUP: forwarded to the runs
            if args.run_one is not None:
                return run_one(named[0], args.blas_threads)
            return run_cli(args)
    except KeyboardInterrupt as e:
        print(f"{ff.stop_reason(e)}; runs with a checkpoint resume from it next time", file=sys.stderr)
        return ff.exit_code(e)


def run_cli(args) -> int:
    """main() after its flags are checked."""
    chosen = args.group is not None or args.only is not None
    runs = select(RUNS, args.group, args.only)
    if args.list:
        ff.say(listing(runs))
        return 0
    if args.commands:
        lines = commands(runs, args.blas_threads)
        if lines:
            ff.say(lines)
        return 0
    ok = True
    if chosen or args.all:
        todo = [r for r in runs if not done(r)]
        ff.say(f"{len(todo)} of {len(runs)} runs to make")
        ok = run_all(todo, args.jobs, args.blas_threads)
    if args.readme:
        ff.say("README and RESULTS tables updated: " + ", ".join(update_readme()))
    if args.tables:
        ff.say(render_tables())
    elif not (chosen or args.all or args.readme):
        ff.say(status(RUNS))
        ff.say("\nrun a selection with --group, --only or --all; --list shows the commands")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
