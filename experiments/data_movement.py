"""Does Forward-Forward move less data than backprop? ByteDMD per training step (issue 16).

    python3 experiments/data_movement.py                      # everything -> results/data_movement/
    python3 experiments/data_movement.py --only main          # the three headline points
    python3 experiments/data_movement.py --only test_time     # test-time read-outs
    python3 experiments/data_movement.py --only schedules     # FF's locality schedules
    python3 experiments/data_movement.py --only schedules_depth   # ... at 2, 4, 8 layers of 2000
    python3 experiments/data_movement.py --layer-sizes 784,20,20 --batch-size 8 --recipe baseline \
        --json /tmp/point.json                               # one point

Each point traces the code that trains: ff.train_step for Forward-Forward and
experiments/backprop.py's backprop_step for the baseline, run on recording arrays
(benchmarks/recording.py) for --steps consecutive steps on fresh random batches (the
trace does not depend on the pixel values). The backprop net has the same hidden layers
plus a 10-way softmax output, and the FF recipe's optimiser (Adam for baseline, smoothed
SGD with its weight cost for hinton). Prices come from benchmarks/dmd.py:
  array   each buffer version is one block, read once per op: for a GEMM the
          ideal-tiling lower bound (every input byte read once);
  tiled   each GEMM run as T x T tiles against the same stack (--tiles), so the
          ratio's sensitivity to that assumption shows.
A step is priced in steady state: the first step that costs exactly what the one before
it cost (the first steps are cold). Breakdowns: per buffer kind (weights, optimizer,
grads, data, activations, peer_means), per layer ("head" for the softmax head; an
activation belongs to the deepest layer among the inputs of the op that made it), per op;
peak live bytes; the optimiser update ("update": every step of the state's optimiser
objects, the head's included, observed by wrapping them) apart from the rest. The
weights of a recorded step equal those of a plain NumPy step (tests/test_recording.py).
On recording arrays Adam runs in its device form (Adam.chunk = 0: one chunk per layer,
as on a GPU) without its subnormal guard (Adam.guard_every = 0); the weights are the same.

Test time (--only test_time): one call of the module's own read-outs on PREDICT_CHUNK host
images, in steady state: FF's 10-label goodness (ff.label_goodness), FF's softmax head
(ff.head_logits, hinton) and backprop's forward pass (bp.predict), results to the host.
"""

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))                      # experiments/: the backprop baseline
sys.path.insert(0, str(HERE.parent))               # the module
sys.path.insert(0, str(HERE.parent / "benchmarks"))    # the instruments
import dmd  # noqa: E402
import ff_label_in_input as ff  # noqa: E402
from recording import RecArray, Recorder  # noqa: E402

import backprop as bp  # noqa: E402

MAIN_POINTS = [("784,500,500", 128, "baseline"), ("784,2000,2000,2000,2000", 100, "baseline"),
               ("784,2000,2000,2000,2000", 100, "hinton")]
MAIN_TILES = (512, 128, 32)
TEST_POINTS = [("784,500,500", "baseline"), ("784,2000,2000,2000,2000", "baseline"),
               ("784,2000,2000,2000,2000", "hinton")]
SWEEPS = {   # name -> [(layer sizes, batch)], baseline and hinton recipes each
    "depth": [("784," + ",".join(["2000"] * n), 100) for n in (2, 4, 8)],
    "width": [("784," + ",".join([str(w)] * 4), 100) for w in (500, 1000, 1500, 2000)],
    "batch": [("784,2000,2000,2000,2000", b) for b in (64, 128, 256, 512, 1024)],
}


# ---------------------------------------------------------------- states on recording arrays

def tag_layers(rec, flat, sizes, kind):
    """Wrap a flat parameter-shaped vector and make each layer's [W; b] its own block."""
    x = rec.wrap(flat, kind)
    for l, view in enumerate(ff.layer_views(x, sizes)):
        rec.tag(view, kind, l)
    return x


