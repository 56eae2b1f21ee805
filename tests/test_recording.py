"""The recording array (benchmarks/recording.py): NumPy code runs on it unchanged, gives
exactly NumPy's numbers, and leaves a trace in which views read their base, in-place
writes make new versions and matmuls carry M, K, N."""

import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "experiments"))
import dmd  # noqa: E402
from recording import RecArray, Recorder  # noqa: E402


def small_step(W, x, y, m):
    """A bit of everything training code does. W (4, 3), x (5, 4), y (5,) ints, m (4, 3)."""
    B = len(x)
    h = x @ W                                                        # (5, 3)
    np.maximum(h, 0, out=h)                                          # ReLU in place
    g = np.einsum("ij,ij->i", h, h)                                  # goodness (5,)
    p = g.dtype.type(0.5) * np.tanh(g.dtype.type(0.5) * g) + g.dtype.type(0.5)
    loss = np.logaddexp(g.dtype.type(0), -g).mean()
    h = h / np.sqrt((h * h).mean(axis=1, keepdims=True) + g.dtype.type(1e-8))
    onehot = (np.arange(3, like=x)[:, None] == y).astype(x.dtype)    # (3, 5)
    picked = np.take(W, y % 4, axis=0)                               # gather (5, 3)
    picked[:2] *= 2                                                  # in place through a view
    out = np.empty((B, 4), x.dtype, like=x)
    np.multiply(h, p[:, None], out=out[:, :-1])
    out[:, -1] = 1
    rows = np.arange(B, like=x)
    sel = out[rows, y % 3]                                           # int-array indexing
    out[out < 0] = 0                                                 # boolean setitem
    out[rows[:2], 0] += 7                                            # int-array setitem
    grad = x.T @ (h + picked)                                        # (4, 3)
    m *= m.dtype.type(0.9)
    m += grad
    both = np.concatenate([g, p]).reshape(2, B)
    stacked = np.stack([both.sum(axis=0), both.max(axis=0), both.min(axis=0)])
    flags = np.asarray([(g > 0).any(), (g > -1).all()], like=x)
    c = np.cumsum(np.where(g > 1, g, -g))
    s = float(loss) + int(y[0]) + (1.0 if bool(g[0] >= 0) else 0.0)
    return [h, onehot, picked, out, sel, grad, m, stacked, flags, c, both.T.ravel(),
            np.exp(-p), np.full(3, 2.0, like=x), np.zeros(2, like=x), s]


def run_small_step(wrap):
    rng = np.random.default_rng(0)
    W = rng.standard_normal((4, 3)).astype(np.float32)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    y, m = rng.integers(0, 10, 5), rng.standard_normal((4, 3)).astype(np.float32)
    return small_step(*(wrap(a) for a in (W, x, y, m)))


def to_numpy(v):
    return v.get() if isinstance(v, RecArray) else v


def test_recorded_results_equal_numpy_exactly():
    rec = Recorder()
    plain, recorded = run_small_step(lambda a: a.copy()), run_small_step(lambda a: rec.wrap(a.copy()))
    assert len(plain) == len(recorded)
    for a, b in zip(plain, recorded):
        assert isinstance(b, (RecArray, float))
        np.testing.assert_array_equal(to_numpy(b), a)
        assert np.asarray(to_numpy(b)).dtype == np.asarray(a).dtype
    ops = [ev.op for ev in rec.trace]
    for op in ("matmul", "maximum", "einsum", "take", "setitem", "concatenate", "to_host", "cumsum"):
        assert op in ops
    dmd.price(rec.trace, rec.tags)                                   # every read is of a live block


def test_a_view_reads_its_base_and_counts_its_bytes():
    rec = Recorder()
    W = rec.wrap(np.ones((10, 4), np.float32), "weights", layer=0)
    (key, _), = rec.trace[-1].writes
    for view in (W[:3], W.T[:, 2:5], W.reshape(4, 10)[1], W.transpose()[0]):
        y = view + 1
        assert rec.trace[-1].reads == ((key, view.nbytes),)
        assert rec.tags[rec.trace[-1].writes[0][0]] == ("activations", 0)    # inherits the layer
    n = len(rec.trace)
    W[2:4].T[1:].reshape(3, 2)[::2], W.reshape(-1)[3:]                       # views move nothing
    assert len(rec.trace) == n
    W[[0, 5, 7]]                                        # a gather reads what it returns
    assert rec.trace[-1].reads == ((key, 3 * 16),)
    assert y.shape == (10,)


