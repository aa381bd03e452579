"""dwcy.dask: the kernels on dask arrays, against the in-memory result.

Every chunk is one call of the deterministic kernels on the same inputs and weights as the in-memory call, so the
results are compared bit for bit (np.array_equal): over batch chunks, over height/width chunks with halos
(map_overlap) and over channel chunks (depthwise), with dask's threaded scheduler and with a dask.distributed
LocalCluster of 2 worker processes.
"""

import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

da = pytest.importorskip("dask.array", reason="dask is not installed (pip install 'dwcy[dask]')")

import dwcy  # noqa: E402
import dwcy.dask as dd  # noqa: E402

DTYPES = (np.float32, np.float64)


def _inputs(rng, dtype, *, n=7, h=11, w=10, c=5, k=3, multiplier=1, cout=6):
    def rand(*shape):
        return rng.standard_normal(shape).astype(dtype)

    dw_shape = (k, k, c) if multiplier == 1 else (k, k, c, multiplier)
    return rand(n, h, w, c), rand(*dw_shape), rand(c * multiplier), rand(c * multiplier, cout), rand(cout)


# One case per operation, with the arguments that change the output geometry: "same" padding, a stride,
# a dilation, a channel multiplier, biases and activations.
def _cases(rng, dtype):
    x, dw, db, pw, pb = _inputs(rng, dtype, multiplier=2)
    return {
        "depthwise": (dwcy.depthwise_conv2d, dd.depthwise_conv2d, (x, dw, db),
                      dict(stride=2, padding="same", dilation=1, activation="relu6")),
        "pointwise": (dwcy.pointwise_conv2d, dd.pointwise_conv2d, (x, pw[:5], pb), dict(activation="hardswish")),
        "separable": (dwcy.separable_conv2d, dd.separable_conv2d, (x, dw, pw, db, pb),
                      dict(stride=(1, 2), padding="same", dilation=(2, 1), depthwise_activation="relu",
                           activation="relu6")),
    }


OPS = ("depthwise", "pointwise", "separable")


def _check(op, rng, dtype, chunks, scheduler="sync", num_threads=1):
    eager, lazy, args, kwargs = _cases(rng, dtype)[op]
    x = args[0]
    expected = eager(*args, **kwargs)
    y = lazy(da.from_array(x, chunks=chunks), *args[1:], num_threads=num_threads, **kwargs)
    assert y.shape == expected.shape and y.dtype == expected.dtype
    result = y.compute(scheduler=scheduler)
    assert result.shape == expected.shape and result.dtype == expected.dtype
    assert np.array_equal(result, expected)
    return y


# ------------------------------------------------------------------------------------------ batch chunks


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
def test_batch_chunks_threaded_scheduler(op, dtype, rng):
    y = _check(op, rng, dtype, ((3, 1, 2, 1), -1, -1, -1), scheduler="threads")
    assert y.chunks[0] == (3, 1, 2, 1)
    assert y.numblocks[1:] == (1, 1, 1)


@pytest.mark.parametrize("op", OPS)
def test_num_threads_is_passed_to_every_task(op, rng, monkeypatch):
    seen = []
    name = f"{op}_conv2d"
    kernel = getattr(dwcy._api, name)

    def spy(*args, num_threads, **kwargs):
        seen.append(num_threads)
        return kernel(*args, num_threads=num_threads, **kwargs)

    monkeypatch.setattr(dwcy._api, name, spy)
    for num_threads, calls in ((1, 3), (2, 3), (None, 3)):
        seen.clear()
        _check(op, rng, np.float32, ((3, 2, 2), -1, -1, -1), num_threads=num_threads)
        assert seen == [num_threads] * calls
    seen.clear()
    _, lazy, args, kwargs = _cases(rng, np.float32)[op]
    lazy(da.from_array(args[0], chunks=(2, -1, -1, -1)), *args[1:], **kwargs).compute(scheduler="sync")
    assert set(seen) == {1}, "num_threads defaults to 1 per task"


@pytest.mark.parametrize("op", OPS)
def test_empty_batch_chunks(op, rng):
    _check(op, rng, np.float64, ((0, 4, 0, 3), -1, -1, -1))


