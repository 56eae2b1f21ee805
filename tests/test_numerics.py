"""Hand-written gradients, the label-slot identity, Adam and the fast paths, in float64."""

import numpy as np
import pytest

from conftest import ff

SIZES = [784, 7, 6, 5]
THETA = 2.0


def tiny_net(seed=0, sizes=SIZES, dtype=np.float64):
    net = ff.init_net(sizes, np.random.default_rng(seed))
    return ff.net_from_arrays(sizes, [W.astype(dtype) for W in net.W],
                              [b.astype(dtype) for b in net.b]) if dtype != np.float32 else net


def with_dtype(net, dtype):
    flat = net.params.astype(dtype)
    Ws, bs = ff.param_views(flat, net.layer_sizes)
    return ff.Net(net.layer_sizes, flat, Ws, bs)


def batch(seed=1, n=6):
    rng = np.random.default_rng(seed)
    x = ff.clear_label_slot(rng.random((n, 784)))
    y = rng.integers(0, 10, n)
    return ff.training_inputs(x), y, ff.draw_wrong_labels(y, rng)


def layer_losses(params, sizes, x, y_pos, y_neg, kind="mean"):
    net = ff.Net(sizes, params, *ff.param_views(params, sizes))
    return [s[0] for s in ff.ff_step_grads(net, x, y_pos, y_neg, THETA, np.zeros_like(params),
                                           goodness_kind=kind)]


@pytest.mark.parametrize("kind", ["mean", "sum"])
def test_layer_gradients_match_finite_differences(kind):
    """Each layer's gradient is of its own loss, with its input held fixed."""
    net = with_dtype(tiny_net(), np.float64)
    net.params *= 3                       # larger weights: units well away from the ReLU kink
    x, y, yn = batch()
    grads = np.zeros_like(net.params)
    ff.ff_step_grads(net, x, y, yn, THETA, grads, goodness_kind=kind)
    owner = np.concatenate([np.full(a * b + b, l) for l, (a, b) in
                            enumerate(zip(SIZES[:-1], SIZES[1:]))])
    assert np.abs(grads).max() > 1e-3            # a test with vanishing gradients checks nothing
    rng = np.random.default_rng(0)
    # every parameter of the small layers, a sample of layer 0 (including label rows)
    picks = np.concatenate([rng.choice(np.flatnonzero(owner == 0), 300, replace=False),
                            np.arange(0, 10 * 7), np.flatnonzero(owner > 0)])
    h = 1e-6
    for i in picks:
        p = net.params.copy(); p[i] += h
        up = layer_losses(p, SIZES, x, y, yn, kind)[owner[i]]
        p[i] -= 2 * h
        down = layer_losses(p, SIZES, x, y, yn, kind)[owner[i]]
        numeric = (up - down) / (2 * h)
        assert abs(numeric - grads[i]) < 1e-7 + 1e-5 * abs(numeric), \
            f"param {i} (layer {owner[i]}): analytic {grads[i]:.3e} numeric {numeric:.3e}"


def test_dloss_dgoodness_matches_finite_differences():
    rng = np.random.default_rng(0)
    g_pos, g_neg = rng.random(5) * 5, rng.random(5) * 5
    d_pos, d_neg = ff.dloss_dgoodness(g_pos, g_neg, THETA)
    h = 1e-6
    for i in range(5):
        e = np.zeros(5); e[i] = h
        num_pos = (ff.ff_loss(g_pos + e, g_neg, THETA) - ff.ff_loss(g_pos - e, g_neg, THETA)) / (2 * h)
        num_neg = (ff.ff_loss(g_pos, g_neg + e, THETA) - ff.ff_loss(g_pos, g_neg - e, THETA)) / (2 * h)
        assert abs(num_pos - d_pos[i]) < 1e-8, (num_pos, d_pos[i])
        assert abs(num_neg - d_neg[i]) < 1e-8, (num_neg, d_neg[i])


def direct_step(net, x_img, y_pos, y_neg, theta):
    """The plain computation: embed each label, full product for pos and neg separately."""
    grads_W, grads_b, stats = [], [], []
    xp, xn = ff.embed_label(x_img, y_pos), ff.embed_label(x_img, y_neg)
    for W, b in zip(net.W, net.b):
        hp, hn = np.maximum(xp @ W + b, 0), np.maximum(xn @ W + b, 0)
        gp, gn = (hp ** 2).mean(1), (hn ** 2).mean(1)
        stats.append(np.log1p(np.exp(theta - gp)).mean() + np.log1p(np.exp(gn - theta)).mean())
        sp = -1 / (1 + np.exp(gp - theta)) / len(gp)
        sn = 1 / (1 + np.exp(theta - gn)) / len(gn)
        dzp, dzn = hp * 2 / W.shape[1] * sp[:, None], hn * 2 / W.shape[1] * sn[:, None]
        grads_W.append(xp.T @ dzp + xn.T @ dzn)
        grads_b.append(dzp.sum(0) + dzn.sum(0))
        xp = hp / np.sqrt((hp ** 2).mean(1, keepdims=True) + ff.NORM_EPS)
        xn = hn / np.sqrt((hn ** 2).mean(1, keepdims=True) + ff.NORM_EPS)
    return grads_W, grads_b, stats


