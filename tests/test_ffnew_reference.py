"""One --recipe hinton training step against Hinton's own code, end to end, in float64.

`ffnew_step` below is a line-by-line transcription of one minibatch of ffnew.m, the
Forward-Forward script Hinton released with the paper (arXiv:2212.13345; read from the
copy in alessiopittiglio/forward-forward-matlab, src/hinton_forward_forward/), written
from the MATLAB alone, in its names and order: the positive pass with the running mean
activities and the peer term, the neutral-label pass, the softmax head's update, the
negatives drawn from the head's logits as they were before that update, the negative
pass, then the smoothed update of every layer with its weight cost. The module's step
must give the same weights, biases, head and running means to rounding, step after step.
The per-piece tests check each gradient; this one pins the order of the pieces.

Where our code knowingly differs from ffnew.m, and why that does not show here:
  - the gain (learning-rate multiplier) falls per step in ours, per epoch in ffnew.m; both
    are 1 in the first half of training, and the steps here are taken at gain 1;
  - ffnormrows.m divides by tiny + sqrt(mean(a^2)) (tiny = exp(-100)); ours by
    sqrt(mean(a^2) + RMS_EPS). That is a relative difference of ~1e-8 per normalisation, so
    the transcription takes our epsilon inside the root (argument eps_inside; ffnew.m's
    is 0) and keeps tiny outside, where it is below rounding;
  - ffnew.m trains on mnistdata.mat's 500 fixed batches of 100 (50,000 images in a fixed
    order), we on all 60,000 reshuffled every epoch: here both get the same batch;
  - ffnew.m calls a `softmax` the release does not ship, and it must work row-wise (one
    distribution per case) for choosefrom to make sense: `softmax` below is that;
  - ffnew.m's label softmax has biases (biases{numlayers}) that start at zero and are
    never updated; ours has none.
"""

import dataclasses

import numpy as np
import pytest

from conftest import ff

SIZES = [784, 24, 16, 12]     # three hidden layers, as ffnew.m's layernums {784 1000 1000 1000 10}
B = 20                        # cases in the minibatch (ffnew.m: numcases = 100)
N_STEPS = 3


def module_step(state, cfg, x, y, u, lr):
    """One step of the module on (x, y); u (B,) are the uniforms that pick each negative
    label (inverse CDF of the head's softmax over the 9 wrong labels)."""
    grads = np.empty_like(state.net.params)
    stats, head_loss = ff.train_step(state, cfg, [ff.Batch(x, y, uniforms=u)], [lr], grads)
    return stats[0], head_loss


class Float64:
    """A stand-in array module for ff.to_device: every array of the state becomes float64."""
    @staticmethod
    def asarray(a):
        return np.array(a, dtype=np.float64)


def float64_arrays(state):
    """Every floating array of the training state (to check none is left in float32)."""
    arrays = [state.net.params, *state.peer_means]
    arrays += [] if state.net.head is None else [state.net.head]
    for opt in (state.opt, state.head_opt):
        arrays += [v for v in vars(opt).values() if isinstance(v, np.ndarray)]
    return arrays


# ----------------------------------------------------------------------------
# ffnew.m, one minibatch. Layers are 0-based hidden layers: l = 0, 1, 2 here are ffnew.m's
# 2, 3, 4 (its layer 1 is the input, numlayers the label softmax).
# ----------------------------------------------------------------------------

FFNEW = dict(epsilon=0.01, epsilonsup=0.1, delay=0.9, wc=0.001, supwc=0.003, lambdamean=0.03,
             epsgain=1.0, labelstrength=1.0, temp=1.0, minlevelsup=1)   # its minlevelsup = 3


def ffnormrows(a, eps_inside):
    """ffnormrows.m: every row scaled to mean square 1 (eps_inside: see the module docstring)."""
    tiny = np.exp(-100)
    return a / (tiny + np.sqrt(np.mean(a ** 2, axis=1, keepdims=True) + eps_inside))


