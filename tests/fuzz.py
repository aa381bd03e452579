"""Fuzzing of dwcy's public API with hypothesis: random valid and invalid calls, for a fixed wall time.

Every example is one call of ``dwcy.depthwise_conv2d``, ``dwcy.pointwise_conv2d`` or ``dwcy.separable_conv2d``,
built in one of three ways:

* **valid**: a random geometry (shapes, channel tails, multipliers, kernels, strides, dilations, every padding
  form), options (activations, biases, ``out=``, ``num_threads``) and memory layouts (Fortran, transposed,
  strided, negative strides, misaligned, read-only, big-endian, zero-stride broadcasts, offset views,
  subclasses, nested lists) that the contract (DESIGN.md) accepts;
* **invalid**: a valid call with one to three *mutations*, each of which breaks the contract on its own (bad
  dtypes such as int/float16/complex/object, wrong ndim or empty axes, channel mismatches, bad or overflowing
  strides, dilations and paddings, kernels larger than the padded image, unknown activations, wrong, aliased,
  read-only, misaligned or non-contiguous ``out=``, bad thread counts, non-array arguments);
* **chaos**: arguments drawn with no regard to the contract (random small arrays of any dtype and ndim,
  scalars, strings, None) — whatever dwcy does must agree with ``dwcy.reference``.

What must hold (``check``):

* a valid call returns a C-contiguous result of x's dtype that matches ``dwcy.reference`` run in float64
  (the rounding bound of ``_helpers``); its ``out=`` is returned, fully written, and nothing next to it in
  memory changes; a thread count other than 1 gives the bits of ``num_threads=1``; separable equals the
  composition of depthwise and pointwise bit for bit;
* an invalid call raises ValueError or TypeError and leaves ``out=`` byte for byte as it was;
* no call modifies an input, and nothing raises any other exception or crashes (run the fuzzer against the
  sanitizer build, README "Developing", to catch out-of-bounds accesses and undefined behaviour in process).

The validity of a call is decided here, by construction, not by dwcy._args: the fuzzer is an independent
oracle of the argument rules too.

Run it for a fixed wall time (the number of executions and the findings are printed at the end; the exit
status is 1 if anything was found)::

    python tests/fuzz.py --seconds 600 [--seed N] [--stop-on-first]

``tests/test_fuzz.py`` runs it under pytest for ``DWCY_FUZZ_SECONDS`` (see there for the CI default).
"""

import argparse
import os
import random
import sys
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, Phase, given, note, seed as hypothesis_seed, settings, strategies as st
from hypothesis.extra import numpy as hnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _helpers, when run as a script

import dwcy  # noqa: E402
from dwcy import reference  # noqa: E402
import _helpers  # noqa: E402

FUNCTIONS = {
    "depthwise": (dwcy.depthwise_conv2d, reference.depthwise_conv2d),
    "pointwise": (dwcy.pointwise_conv2d, reference.pointwise_conv2d),
    "separable": (dwcy.separable_conv2d, reference.separable_conv2d),
}
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
ACTIVATIONS = (None, "relu", "relu6", "hardswish")
REJECTED = (ValueError, TypeError)

# dtypes dwcy must refuse with TypeError (float64/float32 are refused too when they do not match x's).
BAD_DTYPES = ("int8", "int32", "int64", ">i4", "uint8", "bool", "float16", ">f2", "complex64", "complex128",
              "longdouble", "object", "U8", "S8", "datetime64[s]", "timedelta64[s]")
BAD_THREADS = (0, -1, -2**70, 1.5, "2", [2], np.float64(2.0), np.int64(0), object(), 2j)
BAD_ACTIVATIONS = ("gelu", "RELU", "Relu6", "relu ", "", "hard_swish", 0, 1, True, b"relu", ("relu",), 1.0)
BAD_SCALARS = (0, -1, -2**63, -2**70, 1.0, 2.5, "1", None, (1,), (1, 1, 1), (1, 0), (0, 1), (1, -3), (1, "a"),
               [[1, 1]], np.float32(1.0), 1j, object(), np.array([1, 1]), ())
# Strides and dilations too large for 64-bit sizes: the kernels' geometry is Py_ssize_t.
HUGE_SCALARS = (2**63, 2**64, 2**100, (1, 2**63), (2**64, 1))
BAD_PADDINGS = (-1, (-1, 0), (0, -2), ((0, -1), (0, 0)), ((0, 0), (-5, 0)), 1.5, (1.0, 1), "full", "", "vallid",
                "same ", b"same", None, (1,), (1, 2, 3), ((1,), (1, 1)), ((1, 2, 3), (0, 0)), [[0, 0], [0]],
                object(), {"top": 1}, np.array([1, 1]), ((0, 0), (0, 0), (0, 0)), ((0, 0), 1.5))
# Paddings whose padded image has 2**62 elements or more, whatever the image: must raise ValueError, not allocate.
OVERFLOW_PADDINGS = (2**62, 2**63, 2**64, (2**62, 0), (0, 2**62), ((2**62, 0), (0, 0)), ((0, 0), (0, 2**63)),
                     ((2**61, 2**61), (0, 0)), (2**31 * 3, 2**31 * 3), 2**200)


# ------------------------------------------------------------------------------------------- the call


@dataclass
class Call:
    """One call: ``FUNCTIONS[function][0](*args, **kwargs)``, with what the fuzzer knows about it."""

    function: str
    args: list
    kwargs: dict
    kind: str  # "valid", "invalid" or "chaos"
    mutations: list = field(default_factory=list)  # names of the mutations of an invalid call
    dtype: object = None  # the dtype of a valid call
    terms: int = 0  # products per output element (rounding bound) of a valid call
    out_buffer: object = None  # the canary buffer around a valid out=
    out_shape: tuple = None  # the output shape of a valid call
    channels: dict = None  # bias name -> its length in the valid call
    originals: dict = None  # array argument name -> its value in the valid call (before any layout or mutation)
    float_changed: bool = False  # a mutation gave one argument the other float dtype

    def describe(self):
        def show(v):
            if isinstance(v, np.ndarray):
                return (f"ndarray(shape={v.shape}, dtype={v.dtype.str}, strides={v.strides}, "
                        f"C={v.flags.c_contiguous}, aligned={v.flags.aligned}, writeable={v.flags.writeable})")
            if isinstance(v, list):
                return f"list(shape={np.shape(v) if _rectangular(v) else '?'})"
            text = repr(v)
            return text if len(text) < 200 else text[:200] + "..."

        args = ", ".join(show(a) for a in self.args)
        kwargs = ", ".join(f"{k}={show(v)}" for k, v in self.kwargs.items())
        return f"[{self.kind} {'+'.join(self.mutations)}] dwcy.{self.function}_conv2d({args}, {kwargs})"