# How the optimiser's update is priced (its numbers are the same in every form):
#   fused   one pass per parameter array (a layer's [W; b]): read p, grad and the state
#           once, write p and the state once, as a fused GPU or C kernel does;
#   cpu     the code that trains on this CPU: Adam in ADAM_CHUNK-element chunks, each
#           chunk's slices priced where they lie in their blocks;
#   device  the module's GPU form: Adam one whole layer per pass (10 passes and a scratch
#           the size of the layer), smoothed SGD as on the CPU.
FORMS = ("fused", "cpu", "device")
STATE = {ff.Adam: ("m", "v"), ff.SmoothedSGD: ("avg_grad",)}


class Observed:
    """The state's optimiser, its every step's events listed in rec.update_spans as
    (first, end) event indices, in the given form: the tracer wraps the object, the module
    stays as it is. Arrays made inside a step (Adam's scratch) count as optimiser."""
    def __init__(self, opt, rec, form):
        self.opt, self.rec, self.form = opt, rec, form

    def step(self, params, grads, parts, t=None):
        first = len(self.rec.trace)
        if self.form == "fused":
            self.fused_step(params, grads, parts, t)
        else:
            kind, self.rec.new_kind = self.rec.new_kind, "optimizer"
            try:
                self.opt.step(params, grads, parts, t)
            finally:
                self.rec.new_kind = kind
        self.rec.update_spans.append((first, len(self.rec.trace)))

    def fused_step(self, params, grads, parts, t):
        """The real step on the ndarrays, recorded as one fused event per Part."""
        names = STATE[type(self.opt)]
        raw = dataclasses.replace(self.opt, **{k: getattr(self.opt, k).a for k in names})
        t = self.opt.t + 1 if t is None else t
        for part in parts:
            rows = slice(part.start, part.stop)
            state = [getattr(self.opt, k)[rows] for k in names]
            self.rec.fused(f"{type(self.opt).__name__}.step fused", [params[rows], grads[rows], *state],
                           [params[rows], *state], lambda part=part: raw.step(params.a, grads.a, [part], t))
        self.opt.t = raw.t

    def __getattr__(self, name):                 # t, and the rest of the optimiser's fields
        return getattr(self.opt, name)


def recording_optimizer(rec, opt, arrays, form="fused"):
    """opt on recording arrays (arrays: its array fields), observed in `form`. Adam runs
    without its subnormal guard, so that steps repeat exactly (layer-major's groups of 8
    would otherwise alternate with and without it); in the device form one chunk a layer."""
    if form not in FORMS:
        raise ValueError(f"optimizer form {form!r}: one of {', '.join(FORMS)}")
    if isinstance(opt, ff.Adam):
        arrays = {**arrays, "guard_every": 0, "chunk": 0 if form == "device" else ff.ADAM_CHUNK}
    return Observed(dataclasses.replace(opt, **arrays), rec, form)


def ff_to_recording(rec, state, form="fused"):
    """The FF TrainState with every array on recording arrays, tagged by kind and layer."""
    net, sizes = state.net, state.net.layer_sizes
    params = tag_layers(rec, net.params, sizes, "weights")
    head = None if net.head is None else rec.wrap(net.head, "weights", "head")
    opt = recording_optimizer(rec, state.opt, optimizer_arrays(rec, state.opt, sizes), form)
    head_opt = state.head_opt and recording_optimizer(
        rec, state.head_opt, {"avg_grad": rec.wrap(state.head_opt.avg_grad, "optimizer", "head")}, form)
    peer = [rec.wrap(r, "peer_means", l) for l, r in enumerate(state.peer_means)]
    return dataclasses.replace(state, net=ff.Net(sizes, params, net.input_norm, head), opt=opt,
                               head_opt=head_opt, peer_means=peer)


