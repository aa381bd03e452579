"""Guard pages: arrays whose first byte before or last byte after is an inaccessible page.

``guarded_copy(values, at="end")`` copies an array into fresh memory that ends exactly where a PROT_NONE
page begins (``at="start"``: that begins right after one). A kernel reading or writing a single element
past the array then dies with SIGSEGV instead of silently using a neighbour's bytes, which is what
XNNPACK's documented over-read does to arrays that end at a page boundary.

Because the failure is a crash, guarded calls run in a child process: ``run_guarded`` writes the
arguments to a file, runs this module as a script on them, and raises AssertionError if the child dies.

    python _guard.py CALL.npz RESULT.npz SPEC   # child: SPEC is repr(dict) (see run_guarded)
    python _guard.py --probe end|start          # child: reads one byte past a guarded array (must crash)
"""

import ast
import ctypes
import ctypes.util
import mmap
import os
import subprocess
import sys

import numpy as np

PAGE = mmap.PAGESIZE
PLACEMENTS = ("end", "start")
PROT_NONE = 0
SUPPORTED = sys.platform.startswith("linux")  # mmap + mprotect through libc, and signals as return codes


def _protect(address):
    """Make the page at ``address`` inaccessible."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    if libc.mprotect(ctypes.c_void_p(address), PAGE, PROT_NONE) != 0:
        raise OSError(ctypes.get_errno(), "mprotect failed")


def guarded_copy(values, at="end"):
    """A copy of ``values`` (C-contiguous, aligned, same dtype) right before or after a guard page.

    at="end": the array's last byte is the last byte before the guard page (catches over-reads and
    over-writes past the end); at="start": its first byte is the first after the guard page.
    """
    values = np.asarray(values)
    if values.size == 0:
        raise ValueError("nothing to guard in an empty array")
    data_pages = -(-values.nbytes // PAGE)
    region = mmap.mmap(-1, (data_pages + 1) * PAGE)  # anonymous, read-write, page-aligned
    base = np.frombuffer(region, np.uint8).ctypes.data
    if at == "end":
        _protect(base + data_pages * PAGE)
        offset = data_pages * PAGE - values.nbytes  # a multiple of the item size: aligned
    elif at == "start":
        _protect(base)
        offset = PAGE
    else:
        raise ValueError(f"at must be one of {PLACEMENTS}, got {at!r}")
    # The array keeps the mmap alive through its base (a memoryview of it).
    array = np.frombuffer(region, values.dtype, count=values.size, offset=offset).reshape(values.shape)
    array[...] = values
    assert array.flags.c_contiguous and array.flags.aligned and array.flags.writeable
    return array


def _child_environment():
    env = dict(os.environ)
    env["PYTHONFAULTHANDLER"] = "1"  # a crash prints the Python stack of the child
    return env


def run_child(args, timeout=120):
    """Run this module as a script in a child process; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, os.path.abspath(__file__), *args],
        capture_output=True, text=True, timeout=timeout, env=_child_environment(),
    )


def run_guarded(function, arrays, kwargs, out_shape, out_dtype, workdir, timeout=120):
    """Call ``dwcy.<function>(**arrays, **kwargs, out=...)`` in a child with every array against a guard page
    (``function`` may be dotted: ``"kernels.im2col"``).

    Every array of ``arrays`` and a NaN-filled ``out`` of ``out_shape`` and ``out_dtype`` are placed at
    the end of their memory (guard page after), then, in a second call, at the start (guard page before).
    ``kwargs`` must survive repr/literal_eval. Returns {placement: result}; raises AssertionError with
    the child's stderr if it crashes, fails or does not return its ``out``.
    """
    call_path, result_path = os.path.join(workdir, "call.npz"), os.path.join(workdir, "result.npz")
    np.savez(call_path, **arrays)
    spec = dict(function=function, kwargs=kwargs, out_shape=tuple(out_shape), out_dtype=np.dtype(out_dtype).str)
    child = run_child([call_path, result_path, repr(spec)], timeout)
    if child.returncode != 0:
        raise AssertionError(
            f"the guarded call {function}(**{kwargs!r}) died with return code {child.returncode} "
            f"(negative: killed by that signal, -11 is SIGSEGV)\n--- child stderr ---\n{child.stderr}"
        )
    with np.load(result_path) as results:
        return {at: results[at] for at in PLACEMENTS}


def _child_call(call_path, result_path, spec):
    import dwcy

    spec = ast.literal_eval(spec)
    function = dwcy
    for name in spec["function"].split("."):  # e.g. "kernels.im2col"
        function = getattr(function, name)
    with np.load(call_path) as call:
        arrays = {name: call[name] for name in call.files}
    results = {}
    for at in PLACEMENTS:
        print(f"calling {spec['function']} with every array against a guard page at its {at}", file=sys.stderr,
              flush=True)
        guarded = {name: guarded_copy(values, at) for name, values in arrays.items()}
        out = guarded_copy(np.full(spec["out_shape"], np.nan, spec["out_dtype"]), at)
        y = function(**guarded, **spec["kwargs"], out=out)
        if y is not out:
            sys.exit(f"{spec['function']} did not return its out=")
        results[at] = y.copy()
    np.savez(result_path, **results)


def _child_probe(at):
    """Read the byte just outside a guarded array: the guard works if this crashes."""
    array = guarded_copy(np.ones(10, np.float32), at)
    outside = array.ctypes.data + (array.nbytes if at == "end" else -1)
    ctypes.string_at(outside, 1)
    sys.exit("read outside the guarded array without crashing")


if __name__ == "__main__":
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the crashes we provoke leave no core files
    if sys.argv[1] == "--probe":
        _child_probe(sys.argv[2])
    else:
        _child_call(*sys.argv[1:4])
