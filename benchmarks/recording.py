"""A recording array: NumPy arrays that log every operation into a ByteDMD trace (dmd.py).

RecArray wraps an np.ndarray and rides NumPy's dispatch, as CuPy does: ufuncs and
operators arrive through __array_ufunc__, array functions through __array_function__, and
np.empty(..., like=x) & co. through __array_function__ too. Each operation runs on the
wrapped ndarrays and appends one dmd.Event (the blocks it read and wrote), so a training
step written against the NumPy API runs unchanged and leaves its trace:

    rec = Recorder()
    W = rec.wrap(np.ones((3, 2), np.float32), "weights", layer=0)
    x = rec.wrap(np.ones((4, 3), np.float32))                    # kind "data"
    h = np.maximum(x @ W, 0)                                     # two events: matmul, maximum
    dmd.price(rec.trace, rec.tags).total

Buffers and blocks. A buffer is the memory of a root ndarray (the end of the .base chain).
It is one block unless a tag splits it: rec.tag(view, kind, layer) makes the view's byte
range its own block, so the per-layer views of one flat weight vector are per-layer
blocks. A block's key is (block id, version); rec.tags maps every key to (kind, layer).

Views. Slicing, reshape, .T, transpose (any result that shares its input's root) record
nothing. A read of a view is attributed to the block(s) of its base buffer that it
overlaps, and counts the view's bytes (split in proportion over blocks), not the block's:
W[:10] reads 10 rows of W's block. A gather (advanced indexing, np.take) reads as many
bytes of its source as it returns. One op reading the same bytes twice (h * h) reads
them once: the array model's "each input read once per op".

Writes. A new result is a new buffer (kind "activations", layer: the deepest int layer
among the op's inputs). An in-place write (out=, a += b, a[...] = b, setitem, ufunc.at)
makes a new version of every block it touches, whole (at block granularity a partial write
moves the whole block to the top, for free). a[i] += b's second, self-assignment copy is
skipped, as NumPy skips it. Tags of a block are kept across versions.

Host operands. An np.ndarray mixed into an op is recorded as data: on first sight it
becomes a buffer of kind "data" with a "load" event (written, free), then is read like any
block. np.asarray/np.array(host, like=x) is such a load. Python and NumPy scalars are
constants and cost nothing (as in ByteDMD). Implicit conversion to the host (np.asarray(x)
without like=) is refused, as CuPy refuses it; x.get(), float(x), int(x), bool(x) record a
"to_host" read.
"""

import operator
import sys
import weakref
from pathlib import Path

import numpy as np
from numpy.lib.array_utils import byte_bounds
from numpy.lib.mixins import NDArrayOperatorsMixin

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dmd import Event  # noqa: E402

ACTIVATIONS, DATA = "activations", "data"
LOADERS = (np.asarray, np.array, np.asanyarray, np.ascontiguousarray)
METADATA = (np.shape, np.ndim, np.size, np.result_type, np.iscomplexobj, np.isrealobj,
            np.may_share_memory, np.shares_memory)
IN_PLACE = (np.copyto, np.put, np.place, np.putmask, np.fill_diagonal)   # write their 1st arg


def root(a: np.ndarray) -> np.ndarray:
    """The ndarray that owns a view's memory (the end of its .base chain)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


class Segment:
    """A byte range [lo, hi) of a buffer that is one block, and its current version."""
    __slots__ = ("lo", "hi", "block", "version", "kind", "layer")

    def __init__(self, lo, hi, block, kind, layer):
        self.lo, self.hi, self.block, self.version = lo, hi, block, 0
        self.kind, self.layer = kind, layer

    @property
    def key(self):
        return (self.block, self.version)


class Buffer:
    """A root ndarray's memory: its segments, sorted, covering [0, nbytes)."""
    __slots__ = ("ref", "base_address", "segments")

    def __init__(self, ref, base_address, segments):
        self.ref, self.base_address, self.segments = ref, base_address, segments