def bp_to_recording(rec, state, form="fused"):
    """The backprop BPState on recording arrays, tagged by kind and layer."""
    params = tag_layers(rec, state.params, state.sizes, "weights")
    opt = recording_optimizer(rec, state.opt, optimizer_arrays(rec, state.opt, state.sizes), form)
    return dataclasses.replace(state, params=params, opt=opt)      # Wb: views of the new params


def optimizer_arrays(rec, opt, sizes) -> dict:
    """The optimiser's parameter-shaped arrays on recording arrays, tagged by layer."""
    names = ("m", "v") if isinstance(opt, ff.Adam) else ("avg_grad",)
    return {k: tag_layers(rec, getattr(opt, k), sizes, "optimizer") for k in names}


def state_arrays(obj) -> list:
    """Every RecArray held by a state (its weights, optimiser, peer means), for live_out."""
    out = []
    for v in (vars(obj).values() if dataclasses.is_dataclass(obj) else obj):
        if isinstance(v, RecArray):
            out.append(v)
        elif isinstance(v, Observed):
            out += state_arrays(v.opt)
        elif dataclasses.is_dataclass(v) or isinstance(v, list):
            out += state_arrays(v)
    return out


# ---------------------------------------------------------------- the two steps, recorded

def ff_config(layer_sizes, batch_size, recipe, schedule="batch"):
    return ff.parse_args(["--recipe", recipe, "--layer-sizes", layer_sizes, "--batch-size",
                          str(batch_size), "--schedule", schedule, "--quiet"])[1]


def bp_config(cfg):
    """The backprop baseline with the FF recipe's hidden layers, batch and optimiser."""
    return bp.BPConfig(seed=cfg.seed, layer_sizes=list(cfg.layer_sizes), batch_size=cfg.batch_size,
                       optimizer=cfg.optimizer, lr=cfg.lr, smoothing=cfg.smoothing,
                       weight_cost=cfg.weight_cost)


def random_batch(rng, cfg):
    """The fields of an ff.Batch: images (B, 784) float32, labels (B,) int64 and the
    negatives' draw (offsets for uniform negatives, else uniforms), as train_epoch's."""
    B = cfg.batch_size
    x = rng.random((B, ff.N_PIXELS), dtype=np.float32)
    y = rng.integers(0, ff.N_CLASSES, B)
    if cfg.neg_sampling == "uniform":
        return x, y, rng.integers(1, ff.N_CLASSES, B), None
    return x, y, None, rng.random(B)


def run_ff(cfg, n_steps, seed=0, rec=None, form="fused"):
    """n_steps of ff.train_step on fresh random batches: on recording arrays of rec (the
    optimiser priced in `form`), or plain NumPy if rec is None (the twin the tests compare
    with). Returns the state. With --schedule layer-major a step is one ff.train_step call
    on cfg.group_batches batches."""
    rng, state = np.random.default_rng(seed), ff.init_state(cfg)
    grads = np.zeros_like(state.net.params)
    if rec is not None:
        state, grads = ff_to_recording(rec, state, form), tag_layers(rec, grads, cfg.layer_sizes, "grads")
    k = ff.group_size(cfg)
    for _ in range(n_steps):
        draws = [random_batch(rng, cfg) for _ in range(k)]
        if rec is not None:
            rec.mark()
            draws = [[None if a is None else rec.wrap(a) for a in d] for d in draws]
        ff.train_step(state, cfg, [ff.Batch(*d) for d in draws], [cfg.lr] * k, grads)
    return state


def run_bp(cfg, n_steps, seed=0, rec=None, form="fused", schedule="batch"):
    """n_steps of backprop_step, as run_ff, in its order `schedule` (batch, or
    layer-update); cfg is the FF config (see bp_config)."""
    bcfg = bp_config(cfg)
    rng, state = np.random.default_rng(seed), bp.init_state(bcfg)
    grads = np.zeros_like(state.params)
    if rec is not None:
        state, grads = bp_to_recording(rec, state, form), tag_layers(rec, grads, state.sizes, "grads")
    for _ in range(n_steps):
        x, y, *_ = random_batch(rng, cfg)
        if rec is not None:
            rec.mark()
            x, y = rec.wrap(x), rec.wrap(y)
        bp.backprop_step(state, x, y, bcfg.lr, grads, schedule)
    return state