def test_in_place_writes_bump_the_version():
    rec = Recorder()
    a = rec.wrap(np.zeros(6, np.float32), "optimizer", layer=1)
    b = rec.wrap(np.ones(6, np.float32))
    (k0, _), = rec.trace[0].writes
    a += b
    ev = rec.trace[-1]
    assert ev.op == "add" and ev.reads[0] == (k0, 24) and ev.writes == (((k0[0], 1), 24),)
    np.multiply(b, 2, out=a)
    a[1:3] += b[:2]                                     # one event: NumPy skips the self-copy
    a[...] = 0
    a[np.array([0, 2])] = b[:2]                         # (the host index array is loaded first)
    writes = [ev for ev in rec.trace if ev.op != "load"][-4:]
    assert [ev.writes[0][0] for ev in writes] == [(k0[0], v) for v in (2, 3, 4, 5)]
    assert [ev.op for ev in writes] == ["multiply", "add", "setitem", "setitem"]
    assert rec.tags[(k0[0], 5)] == ("optimizer", 1)     # a tag survives new versions


def test_matmul_records_m_k_n():
    rec = Recorder()
    A, B = rec.wrap(np.ones((5, 3), np.float32)), rec.wrap(np.ones((3, 7), np.float32))
    for C in (A @ B, np.matmul(A, B), np.dot(A, B), (B.T @ A.T).T):
        pass
    metas = [ev.meta for ev in rec.trace if ev.op in ("matmul", "dot")]
    assert metas[0] == {"M": 5, "K": 3, "N": 7, "itemsize": 4, "batch": 1}
    assert metas[1] == metas[2] == metas[0]
    assert (metas[3]["M"], metas[3]["K"], metas[3]["N"]) == (7, 3, 5)
    assert C.shape == (5, 7)


def test_tags_split_a_flat_vector_into_per_layer_blocks():
    rec = Recorder()
    flat = rec.wrap(np.arange(10, dtype=np.float32), "weights")
    layers = [flat[:6].reshape(2, 3), flat[6:].reshape(2, 2)]
    for l, v in enumerate(layers):
        rec.tag(v, "weights", l)
    k0, k1 = rec.keys(layers[0]), rec.keys(layers[1])
    assert len(k0) == len(k1) == 1 and k0 != k1
    layers[1] * 2
    assert rec.trace[-1].reads == ((k1[0], 16),)
    flat *= 2                                           # the whole vector: both blocks, new versions
    assert rec.trace[-1].reads == ((k0[0], 24), (k1[0], 16))
    assert [k for k, _ in rec.trace[-1].writes] == [(k0[0][0], 1), (k1[0][0], 1)]
    assert rec.tags[(k1[0][0], 1)] == ("weights", 1)


def test_host_arrays_are_loaded_as_data_and_conversions_are_recorded():
    rec = Recorder()
    x = rec.wrap(np.ones(4, np.float32), "activations")
    host = np.arange(4, dtype=np.float32)
    y = x + host                                        # the host array: loaded, then read
    assert rec.trace[-2].op == "load" and rec.tags[rec.trace[-2].writes[0][0]] == ("data", None)
    assert len(rec.trace[-1].reads) == 2
    d = np.asarray([1, 2, 3], like=x)                   # host to device: a load, no read
    assert rec.trace[-1].op == "load" and isinstance(d, RecArray)
    assert float(y.sum()) == 10.0 and rec.trace[-1].op == "to_host"
    assert isinstance(y[0], RecArray) and y[0].ndim == 0
    np.testing.assert_array_equal(y.get(), np.arange(1, 5))
    with pytest.raises(TypeError):
        np.asarray(y)                                   # implicit conversion is refused


def test_price_of_a_recorded_trace_with_tags_and_tiles():
    rec = Recorder()
    W = rec.wrap(np.ones((6, 5), np.float32), "weights", 0)
    x = rec.wrap(np.ones((4, 6), np.float32))
    h = np.maximum(x @ W, 0)
    W -= (x.T @ h) * np.float32(0.1)
    cost = dmd.price(rec.trace, rec.tags, live_out=rec.keys(W))
    assert cost.total == sum(cost.per_kind.values()) == sum(cost.per_op.values())
    assert set(cost.per_kind) == {"weights", "data", "activations"} and cost.per_tag["weights/0"] > 0
    assert dmd.price(rec.trace, rec.tags, rec.keys(W), tile=6).total == cost.total
    assert dmd.price(rec.trace, rec.tags, rec.keys(W), tile=2).total > cost.total


# ---------------------------------------------------------------- the real training steps

@pytest.fixture(scope="module")
def dm():
    import data_movement
    return data_movement


def arrays_of(obj) -> list:
    """Every array (ndarray or RecArray) of a training state, in a fixed order."""
    import dataclasses
    out = []
    for v in vars(obj).values() if dataclasses.is_dataclass(obj) else obj:
        if isinstance(v, (np.ndarray, RecArray)):
            out.append(v)
        elif dataclasses.is_dataclass(v) or isinstance(v, list):
            out += arrays_of(v)
        elif hasattr(v, "opt") and hasattr(v, "step"):            # an observed optimiser
            out += arrays_of(v.opt)
    return out