class Recorder:
    """Holds the trace (list of dmd.Event), the tags (key -> (kind, layer)) and step marks."""

    def __init__(self):
        self.trace, self.tags, self.marks = [], {}, []
        self._buffers = {}          # id(root ndarray) -> Buffer
        self._next_block = 0
        self.new_kind = ACTIVATIONS  # the kind of a new result ("optimizer" inside its step)

    # ---------------------------------------------------------------- buffers and tags

    def _new_segment(self, lo, hi, kind, layer):
        self._next_block += 1
        seg = Segment(lo, hi, self._next_block, kind, layer)
        self.tags[seg.key] = (kind, layer)
        return seg

    def _buffer(self, a: np.ndarray, kind=None, layer=None):
        """The Buffer under a, registered (one segment of kind/layer) if new; new is
        returned as True when it was registered now."""
        r = root(a)
        buf = self._buffers.get(id(r))
        if buf is not None and buf.ref() is r:
            return buf, False
        rid = id(r)
        ref = weakref.ref(r, lambda _, rid=rid: self._buffers.pop(rid, None))
        buf = Buffer(ref, byte_bounds(r)[0], [self._new_segment(0, r.nbytes, kind, layer)])
        self._buffers[rid] = buf
        return buf, True

    def _range(self, buf, a):
        lo, hi = byte_bounds(a)
        return lo - buf.base_address, hi - buf.base_address

    def _overlap(self, buf, lo, hi):
        return [s for s in buf.segments if s.lo < hi and lo < s.hi]

    def tag(self, x, kind, layer=None):
        """Make the bytes of x (a RecArray or ndarray, often a view) one block of (kind,
        layer), splitting the buffer's blocks at its ends. The blocks it touches are loaded
        (written, free) now. Returns x."""
        a = x.a if isinstance(x, RecArray) else x
        buf, new = self._buffer(a, kind, layer)
        lo, hi = self._range(buf, a)
        if a.nbytes == 0:
            return x
        if new and (lo, hi) == (0, root(a).nbytes):                  # the whole of a new buffer
            self.trace.append(Event("load", (), ((buf.segments[0].key, hi),)))
            return x
        new, writes = [], []
        for s in buf.segments:
            if s.hi <= lo or hi <= s.lo:
                new.append(s)
                continue
            for p_lo, p_hi, inside in ((s.lo, lo, False), (max(lo, s.lo), min(hi, s.hi), True),
                                       (hi, s.hi, False)):
                if p_lo < p_hi:
                    piece = self._new_segment(p_lo, p_hi, kind if inside else s.kind,
                                              layer if inside else s.layer)
                    new.append(piece)
                    writes.append((piece.key, p_hi - p_lo))
        buf.segments = new
        self.trace.append(Event("load", (), tuple(writes)))
        return x

    def wrap(self, a: np.ndarray, kind=DATA, layer=None) -> "RecArray":
        """A RecArray over the host array a, its bytes loaded as one block of (kind, layer)."""
        self.tag(a, kind, layer)
        return RecArray(self, a)

    def mark(self):
        """Note that a step starts here (dmd.steady_state's step_starts)."""
        self.marks.append(len(self.trace))

    def keys(self, *arrays) -> list:
        """Current keys of the blocks under these RecArrays (e.g. dmd's live_out)."""
        out = []
        for x in arrays:
            buf, _ = self._buffer(x.a)
            lo, hi = self._range(buf, x.a)
            out += [s.key for s in self._overlap(buf, lo, hi)]
        return out

    # ---------------------------------------------------------------- reads and writes

    def _reads(self, a: np.ndarray, nbytes=None) -> list:
        """[(key, lo, hi, nbytes, block nbytes, offset)] of the blocks a reads (nbytes: a's,
        or a gather's), a's bytes shared over the blocks in proportion to its overlap;
        offset: where they start inside the block."""
        if a.nbytes == 0:
            return []
        buf, _ = self._buffer(a)
        lo, hi = self._range(buf, a)
        nbytes = a.nbytes if nbytes is None else nbytes
        out = []
        for s in self._overlap(buf, lo, hi):
            share = (min(hi, s.hi) - max(lo, s.lo)) * nbytes // (hi - lo)
            out.append((s.key, lo, hi, max(1, min(share, s.hi - s.lo)), s.hi - s.lo,
                        max(lo, s.lo) - s.lo))
        return out

    def _write(self, a: np.ndarray, layer) -> list:
        """A new version of every block a touches; returns their (key, block nbytes)."""
        buf, _ = self._buffer(a)
        lo, hi = self._range(buf, a) if a.nbytes else (0, 0)
        writes = []
        for s in self._overlap(buf, lo, hi):
            s.version += 1
            if s.kind == ACTIVATIONS and layer is not None:
                s.layer = layer
            self.tags[s.key] = (s.kind, s.layer)
            writes.append((s.key, s.hi - s.lo))
        return writes

    def _layer(self, reads):
        """An op's layer: the deepest int layer among its inputs' tags, else any other."""
        layers = [self.tags[r[0]][1] for r in reads]
        ints = [l for l in layers if isinstance(l, int)]
        return max(ints) if ints else next((l for l in layers if l is not None), None)

    def _load_host(self, a: np.ndarray):
        """A host array on first sight: a "data" buffer, written (free) now."""
        buf, new = self._buffer(a, DATA)
        if new:
            self.trace.append(Event("load", (), tuple((s.key, s.hi - s.lo) for s in buf.segments)))

    def _unwrap(self, x, arrays):
        """x with RecArrays replaced by their ndarrays; every array met goes to `arrays`."""
        if isinstance(x, RecArray):
            arrays.append(x.a)
            return x.a
        if isinstance(x, np.ndarray):
            self._load_host(x)
            arrays.append(x)
            return x
        if isinstance(x, (list, tuple)):
            return type(x)(self._unwrap(v, arrays) for v in x)
        if isinstance(x, dict):
            return {k: self._unwrap(v, arrays) for k, v in x.items()}
        return x

    def call(self, op, fn, args, kwargs, outs=None, gather=False, meta=None):
        """Run fn(*args, **kwargs) on the wrapped arrays and record one event.

        outs: the arrays it writes in place (default: kwargs["out"]); gather: the first
        array is read only as many bytes as the result has."""
        kwargs = dict(kwargs)
        out = kwargs.pop("out", None)
        out_list = [] if out is None else list(out) if isinstance(out, tuple) else [out]
        if outs is None:
            outs = out_list
        arrays = []
        raw_args, raw_kwargs = self._unwrap(args, arrays), self._unwrap(kwargs, arrays)
        raw_outs = self._unwrap(tuple(outs), [])
        if out is not None:
            raw_kwargs["out"] = (self._unwrap(tuple(out_list), []) if isinstance(out, tuple)
                                 else self._unwrap(out, []))
        result = fn(*raw_args, **raw_kwargs)
        if fn in METADATA:
            return result
        reads = []
        for i, a in enumerate(arrays):
            if i == 0 and fn in IN_PLACE:
                continue                                             # overwritten, not read
            nbytes = None
            if gather and i == 0 and isinstance(result, np.ndarray):
                nbytes = min(result.nbytes, a.nbytes)
            reads += self._reads(a, nbytes)
        layer = self._layer(reads)
        writes = []
        for a in raw_outs:
            writes += self._write(a, layer)
        by_id = {id(o.a if isinstance(o, RecArray) else o): o for o in outs}
        views = []

        def wrap(r):
            if isinstance(r, (tuple, list)):
                return type(r)(wrap(v) for v in r)
            if isinstance(r, np.generic):
                r = np.asarray(r)
            if not isinstance(r, np.ndarray):
                return r
            if id(r) in by_id and isinstance(by_id[id(r)], RecArray):
                return by_id[id(r)]
            buf, new = self._buffer(r, self.new_kind, layer)          # not new: a view
            if new:
                writes.extend((s.key, s.hi - s.lo) for s in buf.segments)
            else:
                views.append(r)
            return RecArray(self, r)

        wrapped = wrap(result)
        if writes or (reads and not views):                          # a view alone moves nothing
            merged, offsets = merge_reads(reads)
            self.trace.append(Event(op, merged, tuple(writes), meta, offsets))
        return wrapped

    def fused(self, op, reads, writes, fn):
        """One event for a fused kernel: fn() runs on the ndarrays (it computes what the
        kernel computes), and the event reads the RecArrays `reads` once each and writes
        new versions of the blocks under `writes`."""
        fn()
        raw = [self._reads(x.a) for x in reads]
        merged, offsets = merge_reads([r for rs in raw for r in rs])
        layer = self._layer([(k,) for k, _ in merged])
        out = [w for x in writes for w in self._write(x.a, layer)]
        self.trace.append(Event(op, merged, tuple(out), None, offsets))

    def load(self, fn, args, kwargs):
        """np.asarray(host, like=x) and friends: the result is a "data" block, loaded."""
        a = np.asarray(fn(*args, **kwargs))
        self._load_host(a)
        return RecArray(self, a)

    def to_host(self, x: "RecArray", op="to_host") -> np.ndarray:
        """Record a read of x by the host; returns x's ndarray."""
        reads = self._reads(x.a)
        if reads:
            merged, offsets = merge_reads(reads)
            self.trace.append(Event(op, merged, offsets=offsets))
        return x.a

    def setitem(self, x: "RecArray", idx, value):
        """x[idx] = value: reads value and index arrays, writes x's blocks under x[idx]."""
        arrays = []
        raw_idx, raw_value = self._unwrap(idx, arrays), self._unwrap(value, arrays)
        region = _index(x.a, raw_idx)
        if root(region) is not root(x.a):
            region = x.a                                             # advanced index: all of x
        if (isinstance(raw_value, np.ndarray) and raw_value.dtype == region.dtype
                and raw_value.shape == region.shape and raw_value.strides == region.strides
                and byte_bounds(raw_value) == byte_bounds(region)):
            return                                   # a[i] += b's self-copy, which NumPy skips
        x.a[raw_idx] = raw_value
        reads = [r for a in arrays for r in self._reads(a)]
        writes = self._write(region, self._layer(reads))
        merged, offsets = merge_reads(reads)
        self.trace.append(Event("setitem", merged, tuple(writes), offsets=offsets))