def record(run, cfg, n_steps, seed=0, **kwargs):
    """A recorded run: (recorder, live_out = the final state's blocks, state). The events
    of every optimiser step (the head's too) are listed in rec.update_spans as (first, end)
    event indices, to split a step into update and rest (see Observed); a run with no
    optimiser step raises. kwargs go to run (form, schedule)."""
    rec = Recorder()
    rec.update_spans = []
    state = run(cfg, n_steps, seed, rec, **kwargs)
    if not rec.update_spans:
        raise RuntimeError("no optimiser step was observed: the update would price as zero")
    return rec, rec.keys(*state_arrays(state)), state


def priced_step(rec, live_out, tiles=()) -> dict:
    """The steady-state step under the array model, and its total under each tile size."""
    i, cost = dmd.steady_state(rec.trace, rec.marks, rec.tags, live_out)
    lo = rec.marks[i if i is not None else -1]
    update = sum(c for k, c in enumerate(cost.per_event, lo)
                 if any(a <= k < b for a, b in rec.update_spans))
    out = {"steady_step": i, **cost.as_dict(), "update": update, "not_update": cost.total - update,
           "tiled": {}}
    for T in tiles:
        j, tiled = dmd.steady_state(rec.trace, rec.marks, rec.tags, live_out, tile=T)
        out["tiled"][str(T)] = {"steady_step": j, "total": tiled.total}
    return out


def measure(layer_sizes, batch_size, recipe, n_steps=4, tiles=(), seed=0, form="fused",
            bp_schedule="batch") -> dict:
    """FF and backprop ByteDMD per training step at one size and recipe, FF in batch order,
    backprop in `bp_schedule`, the optimiser priced in `form`."""
    cfg = ff_config(layer_sizes, batch_size, recipe)
    point = {"layer_sizes": cfg.layer_sizes, "batch_size": batch_size, "recipe": recipe,
             "optimizer_form": form, "ff_schedule": "batch", "bp_schedule": bp_schedule}
    for name, run, kwargs in (("ff", run_ff, {"form": form}),
                              ("bp", run_bp, {"form": form, "schedule": bp_schedule})):
        t0 = time.perf_counter()
        rec, live_out, _ = record(run, cfg, n_steps, seed, **kwargs)
        t1 = time.perf_counter()
        point[name] = priced_step(rec, live_out, tiles)
        point[name]["record_s"] = round(t1 - t0, 2)
        point[name]["price_s"] = round(time.perf_counter() - t1, 2)
    point["ff_over_bp"] = point["ff"]["total"] / point["bp"]["total"]
    point["ff_over_bp_tiled"] = {T: point["ff"]["tiled"][T]["total"] / point["bp"]["tiled"][T]["total"]
                                 for T in point["ff"]["tiled"]}
    point["not_update_ff_over_bp"] = point["ff"]["not_update"] / point["bp"]["not_update"]
    point["peak_live_ff_over_bp"] = point["ff"]["peak_live_bytes"] / point["bp"]["peak_live_bytes"]
    return point


