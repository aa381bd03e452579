"""The C-level API (dwcy/kernels.pxd) as a downstream Cython package sees it.

Two extensions are built against the installed dwcy in a temporary directory: tests/c_api/check_c_api.pyx,
which wraps every function of the API, and examples/extending (the documented example). Building needs
Cython and a C compiler, as building dwcy does.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dwcy
import dwcy.kernels
from dwcy import reference

from _helpers import DTYPES, assert_close_to_reference, depthwise_inputs, dtype_id, random_array

pytest.importorskip("Cython", reason="building an extension against dwcy needs Cython")

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(os.path.dirname(HERE), "examples", "extending")

SETUP = """
import os, dwcy
from Cython.Build import cythonize
from setuptools import Extension, setup
pxd_path = os.path.dirname(os.path.dirname(dwcy.__file__))
setup(ext_modules=cythonize([Extension("check_c_api", ["check_c_api.pyx"], include_dirs=[dwcy.get_include()])],
                            include_path=[pxd_path], quiet=True))
"""


def _build(directory):
    # A child process, from the build directory: the way a downstream package builds.
    result = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=directory,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The directory holding both built extensions, put on sys.path for the tests of this module."""
    directory = tmp_path_factory.mktemp("c_api")
    shutil.copy(os.path.join(HERE, "c_api", "check_c_api.pyx"), directory)
    (directory / "setup.py").write_text(SETUP)
    _build(directory)
    example = directory / "example"
    shutil.copytree(EXAMPLE, example)
    _build(example)
    sys.path[:0] = [str(directory), str(example)]
    yield directory
    sys.path.remove(str(directory))
    sys.path.remove(str(example))


def _geometry(x_shape, weight, stride, dilation, pads, activation):
    n, h, w, c = x_shape
    kh, kw, _, m = weight.shape
    return (n, h, w, c, m, kh, kw, *stride, *dilation, *pads, dwcy.ACTIVATIONS.index(activation))


GEOMETRIES = [  # stride, dilation, (top, bottom, left, right), multiplier, kernel
    ((1, 1), (1, 1), (1, 1, 1, 1), 1, 3),
    ((2, 2), (1, 1), (0, 1, 0, 1), 1, 3),
    ((1, 2), (2, 1), (2, 0, 3, 1), 2, 5),
]


