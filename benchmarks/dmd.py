"""ByteDMD: Data Movement Distance (Ding & Smith 2022, arXiv 2203.02536) at byte
granularity, as the cybertronai/ByteDMD README states it, over traces of array operations.

The rules (ByteDMD README, "Computation Model" and "Instruction Semantics"):
  1. memory is an LRU stack of bytes; depth 1 is the most recently used byte;
  2. reading the byte at depth d costs ceil(sqrt(d)); computing and writing are free;
  3. all inputs of an instruction are priced against the stack as it was before it
     (a block read twice by one instruction is charged twice, at the same depth);
  4. then the distinct inputs move to the top in read order (the last one read ends on
     top), and the outputs are pushed on top, in order, for free;
  5. a value leaves the stack right after its last read, and one never read again
     leaves right after it is written (ByteDMD's liveness pass); a value in `live_out`
     (ByteDMD: the function's results) never leaves.

Trace format
------------
A trace is a list of Event(op, reads, writes, meta):
  op      the operation's name ("matmul", "add", "load", "to_host", ...);
  reads   the blocks it reads, in argument order, as (key, nbytes);
  writes  the blocks it writes, in order, as (key, nbytes);
  meta    None or a dict; a GEMM C = A B carries M, K, N and itemsize (A (M, K),
          B (K, N) are its first two reads).
A block's key is (buffer id, version): a write makes a new version, so a key is written
once and read any number of times after. A write's nbytes is the block's size; a read's
nbytes may be smaller (a view reads part of a block): a block's bytes lie in address
order from its top down, so a read of nbytes at offset o (Event.offsets) is priced at
depths d0 + o + 1 .. d0 + o + nbytes, and the whole block moves. (A chunked pass over a
block then costs what one read of it costs, as in the element model.) A "load" event (writes, no reads) puts
inputs on the stack; an event with reads and no writes (e.g. "to_host") only reads.
`tags` map a key to (kind, layer), e.g. ("weights", 0); the recorder makes them.

Three models:
  array granularity (price, tile=None): each buffer version is one block, read once
      per op. For a GEMM that is the ideal-tiling lower bound: every input byte is read
      exactly once, as if the whole product fit at the top of the stack;
  tiled GEMM (price, tile=T): each GEMM event instead runs C = A B as T x T tiles in
      i-j-k order against a copy of the stack as it stood before the GEMM (A and B laid
      out tile by tile in their blocks' depth ranges, a C tile read back for every k after
      the first); the stack after the GEMM is the array model's;
  element granularity (element_trace, bytedmd): each Python scalar is its own block of
      itemsize bytes and every scalar operation an event, as ByteDMD's own tracer does;
      it reproduces ByteDMD's published numbers (tests/test_dmd.py).
"""

import math
import operator
from dataclasses import dataclass, field
from typing import NamedTuple


class Event(NamedTuple):
    """One operation: the blocks (key, nbytes) it reads and writes; see the module docstring.
    offsets: for each read, where its bytes start inside the block (empty: all at 0)."""
    op: str
    reads: tuple = ()
    writes: tuple = ()
    meta: dict | None = None
    offsets: tuple = ()


# ----------------------------------------------------------------------------
# Exact pricing of a block: S(n) = sum_{d=1}^{n} ceil(sqrt(d)) in closed form.
# ----------------------------------------------------------------------------

def ceil_sqrt(d: int) -> int:
    """ceil(sqrt(d)) in exact integers, d >= 1."""
    return math.isqrt(d - 1) + 1


def sqrt_ceil_sum(n: int) -> int:
    """S(n) = sum_{d=1}^{n} ceil(sqrt(d)), exact.

    ceil(sqrt(d)) = m on the 2m - 1 depths (m-1)^2 < d <= m^2, so with M = ceil(sqrt(n))
    the full groups m < M give sum m (2m - 1) = (M-1) M (4M-5) / 6, and the last group
    adds M for each of the n - (M-1)^2 depths it reaches."""
    if n <= 0:
        return 0
    M = ceil_sqrt(n)
    return (M - 1) * M * (4 * M - 5) // 6 + M * (n - (M - 1) ** 2)


def block_cost(d0: int, nbytes: int) -> int:
    """Cost of reading nbytes bytes whose top byte sits just below d0 bytes:
    sum_{d=d0+1}^{d0+nbytes} ceil(sqrt(d))."""
    return sqrt_ceil_sum(d0 + nbytes) - sqrt_ceil_sum(d0)