def test_numpy_and_big_endian_inputs(rng):
    eager, lazy, args, kwargs = _cases(rng, np.float32)["separable"]
    expected = eager(*args, **kwargs)
    y = lazy(args[0], *args[1:], **kwargs)  # a NumPy x is wrapped into a dask array
    assert isinstance(y, da.Array)
    assert np.array_equal(y.compute(scheduler="sync"), expected)
    big = da.from_array(args[0].astype(">f4"), chunks=(2, -1, -1, -1))
    y = lazy(big, *args[1:], **kwargs)
    assert y.dtype == np.dtype(np.float32) and y.dtype.isnative
    assert np.array_equal(y.compute(scheduler="sync"), expected)


# --------------------------------------------------------------------------------- spatial and channel chunks


@pytest.mark.parametrize("op", OPS)
def test_spatial_chunks(op, rng):
    y = _check(op, rng, np.float32, ((4, 3), (4, 3, 4), (2, 5, 3), -1), scheduler="threads")
    assert y.numblocks[1] > 1 and y.numblocks[2] > 1


def _random_geometry(rng):
    k = int(rng.integers(1, 6))
    kw = int(rng.integers(1, 6))
    stride = tuple(int(s) for s in rng.integers(1, 4, size=2))
    dilation = tuple(int(d) for d in rng.integers(1, 3, size=2))
    padding = [
        "same", "valid", int(rng.integers(0, 4)),
        ((int(rng.integers(0, 7)), int(rng.integers(0, 7))), (int(rng.integers(0, 7)), int(rng.integers(0, 7)))),
    ][int(rng.integers(0, 4))]
    h, w = int(rng.integers(6, 20)), int(rng.integers(6, 20))
    return dict(k=k, kw=kw, stride=stride, dilation=dilation, padding=padding, h=h, w=w)


def _random_chunks(rng, size):
    cuts = np.sort(rng.choice(np.arange(1, size), size=int(rng.integers(0, min(size - 1, 5) + 1)), replace=False))
    return tuple(np.diff(np.concatenate([[0], cuts, [size]])).astype(int).tolist())


TRIES = int(os.environ.get("DWCY_DASK_TRIES", 40))


@pytest.mark.parametrize("op", ["depthwise", "separable"])
def test_random_spatial_chunks_match_in_memory(op, rng):
    # Halos for every kernel size, stride, dilation and padding (including padding wider than the kernel,
    # where whole chunks of outputs read padding only), over random uneven chunks of height and width.
    tried = 0
    while tried < TRIES:
        g = _random_geometry(rng)
        dtype = DTYPES[tried % 2]
        c, m = int(rng.integers(1, 5)), int(rng.integers(1, 3))
        x = rng.standard_normal((2, g["h"], g["w"], c)).astype(dtype)
        dw = rng.standard_normal((g["k"], g["kw"], c, m)).astype(dtype)
        db = rng.standard_normal(c * m).astype(dtype)
        kwargs = dict(stride=g["stride"], padding=g["padding"], dilation=g["dilation"])
        try:
            dwcy.depthwise_conv2d(x[:1], dw, **kwargs)
        except ValueError:
            continue  # the kernel spans more than the padded image: no output
        tried += 1
        chunks = (1, _random_chunks(rng, g["h"]), _random_chunks(rng, g["w"]), -1)
        if op == "depthwise":
            args = (dw, db)
            kwargs.update(activation="relu")
            expected = dwcy.depthwise_conv2d(x, *args, **kwargs)
            y = dd.depthwise_conv2d(da.from_array(x, chunks=chunks), *args, **kwargs)
        else:
            args = (dw, rng.standard_normal((c * m, 3)).astype(dtype), db)
            kwargs.update(depthwise_activation="relu6")
            expected = dwcy.separable_conv2d(x, *args, **kwargs)
            y = dd.separable_conv2d(da.from_array(x, chunks=chunks), *args, **kwargs)
        assert y.shape == expected.shape, (g, chunks)
        assert np.array_equal(y.compute(scheduler="sync"), expected), (g, chunks)


def test_chunks_reading_padding_only(rng):
    # Stride 5 and a 1x1 kernel with 23 rows of padding: the first chunk's outputs all read padding, the
    # last chunk's too, at the bottom; a 3x3 kernel with padding 9 on a 5-pixel image likewise.
    x = rng.standard_normal((2, 12, 5, 3))
    for w, chunks, kwargs in [
        (rng.standard_normal((1, 1, 3)), ((2, 9, 1), (1, 4)), dict(stride=5, padding=((23, 21), (0, 9)))),
        (rng.standard_normal((3, 3, 3)), ((4, 4, 4), (3, 2)), dict(stride=2, padding=9)),
    ]:
        b = rng.standard_normal(3)
        expected = dwcy.depthwise_conv2d(x, w, b, activation="relu", **kwargs)
        y = dd.depthwise_conv2d(da.from_array(x, chunks=(2,) + chunks + (-1,)), w, b, activation="relu", **kwargs)
        assert np.array_equal(y.compute(scheduler="sync"), expected)