def test_label_slot_identity_training_step():
    """Shared image product + label rows == embedding the label and a full product."""
    net = with_dtype(tiny_net(), np.float64)
    x, y, yn = batch(n=12)
    grads = np.zeros_like(net.params)
    stats = ff.ff_step_grads(net, x, y, yn, THETA, grads)
    gW, gb = ff.param_views(grads, SIZES)
    dW, db, dstats = direct_step(net, x[:, :784], y, yn, THETA)
    for l in range(len(SIZES) - 1):
        np.testing.assert_allclose(gW[l], dW[l], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(gb[l], db[l], rtol=1e-10, atol=1e-14)
        assert stats[l][0] == pytest.approx(dstats[l], rel=1e-12)


def test_label_goodness_matches_direct_forward():
    net = tiny_net(dtype=np.float32)
    x = np.random.default_rng(0).random((7, 784)).astype(np.float32)
    fast = ff.label_goodness(net, x)                             # (7, 10, L)
    net64 = with_dtype(net, np.float64)
    for k in range(10):
        h = ff.embed_label(x.astype(np.float64), np.full(7, k))
        for l, (W, b) in enumerate(zip(net64.W, net64.b)):
            h = np.maximum(h @ W + b, 0)
            g = (h ** 2).mean(1)
            np.testing.assert_allclose(fast[:, k, l], g, rtol=2e-5, atol=1e-6)
            h = h / np.sqrt(g[:, None] + ff.NORM_EPS)


def test_predict_modes_pick_layers():
    net = tiny_net(dtype=np.float32)
    x = np.random.default_rng(0).random((20, 784)).astype(np.float32)
    g = ff.label_goodness(net, x)
    np.testing.assert_array_equal(ff.predict(net, x, "first"), g[:, :, 0].argmax(1))
    np.testing.assert_array_equal(ff.predict(net, x, "skip-first"), g[:, :, 1:].sum(2).argmax(1))
    np.testing.assert_array_equal(ff.predict(net, x, "all"), g.sum(2).argmax(1))


def reference_adam(p, grads_seq, lr, b1=0.9, b2=0.999, eps=1e-8):
    """Kingma & Ba (2015), Algorithm 1, in float64."""
    m = np.zeros_like(p); v = np.zeros_like(p)
    for t, g in enumerate(grads_seq, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return p


@pytest.mark.parametrize("chunk, threads", [(1 << 20, False), (1000, True)])
def test_adam_matches_the_formula(monkeypatch, chunk, threads):
    from concurrent.futures import ThreadPoolExecutor
    monkeypatch.setattr(ff, "ADAM_CHUNK", chunk)
    rng = np.random.default_rng(0)
    n = 5003
    p0 = rng.standard_normal(n).astype(np.float32)
    grads_seq = [(rng.standard_normal(n) * 10.0 ** rng.integers(-6, 0, n)).astype(np.float32)
                 for _ in range(5)]
    p = p0.copy()
    opt = ff.make_adam(n, lr=0.003)
    with ThreadPoolExecutor(2) as pool:
        for g in grads_seq:
            ff.adam_update(p, g, opt, 0.003, pool if threads else None)
    expected = reference_adam(p0.astype(np.float64), [g.astype(np.float64) for g in grads_seq], 0.003)
    np.testing.assert_allclose(p, expected, rtol=0, atol=2e-6)


def test_adam_moments_never_go_subnormal():
    """A unit that dies has zero gradients: its moments decay to 0 without subnormals."""
    n = 64
    p = np.ones(n, np.float32)
    opt = ff.make_adam(n, lr=0.003)
    ff.adam_update(p, np.full(n, 1e-3, np.float32), opt, 0.003)
    tiny = np.finfo(np.float32).tiny
    for _ in range(2000):
        ff.adam_update(p, np.zeros(n, np.float32), opt, 0.003)
        for state in (opt.m, opt.v, p):
            assert not ((state != 0) & (np.abs(state) < tiny)).any()
    assert np.abs(opt.m).max() <= 5 * 2.0 ** -123


def test_label_goodness_of_some_layers():
    net = tiny_net(dtype=np.float32)
    x = np.random.default_rng(0).random((9, 784)).astype(np.float32)
    full = ff.label_goodness(net, x)
    for layers in ([0], [1, 2], [0, 1, 2], [1]):
        np.testing.assert_array_equal(ff.label_goodness(net, x, layers), full[:, :, layers])
