"""A strict stand-in for CuPy on the CPU: the GPU path of the module, tested without a GPU.

`StrictDevice()` plays the `cupy` module (its `asarray` is the one way onto the device)
and `DeviceArray` a `cupy.ndarray` over a NumPy array. It behaves as CuPy's documented
interoperability does (docs.cupy.dev, "Interoperability" and "Differences between CuPy
and NumPy"):
- NumPy ufuncs and array functions dispatch to it (__array_ufunc__, __array_function__,
  and like=, which NumPy routes through __array_function__);
- __array__ raises, as cupy.ndarray's does: no implicit conversion to NumPy;
- a host np.ndarray mixed into a device op, or used as an index, raises (CuPy refuses
  the one and would hide a copy in the other); NumPy and Python scalars are fine;
- reductions return 0-d device arrays, never host scalars, so reading one with float(),
  int(), bool(), .item() or .get() is a device-to-host wait, and is counted.

Counts: `h2d` (host arrays copied to the device), `d2h` (.get() copies back) and `waits`
(every read of a device value on the host: .get(), float(), int(), bool(), .item(),
operator.index). `with device.forbid():` turns any of them into an AssertionError at
the line that makes it.

The arithmetic is NumPy's own on the wrapped arrays, so results are bit-identical to the
CPU run. Only names in UFUNCS, FUNCTIONS and METHODS are allowed; anything else raises,
so the module cannot start using a function that CuPy lacks without a test noticing.
How the lists were checked against CuPy: the cupy-cuda12x 14.2.0 wheel from PyPI was
installed on a machine without a GPU (CuPy imports there; only device calls fail), and
every name in UFUNCS and FUNCTIONS was found with hasattr(cupy, name) and every name in
METHODS with hasattr(cupy.ndarray, name): none was missing. tests/test_device.py repeats
that check wherever CuPy is importable.
"""

import contextlib
import operator

import numpy as np

UFUNCS = {"add", "subtract", "multiply", "true_divide", "divide", "negative", "maximum",
          "minimum", "exp", "log", "sqrt", "tanh", "logaddexp", "equal", "not_equal", "less",
          "less_equal", "greater", "greater_equal", "remainder", "floor_divide", "isfinite",
          "logical_and", "logical_or", "logical_not", "absolute", "square", "power", "matmul"}
UFUNC_METHODS = {"__call__"}
FUNCTIONS = {"asarray", "array", "empty", "empty_like", "zeros", "zeros_like", "ones_like",
             "full", "arange", "concatenate", "stack", "take", "einsum", "matmul", "cumsum",
             "repeat", "argsort", "searchsorted", "where", "minimum", "maximum", "sum", "mean",
             "split", "copyto", "transpose", "reshape", "ravel", "isfinite", "all", "any",
             "argmax", "vstack"}
METHODS = {"reshape", "transpose", "astype", "copy", "sum", "mean", "max", "min", "any", "all",
           "argmax", "ravel", "get", "item"}


class StrictDevice:
    """The stand-in `cupy` module: asarray to go onto the device, and the counters."""

    def __init__(self):
        self.counts = {"h2d": 0, "d2h": 0, "waits": 0}
        self.forbidden = False

    def asarray(self, a, dtype=None):
        if isinstance(a, DeviceArray):
            return a if dtype is None or a.dtype == dtype else a.astype(dtype)
        self.count("h2d")
        return DeviceArray(np.array(a, dtype=dtype), self)

    def count(self, kind):
        if self.forbidden:
            raise AssertionError(f"a {kind} where none is allowed")
        self.counts[kind] += 1

    def reset(self):
        self.counts = dict.fromkeys(self.counts, 0)

    @contextlib.contextmanager
    def forbid(self):
        """No copy and no wait inside this block."""
        self.forbidden = True
        try:
            yield
        finally:
            self.forbidden = False


def _device_of(values):
    for v in values:
        if isinstance(v, DeviceArray):
            return v.device
        if isinstance(v, (list, tuple)):
            found = _device_of(v)
            if found is not None:
                return found
    return None


def _unwrap(value):
    """The NumPy array behind a device operand; host arrays are refused."""
    if isinstance(value, DeviceArray):
        return value.a
    if isinstance(value, np.ndarray):
        raise TypeError("host np.ndarray mixed into a device operation (CuPy refuses this; "
                        "copy it over with asarray first)")
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    return value                     # Python and NumPy scalars, slices, None, Ellipsis, dtypes


def _wrap(value, device):
    if isinstance(value, (np.ndarray, np.generic)):
        return DeviceArray(np.asarray(value), device)        # a full reduction: a 0-d array
    if isinstance(value, (list, tuple)):
        return type(value)(_wrap(v, device) for v in value)
    return value


class DeviceArray(np.lib.mixins.NDArrayOperatorsMixin):
    """A cupy.ndarray stand-in over a NumPy array `a` on `device`."""

    __slots__ = ("a", "device")

    def __init__(self, a: np.ndarray, device: StrictDevice):
        self.a, self.device = a, device

    # --- what CuPy refuses ---
    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    # --- reading a value on the host: a wait ---
    def get(self):
        self.device.count("waits")
        self.device.count("d2h")
        return self.a.copy()

    def item(self):
        self.device.count("waits")
        return self.a.item()

    def __float__(self):
        self.device.count("waits")
        return float(self.a)

    def __int__(self):
        self.device.count("waits")
        return int(self.a)

    def __bool__(self):
        self.device.count("waits")
        return bool(self.a)

    def __index__(self):
        self.device.count("waits")
        return operator.index(self.a)

    # --- dispatch ---
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc.__name__ not in UFUNCS or method not in UFUNC_METHODS:
            raise TypeError(f"ufunc {ufunc.__name__}.{method} is not on the stand-in's list")
        out = kwargs.get("out")
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        result = getattr(ufunc, method)(*_unwrap(inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result, self.device)

    def __array_function__(self, func, types, args, kwargs):
        name = func.__name__
        if name not in FUNCTIONS:
            raise TypeError(f"np.{name} is not on the stand-in's list")
        if name in ("asarray", "array"):             # like=self: onto the device
            return self.device.asarray(args[0], kwargs.get("dtype", args[1] if len(args) > 1 else None))
        device = _device_of(args) or _device_of(list(kwargs.values())) or self.device
        out = kwargs.get("out")
        result = func(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
        return out if out is not None else _wrap(result, device)

    # --- the ndarray surface the module uses ---
    shape = property(lambda self: self.a.shape)
    dtype = property(lambda self: self.a.dtype)
    ndim = property(lambda self: self.a.ndim)
    size = property(lambda self: self.a.size)
    nbytes = property(lambda self: self.a.nbytes)
    T = property(lambda self: DeviceArray(self.a.T, self.device))

    def __len__(self):
        return len(self.a)

    def __getitem__(self, key):
        return _wrap(self.a[_unwrap(key)], self.device)

    def __setitem__(self, key, value):
        self.a[_unwrap(key)] = _unwrap(value)

    def __getattr__(self, name):
        if name not in METHODS:
            raise AttributeError(f"DeviceArray.{name} is not on the stand-in's list")
        method = getattr(self.a, name)

        def call(*args, **kwargs):
            return _wrap(method(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}),
                         self.device)
        return call

    def __repr__(self):
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype})"
