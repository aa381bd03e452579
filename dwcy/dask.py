"""dwcy on Dask arrays: the three kernels chunk by chunk, on a laptop's threads or a cluster.

Install with ``pip install "dwcy[dask]"``. Each function takes the same arguments as its ``dwcy`` twin, with
``x`` a ``dask.array.Array`` of shape ``(N, H, W, C)`` (a NumPy array is wrapped, chunked over the batch) and
the weights and biases as NumPy arrays, and returns a lazy ``dask.array.Array``::

    import dask.array as da, dwcy.dask
    x = da.from_array(images, chunks=(8, -1, -1, -1))      # 8 images per task
    y = dwcy.dask.separable_conv2d(x, dw, pw, padding="same", depthwise_activation="relu6")
    y.compute()                                           # or y.to_zarr(...), dask.array.store(y, target)

Chunks
------
* **Batch** (axis 0): any chunks; every chunk is one ``dwcy`` call (``map_blocks``). The result is bitwise
  identical to one in-memory call on the whole batch.
* **Height and width** (axes 1, 2): any chunks, for every kernel size, stride, dilation and padding. Each output
  chunk needs a halo of input rows from its neighbours: ``span = dilation * (K - 1)`` rows in all, split
  ``(min(pad_before, span), the rest)`` before/after the chunk, fetched with ``dask.array.map_overlap``. Output
  row ``o`` is computed by the chunk that holds input row ``o*stride - pad_before + min(pad_before, span)`` (for
  stride 1 and "same" padding: the output chunks are the input chunks). A chunk smaller than its halo is merged
  with its neighbour first (dask's rule: a halo comes from the adjacent chunk only). Every output element reads
  the same inputs and weights as in memory; the tests check the results are bitwise equal.
* **Channels** (axis 3): ``depthwise_conv2d`` works on any channel chunks (channels never mix; output chunks are
  ``C_chunk * M`` channels). ``pointwise_conv2d`` and ``separable_conv2d`` sum over all input channels and need
  them in one chunk: they raise ``ValueError`` otherwise (rechunk with ``x.rechunk({3: -1})``); they never rechunk
  silently, which would move the whole array.

Threads
-------
``num_threads`` defaults to **1** here (``None`` in ``dwcy``): dask already runs one task per worker thread, so
one OpenMP thread per task fills the machine without oversubscribing it. On a cluster with few threads per worker
process (``threads_per_worker=1``), pass ``num_threads=k`` to spend k cores inside each task: cores used =
worker processes x threads per worker x ``num_threads``. ``num_threads=None`` means OpenMP's default in the
worker (``dask.distributed`` sets ``OMP_NUM_THREADS=1`` in the worker processes it starts). The result is
bitwise identical whatever the thread count.

``out=`` is not supported (a dask result is made chunk by chunk); write into an existing array with
``dask.array.store(y, target)``.

Weights and biases are NumPy arrays; each is one key of the graph (``dask.delayed``), sent once to each worker
that needs it rather than with every task.

Arguments are validated when the graph is built (with ``dwcy._args``, the rules of the in-memory API), so a bad
shape, dtype or padding raises here, not at ``compute()``.
"""

from typing import NamedTuple

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # dask is an optional dependency
    raise ImportError(
        'dwcy.dask needs dask, which is not installed: pip install "dwcy[dask]" '
        f"(or pip install 'dask[array]' distributed); the import failed with: {exc}"
    ) from exc

from . import _api, _args

__all__ = ["depthwise_conv2d", "pointwise_conv2d", "separable_conv2d"]


# ------------------------------------------------------------------------------------------- validation


