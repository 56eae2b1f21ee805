"""The ByteDMD cost model (benchmarks/dmd.py): the closed form against a loop, the Fenwick
stack against a literal list-based LRU, ByteDMD's own published numbers at element
granularity, the tiled-GEMM model and the steady-state helper.

ByteDMD numbers are from github.com/cybertronai/ByteDMD at commit 2cc2a62b (README.md,
test_bytedmd.py, benchmarks/benchmark_linalg.py, benchmarks/benchmark_microgpt.py)."""

import math
import random
import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import dmd  # noqa: E402


# ---------------------------------------------------------------- the closed form

def test_sqrt_ceil_sum_equals_a_loop():
    total = 0
    for n in range(1, 3000):
        total += math.ceil(math.sqrt(n))                  # exact in floats at this size
        assert dmd.sqrt_ceil_sum(n) == total
    assert dmd.sqrt_ceil_sum(0) == 0


@pytest.mark.parametrize("seed", range(3))
def test_block_cost_equals_a_per_byte_loop(seed):
    rng = random.Random(seed)
    for _ in range(300):
        d0, s = rng.randrange(0, 10 ** 5), rng.randrange(1, 400)
        loop = sum(math.isqrt(d - 1) + 1 for d in range(d0 + 1, d0 + s + 1))
        assert dmd.block_cost(d0, s) == loop
    big = 10 ** 15                                        # exact where floats are not
    assert dmd.block_cost(big, 3) == sum(math.isqrt(d - 1) + 1 for d in range(big + 1, big + 4))


# ---------------------------------------------------------------- the stack against a literal LRU

def literal_price(trace, live_out=()):
    """The ByteDMD rules read literally: a Python list of [key, nbytes] blocks (top last),
    every byte priced on its own. Returns (cost per event, live bytes per event)."""
    last = {}
    for i, ev in enumerate(trace):
        for key, _ in ev.reads:
            last[key] = i
    stack, costs, live = [], [], []
    for i, ev in enumerate(trace):
        keys = [k for k, _ in stack]
        above = {k: sum(nb for _, nb in stack[keys.index(k) + 1:]) for k, _ in ev.reads}
        costs.append(sum(math.ceil(math.sqrt(above[k] + b)) for k, nb in ev.reads
                         for b in range(1, nb + 1)))
        for k in dict.fromkeys(k for k, _ in ev.reads):           # to the top, in read order
            j = [key for key, _ in stack].index(k)
            stack.append(stack.pop(j))
        stack += [[k, nb] for k, nb in ev.writes]
        dead = {k for k, _ in ev.reads if last[k] == i and k not in live_out}
        dead |= {k for k, _ in ev.writes if k not in last and k not in live_out}
        reused = sum(nb for k, nb in stack if k in dead and k in dict(ev.reads)
                     and any(k[0] == w[0] for w, _ in ev.writes))
        live.append(sum(nb for _, nb in stack) - reused)
        stack = [b for b in stack if b[0] not in dead]
    return costs, live


def random_trace(rng, n_events=150):
    """Events reading 0-3 earlier blocks (repeats and partial views allowed) and writing
    0-2 blocks, new buffers or new versions of old ones."""
    trace, written, version = [], [], {}
    for _ in range(n_events):
        reads = []
        for _ in range(rng.randrange(4) if written else 0):
            key, nb = rng.choice(written)
            reads.append((key, rng.randrange(1, nb + 1)))
        writes = []
        for _ in range(rng.randrange(3)):
            buf = rng.choice(list(version)) if version and rng.random() < 0.5 else len(version)
            version[buf] = version.get(buf, -1) + 1
            writes.append(((buf, version[buf]), rng.randrange(1, 30)))
        written += writes
        trace.append(dmd.Event("op", tuple(reads), tuple(writes)))
    return trace, [k for k, _ in rng.sample(written, min(5, len(written)))]


