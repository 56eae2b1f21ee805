"""The README's and RESULTS.md's tables, made from the result files alone.

    python3 experiments/run.py --tables      # print them
    python3 experiments/run.py --readme      # write them into README.md and RESULTS.md

Each table reads the JSON of finished runs (registry.done) and each JSON's config as it
stands: older results were rewritten once in today's fields (see their "migrated_from").
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
from pathlib import Path

from registry import ABLATION, GROUPS, HINTON, PAPER_SCALE, ROOT, RUNS, done

sys.path.insert(0, str(ROOT))
import ff_label_in_input as ff  # noqa: E402

# ----------------------------------------------------------------------------
# Reading results.
# ----------------------------------------------------------------------------

FIELDS = tuple(f.name for f in dataclasses.fields(ff.Config))
SAME_WEIGHTS = tuple(f.name for f in dataclasses.fields(ff.Config) if f.metadata["same_weights"])
SETUP = ("recipe", "seed", "n_epochs", "layer_sizes", "train_subset", "val_split") + SAME_WEIGHTS


def recipe_defaults(recipe: str) -> dict:
    """Every field of a Config of this recipe, untouched by flags."""
    return {**dataclasses.asdict(ff.Config()), **ff.RECIPES[recipe], "recipe": recipe}


def flag_words(key, value) -> list:
    flag = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return [flag] if value else []
    if isinstance(value, list):
        return [flag, ",".join(map(str, value))]
    return [flag, str(value)]


def changed_flags(cfg: dict, ref: dict, skip=()) -> str:
    """The flags, in Config order, on which cfg differs from ref."""
    return " ".join(w for k in FIELDS if k not in skip and cfg[k] != ref[k]
                    for w in flag_words(k, cfg[k]))


def extra_flags(cfg: dict) -> str:
    """The training flags that differ from cfg's recipe (setup and read-out aside)."""
    return changed_flags(cfg, recipe_defaults(cfg["recipe"]), SETUP)


def recipe_label(cfg: dict) -> str:
    """`recipe`, and its changed training flags (setup and read-out aside)."""
    extra = extra_flags(cfg)
    return f"`{cfg['recipe']}`" + (f" + `{extra}`" if extra else "")


def read_json(path) -> dict:
    return json.loads((ROOT / path).read_text())


def runs_of(group: str, entry: str) -> list:
    return [r for r in RUNS if r.group == group and r.entry == entry]


def load(name: str, group: str = "findings") -> list:
    """The metrics of every finished seed of an entry."""
    return [read_json(r.out) for r in runs_of(group, name) if done(r)]


def existing(group: str, entries=None) -> list:
    return [r.out for r in RUNS if r.group == group and (entries is None or r.entry in entries)
            and done(r)]


# ----------------------------------------------------------------------------
# Tables. Each returns a stable string made from the JSON alone.
# ----------------------------------------------------------------------------

def mean_std(values, scale=100.0, digits=2):
    """'mean ± std' of the values (just the value for one), as percentages by default."""
    values = [v * scale for v in values]
    if any(v != v for v in values):                  # NaN: the mode does not exist here
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def error_pct(values):
    """Test error in %, of accuracies: '1.78' for one seed, '1.50 ± 0.05' for more."""
    errors = [100 * (1 - v) for v in values]
    if len(errors) == 1:
        return f"{errors[0]:.2f}"
    return f"{statistics.mean(errors):.2f} ± {statistics.stdev(errors):.2f}"


def mean_dead(ms) -> str:
    return " / ".join(f"{statistics.mean(m['dead_units'][l] for m in ms):.0f}"
                      for l in range(len(ms[0]["dead_units"])))


def hidden(sizes) -> str:
    widths = sizes[1:]
    return f"{len(widths)} x {widths[0]}" if len(set(widths)) == 1 else "-".join(map(str, widths))


def row(name):
    ms = load(name)
    if not ms:
        return None
    modes = {m: mean_std([x["prediction_modes"].get(m, float("nan")) for x in ms])
             for m in ("all", "first", "skip-first")}
    return {"name": name, "sizes": hidden(ms[0]["config"]["layer_sizes"]), "modes": modes,
            "dead": mean_dead(ms), "n": len(ms), "epochs": ms[0]["config"]["n_epochs"],
            "secs": f"{statistics.mean(x['train_seconds'] for x in ms):.0f}"}


FINDINGS_TABLES = {
    "q1": ("uniform_2x500", "hard_2x500"),
    "q2": ("1x1000", "uniform_2x500", "3x400", "4x350", "2x500_deeplr0.1", "4x350_deeplr0.1",
           "4x350_sum"),
    "q4": ("uniform_2x500", "jitter_2x500", "uniform_2x500_60ep", "jitter_2x500_60ep"),
    "q5_val": ("val_baseline", "val_sum", "val_sum_cool", "val_sum_cool_hf", "val_sum_cool_hard",
               "val_sum_cool_hf_peer"),
    "q5": ("best_2x500",),            # the baseline's uniform_2x500 is in the q1 table
}


def table(key):
    """A Findings table (questions 1-5): one row per entry, mean ± sd over its n seeds."""
    held_out = "val." if key.endswith("_val") else "test"
    lines = [f"| run | hidden | epochs | n | {held_out} acc. all (%) | first (%) | skip-first (%) | "
             "dead units per layer | train s |", "|---|---|---|---|---|---|---|---|---|"]
    for name in FINDINGS_TABLES[key]:
        r = row(name)
        if r:
            lines.append(f"| `{name}` | {r['sizes']} | {r['epochs']} | {r['n']} | {r['modes']['all']} | "
                         f"{r['modes']['first']} | {r['modes']['skip-first']} | {r['dead']} | {r['secs']} |")
    return "\n".join(lines)


