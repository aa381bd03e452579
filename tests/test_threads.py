"""Threads: results bitwise identical at any thread count, OpenMP built in, its defaults honoured, and dwcy
usable from many Python threads and in child processes."""

import os
import subprocess
import tempfile
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import dwcy
from _helpers import DTYPES, depthwise_inputs, dtype_id

# Every test of this module runs at every SIMD level this CPU supports (conftest.py).
pytestmark = pytest.mark.usefixtures("simd_level")

THREAD_COUNTS = [2, 3, 7, None]

# Many output rows (the work items threads split), in counts no thread count divides evenly, and about two million
# multiply-adds each: enough work that a kernel which gives small calls fewer threads (one per 262144
# multiply-adds, DWCY_MIN_WORK_PER_THREAD) still uses 7.
CASES = {
    "3x3_same": dict(shape=(6, 29, 37, 35), kernel=3, multiplier=1, kwargs=dict(padding="same")),
    "5x5_stride2_multiplier2": dict(shape=(12, 33, 41, 9), kernel=5, multiplier=2,
                                    kwargs=dict(padding="same", stride=2, activation="hardswish")),
    "3x3_dilated_multiplier3": dict(shape=(2, 57, 22, 33), kernel=3, multiplier=3,
                                    kwargs=dict(padding=((2, 0), (1, 3)), dilation=(2, 1), activation="relu")),
    # One image: threads take groups of channel blocks (and bands of rows), each packing the weights of
    # its own groups; 21 whole blocks of 16 floats (an odd count) and a tail of 5 channels.
    "3x3_one_image_channel_groups": dict(shape=(1, 20, 20, 341), kernel=3, multiplier=1,
                                         kwargs=dict(padding="same", activation="relu6")),
    "7x7_one_image_channel_groups": dict(shape=(1, 16, 17, 211), kernel=7, multiplier=1,
                                         kwargs=dict(padding="same", stride=(2, 1))),
    "3x3_dilation2_one_image": dict(shape=(1, 21, 19, 157), kernel=3, multiplier=1,
                                    kwargs=dict(padding="same", dilation=2, activation="relu")),
}


def case_inputs(rng, dtype, name):
    case = CASES[name]
    n, h, w, c = case["shape"]
    x, weight, bias = depthwise_inputs(rng, dtype, n=n, h=h, w=w, c=c, kh=case["kernel"], multiplier=case["multiplier"])
    return x, weight, bias, case["kwargs"]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("name", CASES)
def test_bitwise_identical_at_any_thread_count(rng, name, dtype):
    x, weight, bias, kwargs = case_inputs(rng, dtype, name)
    one_thread = dwcy.depthwise_conv2d(x, weight, bias, num_threads=1, **kwargs)
    for num_threads in THREAD_COUNTS:
        y = dwcy.depthwise_conv2d(x, weight, bias, num_threads=num_threads, **kwargs)
        assert np.array_equal(y, one_thread), f"num_threads={num_threads} differs from num_threads=1"


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_non_finite_weights_at_any_thread_count(rng, dtype):
    # A NaN and an infinite weight (their padded taps make NaN, as in the reference) in a one-image case whose
    # finite weights split into groups of channel blocks: the same result, NaN where the reference has it.
    x, weight, bias, kwargs = case_inputs(rng, dtype, "3x3_one_image_channel_groups")
    weight[0, 1, 37] = np.nan
    weight[2, 2, -1] = -np.inf
    with np.errstate(invalid="ignore"):
        expected = dwcy.reference.depthwise_conv2d(x, weight, bias, **kwargs)
    one_thread = dwcy.depthwise_conv2d(x, weight, bias, num_threads=1, **kwargs)
    np.testing.assert_array_equal(np.isnan(one_thread), np.isnan(expected), err_msg="NaN positions differ")
    for num_threads in THREAD_COUNTS:
        y = dwcy.depthwise_conv2d(x, weight, bias, num_threads=num_threads, **kwargs)
        assert np.array_equal(y, one_thread, equal_nan=True), f"num_threads={num_threads} differs from num_threads=1"


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_bitwise_identical_under_threadpool_limits(rng, dtype):
    x, weight, bias, kwargs = case_inputs(rng, dtype, "5x5_stride2_multiplier2")
    default = dwcy.depthwise_conv2d(x, weight, bias, **kwargs)
    with threadpool_limits(limits=1):
        for num_threads in [None, 1, 3]:
            y = dwcy.depthwise_conv2d(x, weight, bias, num_threads=num_threads, **kwargs)
            assert np.array_equal(y, default), f"num_threads={num_threads} under threadpool_limits(1)"


def test_num_threads_none_follows_threadpool_limits():
    if not dwcy.config()["openmp"]:
        pytest.skip("built without OpenMP")
    with threadpool_limits(limits=1, user_api="openmp"):
        assert dwcy.config()["threads"] == 1


def test_openmp_was_built_in():
    # Fails when a build silently lost OpenMP (sklearn's test_build.py); DWCY_NO_OPENMP asks for such a build.
    if os.environ.get("DWCY_NO_OPENMP"):
        pytest.skip("DWCY_NO_OPENMP is set: a serial build was asked for")
    config = dwcy.config()
    assert config["openmp"] is True, config


def run_python(code, env=None, timeout=60):
    # From a neutral directory: `python -c` puts the working directory first on sys.path, and the
    # repository root holds the uncompiled source tree of dwcy.
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=tempfile.gettempdir())