def test_halo_depth_and_output_chunks(rng):
    # 3x3, stride 1, "same": one row of halo on each side, output chunks = input chunks (map_overlap);
    # chunks smaller than the halo (5x5 dilation 2: 4 rows) are merged with a neighbour.
    x = da.from_array(rng.standard_normal((2, 12, 12, 4)).astype(np.float32), chunks=(1, (5, 4, 3), (6, 6), 4))
    w = rng.standard_normal((3, 3, 4)).astype(np.float32)
    y = dd.depthwise_conv2d(x, w, padding="same")
    assert y.chunks == ((1, 1), (5, 4, 3), (6, 6), (4,))
    assert any(name.startswith("overlap") for name in y.dask.layers)
    w5 = rng.standard_normal((5, 5, 4)).astype(np.float32)
    y = dd.depthwise_conv2d(x.rechunk((1, (1, 4, 3, 4), 12, 4)), w5, padding="same", dilation=2)
    assert y.chunks[1] == (5, 7) and y.chunks[2] == (12,)
    assert np.array_equal(y.compute(scheduler="sync"), dwcy.depthwise_conv2d(np.asarray(x), w5, padding="same",
                                                                            dilation=2))


def test_batch_chunks_need_no_halo(rng):
    x = da.from_array(rng.standard_normal((4, 9, 9, 3)), chunks=(1, -1, -1, -1))
    y = dd.separable_conv2d(x, rng.standard_normal((3, 3, 3)), rng.standard_normal((3, 2)), padding="same")
    assert not any(name.startswith("overlap") for name in y.dask.layers)


def test_depthwise_channel_chunks_with_multiplier(rng):
    x, dw, db, _, _ = _inputs(rng, np.float32, c=7, multiplier=3)
    expected = dwcy.depthwise_conv2d(x, dw, db, padding="same", stride=2, activation="hardswish")
    y = dd.depthwise_conv2d(da.from_array(x, chunks=(3, (6, 5), -1, (2, 4, 1))), dw, db, padding="same", stride=2,
                            activation="hardswish")
    assert y.chunks[3] == (6, 12, 3)
    assert np.array_equal(y.compute(scheduler="threads"), expected)


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("op", ["pointwise", "separable"])
def test_channel_chunks_raise_with_the_rechunk_to_do(op, rng):
    _, lazy, args, kwargs = _cases(rng, np.float32)[op]
    x = da.from_array(args[0], chunks=(2, -1, -1, (3, 2)))
    with pytest.raises(ValueError, match=r"one chunk.*\(3, 2\).*x\.rechunk\(\{3: -1\}\)"):
        lazy(x, *args[1:], **kwargs)


@pytest.mark.parametrize("op", OPS)
def test_out_is_refused(op, rng):
    eager, lazy, args, kwargs = _cases(rng, np.float32)[op]
    out = np.empty_like(eager(*args, **kwargs))
    with pytest.raises(TypeError, match=r"out=.*dask\.array\.store"):
        lazy(da.from_array(args[0]), *args[1:], out=out, **kwargs)


def _never_computed(x):
    # A dask array whose every block raises: building a graph on it must not compute anything.
    def boom(block):
        raise AssertionError("the input was computed while the graph was built")

    return da.from_array(x, chunks=(2, -1, -1, -1)).map_blocks(boom, dtype=x.dtype)


