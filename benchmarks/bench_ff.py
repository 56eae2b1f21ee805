"""Benchmark: the module's FF epoch against a plain NumPy epoch and this machine's floor.

    python3 benchmarks/bench_ff.py                      # 784-500-500, batch 128, 60K images
    python3 benchmarks/bench_ff.py --layer-sizes 784,2000,2000,2000,2000 --train-subset 10000
    python3 benchmarks/bench_ff.py --json bench.json
    python3 benchmarks/bench_ff.py --device cuda        # the same on an NVIDIA GPU (CuPy)

Measured in one process, in --repeats interleaved rounds after --warmup epochs: each
round times one epoch of each kind, in an order that rotates from round to round, and
each ratio is the median of its per-round ratios (their spread is reported beside it):
  reference epoch  a careful plain NumPy epoch (labels embedded into both inputs, a full
                   product for each, fresh arrays, Adam written the obvious way)
  module epoch     ff_label_in_input.train_epoch
  GEMM floor       only the float32 products the module's epoch performs, back to back
  floor            GEMM floor + one streaming pass over the optimiser state (read W, g,
                   m, v; write W, m, v) at the copy bandwidth measured here
With --device cuda every array lives on the GPU (CuPy), the reference is the same plain
code run on CuPy arrays (a plain CuPy port), and every timing waits for the GPU.
  prediction       10 labels x 10K test images: 10 full forward passes vs the module
It reports; it asserts nothing about time.
"""

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ff_label_in_input as ff  # noqa: E402


# ---------------------------------------------------------------- the plain reference

def reference_init(net):
    """Per-array copies of the weights plus zeroed Adam moments, as a plain script keeps them."""
    Ws = [W.copy() for W in net.W]
    bs = [b.copy() for b in net.b]
    ms = [np.zeros_like(p) for p in Ws + bs]
    vs = [np.zeros_like(p) for p in Ws + bs]
    return {"W": Ws, "b": bs, "m": ms, "v": vs, "t": 0}


def reference_step(st, x, y_pos, y_neg, theta, lr, b1=0.9, b2=0.999, eps=1e-8):
    """One minibatch the obvious way; returns the per-layer losses."""
    n, rows = len(x), np.arange(len(x), like=x)
    xp = x.copy(); xp[:, :10] = 0; xp[rows, np.asarray(y_pos, like=x)] = 1
    xn = x.copy(); xn[:, :10] = 0; xn[rows, np.asarray(y_neg, like=x)] = 1
    grads, losses = [], []
    for W, b in zip(st["W"], st["b"]):
        hp = np.maximum(xp @ W + b, 0)
        hn = np.maximum(xn @ W + b, 0)
        gp = (hp ** 2).mean(axis=1)
        gn = (hn ** 2).mean(axis=1)
        losses.append(float(np.logaddexp(0, theta - gp).mean() + np.logaddexp(0, gn - theta).mean()) / 2)
        sp = -1 / (1 + np.exp(gp - theta)) / n
        sn = 1 / (1 + np.exp(theta - gn)) / n
        dzp = hp * (2 / W.shape[1]) * sp[:, None]
        dzn = hn * (2 / W.shape[1]) * sn[:, None]
        grads.append((xp.T @ dzp + xn.T @ dzn, dzp.sum(0) + dzn.sum(0)))
        xp = hp / np.sqrt((hp ** 2).mean(axis=1, keepdims=True) + 1e-8)
        xn = hn / np.sqrt((hn ** 2).mean(axis=1, keepdims=True) + 1e-8)
    st["t"] += 1
    t = st["t"]
    params = st["W"] + st["b"]
    flat_grads = [g for g, _ in grads] + [g for _, g in grads]
    for i, (p, g) in enumerate(zip(params, flat_grads)):
        st["m"][i] = b1 * st["m"][i] + (1 - b1) * g
        st["v"][i] = b2 * st["v"][i] + (1 - b2) * g * g
        m_hat = st["m"][i] / (1 - b1 ** t)
        v_hat = st["v"][i] / (1 - b2 ** t)
        p -= (lr * m_hat / (np.sqrt(v_hat) + eps)).astype(np.float32)
    return losses


def reference_epoch(st, x, y, cfg, rng):
    order = rng.permutation(len(x))
    for i in range(0, len(x), cfg.batch_size):
        idx = order[i:i + cfg.batch_size]
        x_batch = x[np.asarray(idx, like=x)]
        y_neg = (y[idx] + rng.integers(1, 10, len(idx))) % 10
        reference_step(st, x_batch, y[idx], y_neg, cfg.threshold, cfg.lr)


# ---------------------------------------------------------------- floors