def merge_reads(reads) -> tuple:
    """((key, nbytes) per distinct block, in first-read order; and each one's offset inside
    its block, the lowest of its ranges): the same byte range read twice counts once,
    different ranges of one block add up (at most the block)."""
    ranges, size, start = {}, {}, {}                                 # key -> {(lo, hi): nbytes}
    for key, lo, hi, nbytes, block_nbytes, offset in reads:
        seen = ranges.setdefault(key, {})
        seen[(lo, hi)] = max(nbytes, seen.get((lo, hi), 0))
        size[key] = block_nbytes
        start[key] = min(offset, start.get(key, offset))
    keys = list(ranges)
    merged = tuple((key, min(size[key], sum(ranges[key].values()))) for key in keys)
    offsets = tuple(min(start[key], size[key] - nb) for key, (_, nb) in zip(keys, merged))
    return merged, offsets if any(offsets) else ()


def _has_recarray(x) -> bool:
    if isinstance(x, (list, tuple)):
        return any(_has_recarray(v) for v in x)
    return isinstance(x, RecArray)


def _index(a, idx):
    """a[idx], a 0-d view instead of a NumPy scalar when idx picks one element."""
    r = a[idx]
    if isinstance(r, np.generic):
        r = a[(*idx, Ellipsis) if isinstance(idx, tuple) else (idx, Ellipsis)]
    return r