@pytest.mark.parametrize("recipe,schedule", [("baseline", "batch"), ("hinton", "batch"),
                                             ("hinton", "layer-update"), ("baseline", "layer-major")])
def test_recorded_steps_give_exactly_the_weights_of_plain_steps(dm, recipe, schedule):
    """ff.train_step (ff.train_layer_major) and backprop_step on recording arrays: the same
    bits as on NumPy."""
    cfg = dm.ff_config("784,12,10", 6, recipe, schedule)
    for run in (dm.run_ff, dm.run_bp) if schedule == "batch" else (dm.run_ff,):
        plain = run(cfg, 2)
        rec, live_out, recorded = dm.record(run, cfg, 2)
        assert len(rec.marks) == 2 and live_out
        assert not any(ev.op == "to_host" for ev in rec.trace)       # the steps never wait on the host
        a, b = arrays_of(plain), arrays_of(recorded)
        assert len(a) == len(b) > 3
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y.get())


def test_driver_at_a_tiny_size(dm, tmp_path, capsys):
    out = tmp_path / "point.json"
    dm.main(["--layer-sizes", "784,12,10", "--batch-size", "6", "--recipe", "hinton",
             "--steps", "3", "--tiles", "4", "--json", str(out)])
    import json
    p = json.loads(out.read_text())["points"][0]
    for side in ("ff", "bp"):
        assert p[side]["steady_step"] is not None and p[side]["tiled"]["4"]["steady_step"] is not None
        assert p[side]["total"] == sum(p[side]["per_kind"].values()) > 0
        assert p[side]["tiled"]["4"]["total"] > p[side]["total"]
    assert {"weights", "optimizer", "activations", "data", "grads"} <= set(p["ff"]["per_kind"])
    assert "peer_means" in p["ff"]["per_kind"] and "head" in p["ff"]["per_layer"]
    for side in ("ff", "bp"):
        assert 0 < p[side]["update"] < p[side]["total"] == p[side]["update"] + p[side]["not_update"]
    assert p["ff_over_bp"] > 0 and "FF/BP" in capsys.readouterr().out


def test_test_time_readouts_at_a_tiny_size(dm):
    p = dm.measure_test("784,12,10", "hinton", n_images=20)
    for which in ("ff_goodness", "ff_softmax", "bp"):
        assert p[which]["best_chunk"] in dm.TEST_CHUNKS and 0 < p[which]["total"] <= p[which]["at_predict_chunk"]
        assert p[which]["total"] == min(p[which]["per_chunk"].values())
    assert p["ff_goodness_over_bp"] > 0 and p["ff_softmax_over_bp"] > 0


@pytest.mark.parametrize("method", ["ff", "bp layer-update"])
def test_the_fused_update_reads_and_writes_each_layer_once(dm, method):
    """--optimizer-form fused, by hand: per layer of (D_in + 1) D_out float32 parameters the
    update is one event that reads p, grad, m and v (4 n_l bytes each) and writes p, m, v;
    the weights are the real step's."""
    cfg = dm.ff_config("784,12,10", 6, "baseline")
    run, kwargs = (dm.run_ff, {}) if method == "ff" else (dm.run_bp, {"schedule": "layer-update"})
    plain = run(cfg, 3, **kwargs)
    rec, live_out, recorded = dm.record(run, cfg, 3, form="fused", **kwargs)
    sizes = cfg.layer_sizes if method == "ff" else cfg.layer_sizes + [10]
    n = [(a + 1) * b * 4 for a, b in zip(sizes[:-1], sizes[1:])]
    a, b = arrays_of(plain), arrays_of(recorded)
    assert all(np.array_equal(x, y.a) for x, y in zip(a, b))
    lo = rec.marks[-1]
    fused = [ev for ev in rec.trace[lo:] if ev.op == "Adam.step fused"]
    assert sorted(ev.reads[0][1] for ev in fused) == sorted(n)          # one event per layer
    for ev in fused:
        assert [nb for _, nb in ev.reads] == [ev.reads[0][1]] * 4 and [nb for _, nb in ev.writes] == [ev.reads[0][1]] * 3
    step = dm.priced_step(rec, live_out)
    assert 0 < step["update"] < step["total"]


def test_the_optimizer_forms_price_the_same_weights_differently(dm):
    cfg = dm.ff_config("784,40,30", 16, "baseline")
    totals = {form: dm.priced_step(*dm.record(dm.run_ff, cfg, 3, form=form)[:2])["update"] for form in dm.FORMS}
    assert totals["fused"] < totals["cpu"] <= totals["device"]