def gemm_floor_epoch(sizes, n, batch, rng, xp=np):
    """Time only the products of the module's epoch, at their shapes, back to back."""
    B2 = 2 * batch
    mats = []
    rng = HostRandom(rng, xp)
    for l, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        d_in += 1                                  # the module's [W; b] with a 1 input
        W = rng.standard_normal((d_in, d_out), dtype=np.float32)
        if l == 0:
            x = rng.random((batch, d_in), dtype=np.float32)
            dz = rng.standard_normal((batch, d_out), dtype=np.float32)
            onehot_t = np.zeros((10, B2), np.float32)
            dz2 = rng.standard_normal((B2, d_out), dtype=np.float32)
            mats.append((x, W, x.T, dz, np.empty_like(W), xp.asarray(onehot_t), dz2))
        else:
            x = rng.random((B2, d_in), dtype=np.float32)
            dz = rng.standard_normal((B2, d_out), dtype=np.float32)
            mats.append((x, W, x.T, dz, np.empty_like(W), None, None))
    def run():
        for _ in range(math.ceil(n / batch)):
            for x, W, xT, dz, gW, onehot_t, dz2 in mats:
                x @ W
                np.matmul(xT, dz, out=gW)
                if onehot_t is not None:
                    onehot_t @ dz2
    return timed(run, xp)


class HostRandom:
    """rng draws made on the host, handed back as arrays of xp (NumPy or CuPy)."""
    def __init__(self, rng, xp):
        self.rng, self.xp = rng, xp

    def random(self, *a, **k):
        return self.xp.asarray(self.rng.random(*a, **k))

    def standard_normal(self, *a, **k):
        return self.xp.asarray(self.rng.standard_normal(*a, **k))


def copy_bandwidth(rng, n_bytes=256 << 20, repeats=5, xp=np):
    """Bytes moved per second (read + write) by np.copyto on an array far beyond cache."""
    a = HostRandom(rng, xp).random(n_bytes // 4, dtype=np.float32)
    b = np.empty_like(a)
    times = [timed(lambda: np.copyto(b, a), xp) for _ in range(repeats)]
    return 2 * a.nbytes / float(np.median(times))


# ---------------------------------------------------------------- prediction

def naive_label_goodness(net, x, depth=None):
    """The module's plain read-out: 10 forward passes, one per label (ff.label_goodness_plain)."""
    return ff.to_host(ff.label_goodness_plain(net, np.asarray(x, like=net.params), depth))


def timed(fn, xp=np):
    """Wall seconds of fn(), waiting for the GPU to finish when xp is CuPy."""
    sync = (lambda: None) if xp is np else xp.cuda.Device().synchronize
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def gpu_name(xp):
    return "" if xp is np else xp.cuda.runtime.getDeviceProperties(0)["name"].decode()


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=ff.HelpFormatter)
    p.add_argument("--layer-sizes", type=ff.layer_sizes_arg, default=[784, 500, 500],
                   help="comma-separated sizes, input (784) first")
    p.add_argument("--batch-size", type=ff.positive_int, default=128,
                   help="minibatch size (positives; as many negatives)")
    p.add_argument("--train-subset", type=ff.bounded(int, 1, ff.N_TRAIN), default=ff.N_TRAIN,
                   metavar="N", help="epoch over the first N training images")
    p.add_argument("--warmup", type=ff.bounded(int, 0), default=2,
                   help="untimed epochs before timing (steady state)")
    p.add_argument("--repeats", type=ff.positive_int, default=3,
                   help="interleaved rounds: timed epochs of each kind")
    p.add_argument("--skip-reference", action="store_true", help="time only the module")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu (NumPy) or cuda (CuPy on an NVIDIA GPU)")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the results here")
    return p


def parse_args(argv=None):
    """(args, xp): bad values exit 2 with a one-line reason before any work."""
    p = build_parser()
    args = p.parse_args(argv)
    try:
        xp = ff.array_module(args.device)
    except ff.DeviceError as e:
        p.error(str(e))
    ff.check_paths(p, args, ("json",))
    return args, xp


def main(argv=None, checksums=None):
    """Run the benchmark and return its results; Ctrl-C or SIGTERM stops it with one line
    (exit 130 or 143)."""
    args, xp = parse_args(argv)
    try:
        with ff.stop_signals():
            return run_benchmark(args, xp, checksums)
    except KeyboardInterrupt as e:
        ff.fail(f"{ff.stop_reason(e)}; no results were written", code=ff.exit_code(e))