def _gemm_meta(a, b, out_itemsize):
    """M, K, N of a 1-D or 2-D matmul (A (M, K), B (K, N)); batch > 1 when stacked."""
    if a.ndim == 0 or b.ndim == 0:
        return None
    M = a.shape[-2] if a.ndim >= 2 else 1
    N = b.shape[-1] if b.ndim >= 2 else 1
    batch = 1
    if max(a.ndim, b.ndim) > 2:
        batch = int(np.prod(np.broadcast_shapes(a.shape[:-2], b.shape[:-2])))
    return {"M": M, "K": a.shape[-1], "N": N, "itemsize": out_itemsize, "batch": batch}


class RecArray(NDArrayOperatorsMixin):
    """An ndarray that records what is done with it into its Recorder's trace."""
    __slots__ = ("rec", "a")

    def __init__(self, rec: Recorder, a: np.ndarray):
        self.rec, self.a = rec, a

    # metadata: no event
    shape = property(lambda self: self.a.shape)
    ndim = property(lambda self: self.a.ndim)
    dtype = property(lambda self: self.a.dtype)
    size = property(lambda self: self.a.size)
    nbytes = property(lambda self: self.a.nbytes)
    itemsize = property(lambda self: self.a.itemsize)
    strides = property(lambda self: self.a.strides)

    def __len__(self):
        return len(self.a)

    def __repr__(self):
        return f"RecArray(shape={self.a.shape}, dtype={self.a.dtype})"

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # NumPy's dispatch
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        op = ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"
        meta = None
        if ufunc is np.matmul and method == "__call__":
            a, b = (x.a if isinstance(x, RecArray) else np.asarray(x) for x in inputs[:2])
            meta = _gemm_meta(a, b, np.result_type(a, b).itemsize)
        outs = (inputs[0],) if method == "at" else None
        return self.rec.call(op, getattr(ufunc, method), inputs, kwargs, outs=outs, meta=meta)

    def __array_function__(self, func, types, args, kwargs):
        if func in LOADERS and not _has_recarray(args):
            return self.rec.load(func, args, kwargs)                  # like=: host to device
        meta = None
        if func is np.dot:
            a, b = (x.a if isinstance(x, RecArray) else np.asarray(x) for x in args[:2])
            meta = _gemm_meta(a, b, np.result_type(a, b).itemsize)
        outs = (args[0],) if func in IN_PLACE else None
        return self.rec.call(func.__name__, func, args, kwargs, outs=outs,
                             gather=func is np.take, meta=meta)

    def __array__(self, dtype=None, copy=None):
        raise TypeError("a RecArray does not convert to a host array implicitly; use .get() "
                        "or float() (as CuPy refuses it)")

    # indexing
    def __getitem__(self, idx):
        return self.rec.call("getitem", _index, (self, idx), {}, gather=True)

    def __setitem__(self, idx, value):
        self.rec.setitem(self, idx, value)

    # to the host
    def get(self) -> np.ndarray:
        return self.rec.to_host(self).copy()

    def __float__(self):
        return float(self.rec.to_host(self))

    def __int__(self):
        return int(self.rec.to_host(self))

    def __bool__(self):
        return bool(self.rec.to_host(self))

    def __index__(self):
        return operator.index(self.rec.to_host(self).item())

    # methods, through the same recording path
    @property
    def T(self):
        return np.transpose(self)

    def transpose(self, *axes):
        return np.transpose(self, axes[0] if len(axes) == 1 else axes or None)

    def fill(self, value):
        self[...] = value


def _method(name):
    unbound = getattr(np.ndarray, name)

    def method(self, *args, **kwargs):
        return self.rec.call(name, unbound, (self, *args), kwargs, gather=name == "take")
    method.__name__ = name
    return method


for _name in ("reshape ravel flatten squeeze astype copy sum mean max min any all prod std var "
              "argmax argmin cumsum clip dot take repeat nonzero round").split():
    setattr(RecArray, _name, _method(_name))