def test_omp_num_threads_sets_the_default():
    if not dwcy.config()["openmp"]:
        pytest.skip("built without OpenMP")
    child = run_python("import dwcy; print(dwcy.config()['threads'])", env={"OMP_NUM_THREADS": "3"})
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "3"


@pytest.mark.parametrize("limit", ["1", "3"])
def test_a_team_smaller_than_asked_still_does_all_the_work(limit):
    # OpenMP may give a region fewer threads than asked (OMP_THREAD_LIMIT, nesting): every work item must
    # still run, on the threads there are.
    child = run_python("""
        import numpy as np, dwcy
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, 30, 30, 64), dtype=np.float32)
        w = rng.standard_normal((3, 3, 64), dtype=np.float32)
        pw = rng.standard_normal((64, 96), dtype=np.float32)
        calls = [lambda t: dwcy.depthwise_conv2d(x, w, padding=1, num_threads=t),
                 lambda t: dwcy.pointwise_conv2d(x, pw, num_threads=t),
                 lambda t: dwcy.separable_conv2d(x, w, pw, padding=1, num_threads=t)]
        print(all(np.array_equal(call(t), call(1)) for call in calls for t in (2, 4, 8)))
    """, env={"OMP_THREAD_LIMIT": limit})
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "True"


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_concurrent_python_threads(dtype):
    # The GIL is released in the kernel: many Python threads may call dwcy at once, each with its own result.
    inputs = [case_inputs(np.random.default_rng(seed), dtype, name) for seed, name in enumerate(CASES)] * 4
    expected = [dwcy.depthwise_conv2d(x, w, b, num_threads=1, **kw) for x, w, b, kw in inputs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda args: dwcy.depthwise_conv2d(*args[:3], num_threads=2, **args[3]), inputs))
    for y, e in zip(results, expected):
        assert np.array_equal(y, e)


CHILD_AFTER_PARALLEL_PARENT = """
import multiprocessing, sys
import numpy as np, dwcy

def convolve(num_threads):
    x = np.ones((2, 30, 30, 20), np.float32)
    return dwcy.depthwise_conv2d(x, np.ones((3, 3, 20), np.float32), num_threads=num_threads)

def child():
    assert convolve(2)[0, 5, 5, 0] == 9

if __name__ == "__main__":
    convolve(2)  # the parent has run a parallel region before it starts the child
    process = multiprocessing.get_context(sys.argv[1]).Process(target=child)
    process.start()
    process.join(20)
    if process.is_alive():
        process.kill()
        sys.exit("the child hung")
    sys.exit(process.exitcode)
"""


@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
def test_child_process_after_a_parallel_kernel(tmp_path, start_method):
    # DESIGN.md: dwcy works in a child after fork() in a parent that already ran a parallel kernel
    # (GNU OpenMP alone hangs there), and with the spawn and forkserver start methods.
    import multiprocessing

    if start_method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {start_method} start method here")
    script = tmp_path / "child_after_parallel_parent.py"
    script.write_text(CHILD_AFTER_PARALLEL_PARENT)
    child = subprocess.run([sys.executable, str(script), start_method], capture_output=True, text=True, timeout=90)
    assert child.returncode == 0, f"return code {child.returncode}: {child.stderr}"


def test_thread_pool_of_8_with_mixed_operations_and_dtypes():
    # Under contention (8 Python threads on however many cores, each call free to start OpenMP threads of
    # its own), every call still gets exactly its own result.
    rng = np.random.default_rng(0)
    calls = []
    for i in range(24):
        dtype = DTYPES[i % 2]
        x = rng.standard_normal((1 + i % 3, 14 + i, 17, 8 + 3 * i)).astype(dtype)
        dw = rng.standard_normal((3, 3, x.shape[3])).astype(dtype)
        pw = rng.standard_normal((x.shape[3], 5 + i)).astype(dtype)
        kind = ("depthwise", "pointwise", "separable")[i % 3]
        if kind == "depthwise":
            calls.append((dwcy.depthwise_conv2d, (x, dw), dict(padding="same", stride=1 + i % 2)))
        elif kind == "pointwise":
            calls.append((dwcy.pointwise_conv2d, (x, pw), dict(activation="relu6")))
        else:
            calls.append((dwcy.separable_conv2d, (x, dw, pw), dict(padding="same", depthwise_activation="relu")))
    expected = [function(*args, num_threads=1, **kwargs) for function, args, kwargs in calls]
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(function, *args, num_threads=None, **kwargs) for function, args, kwargs in calls * 3]
        results = [future.result() for future in futures]
    for i, y in enumerate(results):
        assert np.array_equal(y, expected[i % len(calls)]), f"call {i % len(calls)}"


OS_FORK_AFTER_PARALLEL = """
import os, sys
import numpy as np, dwcy

x = np.ones((2, 30, 30, 20), np.float32)
w = np.ones((3, 3, 20), np.float32)
dwcy.depthwise_conv2d(x, w, num_threads=2)  # the parent's OpenMP threads exist now
pid = os.fork()
if pid == 0:
    ok = dwcy.depthwise_conv2d(x, w, num_threads=2)[0, 5, 5, 0] == 9 and dwcy.config()["threads"] == 1
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_os_fork_after_a_parallel_kernel(tmp_path):
    # The child runs its kernels single-threaded (an at-fork handler), instead of hanging in GNU OpenMP.
    script = tmp_path / "fork_after_parallel.py"
    script.write_text(OS_FORK_AFTER_PARALLEL)
    child = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, f"return code {child.returncode}: {child.stderr}"