def _rectangular(v):
    try:
        np.shape(v)
        return True
    except ValueError:
        return False


class Finding(AssertionError):
    """A property of the API that does not hold."""


# ---------------------------------------------------------------------------------------- known findings

#: Findings reported to the maintainers and not fixed yet: (name, predicate(call, exception)). A call that
#: fails only this way is counted under its name instead of failing the run. Each has a strict-xfail
#: regression test in tests/test_fuzz.py; delete the entry when that test passes.
KNOWN_FINDINGS = []


def _argument(call, index, *names):
    if index < len(call.args):
        return call.args[index]
    for name in names:
        if name in call.kwargs:
            return call.kwargs[name]
    return None


def _non_finite(value):
    try:
        return not np.isfinite(np.asarray(value, np.float64)).all()
    except (TypeError, ValueError):
        return False


def _has_huge_int(values):
    for v in values:
        items = v if isinstance(v, (tuple, list)) else (v,)
        for item in items:
            if isinstance(item, int) and not isinstance(item, bool) and item >= 2**63:
                return True
    return False


def _known(call, exc, stats=None):
    """The name of the known finding ``exc`` is (counted in ``stats``), or None for a new one."""
    for name, predicate in KNOWN_FINDINGS:
        try:
            if predicate(call, exc):
                if stats is not None:
                    stats.known[name] = stats.known.get(name, 0) + 1
                return name
        except Exception:  # a predicate must never hide a finding
            pass
    return None


# ------------------------------------------------------------------------------------------- the checks


def _snapshot(value):
    """Something equal before and after a call iff ``value`` was not modified."""
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return [repr(v) for v in value.ravel().tolist()]
        try:
            return (value.shape, value.strides, value.tobytes())
        except Exception:  # an exotic dtype (datetime, unicode...): its repr is enough for small arrays
            return repr(value)
    if isinstance(value, list):
        return repr(value)
    return None


def _reference_argument(value):
    """A list becomes a float64 array (the rounding bound needs |values|); ndarrays stay as they are."""
    if isinstance(value, list):
        return np.asarray(value, np.float64)
    return value


class Stats:
    def __init__(self):
        self.executions = 0
        self.by_kind = {"valid": 0, "invalid": 0, "chaos": 0}
        self.by_function = {name: 0 for name in FUNCTIONS}
        self.chaos_accepted = 0
        self.known = {}
        self.findings = []  # (key, text)

    def summary(self):
        known = ", ".join(f"{k}: {v}" for k, v in self.known.items()) or "none"
        return (f"{self.executions} executions ({', '.join(f'{k} {v}' for k, v in self.by_kind.items())}; "
                f"{', '.join(f'{k} {v}' for k, v in self.by_function.items())}; chaos calls accepted "
                f"{self.chaos_accepted}); known findings hit: {known}; new findings: {len(self.findings)}")


def check(call, stats=None):
    """Run ``call`` and check every property; raises Finding (or the unexpected exception) if one fails."""
    function, reference_function = FUNCTIONS[call.function]
    out = call.kwargs.get("out")
    inputs = [v for v in call.args] + [v for k, v in call.kwargs.items() if k != "out"]
    before_inputs = [_snapshot(v) for v in inputs]
    before_out = _snapshot(out)
    if stats is not None:
        stats.executions += 1
        stats.by_kind[call.kind] += 1
        stats.by_function[call.function] += 1

    try:
        with np.errstate(all="ignore"):
            y = function(*call.args, **call.kwargs)
    except REJECTED as exc:
        if call.kind == "valid":
            raise Finding(f"a valid call raised {type(exc).__name__}: {exc}") from exc
        if _snapshot(out) != before_out:
            raise Finding(f"out= was modified by a call that raised {type(exc).__name__}: {exc}") from exc
        _check_inputs_untouched(inputs, before_inputs)
        if call.kind == "chaos":
            _check_reference_rejects(call, reference_function)
        return "rejected"
    except Exception as exc:
        if _known(call, exc, stats) is None:
            raise
        if _snapshot(out) != before_out:
            raise Finding(f"out= was modified by a call that raised {type(exc).__name__}: {exc}") from exc
        return "known"

    try:
        _check_result(call, y, reference_function, inputs, before_inputs, stats)
    except AssertionError as exc:
        if _known(call, exc, stats) is None:
            raise
        return "known"
    return "accepted"


def _check_result(call, y, reference_function, inputs, before_inputs, stats):
    _check_inputs_untouched(inputs, before_inputs)
    if call.kind == "invalid":
        raise Finding(f"an invalid call ({', '.join(call.mutations)}) returned instead of raising ValueError/TypeError")
    if call.kind == "chaos":
        if stats is not None:
            stats.chaos_accepted += 1
        _check_chaos_result(call, y, reference_function)
        return
    _check_valid_result(call, y, reference_function)


def _check_inputs_untouched(inputs, before):
    for value, snapshot in zip(inputs, before):
        if _snapshot(value) != snapshot:
            raise Finding("an input argument was modified by the call")


def _check_reference_rejects(call, reference_function):
    # dwcy and its reference validate with the same rules: the reference must refuse what dwcy refused.
    kwargs = {k: v for k, v in call.kwargs.items() if k != "out"}
    try:
        with np.errstate(all="ignore"):
            reference_function(*call.args, **kwargs)
    except REJECTED:
        return
    except MemoryError:
        return
    if "out" in call.kwargs and call.kwargs["out"] is not None:
        return  # dwcy may have refused only the out=
    raise Finding("dwcy refused a call that dwcy.reference accepts")