def _check_x(x):
    """``x`` as a 4-D dask array of a supported dtype with known chunk sizes; the native output dtype."""
    if not isinstance(x, da.Array):
        x = np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"x must be 4-D (N, H, W, C), got {x.ndim}-D with shape {tuple(x.shape)}")
        x = da.from_array(x, chunks=("auto", -1, -1, -1))
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D (N, H, W, C), got {x.ndim}-D with shape {tuple(x.shape)}")
    if any(np.isnan(s) for s in x.shape):
        raise ValueError(
            f"x has unknown chunk sizes (shape {x.shape}); call x.compute_chunk_sizes() (or x = x.persist()) first"
        )
    if 0 in x.shape:
        raise ValueError(f"x must have no empty axis, got shape {tuple(x.shape)}")
    dtype = x.dtype if x.dtype.isnative else x.dtype.newbyteorder("=")
    _args._check_dtype(dtype, "x")
    return x, dtype


def _small(a, name, dtype):
    """A weight or bias as a C-contiguous NumPy array of ``dtype``, checked now (every task gets all of it)."""
    if a is None:
        return None
    if isinstance(a, da.Array):
        raise TypeError(
            f"{name} is a dask array; pass it as a NumPy array ({name}.compute()): every task needs all of "
            "the weights and biases, which are small"
        )
    a, native = _args._as_array(a, name, dtype)
    return _args._kernel_ready(a, native)


def _shared(a):
    """A weight or bias as one key of the graph: sent once to each worker that needs it, not with every task."""
    return None if a is None else dask.delayed(a, pure=True)


def _check_out(out, fn):
    if out is not None:
        raise TypeError(
            f"dwcy.dask.{fn} does not support out=: the result is a lazy dask array built chunk by chunk; "
            "write it into an existing array with dask.array.store(result, out)"
        )


def _whole_channels(x, fn):
    if x.numblocks[3] != 1:
        raise ValueError(
            f"dwcy.dask.{fn} needs all input channels of x in one chunk (it sums over them), but x has channel "
            f"chunks {x.chunks[3]}: rechunk first with x = x.rechunk({{3: -1}})"
        )


def _threads(num_threads):
    """Checked now; passed to every task as it is (None: OpenMP's default in the worker)."""
    _args.resolve_num_threads(num_threads)
    return num_threads


# ----------------------------------------------------------------------------------------- halo planning


class _AxisBlock(NamedTuple):
    """One chunk along H or W, in the coordinates of the block the task receives (chunk plus halo)."""

    start: int  # first input row of the block the chunk's outputs read
    stop: int  # one past the last; start == stop when they read padding only
    pad_before: int  # zero rows before start (the image's own padding: first chunk only)
    pad_after: int  # zero rows after stop (last chunk only)
    n_out: int  # output rows of this chunk


class _AxisPlan(NamedTuple):
    chunks: tuple  # input chunks (small ones merged with a neighbour)
    depth: object  # map_overlap depth: 0 or (before, after)
    out_chunks: tuple
    blocks: tuple  # one _AxisBlock per chunk


def _merge_small_chunks(chunks, size):
    """Chunks along one axis, each >= ``size`` (a halo comes from the adjacent chunk only), or one chunk."""
    if size <= min(chunks):
        return chunks
    if size >= sum(chunks):
        return (sum(chunks),)
    merged = []
    run = 0
    for c in chunks:
        run += c
        if run >= size:
            merged.append(run)
            run = 0
    if run:
        merged[-1] += run
    return tuple(merged)