def logistic(x):
    return 1 / (1 + np.exp(-x))


def softmax(a):
    """The row-wise softmax ffnew.m calls."""
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def choosefrom(probs, u):
    """choosefrom.m, its rand(1,1) per case given as u: the first label whose cumulative
    probability exceeds u, as a one-hot row."""
    out = np.zeros_like(probs)
    for n in range(len(probs)):
        sumsofar = 0.0
        for lab in range(probs.shape[1]):
            sumsofar += probs[n, lab]
            if u[n] < sumsofar:
                out[n, lab] = 1
                break
    assert out.sum(axis=1).min() == 1, "choosefrom picked no label"
    return out


def ffnew_step(p, data, y, u, eps_inside, head_first=False):
    """One minibatch of ffnew.m's loop. p: dict of lists of float64 arrays, per hidden layer
    l: weights (D_l, D_{l+1}), biases (D_{l+1},), weightsgrad, biasesgrad (smoothed, in
    ffnew.m's sign: the direction that raises the log probability), meanstates; for
    l >= minlevelsup: supweightsfrom (D_{l+1}, 10) and supweightsfromgrad. data (B, 784),
    y (B,) labels, u (B,) choosefrom's uniforms. Returns (new p, the negative labels, the
    logits they were drawn from). head_first=True draws them from the head as it is after
    its update: the wrong order, for the test that this test can tell the two apart."""
    h = FFNEW
    p = {k: [None if a is None else a.copy() for a in v] for k, v in p.items()}
    L = len(p["weights"])
    numcases, numlab = len(data), 10
    layernums = [w.shape[1] for w in p["weights"]]
    targets = np.eye(numlab)[y]
    data = data.copy()

    # positive pass: the true label
    data[:, :10] = h["labelstrength"] * targets
    normstates = ffnormrows(data, eps_inside)
    posdCbydweights, posdCbydbiases, posprobs = [], [], []
    for l in range(L):
        totin = normstates @ p["weights"][l] + p["biases"][l]
        states = np.maximum(0, totin)
        posprobs.append(logistic((np.sum(states ** 2, axis=1) - layernums[l]) / h["temp"]))
        dCbydin = (1 - posprobs[l])[:, None] * states
        p["meanstates"][l] = 0.9 * p["meanstates"][l] + 0.1 * states.mean(axis=0)
        dCbydin = dCbydin + h["lambdamean"] * (p["meanstates"][l].mean() - p["meanstates"][l])
        posdCbydweights.append(normstates.T @ dCbydin)                # not gated by states > 0
        posdCbydbiases.append(dCbydin.sum(axis=0))
        normstates = ffnormrows(states, eps_inside)

    # neutral pass: 1/10 in every label pixel; its normalised states feed the softmax
    data[:, :10] = h["labelstrength"] * np.ones((numcases, numlab)) / numlab
    normstates = [ffnormrows(data, eps_inside)]
    for l in range(L):
        totin = normstates[l] @ p["weights"][l] + p["biases"][l]
        normstates.append(ffnormrows(np.maximum(0, totin), eps_inside))

    def label_logits():
        labin = np.zeros((numcases, numlab))                         # biases{numlayers}: zero
        for l in range(h["minlevelsup"], L):
            labin = labin + normstates[l + 1] @ p["supweightsfrom"][l]
        return labin - labin.max(axis=1, keepdims=True)

    labin = label_logits()
    trainpredictions = softmax(labin)
    dCbydin_lab = targets - trainpredictions
    for l in range(h["minlevelsup"], L):
        dCbydsupweightsfrom = normstates[l + 1].T @ dCbydin_lab
        p["supweightsfromgrad"][l] = (h["delay"] * p["supweightsfromgrad"][l]
                                      + (1 - h["delay"]) * dCbydsupweightsfrom / numcases)
        p["supweightsfrom"][l] = p["supweightsfrom"][l] + h["epsgain"] * h["epsilonsup"] * (
            p["supweightsfromgrad"][l] - h["supwc"] * p["supweightsfrom"][l])
    if head_first:
        labin = label_logits()

    # negative data: a wrong label drawn from the softmax of the logits above
    negdata = data.copy()
    labinothers = labin - 1000 * targets                             # never the true label
    negdata[:, :10] = h["labelstrength"] * choosefrom(softmax(labinothers), u)
    y_neg = negdata[:, :10].argmax(axis=1)
    normstates = ffnormrows(negdata, eps_inside)
    negdCbydweights, negdCbydbiases = [], []
    for l in range(L):
        totin = normstates @ p["weights"][l] + p["biases"][l]
        states = np.maximum(0, totin)
        negprobs = logistic((np.sum(states ** 2, axis=1) - layernums[l]) / h["temp"])
        dCbydin = (-negprobs)[:, None] * states
        negdCbydweights.append(normstates.T @ dCbydin)
        negdCbydbiases.append(dCbydin.sum(axis=0))
        normstates = ffnormrows(states, eps_inside)

    # the update: gradients smoothed over minibatches, weight cost on the weights only
    for l in range(L):
        p["weightsgrad"][l] = (h["delay"] * p["weightsgrad"][l] + (1 - h["delay"])
                               * (posdCbydweights[l] + negdCbydweights[l]) / numcases)
        p["biasesgrad"][l] = (h["delay"] * p["biasesgrad"][l] + (1 - h["delay"])
                              * (posdCbydbiases[l] + negdCbydbiases[l]) / numcases)
        p["biases"][l] = p["biases"][l] + h["epsgain"] * h["epsilon"] * p["biasesgrad"][l]
        p["weights"][l] = p["weights"][l] + h["epsgain"] * h["epsilon"] * (
            p["weightsgrad"][l] - h["wc"] * p["weights"][l])
    return p, y_neg, labin