def _check_valid_result(call, y, reference_function):
    out = call.kwargs.get("out")
    if out is not None:
        if y is not out:
            raise Finding("out= was not returned")
        if not np.array_equal(call.out_buffer[:_helpers.CANARY_ELEMENTS], _canaries(call.dtype)) or \
                not np.array_equal(call.out_buffer[-_helpers.CANARY_ELEMENTS:], _canaries(call.dtype)):
            raise Finding("memory next to out= was written")
    if not isinstance(y, np.ndarray) or y.dtype != call.dtype or y.shape != call.out_shape:
        raise Finding(f"result {type(y).__name__} {getattr(y, 'dtype', None)} {getattr(y, 'shape', None)}; "
                      f"expected {call.dtype} {call.out_shape}")
    arrays = _NAMES[call.function]
    args = [_reference_argument(a) for a in call.args]
    kwargs = {k: _reference_argument(v) if k in arrays else v for k, v in call.kwargs.items()}
    _helpers.assert_close_to_reference(y, reference_function, *args, terms=call.terms, **kwargs)

    function = FUNCTIONS[call.function][0]
    plain = {k: v for k, v in call.kwargs.items() if k != "out"}
    threads = call.kwargs.get("num_threads")
    if threads is not None and threads is not True and int(threads) != 1:
        with np.errstate(all="ignore"):
            one = function(*call.args, **{**plain, "num_threads": 1})
        _helpers.assert_bitwise_equal(y, one, f"num_threads={threads!r} vs 1")
    if call.function == "separable":
        names = ("x", "depthwise_weight", "pointwise_weight", "depthwise_bias", "pointwise_bias")
        named = dict(zip(names, call.args))
        with np.errstate(all="ignore"):
            composed = _helpers.separable_by_composition(**named, **plain)
        _helpers.assert_bitwise_equal(y, composed, "separable vs depthwise then pointwise")


def _check_chaos_result(call, y, reference_function):
    kwargs = {k: v for k, v in call.kwargs.items() if k != "out"}
    try:
        with np.errstate(all="ignore"):
            expected = reference_function(*call.args, **kwargs)
    except REJECTED as exc:
        raise Finding(f"dwcy accepted a call that dwcy.reference refuses ({type(exc).__name__}: {exc})") from exc
    if not isinstance(y, np.ndarray) or y.shape != expected.shape or y.dtype != expected.dtype:
        raise Finding(f"result {getattr(y, 'dtype', None)} {getattr(y, 'shape', None)}; the reference gives "
                      f"{expected.dtype} {expected.shape}")
    # The arrays of an accepted chaos call are small: the reference in float64 bounds it as for valid calls.
    args = [_reference_argument(a) if not isinstance(a, np.ndarray) else a for a in call.args]
    terms = _chaos_terms(call)
    _helpers.assert_close_to_reference(y, reference_function, *args, terms=terms, **kwargs)


def _chaos_terms(call):
    shapes = [np.shape(a) for a in call.args]
    if call.function == "depthwise":
        return shapes[1][0] * shapes[1][1]
    if call.function == "pointwise":
        return shapes[1][-2]
    return shapes[1][0] * shapes[1][1] + 1 + shapes[2][-2]


def _canaries(dtype):
    return np.full(_helpers.CANARY_ELEMENTS, _helpers.CANARY, dtype)


# -------------------------------------------------------------------------------------- memory layouts


class _Subclass(np.ndarray):
    """An ndarray subclass: dwcy must treat it as the ndarray it is."""


def _broadcast(values, rng):
    # A zero-stride view along one axis (the values of index 0 repeated): read-only, not contiguous.
    axis = int(rng.integers(values.ndim))
    if values.shape[axis] < 2:
        return values
    index = [slice(None)] * values.ndim
    index[axis] = slice(0, 1)
    return np.broadcast_to(values[tuple(index)], values.shape)


def _offset_view(values, rng):
    # C-contiguous and aligned, but not at the start of its buffer.
    k = int(rng.integers(1, 9))
    buffer = np.full(values.size + 2 * k, np.nan, values.dtype)
    view = buffer[k:k + values.size].reshape(values.shape)
    view[...] = values
    return view


def _subclass(values, rng):
    return values.copy().view(_Subclass)


def _misaligned_strided(values, rng):
    return _helpers._sliced(_helpers._misaligned(values))


LAYOUTS = dict(
    {name: (lambda f: (lambda v, rng: f(v)))(f) for name, f in _helpers.LAYOUTS.items()},
    plain=lambda v, rng: v,
    broadcast=_broadcast,
    offset_view=_offset_view,
    subclass=_subclass,
    misaligned_strided=_misaligned_strided,
)
LAYOUT_NAMES = sorted(LAYOUTS)


# -------------------------------------------------------------------------------------- valid geometry


def _span(k, d):
    return (k - 1) * d + 1


def _out_size(size, k, s, d, before, after):
    return (size + before + after - _span(k, d)) // s + 1