# ----------------------------------------------------------------------------
# The LRU stack: a Fenwick tree over time slots. Every live block sits at the slot of its
# last touch; its depth is the byte count of the live blocks at later slots.
# ----------------------------------------------------------------------------

class LRUStack:
    """Live blocks in LRU order with O(log n) depth, touch, push and drop.

    n_slots bounds the number of pushes plus touches over the stack's life."""

    def __init__(self, n_slots: int):
        self.tree = [0] * (n_slots + 1)     # Fenwick tree of bytes per slot, 1-based
        self.slot = {}                      # key -> its slot
        self.size = {}                      # key -> nbytes
        self.next_slot = 0
        self.live_bytes = 0

    def _add(self, slot, delta):
        i = slot + 1
        while i < len(self.tree):
            self.tree[i] += delta
            i += i & -i

    def _bytes_through(self, slot):
        """Bytes at slots 0..slot (this block and everything older)."""
        i, total = slot + 1, 0
        while i:
            total += self.tree[i]
            i -= i & -i
        return total

    def push(self, key, nbytes: int):
        """Put a new block on top (free)."""
        if key in self.slot:
            raise ValueError(f"block {key} is written twice")
        self.slot[key], self.size[key] = self.next_slot, nbytes
        self._add(self.next_slot, nbytes)
        self.next_slot += 1
        self.live_bytes += nbytes

    def depth(self, key) -> int:
        """Bytes above the block's top byte (0 for the top block)."""
        if key not in self.slot:
            raise KeyError(f"block {key} is read but not live (never written, or dead)")
        return self.live_bytes - self._bytes_through(self.slot[key])

    def touch(self, key):
        """Move a block to the top."""
        nbytes = self.size[key]
        self._add(self.slot[key], -nbytes)
        self.slot[key] = self.next_slot
        self._add(self.next_slot, nbytes)
        self.next_slot += 1

    def drop(self, key):
        """Remove a dead block; the blocks below it slide up."""
        self._add(self.slot.pop(key), -self.size[key])
        self.live_bytes -= self.size.pop(key)


def last_reads(trace) -> dict:
    """key -> index of the last event that reads it (liveness from the trace)."""
    last = {}
    for i, ev in enumerate(trace):
        for key, _ in ev.reads:
            last[key] = i
    return last


# ----------------------------------------------------------------------------
# The tiled-GEMM model: C = A B in T x T tiles against the stack before the GEMM.
# ----------------------------------------------------------------------------