# ----------------------------------------------------------------------------
# The comparison.
# ----------------------------------------------------------------------------

def hinton_cfg(step=None):
    cfg = ff.parse_args(["--recipe", "hinton", "--layer-sizes", ",".join(map(str, SIZES)),
                         "--batch-size", str(B)])[1]
    return cfg if step is None else dataclasses.replace(cfg, step=step)


def start(cfg, seed=0):
    """(module state in float64, the same numbers as ffnew.m's p, data, labels).

    From ff.init_state, with every weight scaled by sqrt(2) (so sum(h^2) sits near D and
    both logistic terms carry weight), random biases and a random head (so the negatives
    are hard from the first step); the smoothed gradients start at zero, as ffnew.m's."""
    rng = np.random.default_rng(seed)
    state = ff.to_device(ff.init_state(cfg), Float64)
    assert all(a.dtype == np.float64 for a in float64_arrays(state))
    net = state.net
    for W, b in zip(net.W, net.b):
        W *= np.sqrt(2)
        b[...] = 0.1 * rng.standard_normal(b.shape)
    net.head[...] = rng.standard_normal(net.head.shape)
    L = len(SIZES) - 1
    heads = np.split(net.head, np.cumsum(SIZES[2:-1]))               # rows per layer 1..L-1
    p = {"weights": [W.copy() for W in net.W], "biases": [b.copy() for b in net.b],
         "weightsgrad": [np.zeros_like(W) for W in net.W],
         "biasesgrad": [np.zeros_like(b) for b in net.b],
         "meanstates": [np.full(d, 0.5) for d in SIZES[1:]],        # ffnew.m: 0.5*ones
         "supweightsfrom": [None] + [h.copy() for h in heads],
         "supweightsfromgrad": [None] + [np.zeros_like(h) for h in heads]}
    assert len(p["supweightsfrom"]) == L
    x = rng.random((N_STEPS, B, 784)) * (rng.random((N_STEPS, B, 784)) < 0.3)   # sparse images
    y = rng.integers(0, 10, (N_STEPS, B))
    return state, p, x, y


