"""The method's numerics in float64: hand-written gradients against central differences,
every speed-up against the plain form, the optimisers against their formulas."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from conftest import ff

SIZES = [784, 7, 6, 5]
SEED_CFG = ff.Config(layer_sizes=SIZES)
HINTON_CFG = dataclasses.replace(ff.Config(**{**dataclasses.asdict(SEED_CFG), **ff.RECIPES["hinton"]}),
                                 layer_sizes=SIZES)
CFGS = {
    "seed": SEED_CFG,
    "seed, logit scale D": dataclasses.replace(SEED_CFG, logit_scale="D", threshold=1.0),
    "hinton": HINTON_CFG,
    "hinton, gated peer": dataclasses.replace(HINTON_CFG, peer_gate="relu"),
    "seed, rms input, gated peer": dataclasses.replace(SEED_CFG, input_norm="rms", peer_norm=0.5),
}


def net64(cfg, seed=0, scale=3.0):
    """A float64 net; larger weights keep units away from the ReLU kink."""
    net = ff.init_net(cfg.layer_sizes, np.random.default_rng(seed), input_norm=cfg.input_norm,
                      softmax_head=cfg.softmax_head)
    return ff.Net(net.layer_sizes, net.params.astype(np.float64) * scale, net.input_norm,
                  None if net.head is None else np.random.default_rng(seed).standard_normal(net.head.shape))


def batch(seed=1, n=6):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 784))
    x[:, :ff.LABEL_SLOT] = 0
    y = rng.integers(0, 10, n)
    return x, y, ff.draw_wrong_labels(y, rng)


def peer_start(sizes, seed=2):
    return [np.random.default_rng(seed + l).random(d) for l, d in enumerate(sizes[1:])]


def numeric_grad(f, params, i, h=1e-6):
    p = params.copy()
    p[i] += h
    up = f(p)
    p[i] -= 2 * h
    return (up - f(p)) / (2 * h)


def owner_of(sizes):
    """The layer each entry of the flat vector belongs to."""
    return np.concatenate([np.full((a + 1) * b, l) for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))])


@pytest.mark.parametrize("name", ["seed", "seed, logit scale D", "seed, rms input, gated peer",
                                  "hinton, gated peer"])
def test_plain_gradients_match_finite_differences(name):
    """Each layer's gradient is of its own loss (plus the peer penalty, whose gradient the
    gated peer term is), with its input held fixed."""
    cfg = CFGS[name]
    net = net64(cfg)
    x, y, yn = batch()
    xp, xn = ff.embed_label(x, y), ff.embed_label(x, yn)
    r0 = peer_start(SIZES)
    grads, _ = ff.ff_grads_plain(net, xp, xn, ff.rule_of(cfg), [r.copy() for r in r0])
    flat = np.concatenate([np.vstack([dW, db[None]]).ravel() for dW, db in grads])
    assert np.abs(flat).max() > 1e-3             # vanishing gradients would check nothing

    def layer_objective(params, l):
        n = ff.Net(SIZES, params, cfg.input_norm)
        r = [a.copy() for a in r0]
        _, stats = ff.ff_grads_plain(n, xp, xn, ff.rule_of(cfg), r)
        # the gated peer term is the gradient of lambda / (2 (1 - decay)) sum_j (r_j - mean r)^2
        penalty = cfg.peer_norm / (2 * (1 - ff.PEER_DECAY)) * ((r[l] - r[l].mean()) ** 2).sum()
        return stats[l][0] + penalty

    owner = owner_of(SIZES)
    rng = np.random.default_rng(0)
    picks = np.concatenate([rng.choice(np.flatnonzero(owner == 0), 150, replace=False),
                            np.arange(70), np.flatnonzero(owner > 0)])   # label rows included
    for i in picks:
        numeric = numeric_grad(lambda p: layer_objective(p, owner[i]), net.params, i)
        assert abs(numeric - flat[i]) < 1e-8 + 1e-5 * abs(numeric), \
            f"param {i} (layer {owner[i]}): analytic {flat[i]:.4e} numeric {numeric:.4e}"


def test_dloss_dlogit_matches_finite_differences():
    rng = np.random.default_rng(0)
    lp, ln = rng.standard_normal(5) * 3, rng.standard_normal(4) * 3
    d_pos, d_neg = ff.dloss_dlogit(lp, ln)
    for i in range(5):
        num = numeric_grad(lambda v: ff.ff_loss(v, ln), lp, i)
        assert abs(num - d_pos[i]) < 1e-9, (num, d_pos[i])
    for i in range(4):
        num = numeric_grad(lambda v: ff.ff_loss(lp, v), ln, i)
        assert abs(num - d_neg[i]) < 1e-9, (num, d_neg[i])


def test_loss_is_log_loss_of_the_logistic():
    lp, ln = np.array([2.0, -1.0]), np.array([0.5])
    p = 1 / (1 + np.exp(-np.concatenate([lp, ln])))
    expected = -(np.log(p[0]) + np.log(p[1]) + np.log(1 - p[2])) / 3
    assert ff.ff_loss(lp, ln) == pytest.approx(expected, rel=1e-12)


def test_logit_scales():
    """k = D is sum(h^2) - theta D (Hinton's code); k = 1 is mean(h^2) - theta."""
    g = np.array([3.0, 12.0])
    np.testing.assert_allclose(ff.ff_logit(g, 4, 1.0, "D"), g - 4)
    np.testing.assert_allclose(ff.ff_logit(g, 4, 2.0, "1"), g / 4 - 2)


def test_ungated_peer_term_reaches_dead_units():
    """Hinton's peer term is the gated one with the ReLU's derivative replaced by 1."""
    rng = np.random.default_rng(0)
    h = np.maximum(rng.standard_normal((5, 4)), 0)
    h[:, 2] = 0                                                      # a dead unit
    r = np.array([0.2, 0.9, 0.0, 0.5])
    ungated, gated = ff.peer_dz(r, h, 0.03, "none"), ff.peer_dz(r, h, 0.03, "relu")
    np.testing.assert_allclose(ungated, np.tile(0.03 / 5 * (r - r.mean()), (5, 1)))
    np.testing.assert_allclose(gated, ungated * (h > 0))
    assert (ungated[:, 2] < 0).all() and (gated[:, 2] == 0).all()  # below-average unit pushed up


def test_peer_means_follow_positive_activity():
    r = np.full(3, ff.PEER_START)
    h = np.array([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0]])
    np.testing.assert_allclose(ff.peer_means_update(r, h), 0.9 * 0.5 + 0.1 * np.array([2.0, 0.0, 2.0]))