def _same(size, k, s, d):
    out = -(-size // s)
    total = max((out - 1) * s + _span(k, d) - size, 0)
    return total // 2, total - total // 2


@st.composite
def int_pair_form(draw, a, b):
    """A valid stride/dilation argument meaning (a, b)."""
    forms = ["tuple", "list", "numpy"]
    if a == b:
        forms += ["int", "int", "numpy_int"]
        if a == 1:
            forms.append("bool")
    form = draw(st.sampled_from(forms))
    return {
        "tuple": (a, b), "list": [a, b], "numpy": (np.int64(a), np.int32(b)),
        "int": a, "numpy_int": np.int64(a), "bool": True,
    }[form]


@st.composite
def padding_form(draw, pads):
    """A valid padding argument meaning pads = (top, bottom, left, right); None for "same"."""
    if pads is None:
        return draw(st.sampled_from(["same", "SAME", "Same"]))
    top, bottom, left, right = pads
    forms = ["pairs", "pairs_lists"]
    if pads == (0, 0, 0, 0):
        forms += ["valid", "valid"]
    if top == bottom and left == right:
        forms += ["pair", "pair_list"]
        if top == left:
            forms += ["int", "numpy_int"]
    form = draw(st.sampled_from(forms))
    return {
        "valid": draw(st.sampled_from(["valid", "VALID", "Valid"])) if form == "valid" else None,
        "pairs": ((top, bottom), (left, right)),
        "pairs_lists": [[top, bottom], (np.int64(left), right)],
        "pair": (top, left),
        "pair_list": [np.int32(top), left],
        "int": top,
        "numpy_int": np.int64(top),
    }[form]


@st.composite
def geometry(draw, spatial):
    """(n, h, w, c) plus, when ``spatial``, the depthwise geometry of a non-empty output."""
    n = draw(st.integers(1, 3))
    c = draw(st.one_of(st.integers(1, 20), st.sampled_from([7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 53, 64, 65])))
    g = dict(n=n, c=c)
    if not spatial:
        big = draw(st.integers(0, 9)) == 0  # sometimes enough work for several threads
        g["h"], g["w"] = draw(st.integers(1, 24 if big else 9)), draw(st.integers(1, 24 if big else 9))
        return g
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    same = draw(st.integers(0, 3)) == 0
    pads = None if same else tuple(draw(st.integers(0, 4)) for _ in range(4))
    if pads is not None and draw(st.booleans()):
        pads = (0, 0, 0, 0) if draw(st.booleans()) else (pads[0], pads[0], pads[2], pads[2])
    limit = 24 if draw(st.integers(0, 5)) == 0 else 12
    if same:
        h, w = draw(st.integers(1, limit)), draw(st.integers(1, limit))
        pt, pb = _same(h, kh, sh, dh)
        pl, pr = _same(w, kw, sw, dw)
    else:
        pt, pb, pl, pr = pads
        h = draw(st.integers(max(1, _span(kh, dh) - pt - pb), max(1, _span(kh, dh) - pt - pb) + limit))
        w = draw(st.integers(max(1, _span(kw, dw) - pl - pr), max(1, _span(kw, dw) - pl - pr) + limit))
    g.update(h=h, w=w, kh=kh, kw=kw, stride=(sh, sw), dilation=(dh, dw), pads=pads,
             oh=_out_size(h, kh, sh, dh, pt, pb), ow=_out_size(w, kw, sw, dw, pl, pr),
             multiplier=draw(st.sampled_from([None, 1, 1, 2, 3, 4])))
    assert g["oh"] >= 1 and g["ow"] >= 1
    return g


def _values(rng, shape, dtype, specials):
    values = rng.standard_normal(shape) * 2
    if specials and values.size and rng.integers(4) == 0:
        # A few NaN, +-Inf and -0.0 (in x and biases only: 0 * Inf in zero padding is another matter).
        k = int(rng.integers(1, 4))
        flat = values.reshape(-1)
        flat[rng.integers(0, flat.size, k)] = rng.choice([np.nan, np.inf, -np.inf, -0.0], k)
    return values.astype(dtype)


def _layout(draw, rng, values, dtype):
    names = list(LAYOUT_NAMES)
    if dtype == np.float64:
        names.append("list")
    name = draw(st.sampled_from(["plain"] * 6 + names))
    if name == "list":
        return values.tolist()
    return LAYOUTS[name](values, rng)


@st.composite
def valid_call(draw, function):
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    g = draw(geometry(spatial=function != "pointwise"))
    n, c = g["n"], g["c"]
    x = _values(rng, (n, g["h"], g["w"], c), dtype, specials=True)
    kwargs = {}
    if function == "pointwise":
        cout = draw(st.one_of(st.integers(1, 20), st.sampled_from([16, 17, 31, 32, 33, 48, 64, 65])))
        four_d = draw(st.booleans())
        weight = _values(rng, (1, 1, c, cout) if four_d else (c, cout), dtype, specials=False) / np.sqrt(c)
        weight = weight.astype(dtype)
        bias = _values(rng, (cout,), dtype, specials=True) if draw(st.booleans()) else None
        arrays = [x, weight, bias]
        out_shape = (n, g["h"], g["w"], cout)
        terms = c
        kwargs["activation"] = draw(st.sampled_from(ACTIVATIONS))
    else:
        m = g["multiplier"]
        cm = c * (m or 1)
        dw_shape = (g["kh"], g["kw"], c) if m is None else (g["kh"], g["kw"], c, m)
        dw_weight = _values(rng, dw_shape, dtype, specials=False)
        dw_bias = _values(rng, (cm,), dtype, specials=True) if draw(st.booleans()) else None
        geometry_kwargs = dict(
            stride=draw(int_pair_form(*g["stride"])),
            padding=draw(padding_form(g["pads"])),
            dilation=draw(int_pair_form(*g["dilation"])),
        )
        # Leave out the defaults sometimes.
        for name, default in (("stride", (1, 1)), ("dilation", (1, 1))):
            if g[name] == default and draw(st.booleans()):
                del geometry_kwargs[name]
        if g["pads"] == (0, 0, 0, 0) and draw(st.booleans()):
            del geometry_kwargs["padding"]
        kwargs.update(geometry_kwargs)
        if function == "depthwise":
            arrays = [x, dw_weight, dw_bias]
            out_shape = (n, g["oh"], g["ow"], cm)
            terms = g["kh"] * g["kw"]
            kwargs["activation"] = draw(st.sampled_from(ACTIVATIONS))
        else:
            cout = draw(st.one_of(st.integers(1, 20), st.sampled_from([16, 17, 32, 33, 64])))
            dw_weight = (dw_weight / np.sqrt(g["kh"] * g["kw"])).astype(dtype)
            pw_shape = (1, 1, cm, cout) if draw(st.booleans()) else (cm, cout)
            pw_weight = (_values(rng, pw_shape, dtype, specials=False) / np.sqrt(cm)).astype(dtype)
            pw_bias = _values(rng, (cout,), dtype, specials=True) if draw(st.booleans()) else None
            arrays = [x, dw_weight, pw_weight, dw_bias, pw_bias]
            out_shape = (n, g["oh"], g["ow"], cout)
            terms = g["kh"] * g["kw"] + 1 + cm
            kwargs["depthwise_activation"] = draw(st.sampled_from(ACTIVATIONS))
            kwargs["activation"] = draw(st.sampled_from(ACTIVATIONS))
    originals = dict(zip(_NAMES[function], arrays))
    arrays = [None if a is None else _layout(draw, rng, a, dtype) for a in arrays]
    for name in ("activation", "depthwise_activation"):
        if name in kwargs and kwargs[name] is None and draw(st.booleans()):
            del kwargs[name]

    kwargs["num_threads"] = draw(st.sampled_from([None, None, 1, 2, 3, 8, 2**16, 2**62, 2**200, np.int64(2),
                                                  np.uint8(3), True]))
    if kwargs["num_threads"] is None and draw(st.booleans()):
        del kwargs["num_threads"]
    buffer = None
    if draw(st.booleans()):
        buffer, out = _helpers.out_between_canaries(out_shape, dtype)
        kwargs["out"] = out

    # Optional arguments positionally or by keyword; trailing Nones dropped sometimes.
    if function == "depthwise":
        names = ["x", "weight", "bias"]
    elif function == "pointwise":
        names = ["x", "weight", "bias"]
    else:
        names = ["x", "depthwise_weight", "pointwise_weight", "depthwise_bias", "pointwise_bias"]
    positional = draw(st.integers(2 if function != "separable" else 3, len(names)))
    args = arrays[:positional]
    for name, value in zip(names[positional:], arrays[positional:]):
        if value is not None or draw(st.booleans()):
            kwargs[name] = value
    channels = {"bias": out_shape[3], "pointwise_bias": out_shape[3]}
    if function == "separable":
        channels["depthwise_bias"] = c * (g["multiplier"] or 1)
    return Call(function, args, kwargs, "valid", dtype=dtype, terms=terms, out_buffer=buffer,
                out_shape=out_shape, channels=channels, originals=originals)


# ---------------------------------------------------------------------------------------------- mutations

_NAMES = {
    "depthwise": ["x", "weight", "bias"],
    "pointwise": ["x", "weight", "bias"],
    "separable": ["x", "depthwise_weight", "pointwise_weight", "depthwise_bias", "pointwise_bias"],
}


def _get(call, name):
    names = _NAMES[call.function]
    i = names.index(name)
    if i < len(call.args):
        return call.args[i]
    return call.kwargs.get(name)


def _set(call, name, value):
    names = _NAMES[call.function]
    i = names.index(name)
    if i < len(call.args):
        call.args[i] = value
    else:
        call.kwargs[name] = value


def _bad_dtype_array(draw, rng, shape):
    dtype = np.dtype(draw(st.sampled_from(BAD_DTYPES)))
    values = rng.standard_normal(shape) * 3
    if dtype.kind in "US":
        return values.astype(dtype)
    if dtype.kind in "mM":
        return values.astype(np.int64).astype(dtype)
    return values.astype(dtype)


def _other_float(dtype):
    return DTYPES[1] if np.dtype(dtype) == DTYPES[0] else DTYPES[0]


def _mutations(function):
    names = ["x_dtype", "weight_dtype", "bias", "x_ndim", "x_empty", "weight_shape", "weight_empty",
             "activation", "out", "threads", "not_an_array", "extra_argument"]
    if function != "pointwise":
        names += ["stride", "dilation", "padding", "overflow_padding", "kernel_too_big", "huge_stride"]
    if function == "separable":
        names += ["pointwise_weight", "depthwise_activation"]
    return names


def _apply(draw, call, mutation, rng):
    """Break ``call`` in the way ``mutation`` names; returns False when it does not apply to this call."""
    f = call.function
    weight_name = "depthwise_weight" if f == "separable" else "weight"
    x = call.originals["x"]
    if mutation == "x_dtype":
        if not call.float_changed and isinstance(x, np.ndarray) and x.dtype.kind == "f" and draw(st.booleans()):
            call.float_changed = True  # one argument only: two would make the other float dtype match again
            _set(call, "x", x.astype(_other_float(call.dtype)))  # a float dtype the weights do not share
        else:
            _set(call, "x", _bad_dtype_array(draw, rng, x.shape))
    elif mutation == "weight_dtype":
        name = draw(st.sampled_from([weight_name] + (["pointwise_weight"] if f == "separable" else [])))
        w = call.originals[name]
        if not call.float_changed and draw(st.booleans()):
            call.float_changed = True
            _set(call, name, w.astype(_other_float(call.dtype)))
        else:
            _set(call, name, _bad_dtype_array(draw, rng, w.shape))
    elif mutation == "bias":
        names = ["bias"] if f != "separable" else ["depthwise_bias", "pointwise_bias"]
        name = draw(st.sampled_from(names))
        length = _bias_length(call, name)
        kinds = ["short", "long", "2d", "scalar", "dtype", "empty"] + ([] if call.float_changed else ["other_float"])
        kind = draw(st.sampled_from(kinds))
        call.float_changed |= kind == "other_float"
        dtype = call.dtype
        bias = {
            "short": lambda: np.ones(length - 1, dtype),
            "long": lambda: np.ones(length + 1, dtype),
            "2d": lambda: np.ones((1, length), dtype),
            "scalar": lambda: dtype.type(1.0),
            "dtype": lambda: _bad_dtype_array(draw, rng, (length,)),
            "other_float": lambda: np.ones(length, _other_float(dtype)),
            "empty": lambda: np.ones(0, dtype) if length else np.ones(2, dtype),
        }[kind]()
        _set(call, name, bias)
    elif mutation == "x_ndim":
        choice = draw(st.sampled_from(["3d", "5d", "0d", "1d", "scalar"]))
        new = {
            "3d": lambda: x[0], "5d": lambda: x[None], "0d": lambda: x.reshape(-1)[0:1].reshape(()),
            "1d": lambda: x.reshape(-1), "scalar": lambda: 2.0,
        }[choice]()
        _set(call, "x", new)
    elif mutation == "x_empty":
        shape = list(x.shape)
        shape[draw(st.integers(0, 3))] = 0
        _set(call, "x", np.zeros(shape, call.dtype))
    elif mutation == "weight_shape":
        w = call.originals[weight_name]
        c = x.shape[3]
        if f == "pointwise":
            kind = draw(st.sampled_from(["cin", "1d", "3d", "4d_spatial", "5d"]))
            shape = {
                "cin": (c + draw(st.sampled_from([-1, 1, 2])), w.shape[-1]),
                "1d": (c,), "3d": (1, c, w.shape[-1]), "4d_spatial": (draw(st.integers(2, 3)), 1, c, w.shape[-1]),
                "5d": (1, 1, 1, c, w.shape[-1]),
            }[kind]
        else:
            kind = draw(st.sampled_from(["c", "2d", "5d"]))
            shape = {
                "c": w.shape[:2] + (c + draw(st.sampled_from([-1, 1, 3])),) + w.shape[3:],
                "2d": w.shape[:2], "5d": w.shape + (1,) if w.ndim == 4 else w.shape + (1, 1),
            }[kind]
        if 0 in shape:  # c - 1 == 0: that is weight_empty's business, but invalid all the same
            pass
        _set(call, weight_name, rng.standard_normal(shape).astype(call.dtype))
    elif mutation == "weight_empty":
        w = call.originals[weight_name]
        shape = list(w.shape)
        if f == "pointwise":
            shape[-1] = 0  # no output channel (an empty Cin would mismatch x's channels anyway)
        else:
            axis = draw(st.sampled_from([0, 1] + ([3] if w.ndim == 4 else [])))
            shape[axis] = 0
        _set(call, weight_name, np.zeros(shape, call.dtype))
    elif mutation == "pointwise_weight":
        w = call.originals["pointwise_weight"]
        cin = w.shape[-2]
        shape = draw(st.sampled_from([(cin + 1, w.shape[-1]), (max(cin - 1, 0) or cin + 2, w.shape[-1]),
                                      (cin, 0), (2, 2, cin, w.shape[-1]), (cin,), (1, cin, w.shape[-1])]))
        _set(call, "pointwise_weight", np.ones(shape, call.dtype))
    elif mutation in ("stride", "dilation"):
        call.kwargs[mutation] = draw(st.sampled_from(BAD_SCALARS))
    elif mutation == "huge_stride":
        call.kwargs[draw(st.sampled_from(["stride", "dilation"]))] = draw(st.sampled_from(HUGE_SCALARS))
        # A huge dilation with a kernel of more than one tap empties the output (also ValueError); with one tap
        # it reaches the kernels: both must raise ValueError.
    elif mutation == "padding":
        call.kwargs["padding"] = draw(st.sampled_from(BAD_PADDINGS))
    elif mutation == "overflow_padding":
        call.kwargs["padding"] = draw(st.sampled_from(OVERFLOW_PADDINGS))
    elif mutation == "kernel_too_big":
        h = x.shape[1]
        pt, pb = draw(st.integers(0, 2)), draw(st.integers(0, 2))
        call.kwargs["padding"] = ((pt, pb), (0, 0))
        w = call.originals[weight_name]
        if draw(st.booleans()):
            shape = (h + pt + pb + draw(st.integers(1, 3)),) + w.shape[1:]  # taller than the padded image
            _set(call, weight_name, rng.standard_normal(shape).astype(call.dtype))
            call.kwargs.pop("dilation", None)
        else:
            if w.shape[0] < 2:
                _set(call, weight_name, rng.standard_normal((2,) + w.shape[1:]).astype(call.dtype))
            big = draw(st.sampled_from([h + pt + pb, h + pt + pb + 5, 2**40, 2**62, 2**63 + 1]))
            call.kwargs["dilation"] = (big, 1)
    elif mutation == "activation":
        call.kwargs["activation"] = draw(st.sampled_from(BAD_ACTIVATIONS))
    elif mutation == "depthwise_activation":
        call.kwargs["depthwise_activation"] = draw(st.sampled_from(BAD_ACTIVATIONS))
    elif mutation == "threads":
        call.kwargs["num_threads"] = draw(st.sampled_from(BAD_THREADS))
    elif mutation == "out":
        return _bad_out(draw, call, rng)
    elif mutation == "not_an_array":
        name = draw(st.sampled_from(_NAMES[f][:2] + (["pointwise_weight"] if f == "separable" else [])))
        value = draw(st.sampled_from([None, "abc", {"a": 1}, object(), [[1.0, 2.0], [3.0]], b"\x00" * 16, 1 + 2j]))
        if value is None and name == "x":
            value = "x"
        _set(call, name, value)
    elif mutation == "extra_argument":
        if draw(st.booleans()):
            call.kwargs[draw(st.sampled_from(["strides", "pad", "threads", "bias_", "groups"]))] = 1
        else:  # one positional argument too many
            full = [_get(call, name) for name in _NAMES[f]]
            for name in _NAMES[f]:
                call.kwargs.pop(name, None)
            call.args = full + [1]
    else:  # pragma: no cover
        raise AssertionError(mutation)
    return True


def _bias_length(call, name):
    return call.channels[name]


def _bad_out(draw, call, rng):
    shape, dtype = call.out_shape, call.dtype
    kinds = ["shape", "ndim", "dtype", "byteorder", "read_only", "misaligned", "not_array", "fortran",
             "strided", "negative", "overlap", "same_as_input"]
    kind = draw(st.sampled_from(kinds))
    fill = np.float32(draw(st.sampled_from([1.5, np.nan])))
    if kind == "shape":
        bad = list(shape)
        axis = draw(st.integers(0, 3))
        bad[axis] += draw(st.sampled_from([-1, 1, 2])) if bad[axis] > 1 else 1
        out = np.full(bad, fill, dtype)
    elif kind == "ndim":
        out = np.full(draw(st.sampled_from([shape[1:], shape + (1,), (int(np.prod(shape)),)])), fill, dtype)
    elif kind == "dtype":
        out = np.full(shape, 1, draw(st.sampled_from([_other_float(dtype), np.dtype(np.float16),
                                                      np.dtype(np.int32), np.dtype(np.complex64),
                                                      np.dtype(object), np.dtype(np.longdouble)])))
    elif kind == "byteorder":
        out = np.full(shape, fill, dtype.newbyteorder(">"))
    elif kind == "read_only":
        out = np.full(shape, fill, dtype)
        out.flags.writeable = False
    elif kind == "misaligned":
        out = _helpers._misaligned(np.full(shape, fill, dtype))
    elif kind == "not_array":
        out = draw(st.sampled_from(["list", "memoryview", "none_like"]))
        out = {"list": np.full(shape, fill, dtype).tolist(), "memoryview": memoryview(np.full(shape, fill, dtype)),
               "none_like": 0.0}[out]
    elif kind in ("fortran", "strided", "negative"):
        values = np.full(shape, fill, dtype)
        out = {"fortran": np.asfortranarray, "strided": _helpers._sliced,
               "negative": _helpers._negative_strides}[kind](values)
        if out.flags.c_contiguous:  # e.g. a Fortran array of one non-trivial axis: still C-contiguous
            out = np.full(shape[:3] + (2 * shape[3],), fill, dtype)[..., ::2]
            if out.flags.c_contiguous:  # a single element: make it the wrong shape instead
                out = np.full(shape + (1,), fill, dtype)
    else:  # overlap with an input array of the call
        names = [n for n in _NAMES[call.function] if isinstance(_get(call, n), np.ndarray)
                 and _get(call, n).dtype == dtype and _get(call, n).size > 0]
        if not names:
            out = np.full(shape, fill, dtype).T  # fall back: not C-contiguous (or the wrong shape)
            if out.shape == shape and out.flags.c_contiguous:
                out = np.full(shape + (1,), fill, dtype)
        else:
            name = draw(st.sampled_from(names))
            values = np.ascontiguousarray(_get(call, name))
            if kind == "same_as_input" and values.shape == tuple(shape):
                _set(call, name, values)
                out = values
            else:
                offset = draw(st.sampled_from(list(_helpers.OVERLAP_OFFSETS)))
                _, copy, out = _helpers.overlapping(values, shape, _helpers.OVERLAP_OFFSETS[offset](values.size),
                                                    fill)
                _set(call, name, copy)
    call.kwargs["out"] = out
    call.out_buffer = None
    return True


@st.composite
def invalid_call(draw, function):
    call = draw(valid_call(function))
    call.kind = "invalid"
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    count = draw(st.sampled_from([1, 1, 1, 2, 3]))
    for mutation in draw(st.lists(st.sampled_from(_mutations(function)), min_size=count, max_size=count)):
        if _apply(draw, call, mutation, rng):
            call.mutations.append(mutation)
    return call


# -------------------------------------------------------------------------------------------- chaos

CHAOS_DTYPES = ("float32", "float64", ">f4", ">f8", "float16", "int32", "uint8", "bool", "complex64")


def _chaos_array(function_dims):
    return hnp.arrays(
        dtype=st.sampled_from(CHAOS_DTYPES),
        shape=hnp.array_shapes(min_dims=function_dims[0], max_dims=function_dims[1], min_side=0, max_side=5),
        elements=None,
    ).map(_tame)


def _tame(a):
    # Finite values between 1e-3 and 10 in magnitude, zeros and NaN: float32 overflow and underflow (a product of
    # two tiny numbers rounding to 0, where the float64 reference keeps it) are not what chaos calls are about.
    if a.dtype.kind == "f":
        dtype = a.dtype  # byte order included
        a = np.clip(np.nan_to_num(a, nan=np.nan, posinf=10, neginf=-10), -10, 10)
        return np.where(np.abs(a) < 1e-3, 0, a).astype(dtype)
    return a


_chaos_scalar = st.one_of(st.none(), st.integers(-3, 9), st.floats(allow_nan=True), st.text(max_size=6),
                          st.sampled_from(["same", "valid", "relu", "relu6", "hardswish"]),
                          st.tuples(st.integers(-2, 5), st.integers(-2, 5)),
                          st.lists(st.integers(-1, 4), max_size=3))


@st.composite
def _plausible_arrays(draw, function):
    """Arrays of one dtype whose shapes are near valid ones (sides 0-4, channel counts off by one or not)."""
    # Coin flips from a generator: hypothesis's own draws favour the boundaries (0, the first choice) too much
    # for calls that must be mostly well-formed to get past validation.
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = CHAOS_DTYPES[rng.integers(len(CHAOS_DTYPES)) if rng.random() < 0.2 else rng.integers(4)]
    side = st.just(0) if rng.random() < 0.05 else st.integers(1, 4)
    n, h, w, c = (draw(side) for _ in range(4))
    near = st.sampled_from([c, c, c, c + 1, max(c - 1, 0)])
    x = draw(hnp.arrays(dtype, (n, h, w, c), elements=_elements(dtype)))
    if function == "pointwise":
        shapes = [draw(st.sampled_from([(draw(near), draw(side)), (1, 1, draw(near), draw(side)), (draw(near),)])),
                  (draw(side),)]
    else:
        m = draw(st.sampled_from([None, 1, 2, 0]))
        kernel = (draw(side), draw(side), draw(near)) + (() if m is None else (m,))
        cm = c * (m or 1)
        shapes = [kernel]
        if function == "separable":
            shapes.append(draw(st.sampled_from([(cm, draw(side)), (1, 1, cm, draw(side)), (cm + 1, 2)])))
        shapes.append(draw(st.sampled_from([(cm,), (cm + 1,), (1, cm)])))
        if function == "separable":
            shapes.append((draw(side),))
    arrays = [x] + [draw(hnp.arrays(dtype, shape, elements=_elements(dtype))) for shape in shapes]
    return arrays


def _elements(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        width = min(8 * dtype.itemsize, 64)
        return st.one_of(st.floats(-10, 10, width=width).map(lambda v: 0.0 if abs(v) < 1e-3 else v),
                         st.just(float("nan")))
    return None


_PLAUSIBLE = {
    "stride": st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))),
    "dilation": st.one_of(st.integers(1, 2), st.tuples(st.integers(1, 2), st.integers(1, 2))),
    "padding": st.one_of(st.sampled_from(["same", "valid"]), st.integers(0, 2),
                         st.tuples(st.integers(0, 2), st.integers(0, 2))),
    "activation": st.sampled_from(ACTIVATIONS),
    "depthwise_activation": st.sampled_from(ACTIVATIONS),
    "num_threads": st.sampled_from([None, 1, 2]),
}