@pytest.mark.parametrize("seed", range(20))
def test_fenwick_stack_equals_literal_lru_on_random_traces(seed):
    trace, live_out = random_trace(random.Random(seed))
    priced = dmd.price_events(trace, live_out)
    costs, live = literal_price(trace, set(live_out))
    assert [sum(c for _, c in paid) for paid in priced.read_costs] == costs
    assert priced.live_bytes == live
    assert dmd.price(trace, live_out=live_out).total == sum(costs)


def test_reading_a_dead_or_unwritten_block_is_an_error():
    with pytest.raises(KeyError):
        dmd.price([dmd.Event("op", (((0, 0), 4),))])


# ---------------------------------------------------------------- ByteDMD's published numbers

def depths(func, args, itemsize=1):
    """ByteDMD's trace: each read's depth in elements (dmd measures bytes above it)."""
    trace, live_out, _ = dmd.element_trace(func, args, itemsize)
    return [d // itemsize + 1 for ds in dmd.price_events(trace, live_out).depths for d in ds]


def my_add(a, b, c):
    return (a + b) + c


def test_readme_walkthrough_my_add():
    # README "Example Walkthrough": total 6, trace [1, 2, 1, 2]; test_bytedmd.py: 14 at 2 bytes
    assert dmd.bytedmd(my_add, (1, 2, 3)) == 6
    assert depths(my_add, (1, 2, 3)) == [1, 2, 1, 2]
    assert dmd.bytedmd(my_add, (1, 2, 3), itemsize=2) == 14


def test_readme_usage_dot_product():
    # README "Usage": bytedmd(dot, ([0, 1], [2, 3])) == 12 (sum starts from the constant 0)
    assert dmd.bytedmd(lambda a, b: sum(i * j for i, j in zip(a, b)), ([0, 1], [2, 3])) == 12


def test_bytedmd_unit_tests():
    # test_bytedmd.py: test_dot_product, test_my_composite_func, test_repeated_operand...,
    # test_divmod_tuple_allocation_trace, test_branching_and_comparisons_trace
    def dot(a, b):
        return a[0] * b[0] + a[1] * b[1]
    assert depths(dot, ([0, 1], [2, 3])) == [2, 4, 2, 3, 2, 1]
    assert dmd.bytedmd(dot, ([0, 1], [2, 3])) == 11

    def composite(a, b, c, d):
        return (b + c) > (a + d)
    assert depths(composite, (1, 2, 3, 4)) == [2, 3, 2, 3, 2, 1]
    assert dmd.bytedmd(composite, (1, 2, 3, 4)) == 11
    assert depths(lambda a: a + a, (5,)) == [1, 1]

    def with_divmod(a, b):
        q, r = divmod(a, b)
        return q + r + a
    assert depths(with_divmod, (10, 3)) == [1, 2, 2, 1, 1, 2]

    def relu(a):
        return a * 2 if a > 0 else a
    assert depths(relu, (5,)) == [1, 1, 1] and depths(relu, (-5,)) == [1, 1]


def matvec(A, x):
    """y = A x, row by row, each sum started from the first product (ByteDMD's loop order)."""
    n = len(x)
    y = [None] * n
    for i in range(n):
        s = A[i][0] * x[0]
        for j in range(1, n):
            s = s + A[i][j] * x[j]
        y[i] = s
    return y


def vecmat(A, x):
    """y = x^T A, column by column."""
    n = len(x)
    y = [None] * n
    for j in range(n):
        s = x[0] * A[0][j]
        for i in range(1, n):
            s = s + x[i] * A[i][j]
        y[j] = s
    return y


def matmul_ijk(A, B):
    """C = A B, naive i-j-k."""
    n = len(A)
    C = [[None] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            s = A[i][0] * B[0][j]
            for k in range(1, n):
                s = s + A[i][k] * B[k][j]
            C[i][j] = s
    return C


def test_readme_ir_matvec2():
    # README "Inspecting the IR": matvec2 on ([[1,2],[3,4]], [5,6]), the READ depths, total 26
    A, x = [[1, 2], [3, 4]], [5, 6]
    assert depths(matvec, (A, x)) == [4, 6, 5, 6, 3, 1, 5, 3, 4, 3, 2, 1]
    assert dmd.bytedmd(matvec, (A, x)) == 26


# README "Linear algebra (benchmark_linalg.py)" table, np.ones inputs
LINALG_TABLE = {2: (26, 25, 57), 4: (157, 150, 720), 8: (896, 832, 8867), 16: (5354, 4688, 109783)}


@pytest.mark.parametrize("n", sorted(LINALG_TABLE))
def test_readme_linear_algebra_table(n):
    A, B, x = np.ones((n, n)), np.ones((n, n)), np.ones(n)
    got = (dmd.bytedmd(matvec, (A, x)), dmd.bytedmd(vecmat, (A, x)), dmd.bytedmd(matmul_ijk, (A, B)))
    assert got == LINALG_TABLE[n]


def test_bytedmd_matvec_costs_2_to_8():
    # test_bytedmd.py test_matvec_costs
    mv = {2: 26, 3: 75, 4: 157, 5: 270, 6: 422, 7: 615, 8: 896}
    vm = {2: 25, 3: 72, 4: 150, 5: 258, 6: 397, 7: 572, 8: 832}
    for n in mv:
        A, x = np.ones((n, n)), np.ones(n)
        assert (dmd.bytedmd(matvec, (A, x)), dmd.bytedmd(vecmat, (A, x))) == (mv[n], vm[n])


def test_readme_microgpt_forward():
    # README "microGPT single-token forward pass": 3214 (benchmarks/benchmark_microgpt.py:
    # vocab 4, embd 4, 2 heads of 2, one layer, all weights 1.0, token 0 at position 0)
    def linear(x, w):
        return [sum(wi * xi for wi, xi in zip(row, x)) for row in w]

    def rmsnorm(x):
        scale = (sum(xi * xi for xi in x) * (1.0 / len(x))) ** -0.5
        return [xi * scale for xi in x]

    def forward(wte, wpe, lm_head, wq, wk, wv, wo, fc1, fc2):
        x = rmsnorm([t + p for t, p in zip(wte[0], wpe[0])])
        residual, x = x, rmsnorm(x)
        q, k, v = linear(x, wq), linear(x, wk), linear(x, wv)
        heads = []
        for h in range(2):                                 # the score is computed, then unused
            _ = sum(q[2 * h + j] * k[2 * h + j] for j in range(2)) / 2 ** 0.5
            heads += v[2 * h:2 * h + 2]
        x = [a + b for a, b in zip(linear(heads, wo), residual)]
        residual, x = x, linear(rmsnorm(x), fc1)
        x = linear([xi * (xi > 0) for xi in x], fc2)
        return linear([a + b for a, b in zip(x, residual)], lm_head)

    ones = [[[1.0] * i for _ in range(o)] for o, i in
            [(4, 4), (4, 4), (4, 4), (4, 4), (4, 4), (4, 4), (4, 4), (16, 4), (4, 16)]]
    assert dmd.bytedmd(forward, tuple(ones)) == 3214


# ---------------------------------------------------------------- the tiled-GEMM model

def gemm_trace(M, K, N, itemsize=4, above=0):
    """Load B, load A, `above` bytes of other data on top, then C = A B."""
    ev = [dmd.Event("load", (), (((1, 0), K * N * itemsize),)),
          dmd.Event("load", (), (((0, 0), M * K * itemsize),))]
    if above:
        ev.append(dmd.Event("load", (), (((9, 0), above),)))
    ev.append(dmd.Event("matmul", (((0, 0), M * K * itemsize), ((1, 0), K * N * itemsize)),
                        (((2, 0), M * N * itemsize),), {"M": M, "K": K, "N": N, "itemsize": itemsize}))
    if above:
        ev.append(dmd.Event("op", (((9, 0), above),)))
    return ev


def literal_tiled(d0_a, d0_b, M, K, N, itemsize, T):
    """The tile schedule of dmd.tiled_gemm_cost on a literal list (top last), byte by byte."""
    tiles = {}
    for name, rows, cols in (("A", M, K), ("B", K, N)):
        tiles[name] = [((name, i, j), min(T, rows - i * T) * min(T, cols - j * T) * itemsize)
                       for i in range(-(-rows // T)) for j in range(-(-cols // T))]
    (d_deep, deep), (d_top, top) = sorted([(d0_a, "A"), (d0_b, "B")], reverse=True)
    n_top = sum(nb for _, nb in tiles[top])
    stack = (list(reversed(tiles[deep])) + [(("gap",), d_deep - d_top - n_top)]   # deepest first
             + list(reversed(tiles[top])) + [(("above",), d_top)])
    stack = [b for b in stack if b[1]]
    cost = 0
    for i in range(-(-M // T)):
        for j in range(-(-N // T)):
            for k in range(-(-K // T)):
                reads = [("A", i, k), ("B", k, j)] + ([("C", i, j)] if k else [])
                keys = [key for key, _ in stack]
                for r in reads:
                    at = keys.index(r)
                    d0 = sum(nb for _, nb in stack[at + 1:])
                    cost += sum(math.isqrt(d0 + b - 1) + 1 for b in range(1, stack[at][1] + 1))
                for r in reads:
                    at = [key for key, _ in stack].index(r)
                    stack.append(stack.pop(at))
                if k == 0:
                    stack.append((("C", i, j), min(T, M - i * T) * min(T, N - j * T) * itemsize))
    return cost


@pytest.mark.parametrize("d0_a,d0_b", [(0, 80), (100, 0), (7, 300)])
def test_tiled_gemm_equals_a_literal_tile_schedule(d0_a, d0_b):
    M, K, N, T = 5, 7, 3, 2
    fast = sum(dmd.tiled_gemm_cost(d0_a, d0_b, M, K, N, 2, T))
    assert fast == literal_tiled(d0_a, d0_b, M, K, N, 2, T)


@pytest.mark.parametrize("above", [0, 1000])
def test_tiled_gemm_bounds(above):
    """One tile covering each matrix is the array model; any tiling costs at least that
    (a byte's first read is no shallower than in the array model: bytes only pile on top
    of it until it is read, and later reads add cost); with K <= T no partial sum of C is
    read back."""
    M, K, N = 12, 10, 8
    trace = gemm_trace(M, K, N, above=above)
    array = dmd.price(trace, live_out=[(2, 0)]).total
    assert dmd.price(trace, live_out=[(2, 0)], tile=max(M, K, N)).total == array
    for T in (1, 2, 3, 4, 6, 8):
        assert dmd.price(trace, live_out=[(2, 0)], tile=T).total > array
    d0_a, d0_b = above, above + M * K * 4
    assert dmd.tiled_gemm_cost(d0_a, d0_b, M, K, N, 4, 10)[2] == 0
    assert dmd.tiled_gemm_cost(d0_a, d0_b, M, K, N, 4, 5)[2] > 0


# ---------------------------------------------------------------- steady state

def test_steady_state_finds_the_repeating_step():
    """A weight W updated by each step's fresh data: step 0 is cold, later steps repeat."""
    trace, starts = [dmd.Event("load", (), (((0, 0), 64),))], []
    for t in range(5):
        starts.append(len(trace))
        x, h = (100 + t, 0), (200 + t, 0)
        trace += [dmd.Event("load", (), ((x, 32),)),
                  dmd.Event("matmul", ((x, 32), ((0, t), 64)), ((h, 16),)),
                  dmd.Event("sub", (((0, t), 64), (h, 16)), (((0, t + 1), 64),))]
    i, step = dmd.steady_state(trace, starts, live_out=[(0, 5)])
    totals = [dmd.summarize(trace, dmd.price_events(trace, [(0, 5)]), None, lo, hi).total
              for lo, hi in zip(starts, starts[1:] + [len(trace)])]
    assert i is not None and step.total == totals[i] == totals[i - 1]
    assert step.n_events == 3 and step.per_op["load"] == 0


def test_tiled_steady_state_tiles_only_the_repeating_pair():
    """Tiling a GEMM leaves the stack as the array model does, so pricing only the last
    steps tiled gives the same step cost as tiling every step."""
    trace, starts = [dmd.Event("load", (), (((0, 0), 6 * 5 * 4),))], []
    for t in range(4):
        starts.append(len(trace))
        x, h = (100 + t, 0), (200 + t, 0)
        gemm = {"M": 3, "K": 6, "N": 5, "itemsize": 4}
        trace += [dmd.Event("load", (), ((x, 3 * 6 * 4),)),
                  dmd.Event("matmul", ((x, 72), ((0, t), 120)), ((h, 60),), gemm),
                  dmd.Event("sub", (((0, t), 120), (h, 60)), (((0, t + 1), 120),))]
    i, step = dmd.steady_state(trace, starts, live_out=[(0, 4)], tile=2)
    everywhere = dmd.price_events(trace, [(0, 4)], tile=2)
    assert step.total == dmd.summarize(trace, everywhere, None, starts[i], starts[i + 1]).total
    assert step.total > dmd.steady_state(trace, starts, live_out=[(0, 4)])[1].total


def test_steady_state_raises_when_no_step_repeats():
    """Steps that grow (each reads a bigger fresh block) never cost the same: no silent
    fallback to the last step."""
    trace, starts = [], []
    for t in range(4):
        starts.append(len(trace))
        trace += [dmd.Event("load", (), (((t, 0), 10 * (t + 1)),)), dmd.Event("read", (((t, 0), 10 * (t + 1)),))]
    with pytest.raises(dmd.NoSteadyState):
        dmd.steady_state(trace, starts)


# ---------------------------------------------------------------- reads through a slice

def test_a_chunked_pass_is_priced_at_each_chunks_position():
    """A block read in chunks, first to last: each chunk is priced at its offset inside the
    block, so the pass costs what one read of the block costs, and what ByteDMD's element
    model charges for the same loop over elements whose first one is on top."""
    n, chunk, item = 64, 16, 4
    chunks = [dmd.Event("load", (), (((1, 0), n * item),))]
    chunks += [dmd.Event("read", (((1, 0), chunk * item),), offsets=(k * chunk * item,) if k else ())
               for k in range(n // chunk)]
    whole = [chunks[0], dmd.Event("read", (((1, 0), n * item),))]
    elements = [dmd.Event("load", (), (((2 + i, 0), item),)) for i in reversed(range(n))]   # 0 on top
    elements += [dmd.Event("read", (((2 + i, 0), item),)) for i in range(n)]
    keep = [(1, 0)] + [(2 + i, 0) for i in range(n)]               # live after the pass
    cost = dmd.price(chunks, live_out=keep).total
    assert cost == dmd.price(whole, live_out=keep).total == dmd.price(elements, live_out=keep).total
    at_the_top = sum(dmd.block_cost(0, chunk * item) for _ in range(n // chunk))
    assert cost > 1.5 * at_the_top                   # what pricing every chunk from the top gave


def test_the_recorder_gives_a_slices_offset():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from recording import Recorder
    rec = Recorder()
    a = rec.wrap(np.zeros(64, np.float32), "optimizer", 0)
    a[16:32].sum()
    ev = rec.trace[-1]
    assert ev.reads[0][1] == 64 and ev.offsets == (64,)


def test_an_object_passed_twice_is_wrapped_once():
    """bytedmd.py wraps each argument object once (by id): f(a, a) is f's cost on one a."""
    a = [1, 2, 3, 4]
    assert dmd.bytedmd(lambda x, y: x[0] + y[0], [a, a]) == dmd.bytedmd(lambda x: x[0] + x[0], [a]) == 2
    assert dmd.bytedmd(lambda x, y: x[0] + y[0], [a, list(a)]) == 3           # two lists: two scalars