def run_benchmark(args, xp, checksums=None):
    """Time the module, the reference and the floors as the module docstring says."""
    try:
        x_train, y_train, x_test, y_test = ff.load_mnist(checksums=checksums, mirrors=())
        data = "MNIST"
    except ff.DataError as e:                    # the timings do not depend on the pixels
        rng = np.random.default_rng(0)
        x_train = rng.random((60000, 784), dtype=np.float32)
        y_train = rng.integers(0, 10, 60000)
        x_test, y_test = x_train[:10000].copy(), y_train[:10000].copy()
        data = f"random data of MNIST's shape (MNIST unusable: {e})"
    if args.train_subset:
        x_train, y_train = x_train[:args.train_subset], y_train[:args.train_subset]
    cfg = ff.Config(layer_sizes=args.layer_sizes, batch_size=args.batch_size)
    n = len(x_train)
    print(f"bench: {'-'.join(map(str, cfg.layer_sizes))}, batch {cfg.batch_size}, {n} images of {data}; "
          f"warmup {args.warmup}, repeats {args.repeats}", flush=True)

    # the reference computes the module's loss on the same batch
    state = ff.to_device(ff.init_state(cfg), xp)
    ref = reference_init(state.net)
    x0, y0 = x_train[:cfg.batch_size], y_train[:cfg.batch_size]
    yn0 = ff.draw_wrong_labels(y0, np.random.default_rng(1))
    ref_losses = reference_step(reference_init(state.net), xp.asarray(x0), y0, yn0, cfg.threshold,
                                cfg.lr)
    mod_losses = ff.to_host(ff.ff_grads_plain(state.net, xp.asarray(ff.embed_label(x0, y0)),
                                              xp.asarray(ff.embed_label(x0, yn0)), ff.rule_of(cfg))[1])[:, 0].tolist()
    loss_gap = float(max(abs(a - b) / abs(b) for a, b in zip(mod_losses, ref_losses)))
    print(f"same batch, same weights: module loss {mod_losses} vs reference {ref_losses} "
          f"(max relative gap {loss_gap:.1e})", flush=True)

    results = {"layer_sizes": cfg.layer_sizes, "batch_size": cfg.batch_size, "n_images": n,
               "data": data, "loss_max_relative_gap": loss_gap}
    x_dev, y_dev = xp.asarray(x_train), xp.asarray(y_train)          # on the device once
    rng, rng_floor = np.random.default_rng(2), np.random.default_rng(3)
    x_ref = xp.asarray(x_train)
    state_bytes = 7 * 4 * ff.n_params(cfg.layer_sizes) * math.ceil(n / cfg.batch_size)

    def floor_epoch():                           # the GEMMs, then the state stream at this round's bandwidth
        gemm = gemm_floor_epoch(cfg.layer_sizes, n, cfg.batch_size, rng_floor, xp)
        bw = copy_bandwidth(rng_floor, repeats=3, xp=xp)
        return gemm, bw

    kinds = {"module": lambda: timed(lambda: ff.train_epoch(state, cfg, x_dev, y_dev), xp)}
    if not args.skip_reference:
        kinds["reference"] = lambda: timed(lambda: reference_epoch(ref, x_ref, y_train, cfg, rng), xp)
    for _ in range(args.warmup):
        for name in ("module", "reference"):
            if name in kinds:
                kinds[name]()
    kinds["floor"] = floor_epoch
    # Interleaved rounds, each kind once a round, in an order that rotates: a slow minute
    # on a shared host lands on one round's three timings, not on one kind's.
    rounds = {name: [] for name in kinds}
    names = list(kinds)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            rounds[name].append(kinds[name]())
        floor = rounds["floor"][-1][0] + state_bytes / rounds["floor"][-1][1]
        print(f"round {r + 1}: module {rounds['module'][-1]:.2f} s, floor {floor:.2f} s"
              + (f", reference {rounds['reference'][-1]:.2f} s" if "reference" in rounds else ""),
              flush=True)
    gemm = [g for g, _ in rounds["floor"]]
    bws = [b for _, b in rounds["floor"]]
    floors = [g + state_bytes / b for g, b in rounds["floor"]]
    module = rounds["module"]
    results["module_epoch_s"] = float(np.median(module))
    results["module_epoch_all_s"] = module
    results["gemm_floor_s"] = float(np.median(gemm))
    results["copy_bandwidth_GBps"] = float(np.median(bws)) / 1e9
    results["optimizer_stream_s"] = state_bytes / float(np.median(bws))
    results["floor_s"] = float(np.median(floors))
    per_round = {"module_over_floor": [m / f for m, f in zip(module, floors)],
                 "module_over_gemm_floor": [m / g for m, g in zip(module, gemm)]}
    if "reference" in rounds:
        results["reference_epoch_s"] = float(np.median(rounds["reference"]))
        results["reference_epoch_all_s"] = rounds["reference"]
        per_round["reference_over_module"] = [r / m for r, m in zip(rounds["reference"], module)]
    results["rounds"] = {"interleaved": True, "n": args.repeats, "per_round": per_round}
    for key, values in per_round.items():           # the median of the per-round ratios
        results[f"ratio_{key}"] = float(np.median(values))
        results[f"ratio_{key}_spread"] = [float(min(values)), float(max(values))]

    x_pred = x_test[:10000]
    naive = [timed(lambda: naive_label_goodness(state.net, x_pred), xp) for _ in range(args.repeats)]
    fast = [timed(lambda: ff.label_goodness(state.net, x_pred), xp) for _ in range(args.repeats)]
    results["predict_naive_s"] = float(np.median(naive))
    results["predict_module_s"] = float(np.median(fast))
    naive1 = [timed(lambda: naive_label_goodness(state.net, x_pred, 1), xp) for _ in range(args.repeats)]
    fast1 = [timed(lambda: ff.label_goodness(state.net, x_pred, [0]), xp) for _ in range(args.repeats)]
    results["predict_first_naive_s"] = float(np.median(naive1))
    results["predict_first_module_s"] = float(np.median(fast1))
    # multiply-adds of the two ways to score 10 labels (all layers): what no exact method
    # can avoid is every layer above the first, 10 times over
    s = cfg.layer_sizes
    deep = sum(a * b for a, b in zip(s[1:-1], s[2:]))
    results["predict_flop_ratio_naive_over_module"] = 10 * (s[0] * s[1] + deep) / (s[0] * s[1] + 10 * deep)
    agree = np.abs(ff.label_goodness(state.net, x_pred[:500]) - naive_label_goodness(state.net, x_pred[:500])) / np.array(cfg.layer_sizes[1:])
    results["predict_max_abs_diff"] = float(agree.max())

    results.setdefault("ratio_reference_over_module", float("nan"))
    results["ratio_predict_naive_over_module"] = results["predict_naive_s"] / results["predict_module_s"]
    results["ratio_predict_first_naive_over_module"] = (results["predict_first_naive_s"]
                                                        / results["predict_first_module_s"])
    results["peak_rss_MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["device"] = args.device
    results["machine"] = {**ff.machine(), "gpu": gpu_name(xp)}

    rows = [("reference epoch (plain NumPy)", results.get("reference_epoch_s")),
            ("module epoch", results["module_epoch_s"]),
            ("GEMM floor", results["gemm_floor_s"]),
            (f"optimiser state stream ({results['copy_bandwidth_GBps']:.1f} GB/s copy)",
             results["optimizer_stream_s"]),
            ("floor = GEMM floor + state stream", results["floor_s"]),
            ("predict 10K x 10 labels, naive", results["predict_naive_s"]),
            ("predict 10K x 10 labels, module", results["predict_module_s"]),
            ("predict, layer 0 only (first), naive", results["predict_first_naive_s"]),
            ("predict, layer 0 only (first), module", results["predict_first_module_s"])]
    print(f"\n| {'what':<44} | {'median s':>9} |\n|{'-' * 46}|{'-' * 11}|")
    for name, value in rows:
        print(f"| {name:<44} | {value:9.3f} |" if value is not None else f"| {name:<44} | {'skipped':>9} |")
    print(f"\nreference / module epoch: {results['ratio_reference_over_module']:.2f}x")
    lo, hi = results["ratio_module_over_floor_spread"]
    print(f"module epoch / floor:     {results['ratio_module_over_floor']:.2f}x, median of "
          f"{args.repeats} interleaved rounds ({lo:.2f}-{hi:.2f}; / GEMM floor alone: "
          f"{results['ratio_module_over_gemm_floor']:.2f}x)")
    print(f"predict naive / module:   {results['ratio_predict_naive_over_module']:.2f}x "
          f"(max |goodness diff| {results['predict_max_abs_diff']:.1e}; multiply-add ratio "
          f"{results['predict_flop_ratio_naive_over_module']:.2f}x); layer 0 only: "
          f"{results['ratio_predict_first_naive_over_module']:.2f}x")
    print(f"peak RSS: {results['peak_rss_MB']:.0f} MB; {gpu_name(xp) or results['machine']['cpu']}, "
          f"{results['machine']['cores']} cores, Python {results['machine']['python']}, "
          f"NumPy {results['machine']['numpy']}")
    if args.json:
        ff.atomic_write_bytes(Path(args.json), (json.dumps(results, indent=2) + "\n").encode())
    return results


if __name__ == "__main__":
    main()