def readout_cost(cfg, which, n_images, chunk, n_calls=3, seed=0) -> dict:
    """Steady-state ByteDMD of one test-time call on n_images host images, `chunk` images
    per pass: FF's 10-label goodness read-out (ff.label_goodness, every layer), FF's
    softmax head (ff.head_logits, a neutral-label pass) or backprop's forward pass
    (bp.predict), each bringing its result back to the host."""
    rec, rng = Recorder(), np.random.default_rng(seed)
    if which == "bp":
        state = bp_to_recording(rec, bp.init_state(bp_config(cfg)))
    else:
        state = ff_to_recording(rec, ff.init_state(cfg))
    for _ in range(n_calls):
        x = rng.random((n_images, ff.N_PIXELS), dtype=np.float32)
        rec.mark()
        if which == "bp":
            bp.predict(state.Wb, rec.wrap(x), chunk).get()
        elif which == "ff_goodness":
            ff.label_goodness(state.net, x, chunk_size=chunk)
        else:
            ff.head_logits(state.net, x, chunk_size=chunk)
    i, cost = dmd.steady_state(rec.trace, rec.marks, rec.tags, rec.keys(*state_arrays(state)))
    return {"steady_step": i, "chunk": chunk, **cost.as_dict()}


TEST_CHUNKS = (10, 25, 50, 100, 250, 500, 1000)


def measure_test(layer_sizes, recipe, n_images=ff.PREDICT_CHUNK) -> dict:
    """Test-time ByteDMD per call on n_images images, at every chunk size of TEST_CHUNKS,
    and each read-out at its own best chunk over backprop's forward at its best chunk
    (and both at the module's PREDICT_CHUNK)."""
    cfg = ff_config(layer_sizes, 100, recipe)
    point = {"layer_sizes": cfg.layer_sizes, "recipe": recipe, "n_images": n_images, "chunks": TEST_CHUNKS}
    for which in ("ff_goodness", "ff_softmax", "bp"):
        if which != "ff_softmax" or cfg.softmax_head:
            sweep = [readout_cost(cfg, which, n_images, c) for c in TEST_CHUNKS]
            best = min(sweep, key=lambda c: c["total"])
            point[which] = {"per_chunk": {str(c["chunk"]): c["total"] for c in sweep},
                            "best_chunk": best["chunk"], "total": best["total"],
                            "at_predict_chunk": sweep[TEST_CHUNKS.index(ff.PREDICT_CHUNK)]["total"]}
    for which in ("ff_goodness", "ff_softmax"):
        if which in point:
            point[f"{which}_over_bp"] = point[which]["total"] / point["bp"]["total"]
            point[f"{which}_over_bp_at_predict_chunk"] = (point[which]["at_predict_chunk"]
                                                          / point["bp"]["at_predict_chunk"])
    return point


BP_ORDERS = ("batch", "layer-update")


def measure_schedules(layer_sizes, batch_size, recipe, n_steps=3, form="fused") -> dict:
    """ByteDMD per batch of every training order that gives the same weights: FF's
    (--schedule batch, layer-update, and layer-major where the recipe allows it) and
    backprop's (batch, layer-update), the optimiser priced in `form`. Each FF order's
    ff_over_bp is against backprop in the same order (layer-major against backprop's best,
    layer-update); ff_over_bp_best against backprop's best order."""
    point = {"layer_sizes": [int(v) for v in layer_sizes.split(",")], "batch_size": batch_size,
             "recipe": recipe, "optimizer_form": form, "bp": {}}
    plain = ff_config(layer_sizes, batch_size, recipe)
    for order in BP_ORDERS:
        rec, live_out, _ = record(run_bp, plain, n_steps, form=form, schedule=order)
        p = priced_step(rec, live_out)
        point["bp"][order] = {"per_batch": p["total"], "peak_live_bytes": p["peak_live_bytes"],
                              "per_kind_per_batch": p["per_kind"]}
    bp_best = min(point["bp"], key=lambda o: point["bp"][o]["per_batch"])
    point["bp_best"] = bp_best
    for schedule in ("batch", "layer-update", "layer-major"):
        needs_above = plain.softmax_head or plain.neg_sampling in ("hard", "softmax")
        if schedule == "layer-major" and needs_above:
            continue                                 # the negatives need the layers above
        cfg = ff_config(layer_sizes, batch_size, recipe, schedule)
        rec, live_out, _ = record(run_ff, cfg, n_steps, form=form)
        p = priced_step(rec, live_out)
        k = ff.group_size(cfg)
        against = schedule if schedule in BP_ORDERS else "layer-update"
        point[schedule] = {"batches_per_step": k, "per_batch": p["total"] / k,
                           "bp_order": against,
                           "ff_over_bp": p["total"] / k / point["bp"][against]["per_batch"],
                           "ff_over_bp_best": p["total"] / k / point["bp"][bp_best]["per_batch"],
                           "steady_step": p["steady_step"], "peak_live_bytes": p["peak_live_bytes"],
                           "per_kind_per_batch": {kd: v / k for kd, v in p["per_kind"].items()}}
    ff_orders = [o for o in ("batch", "layer-update", "layer-major") if o in point]
    point["ff_best"] = min(ff_orders, key=lambda o: point[o]["per_batch"])
    point["best_over_best"] = point[point["ff_best"]]["ff_over_bp_best"]
    return point