def tuning_table():
    """The paper-scale tuning runs (4 x 500, 10 epochs, 10K validation images), one seed
    each; the flags in today's spelling (see registry.py on old runs)."""
    lines = ["| run | flags beyond the baseline recipe | val. all (%) | first (%) | skip-first (%) | "
             "dead units per layer | train s |", "|---|---|---|---|---|---|---|"]
    base = read_json("results/tuning_4x500/base.json")["config"]
    for path in existing("tuning_4x500"):
        m = read_json(path)
        flags = changed_flags(m["config"], base)
        modes = m["prediction_modes"]
        lines.append(f"| `{Path(path).stem}` | `{flags or '(none)'}` | {100 * modes['all']:.2f} | "
                     f"{100 * modes['first']:.2f} | {100 * modes['skip-first']:.2f} | "
                     f"{' / '.join(map(str, m['dead_units']))} | {m['train_seconds']:.0f} |")
    return "\n".join(lines)


def headline_table():
    """The headline run: its command, accuracy, every read-out, dead units, time."""
    (path,) = existing("headline")
    m = read_json(path)
    command = m["command"]
    modes = ", ".join(f"`{k}` {100 * v:.2f}%" for k, v in m["prediction_modes"].items())
    widths = " / ".join(map(str, m["layer_widths"]))
    return "\n".join([
        f"| headline run | `{path}` |", "|---|---|",
        f"| command | `{command}` |",
        f"| {m['evaluated_on']} accuracy, `{m['predict_mode']}` read-out | "
        f"{m['test_correct']} / {m['test_total']} ({100 * m['test_accuracy']:.2f}%) |",
        f"| every read-out | {modes} |",
        f"| dead units per layer (of {widths}) | {' / '.join(map(str, m['dead_units']))} |",
        f"| training time | {m['train_seconds']:.1f} s |"])


# Published results at paper scale (not measured here): who, recipe, hidden layers,
# epochs, read-out, test error (%), source.
LITERATURE = (
    ("Hinton (2022)", "the paper's", "4 x 2000", 60, "skip-first", "1.36",
     "arXiv:2212.13345, sec. 3.3"),
    ("Hinton's released Matlab code", "his code", "3 x 1000", 100, "not stated", "about 1.47",
     "as reported by loeweX/Forward-Forward, README"),
    ("loeweX/Forward-Forward (PyTorch)", "his code, ported", "3 x 1000", 100, "not stated", "1.45",
     "github.com/loeweX/Forward-Forward, README and config.yaml"),
    ("Hinton (2022), jittered images", "the paper's", "", 500, "", "0.64", "arXiv:2212.13345, sec. 3.3"),
    ("jesper-olsen/forward-forward-rs (Rust)", "his code + 1 px shifts, 10% dropout", "3 x 1000", 200,
     "softmax", "0.69", "its README"),
)


def paper_scale_entries() -> list:
    """(group, entry) of the runs at paper scale scored on the test set: the baseline recipe's
    4 x 2000 and every test-set run of the hinton group."""
    entries = [("paper_scale", e) for e in PAPER_SCALE.runs]
    entries += [("hinton", e) for e in HINTON.runs if "--val-split" not in HINTON.runs[e][0]]
    return [(g, e) for g, e in entries if load(e, g)]


def paper_scale_table():
    """Our paper-scale runs against the published numbers."""
    lines = ["| run | recipe | hidden layers | epochs | seeds | read-out | test error (%) | "
             "train time per seed | source |", "|---|---|---|---|---|---|---|---|---|"]
    for group, entry in paper_scale_entries():
        ms = load(entry, group)
        cfg = ms[0]["config"]
        mode = ms[0]["predict_mode"]
        source = (runs_of(group, entry)[0].out if len(ms) == 1 else
                  GROUPS[group].out.format(group=group, name=entry, seed="*"))
        lines.append(f"| `{group}/{entry}` | {recipe_label(cfg)} | {hidden(cfg['layer_sizes'])} | "
                     f"{cfg['n_epochs']} | {', '.join(str(m['config']['seed']) for m in ms)} | "
                     f"`{mode}` | {error_pct([m['prediction_modes'][mode] for m in ms])} | "
                     f"{statistics.mean(m['train_seconds'] for m in ms) / 60:.1f} min | `{source}` |")
    for r in (r for r in RUNS if r.group == "partial" and done(r)):
        m = read_json(r.out)
        cfg, h = m["config"], m["history"]
        if not h["epoch"] or any(run.out.endswith(f"{r.entry}.json") and done(run) for run in RUNS if run.group == "hinton"):
            continue                                  # no curve yet, or the run has finished
        last = [100 * (1 - a) for a in h["test_acc"][-10:]]
        lines.append(f"| `hinton/{r.entry.rsplit('_s', 1)[0]}` (partial) | {recipe_label(cfg)} | "
                     f"{hidden(cfg['layer_sizes'])} | {m['epoch']} of {m['of_epochs']} | {cfg['seed']} | "
                     f"`{cfg['predict_mode']}` | {sum(last) / len(last):.2f} (last 10 epochs, first "
                     f"{cfg['eval_subset']} test images) | {sum(h['seconds']) / 60:.0f} min until it stopped | `{r.out}` |")
    for who, recipe, layers, epochs, mode, error, source in LITERATURE:
        lines.append(f"| {who} | {recipe} | {layers} | {epochs} | | {mode} | {error} | | {source} |")
    return "\n".join(lines)


def readout_errors(ms) -> list:
    return [error_pct([m["prediction_modes"][k] for m in ms]) if k in ms[0]["prediction_modes"]
            else "n/a" for k in ff.READOUTS]


