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

THREAD_COUNTS = [2, 3, 7, None]

# Many output rows (the work items threads split), in counts no thread count divides evenly, and over a million
# multiply-adds each: enough work that a kernel which gives small calls fewer threads still uses 7.
CASES = {
    "3x3_same": dict(shape=(3, 29, 37, 35), kernel=3, multiplier=1, kwargs=dict(padding="same")),
    "5x5_stride2_multiplier2": dict(shape=(4, 33, 41, 9), kernel=5, multiplier=2,
                                    kwargs=dict(padding="same", stride=2, activation="hardswish")),
    "3x3_dilated_multiplier3": dict(shape=(1, 57, 22, 33), kernel=3, multiplier=3,
                                    kwargs=dict(padding=((2, 0), (1, 3)), dilation=(2, 1), activation="relu")),
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