@st.composite
def chaos_call(draw, function):
    count = 3 if function != "separable" else 5
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    plausible = rng.random() < 0.7
    if plausible:
        args = draw(_plausible_arrays(function))
        # Biases may be absent; any argument may be something else.
        args = [draw(_chaos_scalar) if rng.random() < 0.05 else a for a in args]
        for i in range(2 if function != "separable" else 3, count):
            if rng.random() < 0.5:
                args[i] = None
    else:
        dims = [(0, 6)] * count
        dims[0] = (3, 5)
        args = [draw(st.one_of(_chaos_array(dims[i]), _chaos_scalar)) if i else draw(_chaos_array(dims[0]))
                for i in range(count)]
    kwargs = {}
    keys = (["stride", "padding", "dilation"] if function != "pointwise" else []) + ["activation", "num_threads"]
    if function == "separable":
        keys.append("depthwise_activation")
    for key in keys:
        if rng.random() < 0.5:
            kwargs[key] = draw(_PLAUSIBLE[key] if plausible and rng.random() < 0.9 else _chaos_scalar)
    if kwargs.get("num_threads") is not None and isinstance(kwargs["num_threads"], int) \
            and kwargs["num_threads"] > 64:
        kwargs["num_threads"] = 64
    return Call(function, args, kwargs, "chaos")