def hinton_table():
    """Every run of Hinton's recipe: error of each read-out on its held-out set."""
    columns = (["run", "hidden", "epochs", "extra flags", "scored on", "seeds"]
               + [f"{k} error (%)" for k in ff.READOUTS] + ["dead units per layer", "train s"])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for entry in HINTON.runs:
        ms = load(entry, "hinton")
        if not ms:
            continue
        cfg = ms[0]["config"]
        flags = changed_flags(cfg, recipe_defaults(cfg["recipe"]),
                              SETUP[:3] + ("layer_sizes", "val_split") + SAME_WEIGHTS)
        lines.append(f"| `{entry}` | {hidden(cfg['layer_sizes'])} | {cfg['n_epochs']} | "
                     f"{f'`{flags}`' if flags else ''} | {ms[0]['evaluated_on']} "
                     f"({ms[0]['test_total']}) | {', '.join(str(m['config']['seed']) for m in ms)} | "
                     + " | ".join(readout_errors(ms)) + f" | {mean_dead(ms)} | "
                     f"{statistics.mean(m['train_seconds'] for m in ms):.0f} |")
    return "\n".join(lines)


def ablation_table():
    """Findings question 6: Hinton's recipe at 4 x 500, one change at a time, and the
    Adam recipe's untuned and best runs at the same size, budget and split for reference."""
    lines = ["| run | change from the full recipe | val. error `skip-first` (%) | `all` (%) | "
             "`softmax` (%) | dead units per layer | train s |", "|---|---|---|---|---|---|---|"]
    rows = [(f"`{e}`", load(e, "ablation")) for e in ABLATION.runs]
    rows += [(f"Adam recipe `tuning_4x500/{stem}`", load(stem, "tuning_4x500"))
             for stem in ("base", "sum_cool_hardfirst")]
    for label, ms in rows:
        if not ms:
            continue
        cfg = ms[0]["config"]
        if label.startswith("`"):
            change = extra_flags(cfg)
            change = f"`{change}`" if change else "(none)"
        else:
            change = "`" + (changed_flags(cfg, recipe_defaults("baseline"), SETUP) or "--recipe baseline") + "`"
        errors = [error_pct([m["prediction_modes"][k] for m in ms]) if k in ms[0]["prediction_modes"]
                  else "n/a" for k in ("skip-first", "all", "softmax")]
        lines.append(f"| {label} | {change} | " + " | ".join(errors) + f" | {mean_dead(ms)} | "
                     f"{statistics.mean(m['train_seconds'] for m in ms):.0f} |")
    return "\n".join(lines)


BENCH_ROWS = (  # label, key, format (the JSON holds more: layer-0 prediction, RSS, ...)
    ("plain NumPy epoch (reference)", "reference_epoch_s", "{:.3f}"),
    ("module epoch", "module_epoch_s", "{:.3f}"),
    ("floor: the step's products + one optimiser-state pass", "floor_s", "{:.3f}"),
    ("predict 10K x 10 labels: naive / module", ("predict_naive_s", "predict_module_s"), "{:.3f} / {:.3f}"),
    ("plain / module epoch", "ratio_reference_over_module", "{:.2f}x"),
    ("module epoch / floor", "ratio_module_over_floor", "{:.2f}x"),
    ("prediction naive / module (multiply-add bound)",
     ("ratio_predict_naive_over_module", "predict_flop_ratio_naive_over_module"), "{:.2f}x ({:.2f}x)"),
)


def ab_table():
    """results/bench/ab_*.json and schedules_*.json: interleaved epochs, median seconds."""
    lines = ["| comparison | flags of all | images | median epoch (s) | ratio to the first | CPU, BLAS threads |",
             "|---|---|---|---|---|---|"]
    for path in existing("bench"):
        if not Path(path).name.startswith(("ab_", "schedules_")):
            continue
        b = read_json(path)
        medians, ratios = b["median_s"], b["ratio_to_first"]
        seconds = " / ".join(f"{name}: {t:.2f}" for name, t in medians.items())
        relative = " / ".join(f"{ratios[name]:.3f}" for name in medians)
        machine = b["machine"]
        lines.append(f"| `{Path(path).stem}` | `{' '.join(b['flags'])}` | {b['n_images']} | {seconds} "
                     f"| {relative} | {machine['cpu']}, {machine['OPENBLAS_NUM_THREADS'] or 'default'} |")
    return "\n".join(lines)


def bench_table():
    """results/bench/*.json side by side, smallest network first."""
    benches = sorted((read_json(p) for p in existing("bench") if Path(p).name.startswith("bench_")),
                     key=lambda b: ff.n_params(b["layer_sizes"]))
    head = [f"{'-'.join(map(str, b['layer_sizes']))}, {b['n_images'] // 1000}K images" for b in benches]
    lines = ["| median seconds | " + " | ".join(head) + " |", "|---" * (1 + len(benches)) + "|"]
    for label, keys, fmt in BENCH_ROWS:
        keys = (keys,) if isinstance(keys, str) else keys
        cells = [fmt.format(*(b[k] for k in keys)) if all(k in b for k in keys) else "n/a"
                 for b in benches]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    machine = [b.get("machine", {}) for b in benches]
    lines.append("| CPU (cores) | " + " | ".join(f"{m.get('cpu', 'n/a')} ({m.get('cores', '?')})"
                                                  for m in machine) + " |")
    lines.append("| Python, NumPy | " + " | ".join(f"{m.get('python', 'n/a')}, {m.get('numpy', 'n/a')}"
                                                   for m in machine) + " |")
    return "\n".join(lines)


FF_REFERENCE = {   # the FF run each backprop run is held against: (group, entry, read-out, recipe)
    (784, 500, 500): ("headline", "headline", "all", "baseline"),
    (784, 2000, 2000, 2000, 2000): ("hinton", "paper_4x2000", "skip-first", "hinton"),
}