def gemm_tile_steps(M: int, K: int, N: int, T: int) -> int:
    """Tile multiply-accumulates of a T-tiled (M, K) x (K, N) product."""
    return -(-M // T) * -(-K // T) * -(-N // T)


def _tiles(rows, cols, T, itemsize):
    """{(ti, tj): nbytes} of a (rows, cols) matrix cut into T x T tiles, row-major."""
    return {(i, j): min(T, rows - i * T) * min(T, cols - j * T) * itemsize
            for i in range(-(-rows // T)) for j in range(-(-cols // T))}


def tiled_gemm_cost(d0_a: int, d0_b: int, M: int, K: int, N: int, itemsize: int, T: int):
    """Read cost of C = A B, A (M, K) and B (K, N), run as T x T tiles in i-j-k order.

    A's bytes lie just below d0_a bytes and B's below d0_b (their depths before the GEMM;
    the two ranges must not overlap); each lies tile by tile, tile (0, 0) on top. One tile
    step C_ij += A_ik B_kj reads its (up to) three tiles against the stack before the step
    (C_ij from k = 1 on), moves them to the top in that order, and keeps C_ij there. Nothing
    dies inside the GEMM. Returns (cost of A's reads, B's, C's partial sums)."""
    tiles_a, tiles_b = _tiles(M, K, T, itemsize), _tiles(K, N, T, itemsize)
    n_a, n_b = M * K * itemsize, N * K * itemsize
    if d0_a + n_a > d0_b and d0_b + n_b > d0_a:
        raise ValueError("A and B overlap on the stack")
    mt, kt, nt = -(-M // T), -(-K // T), -(-N // T)
    steps = mt * kt * nt
    stack = LRUStack(len(tiles_a) + len(tiles_b) + 3 + 3 * steps + mt * nt)
    # Lay the stack out from the deeper matrix up: its tiles, the gap, the other's tiles,
    # and the bytes above both (fillers are never read).
    (d_deep, deep, tag_deep), (d_top, top, tag_top) = sorted(
        [(d0_a, tiles_a, "A"), (d0_b, tiles_b, "B")], key=lambda r: -r[0])
    n_top = n_a if tag_top == "A" else n_b
    for t in reversed(list(deep)):
        stack.push((tag_deep, t), deep[t])
    if d_deep - d_top - n_top:
        stack.push(("gap",), d_deep - d_top - n_top)
    for t in reversed(list(top)):
        stack.push((tag_top, t), top[t])
    if d_top:
        stack.push(("above",), d_top)
    cost = {"A": 0, "B": 0, "C": 0}
    for i in range(mt):
        for j in range(nt):
            for k in range(kt):
                reads = [("A", (i, k)), ("B", (k, j))] + ([("C", (i, j))] if k else [])
                depths = [stack.depth(r) for r in reads]             # before the step
                for r, d0 in zip(reads, depths):
                    cost[r[0]] += block_cost(d0, stack.size[r])
                for r in reads:
                    stack.touch(r)
                if k == 0:
                    stack.push(("C", (i, j)), min(T, M - i * T) * min(T, N - j * T) * itemsize)
    return cost["A"], cost["B"], cost["C"]


def is_gemm(ev: Event) -> bool:
    """A single (not batched) GEMM whose first two reads are A and B, whole, in its dtype."""
    m = ev.meta
    return (m is not None and "M" in m and m.get("batch", 1) == 1 and len(ev.reads) >= 2
            and ev.reads[0][0] != ev.reads[1][0]
            and ev.reads[0][1] == m["M"] * m["K"] * m["itemsize"]
            and ev.reads[1][1] == m["K"] * m["N"] * m["itemsize"])


# ----------------------------------------------------------------------------
# Pricing a trace.
# ----------------------------------------------------------------------------

@dataclass
class Priced:
    """Per event: reads as [(key, cost)] (a tiled GEMM adds its C partials under the
    output's key), each read's depth (bytes above the block before the event), and the
    live bytes while it runs (inputs and outputs together; an output that is a new
    version of an input dying here reuses its memory)."""
    read_costs: list
    depths: list
    live_bytes: list


def at(ev: Event, j: int) -> int:
    """Where read j of ev starts inside its block."""
    return ev.offsets[j] if ev.offsets else 0


def price_events(trace, live_out=(), tile=None, tile_from=0) -> Priced:
    """Run the trace on an LRU stack; see the module docstring for the rules. With tile,
    GEMMs from event tile_from on are tiled (the stack after a GEMM is the same in both
    models, so earlier events can be priced the cheap way)."""
    last = last_reads(trace)
    keep = set(live_out)
    n_slots = sum(len(ev.writes) + len({k for k, _ in ev.reads}) for ev in trace)
    stack = LRUStack(n_slots)
    read_costs, depths, live_bytes = [], [], []
    for i, ev in enumerate(trace):
        depth = {key: stack.depth(key) for key, _ in ev.reads}       # before the instruction
        if tile and i >= tile_from and is_gemm(ev):
            m = ev.meta
            ca, cb, cc = tiled_gemm_cost(depth[ev.reads[0][0]], depth[ev.reads[1][0]],
                                         m["M"], m["K"], m["N"], m["itemsize"], tile)
            paid = [(ev.reads[0][0], ca), (ev.reads[1][0], cb)]
            paid += [(key, block_cost(depth[key] + at(ev, j), nb))
                     for j, (key, nb) in enumerate(ev.reads[2:], 2)]
            if ev.writes:
                paid.append((ev.writes[0][0], cc))
        else:
            paid = [(key, block_cost(depth[key] + at(ev, j), nb)) for j, (key, nb) in enumerate(ev.reads)]
        read_costs.append(paid)
        depths.append([depth[key] for key, _ in ev.reads])
        unique = list(depth)                                         # read order, no repeats
        for key in unique:
            stack.touch(key)
        for key, nbytes in ev.writes:
            stack.push(key, nbytes)
        dying = [k for k in unique if last[k] == i and k not in keep]
        written = {k[0] for k, _ in ev.writes}
        reused = sum(stack.size[k] for k in dying if k[0] in written)
        live_bytes.append(stack.live_bytes - reused)
        for key in dying:
            stack.drop(key)
        for key, _ in ev.writes:
            if key not in last and key not in keep:                  # never read: gone at once
                stack.drop(key)
    return Priced(read_costs, depths, live_bytes)


@dataclass
class Cost:
    """A priced trace (or a window of one): totals and where the cost goes."""
    total: int
    per_event: list                 # cost of each event in the window
    per_op: dict = field(default_factory=dict)      # op name -> cost
    per_kind: dict = field(default_factory=dict)    # buffer kind -> cost of reading it
    per_layer: dict = field(default_factory=dict)   # layer -> cost of reading its buffers
    per_tag: dict = field(default_factory=dict)     # "kind/layer" -> cost
    peak_live_bytes: int = 0
    bytes_read: int = 0
    n_events: int = 0

    def as_dict(self, events=False) -> dict:
        """JSON-ready; the per-event list only if asked."""
        d = {k: v for k, v in vars(self).items() if k != "per_event"}
        if events:
            d["per_event"] = self.per_event
        return d


UNTAGGED = ("untagged", None)


def summarize(trace, priced: Priced, tags=None, lo=0, hi=None) -> Cost:
    """Totals and breakdowns of events lo..hi-1 of a priced trace."""
    tags = tags or {}
    hi = len(trace) if hi is None else hi
    c = Cost(0, [], n_events=hi - lo)
    for ev, paid, live in zip(trace[lo:hi], priced.read_costs[lo:hi], priced.live_bytes[lo:hi]):
        total = sum(cost for _, cost in paid)
        c.total += total
        c.per_event.append(total)
        c.per_op[ev.op] = c.per_op.get(ev.op, 0) + total
        c.bytes_read += sum(nb for _, nb in ev.reads)
        c.peak_live_bytes = max(c.peak_live_bytes, live)
        for key, cost in paid:
            kind, layer = tags.get(key, UNTAGGED)
            c.per_kind[kind] = c.per_kind.get(kind, 0) + cost
            c.per_layer[str(layer)] = c.per_layer.get(str(layer), 0) + cost
            name = f"{kind}/{layer}"
            c.per_tag[name] = c.per_tag.get(name, 0) + cost
    return c


def price(trace, tags=None, live_out=(), tile=None) -> Cost:
    """ByteDMD cost of a whole trace: total, per event, op, kind, layer, tag; peak live bytes.

    tile=None: the array model; tile=T: GEMMs run as T x T tiles (module docstring)."""
    return summarize(trace, price_events(trace, live_out, tile), tags)


def steady_state(trace, step_starts, tags=None, live_out=(), tile=None):
    """Price a trace of repeated steps (step i starts at event step_starts[i]) and return
    (i, Cost of step i) for the first step that costs the same as the one before it; the
    first steps differ because the buffers start cold. NoSteadyState if no two
    consecutive steps agree. With tile, the step is found under the array model and that
    pair of steps is priced tiled (and must agree again)."""
    bounds = list(step_starts) + [len(trace)]

    def steps(priced):
        return [summarize(trace, priced, tags, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
    array = steps(price_events(trace, live_out))
    i = next((i for i in range(1, len(array)) if array[i].total == array[i - 1].total), None)
    if i is None:
        raise NoSteadyState(f"no two consecutive steps of {len(array)} cost the same "
                            f"({', '.join(str(c.total) for c in array)}); record more steps")
    if tile is None:
        return i, array[i]
    tiled = steps(price_events(trace, live_out, tile, tile_from=bounds[i - 1]))   # the pair that repeats
    if tiled[i].total != tiled[i - 1].total:
        raise NoSteadyState(f"tiled at T = {tile}, steps {i - 1} and {i} cost {tiled[i - 1].total} "
                            f"and {tiled[i].total}")
    return i, tiled[i]


class NoSteadyState(ValueError):
    """No step of a trace costs what the one before it cost."""


# ----------------------------------------------------------------------------
# Element granularity: ByteDMD's own tracer semantics, one block per Python scalar.
# ----------------------------------------------------------------------------

class ElementTracer:
    """Collects the element-granularity trace of a function of scalars, lists and arrays."""

    def __init__(self, itemsize=1):
        self.trace, self.itemsize, self.count = [], itemsize, 0

    def new(self, value):
        """A Scalar for value, its block written (pushed) now."""
        self.count += 1
        s = Scalar(self, (self.count, 0), value)
        self.trace.append(Event("load", (), ((s.key, self.itemsize),)))
        return s

    def op(self, name, operands, value):
        """Record name(operands) -> value; constants (non-Scalars) are free, as in ByteDMD."""
        reads = tuple((a.key, self.itemsize) for a in operands if isinstance(a, Scalar))
        if value is NotImplemented:
            return value
        outs = [Scalar(self, None, v) for v in (value if isinstance(value, tuple) else (value,))]
        for s in outs:
            self.count += 1
            s.key = (self.count, 0)
        self.trace.append(Event(name, reads, tuple((s.key, self.itemsize) for s in outs)))
        return tuple(outs) if isinstance(value, tuple) else outs[0]

    def read(self, name, s):
        """A read whose result leaves the stack (bool, int, float, index, hash)."""
        self.trace.append(Event(name, ((s.key, self.itemsize),)))
        return s.value

    def wrap(self, x):
        """Scalars for every number in x (lists, tuples, ndarrays row-major), in order."""
        if isinstance(x, (list, tuple)):
            return type(x)(self.wrap(v) for v in x)
        if hasattr(x, "shape") and hasattr(x, "dtype"):              # an ndarray
            import numpy as np
            out = np.empty(x.shape, dtype=object)
            for idx in np.ndindex(x.shape):
                out[idx] = self.new(x[idx].item())
            return out
        return self.new(x)


class Scalar:
    """A traced Python number: every arithmetic or comparison is one event."""
    __slots__ = ("tracer", "key", "value")

    def __init__(self, tracer, key, value):
        self.tracer, self.key, self.value = tracer, key, value

    def __repr__(self):
        return f"Scalar({self.value!r})"

    def __bool__(self):
        return bool(self.tracer.read("bool", self))

    def __int__(self):
        return int(self.tracer.read("int", self))

    def __float__(self):
        return float(self.tracer.read("float", self))

    def __index__(self):
        return operator.index(self.tracer.read("index", self))

    def __hash__(self):
        return hash(self.tracer.read("hash", self))


def _value(x):
    return x.value if isinstance(x, Scalar) else x


def _scalar_op(name, fn, reverse=False):
    def method(self, *others):
        operands = (others[0], self, *others[1:]) if reverse else (self, *others)
        return self.tracer.op(name, operands, fn(*map(_value, operands)))
    method.__name__ = f"__r{name}__" if reverse else f"__{name}__"
    return method


_BINARY = {n: getattr(operator, n) for n in
           "add sub mul truediv floordiv mod lshift rshift xor matmul".split()}
_BINARY.update({"and": operator.and_, "or": operator.or_, "divmod": divmod, "pow": pow})
_OTHER = {n: getattr(operator, n) for n in "neg pos abs invert eq ne lt le gt ge".split()}
_OTHER.update({"trunc": math.trunc, "ceil": math.ceil, "floor": math.floor, "round": round})
for _name, _fn in {**_BINARY, **_OTHER}.items():
    setattr(Scalar, f"__{_name}__", _scalar_op(_name, _fn))
for _name, _fn in _BINARY.items():
    setattr(Scalar, f"__r{_name}__", _scalar_op(_name, _fn, reverse=True))


def _scalar_keys(x, out):
    if isinstance(x, Scalar):
        out.append(x.key)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _scalar_keys(v, out)
    elif hasattr(x, "dtype") and x.dtype == object:
        for v in x.flat:
            _scalar_keys(v, out)
    return out


def element_trace(func, args, itemsize=1):
    """Run func(*args) on traced scalars, as ByteDMD's tracer: the arguments are pushed last
    to first, each element in order, so the first argument's last element ends on top; an
    object passed twice is wrapped once, at its last position.
    Returns (trace, live_out = the result's keys, result)."""
    tracer = ElementTracer(itemsize)
    by_id = {}                                   # bytedmd.py wraps each object once (by id):
    for a in reversed(args):                     # the same list passed twice is one set of scalars
        if id(a) not in by_id:
            by_id[id(a)] = tracer.wrap(a)
    result = func(*[by_id[id(a)] for a in args])
    return tracer.trace, _scalar_keys(result, []), result


def bytedmd(func, args, itemsize=1) -> int:
    """ByteDMD cost of func(*args) at element granularity (ByteDMD's bytedmd())."""
    trace, live_out, _ = element_trace(func, args, itemsize)
    return price(trace, live_out=live_out).total