def assert_same(state, p, step):
    """The module's weights, biases, head and running means equal ffnew.m's, to rounding."""
    net = state.net
    for l in range(len(SIZES) - 1):
        np.testing.assert_allclose(net.W[l], p["weights"][l], rtol=1e-10, atol=1e-13,
                                   err_msg=f"step {step}, W{l}")
        np.testing.assert_allclose(net.b[l], p["biases"][l], rtol=1e-10, atol=1e-13,
                                   err_msg=f"step {step}, b{l}")
        np.testing.assert_allclose(state.peer_means[l], p["meanstates"][l], rtol=1e-10,
                                   atol=1e-13, err_msg=f"step {step}, running means of layer {l}")
    np.testing.assert_allclose(net.head, np.concatenate(p["supweightsfrom"][1:]), rtol=1e-10,
                               atol=1e-13, err_msg=f"step {step}, head")


def test_hinton_recipe_has_ffnew_constants():
    """The recipe's numbers are ffnew.m's; the transcription uses ffnew.m's own."""
    cfg = hinton_cfg()
    h = FFNEW
    assert (cfg.lr, cfg.head_lr, cfg.smoothing, cfg.weight_cost, cfg.head_weight_cost,
            cfg.peer_norm) == (h["epsilon"], h["epsilonsup"], h["delay"], h["wc"], h["supwc"],
                               h["lambdamean"])
    assert (cfg.threshold, cfg.logit_scale, cfg.peer_gate, cfg.input_norm, cfg.neg_sampling,
            cfg.softmax_head, cfg.init, cfg.optimizer) == (1.0, "D", "none", "rms", "softmax",
                                                           True, "normal", "sgd")
    assert ff.PEER_DECAY == 0.9 and ff.PEER_START == 0.5 and ff.NEUTRAL_LABEL == 0.1


@pytest.mark.parametrize("step", ["fast", "plain"])
def test_hinton_step_is_ffnew_step(step):
    """N_STEPS minibatches, the same uniforms for the negatives in both: the same numbers."""
    cfg = hinton_cfg(step)
    state, p, x, y = start(cfg)
    u = np.random.default_rng(1).random((N_STEPS, B))
    for k in range(N_STEPS):
        module_step(state, cfg, x[k], y[k], u[k], cfg.lr)           # lr = cfg.lr: gain 1
        p, y_neg, _ = ffnew_step(p, x[k], y[k], u[k], eps_inside=ff.RMS_EPS)
        assert (y_neg != y[k]).all()
        assert_same(state, p, k + 1)
    assert all(a.dtype == np.float64 for a in float64_arrays(state))   # it ran in float64


def test_the_reference_tells_the_head_update_order():
    """Negatives drawn from the head after its update give other weights than the module's:
    a uniform between the two orders' cumulative probabilities picks a different label."""
    cfg = hinton_cfg()
    state, p, x, y = start(cfg)
    u = np.random.default_rng(1).random(B)
    _, _, before = ffnew_step(p, x[0], y[0], u, ff.RMS_EPS)
    _, _, after = ffnew_step(p, x[0], y[0], u, ff.RMS_EPS, head_first=True)
    others = np.eye(10)[y[0]] * 1000
    cdf_before = np.cumsum(softmax(before - others), axis=1)
    cdf_after = np.cumsum(softmax(after - others), axis=1)
    row, lab = np.unravel_index(np.argmax(np.abs(cdf_before - cdf_after)[:, :-1]), (B, 9))
    u[row] = (cdf_before[row, lab] + cdf_after[row, lab]) / 2       # between the two boundaries
    right, y_right, _ = ffnew_step(p, x[0], y[0], u, ff.RMS_EPS)
    wrong, y_wrong, _ = ffnew_step(p, x[0], y[0], u, ff.RMS_EPS, head_first=True)
    assert y_right[row] != y_wrong[row]
    module_step(state, cfg, x[0], y[0], u, cfg.lr)
    assert_same(state, right, 1)
    with pytest.raises(AssertionError):
        assert_same(state, wrong, 1)