def ff_reference(sizes):
    """(label, mean test error %, epochs, steps per epoch) of the FF run a net is held against."""
    group, entry, mode, _ = FF_REFERENCE[tuple(sizes)]
    ms = [read_json(p) for p in existing(group)] if group == "headline" else load(entry, group)
    errors = [100 * (1 - m["prediction_modes"][mode]) for m in ms]
    cfg = ms[0]["config"]
    steps = -(-(ff.N_TRAIN - cfg["val_split"]) // cfg["batch_size"])
    return f"`{group}/{entry}`", sum(errors) / len(errors), cfg["n_epochs"], steps


def backprop_table():
    """results/backprop/*.json: the backprop baseline against FF's result at the same size."""
    lines = ["| run | hidden | optimiser | epochs | test error (%) per epoch 1 / 5 / 10 / last | best (epoch) "
             "| FF run, its error | first backprop epoch at or below it | s per epoch (CPU, BLAS threads) |",
             "|---" * 9 + "|"]
    for path in finished_backprop():
        b = read_json(path)
        cfg, errs = b["config"], b["history"]["test_error"]
        label, ff_err, _, _ = ff_reference(cfg["layer_sizes"])
        reached = next((i + 1 for i, e in enumerate(errs) if e <= ff_err + 1e-9), None)
        best = min(range(len(errs)), key=errs.__getitem__)
        picks = " / ".join(f"{errs[i - 1]:.2f}" for i in (1, 5, 10, len(errs)) if i <= len(errs))
        seconds = sorted(b["history"]["seconds"])[len(errs) // 2]
        threads = b["blas_threads"]["OPENBLAS_NUM_THREADS"]
        lines.append(f"| `{Path(path).stem}` | {hidden(cfg['layer_sizes'])} | {cfg['optimizer']} lr "
                     f"{cfg['lr']} {cfg['lr_schedule']}, batch {cfg['batch_size']} | {len(errs)} | {picks} | {errs[best]:.2f} "
                     f"({best + 1}) | {label}, {ff_err:.2f} | {reached or 'not reached'} | {seconds:.1f} "
                     f"({b['cpu']}, {threads or 'default'}) |")
    return "\n".join(lines)


def crossing_table():
    """The first backprop epoch at or below FF's test error, for each backprop run against
    each FF seed of the run it is held against, and against their mean."""
    lines = ["| backprop run | FF run | against each FF seed (its error) | against FF's mean |", "|---" * 4 + "|"]
    for path in finished_backprop():
        b = read_json(path)
        sizes = tuple(b["config"]["layer_sizes"])
        group, entry, mode, _ = FF_REFERENCE[sizes]
        ms = [read_json(p) for p in existing(group)] if group == "headline" else load(entry, group)
        errs = b["history"]["test_error"]

        def first(target):
            return next((i + 1 for i, e in enumerate(errs) if e <= target + 1e-9), None)
        seeds = [(m["config"]["seed"], 100 * (1 - m["prediction_modes"][mode])) for m in ms]
        mean = sum(e for _, e in seeds) / len(seeds)
        each = ", ".join(f"seed {s} ({e:.2f}%): {first(e) or 'never'}" for s, e in seeds)
        lines.append(f"| `{Path(path).stem}` | `{group}/{entry}` | {each} | {mean:.2f}%: {first(mean) or 'never'} |")
    return "\n".join(lines)


def finished_backprop() -> list:
    """The backprop results of complete runs (older runs wrote their JSON every epoch)."""
    return [p for p in existing("backprop")
            if read_json(p)["epochs_done"] == read_json(p)["config"]["n_epochs"]]


def dm_points(group):
    return [p for path in existing("data_movement", [group]) for p in read_json(path)["points"]]


def net_label(p):
    return f"{hidden(p['layer_sizes'])}, B {p['batch_size']}, {p['recipe']}"


def data_movement_table():
    """ByteDMD per batch, FF over backprop, the optimiser fused (one pass per layer array):
    each method in each order that gives its weights, and each one's best against the
    other's best, beside the as-coded pair (both in batch order)."""
    main = {(tuple(p["layer_sizes"]), p["batch_size"], p["recipe"]): p for p in dm_form("main", "fused")}
    lines = ["| net, batch, recipe | FF batch / BP batch (as coded) | FF layer-update / BP layer-update "
             "| FF layer-major / BP layer-update | best / best (orders) | batch order without the update "
             "| batch order, tile fetches only, T = 512 / 128 / 32 | peak live bytes FF / BP |",
             "|---" * 8 + "|"]
    for q in dm_form("schedules", "fused"):
        p = main.get((tuple(q["layer_sizes"]), q["batch_size"], q["recipe"]))
        major = f"{q['layer-major']['ff_over_bp']:.2f}" if "layer-major" in q else "n/a (negatives from above)"
        tiled = (" / ".join(f"{p['ff_over_bp_tiled'][t]:.2f}" for t in sorted(p["ff_over_bp_tiled"], key=int, reverse=True))
                 if p and p["ff_over_bp_tiled"] else "n/a")
        lines.append(f"| {net_label(q)} | {q['batch']['ff_over_bp']:.2f} | {q['layer-update']['ff_over_bp']:.2f} "
                     f"| {major} | {q['best_over_best']:.2f} (FF {q['ff_best']}, BP {q['bp_best']}) "
                     f"| {p['not_update_ff_over_bp']:.2f} | {tiled} | {p['peak_live_ff_over_bp']:.2f} |"
                     if p else f"| {net_label(q)} | {q['batch']['ff_over_bp']:.2f} | n/a | n/a | n/a | n/a | n/a | n/a |")
    return "\n".join(lines)


def data_movement_forms_table():
    """The same ratios under each way of pricing the optimiser: fused, as this CPU runs it
    (Adam in 65,536-element chunks), and the GPU code (one whole-layer pass per operation)."""
    lines = ["| net, batch, recipe | optimiser form | FF batch / BP batch | best / best | FF step: update share "
             "| BP step: update share |", "|---" * 6 + "|"]
    best = {(tuple(q["layer_sizes"]), q["batch_size"], q["recipe"], q["optimizer_form"]): q
            for q in dm_points("schedules") + dm_points("schedules_forms") if "optimizer_form" in q}
    for p in (p for p in dm_points("main") if "optimizer_form" in p):
        q = best.get((tuple(p["layer_sizes"]), p["batch_size"], p["recipe"], p["optimizer_form"]))
        pair = f"{q['best_over_best']:.2f} (FF {q['ff_best']}, BP {q['bp_best']})" if q else "not measured"
        lines.append(f"| {net_label(p)} | {p['optimizer_form']} | {p['ff_over_bp']:.2f} | {pair} | "
                     f"{100 * p['ff']['update'] / p['ff']['total']:.0f}% | {100 * p['bp']['update'] / p['bp']['total']:.0f}% |")
    return "\n".join(lines)


CHECKS = ("_n2", "_m0")     # Cachegrind runs that check the method (N = 2, M = 0), not points


def cachegrind_points(checks=True) -> dict:
    """{(layer sizes, batch, method, order, last level MB, steps N, short run's steps M): per
    batch} over results/cachegrind/*.json; checks=False leaves out the runs in CHECKS."""
    rows = {}
    for path in existing("cachegrind"):
        if not checks and Path(path).stem.endswith(CHECKS):
            continue
        c = read_json(path)
        pt = c["point"]
        for q in c["points"]:
            rows[(tuple(pt["layer_sizes"]), pt["batch_size"], pt["method"], pt["schedule"], q["ll_mb"],
                  pt["steps"], pt.get("base_steps", pt["steps"]))] = q.get("per_batch", q["per_step"])
    return rows


def cachegrind_table():
    """results/cachegrind/*.json: the real steps under Cachegrind (this CPU's L1d: 48 KB,
    12-way, 64 B lines; a 16-way last level of 64 B lines at the size given): per batch,
    by difference of a short run (M steps after the warm-up) and a long one (M + N), so
    start-up cancels; the steps measured are M + 1 .. M + N."""
    lines = ["| net, batch | method, order | last level | steps measured (after the warm-up) | L1 data misses per "
             "batch | last-level data misses per batch | DRAM bytes per batch (misses x 64 B) | instructions per "
             "batch |", "|---" * 8 + "|"]
    for (sizes, batch, method, order, ll, steps, base), per in sorted(
            cachegrind_points().items(),
            key=lambda kv: (len(kv[0][0]), -kv[0][4], kv[0][5], -kv[0][6], kv[0][2] == "bp")):
        measured = f"{base + 1}" if steps == 1 else f"{base + 1}-{base + steps}"
        lines.append(f"| {hidden(list(sizes))}, B {batch} | {'FF' if method == 'ff' else 'backprop'} {order} | "
                     f"{ll} MB | {measured} | {per['D1_misses']:,.0f} | {per['LL_misses']:,.0f} | "
                     f"{per['dram_bytes']:,.0f} | {per['instructions']:,.0f} |")
    return "\n".join(lines)


CG_PAIRS = (("batch", "batch"), ("layer-update", "layer-update"), ("layer-major", "layer-update"))
NO_DRAM = 1 << 16          # bytes per batch: below this for both methods, no DRAM traffic to compare


def cachegrind_compare_table():
    """FF / backprop per batch, like order with like: ByteDMD (the optimiser as the CPU runs
    it, and fused) beside Cachegrind's L1 misses and DRAM bytes at each last-level size."""
    rows = cachegrind_points(checks=False)
    bytedmd = {(tuple(q["layer_sizes"]), q["batch_size"], q["optimizer_form"]): q
               for q in dm_points("schedules") + dm_points("schedules_forms")
               if q["recipe"] == "baseline" and "optimizer_form" in q}
    nets = sorted({(k[0], k[1]) for k in rows}, key=lambda n: len(n[0]))
    sizes_mb = sorted({k[4] for k in rows})
    lines = ["| net, batch | FF order / BP order | ByteDMD, CPU optimiser (fused) | Cachegrind L1 data misses, "
             "32 MB | Cachegrind DRAM bytes, last level " + " / ".join(f"{mb}" for mb in sizes_mb) + " MB |",
             "|---" * 5 + "|"]
    for net in nets:
        for a, b in CG_PAIRS:
            ff_rows = {k[4]: v for k, v in rows.items() if k[:4] == (*net, "ff", a)}
            bp_rows = {k[4]: v for k, v in rows.items() if k[:4] == (*net, "bp", b)}
            if 32 not in ff_rows or 32 not in bp_rows:
                continue
            dmd = []
            for form in ("cpu", "fused"):
                q = bytedmd.get((*net, form))
                dmd.append(f"{q[a]['per_batch'] / q['bp'][b]['per_batch']:.2f}" if q and a in q else "n/a")
            cells = []
            for mb in sizes_mb:
                f, g = ff_rows.get(mb), bp_rows.get(mb)
                if f is None or g is None:
                    cells.append("-")
                elif max(f["dram_bytes"], g["dram_bytes"]) < NO_DRAM:
                    cells.append("none")
                else:
                    cells.append(f"{f['dram_bytes'] / g['dram_bytes']:.2f}")
            lines.append(f"| {hidden(list(net[0]))}, B {net[1]} | FF {a} / BP {b} | {dmd[0]} ({dmd[1]}) | "
                         f"{ff_rows[32]['D1_misses'] / bp_rows[32]['D1_misses']:.2f} | {' / '.join(cells)} |")
    return "\n".join(lines)


def megabytes(xs) -> str:
    return " / ".join("-" if x is None else f"{x / 1e6:.1f}" for x in xs)


def saved(xs) -> str:
    """What the best of the orders after the first (batch order) saves against it."""
    best = min((x for x in xs[1:] if x is not None), default=None)
    return "-" if xs[0] is None or best is None else f"{100 * (1 - best / xs[0]):.0f}%"


def cachegrind_orders_table():
    """Cachegrind's DRAM bytes per batch (MB) by last-level size: each method in each order,
    what each exact order saves against batch order, and best against best."""
    rows = cachegrind_points(checks=False)
    lines = ["| net, batch | last level | FF batch / layer-update / layer-major (MB) | backprop batch / "
             "layer-update (MB) | FF saves by its best order | backprop saves by layer-update | FF best / "
             "backprop best |", "|---" * 7 + "|"]
    for net, ll in sorted({(k[:2], k[4]) for k in rows}, key=lambda n: (len(n[0][0]), -n[1])):
        got = {k[2:4]: v["dram_bytes"] for k, v in rows.items() if k[:2] == net and k[4] == ll}
        ff_orders = [got.get(("ff", o)) for o in ("batch", "layer-update", "layer-major")]
        bp_orders = [got.get(("bp", o)) for o in ("batch", "layer-update")]
        ff_best, bp_best = (min((x for x in xs if x is not None), default=None) for xs in (ff_orders, bp_orders))
        if max(b or 0 for b in ff_orders + bp_orders) < NO_DRAM:
            cells = ["none (below 64 KB)"] * 2 + ["-"] * 3
        else:
            cells = [megabytes(ff_orders), megabytes(bp_orders), saved(ff_orders), saved(bp_orders),
                     "-" if ff_best is None or bp_best is None else f"{ff_best / bp_best:.2f}"]
        lines.append(f"| {hidden(list(net[0]))}, B {net[1]} | {ll} MB | {' | '.join(cells)} |")
    return "\n".join(lines)


def dm_form(group, form):
    return [p for p in dm_points(group) if p.get("optimizer_form", "device") == form]


KINDS = ("weights", "optimizer", "grads", "activations", "data")


def data_movement_kinds_table():
    """Where the cost goes (batch order, fused optimiser): share of each kind of buffer and
    of each layer, FF and backprop."""
    lines = ["| net, batch, recipe | method | " + " | ".join(KINDS) + " | per layer (0, 1, ...; head or output last) |",
             "|---" * (3 + len(KINDS)) + "|"]
    for p in dm_form("main", "fused"):
        for method in ("ff", "bp"):
            m = p[method]
            total = m["total"]
            kinds = " | ".join(f"{100 * m['per_kind'].get(k, 0) / total:.0f}%" for k in KINDS)
            layers = sorted((k for k in m["per_layer"] if k != "None"), key=lambda k: (not k.isdigit(), k.zfill(3)))
            per_layer = " / ".join(f"{100 * m['per_layer'][k] / total:.0f}" for k in layers)
            lines.append(f"| {net_label(p)} | {'FF' if method == 'ff' else 'backprop'} | {kinds} | {per_layer} |")
    return "\n".join(lines)


def data_movement_sweep_table():
    """FF / backprop per step as depth, width and batch move (both in batch order; the
    optimiser's form as recorded)."""
    lines = ["| sweep | net, batch | optimiser form | baseline FF / BP | hinton FF / BP | baseline without update "
             "| hinton without update |", "|---" * 7 + "|"]
    for name in ("depth", "width", "batch"):
        points = dm_points(f"sweep_{name}")
        keys = list(dict.fromkeys((tuple(p["layer_sizes"]), p["batch_size"]) for p in points))
        for sizes, batch in keys:
            by = {p["recipe"]: p for p in points if (tuple(p["layer_sizes"]), p["batch_size"]) == (sizes, batch)}
            cells = [f"{by[r]['ff_over_bp']:.2f}" if r in by else "n/a" for r in ("baseline", "hinton")]
            cells += [f"{by[r]['not_update_ff_over_bp']:.2f}" if r in by else "n/a" for r in ("baseline", "hinton")]
            form = next(iter(by.values())).get("optimizer_form", "device")
            lines.append(f"| {name} | {hidden(list(sizes))}, B {batch} | {form} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def data_movement_run_table():
    """Per training run to FF's test error: each method's ByteDMD per step (its own optimiser,
    batch order) times its steps, with backprop's epochs as measured, for each optimiser form."""
    lines = ["| net | FF run: epochs x steps, test error | backprop run: first epoch at or below it | "
             "FF step / this backprop's step, fused / cpu / device | FF / BP per run, fused / cpu / device |",
             "|---" * 5 + "|"]
    points = {(tuple(p["layer_sizes"]), p["batch_size"], p["recipe"], p.get("optimizer_form")): p
              for p in dm_points("main")}
    for path in finished_backprop():
        b = read_json(path)
        sizes, bp_batch = tuple(b["config"]["layer_sizes"]), b["config"]["batch_size"]
        group, entry, _, ff_recipe = FF_REFERENCE[sizes]
        label, ff_err, ff_epochs, ff_steps = ff_reference(sizes)
        ff_batch = -(-ff.N_TRAIN // ff_steps)
        # the traces price backprop with the FF recipe's optimiser: Adam in baseline, SGD in hinton
        bp_recipe = "baseline" if b["config"]["optimizer"] == "adam" else "hinton"
        per_step = []
        for form in ("fused", "cpu", "device"):
            ff_point, bp_point = points.get((sizes, ff_batch, ff_recipe, form)), points.get((sizes, bp_batch, bp_recipe, form))
            if ff_point and bp_point:
                per_step.append(ff_point["ff"]["total"] / bp_point["bp"]["total"])
        if not per_step:
            continue
        errs = b["history"]["test_error"]
        reached = next((i + 1 for i, e in enumerate(errs) if e <= ff_err + 1e-9), None)
        bp_steps = -(-ff.N_TRAIN // bp_batch)
        epochs = reached or len(errs)
        runs = " / ".join(f"{r * ff_epochs * ff_steps / (epochs * bp_steps):.1f}" for r in per_step)
        if reached:
            bp, run = f"`{Path(path).stem}` ({b['config']['optimizer']}): epoch {reached}", runs
        else:
            bp = f"`{Path(path).stem}` ({b['config']['optimizer']}): not in {len(errs)} epochs (best {min(errs):.2f}%)"
            run = f"no equal-error run; over its {len(errs)} epochs: {runs}"
        lines.append(f"| {hidden(list(sizes))} ({ff_recipe} FF) | {label}: {ff_epochs} x {ff_steps}, {ff_err:.2f}% "
                     f"| {bp} | {' / '.join(f'{r:.2f}' for r in per_step)} | {run} |")
    return "\n".join(lines)


def data_movement_test_table():
    """Test time: one call of each read-out on 1000 images, each at its best chunk size, over
    backprop's forward pass at its best (and both at the module's PREDICT_CHUNK)."""
    lines = ["| net, recipe | FF 10-label goodness / BP forward, best chunks (FF's, BP's) | the same at "
             "1000-image chunks | FF softmax head / BP forward, best chunks | the same at 1000 |", "|---" * 5 + "|"]
    for p in dm_points("test_time"):
        if "per_chunk" not in p.get("bp", {}):
            continue
        g, b = p["ff_goodness"], p["bp"]
        head = (f"{p['ff_softmax_over_bp']:.2f} ({p['ff_softmax']['best_chunk']}) | {p['ff_softmax_over_bp_at_predict_chunk']:.2f}"
                if "ff_softmax" in p else "n/a (no head) | n/a")
        lines.append(f"| {hidden(p['layer_sizes'])}, {p['recipe']} | {p['ff_goodness_over_bp']:.1f} ({g['best_chunk']}, "
                     f"{b['best_chunk']}) | {p['ff_goodness_over_bp_at_predict_chunk']:.1f} | {head} |")
    return "\n".join(lines)


def summary_table():
    """The README's results at a glance, each row from its JSON, linking to its section:
    the paper-scale rows first, then the headline, the 500-epoch runs, backprop, speed and
    data movement."""
    rows = []
    for group, entry in paper_scale_entries():
        ms = load(entry, group)
        cfg = ms[0]["config"]
        mode = ms[0]["predict_mode"]
        extra = extra_flags(cfg) if group == "hinton" else ""      # the baseline's list is in its table
        rows.append((f"{hidden(cfg['layer_sizes'])}, {cfg['n_epochs']} epochs, {cfg['recipe']} recipe"
                     f"{f' `{extra}`' if extra else ''} (`{group}/{entry}`)",
                     f"{error_pct([m['prediction_modes'][mode] for m in ms])}% test error, `{mode}` "
                     f"read-out, seed{'s' if len(ms) > 1 else ''} {', '.join(str(m['config']['seed']) for m in ms)}",
                     "#paper-scale"))
    (head,) = [read_json(p) for p in existing("headline")]
    rows.append(("784-500-500, 30 epochs, the baseline recipe (headline)",
                 f"{100 * head['test_accuracy']:.2f}% test accuracy, seed 0", "#headline-run"))
    best = load("best_2x500")
    if best:
        rows.append(("best 784-500-500 in 30 epochs (`--logit-scale D --threshold 1 --lr-schedule cooldown`)",
                     f"{mean_std([m['test_accuracy'] for m in best])}% test accuracy, seeds 0-2",
                     "RESULTS.md#5-the-best-784-500-500-in-30-epochs"))
    long_runs = [(entry, load(entry, "jitter_500")) for entry in JITTER_500_ENTRIES]
    long_runs = [(entry, ms[0]) for entry, ms in long_runs if ms]
    if long_runs:
        rows.append(("784-500-500, 500 epochs, with and without jitter (`jitter_500/*`)",
                     "; ".join(f"{entry} {100 * (1 - m['prediction_modes'][m['predict_mode']]):.2f}%"
                               for entry, m in long_runs) + " test error, seed 0",
                     "RESULTS.md#4-jitter-500-epochs"))
    groups = {}
    for path in finished_backprop():
        b = read_json(path)
        cfg = b["config"]
        key = (tuple(cfg["layer_sizes"]), len(b["history"]["test_error"]), cfg["optimizer"], cfg["lr_schedule"])
        groups.setdefault(key, []).append(b)
    for (sizes, n_epochs, optimizer, schedule), bs in groups.items():
        label, ff_err, _, _ = ff_reference(list(sizes))
        reached = [next((i + 1 for i, e in enumerate(b["history"]["test_error"]) if e <= ff_err + 1e-9), None)
                   for b in bs]
        seeds = ", ".join(str(b["config"]["seed"]) for b in bs)
        when = ("first reached in epoch " + " / ".join(str(r) if r else "never" for r in reached)
                if any(reached) else "not reached")
        rows.append((f"backprop baseline, {hidden(list(sizes))}, {n_epochs} epochs ({optimizer}, {schedule} lr)",
                     f"{mean_std([b['history']['test_error'][-1] for b in bs], scale=1)}% test error, "
                     f"seed{'s' if len(bs) > 1 else ''} {seeds}; FF's {ff_err:.2f}% {when}",
                     "#does-ff-move-less-data-than-backprop"))
    for b in sorted((read_json(p) for p in existing("bench") if Path(p).name.startswith("bench_")), key=lambda b: ff.n_params(b["layer_sizes"])):
        rows.append((f"speed, {'-'.join(map(str, b['layer_sizes']))} epoch ({b['machine']['cpu']})",
                     f"{b['ratio_module_over_floor']:.2f}x this machine's floor, "
                     f"{b['ratio_reference_over_module']:.2f}x faster than plain NumPy", "#performance"))
    fused = dm_form("schedules", "fused")
    if fused:
        coded = [q["batch"]["ff_over_bp"] for q in fused]
        best = [q["best_over_best"] for q in fused]
        rows.append(("data movement per batch, FF / backprop (ByteDMD, fused optimiser)",
                     f"{min(coded):.2f}-{max(coded):.2f} both in batch order; "
                     f"{min(best):.2f}-{max(best):.2f} each in its best exact order",
                     "#does-ff-move-less-data-than-backprop"))
    net, ll = ((784, 2000, 2000, 2000, 2000), 100), 128     # the point where a layer fits, the net not
    cg = cachegrind_points(checks=False)
    ff_best, bp_best = (min((v["dram_bytes"] for k, v in cg.items() if k[:3] == (*net, m) and k[4] == ll),
                            default=None) for m in ("ff", "bp"))
    if ff_best and bp_best:
        rows.append((f"DRAM bytes per batch, FF / backprop, {hidden(list(net[0]))} (Cachegrind, {ll} MB last level)",
                     f"{ff_best / bp_best:.2f} each in its best exact order "
                     f"({ff_best / 1e6:.1f} MB against {bp_best / 1e6:.1f} MB)",
                     "#does-ff-move-less-data-than-backprop"))
    lines = ["| what | result | details |", "|---|---|---|"]
    lines += [f"| {what} | {result} | [details]({link}) |" for what, result, link in rows]
    return "\n".join(lines)


JITTER_500_ENTRIES = ("baseline", "baseline_jitter2", "hinton", "hinton_jitter1")
JITTER_500_EPOCHS = (30, 100, 250, 500)


def jitter_500_table():
    """results/jitter_500/*.json: 784-500-500 for 500 epochs, both recipes, with and without
    jitter: the final test error of every read-out (10,000 images), and along the way the
    headline read-out's accuracy on the 2,000 scored training images and error on the first
    2,000 test images, and the dead units."""
    at = " / ".join(map(str, JITTER_500_EPOCHS))
    lines = [f"| run | recipe, jitter | read-out | test error, 10K (%) | every read-out (%) | scored train "
             f"acc. (%) at epoch {at} | test error, 2K (%) at epoch {at} | dead units per layer at epoch "
             f"{at} | train h |", "|---" * 9 + "|"]
    for entry in JITTER_500_ENTRIES:
        for m in load(entry, "jitter_500"):
            cfg, h = m["config"], m["history"]
            mode = m["predict_mode"]
            idx = [e - 1 for e in JITTER_500_EPOCHS if e <= len(h["epoch"])]
            modes = ", ".join(f"{k} {100 * (1 - v):.2f}" for k, v in m["prediction_modes"].items())
            lines.append(f"| `jitter_500/{entry}` | {cfg['recipe']}, {cfg['jitter'] or 'none'} | `{mode}` | "
                         f"{100 * (1 - m['prediction_modes'][mode]):.2f} | {modes} | "
                         + " / ".join(f"{100 * h['train_acc'][i]:.2f}" for i in idx) + " | "
                         + " / ".join(f"{100 * (1 - h['test_acc'][i]):.2f}" for i in idx) + " | "
                         + " / ".join("-".join(map(str, h["dead_units"][i])) for i in idx)
                         + f" | {m['train_seconds'] / 3600:.2f} |")
    return "\n".join(lines)


def findings_sources(key):
    return lambda: [p for name in FINDINGS_TABLES[key] for p in existing("findings", [name])]


# name -> (render, the result files it reads); a table is rendered when it has any
TABLES = {
    "summary": (summary_table, lambda: existing("headline")),
    **{key: (lambda key=key: table(key), findings_sources(key)) for key in FINDINGS_TABLES},
    "headline": (headline_table, lambda: existing("headline")),
    "paper_scale": (paper_scale_table, lambda: [r.out for g, e in paper_scale_entries()
                                                for r in runs_of(g, e) if done(r)]),
    "hinton": (hinton_table, lambda: existing("hinton")),
    "jitter_500": (jitter_500_table, lambda: existing("jitter_500")),
    "ablation": (ablation_table, lambda: existing("ablation")),
    "bench": (bench_table, lambda: [p for p in existing("bench") if Path(p).name.startswith("bench_")]),
    "ab": (ab_table, lambda: [p for p in existing("bench") if not Path(p).name.startswith("bench_")]),
    "backprop": (backprop_table, lambda: finished_backprop()),
    "data_movement": (data_movement_table, lambda: existing("data_movement", ["main"])),
    "data_movement_forms": (data_movement_forms_table, lambda: existing("data_movement", ["main"])),
    "data_movement_kinds": (data_movement_kinds_table, lambda: existing("data_movement", ["main"])),
    "data_movement_sweeps": (data_movement_sweep_table, lambda: existing("data_movement", ["sweep_depth"])),
    "data_movement_run": (data_movement_run_table, lambda: finished_backprop()),
    "crossing": (crossing_table, lambda: finished_backprop()),
    "cachegrind": (cachegrind_table, lambda: existing("cachegrind")),
    "cachegrind_compare": (cachegrind_compare_table, lambda: existing("cachegrind")),
    "cachegrind_orders": (cachegrind_orders_table, lambda: existing("cachegrind")),
    "data_movement_test": (data_movement_test_table, lambda: existing("data_movement", ["test_time"])),
}


# printed by --tables but kept out of the README (too long for a five-minute read)
OTHER_TABLES = {"tuning": (tuning_table, lambda: existing("tuning_4x500"))}


def render_tables() -> str:
    out = []
    for name, (render, sources) in {**TABLES, **OTHER_TABLES}.items():
        if sources():
            out.append(f"<!-- table {name} -->\n{render()}")
        else:
            out.append(f"<!-- table {name}: no results yet -->")
    return "\n\n".join(out)


DOCS = (ROOT / "README.md", ROOT / "RESULTS.md")     # where the tables are printed


def update_readme(paths=DOCS) -> list:
    """Replace each block of the README and RESULTS.md that starts with a `<!-- table NAME -->`
    line (and runs to the next blank line) by the table rendered now. Returns the names."""
    return [name for path in paths for name in update_doc(path)]


def update_doc(path) -> list:
    lines, out, names, i = path.read_text().split("\n"), [], [], 0
    while i < len(lines):
        out.append(lines[i])
        name = lines[i][len("<!-- table "):-len(" -->")] if lines[i].startswith("<!-- table ") else None
        i += 1
        if name in TABLES and TABLES[name][1]():
            while i < len(lines) and lines[i].strip():
                i += 1
            out.append(TABLES[name][0]())
            names.append(name)
    ff.atomic_write_bytes(path, "\n".join(out).encode())
    return names