def _plan_axis(chunks, size, kernel, stride, dilation, pad_before, pad_after, out_size):
    """Split one spatial axis: which output rows each input chunk computes, and the halo it needs for them.

    Output row ``o`` reads padded rows ``o*stride .. o*stride + span`` (``span = dilation*(kernel-1)``), i.e.
    input rows from ``o*stride - pad_before``. It is assigned to the chunk holding input row
    ``o*stride - pad_before + before`` with ``before = min(pad_before, span)``; that chunk then needs
    ``before`` rows of halo before it and ``span - before`` after it, whatever the stride.
    """
    span = dilation * (kernel - 1)
    before = min(pad_before, span)
    after = span - before
    if len(chunks) > 1:
        chunks = _merge_small_chunks(chunks, max(before, after))
    if len(chunks) == 1 or span == 0:
        before = after = 0  # no neighbour or a 1-wide kernel: no halo
        depth = 0
    else:
        depth = (before, after)
    edges = np.concatenate([[0], np.cumsum(chunks)]).tolist()
    n = len(chunks)
    # Output boundaries: the first output of chunk i is the first o with o*stride - pad_before + before >= edges[i].
    bounds = [0]
    for i in range(1, n):
        first = -(-(edges[i] + pad_before - before) // stride)
        bounds.append(min(max(first, bounds[-1]), out_size))
    bounds.append(out_size)
    blocks = []
    for i in range(n):
        o_start, o_stop = bounds[i], bounds[i + 1]
        # Rows of the input the task receives: its chunk plus the halo (none beyond the image: boundary="none").
        avail_start = edges[i] - before if i > 0 else 0
        avail_stop = edges[i + 1] + after if i < n - 1 else size
        if o_stop == o_start:
            blocks.append(_AxisBlock(0, 0, 0, 0, 0))
            continue
        need_start = o_start * stride - pad_before
        need_stop = (o_stop - 1) * stride - pad_before + span + 1
        # What the chunk lacks must be the image's padding, never a neighbour's rows.
        assert need_start >= avail_start or avail_start == 0, (chunks, i)
        assert need_stop <= avail_stop or avail_stop == size, (chunks, i)
        start = max(need_start, avail_start)
        stop = min(need_stop, avail_stop)
        if stop <= start:  # the outputs read padding only (padding wider than the kernel)
            blocks.append(_AxisBlock(0, 0, need_stop - need_start, 0, o_stop - o_start))
        else:
            blocks.append(_AxisBlock(start - avail_start, stop - avail_start, start - need_start,
                                     need_stop - stop, o_stop - o_start))
    return _AxisPlan(tuple(chunks), depth, tuple(np.diff(bounds).tolist()), tuple(blocks))


def _spatial_plan(x, g):
    rows = _plan_axis(x.chunks[1], g.h, g.kh, g.stride_h, g.dilation_h, g.pad_top, g.pad_bottom, g.out_h)
    cols = _plan_axis(x.chunks[2], g.w, g.kw, g.stride_w, g.dilation_w, g.pad_left, g.pad_right, g.out_w)
    if (rows.chunks, cols.chunks) != x.chunks[1:3]:
        x = x.rechunk({1: rows.chunks, 2: cols.chunks})
    return x, rows, cols


def _local_input(block, r, c):
    """The task's input rows and columns for its outputs, and the zero padding around them."""
    if r.stop == r.start or c.stop == c.start:
        # Every output reads padding only along one axis: convolve zeros (one zero row stands for padding).
        shape = (block.shape[0], max(r.stop - r.start, 1), max(c.stop - c.start, 1), block.shape[3])
        pads = []
        for a in (r, c):
            if a.stop == a.start:
                pads.append((a.pad_before - 1, 0))
            else:
                pads.append((a.pad_before, a.pad_after))
        return np.zeros(shape, block.dtype if block.dtype.isnative else block.dtype.newbyteorder("=")), tuple(pads)
    local = block[:, r.start:r.stop, c.start:c.stop]
    return local, ((r.pad_before, r.pad_after), (c.pad_before, c.pad_after))


def _map(fn_block, x, rows, cols, out_c_chunks, dtype, **kwargs):
    chunks = (x.chunks[0], rows.out_chunks, cols.out_chunks, out_c_chunks)
    meta = np.empty((0, 0, 0, 0), dtype)
    kwargs.update(rows=rows.blocks, cols=cols.blocks, chunks=chunks, dtype=dtype, meta=meta)
    if rows.depth == 0 and cols.depth == 0:
        return da.map_blocks(fn_block, x, **kwargs)
    return da.map_overlap(fn_block, x, depth={0: 0, 1: rows.depth, 2: cols.depth, 3: 0}, boundary="none",
                          trim=False, **kwargs)


# ------------------------------------------------------------------------------------------- the tasks


def _depthwise_block(block, weight, bias, *, rows, cols, channels, multiplier, stride, dilation, activation,
                     num_threads, block_id=None):
    r, c = rows[block_id[1]], cols[block_id[2]]
    c0, c1 = channels[block_id[3]]
    shape = (block.shape[0], r.n_out, c.n_out, (c1 - c0) * multiplier)
    if 0 in shape:
        return np.empty(shape, weight.dtype)
    local, padding = _local_input(block, r, c)
    if (c0, c1) != (0, weight.shape[2]):
        weight = weight[:, :, c0:c1]
        bias = None if bias is None else bias[c0 * multiplier:c1 * multiplier]
    return _api.depthwise_conv2d(local, weight, bias, stride=stride, padding=padding, dilation=dilation,
                                 activation=activation, num_threads=num_threads)


def _pointwise_block(block, weight, bias, *, activation, num_threads):
    if block.size == 0:
        return np.empty(block.shape[:3] + (weight.shape[-1],), weight.dtype)
    return _api.pointwise_conv2d(block, weight, bias, activation=activation, num_threads=num_threads)


def _separable_block(block, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias, *, rows, cols,
                     stride, dilation, depthwise_activation, activation, num_threads, block_id=None):
    r, c = rows[block_id[1]], cols[block_id[2]]
    shape = (block.shape[0], r.n_out, c.n_out, pointwise_weight.shape[-1])
    if 0 in shape:
        return np.empty(shape, pointwise_weight.dtype)
    local, padding = _local_input(block, r, c)
    return _api.separable_conv2d(local, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias,
                                 stride=stride, padding=padding, dilation=dilation,
                                 depthwise_activation=depthwise_activation, activation=activation,
                                 num_threads=num_threads)


# ------------------------------------------------------------------------------------------- public API


def depthwise_conv2d(x, weight, bias=None, *, stride=1, padding="valid", dilation=1, activation=None, out=None,
                     num_threads=1):
    """:func:`dwcy.depthwise_conv2d` on a dask array ``x`` (N, H, W, C), lazily, chunk by chunk.

    Any chunks on every axis: the batch and channel chunks map one to one onto the output's (a channel chunk of
    ``Cc`` channels gives ``Cc * M`` output channels); chunks over height and width get halos from their
    neighbours (``map_overlap``). ``weight`` and ``bias`` are NumPy arrays. ``num_threads`` is per task and
    defaults to 1 (see the module docstring); ``out`` is not supported. Arguments are checked here, when the
    graph is built.

    Returns
    -------
    dask.array.Array, shape (N, OH, OW, C*M), the dtype of x (native byte order)
    """
    _check_out(out, "depthwise_conv2d")
    threads = _threads(num_threads)
    x, dtype = _check_x(x)
    weight = _small(weight, "weight", dtype)
    g = _args.depthwise_geometry(tuple(map(int, x.shape)), weight.shape, stride, padding, dilation)
    _args.activation_code(activation)
    bias = _small(bias, "bias", dtype)
    bias = _args._check_bias(bias, g.out_channels, dtype, "bias")
    x, rows, cols = _spatial_plan(x, g)
    edges = np.concatenate([[0], np.cumsum(x.chunks[3])]).tolist()
    channels = tuple(zip(edges[:-1], edges[1:]))
    out_c_chunks = tuple(c * g.multiplier for c in x.chunks[3])
    return _map(_depthwise_block, x, rows, cols, out_c_chunks, dtype,
                weight=_shared(weight), bias=_shared(bias), channels=channels, multiplier=g.multiplier,
                stride=(g.stride_h, g.stride_w), dilation=(g.dilation_h, g.dilation_w), activation=activation,
                num_threads=threads)


def pointwise_conv2d(x, weight, bias=None, *, activation=None, out=None, num_threads=1):
    """:func:`dwcy.pointwise_conv2d` on a dask array ``x`` (N, H, W, Cin), lazily, chunk by chunk.

    Any chunks over batch, height and width (a 1x1 convolution needs no halo); all of ``Cin`` in one chunk
    (``x.rechunk({3: -1})``), else ``ValueError``. ``weight`` and ``bias`` are NumPy arrays. ``num_threads`` is
    per task and defaults to 1; ``out`` is not supported.

    Returns
    -------
    dask.array.Array, shape (N, H, W, Cout), the dtype of x (native byte order)
    """
    _check_out(out, "pointwise_conv2d")
    threads = _threads(num_threads)
    x, dtype = _check_x(x)
    weight = _small(weight, "weight", dtype)
    weight = _args._pointwise_weight(weight, x.shape[3], dtype, "weight")
    cout = weight.shape[1]
    _args.activation_code(activation)
    bias = _args._check_bias(_small(bias, "bias", dtype), cout, dtype, "bias")
    _whole_channels(x, "pointwise_conv2d")
    chunks = x.chunks[:3] + ((cout,),)
    return da.map_blocks(_pointwise_block, x, weight=_shared(weight), bias=_shared(bias), activation=activation,
                         num_threads=threads, chunks=chunks, dtype=dtype, meta=np.empty((0, 0, 0, 0), dtype))


def separable_conv2d(x, depthwise_weight, pointwise_weight, depthwise_bias=None, pointwise_bias=None, *, stride=1,
                     padding="valid", dilation=1, depthwise_activation=None, activation=None, out=None,
                     num_threads=1):
    """:func:`dwcy.separable_conv2d` on a dask array ``x`` (N, H, W, C), lazily, chunk by chunk.

    Any chunks over batch, height and width (height and width chunks get halos, as in
    :func:`depthwise_conv2d`); all of ``C`` in one chunk (``x.rechunk({3: -1})``), else ``ValueError``.
    Weights and biases are NumPy arrays. ``num_threads`` is per task and defaults to 1; ``out`` is not
    supported.

    Returns
    -------
    dask.array.Array, shape (N, OH, OW, Cout), the dtype of x (native byte order)
    """
    _check_out(out, "separable_conv2d")
    threads = _threads(num_threads)
    x, dtype = _check_x(x)
    dw = _small(depthwise_weight, "depthwise_weight", dtype)
    g = _args.depthwise_geometry(tuple(map(int, x.shape)), dw.shape, stride, padding, dilation, "depthwise_weight")
    _args.activation_code(depthwise_activation, "depthwise_activation")
    dw_bias = _args._check_bias(_small(depthwise_bias, "depthwise_bias", dtype), g.out_channels, dtype,
                                "depthwise_bias")
    pw = _args._pointwise_weight(_small(pointwise_weight, "pointwise_weight", dtype), g.out_channels, dtype,
                                 "pointwise_weight")
    cout = pw.shape[1]
    _args.activation_code(activation, "activation")
    pw_bias = _args._check_bias(_small(pointwise_bias, "pointwise_bias", dtype), cout, dtype, "pointwise_bias")
    _whole_channels(x, "separable_conv2d")
    x, rows, cols = _spatial_plan(x, g)
    return _map(_separable_block, x, rows, cols, (cout,), dtype,
                depthwise_weight=_shared(dw), pointwise_weight=_shared(pw), depthwise_bias=_shared(dw_bias),
                pointwise_bias=_shared(pw_bias),
                stride=(g.stride_h, g.stride_w), dilation=(g.dilation_h, g.dilation_w),
                depthwise_activation=depthwise_activation, activation=activation, num_threads=threads)