def test_validation_at_graph_build_time(rng):
    x, dw, db, pw, pb = _inputs(rng, np.float32)
    xd = _never_computed(x)
    dd.separable_conv2d(xd, dw, pw, db, pb, padding="same")  # builds, computes nothing
    cases = [
        (TypeError, "x has dtype int64", lambda: dd.depthwise_conv2d(xd.astype(np.int64), dw)),
        (TypeError, "weight has dtype float64 but x has dtype float32",
         lambda: dd.depthwise_conv2d(xd, dw.astype(np.float64))),
        (ValueError, "weight has 4 input channels", lambda: dd.depthwise_conv2d(xd, dw[:, :, :4])),
        (ValueError, r"bias must have shape \(5,\)", lambda: dd.depthwise_conv2d(xd, dw, db[:3])),
        (ValueError, "padding must be", lambda: dd.depthwise_conv2d(xd, dw, padding="full")),
        (ValueError, "stride must be >= 1", lambda: dd.depthwise_conv2d(xd, dw, stride=0)),
        (ValueError, "activation must be one of", lambda: dd.depthwise_conv2d(xd, dw, activation="gelu")),
        (ValueError, "output would be empty", lambda: dd.depthwise_conv2d(xd[:, :2], dw)),
        (ValueError, "num_threads must be >= 1", lambda: dd.pointwise_conv2d(xd, pw, num_threads=0)),
        (ValueError, "weight has 6 input channels", lambda: dd.pointwise_conv2d(xd, pw.T)),
        (ValueError, "pointwise_weight has 4 input channels", lambda: dd.separable_conv2d(xd, dw, pw[:4])),
        (ValueError, r"pointwise_bias must have shape \(6,\)", lambda: dd.separable_conv2d(xd, dw, pw, db, pb[:2])),
        (ValueError, "depthwise_activation must be one of",
         lambda: dd.separable_conv2d(xd, dw, pw, depthwise_activation="tanh")),
        (ValueError, "x must be 4-D", lambda: dd.depthwise_conv2d(xd[0], dw)),
        (ValueError, "x must have no empty axis", lambda: dd.depthwise_conv2d(xd[:0], dw)),
        (TypeError, "weight is a dask array", lambda: dd.depthwise_conv2d(xd, da.from_array(dw))),
        (ValueError, "unknown chunk sizes", lambda: dd.depthwise_conv2d(xd[da.from_array(np.arange(7)) > 2], dw)),
    ]
    for error, message, build in cases:
        with pytest.raises(error, match=message):
            build()


def test_import_error_names_the_extra(tmp_path):
    # Without dask, importing dwcy.dask says which extra to install. The child gets this process's sys.path
    # (to import the same dwcy) and runs from a neutral directory (`python -c` puts it first on sys.path).
    code = textwrap.dedent("""
        import sys
        sys.modules["dask"] = None  # what an uninstalled package looks like to the import system
        sys.modules["dask.array"] = None
        import dwcy
        try:
            import dwcy.dask
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("dwcy.dask imported without dask")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                           cwd=tmp_path)
    assert child.returncode == 0, child.stderr
    assert 'pip install "dwcy[dask]"' in child.stdout


# ------------------------------------------------------------------------------------ dask.distributed


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    # Two single-threaded worker processes (started with "spawn": they import dwcy afresh), as on a 2-core CI.
    # Starting them sets OMP_NUM_THREADS=1 (and MKL_, OPENBLAS_NUM_THREADS, PYTHONHASHSEED) in this process's
    # os.environ, for the workers to inherit, and leaves it there: restore it, or every later test's child
    # processes would run single-threaded.
    environ = os.environ.copy()
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                      silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as client:
            yield client
    finally:
        os.environ.clear()
        os.environ.update(environ)


def _where_is_dwcy():
    # dwcy's package file and its compiled extension modules, as the calling process imported them.
    import importlib.machinery

    import dwcy

    compiled = sorted(os.path.realpath(m.__file__) for name, m in list(sys.modules.items())
                      if name.split(".")[0] == "dwcy"
                      and str(getattr(m, "__file__", "")).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)))
    return os.path.realpath(dwcy.__file__), compiled


def test_cluster_workers_import_the_installed_dwcy(client):
    # The workers must import the dwcy this process imported (the built package), not the uncompiled source
    # tree at the repository root (their working directory when pytest runs from there).
    here = _where_is_dwcy()
    workers = client.run(_where_is_dwcy)
    assert len(workers) == 2
    for package, compiled in workers.values():
        assert package == here[0]
        assert compiled and set(compiled) <= set(here[1]), (compiled, here[1])


@pytest.mark.parametrize("op", OPS)
def test_cluster_batch_chunks(op, client, rng):
    _check(op, rng, np.float32, ((3, 1, 2, 1), -1, -1, -1), scheduler=client)


def test_cluster_spatial_chunks_and_threads_per_task(client, rng):
    _check("separable", rng, np.float64, ((4, 3), (5, 6), (3, 3, 4), -1), scheduler=client, num_threads=2)
    _check("depthwise", rng, np.float32, ((4, 3), (5, 6), (3, 3, 4), (2, 3)), scheduler=client, num_threads=None)
