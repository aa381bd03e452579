# cython: language_level=3, boundscheck=False, wraparound=False
"""A downstream extension that cimports dwcy: a MobileNet-style separable block over a batch, run image by
image from a nogil loop with the weights packed once (dwcy.kernels' plan API)."""

from dwcy.kernels cimport (ACT_NONE, ACT_RELU6, DwGeometry, Plan, geometry_init, plan_free, separable_plan_f32,
                           separable_run_f32)


def separable_batch(const float[:, :, :, ::1] x, const float[:, :, ::1] dw_weight, const float[::1] dw_bias,
                    const float[:, ::1] pw_weight, const float[::1] pw_bias, float[:, :, :, ::1] out):
    """out = pointwise(relu6(depthwise(x) + dw_bias)) + pw_bias: a KHxKW depthwise with stride 1 and
    'same' padding (odd kernels), then a linear 1x1 projection. Shapes are checked here: dwcy's C level
    checks nothing."""
    cdef Py_ssize_t n = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3]
    cdef Py_ssize_t kh = dw_weight.shape[0], kw = dw_weight.shape[1], cout = pw_weight.shape[1]
    if (dw_weight.shape[2] != c or dw_bias.shape[0] != c or pw_weight.shape[0] != c or pw_bias.shape[0] != cout
            or kh % 2 == 0 or kw % 2 == 0):
        raise ValueError("inconsistent weights")
    if (out.shape[0], out.shape[1], out.shape[2], out.shape[3]) != (n, h, w, cout):
        raise ValueError("out must be (N, H, W, Cout)")
    cdef DwGeometry g
    if geometry_init(&g, 1, h, w, c, 1, kh, kw, 1, 1, 1, 1, kh // 2, kh // 2, kw // 2, kw // 2, ACT_RELU6) != 0:
        raise ValueError("invalid geometry")
    cdef Plan *plan = separable_plan_f32(&dw_weight[0, 0, 0], &dw_bias[0], &pw_weight[0, 0], &pw_bias[0], &g, cout)
    if plan == NULL:
        raise MemoryError()
    cdef Py_ssize_t i
    cdef int failed = 0
    with nogil:
        for i in range(n):  # one image per call, each in this thread (num_threads=1: no OpenMP region)
            failed |= separable_run_f32(plan, &x[i, 0, 0, 0], &out[i, 0, 0, 0], &g, ACT_NONE, 1)
    plan_free(plan)
    if failed:
        raise MemoryError()