@pytest.mark.parametrize("name", sorted(CFGS))
def test_fast_step_equals_plain_step(name):
    """Speed-ups 1-5 (bias row, label-slot identity with RMS scaling, stacked pos/neg,
    product orientation, in-place dz) change nothing but speed."""
    cfg = CFGS[name]
    net = net64(cfg)
    x, y, yn = batch(n=12)
    r_plain, r_fast = peer_start(SIZES), peer_start(SIZES)
    rule = ff.rule_of(cfg)
    plain, plain_stats = ff.ff_grads_plain(net, ff.embed_label(x, y), ff.embed_label(x, yn), rule, r_plain)
    grads = np.zeros_like(net.params)
    stats = ff.ff_grads(net, ff.encode(net, x), y, yn, rule, grads, r_fast)
    for l, view in enumerate(ff.layer_views(grads, SIZES)):
        np.testing.assert_allclose(view[:-1], plain[l][0], rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(view[-1], plain[l][1], rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(stats[l], plain_stats[l], rtol=1e-10)
        np.testing.assert_allclose(r_fast[l], r_plain[l], rtol=1e-12)


@pytest.mark.parametrize("input_norm", ["none", "rms"])
def test_first_layer_identity(input_norm):
    """[s x_img + s e_y] W + b from one image product, for one-hot and neutral labels,
    equals embedding the label, normalising the row and a full product."""
    net = net64(dataclasses.replace(SEED_CFG, input_norm=input_norm))
    x, y, _ = batch(n=9)
    enc = ff.encode(net, x)
    direct = ff.first_layer_inputs(ff.embed_label(x, y), input_norm) @ net.W[0] + net.b[0]
    np.testing.assert_allclose(ff.layer0_z(net, enc, y), direct, rtol=1e-12)
    neutral = ff.first_layer_inputs(ff.embed_neutral_label(x), input_norm) @ net.W[0] + net.b[0]
    np.testing.assert_allclose(ff.layer0_neutral_z(net, enc), neutral, rtol=1e-10, atol=1e-12)
    # the label slot's content does not matter to encode: it is overwritten
    x_labelled = ff.embed_label(x, (y + 3) % 10)
    np.testing.assert_array_equal(ff.encode(net, x_labelled).a0, enc.a0)


def test_bias_row_and_orientation():
    rng = np.random.default_rng(0)
    x, Wb = rng.random((5, 4)), rng.random((5, 3))
    xb = ff.with_bias_input(x)
    np.testing.assert_array_equal(xb[:, -1], 1)
    np.testing.assert_allclose(ff.transposed_product(xb, Wb), x @ Wb[:-1] + Wb[-1], rtol=1e-13)


@pytest.mark.parametrize("input_norm", ["none", "rms"])
def test_label_goodness_matches_the_plain_read_out(input_norm):
    """The fast read-out (label_goodness: one image product for all 10 labels) against the
    method's plain one (label_goodness_plain: one forward per label), run in float64."""
    net = ff.init_net(SIZES, np.random.default_rng(0), input_norm=input_norm)
    x = np.random.default_rng(0).random((7, 784)).astype(np.float32)
    fast = ff.label_goodness(net, x)                             # (7, 10, L)
    net64_ = ff.Net(SIZES, net.params.astype(np.float64), input_norm)
    plain = ff.label_goodness_plain(net64_, x.astype(np.float64))
    assert plain.dtype == np.float64 and plain.shape == fast.shape
    np.testing.assert_allclose(fast, plain, rtol=2e-5, atol=1e-6)
    per_unit = ff.label_goodness_plain(net64_, x.astype(np.float64), 1, per_unit=True)
    np.testing.assert_allclose(per_unit[:, :, 0], plain[:, :, 0] / SIZES[1], rtol=1e-12)


def test_readouts_pick_layers():
    net = ff.init_net(SIZES, np.random.default_rng(0))
    x = np.random.default_rng(0).random((20, 784)).astype(np.float32)
    g = ff.label_goodness(net, x)
    np.testing.assert_array_equal(ff.predict(net, x, "first"), g[:, :, 0].argmax(1))
    np.testing.assert_array_equal(ff.predict(net, x, "skip-first"), g[:, :, 1:].sum(2).argmax(1))
    np.testing.assert_array_equal(ff.predict(net, x, "all"), g.sum(2).argmax(1))
    for layers in ([0], [1, 2], [1]):
        np.testing.assert_array_equal(ff.label_goodness(net, x, layers), g[:, :, layers])


def test_softmax_head_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    feats, y = rng.standard_normal((6, 5)), rng.integers(0, 10, 6)
    head = rng.standard_normal((5, 10))
    _, grad, logits = ff.head_loss_and_grad(head, feats, y)
    np.testing.assert_allclose(logits, feats @ head)
    for i in range(head.size):
        num = numeric_grad(lambda p: ff.head_loss_and_grad(p.reshape(5, 10), feats, y)[0], head.ravel(), i)
        assert abs(num - grad.ravel()[i]) < 1e-8, (i, num, grad.ravel()[i])


def test_head_logits_from_neutral_pass():
    cfg = HINTON_CFG
    net = net64(cfg)
    x, _, _ = batch(n=4)
    h = ff.first_layer_inputs(ff.embed_neutral_label(x), cfg.input_norm)
    feats = []
    for l, (W, b) in enumerate(zip(net.W, net.b)):
        h = ff.rms_normalize(np.maximum(h @ W + b, 0))
        if l:
            feats.append(h)
    np.testing.assert_allclose(ff.head_logits(net, x), np.hstack(feats) @ net.head, rtol=1e-5)


def reference_adam(p, grads_seq, lr, b1=0.9, b2=0.999, eps=1e-8):
    """Kingma & Ba (2015), Algorithm 1, in float64."""
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads_seq, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return p


def test_adam_matches_the_formula_with_per_layer_rates():
    rng = np.random.default_rng(0)
    n = 3 * ff.ADAM_CHUNK + 5                         # several chunks, one ragged
    p0 = rng.standard_normal(n).astype(np.float32)
    grads_seq = [(rng.standard_normal(n) * 10.0 ** rng.integers(-6, 0, n)).astype(np.float32)
                 for _ in range(5)]
    cut = ff.ADAM_CHUNK + 7
    opt, p = ff.Adam(np.zeros(n, np.float32), np.zeros(n, np.float32)), p0.copy()
    for g in grads_seq:
        opt.step(p, g, [ff.Part(0, cut, 0, 0.003), ff.Part(cut, n, 0, 0.0003)])
    g64 = [g.astype(np.float64) for g in grads_seq]
    np.testing.assert_allclose(p[:cut], reference_adam(p0[:cut].astype(np.float64), [g[:cut] for g in g64], 0.003),
                               rtol=0, atol=2e-6)
    np.testing.assert_allclose(p[cut:], reference_adam(p0[cut:].astype(np.float64), [g[cut:] for g in g64], 0.0003),
                               rtol=0, atol=1e-6)   # float32 rounding of p ~ 2.4e-7


def test_adam_moments_never_go_subnormal():
    """A unit that dies has zero gradients: its moments decay to 0 without subnormals."""
    n = 64
    p = np.ones(n, np.float32)
    opt = ff.Adam(np.zeros(n, np.float32), np.zeros(n, np.float32))
    opt.step(p, np.full(n, 1e-3, np.float32), [ff.Part(0, n, 0, 0.003)])
    tiny = np.finfo(np.float32).tiny
    for _ in range(2000):
        opt.step(p, np.zeros(n, np.float32), [ff.Part(0, n, 0, 0.003)])
        for state in (opt.m, opt.v, p):
            assert not ((state != 0) & (np.abs(state) < tiny)).any()
    assert np.abs(opt.m).max() <= 5 * 2.0 ** -123


def test_smoothed_sgd_matches_hintons_update():
    """g = 0.9 g + 0.1 grad; W += -lr (g + wc W); biases (last n_bias entries) without wc."""
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(10)
    grads_seq = [rng.standard_normal(10) for _ in range(3)]
    opt, p = ff.SmoothedSGD(np.zeros(10), 0.9, 0.001), p0.copy()
    for g in grads_seq:
        opt.step(p, g.copy(), [ff.Part(0, 6, 2, 0.01), ff.Part(6, 10, 1, 0.005)])
    q, s = p0.copy(), np.zeros(10)
    lr = np.array([0.01] * 6 + [0.005] * 4)
    decays = np.array([1, 1, 1, 1, 0, 0, 1, 1, 1, 0])
    for g in grads_seq:
        s = 0.9 * s + 0.1 * g
        q = q - lr * (s + 0.001 * decays * q)
    np.testing.assert_allclose(p, q, rtol=1e-6)


def test_param_parts_cover_the_vector():
    cfg = ff.Config(layer_sizes=[784, 8, 6], deep_lr_scale=0.1, lr=0.01)
    parts = ff.param_parts(cfg, 0.01)
    assert parts == [(0, 785 * 8, 8, 0.01), (785 * 8, 785 * 8 + 9 * 6, 6, pytest.approx(0.001))]


def test_cooldown_schedule():
    cfg = ff.Config(lr=0.01, lr_schedule="cooldown")
    lrs = [ff.lr_at(cfg, s, 100) for s in range(100)]
    assert lrs[:50] == [0.01] * 50
    assert lrs[50] == pytest.approx(0.01) and lrs[99] == pytest.approx(0.01 / 50)
    assert all(a > b for a, b in zip(lrs[50:], lrs[51:]))
    assert ff.lr_at(ff.Config(lr=0.01), 99, 100) == 0.01


def test_hard_labels_follow_softmax_of_wrong_labels():
    rng = np.random.default_rng(0)
    n = 60000
    y = np.full(n, 3)
    scores = np.tile(np.array([0, 1, 2, 9, 0, 0, 0, 0, 0, 0.5]), (n, 1))
    y_neg = ff.draw_hard_labels(y, scores, rng)
    assert (y_neg != 3).all()
    p = np.exp(np.delete(scores[0], 3))
    p /= p.sum()
    freq = np.bincount(y_neg, minlength=10)[np.arange(10) != 3] / n
    np.testing.assert_allclose(freq, p, atol=0.01)


@pytest.mark.parametrize("max_shift", [1, 2])
def test_jitter_shifts_every_image_within_bounds(max_shift):
    """Each image moves by exactly its own (dy, dx), |dy|, |dx| <= max_shift, zero fill."""
    rng = np.random.default_rng(0)
    x = np.zeros((200, 784), np.float32)
    x.reshape(200, 28, 28)[:, 14, 14] = 1                          # one bright pixel mid-image
    shifts = rng.integers(-max_shift, max_shift + 1, size=(200, 2))
    out = ff.jitter_images(x, shifts, max_shift).reshape(200, 28, 28)
    np.testing.assert_array_equal(np.argwhere(out)[:, 1:] - 14, shifts)   # each by its own shift
    ys, xs = np.nonzero(out.sum(axis=0))
    assert out.sum() == 200 and (out.reshape(200, -1).sum(1) == 1).all()
    where = np.argwhere(out)[:, 1:] - 14
    assert np.abs(where).max() == max_shift
    assert len({tuple(w) for w in where}) == (2 * max_shift + 1) ** 2   # every offset occurs


def test_every_name_of_the_papers_map_is_defined_above_the_fast_section():
    """The module docstring maps the paper's sentences to functions; each of them must be
    defined in the plain method section, above the line that starts the speed-ups."""
    import ast
    import re
    source = Path(ff.__file__).read_text()
    lines = source.splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.startswith("# The same step, fast"))
    doc = ast.get_docstring(ast.parse(source))
    table = doc[doc.index("The paper, sentence by sentence"):doc.index("Reading order")]
    names = set()
    for row in table.splitlines()[2:]:
        column = re.search(r"\S\s{2,}([a-z_][a-z0-9_, ]*)$", row)  # the names, after a gap
        if column:
            names.update(re.findall(r"[a-z_][a-z0-9_]*", column.group(1)))
    assert len(names) >= 15, names
    defined = {node.name: node.lineno for node in ast.parse(source).body
               if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assert not names - set(defined), f"not defined: {names - set(defined)}"
    nodes = {node.name: node for node in ast.parse(source).body
             if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    reached, todo = set(), list(names)
    while todo:                                     # the map's names and all they call
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        todo += [n.id for n in ast.walk(nodes[name]) if isinstance(n, ast.Name) and n.id in nodes]
    below = {n: defined[n] for n in reached if defined[n] > line}
    assert not below, f"reached from the map but defined below line {line}: {below}"