@st.composite
def any_call(draw):
    function = draw(st.sampled_from(sorted(FUNCTIONS)))
    kind = draw(st.sampled_from(["valid"] * 4 + ["invalid"] * 5 + ["chaos"]))
    if kind == "valid":
        return draw(valid_call(function))
    if kind == "invalid":
        return draw(invalid_call(function))
    return draw(chaos_call(function))


# --------------------------------------------------------------------------------------------- the driver

_SETTINGS = dict(deadline=None, database=None, derandomize=False, print_blob=True,
                 phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck),
                 report_multiple_bugs=False)


def _batch(stats, deadline, examples, batch_seed):
    @hypothesis_seed(batch_seed)
    @settings(max_examples=examples, **_SETTINGS)
    @given(call=any_call())
    def fuzz_batch(call):
        if time.monotonic() > deadline and not _shrinking[0]:
            return  # time is up: let hypothesis run out the batch's remaining examples without work
        note(call.describe())
        try:
            check(call, stats)
        except BaseException:
            _shrinking[0] = True  # keep checking while hypothesis shrinks the failure, even past the deadline
            raise

    _shrinking = [False]
    fuzz_batch()


def _finding_key(exc):
    tb = traceback.extract_tb(exc.__traceback__)
    where = tb[-1] if tb else None
    place = f"{os.path.basename(where.filename)}:{where.lineno}" if where else "?"
    message = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__} at {place}: {message[:160]}"