def line(p) -> str:
    """One fixed-width line per point."""
    sizes = "-".join(map(str, p["layer_sizes"]))
    tiled = " ".join(f"T{T}:{r:.2f}" for T, r in p["ff_over_bp_tiled"].items())
    return (f"{sizes:>28} B={p['batch_size']:<5} {p['recipe']:<8} {p['optimizer_form']:<6} "
            f"BP {p['bp_schedule']:<12} FF {p['ff']['total']:.3e}  "
            f"BP {p['bp']['total']:.3e}  FF/BP {p['ff_over_bp']:.2f}  no update "
            f"{p['not_update_ff_over_bp']:.2f}  peak FF/BP "
            f"{p['peak_live_ff_over_bp']:.2f}  {tiled}")


def write(path, payload):
    ff.atomic_write_bytes(path, (json.dumps(payload, indent=1) + "\n").encode())


GROUPS = ("main", "sweep_depth", "sweep_width", "sweep_batch", "test_time", "schedules",
          "schedules_forms", "schedules_depth")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=ff.HelpFormatter)
    p.add_argument("--only", choices=GROUPS, action="append",
                   help="this group only, written to results/data_movement/GROUP.json (repeat; "
                        "default: every group)")
    p.add_argument("--layer-sizes", type=ff.layer_sizes_arg,
                   help="one point instead of the groups, e.g. 784,500,500")
    p.add_argument("--batch-size", type=ff.positive_int, default=100, help="with --layer-sizes")
    p.add_argument("--recipe", choices=tuple(ff.RECIPES), default="baseline", help="with --layer-sizes")
    p.add_argument("--tiles", default="", help="tile sizes T for the tiled-GEMM model, e.g. 256,64 "
                   f"(the main group uses {','.join(map(str, MAIN_TILES))})")
    p.add_argument("--steps", type=ff.bounded(int, 2), default=4,
                   help="steps recorded per trace (steady state needs two equal ones)")
    p.add_argument("--optimizer-form", choices=FORMS, default="fused",
                   help="with --layer-sizes: how the update is priced (fused: one pass per layer "
                        "array; cpu: the chunked code this CPU runs; device: one whole-layer pass "
                        "per operation, the GPU code)")
    p.add_argument("--bp-schedule", choices=BP_ORDERS, default="batch",
                   help="with --layer-sizes: backprop's order (layer-update: each layer updated "
                        "as soon as backward has its gradient)")
    p.add_argument("--json", metavar="PATH", help="with --layer-sizes: write the point here")
    p.add_argument("--out-dir", default="results/data_movement", metavar="DIR",
                   help="where the groups' JSON goes (relative to the repository root)")
    return p