@pytest.mark.parametrize("plan", [False, True], ids=["direct", "plan"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("stride, dilation, pads, multiplier, k", GEOMETRIES)
def test_depthwise(built, rng, dtype, plan, stride, dilation, pads, multiplier, k):
    import check_c_api

    x, weight, bias = depthwise_inputs(rng, dtype, n=2, h=11, w=21, c=19, kh=k, kw=k, multiplier=multiplier)
    weight = weight.reshape(k, k, 19, multiplier)
    geometry = _geometry(x.shape, weight, stride, dilation, pads, "relu6")
    kwargs = dict(stride=stride, dilation=dilation, padding=((pads[0], pads[1]), (pads[2], pads[3])),
                  activation="relu6")
    expected = dwcy.depthwise_conv2d(x, weight, bias, **kwargs)
    y = np.full_like(expected, np.nan)
    assert check_c_api.depthwise(x, weight.reshape(k, k, -1), bias, y, geometry, plan, 2) == 0
    np.testing.assert_array_equal(y, expected)  # the same kernels: the same bits


@pytest.mark.parametrize("plan", [False, True], ids=["direct", "plan"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("cin, cout", [(3, 5), (40, 70), (300, 33)])
def test_pointwise(built, rng, dtype, plan, cin, cout):
    import check_c_api

    x = random_array(rng, (2, 5, 7, cin), dtype)
    weight, bias = random_array(rng, (cin, cout), dtype), random_array(rng, cout, dtype)
    expected = dwcy.pointwise_conv2d(x, weight, bias, activation="hardswish")
    y = np.full(expected.shape, np.nan, dtype)
    assert check_c_api.pointwise(x.reshape(-1, cin), weight, bias, y.reshape(-1, cout), 3, plan, 2) == 0
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("plan", [False, True], ids=["direct", "plan"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_separable(built, rng, dtype, plan):
    import check_c_api

    x, dw_weight, dw_bias = depthwise_inputs(rng, dtype, n=2, h=40, w=33, c=24, kh=3, kw=3, multiplier=2)
    pw_weight, pw_bias = random_array(rng, (48, 40), dtype), random_array(rng, 40, dtype)
    dw4 = dw_weight.reshape(3, 3, 24, 2)
    geometry = _geometry(x.shape, dw4, (2, 2), (1, 1), (0, 1, 0, 1), "relu")
    expected = dwcy.separable_conv2d(x, dw4, pw_weight, dw_bias, pw_bias, stride=2, padding=((0, 1), (0, 1)),
                                     depthwise_activation="relu", activation="relu6")
    y = np.full(expected.shape, np.nan, dtype)
    rc = check_c_api.separable(x, dw4.reshape(3, 3, 48), dw_bias, pw_weight, pw_bias, y, geometry, 2, plan, 2)
    assert rc == 0
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("h, k, stride, dilation, before, after", [
    (7, 3, 1, 1, 1, 1), (7, 3, 2, 1, 0, 1), (5, 7, 1, 1, 0, 0), (5, 7, 3, 1, 1, 1), (9, 3, 4, 3, 2, 0), (1, 1, 9, 1, 0, 0),
])
def test_geometry_init_follows_the_python_rule(built, h, k, stride, dilation, before, after):
    import check_c_api

    expected = dwcy._args.output_size(h, k, stride, dilation, before, after)
    got = check_c_api.output_size((1, h, h, 3, 1, k, k, stride, stride, dilation, dilation, before, after, before,
                                   after, 0))
    assert got == ((expected, expected) if expected >= 1 else None)


def test_geometry_init_refuses_bad_arguments(built):
    import check_c_api

    good = (1, 8, 8, 3, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0)
    assert check_c_api.output_size(good) == (8, 8)
    for index, bad in [(0, 0), (3, 0), (5, 0), (7, 0), (9, 0), (11, -1), (15, 4)]:
        arguments = list(good)
        arguments[index] = bad
        assert check_c_api.output_size(tuple(arguments)) is None, (index, bad)


def test_the_extending_example(built, rng):
    import separable_batch

    x = random_array(rng, (3, 13, 17, 20), np.float32)
    dw, dw_bias = random_array(rng, (3, 3, 20), np.float32, 0.3), random_array(rng, 20, np.float32)
    pw, pw_bias = random_array(rng, (20, 9), np.float32, 0.2), random_array(rng, 9, np.float32)
    out = np.full((3, 13, 17, 9), np.nan, np.float32)
    separable_batch.separable_batch(x, dw, dw_bias, pw, pw_bias, out)
    assert_close_to_reference(out, reference.separable_conv2d, x, dw, pw, dw_bias, pw_bias, terms=9 + 20,
                              padding="same", depthwise_activation="relu6")


@pytest.mark.parametrize("level", dwcy.kernels.usable)
def test_the_c_api_runs_the_level_dwcy_chose(built, rng, monkeypatch, tmp_path, level):
    # In a child with DWCY_SIMD=level, the C-level API must give the bits of that level's Python kernels.
    x, dw_weight, dw_bias = depthwise_inputs(rng, np.float32, n=1, h=15, w=29, c=24, kh=3, kw=3, multiplier=1)
    pw_weight, pw_bias = random_array(rng, (24, 40), np.float32), random_array(rng, 40, np.float32)
    dw3 = dw_weight.reshape(3, 3, 24)
    monkeypatch.setattr(dwcy._api, "_kernels", dwcy.kernels.load(level))
    expected = dwcy.separable_conv2d(x, dw3, pw_weight, dw_bias, pw_bias, padding="same",
                                     depthwise_activation="relu6")
    monkeypatch.undo()
    np.savez(tmp_path / "call.npz", x=x, dw=dw3, dw_bias=dw_bias, pw=pw_weight, pw_bias=pw_bias)
    geometry = _geometry(x.shape, dw_weight.reshape(3, 3, 24, 1), (1, 1), (1, 1), (1, 1, 1, 1), "relu6")
    code = f"""
        import sys
        sys.path[:0] = [{str(built)!r}]
        import numpy as np, dwcy, check_c_api
        assert dwcy.config()["simd_level"] == {level!r}, dwcy.config()
        a = np.load({str(tmp_path / "call.npz")!r})
        for plan in (False, True):
            y = np.full((1, 15, 29, 40), np.nan, np.float32)
            rc = check_c_api.separable(a["x"], a["dw"], a["dw_bias"], a["pw"], a["pw_bias"], y, {geometry!r}, 0,
                                       plan, 2)
            assert rc == 0
            np.save({str(tmp_path)!r} + f"/y_{{plan}}.npy", y)
    """
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "DWCY_SIMD": level}, cwd=str(tmp_path))
    assert child.returncode == 0, child.stderr
    for plan in (False, True):
        np.testing.assert_array_equal(np.load(tmp_path / f"y_{plan}.npy"), expected, err_msg=f"plan={plan}")