def run(seconds, seed=None, stop_on_first=False, batch_examples=200, log=None):
    """Fuzz for ``seconds`` of wall time; returns the Stats (``stats.findings`` lists what failed).

    Hypothesis runs batches of ``batch_examples`` examples, each batch with its own seed (``seed + i``); a
    failure is shrunk to a minimal call, recorded, and the fuzzing goes on with the next batch
    (``stop_on_first``: re-raised instead).
    """
    stats = Stats()
    seed = random.randrange(2**32) if seed is None else seed
    stats.seed = seed
    start = time.monotonic()
    deadline = start + seconds
    batch = 0
    last_log = start
    while time.monotonic() < deadline:
        try:
            _batch(stats, deadline, batch_examples, seed + batch)
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            if stop_on_first:
                raise
            key = _finding_key(exc)
            text = "".join(traceback.format_exception(exc))
            notes = "\n".join(getattr(exc, "__notes__", []))
            stats.findings.append((key, f"batch seed {seed + batch}\n{notes}\n{text}"))
            if log:
                log(f"FINDING ({key}) in batch seed {seed + batch}:\n{notes}\n{text}")
        batch += 1
        now = time.monotonic()
        if log and now - last_log >= 30:
            log(f"[{now - start:6.0f} s] {stats.summary()}")
            last_log = now
    stats.seconds = time.monotonic() - start
    stats.batches = batch
    return stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("DWCY_FUZZ_SECONDS", 60)))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--stop-on-first", action="store_true")
    parser.add_argument("--batch", type=int, default=200, help="examples per hypothesis run")
    options = parser.parse_args(argv)

    def log(message):
        print(message, flush=True)

    print(f"dwcy {dwcy.__version__}, {dwcy.config().get('simd_level', '?')}; fuzzing for {options.seconds:g} s",
          flush=True)
    stats = run(options.seconds, options.seed, options.stop_on_first, options.batch, log=log)
    print(f"seed {stats.seed}, {stats.batches} batches, {stats.seconds:.0f} s", flush=True)
    print(stats.summary(), flush=True)
    unique = {}
    for key, _ in stats.findings:
        unique[key] = unique.get(key, 0) + 1
    for key, count in unique.items():
        print(f"  finding x{count}: {key}")
    return 1 if stats.findings else 0


if __name__ == "__main__":
    sys.exit(main())