def run_group(group, tiles, steps):
    """The points of one group, each printed as it is measured."""
    results = []
    if group == "test_time":
        points = [(lambda s=s, r=r: measure_test(s, r)) for s, r in TEST_POINTS]
    elif group == "schedules":                       # every exact order, the fused optimiser
        points = [(lambda s=s, b=b, r=r: measure_schedules(s, b, r)) for s, b, r in MAIN_POINTS]
    elif group == "schedules_forms":                 # the same under the two other forms
        points = [(lambda s=s, b=b, r=r, f=f: measure_schedules(s, b, r, form=f))
                  for s, b, r in MAIN_POINTS for f in FORMS if f != "fused"]
    elif group == "schedules_depth":                 # the README's figure: FF/BP against depth
        points = [(lambda s=s, b=b, r=r: measure_schedules(s, b, r))
                  for s, b in SWEEPS["depth"] for r in ("baseline", "hinton")]
    elif group == "main":                            # batch order, every form; tiles for fused
        points = [(lambda s=s, b=b, r=r, f=f: measure(s, b, r, steps, (tiles or MAIN_TILES) if f == "fused" else (),
                                                      form=f))
                  for s, b, r in MAIN_POINTS for f in FORMS]
    else:
        points = [(lambda s=s, b=b, r=r: measure(s, b, r, steps, tiles))
                  for s, b in SWEEPS[group[len("sweep_"):]] for r in ("baseline", "hinton")]
    for point in points:
        t0 = time.perf_counter()
        results.append(point())
        p = results[-1]
        if group == "test_time":
            text = "test time " + "  ".join(f"{k} {v:.2f}" for k, v in p.items() if k.endswith("_over_bp"))
        elif group.startswith("schedules"):
            text = (f"{'-'.join(map(str, p['layer_sizes']))} {p['recipe']} {p['optimizer_form']}: FF/BP per batch "
                    + "  ".join(f"{k} {v['ff_over_bp']:.3f}" for k, v in p.items() if k in ("batch", "layer-update", "layer-major"))
                    + f"  best/best {p['best_over_best']:.3f} (FF {p['ff_best']}, BP {p['bp_best']})")
        else:
            text = line(p)
        ff.say(f"{text}  ({time.perf_counter() - t0:.0f} s)")
    return results


def main(argv=None) -> list:
    p = build_parser()
    args = p.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python3 experiments/data_movement.py", shlex.join(given)]).strip()
    try:
        tiles = tuple(ff.positive_int(t) for t in args.tiles.split(",") if t)
    except argparse.ArgumentTypeError as e:
        p.error(f"--tiles: {e}")
    if args.json and not args.layer_sizes:
        p.error("--json writes one point: give --layer-sizes too (the groups go to --out-dir)")
    ff.check_paths(p, args, ("json",))
    out_dir = Path(ff.user_path(args.out_dir))
    out_dir = out_dir if out_dir.is_absolute() else HERE.parent / out_dir
    if not args.layer_sizes:                        # made and probed before any measuring
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            p.error(f"--out-dir: cannot create {args.out_dir} ({e.strerror})")
        problem = ff.writable_folder(out_dir)
        if problem:
            p.error(f"--out-dir: cannot write to {args.out_dir} ({problem})")
    try:
        with ff.stop_signals():
            return run(args, tiles, command, out_dir)
    except KeyboardInterrupt as e:
        ff.fail(f"{ff.stop_reason(e)}; the groups finished before are written", ff.exit_code(e))


def run(args, tiles, command, out_dir) -> list:
    """main after its flags are checked."""
    if args.layer_sizes:
        sizes = ",".join(map(str, args.layer_sizes))
        point = measure(sizes, args.batch_size, args.recipe, args.steps, tiles, form=args.optimizer_form,
                        bp_schedule=args.bp_schedule)
        ff.say(line(point))
        if args.json:
            write(args.json, {"command": command, "machine": ff.machine(), "points": [point]})
        return [point]
    done = []
    for group in args.only or GROUPS:
        results = run_group(group, tiles, args.steps)
        write(out_dir / f"{group}.json", {"command": command, "machine": ff.machine(), "points": results})
        done += results
    return done


if __name__ == "__main__":
    main()
